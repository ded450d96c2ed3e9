"""Parse CloudTrail log objects into ``EVENTS_SCHEMA`` rows, a batch of objects per call.

A small C scanner (``_cloudtrail_scan.c``, built by setup.py) validates each object as JSON and
copies only the fields used here straight into Arrow buffers; where it was not built (no C
compiler), pyarrow's JSON reader with an explicit schema does the same job about three times
slower. An object either reader rejects is parsed on its own by ``json.loads``, which names the
bad record or field; the rest of the batch is unaffected. Nothing here raises for bad input:
what cannot be used becomes a ``Problem``.
"""

import io
import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from proactive_assets.core.events import EVENTS_SCHEMA, EventBatch, Problem, quarantined
from proactive_assets.core.ipnet import KIND_INVALID, KIND_IP, classify_source

try:
    from proactive_assets.core.sources import _cloudtrail_scan as scanner
except ImportError:  # built without a C compiler
    scanner = None

#: Objects are parsed in batches of about this much JSON: per-call overhead dominates one by one.
BATCH_BYTES = 32 << 20

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


def parse_log_bytes(data: bytes, source_file: str, account: str = "", region: str = "") -> EventBatch:
    """Normalised events of one CloudTrail object; a corrupt object gives no events and one problem."""
    return parse_logs([RawLog(data, source_file, account, region)])


def parse_logs(logs: list[RawLog]) -> EventBatch:
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
        return EventBatch(EVENTS_SCHEMA.empty_table(), problems)
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


def _parse_one(doc: bytes, log: RawLog, columnar: bool = True) -> EventBatch:
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
        return quarantined(log.source_file, str(exc))
    return _normalise(records, np.zeros(len(records), dtype=np.int64), [log])


def _merge(parsed: EventBatch, problems: list[Problem]) -> EventBatch:
    return EventBatch(parsed.events, problems + parsed.problems)


def _concat(results: list[EventBatch]) -> EventBatch:
    events = pa.concat_tables([r.events for r in results]) if results else EVENTS_SCHEMA.empty_table()
    return EventBatch(events, [p for r in results for p in r.problems])


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


def _normalise(records: pa.StructArray, file_index: np.ndarray, logs: list[RawLog]) -> EventBatch:
    n = len(records)
    if n == 0:
        return EventBatch(EVENTS_SCHEMA.empty_table())
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
    return EventBatch(table, problems)
