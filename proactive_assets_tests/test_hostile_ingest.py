"""A hostile corpus through the assets: no planted object can fail or blind a day.

Every case is one object planted among good ones in the day's bucket, run through
raw_cloudtrail -> cloudtrail_events -> learning_set as a real day is. Each is quarantined at the
right unit (the object, else the record) with its reason, or read, and every good object of the
day, and every good record beside a bad one, ends up in the events and the learning set. Run with
the C scanner and with the pyarrow reader used where it was not built.
"""

import gzip
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow.compute as pc
import pytest

from proactive_assets.core.storage import LocalStore
from proactive_assets_tests.cloudtrail_fixtures import log_key, record
from proactive_assets_tests.test_ingest import metadata, reader, resource, run_day  # noqa: F401 (fixture)

DAY = date(2024, 3, 5)
LIMIT = 1 << 20  # PROACTIVE_MAX_OBJECT_BYTES for this day: bombs stay cheap to build


def gz(text: bytes) -> bytes:
    return gzip.compress(text, mtime=0)


def rec(tag: str, **fields: object) -> bytes:
    """A good record of its own identity and address (the tag names both and the event)."""
    number = sum(map(ord, tag)) % 250 + 1
    body = record(arn=f"arn:aws:iam::111122223333:user/{tag}", ip=f"198.51.{number}.{len(tag)}", event_id=tag)
    return json.dumps({**body, **fields}).encode()


def around(tag: str, bad: bytes) -> bytes:
    """A document: a good record, ``bad`` (record #1), another good record."""
    return b'{"Records": [' + rec(f"{tag}-a") + b", " + bad + b", " + rec(f"{tag}-b") + b"]}"


def replaced(tag: str, **fields: object) -> bytes:
    """Record #1 of ``around``: a good record with ``fields`` replaced (None: removed)."""
    body = json.loads(rec(f"{tag}-x"))
    identity = dict(body["userIdentity"])
    for name, value in fields.items():
        target, key = (identity, name.split(".", 1)[1]) if name.startswith("userIdentity.") else (body, name)
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    if not any(name == "userIdentity" for name in fields):
        body["userIdentity"] = identity
    return json.dumps(body).encode()


DEEP = b"[" * 200_000 + b"]" * 200_000


@dataclass
class Case:
    """One planted object: what it holds, and what must become of it."""

    name: str
    body: bytes
    unit: str  # "object": quarantined whole; "record": record #1 rejected; "kept": record #1 kept
    reason: str = ""  # how the quarantine reason starts ("" for none)
    field: str | None = None
    kept: int = 0  # events the object must give
    index: int = 1  # the first problem's record
    around: bool = False  # built by ``around``: its records #0 and #2 are good


def record_case(name: str, bad: bytes, reason: str, field: str = "record") -> Case:
    return Case(name, gz(around(name, bad)), "record", reason, field, kept=2, around=True)


def kept_case(name: str, bad: bytes, reason: str = "", field: str | None = None) -> Case:
    return Case(name, gz(around(name, bad)), "kept", reason, field, kept=3, around=True)


GOOD = b'{"Records": [' + rec("plain") + b"]}"
NOT_JSON, NOT_CLOUDTRAIL = "not valid JSON", 'not a CloudTrail log: expected an object with a "Records" array'
TOO_BIG = "decompresses to more than PROACTIVE_MAX_OBJECT_BYTES"
BAD_TEXT = "record holds text that is not valid"
TOO_DEEP = "record nested deeper than 512 levels"

CASES = [
    # whole objects
    Case("truncated gzip", gz(GOOD)[:-12], "object", "not a readable gzip object"),
    Case("gzip bomb of zeros", gz(b"0" * (LIMIT * 16)), "object", TOO_BIG),
    Case("gzip bomb of empty records", gz(b'{"Records": [' + b"{}," * (LIMIT // 2) + b"{}]}"), "object", TOO_BIG),
    Case("stored object over the limit", b'{"Records": [' + b" " * LIMIT + b"]}", "object", "stored object of"),
    Case("gzip inside gzip", gz(gz(GOOD)), "object", NOT_JSON),
    Case("trailing garbage after gzip", gz(GOOD) + b"garbage", "object", "not a readable gzip object"),
    Case("second gzip member truncated", gz(GOOD) + gz(GOOD)[:-10], "object", "not a readable gzip object"),
    Case("not JSON at all", gz(b"<html>oops</html>"), "object", NOT_JSON),
    Case("gzip of nothing", gz(b""), "object", NOT_JSON),
    Case("whitespace only", gz(b" \n\t "), "object", NOT_JSON),
    Case("truncated JSON", gz(GOOD[:-10]), "object", NOT_JSON),
    Case("JSON Lines instead of a Records object", gz(rec("jl1") + b"\n" + rec("jl2") + b"\n"), "object", NOT_JSON),
    Case("two documents", gz(GOOD + GOOD), "object", NOT_JSON),
    Case("NaN", gz(around("nan", b'{"x": NaN}')), "object", NOT_JSON),
    Case("empty JSON object", gz(b"{}"), "object", NOT_CLOUDTRAIL),
    Case("top-level array of records", gz(b"[" + rec("arr") + b"]"), "object", NOT_CLOUDTRAIL),
    Case("Records null", gz(b'{"Records": null}'), "object", NOT_CLOUDTRAIL),
    Case("Records a string", gz(b'{"Records": "[]"}'), "object", NOT_CLOUDTRAIL),
    Case("array of numbers", gz(b"[1, 2, 3]"), "object", NOT_CLOUDTRAIL),
    Case(
        "deep outside the records",
        gz(b'{"x": ' + DEEP + b', "Records": [' + rec("deep-out") + b"]}"),
        "object",
        "nested deeper than 512 levels outside its records",
    ),
    Case(
        "invalid UTF-8 outside the records",
        gz(b'{"x": "\xff", "Records": [' + rec("utf-out") + b"]}"),
        "object",
        "holds text that is not valid outside its records",
    ),
    # one record of an object
    record_case("nested 1,000 levels", b'{"requestParameters": ' + b"[" * 1000 + b"]" * 1000 + b"}", TOO_DEEP),
    record_case("nested 200,000 levels", replaced("deep2")[:-1] + b', "requestParameters": ' + DEEP + b"}", TOO_DEEP),
    record_case("a record that is a deep array", DEEP, TOO_DEEP),
    record_case(
        "invalid UTF-8 in requestParameters",
        replaced("utf1")[:-1] + b', "requestParameters": {"name": "caf\xe9"}}',
        BAD_TEXT,
    ),
    record_case("invalid UTF-8 in userAgent", replaced("utf2").replace(b"aws-cli", b"aws\xc3cli"), BAD_TEXT),
    record_case("lone surrogate in userAgent", replaced("sur1").replace(b"aws-cli/2.15", b"\\ud800"), BAD_TEXT),
    record_case(
        "lone surrogate in requestParameters", replaced("sur2")[:-1] + b', "requestParameters": "\\udfff"}', BAD_TEXT
    ),
    record_case("raw NUL in a string", replaced("nul").replace(b"aws-cli", b"aws\x00cli"), BAD_TEXT),
    record_case("raw control characters in eventName", replaced("ctl").replace(b"Describe", b"Desc\n\x1b"), BAD_TEXT),
    record_case("record a number", b"5", "record is not a JSON object"),
    record_case("record null", b"null", "record is not a JSON object"),
    record_case("record an empty object", b"{}", "missing field userIdentity", "userIdentity"),
    record_case(
        "userIdentity a string", replaced("id", userIdentity="root"), "missing field userIdentity", "userIdentity"
    ),
    record_case("eventTime missing", replaced("t0", eventTime=None), "missing field eventTime", "eventTime"),
    record_case(
        "eventName null", replaced("n0")[:-1] + b', "eventName": null}', "missing field eventName", "eventName"
    ),
    record_case(
        "sourceIPAddress missing",
        replaced("s0", sourceIPAddress=None),
        "missing field sourceIPAddress",
        "sourceIPAddress",
    ),
    record_case("eventTime unparsable", replaced("t1", eventTime="yesterday"), "unparsable eventTime", "eventTime"),
    *[
        record_case(f"{name} mistyped", replaced(f"m{i}", **{name: value}), f"field {name} has the wrong type", name)
        for i, (name, value) in enumerate(
            [
                ("eventTime", 1709632800),
                ("eventName", {"a": 1}),
                ("eventSource", ["ec2"]),
                ("awsRegion", True),
                ("sourceIPAddress", 1.5),
                ("userAgent", {"nested": True}),
                ("errorCode", []),
                ("eventID", 7),
                ("recipientAccountId", False),
                ("userIdentity.type", 1),
                ("userIdentity.arn", {"arn": "x"}),
                ("userIdentity.accountId", [1]),
                ("userIdentity.invokedBy", 2.5),
            ]
        )
    ],
    # read, whatever it looks like
    kept_case(
        "non-ASCII digit in the source address",
        replaced("digit", sourceIPAddress="1.2.3.²"),
        "sourceIPAddress '1.2.3.²' is neither an IP address",
        "sourceIPAddress",
    ),
    kept_case("readOnly a number", replaced("ro", readOnly=5), "field readOnly is neither true nor false", "readOnly"),
    kept_case(
        "huge strings",
        replaced("huge", userAgent="u" * 300_000, sourceIPAddress="9" * 200_000),
        "sourceIPAddress",
        "sourceIPAddress",
    ),
    kept_case("the internal marker as userAgent", replaced("marker", userAgent="\u0000mistyped:int")),
    kept_case("duplicate keys", replaced("dupkey")[:-1] + b', "eventName": "Second"}'),
    kept_case("escaped keys", replaced("esc").replace(b'"eventName"', b'"event\\u004eame"')),
    kept_case("a number of 5,000 digits", replaced("bignum")[:-1] + b', "requestParameters": ' + b"7" * 5000 + b"}"),
    kept_case("export eventTime forms", replaced("when", eventTime="2024-03-05t10:00:00.250+00:00")),
    kept_case("an empty ARN", replaced("noarn", **{"userIdentity.arn": ""})),
    Case(
        "duplicate Records: both arrays read",
        gz(b'{"Records": [' + rec("dup1") + b'], "Records": [' + rec("dup2") + b"]}"),
        "kept",
        kept=2,
    ),
    Case("byte order mark", gz(b"\xef\xbb\xbf" + GOOD.replace(b"plain", b"bom")), "kept", kept=1),
    Case("pretty printed", gz(json.dumps({"Records": [json.loads(rec("pretty"))]}, indent=2).encode()), "kept", kept=1),
    Case(
        "records that are not objects",
        gz(b'{"Records": [1, "x", null, [], true, ' + rec("mixed") + b"]}"),
        "record",
        "record is not a JSON object",
        "record",
        kept=1,
        index=0,
    ),
    Case(
        "100,000 empty records",
        gz(b'{"Records": [' + b"{}," * 100_000 + rec("many") + b"]}"),
        "record",
        "missing field userIdentity",
        "userIdentity",
        kept=1,
        index=0,
    ),
]
GOOD_OBJECTS = [b'{"Records": [' + b", ".join(rec(f"good{i}-{j}") for j in range(3)) + b"]}" for i in range(5)]


def uid(n: int, prefix: str) -> str:
    return f"{prefix}{n:0{16 - len(prefix)}d}"


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    """Each case's object name (uid), so results can be matched back."""
    return {case.name: uid(i, "Case") for i, case in enumerate(CASES)}


def test_the_corpus_is_big_and_distinct() -> None:
    assert len(CASES) >= 50
    assert len({c.name for c in CASES}) == len(CASES)
    assert {c.unit for c in CASES} == {"object", "record", "kept"}


@pytest.mark.usefixtures("reader")
def test_no_planted_object_fails_or_blinds_the_day(tmp_path: Path, names: dict[str, str]) -> None:
    store = LocalStore(tmp_path / "bucket")
    for i, body in enumerate(GOOD_OBJECTS):
        store.put(log_key(DAY, minute=i, uid=uid(i, "Good")), gz(body))
    for i, case in enumerate(CASES):
        store.put(log_key(DAY, minute=100 + i, uid=names[case.name]), case.body)
    res = resource(str(tmp_path / "bucket"), str(tmp_path / "warehouse"), max_object_bytes=LIMIT)
    result = run_day(res)
    assert result.success

    warehouse = res.warehouse()
    events = warehouse.read_table("cloudtrail_events", DAY)
    quarantine = warehouse.read_table("cloudtrail_events", DAY, "quarantine").to_pylist()
    by_file: dict[str, list[dict]] = {}
    for row in quarantine:
        by_file.setdefault(row["source_file"].rsplit("_", 1)[-1].removesuffix(".json.gz"), []).append(row)
    files = [f.rsplit("_", 1)[-1].removesuffix(".json.gz") for f in events.column("source_file").to_pylist()]

    for case in CASES:
        name = names[case.name]
        found = by_file.get(name, [])
        got = files.count(name)
        assert got == case.kept, (case.name, got, found[:3])
        if case.unit == "object":
            assert [(r["record_index"], r["reason"][: len(case.reason)]) for r in found] == [(-1, case.reason)], (
                case.name,
                found,
            )
        elif case.unit == "record":
            first = found[0]
            assert (first["record_index"], first["field"], first["record_rejected"]) == (
                case.index,
                case.field,
                True,
            ), (
                case.name,
                found,
            )
            assert first["reason"].startswith(case.reason), (case.name, first)
        else:
            if case.reason:
                assert [(r["record_index"], r["field"], r["record_rejected"]) for r in found] == [
                    (1, case.field, False)
                ]
                assert found[0]["reason"].startswith(case.reason) or case.reason in found[0]["reason"], found
            else:
                assert found == [], (case.name, found)

    # Reasons quote log values escaped and cut short.
    assert all(len(r["reason"]) < 300 and "\n" not in r["reason"] for r in quarantine)

    # Every good object, and the good records beside each bad one, made it to the learning set.
    learning = warehouse.read_table("learning_set", DAY)
    entities = set(learning.column("entity").to_pylist())
    for i in range(len(GOOD_OBJECTS)):
        for j in range(3):
            assert f"arn:aws:iam::111122223333:user/good{i}-{j}" in entities
    for case in CASES:
        for tag in [f"{case.name}-a", f"{case.name}-b"] if case.around else []:
            assert f"arn:aws:iam::111122223333:user/{tag}" in entities, (case.name, tag)

    meta = metadata(result, "cloudtrail_events")
    objects = sum(1 for c in CASES if c.unit == "object")
    assert meta["quarantined_objects"] == objects
    assert meta["objects"] == len(CASES) + len(GOOD_OBJECTS)
    assert meta["objects_parsed"] == len(CASES) + len(GOOD_OBJECTS) - objects
    # 100,000 empty records are all counted, and a sample of them named
    many = by_file[names["100,000 empty records"]]
    assert len(many) == 100 and meta["rejected_reasons"]["userIdentity"] >= 100_000
    assert meta["problems_not_listed"] >= 100_000 - 100
    # the empty ARN is an event but not an entity; the marker is a user agent like any other
    noarn = pc.equal(events.column("event_id"), "noarn-x")
    assert events.filter(noarn).column("identity_arn").to_pylist() == [None]
    assert events.filter(noarn).column("is_pair").to_pylist() == [False]
    marker = events.filter(pc.equal(events.column("event_id"), "marker-x"))
    assert marker.column("user_agent").to_pylist() == ["\u0000mistyped:int"]
    assert metadata(result, "learning_set")["pairs"] == learning.num_rows > 0
