"""What one object may cost: every gzip member read, decompression bounded, problems counted not
listed, the read guarded batch by batch, the setting passed from the environment to the read.

Memory is measured indirectly, never by timing: tracemalloc sees every Python allocation, zlib's
output included, and the C scanner's buffers (it allocates with PyMem_RawMalloc).
"""

import gzip
import json
import zlib
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from proactive_assets.config import DEFAULT_MAX_OBJECT_BYTES, Settings
from proactive_assets.core.ipnet import KIND_INVALID, KIND_IP, canonical_ip, classify_source
from proactive_assets.core.sources import cloudtrail, cloudtrail_records
from proactive_assets.core.sources.cloudtrail_records import ObjectTooLarge, decompress
from proactive_assets.core.storage import LocalStore
from proactive_assets_tests.cloudtrail_fixtures import log_key, put_log, record
from proactive_assets_tests.conftest import peak_allocated
from proactive_assets_tests.test_ingest import reader  # noqa: F401 (fixture)

DAY = date(2024, 3, 5)


def doc(*records: dict) -> bytes:
    return json.dumps({"Records": list(records)}).encode()


# --------------------------------------------------------------------------------------------- gzip


def test_every_gzip_member_is_read() -> None:
    first, second = doc(record(event_id="one")), doc(record(event_id="two"))
    data = gzip.compress(first) + gzip.compress(second)
    assert decompress(data) == first + second
    # a document split over members reads whole
    text = doc(record(event_id="a"), record(event_id="b"))
    split = b"".join(gzip.compress(text[i : i + 50]) for i in range(0, len(text), 50))
    parsed = cloudtrail_records.parse_log_bytes(split, "f")
    assert parsed.problems == [] and parsed.events.column("event_id").to_pylist() == ["a", "b"]


def test_many_small_members() -> None:
    """zlib copies the input left over after each member: it is fed in chunks, so that stays small."""
    pieces = [gzip.compress(b" ") for _ in range(5_000)]
    data = gzip.compress(doc(record())) + b"".join(pieces)
    (text, peak) = peak_allocated(lambda: decompress(data))
    assert text == doc(record()) + b" " * 5_000
    assert peak < 4 << 20


def test_gzip_padding_garbage_and_truncation() -> None:
    good = gzip.compress(doc(record()))
    assert decompress(good + b"\0" * 100) == doc(record())  # zero padding, as gzip allows
    with pytest.raises(zlib.error, match="not gzip"):
        decompress(good + b"garbage")
    with pytest.raises(zlib.error, match="truncated"):
        decompress(good[:-8])
    with pytest.raises(zlib.error, match="truncated"):
        decompress(good + gzip.compress(b"more")[:-6])


def test_a_gzip_bomb_is_not_inflated_past_the_limit() -> None:
    limit = 1 << 20
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)  # 64 MiB of zeros in 64 KB

    def refused(data: bytes) -> str:
        with pytest.raises(ObjectTooLarge) as error:
            decompress(data, limit)
        return str(error.value)

    (reason, peak) = peak_allocated(lambda: refused(bomb))
    assert "decompresses to more than PROACTIVE_MAX_OBJECT_BYTES (1,048,576 bytes)" in reason
    assert peak < 4 * limit  # the output stopped at the limit, not at 64 MiB
    (_, peak) = peak_allocated(lambda: refused(gzip.compress(doc(record())) + bomb))  # a bomb as the second member
    assert peak < 4 * limit


def test_a_plain_object_over_the_limit() -> None:
    with pytest.raises(ObjectTooLarge, match="plain object larger than"):
        decompress(b"{" + b" " * 2000 + b"}", 1024)


def test_objects_over_the_limit_are_quarantined_unread(tmp_path: Path) -> None:
    """The listing's size is checked first: an object bigger than the limit is never fetched."""
    store = LocalStore(tmp_path)
    put_log(store, log_key(DAY, minute=0), [record()])
    store.put(log_key(DAY, minute=5, uid="Big0000000000000"), b"{" + b" " * 5000 + b"}")
    store.put(log_key(DAY, minute=10, uid="Bomb000000000000"), gzip.compress(b" " * 50_000))
    objects = cloudtrail.list_day(store, DAY).objects
    fetched = []
    get = store.get
    store.get = lambda key: fetched.append(key) or get(key)  # type: ignore[method-assign]
    batches = list(cloudtrail.read(store, objects, max_object_bytes=4096))
    problems = [p for b in batches for p in b.problems]
    assert [(Path(p.source_file).name.split("_")[-1], p.reason.split(" PROACTIVE")[0]) for p in problems] == [
        ("Big0000000000000.json.gz", "stored object of 5,002 bytes, larger than"),
        ("Bomb000000000000.json.gz", "decompresses to more than"),
    ]
    assert not any("Big" in key for key in fetched)
    assert sum(b.events.num_rows for b in batches) == 1


# --------------------------------------------------------------------------------------- problems


@pytest.mark.skipif(cloudtrail_records.scanner is None, reason="the C scanner is not built here")
def test_two_million_empty_records_cost_counts_not_rows() -> None:
    """5.9 KB of gzip held 2M empty records and cost 1.5 GB: now each costs a count, not a row or a Problem."""
    text = b'{"Records": [' + b"{}," * 2_000_000 + json.dumps(record()).encode() + b"]}"
    stored = gzip.compress(text, compresslevel=9)
    assert len(stored) < 20_000
    (parsed, peak) = peak_allocated(lambda: cloudtrail_records.parse_log_bytes(stored, "f"))
    assert parsed.rejected == {"userIdentity": 2_000_000}
    assert len(parsed.problems) == cloudtrail_records.MAX_LISTED_PROBLEMS
    assert parsed.unlisted == 2_000_000 - cloudtrail_records.MAX_LISTED_PROBLEMS
    assert parsed.events.num_rows == 1
    # the text (inflated in blocks, then joined) and little else: rows took ~80 bytes a record (160 MB)
    assert peak < 5 * len(text)


def test_a_day_names_at_most_so_many_record_problems() -> None:
    from proactive_assets.core.events import MAX_LISTED_RECORD_PROBLEMS, EventBatch, EventTally, Problem

    tally = EventTally()
    records = [Problem("f", "bad", i, "eventTime") for i in range(MAX_LISTED_RECORD_PROBLEMS + 5)]
    tally.add(EventBatch(cloudtrail_records.EVENTS_SCHEMA.empty_table(), [Problem("g", "unreadable"), *records]))
    tally.add(EventBatch(cloudtrail_records.EVENTS_SCHEMA.empty_table(), [Problem("h", "unreadable")], unlisted=7))
    assert tally.quarantined == ["g", "h"]  # every object is named
    assert len(tally.problems) == MAX_LISTED_RECORD_PROBLEMS + 2
    assert tally.unlisted_problems == 5 + 7


# ------------------------------------------------------------------------------------------ guards


@pytest.mark.usefixtures("reader")
def test_an_unexpected_error_quarantines_only_its_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug or an exhausted resource while parsing a batch: its objects are parsed one by one, and
    only the one that fails again is quarantined, with the error named."""
    store = LocalStore(tmp_path)
    for minute, ip in enumerate(["203.0.113.1", "203.0.113.66", "203.0.113.3"]):
        put_log(store, log_key(DAY, minute=minute, uid=f"Obj{minute:013d}"), [record(ip=ip, event_id=ip)])
    real = cloudtrail_records.classify_source

    def failing(value: str | None) -> tuple[str, str | None]:
        if value == "203.0.113.66":
            raise RuntimeError("injected failure")
        return real(value)

    monkeypatch.setattr(cloudtrail_records, "classify_source", failing)
    batches = list(cloudtrail.read(store, cloudtrail.list_day(store, DAY).objects))
    problems = [p for b in batches for p in b.problems]
    assert [(Path(p.source_file).name.split("_")[-1], p.reason) for p in problems] == [
        ("Obj0000000000001.json.gz", "could not be parsed (RuntimeError: injected failure)")
    ]
    assert sorted(i for b in batches for i in b.events.column("event_id").to_pylist()) == [
        "203.0.113.1",
        "203.0.113.3",
    ]


def test_non_ascii_digits_are_not_an_address() -> None:
    assert canonical_ip("1.2.3.²") is None
    assert canonical_ip("١.٢.٣.٤") is None
    assert classify_source("1.2.3.²") == (KIND_INVALID, None)
    assert classify_source("075.050.255.067") == (KIND_IP, "75.50.255.67")
    assert classify_source("1" * 100_000) == (KIND_INVALID, None)


# ----------------------------------------------------------------------------------------- setting


def test_the_setting_is_read_from_the_environment() -> None:
    assert Settings.from_env({}).max_object_bytes == DEFAULT_MAX_OBJECT_BYTES == cloudtrail_records.MAX_OBJECT_BYTES
    assert Settings.from_env({"PROACTIVE_MAX_OBJECT_BYTES": "2048"}).max_object_bytes == 2048
    with pytest.raises(ValueError, match="PROACTIVE_MAX_OBJECT_BYTES"):
        Settings.from_env({"PROACTIVE_MAX_OBJECT_BYTES": "lots"})
    with pytest.raises(ValueError, match="PROACTIVE_MAX_OBJECT_BYTES"):
        Settings.from_env({"PROACTIVE_MAX_OBJECT_BYTES": str(4 << 30)})


def test_the_setting_reaches_the_asset(tmp_path: Path) -> None:
    from proactive_assets_tests.test_ingest import metadata, resource, run_day

    store = LocalStore(tmp_path / "bucket")
    put_log(store, log_key(DAY, minute=0), [record()])
    store.put(log_key(DAY, minute=5, uid="Large00000000000"), gzip.compress(doc(*[record()] * 20)))
    res = resource(str(tmp_path / "bucket"), str(tmp_path / "warehouse"), max_object_bytes=4096)
    result = run_day(res)
    assert metadata(result, "cloudtrail_events")["quarantined_objects"] == 1
    [row] = res.warehouse().read_table("cloudtrail_events", DAY, "quarantine").to_pylist()
    assert row["source_file"].endswith("Large00000000000.json.gz")
    assert row["reason"].startswith("decompresses to more than PROACTIVE_MAX_OBJECT_BYTES (4,096 bytes)")


# ---------------------------------------------------------------------------------------- times


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-05T10:00:00Z", datetime(2024, 3, 5, 10, tzinfo=UTC)),
        ("2024-03-05T10:00:00.123Z", datetime(2024, 3, 5, 10, 0, 0, 123000, tzinfo=UTC)),
        ("2024-03-05T10:00:00.123456789Z", datetime(2024, 3, 5, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2024-03-05T10:00:00+00:00", datetime(2024, 3, 5, 10, tzinfo=UTC)),
        ("2024-03-05t10:00:00z", datetime(2024, 3, 5, 10, tzinfo=UTC)),
        ("2024-03-05 12:30:00+0230", datetime(2024, 3, 5, 10, tzinfo=UTC)),
        ("2024-03-05T05:00:00-05:00", datetime(2024, 3, 5, 10, tzinfo=UTC)),
        ("2024-03-05T10:00:00", None),  # no zone: ambiguous
        ("2024-02-30T10:00:00Z", None),
        ("2024-03-05T10:00:00+24:00", None),
        ("２０２４-03-05T10:00:00Z", None),
        ("yesterday", None),
    ],
)
def test_event_time_forms(text: str, expected: datetime | None) -> None:
    assert cloudtrail_records.parse_event_time(text) == expected


@pytest.mark.usefixtures("reader")
def test_event_times_of_exports_become_events() -> None:
    times = ["2024-03-05T10:00:00.5Z", "2024-03-05T10:00:00+00:00", "2024-03-05t10:00:00z", "2024-03-05T10:00:00Z"]
    parsed = cloudtrail_records.parse_log_bytes(doc(*[record(time=t, event_id=t) for t in times]), "f")
    assert parsed.problems == []
    got = parsed.events.column("event_time").to_pylist()
    assert got == [datetime(2024, 3, 5, 10, 0, 0, 500000, tzinfo=UTC)] + [datetime(2024, 3, 5, 10, tzinfo=UTC)] * 3


def test_a_problem_is_one_log_line_whatever_the_key_holds(tmp_path: Path) -> None:
    """A stray object's key is data: its newline cannot start a forged log line."""
    store = LocalStore(tmp_path)
    store.put(f"AWSLogs/111122223333/CloudTrail/us-east-1/{DAY:%Y/%m/%d}/x\nERROR forged\u2028line.json.gz", b"{}")
    [problem] = cloudtrail.list_day(store, DAY).problems
    message = problem.message()
    assert "\n" not in message and "\u2028" not in message
    assert message.endswith("x\\nERROR forged\\u2028line.json.gz: not a CloudTrail log file name")
