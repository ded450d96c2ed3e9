"""OCSF rows (as Security Lake stores them) mapped to the activity table (``ACTIVITY_SCHEMA``).

* ``CLOUD_TRAIL_MGMT``: the entity is the caller's ARN, the pair's IP is ``src_endpoint.ip``
  (``src_endpoint.domain`` holds a service name instead, which is counted but is no pair).
  Source version 1.0 is OCSF 1.0.0-rc.2 (API Activity 3005, ARN in ``actor.user.uuid``,
  ``cloud.account_uid``); 2.0 is OCSF 1.1.0 (API Activity 6003, ARN in ``actor.user.uid``,
  ``cloud.account.uid``). Authentication 3002 and Account Change 3001 map the same way. One
  row per event, so the same event from CloudTrail and Security Lake still counts once.
* ``VPC_FLOW`` (4001) and ``ROUTE53`` (4003): the resource (instance, else network interface)
  paired with the *remote* endpoint, by direction, and the querying resource with each address
  its query resolved to (``ocsf_network.py``); one row per pair of the object, with its count.

Rows that cannot be read (no time, a class of another source) are rejected and counted by
reason, a sample of them quarantined; network rows that are readable but make no pair are
counted by reason in ``unpaired`` and never quarantined. Columns that do not fit the source and
version raise ``OcsfSchemaError`` naming the object, which the caller quarantines.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from proactive_assets.core.events import EVENTS_SCHEMA
from proactive_assets.core.ipnet import KIND_IP, classify_source
from proactive_assets.core.sources import ocsf_network
from proactive_assets.core.sources.ocsf_columns import (
    OcsfSchemaError,
    blank_to_null,
    column,
    combine,
    const,
    count_reasons,
    has_field,
    integers,
    reject,
    strings,
    timestamps,
)

CLOUD_TRAIL_MGMT = "CLOUD_TRAIL_MGMT"
VPC_FLOW = "VPC_FLOW"
ROUTE53 = "ROUTE53"
SUPPORTED_SOURCES: tuple[str, ...] = (CLOUD_TRAIL_MGMT, VPC_FLOW, ROUTE53)
SUPPORTED_VERSIONS: tuple[str, ...] = ("1.0", "2.0")

#: OCSF class_uid values accepted per (source, source version); rows of other classes are
#: rejected, and a file with no accepted row at all is a schema error (wrong source).
EXPECTED_CLASSES: dict[tuple[str, str], frozenset[int]] = {
    (CLOUD_TRAIL_MGMT, "1.0"): frozenset({3005, 3001, 3002}),
    (CLOUD_TRAIL_MGMT, "2.0"): frozenset({6003, 3001, 3002}),
    (VPC_FLOW, "1.0"): frozenset({4001}),
    (VPC_FLOW, "2.0"): frozenset({4001}),
    (ROUTE53, "1.0"): frozenset({4003}),
    (ROUTE53, "2.0"): frozenset({4003}),
}

#: Where the account id may live, by source version, most authoritative first. The
#: ``cloud`` account is the one whose logs these are; the OCSF examples' CloudTrail rows
#: lack it and only name the caller's account (``actor.user``), so that comes last, after
#: the key's ``accountId``. A structured ``account`` only exists from OCSF 1.0 GA on, and a
#: flat ``account_uid`` only before it: this is what tells the two versions apart.
ACCOUNT_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    (CLOUD_TRAIL_MGMT, "1.0"): ("cloud.account_uid", "actor.user.account_uid"),
    (CLOUD_TRAIL_MGMT, "2.0"): ("cloud.account.uid", "actor.user.account.uid"),
    (VPC_FLOW, "1.0"): ("cloud.account_uid",),
    (VPC_FLOW, "2.0"): ("cloud.account.uid",),
    (ROUTE53, "1.0"): ("cloud.account_uid",),
    (ROUTE53, "2.0"): ("cloud.account.uid",),
}
#: Where the caller's ARN lives in CloudTrail rows.
CLOUDTRAIL_ENTITY_FIELD = {"1.0": "actor.user.uuid", "2.0": "actor.user.uid"}

#: The activity table: the CloudTrail side's ``EVENTS_SCHEMA`` and how many events a row stands
#: for, until when (a network pair of an object, or of an Athena aggregate, is one row).
#: ``learning_set`` reads both kinds of table; a table without the two counts is one event a row.
ACTIVITY_SCHEMA = EVENTS_SCHEMA.append(pa.field("event_count", pa.int64())).append(
    pa.field("last_event_time", pa.timestamp("ms", tz="UTC"))
)
NETWORK_SOURCES: tuple[str, ...] = (VPC_FLOW, ROUTE53)
_EVENT_SOURCES = {VPC_FLOW: ocsf_network.VPC_FLOW_SOURCE, ROUTE53: ocsf_network.ROUTE53_SOURCE}
_MAX_REJECTED_EXAMPLES = 20


__all__ = ["OcsfSchemaError"]


def source_label(source: str) -> str:
    """The ``source`` column value that tells Security Lake rows from CloudTrail ones."""
    return f"security_lake:{source}"


@dataclass
class OcsfActivity:
    """Activity rows read from one Security Lake object, with what was left out and why."""

    key: str
    source: str
    source_version: str
    table: pa.Table
    rows_read: int
    rejected: dict[str, int] = field(default_factory=dict)
    rejected_examples: list[tuple[int, str]] = field(default_factory=list)
    unpaired: dict[str, int] = field(default_factory=dict)

    @property
    def rows_kept(self) -> int:
        return self.table.num_rows

    @property
    def events(self) -> int:
        """Events the rows stand for (a network row is a pair with its count)."""
        return int(pc.sum(self.table["event_count"]).as_py() or 0) if self.table.num_rows else 0

    @property
    def unpaired_count(self) -> int:
        return sum(self.unpaired.values())

    @property
    def rejected_count(self) -> int:
        return sum(self.rejected.values())

    @property
    def pair_count(self) -> int:
        return int(pc.sum(self.table["is_pair"]).as_py() or 0)


def read_ocsf_activity(
    table: pa.Table,
    source: str,
    source_version: str,
    source_key: str,
    *,
    key_account: str | None = None,
    key_region: str | None = None,
) -> OcsfActivity:
    """Map one object's OCSF rows to the activity table (``ACTIVITY_SCHEMA``).

    Raises ``OcsfSchemaError`` (naming ``source_key``) when the columns do not fit the
    source and version - fields of the other OCSF version, missing columns, or no row of
    an expected class - so the caller can quarantine the object. Rows that cannot be read
    are counted in ``rejected``, network rows that make no pair in ``unpaired``, by reason.
    """
    version = normalise_version(source_version)
    if source not in SUPPORTED_SOURCES:
        raise OcsfSchemaError(
            source_key,
            f"unsupported Security Lake source {source!r}; supported: {', '.join(SUPPORTED_SOURCES)}",
        )
    if version not in SUPPORTED_VERSIONS:
        raise OcsfSchemaError(source_key, f"unsupported source version {source_version!r} for {source}")
    account_fields = ACCOUNT_FIELDS[(source, version)]
    # Each entry is a group of alternatives: at least one of them must exist.
    required: list[tuple[str, ...]] = [("class_uid",), ("time",), ("cloud.region",)]
    required.append(account_fields)
    if source == CLOUD_TRAIL_MGMT:
        required.append((CLOUDTRAIL_ENTITY_FIELD[version],))
        required.append(("api.operation",))
        required.append(("src_endpoint.ip", "src_endpoint.domain"))
    elif source == VPC_FLOW:
        required.append(("src_endpoint.ip",))
        required.append(("dst_endpoint.ip",))
    else:
        required.append(("src_endpoint.ip", "src_endpoint.instance_uid"))
    _check_fields(table, required, source, version, source_key)

    n = table.num_rows
    event_time = timestamps(column(table, "time"), source_key)
    class_uid = integers(column(table, "class_uid"), "class_uid", source_key)
    accounts = [strings(column(table, path), n, source_key) for path in account_fields]
    region = strings(column(table, "cloud.region"), n, source_key)
    if key_account is not None:
        accounts.insert(1, const(key_account, n))
    if key_region is not None:
        region = pc.coalesce(region, pa.scalar(key_region))
    account = pc.coalesce(*accounts) if len(accounts) > 1 else accounts[0]

    reason = pa.nulls(n, pa.string())
    reason = reject(reason, pc.is_null(event_time), "missing time")
    reason = reject(reason, pc.is_null(class_uid), "missing class_uid")
    expected = EXPECTED_CLASSES[(source, version)]
    unexpected = pc.invert(pc.is_in(class_uid, value_set=pa.array(sorted(expected))))
    reason = reject(reason, unexpected, f"class_uid not in {sorted(expected)} for {source} {version}")
    if n and int(pc.sum(pc.and_(pc.invert(unexpected), pc.is_valid(class_uid))).as_py() or 0) == 0:
        found = sorted(v for v in pc.unique(class_uid).to_pylist() if v is not None)
        raise OcsfSchemaError(
            source_key,
            f"no row of class {sorted(expected)} expected for {source} {version}; found class_uid {found[:10]}",
        )
    rejected_mask = pc.is_valid(reason)
    rejected = count_reasons(reason, rejected_mask)
    rows = pc.indices_nonzero(rejected_mask).slice(0, _MAX_REJECTED_EXAMPLES)
    examples = list(zip(rows.to_pylist(), reason.take(rows).to_pylist(), strict=True))
    if source == CLOUD_TRAIL_MGMT:
        out = _cloudtrail_events(table, version, source_key, event_time, account, region)
        unpaired: dict[str, int] = {}
        if rejected:
            out = out.filter(pc.invert(rejected_mask))
    else:
        readable = pc.invert(rejected_mask)
        rows_table = table.filter(readable) if rejected else table
        base = pa.table({"event_time": event_time, "account": account, "region": region})
        base = base.filter(readable) if rejected else base
        reader = ocsf_network.vpc_flow_rows if source == VPC_FLOW else ocsf_network.route53_rows
        network = reader(rows_table, base, source_key)
        out, unpaired = _network_events(network, source, source_key)
    return OcsfActivity(
        key=source_key,
        source=source,
        source_version=version,
        table=out,
        rows_read=n,
        rejected=rejected,
        rejected_examples=examples,
        unpaired=unpaired,
    )


def _cloudtrail_events(
    table: pa.Table, version: str, key: str, event_time: pa.Array, account: pa.Array, region: pa.Array
) -> pa.Table:
    """One activity row per CloudTrail row (each one event)."""
    n = table.num_rows
    entity = blank_to_null(strings(column(table, CLOUDTRAIL_ENTITY_FIELD[version]), n, key))
    raw_ip = pc.coalesce(
        blank_to_null(strings(column(table, "src_endpoint.ip"), n, key)),
        blank_to_null(strings(column(table, "src_endpoint.domain"), n, key)),
    )
    source_kind, source_ip = classify_source_ips(raw_ip)
    is_pair = pc.and_(pc.equal(source_kind, KIND_IP), pc.is_valid(entity))
    return pa.table(
        {
            "event_time": event_time,
            "event_name": strings(column(table, "api.operation"), n, key),
            "event_source": strings(column(table, "api.service.name"), n, key),
            "identity_arn": entity,
            "identity_type": strings(column(table, "actor.user.type"), n, key),
            "account": account,
            "region": region,
            "source_ip": source_ip,
            "source_kind": source_kind,
            "is_pair": is_pair,
            "user_agent": strings(column(table, "http_request.user_agent"), n, key),
            "error_code": strings(column(table, "api.response.error"), n, key),
            "read_only": pa.nulls(n, pa.bool_()),  # OCSF has no readOnly: unknown
            "event_id": strings(column(table, "metadata.uid"), n, key),
            "source": const(source_label(CLOUD_TRAIL_MGMT), n),
            "source_file": const(key, n),
            "event_count": pa.array(np.ones(n, np.int64)),
            "last_event_time": event_time,
        },
        schema=ACTIVITY_SCHEMA,
    )


def _network_events(network: ocsf_network.NetworkRows, source: str, key: str) -> tuple[pa.Table, dict[str, int]]:
    """The network pairs as aggregated activity rows; remotes that are no IP join the unpaired counts."""
    rows = network.table
    unpaired = dict(network.unpaired)
    kind, canonical = classify_source_ips(rows.column("source_ip"))
    is_ip = pc.equal(kind, KIND_IP)
    dropped = rows.num_rows - int(pc.sum(is_ip).as_py() or 0)
    if dropped:
        unpaired[ocsf_network.NOT_AN_IP] = unpaired.get(ocsf_network.NOT_AN_IP, 0) + dropped
    rows = rows.set_column(rows.schema.get_field_index("source_ip"), "source_ip", canonical).filter(is_ip)
    return network_activity(ocsf_network.aggregate(rows), source, key), unpaired


def network_activity(pairs: pa.Table, source: str, source_file: str) -> pa.Table:
    """Aggregated network pairs (``ocsf_network.PAIR_KEYS`` + counts and times) as activity rows."""
    n = pairs.num_rows
    return pa.table(
        {
            "event_time": pairs.column("event_time"),
            "event_name": pairs.column("event_name"),
            "event_source": const(_EVENT_SOURCES[source], n),
            "identity_arn": pairs.column("identity_arn"),
            "identity_type": pairs.column("identity_type"),
            "account": pairs.column("account"),
            "region": pairs.column("region"),
            "source_ip": pairs.column("source_ip"),
            "source_kind": const(KIND_IP, n),
            "is_pair": pa.repeat(pa.scalar(True), n),
            "user_agent": pa.nulls(n, pa.string()),
            "error_code": pairs.column("error_code"),
            "read_only": pa.nulls(n, pa.bool_()),
            "event_id": pa.nulls(n, pa.string()),
            "source": const(source_label(source), n),
            "source_file": const(source_file, n),
            "event_count": pairs.column("event_count"),
            "last_event_time": pairs.column("last_event_time"),
        },
        schema=ACTIVITY_SCHEMA,
    )


#: The top-level OCSF columns the mapping reads (wide VPC Flow objects stay cheap to read).
OCSF_COLUMNS = frozenset(
    {
        "class_uid",
        "time",
        "cloud",
        "actor",
        "api",
        "src_endpoint",
        "dst_endpoint",
        "connection_info",
        "disposition_id",
        "answers",
        "query",
        "rcode",
        "http_request",
        "metadata",
    }
)


def classify_source_ips(values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """``(source_kind, source_ip)`` per row, calling ``classify_source`` once per distinct value.

    As on the CloudTrail side, an address becomes its canonical text and anything else (an
    AWS service host name, ``AWS Internal``) is kept as it is, so it can still be counted.
    """
    values = combine(values)
    distinct = pc.unique(values)
    kinds: list[str] = []
    texts: list[str | None] = []
    for value in distinct.to_pylist():
        kind, canonical = classify_source(value)
        kinds.append(kind)
        texts.append(canonical if canonical is not None else value)
    positions = pc.index_in(values, value_set=distinct)
    return (
        pa.array(kinds, pa.string()).take(positions),
        pa.array(texts, pa.string()).take(positions),
    )


def normalise_version(version: str) -> str:
    text = str(version).strip()
    return f"{text}.0" if text.isdigit() else text


def _check_fields(
    table: pa.Table,
    required: Iterable[tuple[str, ...]],
    source: str,
    version: str,
    key: str,
) -> None:
    missing = [" or ".join(group) for group in required if not any(has_field(table, path) for path in group)]
    if not missing:
        return
    message = f"columns do not fit {source} source version {version}"
    other = "2.0" if version == "1.0" else "1.0"
    hints = [p for p in ACCOUNT_FIELDS[(source, other)] if has_field(table, p)]
    if source == CLOUD_TRAIL_MGMT and other == "1.0" and has_field(table, CLOUDTRAIL_ENTITY_FIELD["1.0"]):
        hints.append(CLOUDTRAIL_ENTITY_FIELD["1.0"])
    if hints:
        message += f"; {', '.join(dict.fromkeys(hints))} present: the rows look like source version {other}"
    raise OcsfSchemaError(key, message, missing)
