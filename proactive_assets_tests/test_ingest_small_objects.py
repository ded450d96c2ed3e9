"""Small objects (a quiet account's 1-5 KB deliveries): the inflater chosen by size, and a batch of
many objects where only the few with a problem cost anything beyond their rows."""

import gzip
import json
import random
import zlib

import pytest

from proactive_assets.core.sources import cloudtrail_records, gunzip
from proactive_assets.core.sources.cloudtrail_records import LogBatch, RawLog, parse_logs
from proactive_assets_tests.cloudtrail_fixtures import record

needs_scanner = pytest.mark.skipif(cloudtrail_records.scanner is None, reason="scanner not built")


def dump(records: list) -> bytes:
    return json.dumps({"Records": records}, separators=(",", ":")).encode()


def test_the_inflater_follows_the_object_size() -> None:
    assert gunzip.inflater_for(1) == gunzip.inflater_for(gunzip.SMALL_OBJECT_BYTES) == gunzip.SMALL_INFLATER
    assert gunzip.inflater_for(gunzip.SMALL_OBJECT_BYTES + 1) == gunzip.INFLATER
    if "zlib-ng" in gunzip.INFLATERS:  # measured faster than ISA-L below SMALL_OBJECT_BYTES
        assert gunzip.SMALL_INFLATER == "zlib-ng"


def test_decompress_runs_the_inflater_chosen_for_the_size(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []

    def spy(name: str) -> gunzip.FirstMember:
        inner = gunzip.INFLATERS[name]

        def first_member(data: bytes, limit: int) -> tuple[bytes, bytes]:
            ran.append(name)
            return inner(data, limit)

        return first_member

    monkeypatch.setattr(gunzip, "_SMALL", spy(gunzip.SMALL_INFLATER))
    monkeypatch.setattr(gunzip, "_BIG", spy(gunzip.INFLATER))
    small = gzip.compress(dump([record()]), mtime=0)
    big = random.Random(5).randbytes(3 * gunzip.SMALL_OBJECT_BYTES)  # does not compress
    big_gz = gzip.compress(big, compresslevel=1, mtime=0)
    assert len(small) <= gunzip.SMALL_OBJECT_BYTES < len(big_gz)
    assert gunzip.decompress(small) == zlib.decompress(small, 31)
    assert gunzip.decompress(big_gz) == big
    assert ran == [gunzip.inflater_for(len(small)), gunzip.inflater_for(len(big_gz))]


@needs_scanner
def test_the_scanner_builds_no_outcome_for_a_clean_object() -> None:
    scan = cloudtrail_records.scanner.Scanner(10)
    assert scan.add(dump([record(), record()])) is None
    assert scan.add(dump([])) is None  # no records, nothing wrong
    status, _, _, records, counts, sampled = scan.add(dump([record(), record(name=None)]))
    assert (status, records, sampled) == (0, 2, [(1, cloudtrail_records.scanner.REASONS.index("no_event_name"))])
    assert sum(counts) == 1
    assert scan.add(b"not json")[0] == cloudtrail_records.scanner.STATUSES.index("not_json")
    rows = scan.finish()[0]
    assert rows == 2 + 1


def test_problems_of_a_few_objects_among_many_clean_ones() -> None:
    """Problems come out in object order, named by their object, whatever the clean objects around them."""
    docs = [dump([record(event_id=f"{i}")]) for i in range(500)]
    docs[7] = dump([record(event_id="7"), record(ip=None)])
    docs[250] = b'{"Records": ['
    docs[251] = dump([record(event_id="251", time="yesterday")])
    docs[499] = dump([{"eventName": "x"}])
    logs = [RawLog(d, f"s3://bucket/{i}", "111122223333" if i % 2 else "", "us-east-1") for i, d in enumerate(docs)]
    batch = parse_logs(logs)
    named = [(p.source_file, p.record_index, p.field) for p in batch.problems]
    assert named == [
        ("s3://bucket/7", 1, "sourceIPAddress"),
        ("s3://bucket/250", -1, None),
        ("s3://bucket/251", 0, "eventTime"),
        ("s3://bucket/499", 0, "userIdentity"),
    ]
    events = batch.events
    assert events.num_rows == 500 - 3
    assert batch.objects == 500
    files = events.column("source_file").to_pylist()
    assert files == [f"s3://bucket/{i}" for i in range(500) if i not in (250, 251, 499)]
    # the account from the key where the record names none; "" from a key is no account
    assert events.column("region").to_pylist() == ["us-east-1"] * events.num_rows


def test_add_text_is_add() -> None:
    docs = [dump([record(event_id=f"{i}")]) for i in range(3)] + [b"[]"]
    one, other = LogBatch(), LogBatch()
    for i, doc in enumerate(docs):
        one.add(RawLog(doc, f"f{i}", "111122223333", "eu-west-1"))
        other.add_text(doc, f"f{i}", "111122223333", "eu-west-1")
    assert one.logs == other.logs == [RawLog(d, f"f{i}", "111122223333", "eu-west-1") for i, d in enumerate(docs)]
    a, b = one.parse(), other.parse()
    assert a.events.equals(b.events) and a.problems == b.problems
