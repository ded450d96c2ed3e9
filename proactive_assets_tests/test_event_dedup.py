"""Counting each event once: the numpy path for UUID eventIDs against Arrow's exact aggregation."""

import uuid

import numpy as np
import pyarrow as pa
import pytest

from proactive_assets.core import event_dedup

KEY = ["event_id", "identity_arn", "source_ip", "event_time"]


def reference(keys: pa.Table) -> np.ndarray:
    """The first row of each key (nulls included in their own groups, then kept anyway)."""
    keep = np.asarray(keys.column("event_id").is_null(), dtype=bool)
    rows = keys.select(KEY).append_column("row", pa.array(np.arange(keys.num_rows)))
    keep[np.asarray(rows.group_by(KEY, use_threads=False).aggregate([("row", "min")]).column("row_min"))] = True
    return keep


def day(seed: int, n: int = 3000, chunks: int = 3) -> pa.Table:
    """Pair-event keys in several chunks: UUIDs (36 chars) and other ids, nulls, copies of earlier
    rows (duplicates), and rows that share an id but not the rest of the key (not duplicates)."""
    rng = np.random.default_rng(seed)
    ids = [str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | int(rng.integers(0, 2**63)))) for _ in range(n)]
    for i in rng.choice(n, n // 20, replace=False):
        ids[i] = rng.choice(["short-id", "x" * 35, "y" * 37, "", None, "é" * 18])  # 36 bytes, 18 characters
    identity = rng.integers(0, 40, n).astype(np.int32)
    address = rng.integers(0, 200, n).astype(np.int32)
    time = rng.integers(0, 10, n)
    for i in range(1, n):  # a tenth copies an earlier row's key; a tenth its id only
        j = int(rng.integers(0, i))
        if rng.random() < 0.1:
            ids[i], identity[i], address[i], time[i] = ids[j], identity[j], address[j], time[j]
        elif rng.random() < 0.1:
            ids[i] = ids[j]
    table = pa.table(
        {
            "event_id": pa.array(ids, pa.string()),
            "identity_arn": identity,
            "source_ip": address,
            "event_time": pa.array(time, pa.timestamp("ms", tz="UTC")),
        }
    )
    cut = np.sort(rng.choice(np.arange(1, n), chunks - 1, replace=False))
    return pa.concat_tables([table.slice(a, b - a) for a, b in zip([0, *cut], [*cut, n], strict=True)])


@pytest.mark.parametrize("seed", range(6))
def test_the_first_copy_of_each_event_is_kept_as_arrow_keeps_it(seed: int) -> None:
    keys = day(seed)
    assert keys.column("event_id").num_chunks == 3
    kept = event_dedup.first_occurrences(keys, KEY)
    assert kept.tolist() == reference(keys).tolist()
    assert 0 < (~kept).sum() < len(kept) // 5  # there were duplicates, and they are few


@pytest.mark.parametrize("mask", [0, 0xF, 0xFFFF])
def test_hash_collisions_never_merge_two_events(monkeypatch: pytest.MonkeyPatch, mask: int) -> None:
    """With a hash that collides for every row (or for many), the answer stays exact."""
    mix = event_dedup.mix64
    monkeypatch.setattr(event_dedup, "mix64", lambda h: mix(h) & np.uint64(mask))
    keys = day(7)
    assert event_dedup.first_occurrences(keys, KEY).tolist() == reference(keys).tolist()


def test_only_other_ids_and_colliding_groups_are_aggregated_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """UUID rows are told apart in numpy: Arrow's aggregation sees only the other ids."""
    seen: list[np.ndarray] = []
    exact = event_dedup._exact_firsts
    monkeypatch.setattr(
        event_dedup, "_exact_firsts", lambda keys, key, rows: seen.append(rows) or exact(keys, key, rows)
    )
    ids = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(1000)]
    ids[10], ids[11], ids[500] = "short", None, "short"
    ids[20] = ids[21] = ids[900] = ids[5]  # one event delivered four times
    n = len(ids)
    keys = pa.table(
        {
            "event_id": pa.array(ids),
            "identity_arn": np.zeros(n, np.int32),
            "source_ip": np.zeros(n, np.int32),
            "event_time": pa.array(np.zeros(n, np.int64), pa.timestamp("ms", tz="UTC")),
        }
    )
    kept = event_dedup.first_occurrences(keys, KEY)
    assert np.flatnonzero(~kept).tolist() == [20, 21, 500, 900]
    assert [rows.tolist() for rows in seen] == [[10, 500]]


def test_sliced_large_string_and_empty_inputs() -> None:
    keys = day(3, n=600, chunks=1)
    sliced = keys.slice(100, 400)
    assert event_dedup.first_occurrences(sliced, KEY).tolist() == reference(sliced).tolist()
    large = keys.set_column(0, "event_id", keys.column("event_id").cast(pa.large_string()))
    assert event_dedup.first_occurrences(large, KEY).tolist() == reference(keys).tolist()
    assert event_dedup.first_occurrences(keys.slice(0, 0), KEY).tolist() == []


def test_a_day_read_twice_is_counted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every event from CloudTrail and again from Security Lake: many duplicates, aggregated exactly."""
    seen: list[int] = []
    exact = event_dedup._exact_firsts
    monkeypatch.setattr(
        event_dedup, "_exact_firsts", lambda keys, key, rows: seen.append(len(rows)) or exact(keys, key, rows)
    )
    once = day(5)
    keys = pa.concat_tables([once, once])
    kept = event_dedup.first_occurrences(keys, KEY)
    assert kept.tolist() == reference(keys).tolist()
    nulls = np.asarray(once.column("event_id").is_null(), dtype=bool)
    assert kept[once.num_rows :].tolist() == nulls.tolist()  # of the second copy only rows without an id
    assert seen and seen[0] > once.num_rows  # the many-duplicates path ran


@pytest.mark.parametrize("differ_at", [0, 20, event_dedup.ID_CHARS - 1])
def test_ids_that_differ_in_one_byte_are_two_events_whatever_their_hashes(
    monkeypatch: pytest.MonkeyPatch, differ_at: int
) -> None:
    """A burst: two events of one identity, address and millisecond whose UUIDs differ in one byte
    (first, middle, last), their hashes made equal. They are compared byte by byte: both count,
    and only the real copy of the first is dropped."""
    monkeypatch.setattr(event_dedup, "_id_hash", lambda text: np.zeros(len(text), np.uint64))
    first = str(uuid.UUID(int=0x0123456789ABCDEF0123456789ABCDEF))
    second = first[:differ_at] + ("0" if first[differ_at] != "0" else "1") + first[differ_at + 1 :]
    others = [str(uuid.UUID(int=i + 1)) for i in range(100)]  # other events, at other times
    keys = pa.table(
        {
            "event_id": pa.array([first, second, first, *others], pa.string()),
            "identity_arn": np.ones(103, np.int32),
            "source_ip": np.ones(103, np.int32),
            "event_time": pa.array([0, 0, 0, *range(1, 101)], pa.timestamp("ms", tz="UTC")),
        }
    )
    kept = event_dedup.first_occurrences(keys, KEY)
    assert kept.tolist() == [True, True, False, *[True] * 100] == reference(keys).tolist()
