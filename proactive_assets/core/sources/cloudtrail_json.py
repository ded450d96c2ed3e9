"""What a CloudTrail log document may hold, and the reference reader of it (Python's json).

The rules every reader applies (the C scanner ``_cloudtrail_scan.c``, pyarrow's reader where the
scanner is not built, and ``read_document`` here, which the tests hold the others to):

* A document is one JSON object with a ``"Records"`` array; a leading UTF-8 byte order mark is
  skipped. Every ``"Records"`` array of a document is read, in order, its records numbered on: a
  repeated key (which CloudTrail never writes) drops nothing. A document that is not JSON (JSON
  Lines included), is nested deeper than ``MAX_DEPTH`` or holds text that is not valid outside
  its records, or is not an object with ``"Records"`` arrays, is rejected as a whole.
* A record is rejected on its own, with the first of ``REASONS`` that applies: nested deeper than
  ``MAX_DEPTH`` (counting the document's own levels), text that is not valid anywhere in it (a
  byte that is not UTF-8, a raw control character in a string, a lone surrogate escape), not an
  object, no ``userIdentity`` object, no ``eventTime``, ``eventName`` or ``sourceIPAddress``
  (null counts as absent). The rest of the document is read.
* Duplicate keys in a record: the last one wins, as in ``json.loads``.
* A wanted field holding something other than a string keeps its JSON type (``KINDS``) beside
  the row, out of band: no string a log holds can pass for a mistyped value.
* ``readOnly`` is true or false (booleans, or those words as strings in any ASCII case); null or
  absent is unknown; anything else is unknown too and reported.
"""

import json
import re
from dataclasses import dataclass, field
from typing import Any

#: Deepest nesting read: containers nested deeper than this (the document's object is level 1,
#: its "Records" array 2, a record 3) reject their record, or the document outside the records.
MAX_DEPTH = 512

#: The record fields the pipeline reads (identity fields under ``userIdentity``), in scanner order.
FIELDS = (
    "eventTime",
    "eventName",
    "eventSource",
    "awsRegion",
    "sourceIPAddress",
    "userAgent",
    "errorCode",
    "eventID",
    "recipientAccountId",
    "userIdentity.type",
    "userIdentity.arn",
    "userIdentity.accountId",
    "userIdentity.invokedBy",
)
TOP_FIELDS = frozenset(f for f in FIELDS if "." not in f)
IDENTITY_FIELDS = frozenset(f.split(".", 1)[1] for f in FIELDS if "." in f)

#: A wanted field's JSON type: 0 and 1 are data (absent/null, a string), the others a wrong type.
KINDS = ("absent", "string", "int", "float", "bool", "object", "array")
ABSENT, STRING = 0, 1

#: Why a record is rejected before it becomes a row, in order of precedence: (field, reason).
REASONS = {
    "too_deep": ("record", f"record nested deeper than {MAX_DEPTH} levels"),
    "bad_text": (
        "record",
        "record holds text that is not valid (not UTF-8, a raw control character or a lone surrogate)",
    ),
    "not_object": ("record", "record is not a JSON object"),
    "no_identity": ("userIdentity", "missing field userIdentity"),
    "no_event_time": ("eventTime", "missing field eventTime"),
    "no_event_name": ("eventName", "missing field eventName"),
    "no_source": ("sourceIPAddress", "missing field sourceIPAddress"),
}
REASON_NAMES = tuple(REASONS)

#: Why a whole document is rejected.
STATUS_REASONS = {
    "too_deep": f"nested deeper than {MAX_DEPTH} levels outside its records",
    "bad_text": "holds text that is not valid outside its records "
    "(not UTF-8, a raw control character or a lone surrogate)",
    "not_cloudtrail": 'not a CloudTrail log: expected an object with a "Records" array',
}

#: ``readOnly`` codes.
READ_ONLY_ABSENT, READ_ONLY_FALSE, READ_ONLY_TRUE, READ_ONLY_OTHER = 0, 1, 2, 3


@dataclass
class DocumentRows:
    """What a reader found in one document: its kept records as Python values, and its outcome.

    ``status`` is ``"ok"`` or why the document was rejected (``"not_json"`` or a key of
    ``STATUS_REASONS``; ``detail`` says more); ``counts`` and ``sampled`` are the records
    rejected before becoming rows (by ``REASONS`` key; the first ones as (index, reason)).
    """

    status: str = "ok"
    detail: str = ""
    records: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    sampled: list[tuple[int, str]] = field(default_factory=list)
    values: dict[str, list[str | None]] = field(default_factory=lambda: {f: [] for f in FIELDS})
    kinds: dict[str, list[int]] = field(default_factory=lambda: {f: [] for f in FIELDS})
    read_only: list[int] = field(default_factory=list)
    index: list[int] = field(default_factory=list)

    def reject(self, index: int, reason: str, sample: int) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if len(self.sampled) < sample:
            self.sampled.append((index, reason))

    def keep(self, index: int, values: dict[str, Any], read_only: int) -> None:
        for name in FIELDS:
            value = values.get(name)
            kind = _kind(value)
            self.values[name].append(value if kind == STRING else None)
            self.kinds[name].append(kind)
        self.read_only.append(read_only)
        self.index.append(index)


class _Object(list):
    """A JSON object as its (key, value) pairs: duplicates are all kept (the last one wins when read)."""


class _Syntax(Exception):
    def __init__(self, pos: int, message: str) -> None:
        super().__init__(message)
        self.pos = pos


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _any_int(text: str) -> int:
    return 0  # only the type matters, and int() refuses numbers of more than 4300 digits


_OPTIONS = {"object_pairs_hook": _Object, "parse_constant": _no_constant, "parse_int": _any_int}
_STRICT = json.JSONDecoder(**_OPTIONS)
_LAX = json.JSONDecoder(**_OPTIONS, strict=False)
_WS = re.compile(r"[ \t\n\r]*")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f]")
_STRING = re.compile(r'"(?:[^"\\]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"')
_SCALAR = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|true|false|null")


def _ws(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()


def _kind(value: Any) -> int:
    if value is None:
        return ABSENT
    if isinstance(value, str):
        return STRING
    if isinstance(value, bool):
        return 4
    if isinstance(value, int):
        return 2
    if isinstance(value, float):
        return 3
    return 5 if isinstance(value, _Object) else 6


def _inspect(value: Any) -> tuple[int, bool]:
    """(nesting depth, holds a surrogate) of a parsed value, without recursion."""
    depth, bad = 0, False
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, str):
            bad = bad or _SURROGATE.search(item) is not None
        elif isinstance(item, list):
            depth = max(depth, level)
            if isinstance(item, _Object):
                for key, child in item:
                    bad = bad or _SURROGATE.search(key) is not None
                    stack.append((child, level + 1))
            else:
                stack.extend((child, level + 1) for child in item)
    return depth, bad


def _skip_deep(text: str, pos: int) -> tuple[int, bool, int]:
    """(end, bad text, depth) of the value at ``pos``, validated without recursion (for values
    too deep for json's own recursion)."""
    closers: list[str] = []
    depth, bad = 0, False

    def string(at: int) -> int:
        nonlocal bad
        match = _STRING.match(text, at)
        if match is None:
            raise _Syntax(at, "invalid string")
        token = match.group()
        bad = bad or _CONTROL.search(token) is not None or _SURROGATE.search(_LAX.decode(token)) is not None
        return match.end()

    def key(at: int) -> int:
        if text.startswith('"', at):
            at = _ws(text, string(at))
            if text.startswith(":", at):
                return _ws(text, at + 1)
        raise _Syntax(at, "expected a key")

    while True:
        if pos >= len(text):
            raise _Syntax(pos, "unexpected end of data")
        char = text[pos]
        if char in "{[":
            closers.append("}" if char == "{" else "]")
            depth = max(depth, len(closers))
            pos = _ws(text, pos + 1)
            if text.startswith(closers[-1], pos):
                pos += 1
                closers.pop()
            else:
                if closers[-1] == "}":
                    pos = key(pos)
                continue
        elif char == '"':
            pos = string(pos)
        else:
            match = _SCALAR.match(text, pos)
            if match is None:
                raise _Syntax(pos, "expected a value")
            pos = match.end()
        while closers:  # after a value: close what ends here, or go on after a ','
            pos = _ws(text, pos)
            if text.startswith(",", pos):
                pos = _ws(text, pos + 1)
                if closers[-1] == "}":
                    pos = key(pos)
                break
            if not text.startswith(closers[-1], pos):
                raise _Syntax(pos, f"expected ',' or '{closers[-1]}'")
            pos += 1
            closers.pop()
        if not closers:
            return pos, bad, depth


def _value(text: str, pos: int) -> tuple[Any, int, bool, int]:
    """(value, end, bad text, depth) of the JSON value at ``pos``; value is None when too deep to build."""
    try:
        value, end = _STRICT.raw_decode(text, pos)
        bad = False
    except RecursionError:
        end, bad, depth = _skip_deep(text, pos)
        return None, end, bad, depth
    except json.JSONDecodeError:
        try:  # valid but for raw control characters in strings: text that is not valid
            value, end = _LAX.raw_decode(text, pos)
            bad = True
        except RecursionError:
            end, bad, depth = _skip_deep(text, pos)
            return None, end, bad, depth
        except json.JSONDecodeError as exc:
            raise _Syntax(exc.pos, exc.msg) from None
        except ValueError as exc:
            raise _Syntax(pos, str(exc)) from None
    except ValueError as exc:  # NaN, Infinity
        raise _Syntax(pos, str(exc)) from None
    depth, surrogate = _inspect(value)
    return value, end, bad or surrogate, depth


def _read_only(value: Any) -> int:
    if value is None:
        return READ_ONLY_ABSENT
    if isinstance(value, bool):
        return READ_ONLY_TRUE if value else READ_ONLY_FALSE
    if isinstance(value, str) and value.isascii() and value.lower() in ("true", "false"):
        return READ_ONLY_TRUE if value.lower() == "true" else READ_ONLY_FALSE
    return READ_ONLY_OTHER


def _record(rows: DocumentRows, index: int, value: Any, bad: bool, depth: int, sample: int) -> None:
    """Classify one record: rejected with the first reason that applies, or kept as a row."""
    if depth > MAX_DEPTH - 2:
        return rows.reject(index, "too_deep", sample)
    if bad:
        return rows.reject(index, "bad_text", sample)
    if not isinstance(value, _Object):
        return rows.reject(index, "not_object", sample)
    values: dict[str, Any] = {}
    identity: Any = None
    read_only = READ_ONLY_ABSENT
    for key, item in value:
        if key == "userIdentity":
            identity = item
        elif key == "readOnly":
            read_only = _read_only(item)
        elif key in TOP_FIELDS:
            values[key] = item
    if not isinstance(identity, _Object):
        return rows.reject(index, "no_identity", sample)
    for key, item in identity:
        if key in IDENTITY_FIELDS:
            values[f"userIdentity.{key}"] = item
    for name, reason in (
        ("eventTime", "no_event_time"),
        ("eventName", "no_event_name"),
        ("sourceIPAddress", "no_source"),
    ):
        if values.get(name) is None:
            return rows.reject(index, reason, sample)
    rows.keep(index, values, read_only)


def byte_offset(text: str, pos: int, start: int = 0) -> int:
    """The byte offset in the document of character ``pos`` of its decoded text."""
    return start + len(text[:pos].encode("utf-8", "surrogateescape"))


def read_document(raw: bytes, sample: int) -> DocumentRows:
    """One document by the rules above, with Python's json (the reference the scanner is held to)."""
    text = raw.decode("utf-8", "surrogateescape")
    bom = 3 if text.startswith("\ufeff") else 0
    if bom:
        text = text[1:]
    try:
        return _read(text, sample)
    except _Syntax as exc:
        at = byte_offset(text, exc.pos, bom)
        return DocumentRows(status="not_json", detail=f"{exc} at byte {at}")


def _read(text: str, sample: int) -> DocumentRows:
    rows = DocumentRows()
    pos = _ws(text, 0)
    if pos == len(text):
        raise _Syntax(pos, "no JSON value (empty or whitespace only)")
    bad = too_deep = False
    seen = not_array = False
    is_object = text[pos] == "{"
    if not is_object:
        _, pos, bad, depth = _value(text, pos)
        too_deep = depth > MAX_DEPTH
    else:
        pos = _ws(text, pos + 1)
        more = not text.startswith("}", pos)
        pos = pos if more else pos + 1
        while more:
            if not text.startswith('"', pos):
                raise _Syntax(pos, "expected a key")
            key, pos, key_bad, _ = _value(text, pos)
            bad = bad or key_bad
            pos = _ws(text, pos)
            if not text.startswith(":", pos):
                raise _Syntax(pos, "expected ':'")
            pos = _ws(text, pos + 1)
            if key == "Records":
                seen = True
                not_array = not_array or not text.startswith("[", pos)
            if key == "Records" and text.startswith("[", pos):
                pos = _records(text, pos, rows, sample)
            else:
                _, pos, value_bad, depth = _value(text, pos)
                bad, too_deep = bad or value_bad, too_deep or depth > MAX_DEPTH - 1
            pos = _ws(text, pos)
            if text.startswith(",", pos):
                pos = _ws(text, pos + 1)
            elif text.startswith("}", pos):
                pos, more = pos + 1, False
            else:
                raise _Syntax(pos, "expected ',' or '}'")
    end = _ws(text, pos)
    if end != len(text):
        raise _Syntax(end, "extra data after the JSON value (several documents, or JSON Lines?)")
    status = "too_deep" if too_deep else "bad_text" if bad else "ok"
    if status == "ok" and (not is_object or not seen or not_array):
        status = "not_cloudtrail"
    if status != "ok":
        return DocumentRows(status=status)
    return rows


def _records(text: str, pos: int, rows: DocumentRows, sample: int) -> int:
    """Read the "Records" array at ``pos`` into ``rows``, record by record; returns where it ends."""
    pos = _ws(text, pos + 1)
    if text.startswith("]", pos):
        return pos + 1
    while True:
        value, pos, bad, depth = _value(text, pos)
        _record(rows, rows.records, value, bad, depth, sample)
        rows.records += 1
        pos = _ws(text, pos)
        if text.startswith(",", pos):
            pos = _ws(text, pos + 1)
        elif text.startswith("]", pos):
            return pos + 1
        else:
            raise _Syntax(pos, "expected ',' or ']'")
