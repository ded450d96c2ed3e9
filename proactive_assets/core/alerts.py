"""Alert selection, explanation and ids (no Dagster here).

An alert is one (identity ARN, source IP) pair of day D whose ``insight`` reaches the threshold.
This module turns the scored pairs into rows a responder can act on:

* :func:`select_alerts` keeps ``insight >= threshold`` (the seed used ``>``; with a continuous
  calibrated score the difference is immaterial, and ``>=`` lets a threshold of 0 mean "all").
* :func:`explain_alerts` says *why* the pair is unusual, from what the model learned (the
  training-window pairs) and from the day itself.
* :func:`alert_id` is a deterministic id, so re-running a day yields the same ids and the
  publishing ledger (``publish.py``) never drops one and sends it once wherever the destination
  can de-duplicate (the alert id is the key everywhere else).
* :func:`alert_severity` ranks an alert for a responder (and for SNS filter policies).

Writes are the event names CloudTrail marked ``readOnly: false`` (the learning set's
``write_event_names``); a learning set written before that column existed gives ``None``
("not known"), never a guess from the event name (``FilterLogEvents`` reads, ``GetSecretValue``
reads a secret: name prefixes get both wrong).

The message a sink sends is in ``alert_message.py``; the allow-list in ``suppressions.py``.
"""

import bisect
import hashlib
import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from proactive_assets.core.ipnet import canonical_ip, parse_ipv4_arrow

DayLike = date | datetime | pd.Timestamp | str

#: Width of the "known network" shown around the identity's nearest known address.
DISPLAY_PREFIX = {4: 24, 6: 64}
#: The fewest leading bits an alert's address must share with the identity's nearest known
#: network for the explanation to name that network: any two IPv4 addresses share a few leading
#: bits, and "nearest known network 32.219.198.0/24 (shares /0)" says nothing.
NAMED_NEAREST_BITS = {4: 8, 6: 16}

_ALERT_ID_VERSION = "proactive_assets/alert/v1"
_ALERT_ID_HEX = 24


# --------------------------------------------------------------------------------------------
# small normalisers


def as_day(day: DayLike) -> date:
    """``date`` from a date, datetime, Timestamp, ``YYYY-MM-DD`` or ``YYYY/MM/DD`` string."""
    if isinstance(day, pd.Timestamp):
        return day.date()
    if isinstance(day, datetime):
        return day.date()
    if isinstance(day, date):
        return day
    text = str(day).strip().replace("/", "-")
    return date.fromisoformat(text[:10])


def as_name_list(value: Any) -> list[str]:
    """A list of strings from a list/array/tuple, a ``;``-joined string, or a missing value."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(";") if part.strip()]
    if isinstance(value, float) and math.isnan(value):
        return []
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        return [str(v) for v in value if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return [str(value)]


def _ts_text(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.tz_convert("UTC").isoformat().replace("+00:00", "Z")


def _hhmm(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC")
    return ts.strftime("%H:%M")


def to_json_value(value: Any) -> Any:
    """JSON-safe version of one DataFrame cell (timestamps as ISO-8601 UTC, NaN as None)."""
    if value is None:
        return None
    if isinstance(value, (pd.Timestamp, datetime)):
        return _ts_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (np.ndarray, list, tuple, pd.Series)):
        return [to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        number = float(value)
        return None if math.isnan(number) or math.isinf(number) else number
    if value is pd.NaT or value is pd.NA:
        return None
    return value


def alert_record(alert: Mapping[str, Any]) -> dict[str, Any]:
    """One alert row as a JSON-safe dict (used by the file sink and ``proactive-assets alerts``)."""
    return {str(k): to_json_value(v) for k, v in dict(alert).items()}


# --------------------------------------------------------------------------------------------
# selection and ids


def select_alerts(insights: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Rows with ``insight >= threshold`` (NaN never alerts), most suspicious first, with a ``threshold`` column.

    Ties are broken by entity then source_ip so the order is the same on every re-run.
    """
    if "insight" not in insights.columns:
        raise KeyError("insights has no 'insight' column")
    scores = pd.to_numeric(insights["insight"], errors="coerce")
    chosen = insights.loc[scores >= float(threshold)].copy()
    sort_cols = ["insight"] + [c for c in ("entity", "source_ip") if c in chosen.columns]
    ascending = [False] + [True] * (len(sort_cols) - 1)
    chosen = chosen.sort_values(sort_cols, ascending=ascending, kind="mergesort")
    chosen["threshold"] = float(threshold)
    return chosen.reset_index(drop=True)


def alert_id(day: DayLike, entity: str, source_ip: str) -> str:
    """Deterministic id of the alert for (day, entity, source_ip): a sha256 hex prefix.

    The model version is deliberately not part of the id: re-scoring the same day with a
    retrained model must not re-send the same finding.
    """
    ip = canonical_ip(str(source_ip).strip()) or str(source_ip).strip()
    canonical = f"{_ALERT_ID_VERSION}\n{as_day(day).isoformat()}\n{str(entity).strip()}\n{ip}"
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:_ALERT_ID_HEX]


def add_alert_ids(alerts: pd.DataFrame, day: DayLike) -> pd.DataFrame:
    """Copy of ``alerts`` with an ``alert_id`` column for ``day``."""
    out = alerts.copy()
    out["alert_id"] = [alert_id(day, e, ip) for e, ip in zip(out["entity"], out["source_ip"], strict=True)]
    return out


# --------------------------------------------------------------------------------------------
# event names, writes and severity

#: Bands of :func:`alert_severity` by insight, highest first.
SEVERITY_BANDS: tuple[tuple[float, str], ...] = ((0.99, "high"), (0.9, "medium"), (0.0, "low"))
SEVERITIES = ("low", "medium", "high")


def optional_name_list(value: Any) -> list[str] | None:
    """Like :func:`as_name_list`, but ``None`` (not known) stays ``None`` instead of becoming ``[]``."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return as_name_list(value)


def order_event_names(names: Any, writes: Any = None) -> list[str]:
    """Distinct event names, the writes first when they are known, each group alphabetical."""
    distinct = sorted(set(as_name_list(names)))
    known_writes = set(as_name_list(writes))
    return [n for n in distinct if n in known_writes] + [n for n in distinct if n not in known_writes]


def alert_severity(insight: Any, wrote: bool | None = None, denied: int | None = None, ip_known: bool = True) -> str:
    """``low`` / ``medium`` / ``high`` for a responder's queue and SNS filter policies.

    The band of ``insight`` (>= 0.99 high, >= 0.9 medium, else low), raised one step when the pair
    acted from an address never seen for the identity in the window: it wrote (CloudTrail
    ``readOnly: false``), or was refused (AccessDenied: someone probing what a key can do).
    """
    value = float(insight) if insight is not None and not pd.isna(insight) else 0.0
    band = next(name for floor, name in SEVERITY_BANDS if value >= floor)
    if not ip_known and (bool(wrote) or bool(denied)):
        band = SEVERITIES[min(SEVERITIES.index(band) + 1, len(SEVERITIES) - 1)]
    return band


# --------------------------------------------------------------------------------------------
# explanation


def parse_ip(text: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    canonical = canonical_ip(str(text).strip())
    return ipaddress.ip_address(canonical) if canonical is not None else None


def _ip_key(text: Any) -> tuple[int, int] | None:
    """(version, integer) for an IP string, or None."""
    addr = parse_ip(text)
    return (addr.version, int(addr)) if addr is not None else None


def _ip_keys(ips: list[Any]) -> dict[Any, tuple[int, int] | None]:
    """:func:`_ip_key` of each of ``ips``: dotted-quad IPv4 by the compiled parser (parsing each
    with ``ipaddress`` cost ~30 us an address), the rest one at a time."""
    texts = pa.array([ip if isinstance(ip, str) else None for ip in ips], pa.string())
    value, ok = parse_ipv4_arrow(texts)
    return {ip: (4, v) if good else _ip_key(ip) for ip, v, good in zip(ips, value.tolist(), ok.tolist(), strict=True)}


@dataclass(frozen=True)
class _NearestKnown:
    known_ip: str
    common_bits: int
    network: str


class _EntityIpIndex:
    """Per entity and IP version, the sorted integer addresses the entity used in the window.

    The address sharing the longest prefix with ``x`` is always a neighbour of ``x`` in sorted
    order, so one bisect per alert replaces a scan of the identity's history.
    """

    def __init__(self, pairs: pd.DataFrame) -> None:
        self._index: dict[tuple[str, int], list[int]] = {}
        if pairs.empty:
            return
        distinct = pairs[["entity", "source_ip"]].drop_duplicates()
        keys = _ip_keys(distinct["source_ip"].drop_duplicates().tolist())
        for entity, ip in zip(distinct["entity"].tolist(), distinct["source_ip"].tolist(), strict=True):
            key = keys[ip]
            if key is not None:
                self._index.setdefault((entity, key[0]), []).append(key[1])
        for values in self._index.values():
            values.sort()

    def nearest(self, entity: str, ip: str) -> _NearestKnown | None:
        key = _ip_key(ip)
        if key is None:
            return None
        version, value = key
        known = self._index.get((entity, version))
        if not known:
            return None
        bits = 32 if version == 4 else 128
        pos = bisect.bisect_left(known, value)
        best: int | None = None
        best_common = -1
        for candidate in known[max(pos - 1, 0) : pos + 1]:
            common = bits - (candidate ^ value).bit_length()
            if common > best_common:
                best, best_common = candidate, common
        assert best is not None
        known_ip = str(ipaddress.IPv4Address(best) if version == 4 else ipaddress.IPv6Address(best))
        width = DISPLAY_PREFIX[version]
        network = ipaddress.ip_network(f"{known_ip}/{width}", strict=False)
        return _NearestKnown(known_ip, best_common, str(network))


def _other_identity_counts(pairs: pd.DataFrame | None, alerts: pd.DataFrame) -> tuple[pd.Series, pd.Series] | None:
    """Per alert: distinct identities on its IP in ``pairs`` other than its own; and own pair seen."""
    if pairs is None:
        return None
    if pairs.empty:
        zeros = pd.Series(0, index=alerts.index, dtype="int64")
        return zeros, pd.Series(False, index=alerts.index)
    relevant = pairs.loc[pairs["source_ip"].isin(alerts["source_ip"].unique()), ["entity", "source_ip"]]
    relevant = relevant.drop_duplicates()
    per_ip = relevant.groupby("source_ip")["entity"].nunique()
    totals = alerts["source_ip"].map(per_ip).fillna(0).astype("int64")
    own = pd.MultiIndex.from_frame(alerts[["entity", "source_ip"]]).isin(
        pd.MultiIndex.from_frame(relevant[["entity", "source_ip"]])
    )
    own_series = pd.Series(own, index=alerts.index)
    return totals - own_series.astype("int64"), own_series


def object_series(values: list[Any], index: pd.Index) -> pd.Series:
    """Object column that keeps ``None`` as None (a plain list assignment turns it into NaN)."""
    items = np.empty(len(values), dtype=object)
    for position, value in enumerate(values):  # item by item: a list value stays one item
        items[position] = value
    return pd.Series(items, index=index, dtype=object, copy=False)


def _window_text(window: tuple[DayLike, DayLike] | None) -> str:
    if not window:
        return "the training window"
    start, end = (as_day(d).isoformat() for d in window)
    return f"the training window {start}..{end}"


def _names_text(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def _optional_count(value: Any) -> int | None:
    if value is None or value is pd.NA or (not isinstance(value, str) and pd.isna(value)):
        return None
    return int(value)


def explain_alerts(
    alerts: pd.DataFrame,
    training_pairs: pd.DataFrame | None,
    day_pairs: pd.DataFrame | None,
    window: tuple[DayLike, DayLike] | None,
) -> pd.DataFrame:
    """Add why-columns, a ``severity`` and an ``explanation`` sentence to each alert.

    ``training_pairs`` (entity, source_ip, event_count) is what the model learned from, so the
    explanation speaks in its terms: was this IP ever seen for the identity, how close is it to
    the identity's known networks, and is the IP shared with other identities. ``day_pairs`` is
    every pair of the day (entity, source_ip). Added columns:

    ``entity_in_window`` (bool), ``entity_ips_in_window`` (int),
    ``ip_seen_for_entity_in_window`` (bool), ``events_for_pair_in_window`` (int),
    ``nearest_known_ip`` / ``nearest_known_network`` (str or None; network like
    ``"203.0.113.0/24 (shares /16)"``: the /24 (IPv4) or /64 (IPv6) around the identity's
    window address with the longest common prefix with the alert IP, and that prefix length),
    ``common_prefix_bits`` (int or None), ``other_identities_on_ip_today``,
    ``other_identities_on_ip_in_window`` (int, or None when that context was not given),
    ``event_names`` (writes first), ``write_event_names`` (CloudTrail ``readOnly: false``; None
    when the learning set predates it), ``user_agents`` (None when not known), ``error_count``
    and ``access_denied_count`` (None when not known), ``severity`` and ``explanation``.
    """
    out = alerts.copy().reset_index(drop=True)
    if out.empty:
        for column in _EXPLAIN_COLUMNS:
            out[column] = pd.Series(dtype="object")
        return out
    if training_pairs is None:
        training_pairs = pd.DataFrame(columns=["entity", "source_ip", "event_count"])
    train = training_pairs.loc[training_pairs["entity"].isin(out["entity"].unique())]
    if "event_count" not in train.columns:
        train = train.assign(event_count=1)

    per_pair = train.groupby(["entity", "source_ip"], sort=False)["event_count"].sum()
    pair_index = pd.MultiIndex.from_frame(out[["entity", "source_ip"]])
    pair_events = pd.Series(per_pair.reindex(pair_index).to_numpy(), index=out.index)
    out["ip_seen_for_entity_in_window"] = pair_events.notna().to_numpy(dtype=bool)
    out["events_for_pair_in_window"] = pair_events.fillna(0).astype("int64")
    ips_per_entity = train.groupby("entity")["source_ip"].nunique()
    out["entity_ips_in_window"] = out["entity"].map(ips_per_entity).fillna(0).astype("int64")
    out["entity_in_window"] = out["entity_ips_in_window"] > 0

    index = _EntityIpIndex(train)
    nearest = [index.nearest(e, ip) for e, ip in zip(out["entity"], out["source_ip"], strict=True)]
    out["nearest_known_ip"] = object_series([nk.known_ip if nk else None for nk in nearest], out.index)
    out["common_prefix_bits"] = pd.array([nk.common_bits if nk else None for nk in nearest], dtype="Int64")
    out["nearest_known_network"] = object_series(
        [f"{nk.network} (shares /{nk.common_bits})" if nk else None for nk in nearest], out.index
    )

    for column, pairs in (
        ("other_identities_on_ip_today", day_pairs),
        ("other_identities_on_ip_in_window", training_pairs),
    ):
        counts = _other_identity_counts(pairs, out)
        out[column] = counts[0] if counts is not None else None

    def column(name: str) -> list[Any]:
        return list(out[name]) if name in out.columns else [None] * len(out)

    writes = [optional_name_list(v) for v in column("write_event_names")]
    out["write_event_names"] = object_series([sorted(set(w)) if w is not None else None for w in writes], out.index)
    names = column("event_names")
    out["event_names"] = object_series([order_event_names(n, w) for n, w in zip(names, writes, strict=True)], out.index)
    out["user_agents"] = object_series([optional_name_list(v) for v in column("user_agents")], out.index)
    for name in ("error_count", "access_denied_count"):
        out[name] = pd.array([_optional_count(v) for v in column(name)], dtype="Int64")
    out["severity"] = [
        alert_severity(insight, bool(w) if w is not None else None, _optional_count(denied), bool(seen))
        for insight, w, denied, seen in zip(
            column("insight"),
            out["write_event_names"],
            out["access_denied_count"],
            out["ip_seen_for_entity_in_window"],
            strict=True,
        )
    ]
    out["explanation"] = [_explain_row(row, window) for row in out.to_dict("records")]
    return out


_EXPLAIN_COLUMNS = (
    "ip_seen_for_entity_in_window",
    "events_for_pair_in_window",
    "entity_ips_in_window",
    "entity_in_window",
    "nearest_known_ip",
    "common_prefix_bits",
    "nearest_known_network",
    "other_identities_on_ip_today",
    "other_identities_on_ip_in_window",
    "event_names",
    "write_event_names",
    "user_agents",
    "error_count",
    "access_denied_count",
    "severity",
    "explanation",
)


#: What each piece of the detector's evidence means, for a person (``{owner}``: the address's owner).
EVIDENCE_TEXT = {
    "novel_24": "a new address in a /24 this identity used",
    "novel_16": "a new /24 inside a /16 this identity used",
    "novel_12": "a /16 this identity never used",
    "novel_network": "a network this identity never used",
    "new_identity": "an identity with no history in the window",
    "known_network_today": "the identity also worked from a network it knows today",
    "novel_x_known_today": "the identity also worked from a network it knows today",
    "sibling_known_today": "its usual /24 in the same /16 was in use today too",
    "person_address": "the same person's other identity uses this address",
    "person_24": "the same person's other identity uses this /24",
    "provider_new": "an owner it never called from before ({owner})",
    "novel_x_provider_new": "an owner it never called from before ({owner})",
    "off_provider": "a machine identity that only ever called from cloud addresses, now from elsewhere",
    "off_provider_x_others": "a machine identity on an address people share",
    "aws_region_new": "an AWS address ({owner}) in a region it never called from",
    "aws_address": "an AWS address ({owner})",
    "cloud_address": "a cloud provider's address ({owner})",
    "family_new": "its first address of this IP version",
    "new_actions": "API calls it never made in the window",
    "novel_x_new_actions": "API calls it never made in the window",
    "new_user_agent": "a user agent it never used",
    "novel_x_new_user_agent": "a user agent it never used",
    "ip_insights": "IP Insights finds the address unlike this identity's networks",
    "novel_x_ip_insights": "IP Insights finds the address unlike this identity's networks",
    "events": "its volume of calls",
    "history_days": "a long history to compare with",
    "others_address_window": "other identities used this address in the window",
    "others_24_window": "other identities used this /24 in the window",
    "others_16_window": "other identities used this /16 in the window",
    "others_12_window": "other identities used this /12 in the window",
    "novel_x_others_window": "other identities used this network in the window",
    "others_address_today": "other identities used this address today",
    "others_24_today": "other identities used this /24 today",
    "novel_x_others_today": "other identities used this network today",
    "churn_24": "the identity often moves to new networks",
    "churn_16": "the identity often moves to new networks",
    "novel_x_churn_24": "the identity often moves to new networks",
    "novel_x_churn_16": "the identity often moves to new networks",
    "networks_16": "the identity uses many networks",
    "aws_share": "the identity usually calls from AWS",
    "cloud_share": "the identity usually calls from cloud addresses",
}


#: Where evidence argues *against* an alert, what it means then (the model's score of the pair
#: lowers the insight when it finds the address like the identity's own networks).
EVIDENCE_AGAINST_TEXT = {
    "ip_insights": "IP Insights finds the address like this identity's networks",
    "novel_x_ip_insights": "IP Insights finds the address like this identity's networks",
}


def evidence_text(names: Any, owner: Any, against: bool = False) -> str:
    """The named evidence as one phrase list (duplicates merged), with the address's owner filled in;
    ``against``: the evidence lowered the insight."""
    texts = {**EVIDENCE_TEXT, **EVIDENCE_AGAINST_TEXT} if against else EVIDENCE_TEXT
    phrases = [texts.get(str(n), str(n)).format(owner=owner or "no known owner") for n in as_name_list(names)]
    return "; ".join(dict.fromkeys(phrases))


def _evidence_sentence(row: dict[str, Any]) -> str | None:
    """What the detector found: what raised the insight and, where evidence disagrees, what lowered it."""
    if "evidence_for" not in row:
        return None
    support = evidence_text(row.get("evidence_for"), row.get("address_owner"))
    against = evidence_text(row.get("evidence_against"), row.get("address_owner"), against=True)
    if not support and not against:
        return None
    text = f"Evidence: {support or 'none strong on its own'}"
    if against:
        text += f"; against it: {against}"
    return text + "."


def _explain_row(row: dict[str, Any], window: tuple[DayLike, DayLike] | None) -> str:
    where = _window_text(window)
    ip = row.get("source_ip")
    parts: list[str] = []
    if not row["entity_in_window"]:
        parts.append(f"Identity not seen in {where}, so every IP is new for it.")
    elif row["ip_seen_for_entity_in_window"]:
        parts.append(
            f"IP {ip} was seen for this identity in {where} ({row['events_for_pair_in_window']} events) "
            "but scores as unusual."
        )
    else:
        known = row["entity_ips_in_window"]
        text = f"IP {ip} never seen for this identity in {where}, where it used {known} other IP"
        text += "s" if known != 1 else ""
        family = 6 if ":" in str(ip) else 4
        bits = _optional_count(row.get("common_prefix_bits"))
        none = "none of them" if known != 1 else "not"
        if not row.get("nearest_known_network"):
            text += f", {none} IPv{family}"
        elif bits is not None and bits >= NAMED_NEAREST_BITS[family]:
            text += f"; nearest known network {row['nearest_known_network']}"
        else:
            text += f", {none} in its /{NAMED_NEAREST_BITS[family]}"
        parts.append(text + ".")

    count = row.get("event_count")
    activity = f"Today: {int(count)} events" if count is not None and not pd.isna(count) else "Today:"
    first, last = _hhmm(row.get("first_seen")), _hhmm(row.get("last_seen"))
    if first and last:
        activity += f" {first}-{last} UTC"
    writes = row["write_event_names"]
    if writes is None:
        activity += "; writes not known (learning set without CloudTrail readOnly)"
    else:
        reads = len([n for n in row["event_names"] if n not in set(writes)])
        activity += f"; writes: {_names_text(writes)}" if writes else "; no writes"
        if reads:
            activity += f"; {reads} read-only call type{'s' if reads != 1 else ''}"
    errors, denied = row.get("error_count"), row.get("access_denied_count")
    if errors is not None and not pd.isna(errors) and errors:
        activity += f"; {int(errors)} failed call{'s' if errors != 1 else ''}"
        if denied is not None and not pd.isna(denied) and denied:
            activity += f" ({int(denied)} AccessDenied)"
    parts.append(activity + ".")

    today, window_count = row.get("other_identities_on_ip_today"), row.get("other_identities_on_ip_in_window")
    if today is not None and window_count is not None and not pd.isna(today) and not pd.isna(window_count):
        if today == 0 and window_count == 0:
            parts.append("No other identity used this IP today or in the window.")
        else:
            parts.append(f"Other identities on this IP: {int(today)} today, {int(window_count)} in the window.")
    evidence = _evidence_sentence(row)
    if evidence:
        parts.insert(1, evidence)
    if writes and not row["ip_seen_for_entity_in_window"]:
        parts.append("Check the writes in CloudTrail; if not expected, treat the credentials as compromised.")
    return " ".join(parts)
