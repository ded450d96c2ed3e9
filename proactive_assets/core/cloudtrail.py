"""CloudTrail: find a day's log objects in the bucket layout and parse them into normalised events.

Parsing is columnar and batch by batch, so memory is bounded by a few files rather than the day:
a small C scanner (``_cloudtrail_scan.c``, built by setup.py) validates each object as JSON and copies
only the fields used here straight into Arrow buffers; where it was not built (no C compiler),
pyarrow's JSON reader with an explicit schema does the same job about three times slower.
Anything that cannot be read is reported as a ``Problem`` naming the object (and record or field);
it never stops the rest of the day.
"""

import hashlib
import io
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from proactive_assets.core.ipnet import KIND_INVALID, KIND_IP, classify_source
from proactive_assets.core.storage import ObjectInfo, ObjectStore

try:
    from proactive_assets.core import _cloudtrail_scan as scanner
except ImportError:  # built without a C compiler
    scanner = None

LOG_NAME = re.compile(
    r"^(?P<account>\d{12})_CloudTrail_(?P<region>[a-z0-9-]+)_(?P<stamp>\d{8}T\d{4}Z)_(?P<uid>[A-Za-z0-9]+)\.json\.gz$"
)
ORG_ID = re.compile(r"^o-[a-z0-9]{10,32}$")
ACCOUNT_ID = re.compile(r"^\d{12}$")

EVENTS_SCHEMA = pa.schema(
    [
        ("event_time", pa.timestamp("ms", tz="UTC")),
        ("event_name", pa.string()),
        ("event_source", pa.string()),
        ("identity_arn", pa.string()),
        ("identity_type", pa.string()),
        ("account", pa.string()),
        ("region", pa.string()),
        ("source_ip", pa.string()),
        ("source_kind", pa.string()),
        ("is_pair", pa.bool_()),
        ("user_agent", pa.string()),
        ("error_code", pa.string()),
        ("event_id", pa.string()),
        ("source", pa.string()),
        ("source_file", pa.string()),
    ]
)

INVENTORY_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("uri", pa.string()),
        ("size", pa.int64()),
        ("etag", pa.string()),
        ("last_modified", pa.timestamp("ms", tz="UTC")),
        ("org_id", pa.string()),
        ("account", pa.string()),
        ("region", pa.string()),
        ("delivered_at", pa.timestamp("ms", tz="UTC")),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        ("source_file", pa.string()),
        ("record_index", pa.int64()),
        ("field", pa.string()),
        ("reason", pa.string()),
        ("record_rejected", pa.bool_()),
    ]
)

_IDENTITY = pa.struct(
    [("type", pa.string()), ("arn", pa.string()), ("accountId", pa.string()), ("invokedBy", pa.string())]
)
_RECORD = pa.struct(
    [
        ("eventTime", pa.string()),
        ("eventName", pa.string()),
        ("eventSource", pa.string()),
        ("awsRegion", pa.string()),
        ("sourceIPAddress", pa.string()),
        ("userAgent", pa.string()),
        ("errorCode", pa.string()),
        ("eventID", pa.string()),
        ("recipientAccountId", pa.string()),
        ("userIdentity", _IDENTITY),
    ]
)
_FILE_SCHEMA = pa.schema([("Records", pa.list_(_RECORD))])
_PARSE_OPTIONS = pajson.ParseOptions(
    explicit_schema=_FILE_SCHEMA, unexpected_field_behavior="ignore", newlines_in_values=True
)
_BATCH_PARSE_OPTIONS = pajson.ParseOptions(
    explicit_schema=_FILE_SCHEMA, unexpected_field_behavior="ignore", newlines_in_values=False
)
_STRING_FIELDS = [f.name for f in _RECORD if f.name != "userIdentity"]


@dataclass(frozen=True)
class Problem:
    """Something in the input that could not be used, and why; ``record_index`` -1 = whole object."""

    source_file: str
    reason: str
    record_index: int = -1
    field: str | None = None
    record_rejected: bool = True

    def message(self) -> str:
        where = self.source_file if self.record_index < 0 else f"{self.source_file} record #{self.record_index}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class LogObject:
    """A CloudTrail log object found for a day, with what its key says about it."""

    info: ObjectInfo
    uri: str
    org_id: str | None
    account: str
    region: str
    delivered_at: datetime


@dataclass
class ParsedFile:
    events: pa.Table
    problems: list[Problem] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Listing


def _account_roots(store: ObjectStore, accounts: Iterable[str]) -> list[tuple[str | None, str, str]]:
    """(org_id, account, prefix) for every account folder under AWSLogs/, org-trail layout included."""
    wanted = set(accounts)
    roots: list[tuple[str | None, str, str]] = []
    for prefix in store.list_prefixes("AWSLogs/"):
        name = prefix.rstrip("/").rsplit("/", 1)[-1]
        if ACCOUNT_ID.match(name):
            roots.append((None, name, prefix))
        elif ORG_ID.match(name):
            for sub in store.list_prefixes(prefix):
                acct = sub.rstrip("/").rsplit("/", 1)[-1]
                if ACCOUNT_ID.match(acct):
                    roots.append((name, acct, sub))
    return [r for r in roots if not wanted or r[1] in wanted]


def list_day_objects(
    store: ObjectStore, day: date, accounts: Iterable[str] = (), regions: Iterable[str] = ()
) -> tuple[list[LogObject], list[Problem]]:
    """Every log object delivered on ``day`` (all accounts and regions unless filtered).

    Digest and Insight files live in other folders and are never listed; objects under the day's
    prefix whose names do not follow CloudTrail's pattern, or that are empty, come back as problems.
    """
    wanted_regions = set(regions)
    found: list[LogObject] = []
    problems: list[Problem] = []
    for org_id, _account, root in _account_roots(store, accounts):
        for region_prefix in store.list_prefixes(f"{root}CloudTrail/"):
            region = region_prefix.rstrip("/").rsplit("/", 1)[-1]
            if wanted_regions and region not in wanted_regions:
                continue
            day_prefix = f"{region_prefix}{day:%Y/%m/%d}/"
            for info in store.list_objects(day_prefix):
                name = info.key.rsplit("/", 1)[-1]
                match = LOG_NAME.match(name)
                if match is None:
                    problems.append(Problem(store.uri_for(info.key), "not a CloudTrail log file name"))
                    continue
                if info.size == 0:
                    problems.append(Problem(store.uri_for(info.key), "empty object"))
                    continue
                found.append(
                    LogObject(
                        info=info,
                        uri=store.uri_for(info.key),
                        org_id=org_id,
                        account=match["account"],
                        region=match["region"],
                        delivered_at=datetime.strptime(match["stamp"] + "+0000", "%Y%m%dT%H%MZ%z"),
                    )
                )
    found.sort(key=lambda o: o.info.key)
    return found, problems


def inventory_digest(objects: list[LogObject]) -> str:
    """A short digest of which objects (and which versions of them) make up a day.

    Used as the Dagster data version of ``raw_cloudtrail``: a late delivery or a rewritten object
    changes it, so Dagster marks the downstream partitions stale; a re-listing of the same objects
    does not.
    """
    digest = hashlib.sha256()
    for obj in sorted(objects, key=lambda o: o.info.key):
        digest.update(f"{obj.info.key}\t{obj.info.etag}\n".encode())
    return digest.hexdigest()[:24]


def inventory_table(objects: list[LogObject]) -> pa.Table:
    """The ``raw_cloudtrail`` table for a day."""
    return pa.table(
        {
            "key": [o.info.key for o in objects],
            "uri": [o.uri for o in objects],
            "size": [o.info.size for o in objects],
            "etag": [o.info.etag for o in objects],
            "last_modified": [o.info.last_modified for o in objects],
            "org_id": [o.org_id for o in objects],
            "account": [o.account for o in objects],
            "region": [o.region for o in objects],
            "delivered_at": [o.delivered_at for o in objects],
        },
        schema=INVENTORY_SCHEMA,
    )


# ---------------------------------------------------------------------------------------------
# Parsing
#
# CloudTrail delivers many small objects (one per account, region and ~5 minutes). Parsing them
# one by one is dominated by per-call overhead, so objects are parsed in batches: one call of the C
# scanner, or (without it) one pyarrow call over their bytes joined into newline-delimited JSON.
# An object the fast reader rejects is parsed on its own by json.loads, which names the bad record
# or field; the rest of the batch is unaffected.

BATCH_BYTES = 32 << 20


@dataclass(frozen=True)
class RawLog:
    """One object's bytes and where they came from."""

    data: bytes
    source_file: str
    account: str = ""
    region: str = ""


def decompress(data: bytes) -> bytes:
    """gunzip (or pass through plain JSON, which some tools write without compression)."""
    if data[:2] == b"\x1f\x8b":
        return zlib.decompress(data, 31)
    return data


def parse_log_bytes(data: bytes, source_file: str, account: str = "", region: str = "") -> ParsedFile:
    """Normalised events of one CloudTrail object; a corrupt object gives no events and one problem."""
    return parse_logs([RawLog(data, source_file, account, region)])


def parse_logs(logs: list[RawLog]) -> ParsedFile:
    """Normalised events of several objects, parsed together when they are well formed."""
    problems: list[Problem] = []
    docs: list[bytes] = []
    kept: list[RawLog] = []
    for log in logs:
        try:
            raw = decompress(log.data)
        except zlib.error as exc:
            problems.append(Problem(log.source_file, f"not a readable gzip object ({exc})"))
            continue
        docs.append(raw)
        kept.append(log)
    if not kept:
        return ParsedFile(EVENTS_SCHEMA.empty_table(), problems)
    if scanner is not None:
        records, file_index, failed = _scan_records(docs)
        results = [_normalise(records, file_index, kept)]
        results += [_parse_one(docs[i], kept[i], columnar=False) for i in failed]
        return _merge(_concat(results), problems)
    docs = [doc.strip() for doc in docs]
    single_line = all(b"\n" not in doc for doc in docs)
    if single_line:
        try:
            records, file_index = _records_fast(docs)
            return _merge(_normalise(records, file_index, kept), problems)
        except pa.ArrowInvalid:
            pass
    results = [_parse_one(doc, log) for doc, log in zip(docs, kept, strict=True)]
    return _merge(_concat(results), problems)


def _parse_one(doc: bytes, log: RawLog, columnar: bool = True) -> ParsedFile:
    """One object on its own: pyarrow's reader if ``columnar`` (it may span lines), else json.loads."""
    if columnar:
        try:
            records, file_index = _records_fast([doc.strip()], newlines=True)
            return _normalise(records, file_index, [log])
        except pa.ArrowInvalid:
            pass
    try:
        records = _records_tolerant(doc)
    except ValueError as exc:
        return _failed(log.source_file, str(exc))
    return _normalise(records, np.zeros(len(records), dtype=np.int64), [log])


def _merge(parsed: ParsedFile, problems: list[Problem]) -> ParsedFile:
    return ParsedFile(parsed.events, problems + parsed.problems)


def _concat(results: list[ParsedFile]) -> ParsedFile:
    events = pa.concat_tables([r.events for r in results]) if results else EVENTS_SCHEMA.empty_table()
    return ParsedFile(events, [p for r in results for p in r.problems])


def _failed(source_file: str, reason: str) -> ParsedFile:
    return ParsedFile(EVENTS_SCHEMA.empty_table(), [Problem(source_file, reason)])


def _scan_records(docs: list[bytes]) -> tuple[pa.StructArray, np.ndarray, list[int]]:
    """Records of ``docs`` read by the C scanner, the doc index of each, and the docs it rejected."""
    rows, doc_index, record_valid, identity_valid, columns, failed = scanner.scan(docs)
    strings = {
        name: pa.Array.from_buffers(pa.string(), rows, [_bitmap(valid), pa.py_buffer(offsets), pa.py_buffer(data)])
        for name, (offsets, data, valid) in zip(scanner.FIELDS, columns, strict=True)
    }
    identity = pa.StructArray.from_arrays(
        [strings[f"userIdentity.{f.name}"] for f in _IDENTITY], fields=list(_IDENTITY), mask=_nulls(identity_valid)
    )
    children = [identity if f.name == "userIdentity" else strings[f.name] for f in _RECORD]
    records = pa.StructArray.from_arrays(children, fields=list(_RECORD), mask=_nulls(record_valid))
    return records, np.frombuffer(doc_index, dtype=np.int64), failed


def _bitmap(flags: bytes) -> pa.Buffer:
    """Arrow validity bitmap from one 0/1 byte per row."""
    return pa.py_buffer(np.packbits(np.frombuffer(flags, dtype=np.uint8), bitorder="little"))


def _nulls(flags: bytes) -> pa.Array:
    return pa.array(np.frombuffer(flags, dtype=np.uint8) == 0)


def _records_fast(docs: list[bytes], newlines: bool = False) -> tuple[pa.StructArray, np.ndarray]:
    """All records of ``docs`` (one JSON object each) and, per record, the index of its doc."""
    raw = b"\n".join(docs)
    options = _PARSE_OPTIONS if newlines else _BATCH_PARSE_OPTIONS
    read_options = pajson.ReadOptions(block_size=max(len(raw) + 64, 1 << 16), use_threads=False)
    table = pajson.read_json(io.BytesIO(raw), read_options=read_options, parse_options=options)
    if table.num_rows != len(docs):
        raise pa.ArrowInvalid("expected exactly one JSON object per log object")
    column = table.column("Records").combine_chunks()
    if column.null_count:
        raise pa.ArrowInvalid("Records missing")
    return column.flatten(), np.asarray(pc.list_parent_indices(column), dtype=np.int64)


def _records_tolerant(raw: bytes) -> pa.StructArray:
    """Slow path for objects the columnar reader rejects: find out exactly what is wrong."""
    import json

    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("Records"), list):
        raise ValueError('not a CloudTrail log: expected an object with a "Records" array')
    rows = []
    for record in doc["Records"]:
        if not isinstance(record, dict):
            rows.append(None)
            continue
        row: dict = {name: _text(record.get(name)) for name in _STRING_FIELDS}
        ident = record.get("userIdentity")
        row["userIdentity"] = (
            {k: _text(ident.get(k)) for k in ("type", "arn", "accountId", "invokedBy")}
            if isinstance(ident, dict)
            else None
        )
        rows.append(row)
    try:
        return pa.array(rows, type=_RECORD)
    except (UnicodeError, pa.ArrowException) as exc:  # e.g. a lone surrogate escape
        raise ValueError(f"not valid text ({exc})") from None


def _text(value: object) -> str | None:
    """Strings pass; anything else becomes a marker the normaliser reports as a mistyped field."""
    if value is None or isinstance(value, str):
        return value
    return "\x00mistyped:" + type(value).__name__


def _classify_ips(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(source_kind, canonical source_ip) with one Python call per distinct value, not per record."""
    encoded = pc.dictionary_encode(values)
    kinds, canon = [], []
    for value in encoded.dictionary.to_pylist():
        kind, ip = classify_source(value)
        kinds.append(kind)
        canon.append(ip if ip is not None else value)
    indices = encoded.indices
    return pc.take(pa.array(kinds, pa.string()), indices), pc.take(pa.array(canon, pa.string()), indices)


def _null_mask(array: pa.Array) -> np.ndarray:
    return np.asarray(pc.is_null(array), dtype=bool)


def _normalise(records: pa.StructArray, file_index: np.ndarray, logs: list[RawLog]) -> ParsedFile:
    n = len(records)
    if n == 0:
        return ParsedFile(EVENTS_SCHEMA.empty_table())
    ident = pc.struct_field(records, "userIdentity")
    time_text = pc.struct_field(records, "eventTime")
    event_time = pc.strptime(time_text, format="%Y-%m-%dT%H:%M:%SZ", unit="ms", error_is_null=True)
    source_text = pc.struct_field(records, "sourceIPAddress")
    columns = {name: pc.struct_field(records, name) for name in _STRING_FIELDS}

    # Each check: (field, mask, reason). Only the first failing check of a record is reported.
    time_missing = _null_mask(time_text)
    checks = [
        ("record", _null_mask(records), lambda i: "record is not a JSON object"),
        ("userIdentity", _null_mask(ident), lambda i: "missing field userIdentity"),
        ("eventTime", time_missing, lambda i: "missing field eventTime"),
        (
            "eventTime",
            _null_mask(event_time) & ~time_missing,
            lambda i: f"unparsable eventTime {time_text[i].as_py()!r}",
        ),
        ("eventName", _null_mask(columns["eventName"]), lambda i: "missing field eventName"),
        ("sourceIPAddress", _null_mask(source_text), lambda i: "missing field sourceIPAddress"),
    ]
    typed = {**columns, **{f"userIdentity.{f.name}": pc.struct_field(ident, f.name) for f in _IDENTITY}}
    for name, column in typed.items():
        mistyped = pc.starts_with(pc.fill_null(column, ""), "\x00mistyped:")
        if pc.any(mistyped).as_py():
            checks.append((name, np.asarray(mistyped), lambda i, f=name: f"field {f} has the wrong type"))
    rejected = np.zeros(n, dtype=bool)
    problems: list[Problem] = []
    starts = np.searchsorted(file_index, np.arange(len(logs)))
    for field_name, mask, reason in checks:
        new = mask & ~rejected
        for index in np.flatnonzero(new):
            doc = int(file_index[index])
            problems.append(Problem(logs[doc].source_file, reason(int(index)), int(index - starts[doc]), field_name))
        rejected |= new

    kinds, source_ip = _classify_ips(source_text)
    invalid = np.asarray(pc.fill_null(pc.equal(kinds, KIND_INVALID), False), dtype=bool) & ~rejected
    for index in np.flatnonzero(invalid):
        doc = int(file_index[index])
        problems.append(
            Problem(
                logs[doc].source_file,
                f"sourceIPAddress {source_text[int(index)].as_py()!r} is neither an IP address nor an AWS service"
                " (kept as an event, not a pair)",
                int(index - starts[doc]),
                "sourceIPAddress",
                record_rejected=False,
            )
        )
    arn = pc.struct_field(ident, "arn")
    doc_index = pa.array(file_index)
    per_record = {
        key: pc.take(pa.array([getattr(log, key) or None for log in logs], pa.string()), doc_index)
        for key in ("source_file", "account", "region")
    }
    table = pa.table(
        {
            "event_time": event_time.cast(pa.timestamp("ms", tz="UTC")),
            "event_name": columns["eventName"],
            "event_source": columns["eventSource"],
            "identity_arn": arn,
            "identity_type": pc.struct_field(ident, "type"),
            "account": pc.coalesce(columns["recipientAccountId"], per_record["account"]),
            "region": pc.coalesce(columns["awsRegion"], per_record["region"]),
            "source_ip": source_ip,
            "source_kind": kinds,
            "is_pair": pc.fill_null(pc.and_(pc.equal(kinds, KIND_IP), pc.is_valid(arn)), False),
            "user_agent": columns["userAgent"],
            "error_code": columns["errorCode"],
            "event_id": columns["eventID"],
            "source": pa.repeat(pa.scalar("cloudtrail"), n),
            "source_file": per_record["source_file"],
        },
        schema=EVENTS_SCHEMA,
    )
    if rejected.any():
        table = table.filter(pa.array(~rejected))
    return ParsedFile(table, problems)


def problems_table(problems: list[Problem]) -> pa.Table:
    """The quarantine table: every unreadable object and every rejected or unpaired record."""
    return pa.table(
        {
            "source_file": [p.source_file for p in problems],
            "record_index": [p.record_index for p in problems],
            "field": [p.field for p in problems],
            "reason": [p.reason for p in problems],
            "record_rejected": [p.record_rejected for p in problems],
        },
        schema=QUARANTINE_SCHEMA,
    )


def iter_day_events(
    store: ObjectStore, objects: list[LogObject], batch_bytes: int = BATCH_BYTES
) -> Iterator[tuple[list[LogObject], ParsedFile]]:
    """Parse the day's objects in batches of about ``batch_bytes`` of JSON.

    Objects are decompressed as they are read so a batch is sized by what the parser holds,
    whatever the compression ratio; memory stays bounded by one batch. An object that cannot be
    read or decompressed becomes a problem for that object alone.
    """
    batch: list[RawLog] = []
    members: list[LogObject] = []
    size = 0
    for obj in objects:
        try:
            data = decompress(store.get(obj.info.key))
        except zlib.error as exc:
            yield [obj], _failed(obj.uri, f"not a readable gzip object ({exc})")
            continue
        except Exception as exc:
            yield [obj], _failed(obj.uri, f"could not be read ({type(exc).__name__}: {exc})")
            continue
        batch.append(RawLog(data, obj.uri, obj.account, obj.region))
        members.append(obj)
        size += len(data)
        if size >= batch_bytes:
            yield members, parse_logs(batch)
            batch, members, size = [], [], 0
    if batch:
        yield members, parse_logs(batch)
