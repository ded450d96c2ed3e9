"""Data-quality rules behind the asset checks: where a data problem can hide, say so."""

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MIN_PARSE_RATIO = 0.95
MAX_QUARANTINED_OBJECTS = 0
ALERT_VOLUME_FACTOR = 3.0
ALERT_VOLUME_SLACK = 5


@dataclass(frozen=True)
class Verdict:
    passed: bool
    description: str


def parse_ratio(objects: int, quarantined: int, minimum: float = MIN_PARSE_RATIO) -> tuple[float, Verdict]:
    """Share of the day's objects that parsed; an empty day is not a parse failure."""
    ratio = 1.0 if objects == 0 else (objects - quarantined) / objects
    ok = ratio >= minimum
    return ratio, Verdict(ok, f"{objects - quarantined} of {objects} objects parsed ({ratio:.1%}; floor {minimum:.0%})")


def quarantine_count(quarantined: int, rejected_records: int, allowed: int = MAX_QUARANTINED_OBJECTS) -> Verdict:
    ok = quarantined <= allowed
    return Verdict(ok, f"{quarantined} object(s) quarantined, {rejected_records} record(s) rejected")


def alert_volume(today: int, history: Sequence[int]) -> tuple[float, Verdict]:
    """Is today's alert count far above its recent norm (a noisy model or an incident)?

    The norm is the median of the recent days that produced alerts tables; the bound is
    ``factor x median + slack`` so a quiet history does not turn a handful of alerts into a warning.
    """
    if not history:
        return float(today), Verdict(True, f"{today} alert(s); no history to compare with yet")
    median = float(statistics.median(history))
    bound = ALERT_VOLUME_FACTOR * median + ALERT_VOLUME_SLACK
    ok = today <= bound
    return bound, Verdict(
        ok, f"{today} alert(s) vs recent median {median:g} over {len(history)} day(s) (bound {bound:g})"
    )
