"""The learning set from events: one event per (eventID, identity, address, time); the columns an
alert line reads (writes by readOnly, user agents, access-denied counts)."""

import gzip
import json
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from proactive_assets.core import pairs
from proactive_assets.core.events import EVENTS_SCHEMA
from proactive_assets.core.sources import cloudtrail_records
from proactive_assets_tests.cloudtrail_fixtures import record

ALICE = "arn:aws:iam::111122223333:user/alice"
BOB = "arn:aws:iam::111122223333:user/bob"


def events(*records: dict) -> pa.Table:
    parsed = cloudtrail_records.parse_log_bytes(gzip.compress(json.dumps({"Records": list(records)}).encode()), "f")
    assert parsed.problems == []
    return parsed.events


def rows(table: pa.Table) -> dict[tuple[str, str], dict]:
    return {(r["entity"], r["source_ip"]): r for r in table.to_pylist()}


def test_existing_columns_keep_their_order_and_new_ones_follow() -> None:
    assert pairs.LEARNING_SET_SCHEMA.names == [
        "entity",
        "source_ip",
        "event_count",
        "error_count",
        "first_seen",
        "last_seen",
        "event_names",
        "identity_types",
        "accounts",
        "regions",
        "sources",
        "source_files",
        "source_file_count",
        "write_event_names",
        "user_agents",
        "access_denied_count",
        "address_scope",
    ]
    assert pairs.LEARNING_SET_SCHEMA.field("write_event_names").type == pa.list_(pa.string())
    assert pairs.LEARNING_SET_SCHEMA.field("user_agents").type == pa.list_(pa.string())
    assert pairs.LEARNING_SET_SCHEMA.field("access_denied_count").type == pa.int64()
    assert EVENTS_SCHEMA.field("read_only").type == pa.bool_()


def test_an_event_delivered_twice_counts_once_but_a_shared_id_does_not_merge_identities() -> None:
    same = record(event_id="shared")
    table, stats = pairs.build_learning_set(
        events(
            same,
            same,  # the organisation trail's copy and the account trail's
            record(arn=BOB, event_id="shared"),  # another identity with the same id: a forged or colliding id
            record(ip="198.51.100.9", event_id="shared"),  # the same identity from elsewhere
            record(time="2024-03-05T11:00:00Z", event_id="shared"),  # the same identity later
        )
    )
    assert stats["duplicate_events"] == 1 and stats["pair_events"] == 4
    found = rows(table)
    assert found[(ALICE, "203.0.113.10")]["event_count"] == 2
    assert found[(BOB, "203.0.113.10")]["event_count"] == 1
    assert found[(ALICE, "198.51.100.9")]["event_count"] == 1


def test_events_without_an_id_all_count() -> None:
    no_id = {k: v for k, v in record().items() if k != "eventID"}
    table, stats = pairs.build_learning_set(events(no_id, no_id))
    assert stats["duplicate_events"] == 0 and table.column("event_count").to_pylist() == [2]


def test_writes_are_read_from_readonly_and_unknown_is_not_a_write() -> None:
    unknown = {k: v for k, v in record(name="PutObject", event_id="u").items() if k != "readOnly"}
    table, _ = pairs.build_learning_set(
        events(
            record(name="FilterLogEvents", readOnly=True, event_id="1"),  # a read, whatever its prefix says
            record(name="GetSecretValue", readOnly=False, event_id="2"),
            record(name="RunInstances", readOnly="false", event_id="3"),
            record(name="RunInstances", readOnly=False, event_id="4"),
            unknown,
        )
    )
    [row] = table.to_pylist()
    assert row["write_event_names"] == ["GetSecretValue", "RunInstances"]
    assert row["event_names"] == ["FilterLogEvents", "GetSecretValue", "PutObject", "RunInstances"]


def test_user_agents_are_distinct_sorted_and_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pairs, "BATCH_ROWS", 4)  # several partial aggregates, merged
    agents = [f"agent-{i:02d}" for i in range(14, -1, -1)]
    table, _ = pairs.build_learning_set(
        events(*[record(userAgent=a, event_id=a) for a in agents], record(userAgent=None, event_id="none"))
    )
    [row] = table.to_pylist()
    assert row["user_agents"] == [f"agent-{i:02d}" for i in range(pairs.MAX_USER_AGENTS)]
    assert row["event_count"] == 16


def test_access_denied_and_error_counts() -> None:
    codes = [
        "AccessDenied",
        "Client.UnauthorizedOperation",
        "UnauthorizedOperation",
        "AccessDeniedException",
        "KMS.AccessDeniedException",
        "ThrottlingException",
        "NoSuchEntity",
        "AccessDeniedButNotReally",
    ]
    table, _ = pairs.build_learning_set(
        events(*[record(errorCode=c, event_id=c) for c in codes], record(event_id="ok"))
    )
    [row] = table.to_pylist()
    assert row["access_denied_count"] == 5
    assert row["error_count"] == len(codes)
    assert row["event_count"] == len(codes) + 1


def test_an_event_table_written_before_read_only_existed(tmp_path: Path) -> None:
    table = events(record(readOnly=False, event_id="a"), record(arn=BOB, event_id="a"))
    old = tmp_path / "old.parquet"
    pq.write_table(table.drop_columns(["read_only"]), old)
    learning, stats = pairs.build_learning_set(str(old))
    assert stats["pair_events"] == 2
    assert [r["write_event_names"] for r in learning.to_pylist()] == [[], []]
    new = tmp_path / "new.parquet"
    pq.write_table(table, new)
    learning, _ = pairs.build_learning_set(str(new))
    assert rows(learning)[(ALICE, "203.0.113.10")]["write_event_names"] == ["DescribeInstances"]


def test_sources_mix_in_memory_and_on_disk_with_shared_keys(tmp_path: Path) -> None:
    """Two event tables (CloudTrail and Security Lake) holding the same event: it counts once."""
    first = events(record(event_id="x"), record(arn=BOB, event_id="y"))
    second = tmp_path / "lake.parquet"
    pq.write_table(events(record(event_id="x")), second)
    table, stats = pairs.build_learning_set(first, str(second))
    assert (stats["pair_events"], stats["duplicate_events"], stats["pairs"]) == (2, 1, 2)
    assert table.schema == pairs.LEARNING_SET_SCHEMA


def test_no_sources_no_pairs() -> None:
    table, stats = pairs.build_learning_set()
    assert table.num_rows == 0 and stats["pairs"] == 0


def _reference(table: pa.Table) -> dict[tuple[str, str], dict]:
    """Each pair's aggregates by plain Python, from the event rows in order: the first copy of each
    event, sums, min/max, sorted unions cut to their limits."""
    seen, merged = set(), {}
    for row in table.to_pylist():
        if not row["is_pair"]:
            continue
        key = (row["event_id"], row["identity_arn"], row["source_ip"], row["event_time"])
        if row["event_id"] is not None and key in seen:
            continue
        seen.add(key)
        out = merged.setdefault(
            (row["identity_arn"], row["source_ip"]), {"sets": {n: set() for n in pairs._LIST_COLUMNS}}
        )
        weight = 1 if row["event_count"] is None else row["event_count"]
        error = row["error_code"]
        denied = error is not None and re.search(pairs.ACCESS_DENIED, error) is not None
        for name, value in (("event_count", weight), ("error_count", weight * (error is not None))):
            out[name] = out.get(name, 0) + value
        out["access_denied_count"] = out.get("access_denied_count", 0) + weight * denied
        last = row["last_event_time"] or row["event_time"]
        out["first_seen"] = min(out.get("first_seen", row["event_time"]), row["event_time"])
        out["last_seen"] = max(out.get("last_seen", last), last)
        for name, column in pairs._LIST_COLUMNS.items():
            if name == "write_event_names":  # the event names of writes (readOnly false)
                value = row["event_name"] if row["read_only"] is False else None
            else:
                value = row[column]
            if value is not None:
                out["sets"][name].add(value)
    for out in merged.values():
        sets = out.pop("sets")
        out["source_file_count"] = len(sets["source_files"])
        out.update({n: sorted(v)[: pairs._LIST_LIMITS.get(n)] for n, v in sets.items()})
    return merged


def _random_events(seed: int, n: int) -> pa.Table:
    """Events with copies delivered again, ids shared by other identities, events without an id,
    counted rows (Security Lake's), nulls, non-ASCII values and lists past their limits."""
    rng = random.Random(seed)
    start = datetime(2024, 6, 1, tzinfo=UTC)
    words = ["a", "b", "é", "Z", "", "ü-x"] + [f"f{i:03d}" for i in range(80)]
    rows: list[dict] = []
    for i in range(n):
        if rows and rng.random() < 0.15:
            rows.append(dict(rng.choice(rows)))  # delivered again
            continue
        pair = rng.random() < 0.9
        counted = rng.random() < 0.1
        rows.append(
            {
                "event_time": start + timedelta(minutes=rng.randint(0, 1440)),
                "event_name": rng.choice([*words[:8], None]),
                "event_source": "ec2.amazonaws.com",
                "identity_arn": rng.choice(["arn:1", "arn:2", "arn:é", "arn:4"]) if pair else None,
                "identity_type": rng.choice(["IAMUser", "AssumedRole", None]),
                "account": rng.choice(["111122223333", "444455556666"]),
                "region": rng.choice(["us-east-1", "eu-west-1", None]),
                "source_ip": rng.choice(["10.0.0.1", "10.0.0.2", "2001:db8::1"]) if pair else "ec2.amazonaws.com",
                "source_kind": "ip" if pair else "service",
                "is_pair": pair,
                "user_agent": rng.choice([*words, None]),
                "error_code": rng.choice([None, None, "AccessDenied", "Client.UnauthorizedOperation", "Throttling"]),
                "read_only": rng.choice([True, False, None]),
                "event_id": None if rng.random() < 0.05 else rng.choice([f"id{i}", f"id{i // 2}"]),
                "source": rng.choice(["cloudtrail", "security_lake"]),
                "source_file": rng.choice(words),
                "event_count": rng.randint(1, 9) if counted else None,
                "last_event_time": start + timedelta(minutes=rng.randint(1440, 1500)) if counted else None,
            }
        )
    schema = EVENTS_SCHEMA
    for name, kind in pairs.COUNT_COLUMNS.items():
        schema = schema.append(pa.field(name, kind))
    return pa.Table.from_pylist(rows, schema)


@pytest.mark.parametrize(
    ("seed", "dense_keys", "merge_keys"),
    [(1, pairs.DENSE_PAIR_KEYS, pairs.MERGE_KEYS), (2, pairs.DENSE_PAIR_KEYS, 0), (3, 0, 0)],
)
def test_learning_set_is_plain_pythons_aggregation_over_many_batches(
    seed: int, dense_keys: int, merge_keys: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Added up batch by batch by the pairs' codes, from memory and from a file (its text columns
    read dictionary-encoded), the learning set is exactly what plain Python makes of the rows;
    the pairs numbered by counting their codes or (``dense_keys`` 0, a day of many) by hashing;
    the list columns' keys merged as the batches come (``merge_keys`` 0) or only at the end."""
    monkeypatch.setattr(pairs, "BATCH_ROWS", 37)
    monkeypatch.setattr(pairs, "DENSE_PAIR_KEYS", dense_keys)
    monkeypatch.setattr(pairs, "MERGE_KEYS", merge_keys)
    table = _random_events(seed, 1200)
    path = tmp_path / "events.parquet"
    pq.write_table(table, path, row_group_size=100)
    expected = _reference(table)
    for source in (table, str(path)):
        learning, stats = pairs.build_learning_set(source)
        assert learning.schema == pairs.LEARNING_SET_SCHEMA
        assert stats["pairs"] == len(expected) == learning.num_rows
        keys = list(zip(learning.column("entity").to_pylist(), learning.column("source_ip").to_pylist(), strict=True))
        assert keys == sorted(keys)  # by entity, then address
        for row in learning.to_pylist():
            row.pop("address_scope")
            assert row == expected[(row.pop("entity"), row.pop("source_ip"))]
    counted = [r for r in learning.to_pylist() if r["source_file_count"] > pairs.MAX_SOURCE_FILES]
    assert counted and any(len(r["user_agents"]) == pairs.MAX_USER_AGENTS for r in learning.to_pylist())
