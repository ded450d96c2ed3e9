"""The learning set from events: one event per (eventID, identity, address, time); the columns an
alert line reads (writes by readOnly, user agents, access-denied counts)."""

import gzip
import json
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


def _reference_union(partials: list[pa.Table]) -> dict[tuple[str, str], dict]:
    """Each pair's merged aggregates, by plain Python: sums, min/max, sorted unions cut to their limits."""
    merged: dict[tuple[str, str], dict] = {}
    for row in pa.concat_tables(partials).to_pylist():
        out = merged.setdefault((row["entity"], row["source_ip"]), {"sets": {n: set() for n in pairs._LIST_COLUMNS}})
        for name in ("event_count", "error_count", "access_denied_count"):
            out[name] = out.get(name, 0) + row[name]
        out["first_seen"] = min(out.get("first_seen", row["first_seen"]), row["first_seen"])
        out["last_seen"] = max(out.get("last_seen", row["last_seen"]), row["last_seen"])
        for name in pairs._LIST_COLUMNS:
            out["sets"][name].update(v for v in row[name] or () if v is not None)
    for out in merged.values():
        sets = out.pop("sets")
        out["source_file_count"] = len(sets["source_files"])
        out.update({n: sorted(v)[: pairs._LIST_LIMITS.get(n)] for n, v in sets.items()})
    return merged


def test_partials_merge_into_sorted_cut_unions_per_pair() -> None:
    """``_combine`` (by codes, in Arrow and numpy) against plain Python, over several partials with
    nulls, empty and missing lists, non-ASCII values and lists past their limits."""
    import random
    from datetime import UTC, datetime, timedelta

    rng = random.Random(3)
    words = ["a", "b", "é", "Z", "agent/1", "agent/2", "", "ü-x"] + [f"f{i:03d}" for i in range(80)]
    partials = []
    for _ in range(4):
        rows = []
        for _ in range(300):
            rows.append(
                {
                    "entity": rng.choice(["arn:1", "arn:2", "arn:é"]),
                    "source_ip": rng.choice(["10.0.0.1", "10.0.0.2", "2001:db8::1"]),
                    "event_count": rng.randint(1, 5),
                    "error_count": rng.randint(0, 2),
                    "access_denied_count": rng.randint(0, 1),
                    "first_seen": datetime(2024, 6, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 999)),
                    "last_seen": datetime(2024, 6, 1, 18, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 99)),
                    **{
                        name: None
                        if rng.random() < 0.1
                        else [rng.choice([*words, None]) for _ in range(rng.randint(0, 6))]
                        for name in pairs._LIST_COLUMNS
                    },
                }
            )
        partials.append(pa.Table.from_pylist(rows))
    combined = pairs._combine(partials).to_pylist()
    expected = _reference_union(partials)
    assert len(combined) == len(expected)
    for row in combined:
        want = expected[(row.pop("entity"), row.pop("source_ip"))]
        assert row == want
    assert any(len(row["user_agents"]) == pairs.MAX_USER_AGENTS for row in combined)
    assert any(row["source_file_count"] > pairs.MAX_SOURCE_FILES for row in combined)
