"""The C field scanner against the exact reader (json.loads), on edge cases and on fuzzed input.

The scanner must either give exactly what json.loads gives, or reject the object so that the
exact reader handles it: it may never be silently different.
"""

import json
import os
import random

import pyarrow as pa
import pytest

from proactive_assets.core.sources import cloudtrail_records
from proactive_assets.core.sources.cloudtrail_records import RawLog
from proactive_assets_tests.cloudtrail_fixtures import record
from proactive_assets_tests.conftest import SAMPLES

pytestmark = pytest.mark.skipif(
    cloudtrail_records.scanner is None and not os.environ.get("CI"), reason="scanner not built"
)


def test_scanner_is_built() -> None:
    """setup.py builds it wherever there is a C compiler, as in CI; without it ingest is ~3x slower."""
    assert cloudtrail_records.scanner is not None


def exact(doc: bytes, name: str = "f") -> cloudtrail_records.EventBatch:
    return cloudtrail_records._parse_one(doc, RawLog(doc, name, "111122223333", "us-east-1"), columnar=False)


def scanned(docs: list[bytes]) -> cloudtrail_records.EventBatch:
    return cloudtrail_records.parse_logs([RawLog(d, f"f{i}", "111122223333", "us-east-1") for i, d in enumerate(docs)])


def assert_same(doc: bytes) -> None:
    got, want = scanned([doc]), exact(doc, "f0")
    assert got.problems == want.problems, doc[:200]
    assert got.events.equals(want.events), (doc[:200], got.events.to_pylist(), want.events.to_pylist())


def dump(records: object, **kwargs) -> bytes:
    return json.dumps({"Records": records}, **kwargs).encode()


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
        ]
    ),
    "nulls": dump([record(userAgent=None, errorCode=None), record(userIdentity=None)]),
    "identity not an object": dump([record(userIdentity="root"), record(userIdentity=[1])]),
    "records not objects": dump([1, "x", None, [], record(), True]),
    "deeply nested skipped values": dump([record(requestParameters={"a": [[[{"b": [1, 2.5e10, None, False]}]]] * 3})]),
    "pretty printed": dump([record(), record(ip="2001:db8::1")], indent=2),
    "empty records": dump([]),
    "other top-level keys": b'{"a": {"Records": 1}, "Records": [' + json.dumps(record()).encode() + b'], "z": [true]}',
    "duplicate keys": b'{"Records": [{"eventName": "A", "eventName": "B", "userIdentity": {"arn": "x"}, '
    b'"userIdentity": {"type": "Root"}, "eventTime": "2024-03-05T10:00:00Z", "sourceIPAddress": "1.2.3.4"}]}',
    "duplicate Records": dump([record()])[:-1] + b', "Records": []}',
    "escaped key": dump([record()]).replace(b'"eventName"', b'"event\\u004eame"'),
    "surrogate pair": dump([record(userAgent="\U0001f600")]),
    "lone surrogate": dump([record()]).replace(b'"aws-cli/2.15"', b'"\\ud800x"'),
    "NaN": dump([record(userAgent=float("nan"))]),
    "deeper than the scanner goes": dump([record(requestParameters=json.loads("[" * 600 + "]" * 600))]),
    "truncated": dump([record(), record()])[:-30],
    "trailing garbage": dump([record()]) + b" x",
    "two documents": dump([record()]) + dump([record()]),
    "invalid utf-8 in a skipped value": dump([record(requestParameters={"k": "é"})], ensure_ascii=False).replace(
        "é".encode(), b"\xff"
    ),
    "control character": dump([record()]).replace(b"aws-cli", b"aws\x01cli"),
    "bad escape": dump([record()]).replace(b"aws-cli", b"aws\\xcli"),
    "leading zero": dump([record(readOnly=1)]).replace(b'"readOnly": 1', b'"readOnly": 01'),
    "Records null": b'{"Records": null}',
    "top-level array": dump([record()])[len(b'{"Records": ') : -1],
    "empty": b"",
    "whitespace only": b" \n ",
}


@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_edge_cases_match_the_exact_reader(name: str) -> None:
    assert_same(EDGE_CASES[name])


def test_real_samples_match_the_exact_reader() -> None:
    records = []
    for path in sorted((SAMPLES / "cloudtrail").glob("*.json")):
        records += json.loads(path.read_text())
    assert records, f"no CloudTrail samples in {SAMPLES / 'cloudtrail'}"
    assert_same(dump(records))


def test_a_bad_object_in_a_batch_leaves_the_others_exact() -> None:
    docs = [dump([record(event_id=f"{i}-{j}") for j in range(3)]) for i in range(5)]
    docs[2] = docs[2][:-5]
    docs[3] = dump([record(event_id="3-0"), record(event_id="3-1", name=None), record(event_id="3-2")])
    got = scanned(docs)
    want = [exact(d, f"f{i}") for i, d in enumerate(docs)]
    assert sorted(got.problems, key=repr) == sorted((p for w in want for p in w.problems), key=repr)
    expected = pa.concat_tables([w.events for w in want]).sort_by("event_id")
    assert got.events.sort_by("event_id").equals(expected)
    assert [p.record_index for p in got.problems if p.source_file == "f3"] == [1]


def test_fuzzed_objects_match_the_exact_reader() -> None:
    """Random byte edits of realistic objects: each result is the exact reader's, or the scanner crashed."""
    rng = random.Random(1234)
    base = dump(
        [record(), record(ip="2001:db8::1", userAgent="é\\n", requestParameters={"x": [1, {"y": None}]})],
        ensure_ascii=False,
    )
    alphabet = b'{}[]":,\\ \n0123456789-+.eEtrufalsn\x00\x1f\x80\xc3\xa9\xed\xa0\xf0uU'
    for _ in range(400):
        doc = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(doc))
            action = rng.random()
            if action < 0.4:
                doc[at] = rng.choice(alphabet)
            elif action < 0.7:
                del doc[at : at + rng.randint(1, 8)]
            else:
                doc[at:at] = bytes([rng.choice(alphabet)])
        assert_same(bytes(doc))


def test_a_mistyped_identity_field_is_reported_by_name() -> None:
    parsed = scanned([dump([record(), record(userIdentity={"type": "IAMUser", "arn": 12})])])
    assert [(p.record_index, p.field, p.reason) for p in parsed.problems] == [
        (1, "userIdentity.arn", "field userIdentity.arn has the wrong type")
    ]
    assert parsed.events.num_rows == 1
