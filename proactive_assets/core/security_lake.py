"""Amazon Security Lake: object keys, SQS notifications and OCSF rows as (entity, IP) activity.

Security Lake writes OCSF-normalised Parquet under
``aws/<SOURCE>/<version>/region=<r>/accountId=<id>/eventDay=<YYYYMMDD>/<hash>.gz.parquet``
and announces each new object on a subscriber SQS queue. This module turns a notification
into object keys, a key into its partition values, and an object's rows into the same
normalised activity table that the CloudTrail ingestion produces, so both feed one
learning set.

Mappings (SEEDS_SPEC 5.1-5.4):

* ``CLOUD_TRAIL_MGMT``: the entity is the caller's ARN, the pair's IP is ``src_endpoint.ip``
  (``src_endpoint.domain`` holds a service name instead, which is counted but is no pair).
  Source version 1.0 is OCSF 1.0.0-rc.2 (API Activity 3005, ARN in ``actor.user.uuid``,
  ``cloud.account_uid``); 2.0 is OCSF 1.1.0 (API Activity 6003, ARN in ``actor.user.uid``,
  ``cloud.account.uid``). Authentication 3002 and Account Change 3001 map the same way.
* ``VPC_FLOW`` (4001) and ``ROUTE53`` (4003): as the Security Lake workshop does, the entity is
  ``src_endpoint.instance_uid`` and the IP ``src_endpoint.ip``; rows where either is null or
  ``'-'`` are dropped (ingress flows carry the instance on ``dst_endpoint``, so they make no
  pair).

No Dagster here: the assets, sensors and benchmarks call these functions.
"""

import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from proactive_assets.core.cloudtrail import EVENTS_SCHEMA
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


class MalformedNotification(ValueError):
    """An SQS body that is neither an S3 notification nor an EventBridge S3 event.

    The caller logs it and leaves the message on the queue, so the queue's redrive policy
    moves it to the dead-letter queue instead of it being silently lost.
    """


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


# --------------------------------------------------------------------------- object keys


@dataclass(frozen=True)
class SecurityLakeObject:
    """Partition values of one Security Lake object, read from its key."""

    key: str
    source: str
    source_version: str | None
    region: str
    account: str
    day: date
    custom: bool = False

    @property
    def supported(self) -> bool:
        """True when ``read_ocsf_activity`` knows how to map this object's rows."""
        return not self.custom and self.source in SUPPORTED_SOURCES and self.source_version in SUPPORTED_VERSIONS

    @property
    def source_label(self) -> str:
        """Value of the ``source`` column for rows read from this object."""
        return source_label(self.source)


_KEY_RE = re.compile(
    r"(?:^|/)(?P<kind>aws|ext)/(?P<source>[^/=]+)/(?:(?P<version>\d+\.\d+)/)?"
    r"region=(?P<region>[^/]+)/accountId=(?P<account>\d{12})/"
    r"eventDay=(?P<day>\d{8})/[^/]+\.parquet$"
)


def parse_security_lake_key(key: str) -> SecurityLakeObject | None:
    """Partition values of a Security Lake object key, or None for any other key.

    Native sources (``aws/``) must carry a version; custom sources (``ext/``) may omit it.
    Sources this project cannot map still parse, with ``supported`` False, so a listing can
    report them instead of silently ignoring them.
    """
    match = _KEY_RE.search(key)
    if match is None:
        return None
    custom = match["kind"] == "ext"
    if not custom and match["version"] is None:
        return None
    try:
        day = datetime.strptime(match["day"], "%Y%m%d").date()
    except ValueError:
        return None
    return SecurityLakeObject(
        key=key,
        source=match["source"],
        source_version=match["version"],
        region=match["region"],
        account=match["account"],
        day=day,
        custom=custom,
    )


def source_label(source: str) -> str:
    """The ``source`` column value that tells Security Lake rows from CloudTrail ones."""
    return f"security_lake:{source}"


def security_lake_key(source: str, version: str, region: str, account: str, day: date, name: str) -> str:
    """The key Security Lake gives an object (inverse of ``parse_security_lake_key``)."""
    return f"aws/{source}/{version}/region={region}/accountId={account}/eventDay={day:%Y%m%d}/{name}"


# ------------------------------------------------------------------------ SQS messages


def parse_sqs_message_body(
    body: str | bytes | Mapping[str, Any],
) -> list[tuple[str, str]]:
    """``(bucket, key)`` of every created object announced by one SQS message body.

    Accepts the body as SQS delivers it (a JSON string) or already decoded (a dict, as in
    the workshop's Lambda test event), in the S3 event-notification shape
    (``Records[].s3``; keys are URL-encoded, so they are ``unquote_plus``-decoded), the
    EventBridge shape (``detail.bucket``/``detail.object``; decoded the same way, as the
    workshop does - Security Lake keys contain neither ``+`` nor ``%``) or wrapped in an
    SNS notification (``{"Type": "Notification", "Message": "<json>"}``).

    Rule for everything else: the S3 ``s3:TestEvent`` (sent once when the notification is
    configured) and well-formed events about something other than a created object give an
    empty list; a body that is not JSON or has neither shape raises
    ``MalformedNotification``.
    """
    doc = _load_json(body, "SQS body")
    if isinstance(doc, dict) and doc.get("Type") == "Notification" and "Message" in doc:
        doc = _load_json(doc["Message"], "SNS Message")
    if not isinstance(doc, dict):
        raise MalformedNotification(f"notification is a {type(doc).__name__}, not an object")
    if doc.get("Event") == "s3:TestEvent":
        return []
    detail = doc.get("detail")
    records = doc.get("Records")
    if isinstance(detail, dict):
        objects = _eventbridge_objects(doc, detail)
    elif records is not None:
        objects = _s3_notification_objects(records)
    else:
        raise MalformedNotification(
            "body has neither 'Records' (S3 notification) nor 'detail' (EventBridge); "
            f"top-level fields: {sorted(doc)[:10]}"
        )
    return list(dict.fromkeys(objects))


def _load_json(value: Any, what: str) -> Any:
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise MalformedNotification(f"{what} is not JSON: {exc}") from None
    if isinstance(value, Mapping):
        return dict(value)
    raise MalformedNotification(f"{what} is a {type(value).__name__}, not JSON text or a dict")


def _eventbridge_objects(doc: dict[str, Any], detail: dict[str, Any]) -> list[tuple[str, str]]:
    detail_type = doc.get("detail-type")
    if detail_type is not None and detail_type != "Object Created":
        return []
    bucket = _nested_str(detail, "bucket", "name")
    key = _nested_str(detail, "object", "key")
    if bucket is None or key is None:
        raise MalformedNotification("EventBridge event without detail.bucket.name/object.key")
    return [(bucket, unquote_plus(key))]


def _s3_notification_objects(records: Any) -> list[tuple[str, str]]:
    if not isinstance(records, list) or not records:
        raise MalformedNotification("'Records' is not a non-empty list")
    objects = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise MalformedNotification(f"Records[{index}] is not an object")
        event_name = record.get("eventName")
        if isinstance(event_name, str) and not event_name.startswith("ObjectCreated"):
            continue
        s3 = record.get("s3")
        bucket = _nested_str(s3, "bucket", "name")
        key = _nested_str(s3, "object", "key")
        if bucket is None or key is None:
            raise MalformedNotification(
                f"Records[{index}] has no s3.bucket.name/s3.object.key (eventSource={record.get('eventSource')!r})"
            )
        objects.append((bucket, unquote_plus(key)))
    return objects


def _nested_str(doc: Any, *path: str) -> str | None:
    for name in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(name)
    return doc if isinstance(doc, str) and doc else None


# --------------------------------------------------------------------- OCSF -> activity


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


def read_ocsf_activity(table: pa.Table, source: str, source_version: str, source_key: str) -> OcsfActivity:
    """Map one object's OCSF rows to the normalised activity table (``ACTIVITY_SCHEMA``).

    Raises ``OcsfSchemaError`` (naming ``source_key``) when the columns do not fit the
    source and version - fields of the other OCSF version, missing columns, or no row of
    an expected class - so the caller can quarantine the object. Rows that cannot be used
    are counted in ``rejected`` by reason rather than failing the object.
    """
    version = _normalise_version(source_version)
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
    key_info = parse_security_lake_key(source_key)
    event_time = _timestamps(_column(table, "time"), source_key)
    class_uid = _integers(_column(table, "class_uid"), "class_uid", source_key)
    accounts = [_strings(_column(table, path), n, source_key) for path in account_fields]
    region = _strings(_column(table, "cloud.region"), n, source_key)
    if key_info is not None:
        accounts.insert(1, _const(key_info.account, n))
        region = pc.coalesce(region, pa.scalar(key_info.region))
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


def read_ocsf_parquet(data: bytes, key: str) -> OcsfActivity:
    """Read one Security Lake Parquet object (its bytes and key) into activity rows.

    Only the top-level columns the mapping needs are read, which keeps wide VPC-flow
    objects cheap. An unparseable key, an unsupported source or unreadable Parquet raises
    ``OcsfSchemaError`` naming the key.
    """
    info = parse_security_lake_key(key)
    if info is None:
        raise OcsfSchemaError(key, "not a Security Lake object key")
    if not info.supported:
        raise OcsfSchemaError(
            key,
            f"unsupported Security Lake source {info.source!r} version {info.source_version!r}",
        )
    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
        names = parquet.schema_arrow.names
        wanted = [name for name in names if name in _TOP_LEVEL_COLUMNS]
        table = parquet.read(columns=wanted)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise OcsfSchemaError(key, f"unreadable Parquet: {exc}") from None
    return read_ocsf_activity(table, info.source, info.source_version or "", key)


_TOP_LEVEL_COLUMNS = frozenset(
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


def _normalise_version(version: str) -> str:
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


# ------------------------------------------------------------------ synthetic data


_CLOUDTRAIL_CALLS = (
    ("s3.amazonaws.com", "GetObject"),
    ("s3.amazonaws.com", "ListBuckets"),
    ("ec2.amazonaws.com", "DescribeInstances"),
    ("ec2.amazonaws.com", "RunInstances"),
    ("iam.amazonaws.com", "ListRoles"),
    ("iam.amazonaws.com", "CreateAccessKey"),
    ("sts.amazonaws.com", "AssumeRole"),
    ("sts.amazonaws.com", "GetCallerIdentity"),
    ("kms.amazonaws.com", "Decrypt"),
    ("secretsmanager.amazonaws.com", "GetSecretValue"),
    ("logs.amazonaws.com", "PutLogEvents"),
    ("lambda.amazonaws.com", "ListFunctions"),
)
_USER_AGENTS = (
    "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#6.1 lang/python#3.11.6",
    "aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64.amzn.2",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 Chrome/120.0",
    "aws-sdk-go-v2/1.24.0 os/linux lang/go#1.21.5 md/GOOS#linux api/s3#1.47.0",
)
_SERVICE_CALLERS = (
    "lambda.amazonaws.com",
    "ec2.amazonaws.com",
    "cloudformation.amazonaws.com",
)
_ERROR_CODES = ("AccessDenied", "ThrottlingException", "NoSuchEntity")
_QUERY_NAMES = (
    "s3.us-east-1.amazonaws.com.",
    "sts.amazonaws.com.",
    "api.github.com.",
    "pypi.org.",
    "ssm.us-east-1.amazonaws.com.",
    "example.com.",
)


def make_ocsf_table(
    source: str,
    version: str,
    rows: int,
    seed: int,
    *,
    day: date = date(2024, 1, 1),
    account: str = "123456789012",
    region: str = "us-east-1",
    entities: int = 50,
    population_seed: int | None = None,
) -> pa.Table:
    """OCSF rows shaped like Security Lake stores them (nested structs, full schema).

    For tests and benchmarks. ``population_seed`` (default ``seed``) fixes who exists -
    identities or instances and their usual IPs - so several days generated with different
    ``seed`` values describe the same population. Rows are vectorised with NumPy, so
    millions of rows take seconds.
    """
    version = _normalise_version(version)
    if source not in SUPPORTED_SOURCES or version not in SUPPORTED_VERSIONS:
        raise ValueError(f"no generator for {source} {version}")
    rng = np.random.default_rng(seed)
    population = _Population(source, account, entities, seed if population_seed is None else population_seed)
    day_start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    times = np.sort(day_start + rng.integers(0, 86_400_000, rows, dtype=np.int64))
    common = {
        "time": pa.array(times, pa.int64()),
        "cloud": _cloud_struct(version, account, region, rows),
        "metadata": _metadata_struct(source, version, rows),
        "severity_id": pa.array(np.ones(rows, np.int32)),
    }
    if source == CLOUD_TRAIL_MGMT:
        body = _cloudtrail_columns(version, rows, rng, population)
    else:
        body = _instance_columns(source, rows, rng, population)
    class_uid = body.pop("class_uid")
    activity_id = body.pop("activity_id")
    columns = {
        "class_uid": class_uid,
        "category_uid": pa.array((class_uid.to_numpy() // 1000).astype(np.int32)),
        "activity_id": activity_id,
        "type_uid": pa.array(class_uid.to_numpy().astype(np.int64) * 100 + activity_id.to_numpy()),
        **common,
        **body,
    }
    return pa.table(columns)


class _Population:
    """Entities of one (source family, account) and the IPs each one usually uses."""

    def __init__(self, source: str, account: str, entities: int, seed: int) -> None:
        digest = hashlib.sha256(f"{seed}/{source}/{account}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        self.count = max(1, entities)
        if source == CLOUD_TRAIL_MGMT:
            names = []
            types = []
            for index in range(self.count):
                if index % 3 == 2:
                    names.append(f"arn:aws:sts::{account}:assumed-role/Role{index % 7}/session{index}")
                    types.append("AssumedRole")
                else:
                    names.append(f"arn:aws:iam::{account}:user/user{index:04d}")
                    types.append("IAMUser")
            self.ids = pa.array(names, pa.string())
            self.types = pa.array(types, pa.string())
            # Each identity works from a few addresses in its own public /24.
            nets = rng.integers(1, 223, (self.count, 3))
            hosts = rng.integers(1, 255, (self.count, 3))
            ips = [
                f"{(n[0] % 200) + 11}.{n[1]}.{n[2] % 250}.{h}" for n, row in zip(nets, hosts, strict=True) for h in row
            ]
        else:
            self.ids = pa.array(
                [f"i-{int(v):017x}" for v in rng.integers(0, 2**63, self.count)],
                pa.string(),
            )
            self.types = pa.array(["Instance"] * self.count, pa.string())
            octets = rng.integers(0, 256, (self.count, 2))
            ips = [f"10.0.{a}.{max(1, int(b))}" for a, b in octets for _ in range(3)]
        self.ips = pa.array(ips, pa.string())  # three per entity, entity-major
        self.principals = pa.array(
            [f"AIDA{int(v):016X}" for v in rng.integers(0, 2**62, self.count)],
            pa.string(),
        )
        activity = 1.0 / (1.0 + rng.permutation(self.count))
        self.weights = activity / activity.sum()
        self.account = account
        public = rng.integers(1, 255, (256, 4))
        #: Internet addresses: remote ends of flows, DNS answers, strangers' API calls.
        self.public = pa.array([f"{(a % 200) + 11}.{b}.{c}.{d}" for a, b, c, d in public], pa.string())
        if source == CLOUD_TRAIL_MGMT:
            self.strangers = self.public
        else:  # an instance seen on another VPC address (a second ENI, a new lease)
            private = rng.integers(1, 255, (256, 2))
            self.strangers = pa.array([f"10.1.{a}.{b}" for a, b in private], pa.string())

    def pick(self, rng: np.random.Generator, rows: int) -> tuple[np.ndarray, pa.Array]:
        """Entity index per row (a few busy, many quiet), and that entity's usual IP.

        About 2% of rows come from a stranger's address instead.
        """
        who = rng.choice(self.count, rows, p=self.weights)
        ip_index = who * 3 + rng.integers(0, 3, rows)
        ips = self.ips.take(pa.array(ip_index))
        stranger = rng.random(rows) < 0.02
        if stranger.any():
            random_ips = self.strangers.take(pa.array(rng.integers(0, 256, rows)))
            ips = pc.if_else(pa.array(stranger), random_ips, ips)
        return who, ips


def _cloud_struct(version: str, account: str, region: str, rows: int) -> pa.StructArray:
    provider = _const("AWS", rows)
    region_array = _const(region, rows)
    account_array = _const(account, rows)
    if version == "1.0":
        return pa.StructArray.from_arrays(
            [provider, region_array, account_array],
            ["provider", "region", "account_uid"],
        )
    account_struct = pa.StructArray.from_arrays([account_array], ["uid"])
    return pa.StructArray.from_arrays([provider, region_array, account_struct], ["provider", "region", "account"])


def _metadata_struct(source: str, version: str, rows: int) -> pa.StructArray:
    product_name, feature = {
        CLOUD_TRAIL_MGMT: ("CloudTrail", "Management"),
        VPC_FLOW: ("Amazon VPC", "Flowlogs"),
        ROUTE53: ("Route 53", "Resolver Query Logs"),
    }[source]
    ocsf = "1.0.0-rc.2" if version == "1.0" else "1.1.0"

    def const(value: str) -> pa.Array:
        return _const(value, rows)

    product = pa.StructArray.from_arrays(
        [
            const(product_name),
            const("AWS"),
            pa.StructArray.from_arrays([const(feature)], ["name"]),
        ],
        ["name", "vendor_name", "feature"],
    )
    return pa.StructArray.from_arrays([const(ocsf), product], ["version", "product"])


def _null_where(array: pa.Array, mask: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(mask), pa.scalar(None, array.type), array)


def _cloudtrail_columns(
    version: str, rows: int, rng: np.random.Generator, population: _Population
) -> dict[str, pa.Array]:
    who, ips = population.pick(rng, rows)
    service_call = rng.random(rows) < 0.05  # AWSService callers: no ARN, domain not IP
    who_index = pa.array(who)
    arn = _null_where(population.ids.take(who_index), service_call)
    user_type = pc.if_else(
        pa.array(service_call),
        pa.scalar("AWSService"),
        population.types.take(who_index),
    )
    principal = _null_where(population.principals.take(who_index), service_call)
    account_uid = _null_where(_const(population.account, rows), service_call)
    callers = pa.array(_SERVICE_CALLERS).take(pa.array(rng.integers(0, len(_SERVICE_CALLERS), rows)))
    ip = _null_where(ips, service_call)
    domain = _null_where(callers, ~service_call)
    calls = rng.integers(0, len(_CLOUDTRAIL_CALLS), rows)
    services = pa.array([s for s, _ in _CLOUDTRAIL_CALLS]).take(pa.array(calls))
    operations = pa.array([o for _, o in _CLOUDTRAIL_CALLS]).take(pa.array(calls))
    failed = rng.random(rows) < 0.03
    errors = _null_where(
        pa.array(_ERROR_CODES).take(pa.array(rng.integers(0, len(_ERROR_CODES), rows))),
        ~failed,
    )
    agents = pa.array(_USER_AGENTS).take(pa.array(rng.integers(0, len(_USER_AGENTS), rows)))
    agents = pc.if_else(pa.array(service_call), callers, agents)
    request_ids = pc.cast(pa.array(rng.integers(0, 2**62, rows)), pa.string())
    if version == "1.0":
        user = pa.StructArray.from_arrays(
            [
                user_type,
                arn,
                principal,
                account_uid,
                _null_where(principal, ~service_call),
            ],
            ["type", "uuid", "uid", "account_uid", "credential_uid"],
        )
        api_class = 3005
    else:
        account_struct = pa.StructArray.from_arrays([account_uid], ["uid"])
        user = pa.StructArray.from_arrays(
            [user_type, arn, principal, account_struct],
            ["type", "uid", "uid_alt", "account"],
        )
        api_class = 6003
    actor = pa.StructArray.from_arrays([user, _null_where(callers, ~service_call)], ["user", "invoked_by"])
    response = pa.StructArray.from_arrays(
        [errors, _null_where(_const("denied", rows), ~failed)],
        ["error", "message"],
    )
    api = pa.StructArray.from_arrays(
        [
            operations,
            pa.StructArray.from_arrays([services], ["name"]),
            pa.StructArray.from_arrays([request_ids], ["uid"]),
            response,
        ],
        ["operation", "service", "request", "response"],
    )
    is_login = pc.equal(operations, "AssumeRole").to_numpy(zero_copy_only=False)
    class_uid = np.where(is_login & (rng.random(rows) < 0.3), 3002, api_class)
    activity_id = np.where(class_uid == 3002, 1, 2).astype(np.int32)
    return {
        "class_uid": pa.array(class_uid.astype(np.int32)),
        "activity_id": pa.array(activity_id),
        "actor": actor,
        "api": api,
        "src_endpoint": pa.StructArray.from_arrays([ip, domain], ["ip", "domain"]),
        "http_request": pa.StructArray.from_arrays([agents], ["user_agent"]),
        "status": pc.if_else(pa.array(failed), pa.scalar("Failure"), pa.scalar("Success")),
    }


def _instance_columns(source: str, rows: int, rng: np.random.Generator, population: _Population) -> dict[str, pa.Array]:
    who, own_ips = population.pick(rng, rows)
    instance = population.ids.take(pa.array(who))
    outsiders = population.public.take(pa.array(rng.integers(0, 256, rows)))
    ports = pa.array(rng.integers(1024, 65535, rows).astype(np.int32))
    vpc = _const("vpc-0a1b2c3d", rows)
    if source == VPC_FLOW:
        # Egress flows carry the instance on src_endpoint; ingress ones on dst_endpoint.
        egress = rng.random(rows) < 0.6
        no_instance = rng.random(rows) < 0.05  # NAT gateway / endpoint ENIs: '-'
        nodata = rng.random(rows) < 0.01  # NODATA records: '-' addresses
        src_instance = pc.if_else(
            pa.array(egress),
            pc.if_else(pa.array(no_instance), pa.scalar("-"), instance),
            pa.scalar(None, pa.string()),
        )
        src_ip = pc.if_else(pa.array(egress), own_ips, outsiders)
        src_ip = pc.if_else(pa.array(nodata), pa.scalar("-"), src_ip)
        dst_instance = _null_where(instance, egress)
        dst_ip = pc.if_else(pa.array(egress), outsiders, own_ips)
        src = pa.StructArray.from_arrays(
            [src_ip, ports, src_instance, vpc],
            ["ip", "port", "instance_uid", "vpc_uid"],
        )
        dst = pa.StructArray.from_arrays(
            [dst_ip, pa.array(np.full(rows, 443, np.int32)), dst_instance, vpc],
            ["ip", "port", "instance_uid", "vpc_uid"],
        )
        refused = rng.random(rows) < 0.1
        direction = pc.if_else(pa.array(egress), pa.scalar("Outbound"), pa.scalar("Inbound"))
        connection = pa.StructArray.from_arrays(
            [
                direction,
                pa.array(np.where(egress, 2, 1).astype(np.int32)),
                pa.array(np.full(rows, 6, np.int32)),
            ],
            ["direction", "direction_id", "protocol_num"],
        )
        traffic = pa.StructArray.from_arrays(
            [
                pa.array(rng.integers(40, 100_000, rows)),
                pa.array(rng.integers(1, 100, rows)),
            ],
            ["bytes", "packets"],
        )
        return {
            "class_uid": pa.array(np.full(rows, 4001, np.int32)),
            "activity_id": pa.array(np.where(refused, 5, 6).astype(np.int32)),
            "activity_name": pc.if_else(pa.array(refused), pa.scalar("Refuse"), pa.scalar("Traffic")),
            "src_endpoint": src,
            "dst_endpoint": dst,
            "connection_info": connection,
            "traffic": traffic,
            "disposition": pc.if_else(pa.array(refused), pa.scalar("Blocked"), pa.scalar("Allowed")),
        }
    # Route 53 resolver: most queries come from instances, some from other resources.
    from_instance = rng.random(rows) < 0.9
    src = pa.StructArray.from_arrays(
        [own_ips, ports, _null_where(instance, ~from_instance), vpc],
        ["ip", "port", "instance_uid", "vpc_uid"],
    )
    names = pa.array(_QUERY_NAMES).take(pa.array(rng.integers(0, len(_QUERY_NAMES), rows)))
    query = pa.StructArray.from_arrays(
        [
            names,
            _const("A", rows),
            _const("IN", rows),
        ],
        ["hostname", "type", "class"],
    )
    answer = pa.StructArray.from_arrays(
        [
            outsiders,
            _const("A", rows),
            _const("IN", rows),
        ],
        ["rdata", "type", "class"],
    )
    answers = pa.ListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int32)), answer)
    return {
        "class_uid": pa.array(np.full(rows, 4003, np.int32)),
        "activity_id": pa.array(np.full(rows, 6, np.int32)),
        "activity_name": _const("Traffic", rows),
        "src_endpoint": src,
        "query": query,
        "answers": answers,
        "rcode": _const("NoError", rows),
    }


def write_security_lake_sample(
    out_dir: str | Path,
    start: date,
    days: int,
    seed: int,
    *,
    accounts: Sequence[str] = ("111111111111",),
    regions: Sequence[str] = ("us-east-1",),
    sources: Sequence[str] = SUPPORTED_SOURCES,
    versions: Sequence[str] = SUPPORTED_VERSIONS,
    rows_per_file: int = 500,
    entities: int = 30,
) -> list[Path]:
    """Write synthetic Security Lake objects under ``out_dir`` in the bucket layout.

    One gzip-compressed ``<hash>.gz.parquet`` per source, version, region, account and day
    (both source versions by default, so a sample exercises both mappings). The population
    is fixed by ``seed``; each file's rows by ``seed`` and its partition, so the output is
    byte-for-byte reproducible. Returns the written paths.
    """
    out = Path(out_dir)
    written = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        for source in sources:
            for version in versions:
                for region in regions:
                    for account in accounts:
                        partition = f"{seed}/{source}/{version}/{region}/{account}/{day}"
                        digest = hashlib.sha256(partition.encode()).hexdigest()
                        table = make_ocsf_table(
                            source,
                            version,
                            rows_per_file,
                            int(digest[:15], 16),
                            day=day,
                            account=account,
                            region=region,
                            entities=entities,
                            population_seed=seed,
                        )
                        key = security_lake_key(
                            source,
                            version,
                            region,
                            account,
                            day,
                            f"{digest[:32]}.gz.parquet",
                        )
                        path = out / key
                        path.parent.mkdir(parents=True, exist_ok=True)
                        pq.write_table(table, path, compression="gzip")
                        written.append(path)
    return written
