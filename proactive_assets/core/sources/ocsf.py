"""OCSF rows (as Security Lake stores them) mapped to ``EVENTS_SCHEMA`` activity.

* ``CLOUD_TRAIL_MGMT``: the entity is the caller's ARN, the pair's IP is ``src_endpoint.ip``
  (``src_endpoint.domain`` holds a service name instead, which is counted but is no pair).
  Source version 1.0 is OCSF 1.0.0-rc.2 (API Activity 3005, ARN in ``actor.user.uuid``,
  ``cloud.account_uid``); 2.0 is OCSF 1.1.0 (API Activity 6003, ARN in ``actor.user.uid``,
  ``cloud.account.uid``). Authentication 3002 and Account Change 3001 map the same way.
* ``VPC_FLOW`` (4001) and ``ROUTE53`` (4003): as the Security Lake workshop does, the entity is
  ``src_endpoint.instance_uid`` and the IP ``src_endpoint.ip``; rows where either is null or
  ``'-'`` are dropped (ingress flows carry the instance on ``dst_endpoint``, so they make no pair).

Rows that cannot be used are counted by reason; columns that do not fit the source and version
raise ``OcsfSchemaError`` naming the object, which the caller quarantines.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from proactive_assets.core.events import EVENTS_SCHEMA
from proactive_assets.core.ipnet import KIND_IP, classify_source

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

#: Columns of the normalised activity table: identical to the CloudTrail side's
#: ``EVENTS_SCHEMA`` (a test holds them together), so the two concatenate as they are.
ACTIVITY_SCHEMA = EVENTS_SCHEMA

_INSTANCE_DEFAULTS = {
    VPC_FLOW: ("Traffic", "vpc-flow-logs"),
    ROUTE53: ("Query", "route53-resolver"),
}
_NO_VALUE = ("", "-")
_MAX_REJECTED_EXAMPLES = 20


class OcsfSchemaError(ValueError):
    """An object whose columns do not fit the OCSF mapping its key promises.

    The caller quarantines the object (key and message) and carries on with the day.
    """

    def __init__(self, key: str, message: str, missing: Sequence[str] = ()) -> None:
        self.key = key
        self.missing = tuple(missing)
        text = f"{key}: {message}"
        if self.missing:
            text += f" (missing: {', '.join(self.missing)})"
        super().__init__(text)


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

    @property
    def rows_kept(self) -> int:
        return self.table.num_rows

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
    """Map one object's OCSF rows to the normalised activity table (``ACTIVITY_SCHEMA``).

    Raises ``OcsfSchemaError`` (naming ``source_key``) when the columns do not fit the
    source and version - fields of the other OCSF version, missing columns, or no row of
    an expected class - so the caller can quarantine the object. Rows that cannot be used
    are counted in ``rejected`` by reason rather than failing the object.
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
    else:
        required.append(("src_endpoint.ip",))
    _check_fields(table, required, source, version, source_key)

    n = table.num_rows
    event_time = _timestamps(_column(table, "time"), source_key)
    class_uid = _integers(_column(table, "class_uid"), "class_uid", source_key)
    accounts = [_strings(_column(table, path), n, source_key) for path in account_fields]
    region = _strings(_column(table, "cloud.region"), n, source_key)
    if key_account is not None:
        accounts.insert(1, _const(key_account, n))
    if key_region is not None:
        region = pc.coalesce(region, pa.scalar(key_region))
    account = pc.coalesce(*accounts) if len(accounts) > 1 else accounts[0]

    reason = pa.nulls(n, pa.string())
    reason = _reject(reason, pc.is_null(event_time), "missing time")
    reason = _reject(reason, pc.is_null(class_uid), "missing class_uid")
    expected = EXPECTED_CLASSES[(source, version)]
    unexpected = pc.invert(pc.is_in(class_uid, value_set=pa.array(sorted(expected))))
    reason = _reject(
        reason,
        unexpected,
        f"class_uid not in {sorted(expected)} for {source} {version}",
    )
    if n and int(pc.sum(pc.and_(pc.invert(unexpected), pc.is_valid(class_uid))).as_py() or 0) == 0:
        found = sorted(v for v in pc.unique(class_uid).to_pylist() if v is not None)
        raise OcsfSchemaError(
            source_key,
            f"no row of class {sorted(expected)} expected for {source} {version}; found class_uid {found[:10]}",
        )

    if source == CLOUD_TRAIL_MGMT:
        entity = _blank_to_null(_strings(_column(table, CLOUDTRAIL_ENTITY_FIELD[version]), n, source_key))
        raw_ip = pc.coalesce(
            _blank_to_null(_strings(_column(table, "src_endpoint.ip"), n, source_key)),
            _blank_to_null(_strings(_column(table, "src_endpoint.domain"), n, source_key)),
        )
        columns = {
            "event_name": _strings(_column(table, "api.operation"), n, source_key),
            "event_source": _strings(_column(table, "api.service.name"), n, source_key),
            "identity_type": _strings(_column(table, "actor.user.type"), n, source_key),
            "user_agent": _strings(_column(table, "http_request.user_agent"), n, source_key),
            "error_code": _strings(_column(table, "api.response.error"), n, source_key),
        }
    else:
        default_name, event_source = _INSTANCE_DEFAULTS[source]
        entity = _blank_to_null(_strings(_column(table, "src_endpoint.instance_uid"), n, source_key))
        raw_ip = _blank_to_null(_strings(_column(table, "src_endpoint.ip"), n, source_key))
        reason = _reject(reason, pc.is_null(entity), "no src_endpoint.instance_uid")
        reason = _reject(reason, pc.is_null(raw_ip), "no src_endpoint.ip")
        activity = _strings(_column(table, "activity_name"), n, source_key)
        columns = {
            "event_name": pc.coalesce(activity, pa.scalar(default_name)),
            "event_source": _const(event_source, n),
            "identity_type": _const("Instance", n),
            "user_agent": pa.nulls(n, pa.string()),
            "error_code": pa.nulls(n, pa.string()),
        }

    source_kind, source_ip = classify_source_ips(raw_ip)
    is_pair = pc.and_(pc.equal(source_kind, KIND_IP), pc.is_valid(entity))
    out = pa.table(
        {
            "event_time": event_time,
            "event_name": columns["event_name"],
            "event_source": columns["event_source"],
            "identity_arn": entity,
            "identity_type": columns["identity_type"],
            "account": account,
            "region": region,
            "source_ip": source_ip,
            "source_kind": source_kind,
            "is_pair": is_pair,
            "user_agent": columns["user_agent"],
            "error_code": columns["error_code"],
            "read_only": pa.nulls(n, pa.bool_()),  # OCSF has no readOnly: unknown
            "event_id": _strings(_column(table, "metadata.uid"), n, source_key),
            "source": _const(source_label(source), n),
            "source_file": _const(source_key, n),
        },
        schema=ACTIVITY_SCHEMA,
    )
    rejected_mask = pc.is_valid(reason)
    rejected, examples = _rejections(reason, rejected_mask)
    if rejected:
        out = out.filter(pc.invert(rejected_mask))
    return OcsfActivity(
        key=source_key,
        source=source,
        source_version=version,
        table=out,
        rows_read=n,
        rejected=rejected,
        rejected_examples=examples,
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
        "http_request",
        "activity_name",
        "metadata",
    }
)


def classify_source_ips(values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """``(source_kind, source_ip)`` per row, calling ``classify_source`` once per distinct value.

    As on the CloudTrail side, an address becomes its canonical text and anything else (an
    AWS service host name, ``AWS Internal``) is kept as it is, so it can still be counted.
    """
    values = _combine(values)
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


def _has_field(table: pa.Table, path: str) -> bool:
    type_ = None
    for index, name in enumerate(path.split(".")):
        if index == 0:
            if name not in table.column_names:
                return False
            type_ = table.schema.field(name).type
            continue
        if not pa.types.is_struct(type_) or type_.get_field_index(name) < 0:
            return False
        type_ = type_.field(name).type
    return True


def _check_fields(
    table: pa.Table,
    required: Iterable[tuple[str, ...]],
    source: str,
    version: str,
    key: str,
) -> None:
    missing = [" or ".join(group) for group in required if not any(_has_field(table, path) for path in group)]
    if not missing:
        return
    message = f"columns do not fit {source} source version {version}"
    other = "2.0" if version == "1.0" else "1.0"
    hints = [p for p in ACCOUNT_FIELDS[(source, other)] if _has_field(table, p)]
    if source == CLOUD_TRAIL_MGMT and other == "1.0" and _has_field(table, CLOUDTRAIL_ENTITY_FIELD["1.0"]):
        hints.append(CLOUDTRAIL_ENTITY_FIELD["1.0"])
    if hints:
        message += f"; {', '.join(dict.fromkeys(hints))} present: the rows look like source version {other}"
    raise OcsfSchemaError(key, message, missing)


def _column(table: pa.Table, path: str) -> pa.Array | None:
    """A (possibly nested) field as one array; struct parents' nulls propagate."""
    if not _has_field(table, path):
        return None
    names = path.split(".")
    array = _combine(table.column(names[0]))
    for name in names[1:]:
        array = pc.struct_field(array, name)
    return array


def _combine(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    return values


def _strings(array: pa.Array | None, n: int, key: str) -> pa.Array:
    if array is None:
        return pa.nulls(n, pa.string())
    if pa.types.is_string(array.type):
        return array
    if pa.types.is_nested(array.type):
        raise OcsfSchemaError(key, f"expected a scalar column, found {array.type}")
    try:
        return pc.cast(array, pa.string())
    except pa.ArrowException as exc:
        raise OcsfSchemaError(key, f"cannot read {array.type} as text: {exc}") from None


def _integers(array: pa.Array | None, name: str, key: str) -> pa.Array:
    assert array is not None
    try:
        return pc.cast(array, pa.int64())
    except pa.ArrowException as exc:
        raise OcsfSchemaError(key, f"{name} is {array.type}, not an integer: {exc}") from None


def _timestamps(array: pa.Array | None, key: str) -> pa.Array:
    """``time`` as UTC milliseconds: OCSF stores epoch ms; a timestamp column also works."""
    assert array is not None
    target = pa.timestamp("ms", tz="UTC")
    try:
        if pa.types.is_integer(array.type):
            return pc.cast(pc.cast(array, pa.int64()), target)
        if pa.types.is_timestamp(array.type):
            return pc.cast(array, target, safe=False)
    except pa.ArrowException as exc:
        raise OcsfSchemaError(key, f"cannot read time ({array.type}): {exc}") from None
    raise OcsfSchemaError(key, f"time is {array.type}, expected epoch milliseconds")


def _const(value: str, n: int) -> pa.Array:
    """A string column of one repeated value, built without a Python list per row."""
    return pa.repeat(pa.scalar(value, pa.string()), n)


def _blank_to_null(array: pa.Array) -> pa.Array:
    blank = pc.is_in(pc.utf8_trim_whitespace(array), value_set=pa.array(_NO_VALUE))
    return pc.if_else(blank, pa.scalar(None, pa.string()), array)


def _reject(reason: pa.Array, condition: pa.Array, text: str) -> pa.Array:
    """Record ``text`` for rows matching ``condition`` that have no earlier reason."""
    condition = pc.fill_null(condition, True)
    return pc.if_else(pc.and_(pc.is_null(reason), condition), pa.scalar(text), reason)


def _rejections(reason: pa.Array, mask: pa.Array) -> tuple[dict[str, int], list[tuple[int, str]]]:
    if not pc.any(mask).as_py():
        return {}, []
    counts = pc.value_counts(reason.filter(mask))
    rejected = {
        str(value): int(count)
        for value, count in zip(
            counts.field("values").to_pylist(),
            counts.field("counts").to_pylist(),
            strict=True,
        )
    }
    rows = pc.indices_nonzero(mask).slice(0, _MAX_REJECTED_EXAMPLES)
    examples = list(zip(rows.to_pylist(), reason.take(rows).to_pylist(), strict=True))
    return rejected, examples
