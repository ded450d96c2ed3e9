"""Why a day was not scored: the marker a model asset writes when it skips a day, and its reader.

A skipped day leaves no table behind, so without a record the CLI could only guess why
``daily_insights`` is missing. ``training_set`` (too few days with data in the window) and
``ip_insights_model`` (a window that cannot be validated) write ``skipped.json`` in the day's
partition folder, beside where their tables would be; the asset's next materialisation commits
the partition and so removes the marker. Only the marker is written: tables from an earlier
successful run stay as they were.
"""

import json
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime

from proactive_assets.core.warehouse import Warehouse
from proactive_assets.defs import tables

SKIPPED_JSON = "skipped.json"

#: The assets that may skip a day, in lineage order (the first skip explains the day).
SKIPPING_ASSETS = (tables.TRAINING_SET, tables.IP_INSIGHTS_MODEL)


@dataclass(frozen=True)
class Skip:
    """One skipped partition: which asset, why (``reason``) and what would change that (``fix``)."""

    asset: str
    day: str
    reason: str
    fix: str
    run_id: str | None = None
    recorded_at: str = ""

    def lines(self) -> list[str]:
        """What a person reads: the cause on the first line, the fix on the second."""
        return [f"{self.day} was not scored: {self.reason}", f"fix: {self.fix}"]


def record_skip(warehouse: Warehouse, asset: str, day: date, reason: str, fix: str, run_id: str | None = None) -> Skip:
    """Write the marker for ``asset`` on ``day`` (replacing an older one) and return it."""
    skip = Skip(asset, day.isoformat(), reason, fix, run_id, datetime.now(UTC).isoformat(timespec="seconds"))
    warehouse.store.put(warehouse.key(asset, day, SKIPPED_JSON), json.dumps(asdict(skip), indent=2).encode())
    return skip


def find_skip(warehouse: Warehouse, day: date) -> Skip | None:
    """The recorded reason ``day`` was not scored, if a model asset skipped it; None otherwise."""
    for asset in SKIPPING_ASSETS:
        key = warehouse.key(asset, day, SKIPPED_JSON)
        if not warehouse.store.exists(key):
            continue
        try:
            data = json.loads(warehouse.store.get(key))
            return Skip(**{name: data.get(name) for name in Skip.__dataclass_fields__})
        except (ValueError, TypeError):
            return Skip(asset, day.isoformat(), f"{asset} skipped the day (unreadable marker {key})", "re-run the day")
    return None
