"""Parse CloudTrail log objects into ``EVENTS_SCHEMA`` rows, a batch of objects per call.

A small C scanner (``_cloudtrail_scan.c``, built by setup.py) reads every object: it validates
each as JSON and copies only the fields used here straight into Arrow buffers. Where it was not
built (no C compiler), pyarrow's JSON reader reads the objects it reads as the rules say (checked
before and after; several times slower), and ``cloudtrail_json.read_document`` (Python's json)
the rest; the three follow the rules written in ``cloudtrail_json``. Nothing here raises for bad input: what cannot be
used becomes a ``Problem``, at the smallest unit (the record, else the object), and each object
names at most ``MAX_LISTED_PROBLEMS`` of its problems (all of them are counted).

``parse_log_bytes`` takes a stored object: ``gunzip.decompress`` (re-exported here) reads it first,
bounded by ``PROACTIVE_MAX_OBJECT_BYTES``.
"""

import io
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from proactive_assets.core.events import EVENTS_SCHEMA, EventBatch, Problem, quarantined
from proactive_assets.core.ipnet import KIND_INVALID, KIND_IP, classify_source
from proactive_assets.core.sources import cloudtrail_json as rules
from proactive_assets.core.sources.cloudtrail_json import FIELDS, KINDS, REASONS, DocumentRows
from proactive_assets.core.sources.gunzip import MAX_OBJECT_BYTES, ObjectTooLarge, decompress, too_large

try:
    from proactive_assets.core.sources import _cloudtrail_scan as scanner
except ImportError:  # built without a C compiler
    scanner = None

#: Objects are parsed in batches of about this much JSON: per-call overhead dominates one by one.
BATCH_BYTES = 32 << 20
#: Problems named per object (the quarantine's sample); every one of them is counted.
MAX_LISTED_PROBLEMS = 100
#: Without the C scanner, the Python reader takes objects up to this size (it holds ~25 bytes of
#: Python objects per byte of a pathological document); a bigger object it would need is quarantined.
PYTHON_READER_MAX_BYTES = 64 << 20

__all__ = ["MAX_OBJECT_BYTES", "ObjectTooLarge", "RawLog", "decompress", "parse_log_bytes", "parse_logs", "too_large"]


class RawLog(NamedTuple):
    """One object's JSON text (decompressed) and where it came from (a tuple: cheap to make per object)."""

    data: bytes
    source_file: str
    account: str = ""
    region: str = ""


def parse_log_bytes(
    data: bytes, source_file: str, account: str = "", region: str = "", max_object_bytes: int = MAX_OBJECT_BYTES
) -> EventBatch:
    """Normalised events of one stored CloudTrail object (gzip or plain); a bad object gives one problem."""
    try:
        text = decompress(data, max_object_bytes)
    except ObjectTooLarge as exc:
        return quarantined(source_file, str(exc))
    except zlib.error as exc:
        return quarantined(source_file, f"not a readable gzip object ({exc})")
    return parse_logs([RawLog(text, source_file, account, region)])


def parse_logs(logs: list[RawLog]) -> EventBatch:
    """Normalised events of several objects' JSON text, parsed together."""
    batch = LogBatch()
    for log in logs:
        batch.add(log)
    return batch.parse()


class LogBatch:
    """Objects' JSON text gathered for one parse. With the C scanner each object is scanned as it
    is added, while the inflater's output is still in the CPU's cache (scanning a whole batch
    afterwards reads it back from memory: ~1.7x the time). What is kept per object is a few list
    items (no object built for it, no outcome for the usual clean object): a quiet account's day is
    thousands of 1-5 KB objects, where such costs are a third of the time."""

    def __init__(self) -> None:
        self.texts: list[bytes] = []
        self.sources: list[str] = []
        self.accounts: list[str] = []
        self.regions: list[str] = []
        self.size = 0
        self._scanner = scanner.Scanner(MAX_LISTED_PROBLEMS) if scanner is not None else None
        self._outcomes: dict[int, tuple] = {}  # the scanner's outcome of each object that is not clean
        self._error: Exception | None = None

    @property
    def logs(self) -> list[RawLog]:
        """The objects added, in order."""
        return [RawLog(*log) for log in zip(self.texts, self.sources, self.accounts, self.regions, strict=True)]

    def add(self, log: RawLog) -> None:
        self.add_text(*log)

    def add_text(self, data: bytes, source_file: str, account: str = "", region: str = "") -> None:
        """Add one object's JSON text (``add`` without building a ``RawLog``)."""
        self.texts.append(data)
        self.sources.append(source_file)
        self.accounts.append(account)
        self.regions.append(region)
        self.size += len(data)
        if self._scanner is not None and self._error is None:
            try:
                outcome = self._scanner.add(data)
            except Exception as exc:  # out of memory: parse() raises it, the caller re-parses one by one
                self._error = exc
            else:
                if outcome is not None:
                    self._outcomes[len(self.texts) - 1] = outcome

    def parse(self) -> EventBatch:
        """The batch's events and problems (raises what scanning an object raised)."""
        if self._error is not None:
            raise self._error
        found = _read_without_scanner(self.logs) if self._scanner is None else _scanned(self._scanner, self._outcomes)
        return _normalise(found, self.sources, self.accounts, self.regions)


# ---------------------------------------------------------------------------------------------
# Readers: each gives the kept records as columns, and per object what became of it


@dataclass
class Outcome:
    """What became of one object: kept, or rejected whole (``reason``), and its rejected records."""

    reason: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    sampled: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class Records:
    """The kept records of a batch of objects, as columns (one row per record)."""

    strings: dict[str, pa.Array]  # every name in FIELDS: null where absent, null or mistyped
    kinds: dict[str, np.ndarray]  # fields with a mistyped value: their KINDS code per row
    read_only: np.ndarray  # uint8 readOnly codes (cloudtrail_json.READ_ONLY_*)
    doc: np.ndarray  # int64: the object of each row
    record: np.ndarray  # int64: the row's index among its object's records
    outcomes: dict[int, Outcome]  # by object (index in the batch); an object left out is clean (``Outcome()``)
    event_ms: np.ndarray | None = None  # int64 eventTime the reader parsed (ms), NO_EVENT_MS where it did not


def _scanned(scan: object, results: dict[int, tuple]) -> Records:
    """The records a ``Scanner`` found, from its rows and the outcome of each object that is not clean."""
    rows, doc_index, record_index, columns, read_only, event_ms = scan.finish()
    strings, kinds = {}, {}
    for name, (offsets, data, kind) in zip(scanner.FIELDS, columns, strict=True):
        codes = np.frombuffer(kind, dtype=np.uint8)
        valid = pa.py_buffer(np.packbits(codes == rules.STRING, bitorder="little"))
        strings[name] = pa.Array.from_buffers(pa.string(), rows, [valid, pa.py_buffer(offsets), pa.py_buffer(data)])
        if (codes > rules.STRING).any():
            kinds[name] = codes
    outcomes = {}
    for doc, (status, offset, error, _records, counts, sampled) in results.items():
        if status:
            outcomes[doc] = Outcome(_scanner_reason(scanner.STATUSES[status], scanner.ERRORS[error], offset))
        else:
            outcomes[doc] = Outcome(
                None,
                {scanner.REASONS[r]: n for r, n in enumerate(counts) if n},
                [(i, scanner.REASONS[r]) for i, r in sampled],
            )
    return Records(
        strings,
        kinds,
        np.frombuffer(read_only, dtype=np.uint8),
        np.frombuffer(doc_index, dtype=np.int64),
        np.frombuffer(record_index, dtype=np.int64),
        outcomes,
        np.frombuffer(event_ms, dtype=np.int64),
    )


def _scanner_reason(status: str, error: str, offset: int) -> str:
    if status != "not_json":
        return rules.STATUS_REASONS[status]
    what = {
        "empty": "no JSON value (empty or whitespace only)",
        "extra": "extra data after the JSON value (several documents, or JSON Lines?)",
    }.get(error, "syntax error")
    return f"not valid JSON ({what} at byte {offset})"


def _document_outcome(found: DocumentRows) -> Outcome:
    if found.status == "not_json":
        return Outcome(f"not valid JSON ({found.detail})")
    if found.status != "ok":
        return Outcome(rules.STATUS_REASONS[found.status])
    return Outcome(None, dict(found.counts), list(found.sampled))


def _python_records(logs: list[RawLog], docs: list[int]) -> Records:
    """The Python reader's records of ``docs`` (indices into ``logs``)."""
    values: dict[str, list] = {name: [] for name in FIELDS}
    codes: dict[str, list] = {name: [] for name in FIELDS}
    read_only: list[int] = []
    doc: list[int] = []
    record: list[int] = []
    outcomes = {}
    for i in docs:
        if len(logs[i].data) > PYTHON_READER_MAX_BYTES:
            outcomes[i] = Outcome(
                f"needs the exact reader, which takes objects up to {PYTHON_READER_MAX_BYTES:,} bytes "
                "without the C scanner (reinstall with a C compiler to read it)"
            )
            continue
        found = rules.read_document(logs[i].data, MAX_LISTED_PROBLEMS)
        outcomes[i] = _document_outcome(found)
        if found.status != "ok":
            continue
        for name in FIELDS:
            values[name] += found.values[name]
            codes[name] += found.kinds[name]
        read_only += found.read_only
        record += found.index
        doc += [i] * len(found.index)
    kinds = {}
    for name in FIELDS:
        array = np.array(codes[name], dtype=np.uint8)
        if (array > rules.STRING).any():
            kinds[name] = array
    return Records(
        {name: pa.array(values[name], pa.string()) for name in FIELDS},
        kinds,
        np.array(read_only, dtype=np.uint8),
        np.array(doc, dtype=np.int64),
        np.array(record, dtype=np.int64),
        outcomes,
    )


# pyarrow's reader, for the objects a screen finds ordinary (it would read the others differently)

_IDENTITY = pa.struct([(name.split(".", 1)[1], pa.string()) for name in FIELDS if "." in name])
_RECORD = pa.struct(
    [(name, pa.string()) for name in FIELDS if "." not in name]
    + [("readOnly", pa.bool_()), ("userIdentity", _IDENTITY)]
)
_FILE_SCHEMA = pa.schema([("Records", pa.list_(_RECORD))])
_PARSE_OPTIONS = pajson.ParseOptions(
    explicit_schema=_FILE_SCHEMA, unexpected_field_behavior="ignore", newlines_in_values=True
)
_BATCH_PARSE_OPTIONS = pajson.ParseOptions(
    explicit_schema=_FILE_SCHEMA, unexpected_field_behavior="ignore", newlines_in_values=False
)
#: What pyarrow would read differently from the rules, found before it reads (such objects go to
#: the Python reader): a repeated "Records", a surrogate escape, text that is not UTF-8 (pyarrow
#: checks only the fields it keeps). It rejects raw control characters in strings itself.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
#: ... and after it read them: nesting past MAX_DEPTH, NaN or Infinity, a byte order mark: the
#: bytes that say so, kept in order (escapes taken out first, so every quote left opens or closes
#: a string) and read outside the strings.
_KEPT = b'"[]{}NI\xef'
_DROPPED = bytes(sorted(set(range(256)) - set(_KEPT)))
_STEPS = np.zeros(256, dtype=np.int8)
_STEPS[[ord("["), ord("{")]], _STEPS[[ord("]"), ord("}")]] = 1, -1
_ODD = np.zeros(256, dtype=bool)
_ODD[[ord("N"), ord("I"), 0xEF]] = True
#: The structural checks, in the order the rules apply them.
_PRESENCE = ("not_object", "no_identity", "no_event_time", "no_event_name", "no_source")


def _ordinary(data: bytes) -> bool:
    """Whether pyarrow may read ``data`` (``_plain_structure`` checks the rest once it has)."""
    if data.count(b'"Records"') > 1:
        return False
    if b"\\u" in data and _SURROGATE_ESCAPE.search(data) is not None:
        return False
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _structure(data: bytes) -> tuple[int, bool]:
    """(nesting depth, holds NaN, Infinity or a byte order mark) of ``data``, valid JSON (pyarrow
    read it), counted outside its strings. In valid JSON every backslash starts an escape, so
    taking out ``\\\\`` then ``\\"`` leaves only the quotes that open and close strings."""
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = np.frombuffer(data.translate(None, _DROPPED), dtype=np.uint8)
    outside = np.cumsum(marks == ord('"'), dtype=np.int32) % 2 == 0
    steps = _STEPS[marks][outside]
    depth = int(np.cumsum(steps, dtype=np.int32).max(initial=0))
    return depth, bool(_ODD[marks][outside].any())


def _plain_structure(data: bytes) -> bool:
    depth, odd = _structure(data)
    return depth <= rules.MAX_DEPTH and not odd


def _read_without_scanner(logs: list[RawLog]) -> Records:
    ordinary = [i for i, log in enumerate(logs) if _ordinary(log.data)]
    parts: list[Records] = []
    together = _pyarrow_records(logs, ordinary) if ordinary else None
    if together is not None:
        parts.append(together)
    else:  # pyarrow names no culprit: each object on its own
        parts += [part for i in ordinary if (part := _pyarrow_records(logs, [i], newlines=True)) is not None]
    done = {doc for part in parts for doc in part.outcomes}
    parts.append(_python_records(logs, [i for i in range(len(logs)) if i not in done]))
    kinds = {}
    for name in FIELDS:
        if any(name in part.kinds for part in parts):
            zeros = [np.zeros(len(part.doc), dtype=np.uint8) for part in parts]
            kinds[name] = np.concatenate([part.kinds.get(name, z) for part, z in zip(parts, zeros, strict=True)])
    doc = np.concatenate([part.doc for part in parts])
    record = np.concatenate([part.record for part in parts])
    order = np.lexsort((record, doc))  # rows in object order, as the scanner gives them
    take = pa.array(order)
    return Records(
        {name: pa.concat_arrays([part.strings[name] for part in parts]).take(take) for name in FIELDS},
        {name: codes[order] for name, codes in kinds.items()},
        np.concatenate([part.read_only for part in parts])[order],
        doc[order],
        record[order],
        {doc: outcome for part in parts for doc, outcome in part.outcomes.items()},
    )


def _pyarrow_records(logs: list[RawLog], docs: list[int], newlines: bool = False) -> Records | None:
    """The records of ``docs`` read by pyarrow in one call, or None if it refuses any of them."""
    texts = [logs[i].data.strip() for i in docs]
    if not newlines and any(b"\n" in text for text in texts):
        return None
    raw = b"\n".join(texts)
    options = _PARSE_OPTIONS if newlines else _BATCH_PARSE_OPTIONS
    read_options = pajson.ReadOptions(block_size=max(len(raw) + 64, 1 << 16), use_threads=False)
    try:
        table = pajson.read_json(io.BytesIO(raw), read_options=read_options, parse_options=options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != len(docs) or not all(_plain_structure(text) for text in texts):
        return None
    column = table.column("Records").combine_chunks()
    if column.null_count:
        return None
    records = column.flatten()
    parents = np.asarray(pc.list_parent_indices(column), dtype=np.int64)
    starts = np.asarray(column.offsets, dtype=np.int64)
    index = np.arange(len(records), dtype=np.int64) - starts[parents]
    ident = pc.struct_field(records, "userIdentity")
    masks = [_nulls(records), _nulls(ident)] + [
        _nulls(pc.struct_field(records, name)) for name in ("eventTime", "eventName", "sourceIPAddress")
    ]
    reason = np.full(len(records), -1, dtype=np.int64)
    for code, mask in enumerate(masks):
        reason[(reason < 0) & mask] = code
    outcomes = {doc: Outcome() for doc in docs}
    for row in np.flatnonzero(reason >= 0):
        outcome, name = outcomes[docs[parents[row]]], _PRESENCE[reason[row]]
        outcome.counts[name] = outcome.counts.get(name, 0) + 1
        if len(outcome.sampled) < MAX_LISTED_PROBLEMS:
            outcome.sampled.append((int(index[row]), name))
    kept = pa.array(reason < 0)
    strings = {
        name: pc.struct_field(ident if "." in name else records, name.split(".")[-1]).filter(kept) for name in FIELDS
    }
    flag = pc.struct_field(records, "readOnly").filter(kept)
    read_only = np.where(_nulls(flag), rules.READ_ONLY_ABSENT, np.where(pc.fill_null(flag, False), 2, 1))
    return Records(
        strings,
        {},
        read_only.astype(np.uint8),
        np.asarray(docs, dtype=np.int64)[parents][reason < 0],
        index[reason < 0],
        outcomes,
    )


def _nulls(array: pa.Array) -> np.ndarray:
    return np.asarray(pc.is_null(array), dtype=bool)


# ---------------------------------------------------------------------------------------------
# Normalising: the kept records become events; what is wrong with them becomes problems

_EVENT_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):?([0-9]{2}))"
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = pa.timestamp("ms", tz="UTC")
#: ``Records.event_ms`` of a row whose eventTime the reader left to ``_event_times``.
NO_EVENT_MS = np.iinfo(np.int64).min


def parse_event_time(text: str) -> datetime | None:
    """``eventTime`` as CloudTrail writes it (``2024-03-05T10:00:00Z``) or as exports do (CloudTrail
    Lake, Athena, SIEMs): fractional seconds, a lower-case ``z``, an offset (``+00:00``, ``-0500``),
    a space for the ``T``. None for anything else, a time without a zone included (ambiguous)."""
    match = _EVENT_TIME.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, _z, sign, off_h, off_m = match.groups()
    micros = int((fraction or "0").ljust(6, "0")[:6])
    try:
        value = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tzinfo=UTC)
        if sign:
            if int(off_h) > 23 or int(off_m) > 59:
                return None
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            value = value - offset if sign == "+" else value + offset
    except (ValueError, OverflowError):
        return None
    return value


def _event_times(text: pa.Array, parsed: np.ndarray | None = None) -> pa.Array:
    """Parsed ``eventTime`` (ms, UTC): CloudTrail's own form as the scanner parsed it (``parsed``)
    or vectorised, other forms once per distinct value."""
    if parsed is not None:
        fast = pa.array(parsed, pa.int64(), mask=parsed == NO_EVENT_MS).cast(_MS)
    else:
        fast = pc.strptime(text, format="%Y-%m-%dT%H:%M:%SZ", unit="ms", error_is_null=True).cast(_MS)
    retry = np.asarray(pc.and_(pc.is_null(fast), pc.is_valid(text)), dtype=bool)
    if parsed is not None and retry.any():  # not in CloudTrail's exact form: parsed as without the scanner
        return pc.replace_with_mask(fast, pa.array(retry), _event_times(text.filter(pa.array(retry))))
    if not retry.any():
        return fast
    encoded = pc.dictionary_encode(text.filter(pa.array(retry)))
    parsed = [parse_event_time(v) for v in encoded.dictionary.to_pylist()]
    millis = pa.array([None if v is None else (v - EPOCH) // timedelta(milliseconds=1) for v in parsed], pa.int64())
    slow = pc.take(millis, encoded.indices).cast(_MS)
    return pc.replace_with_mask(fast, pa.array(retry), slow)


def _classify_ips(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(source_kind, canonical source_ip) with one Python call per distinct value, not per record."""
    encoded = pc.dictionary_encode(values)
    kinds, canon = [], []
    rewritten = False
    for value in encoded.dictionary.to_pylist():
        kind, ip = classify_source(value)
        kinds.append(kind)
        canon.append(ip if ip is not None else value)
        rewritten = rewritten or canon[-1] != value
    indices = encoded.indices
    # the usual batch writes every address canonically already: its column is kept, not rebuilt
    source_ip = pc.take(pa.array(canon, pa.string()), indices) if rewritten else values
    return pc.take(pa.array(kinds, pa.string()), indices), source_ip


@dataclass
class _Check:
    """Rows a check flags, and how to say why."""

    rows: np.ndarray
    field: str
    reason: object  # row -> str
    rejects: bool = True


def _row_checks(found: Records, event_time: pa.Array, kinds: pa.Array) -> tuple[list[_Check], np.ndarray]:
    """The checks on kept records, in order (the first that rejects a record names it), and the rejected mask."""
    n = len(found.doc)
    rejected = np.zeros(n, dtype=bool)
    checks: list[_Check] = []

    def add(mask: np.ndarray, name: str, reason: object, rejects: bool = True) -> None:
        rows = np.flatnonzero(mask & ~rejected)
        if len(rows):
            checks.append(_Check(rows, name, reason, rejects))
            if rejects:
                rejected[rows] = True

    for name in FIELDS:
        codes = found.kinds.get(name)
        if codes is not None:
            add(codes > rules.STRING, name, lambda i, f=name, k=codes: f"field {f} has the wrong type ({KINDS[k[i]]})")
    text = found.strings["eventTime"]
    add(_nulls(event_time), "eventTime", lambda i: f"unparsable eventTime {_shown(text[i].as_py())}")
    source = found.strings["sourceIPAddress"]
    add(
        np.asarray(pc.fill_null(pc.equal(kinds, KIND_INVALID), False), dtype=bool),
        "sourceIPAddress",
        lambda i: (
            f"sourceIPAddress {_shown(source[i].as_py())} is neither an IP address nor an AWS service"
            " (kept as an event, not a pair)"
        ),
        rejects=False,
    )
    add(
        found.read_only == rules.READ_ONLY_OTHER,
        "readOnly",
        lambda i: "field readOnly is neither true nor false (kept as an event, read_only unknown)",
        rejects=False,
    )
    return checks, rejected


def _shown(value: str, limit: int = 80) -> str:
    """A value from a log as a reason quotes it: repr (escapes control characters), cut short."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}… ({len(value):,} characters)"


def _problems(found: Records, sources: list[str], checks: list[_Check]) -> tuple[list[Problem], dict[str, int], int]:
    """Each object's problems in record order, at most MAX_LISTED_PROBLEMS named; counts of the rejected.
    Only the objects with a problem are visited (a batch may hold thousands of clean small ones)."""
    rejected: dict[str, int] = {}
    for check in checks:
        if check.rejects:
            rejected[check.field] = rejected.get(check.field, 0) + len(check.rows)
    rows = np.concatenate([c.rows for c in checks]) if checks else np.zeros(0, dtype=np.int64)
    which = np.concatenate([np.full(len(c.rows), k) for k, c in enumerate(checks)]) if checks else rows
    docs, records = found.doc[rows], found.record[rows]
    order = np.lexsort((records, docs))
    sorted_docs = docs[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_docs, sorted_docs)
    flagged = np.bincount(docs, minlength=len(sources))
    named: dict[int, list[Problem]] = {}
    for k in order[rank < MAX_LISTED_PROBLEMS]:
        check, row, doc = checks[which[k]], int(rows[k]), int(docs[k])
        problem = Problem(sources[doc], check.reason(row), int(records[k]), check.field, check.rejects)
        named.setdefault(doc, []).append(problem)
    problems: list[Problem] = []
    unlisted = 0
    clean = Outcome()
    for doc in sorted(named.keys() | found.outcomes.keys()):
        outcome, source_file = found.outcomes.get(doc, clean), sources[doc]
        if outcome.reason is not None:
            problems.append(Problem(source_file, outcome.reason))
            continue
        if not outcome.counts and not outcome.sampled:  # the usual object: problems only from row checks
            if doc in named:
                mine = sorted(named[doc], key=lambda p: p.record_index)[:MAX_LISTED_PROBLEMS]
                problems += mine
                unlisted += int(flagged[doc]) - len(mine)
            continue
        for reason, count in outcome.counts.items():
            field_name = REASONS[reason][0]
            rejected[field_name] = rejected.get(field_name, 0) + count
        early = [Problem(source_file, REASONS[r][1], i, REASONS[r][0]) for i, r in outcome.sampled]
        mine = sorted(early + named.get(doc, []), key=lambda p: p.record_index)[:MAX_LISTED_PROBLEMS]
        problems += mine
        unlisted += sum(outcome.counts.values()) + int(flagged[doc]) - len(mine)
    return problems, rejected, unlisted


def _per_record(values: list[str], doc_index: pa.Array) -> pa.Array:
    """Each record's object's value ("", where the key gave none, is null)."""
    values = pa.array(values, pa.string())
    return pc.take(pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values), doc_index)


def _or_from_key(column: pa.Array, from_key: list[str], doc_index: pa.Array) -> pa.Array:
    """``column`` where the record has it, else what its object's key says (the usual record has it)."""
    return pc.coalesce(column, _per_record(from_key, doc_index)) if column.null_count else column


def _normalise(found: Records, sources: list[str], accounts: list[str], regions: list[str]) -> EventBatch:
    """The events and problems of ``found``, read from objects named ``sources`` (with the account
    and region their keys give, "" where none)."""
    strings = found.strings
    event_time = _event_times(strings["eventTime"], found.event_ms)
    kinds, source_ip = _classify_ips(strings["sourceIPAddress"])
    checks, rejected = _row_checks(found, event_time, kinds)
    problems, rejected_counts, unlisted = _problems(found, sources, checks)
    arn = strings["userIdentity.arn"]
    # no entity: empty or only whitespace (tested, not trimmed: no copy of every ARN)
    arn = pc.if_else(
        pc.or_(pc.equal(pc.binary_length(arn), 0), pc.utf8_is_space(arn)), pa.scalar(None, pa.string()), arn
    )
    doc_index = pa.array(found.doc)
    codes = found.read_only
    table = pa.table(
        {
            "event_time": event_time,
            "event_name": strings["eventName"],
            "event_source": strings["eventSource"],
            "identity_arn": arn,
            "identity_type": strings["userIdentity.type"],
            "account": _or_from_key(strings["recipientAccountId"], accounts, doc_index),
            "region": _or_from_key(strings["awsRegion"], regions, doc_index),
            "source_ip": source_ip,
            "source_kind": kinds,
            "is_pair": pc.fill_null(pc.and_(pc.equal(kinds, KIND_IP), pc.is_valid(arn)), False),
            "user_agent": strings["userAgent"],
            "error_code": strings["errorCode"],
            "read_only": pa.array(codes == rules.READ_ONLY_TRUE, mask=(codes == 0) | (codes == rules.READ_ONLY_OTHER)),
            "event_id": strings["eventID"],
            "source": pa.repeat(pa.scalar("cloudtrail"), len(codes)),
            "source_file": _per_record(sources, doc_index),
        },
        schema=EVENTS_SCHEMA,
    )
    if rejected.any():
        table = table.filter(pa.array(~rejected))
    return EventBatch(table, problems, objects=len(sources), rejected=rejected_counts, unlisted=unlisted)
