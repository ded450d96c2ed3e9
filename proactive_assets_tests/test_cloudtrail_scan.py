"""The C field scanner, and pyarrow's reader, against the reference reader on edge cases and fuzzed input.

The reference is ``cloudtrail_json.read_document`` (Python's json, following the rules written in
``cloudtrail_json``). The scanner and pyarrow's reader must give exactly what it gives: the same
events, the same record-level problems, the same objects rejected (the syntax error's wording
may differ).
"""

import json
import os
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from proactive_assets.core.sources import cloudtrail_json, cloudtrail_records
from proactive_assets.core.sources.cloudtrail_records import RawLog
from proactive_assets_tests.cloudtrail_fixtures import record
from proactive_assets_tests.conftest import SAMPLES
from proactive_assets_tests.sanitized import run_sanitized

needs_scanner = pytest.mark.skipif(
    cloudtrail_records.scanner is None and not os.environ.get("CI"), reason="scanner not built"
)


@needs_scanner
def test_scanner_is_built() -> None:
    """setup.py builds it wherever there is a C compiler, as in CI; without it ingest is ~3x slower."""
    assert cloudtrail_records.scanner is not None


@needs_scanner
def test_scanner_and_reference_share_the_rules() -> None:
    scanner = cloudtrail_records.scanner
    assert scanner.MAX_DEPTH == cloudtrail_json.MAX_DEPTH
    assert scanner.FIELDS == cloudtrail_json.FIELDS
    assert scanner.KINDS == cloudtrail_json.KINDS
    assert scanner.REASONS == cloudtrail_json.REASON_NAMES
    assert set(scanner.STATUSES[1:]) == {"not_json", *cloudtrail_json.STATUS_REASONS}


def logs_of(docs: list[bytes]) -> list[RawLog]:
    return [RawLog(d, f"f{i}", "111122223333", "us-east-1") for i, d in enumerate(docs)]


def exact(docs: list[bytes]) -> cloudtrail_records.EventBatch:
    logs = logs_of(docs)
    found = cloudtrail_records._python_records(logs, list(range(len(logs))))
    sources, accounts, regions = ([getattr(log, k) for log in logs] for k in ("source_file", "account", "region"))
    return cloudtrail_records._normalise(found, sources, accounts, regions)


def scanned(docs: list[bytes]) -> cloudtrail_records.EventBatch:
    return cloudtrail_records.parse_logs(logs_of(docs))


def without_scanner(docs: list[bytes], monkeypatch: pytest.MonkeyPatch) -> cloudtrail_records.EventBatch:
    with monkeypatch.context() as patch:
        patch.setattr(cloudtrail_records, "scanner", None)
        return cloudtrail_records.parse_logs(logs_of(docs))


def comparable(batch: cloudtrail_records.EventBatch) -> tuple:
    """Everything but the wording of a syntax error (each reader says it its own way)."""
    problems = sorted(
        (
            p.source_file,
            p.record_index,
            p.field,
            p.reason.split(" (")[0] if p.record_index < 0 else p.reason,
            p.record_rejected,
        )
        for p in batch.problems
    )
    return problems, batch.rejected, batch.unlisted, batch.events.to_pylist()


def assert_same(got: cloudtrail_records.EventBatch, want: cloudtrail_records.EventBatch, doc: bytes) -> None:
    assert comparable(got)[:3] == comparable(want)[:3], doc[:200]
    assert got.events.equals(want.events), (doc[:200], got.events.to_pylist(), want.events.to_pylist())


def dump(records: object, **kwargs) -> bytes:
    return json.dumps({"Records": records}, **kwargs).encode()


def with_record(text: bytes) -> bytes:
    """A document of a good record, the record ``text`` and another good record."""
    good = json.dumps(record()).encode()
    return b'{"Records": [' + good + b", " + text + b", " + good + b"]}"


RECORD = json.dumps(record()).encode()
DEEP = b"[" * 100_000 + b"]" * 100_000

EDGE_CASES = {
    "escapes": dump(
        [
            record(
                name='Get"Obj\\ect\n\t/\b\f\r',
                userAgent="caf\u00e9 \U0001f600 \u2028",
                arn="arn:aws:iam::1:user/\u00e9",
            )
        ]
    ),
    "raw utf-8": dump([record(userAgent="café 😀", requestParameters={"k": "日本語"})], ensure_ascii=False),
    "mistyped": dump(
        [
            record(name=7),
            record(userAgent=1.5),
            record(errorCode=True),
            record(eventSource={"a": 1}),
            record(awsRegion=[1, 2]),
            record(eventID=-0.5e-3),
            record(userIdentity={"type": "IAMUser", "arn": 12}),
            record(time=20240305),
            record(ip=[1]),
            record(userIdentity={"type": False, "arn": "a", "accountId": 1.0, "invokedBy": {}}),
        ]
    ),
    "marker text is data": dump([record(userAgent="\u0000mistyped:int"), record(userAgent="\x00mistyped:dict")]),
    "nulls": dump([record(userAgent=None, errorCode=None), record(userIdentity=None), record(eventTime=None)]),
    "identity not an object": dump([record(userIdentity="root"), record(userIdentity=[1])]),
    "records not objects": dump([1, "x", None, [], record(), True, {}]),
    "missing fields": dump([{"userIdentity": {}}, {"userIdentity": {}, "eventTime": "2024-03-05T10:00:00Z"}]),
    "deeply nested skipped values": dump([record(requestParameters={"a": [[[{"b": [1, 2.5e10, None, False]}]]] * 3})]),
    "pretty printed": dump([record(), record(ip="2001:db8::1")], indent=2),
    "empty records": dump([]),
    "other top-level keys": b'{"a": {"Records": 1}, "Records": [' + RECORD + b'], "z": [true]}',
    "duplicate keys": b'{"Records": [{"eventName": "A", "eventName": "B", "userIdentity": {"arn": "x"}, '
    b'"userIdentity": {"type": "Root"}, "eventTime": "2024-03-05T10:00:00Z", "sourceIPAddress": "1.2.3.4"}]}',
    "duplicate identity, last not an object": with_record(RECORD[:-1] + b', "userIdentity": "x"}'),
    "duplicate Records: both read": dump([record(name="First")])[:-1] + b', "Records": [' + RECORD + b"]}",
    "duplicate Records, one not an array": dump([record()])[:-1] + b', "Records": null}',
    "escaped key": dump([record()]).replace(b'"eventName"', b'"event\\u004eame"'),
    "escaped identity and Records keys": dump([record()])
    .replace(b'"userIdentity"', b'"user\\u0049dentity"')
    .replace(b'"Records"', b'"\\u0052ecords"'),
    "escaped key with a lone surrogate": with_record(RECORD[:-1] + b', "k\\ud800": 1}'),
    "surrogate pair": dump([record(userAgent="\U0001f600")]),
    "lone surrogate in a wanted field": dump([record()]).replace(b'"aws-cli/2.15"', b'"\\ud800x"'),
    "lone low surrogate in a skipped value": with_record(RECORD[:-1] + b', "requestParameters": {"k": "\\udc00"}}'),
    "high surrogate then another escape": with_record(RECORD[:-1] + b', "k": "\\ud800\\u0041"}'),
    "high surrogate then a bad escape": with_record(RECORD[:-1] + b', "k": "\\ud800\\uZZZZ"}'),
    "NaN": dump([record(userAgent=float("nan"))]),
    "Infinity in a skipped value": with_record(RECORD[:-1] + b', "k": -Infinity}'),
    "big number": with_record(RECORD[:-1] + b', "k": ' + b"9" * 5000 + b"}"),
    "numbers": with_record(RECORD[:-1] + b', "k": [0, -0, 1e5, 1E-5, -1.5e+3, 123456789012345678901234567890]}'),
    "deeper than allowed": dump([record(requestParameters=json.loads("[" * 600 + "]" * 600))]),
    "just deep enough": dump([record(requestParameters=json.loads("[" * 509 + "]" * 509))]),
    "one level too deep": dump([record(requestParameters=json.loads("[" * 510 + "]" * 510))]),
    "far too deep for json": with_record(RECORD[:-1] + b', "requestParameters": ' + DEEP + b"}"),
    "deep record that is not an object": with_record(DEEP),
    "deep outside the records": b'{"x": ' + DEEP + b', "Records": [' + RECORD + b"]}",
    "deep top-level array": DEEP,
    "deep and broken": with_record(RECORD[:-1] + b', "k": ' + b"[" * 100_000 + b"}"),
    "truncated": dump([record(), record()])[:-30],
    "trailing garbage": dump([record()]) + b" x",
    "two documents": dump([record()]) + dump([record()]),
    "JSON Lines": RECORD + b"\n" + RECORD + b"\n",
    "invalid utf-8 in a skipped value": with_record(RECORD[:-1] + b', "requestParameters": {"k": "\xff"}}'),
    "invalid utf-8 in a key": with_record(RECORD[:-1] + b', "k\xc3": 1}'),
    "invalid utf-8 in a wanted field": with_record(RECORD.replace(b"aws-cli", b"aws\xe2\x82cli")),
    "invalid utf-8 outside the records": b'{"x": "\xff", "Records": [' + RECORD + b"]}",
    "invalid utf-8 outside strings": with_record(b"\xff"),
    "overlong and surrogate encodings": with_record(RECORD[:-1] + b', "k": ["\xc0\x80", "\xed\xa0\x80", "\xf5"]}'),
    "control character": dump([record()]).replace(b"aws-cli", b"aws\x01cli"),
    "raw NUL in a skipped value": with_record(RECORD[:-1] + b', "k": "a\x00b"}'),
    "raw newline and tab in a wanted field": with_record(RECORD.replace(b"aws-cli", b"aws\n\tcli")),
    "raw control character outside the records": b'{"x": "\x1f", "Records": [' + RECORD + b"]}",
    "bad escape": dump([record()]).replace(b"aws-cli", b"aws\\xcli"),
    "leading zero": dump([record(readOnly=1)]).replace(b'"readOnly": 1', b'"readOnly": 01'),
    "readOnly values": dump(
        [
            record(readOnly=False),
            record(readOnly="TRUE"),
            record(readOnly="False"),
            record(readOnly=None),
            record(readOnly=1),
            record(readOnly="yes"),
            record(readOnly={}),
            {k: v for k, v in record().items() if k != "readOnly"},
        ]
    ),
    "readOnly escaped": dump([record(readOnly="tru\u0065")]).replace(b'"true"', b'"tru\\u0065"'),
    "byte order mark": b"\xef\xbb\xbf" + dump([record()]),
    "byte order mark elsewhere": b" \xef\xbb\xbf" + dump([record()]),
    "Records null": b'{"Records": null}',
    "Records an object": b'{"Records": {}}',
    "no Records": b'{"foo": 1}',
    "empty object": b"{}",
    "top-level array": dump([record()])[len(b'{"Records": ') : -1],
    "top-level string": b'"Records"',
    "empty": b"",
    "whitespace only": b" \n ",
    "event times": dump(
        [
            record(time="2024-03-05T10:00:00.123Z"),
            record(time="2024-03-05T10:00:00+00:00"),
            record(time="2024-03-05t10:00:00z"),
            record(time="2024-03-05 11:30:00.5+01:30"),
            record(time="2024-03-05T10:00:00"),
            record(time="yesterday"),
            record(time="2024-02-30T10:00:00Z"),
            record(time="２０２４-03-05T10:00:00Z"),
        ]
    ),
    "addresses": dump([record(ip="1.2.3.²"), record(ip="075.050.255.067"), record(ip="x" * 1000), record(arn="")]),
}


@needs_scanner
@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_scanner_matches_the_reference(name: str) -> None:
    doc = EDGE_CASES[name]
    assert_same(scanned([doc]), exact([doc]), doc)


@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_pyarrow_reader_matches_the_reference(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = EDGE_CASES[name]
    assert_same(without_scanner([doc], monkeypatch), exact([doc]), doc)


def test_reference_reader_decisions() -> None:
    """The rules themselves, on cases the issue names."""

    def reasons(doc: bytes) -> list[tuple[int, str | None, str]]:
        return [(p.record_index, p.field, p.reason) for p in exact([doc]).problems]

    bad_text = cloudtrail_json.REASONS["bad_text"][1]
    too_deep = cloudtrail_json.REASONS["too_deep"][1]
    assert reasons(EDGE_CASES["invalid utf-8 in a skipped value"]) == [(1, "record", bad_text)]
    assert reasons(EDGE_CASES["far too deep for json"]) == [(1, "record", too_deep)]
    assert reasons(EDGE_CASES["just deep enough"]) == []
    assert reasons(EDGE_CASES["one level too deep"]) == [(0, "record", too_deep)]
    both = exact([EDGE_CASES["duplicate Records: both read"]])
    assert both.events.column("event_name").to_pylist() == ["First", "DescribeInstances"]
    marker = exact([EDGE_CASES["marker text is data"]])
    assert marker.problems == [] and marker.events.column("user_agent").to_pylist()[0] == "\x00mistyped:int"
    read_only = exact([EDGE_CASES["readOnly values"]])
    assert read_only.events.column("read_only").to_pylist() == [False, True, False, None, None, None, None, None]
    assert [p.record_index for p in read_only.problems] == [4, 5, 6]
    assert not any(p.record_rejected for p in read_only.problems)
    assert reasons(EDGE_CASES["NaN"])[0][2].startswith("not valid JSON")
    assert reasons(EDGE_CASES["byte order mark"]) == []
    assert reasons(EDGE_CASES["JSON Lines"])[0][2].startswith("not valid JSON (extra data")


@needs_scanner
def test_real_samples_match_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    records = []
    for path in sorted((SAMPLES / "cloudtrail").glob("*.json")):
        records += json.loads(path.read_text())
    assert records, f"no CloudTrail samples in {SAMPLES / 'cloudtrail'}"
    doc = dump(records)
    assert_same(scanned([doc]), exact([doc]), doc)
    assert_same(without_scanner([doc], monkeypatch), exact([doc]), doc)


@needs_scanner
def test_a_bad_object_in_a_batch_leaves_the_others_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = [dump([record(event_id=f"{i}-{j}") for j in range(3)]) for i in range(6)]
    docs[2] = docs[2][:-5]
    docs[3] = dump([record(event_id="3-0"), record(event_id="3-1", name=None), record(event_id="3-2")])
    docs[4] = with_record(b'{"eventName": "\xff"}')
    want = exact(docs)
    for got in (scanned(docs), without_scanner(docs, monkeypatch)):
        assert comparable(got)[:3] == comparable(want)[:3]
        assert got.events.equals(want.events)
    assert [p.record_index for p in want.problems if p.source_file == "f3"] == [1]
    assert [p.record_index for p in want.problems if p.source_file == "f4"] == [1]
    assert want.events.num_rows == 3 * 3 + 2 + 2  # three whole objects, and the good records of f3 and f4


@needs_scanner
def test_problems_are_counted_all_and_named_up_to_the_cap() -> None:
    doc = b'{"Records": [' + b",".join([b"{}"] * 5000 + [RECORD, b"5", RECORD[:-1] + b', "userAgent": 1}']) + b"]}"
    for batch in (scanned([doc]), exact([doc])):
        assert batch.rejected == {"userIdentity": 5000, "record": 1, "userAgent": 1}
        assert len(batch.problems) == cloudtrail_records.MAX_LISTED_PROBLEMS
        assert [p.record_index for p in batch.problems] == list(range(100))
        assert batch.unlisted == 5002 - 100
        assert batch.events.num_rows == 1


ALPHABET = b'{}[]":,\\ \n0123456789-+.eEtrufalsnNI\x00\x01\x1f\x7f\x80\xc3\xa9\xed\xa0\xf0\xef\xbb\xbfuUdD'


def mutate(rng: random.Random, base: bytes) -> bytes:
    doc = bytearray(base)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(doc))
        action = rng.random()
        if action < 0.35:
            doc[at] = rng.choice(ALPHABET)
        elif action < 0.6:
            del doc[at : at + rng.randint(1, 8)]
        elif action < 0.9:
            doc[at:at] = bytes([rng.choice(ALPHABET)])
        else:  # a run of brackets, deep enough to cross MAX_DEPTH now and then
            doc[at:at] = bytes([rng.choice(b"[{")]) * rng.choice([3, 520, 2000])
    return bytes(doc)


FUZZ_BASE = dump(
    [
        record(),
        record(ip="2001:db8::1", userAgent="é\\n", requestParameters={"x": [1, {"y": None}]}),
        record(readOnly=False, errorCode="AccessDenied", requestParameters={"deep": [[["a"]]]}),
    ],
    ensure_ascii=False,
)


@needs_scanner
def test_fuzzed_objects_match_the_reference() -> None:
    """Random byte edits of realistic objects: each result is the reference's, or the scanner crashed."""
    rng = random.Random(1234)
    for _ in range(600):
        doc = mutate(rng, FUZZ_BASE)
        assert_same(scanned([doc]), exact([doc]), doc)


def test_fuzzed_objects_read_without_the_scanner_match_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(4321)
    for _ in range(300):
        doc = mutate(rng, FUZZ_BASE)
        assert_same(without_scanner([doc], monkeypatch), exact([doc]), doc)


@needs_scanner
def test_a_mistyped_identity_field_is_reported_by_name() -> None:
    parsed = scanned([dump([record(), record(userIdentity={"type": "IAMUser", "arn": 12})])])
    assert [(p.record_index, p.field, p.reason) for p in parsed.problems] == [
        (1, "userIdentity.arn", "field userIdentity.arn has the wrong type (int)")
    ]
    assert parsed.events.num_rows == 1


@needs_scanner
def test_scanner_rows_come_out_as_arrow_columns() -> None:
    """The buffers the scanner hands over are Arrow string columns as they are (no copy, valid UTF-8)."""
    parsed = scanned([EDGE_CASES["escapes"], EDGE_CASES["raw utf-8"]])
    parsed.events.validate(full=True)
    assert isinstance(parsed.events.column("user_agent"), pa.ChunkedArray)
    assert parsed.events.column("user_agent").to_pylist() == ["caf\u00e9 \U0001f600 \u2028", "café 😀"]


SANITIZED_RUN = """
import random, sys
from proactive_assets_tests import test_cloudtrail_scan as t
from proactive_assets_tests.sanitized import load_extension
scanner = load_extension("_cloudtrail_scan", sys.argv[1])
docs = list(t.EDGE_CASES.values())
docs.append(b'{"Records": [{"userAgent": "", "userIdentity": {"arn": ""}, "eventTime": "", "eventName": "",'
            b' "sourceIPAddress": ""}]}')  # empty strings first: memcpy(NULL, src, 0) before the fix
rng = random.Random(99)
docs += [t.mutate(rng, t.FUZZ_BASE) for _ in range(300)]
for doc in docs:
    scanner.scan([doc], 100)
scanner.scan(docs, 3)
print("clean", len(docs))
"""


def test_scanner_is_clean_under_address_and_undefined_behaviour_sanitizers(tmp_path: Path) -> None:
    """The scanner built with -fsanitize=address,undefined reads every edge case and fuzzed input
    without a report (memcpy(NULL, src, 0) on a first empty string was one, before the fix)."""
    source = Path(cloudtrail_records.__file__).with_name("_cloudtrail_scan.c")
    assert run_sanitized(source, "_cloudtrail_scan", SANITIZED_RUN, tmp_path).startswith("clean")


def test_structure_count_skips_strings_and_escapes() -> None:
    """Without the scanner, pyarrow's reads are checked for depth by counting brackets outside
    strings; strings full of brackets, quotes and backslashes must not fool the count."""
    rng = random.Random(7)
    pieces = ["[", "]", "{", "}", '"', "\\", "\\\\", '\\"', "x"]

    def value(depth: int) -> object:
        if depth == 0 or rng.random() < 0.3:
            return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))
        if rng.random() < 0.5:
            return [value(depth - 1) for _ in range(rng.randint(0, 3))]
        return {value(0): value(depth - 1) for _ in range(rng.randint(0, 3))}

    for _ in range(300):
        item = value(rng.randint(0, 8))
        text = json.dumps({"Records": [item]}).encode()
        depth = cloudtrail_json._value(text.decode(), 0)[3]
        assert cloudtrail_records._structure(text) == (depth, False), text
    deep = b'{"a": "' + b"[" * 600 + b'\\"", "b": ' + b"[" * 10 + b"]" * 10 + b"}"
    assert cloudtrail_records._structure(deep) == (11, False)
    assert cloudtrail_records._structure(b'{"NaN": "Infinity \xef\xbb\xbf", "x": [NaN]}') == (2, True)
    assert cloudtrail_records._structure(b'{"Na\\"N": "x", "y": Infinity}') == (1, True)
    assert cloudtrail_records._structure(b'\xef\xbb\xbf{"NaN": "Infinity"}') == (1, True)
    assert cloudtrail_records._structure(b'{"a\\\\": "N"}') == (1, False)


EVENT_TIMES = [
    "2024-06-01T10:00:00Z",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "2024-02-29T12:34:56Z",
    "2023-02-29T12:34:56Z",
    "2100-02-29T00:00:00Z",
    "2000-02-29T00:00:00Z",
    "2024-04-31T00:00:00Z",
    "2024-13-01T00:00:00Z",
    "2024-00-10T00:00:00Z",
    "2024-06-00T00:00:00Z",
    "2024-06-01T24:00:00Z",
    "2024-06-01T23:60:00Z",
    "2024-06-01T23:59:60Z",
    "2024-06-01t10:00:00Z",
    "2024-06-01T10:00:00z",
    "2024-06-01 10:00:00Z",
    "2024-06-01T10:00:00.123Z",
    "2024-06-01T10:00:00+02:00",
    "2024-06-01T10:00:00",
    "2024-6-01T10:00:00Z",
    "+024-06-01T10:00:00Z",
    "2024-06-01T10:00:0xZ",
    "２０２４-06-01T10:00:00Z",
    "",
]


@needs_scanner
def test_the_scanners_event_times_are_the_reference_ones() -> None:
    """The scanner parses CloudTrail's exact form itself (no pass of its own over the day's times);
    whatever it parses or leaves over gives the time the reference reader gives."""
    docs = [dump([record(time=t, event_id=str(i)) for i, t in enumerate(EVENT_TIMES)])]
    escaped = RECORD.replace(b'"2024-03-05T10:00:00Z"', b'"2024-03-05T10:00:00\\u005a"')
    assert escaped != RECORD
    docs.append(b'{"Records": [' + escaped + b"]}")
    got, want = scanned(docs), exact(docs)
    assert got.problems == want.problems and got.rejected == want.rejected
    assert got.events.equals(want.events)  # year 0 included: compared as Arrow values, not datetimes
    millis = got.events.column("event_time").cast(pa.int64()).to_pylist()
    assert len(millis) == len(EVENT_TIMES) + 1 - len(got.problems)
    assert millis[0] == 1_717_236_000_000 and millis[-1] == 1_709_632_800_000


@needs_scanner
def test_the_scanner_hands_over_event_times_in_milliseconds() -> None:
    times = ("2024-06-01T10:00:01Z", "2024-06-01T10:00:00.5Z", "1970-01-01T00:00:00Z")
    *_, event_ms, _outcomes = cloudtrail_records.scanner.scan([dump([record(time=t) for t in times])], 10)
    got = np.frombuffer(event_ms, dtype=np.int64).tolist()
    assert got == [1_717_236_001_000, cloudtrail_records.NO_EVENT_MS, 0]
