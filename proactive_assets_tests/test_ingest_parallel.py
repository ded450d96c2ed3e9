"""Parallel ingest: the same batches, events and quarantine whatever the worker count or the order
in which the workers finish; objects really read at the same time; tasks bounded; the setting wired."""

import gzip
import random
import threading
import time
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from proactive_assets.config import Settings
from proactive_assets.core.sources import cloudtrail, cloudtrail_records
from proactive_assets.core.storage import LocalStore
from proactive_assets_tests.cloudtrail_fixtures import log_key, put_log, record
from proactive_assets_tests.test_ingest import reader  # noqa: F401 (fixture)

DAY = date(2024, 3, 5)


class JitteryStore(LocalStore):
    """A local store whose reads take a random while (seeded): workers finish in a shuffled order."""

    def __init__(self, root: Path, seed: int) -> None:
        super().__init__(root)
        self._delays: dict[str, float] = {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes:
        with self._lock:
            delay = self._delays.setdefault(key, self._rng.random() * 0.004)
        time.sleep(delay)
        return super().get(key)


def write_day(root: Path) -> None:
    """40 objects of varied sizes, with an unreadable gzip, a non-JSON object, an object over the
    limit and records that are rejected one by one among them."""
    store = LocalStore(root)
    rng = random.Random(7)
    for i in range(40):
        key = log_key(DAY, minute=i, uid=f"Obj{i:013d}")
        if i == 5:
            store.put(key, b"\x1f\x8b\x08\x00garbage")
        elif i == 11:
            store.put(key, gzip.compress(b"{not json"))
        elif i == 17:
            store.put(key, gzip.compress(b'{"Records": [' + b'{"eventID": "x"},' * 4000 + b"{}]}"))
        else:
            records = [
                record(ip=f"198.51.{i}.{n % 250}", event_id=f"e{i}-{n}", time=f"2024-03-05T{n % 24:02d}:00:00Z")
                for n in range(rng.randint(1, 60))
            ]
            if i % 7 == 3:
                records.append({"eventTime": "not a time", "eventID": f"bad{i}"})
            put_log(store, key, records)


def read_all(store: LocalStore, workers: int) -> tuple[list[pa.Table], list[tuple[str, str]]]:
    objects = cloudtrail.list_day(store, DAY).objects
    batches = list(cloudtrail.read(store, objects, batch_bytes=4096, max_object_bytes=64 << 10, workers=workers))
    return [b.events for b in batches], [(p.source_file, p.message()) for b in batches for p in b.problems]


@pytest.mark.usefixtures("reader")
def test_the_output_does_not_depend_on_the_workers_or_their_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_day(tmp_path)
    monkeypatch.setattr(cloudtrail, "TASK_STORED_BYTES", 2048)  # many tasks, so many orders
    tables, problems = read_all(LocalStore(tmp_path), workers=1)
    assert len(tables) > 8 and sum(t.num_rows for t in tables) > 500
    assert len({p[0] for p in problems}) >= 5  # three objects, and the records' objects
    for workers, seed in [(2, 1), (4, 2), (7, 3)]:
        other_tables, other_problems = read_all(JitteryStore(tmp_path, seed), workers)
        assert other_problems == problems
        assert len(other_tables) == len(tables)
        assert all(a.equals(b) for a, b in zip(other_tables, tables, strict=True))


def test_the_day_is_what_reading_each_object_alone_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut into tasks, handed on, in parallel: every object read once, in key order."""
    write_day(tmp_path)
    store = LocalStore(tmp_path)
    monkeypatch.setattr(cloudtrail, "TASK_STORED_BYTES", 3000)
    tables, problems = read_all(JitteryStore(tmp_path, 5), workers=3)
    alone = [
        cloudtrail_records.parse_log_bytes(store.get(o.info.key), o.uri, o.account, o.region, 64 << 10)
        for o in cloudtrail.list_day(store, DAY).objects
    ]
    assert pa.concat_tables(tables).equals(pa.concat_tables([b.events for b in alone]))
    assert problems == [(p.source_file, p.message()) for b in alone for p in b.problems]


def test_a_task_that_inflates_too_much_hands_its_other_objects_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One task planned for the whole day, each object larger than a batch: the task stops after
    ``TASK_BATCHES`` batches and the rest becomes the next task, so a task's memory stays bounded."""
    write_day(tmp_path)
    monkeypatch.setattr(cloudtrail, "TASK_STORED_BYTES", 1 << 30)
    monkeypatch.setattr(cloudtrail, "TASK_BATCHES", 2)
    calls: list[tuple[int, int, int]] = []  # (objects given, batches made, objects handed on)
    real = cloudtrail._read_task

    def spy(store, objects, *args):
        batches, rest = real(store, objects, *args)
        calls.append((len(objects), len(batches), len(rest)))
        return batches, rest

    monkeypatch.setattr(cloudtrail, "_read_task", spy)
    store = LocalStore(tmp_path)
    objects = cloudtrail.list_day(store, DAY).objects
    events = list(cloudtrail.read(store, objects, batch_bytes=1024, max_object_bytes=64 << 10, workers=2))
    assert len(calls) > 5 and calls[0] == (40, calls[0][1], calls[1][0])
    assert all(given - rest <= 3 for given, _, rest in calls)  # at most 2 batches of JSON and quarantines
    assert sum(given - rest for given, _, rest in calls) == 40 and calls[-1][2] == 0
    monkeypatch.setattr(cloudtrail, "_read_task", real)
    expected = cloudtrail.read(store, objects, batch_bytes=1024, max_object_bytes=64 << 10, workers=1)
    assert pa.concat_tables([b.events for b in events]).equals(pa.concat_tables([b.events for b in expected]))


def test_objects_are_read_at_the_same_time(tmp_path: Path) -> None:
    """Two workers, two tasks: both reads are under way at once (each waits for the other)."""
    meet = threading.Barrier(2, timeout=10)

    class Meeting(LocalStore):
        def get(self, key: str) -> bytes:
            meet.wait()
            return super().get(key)

    store = Meeting(tmp_path)
    for i in range(2):
        put_log(store, log_key(DAY, minute=i, uid=f"Obj{i:013d}"), [record(event_id=f"e{i}")])
    objects = cloudtrail.list_day(store, DAY).objects
    old = cloudtrail.TASK_STORED_BYTES
    try:
        cloudtrail.TASK_STORED_BYTES = 1  # one object a task
        batches = list(cloudtrail.read(store, objects, workers=2))
    finally:
        cloudtrail.TASK_STORED_BYTES = old
    assert [p.message() for b in batches for p in b.problems] == []
    assert [e for b in batches for e in b.events.column("event_id").to_pylist()] == ["e0", "e1"]


def test_the_worker_setting_is_read_and_reaches_the_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from proactive_assets_tests.test_ingest import metadata, resource, run_day

    assert Settings.from_env({}).ingest_workers is None
    assert Settings.from_env({"PROACTIVE_INGEST_WORKERS": "3"}).ingest_workers == 3
    with pytest.raises(ValueError, match="PROACTIVE_INGEST_WORKERS"):
        Settings.from_env({"PROACTIVE_INGEST_WORKERS": "0"})
    assert cloudtrail.default_workers() >= 1

    seen: list[int] = []
    real = cloudtrail.ThreadPoolExecutor

    def pool(workers: int, **kwargs):
        seen.append(workers)
        return real(workers, **kwargs)

    monkeypatch.setattr(cloudtrail, "ThreadPoolExecutor", pool)
    put_log(LocalStore(tmp_path / "bucket"), log_key(DAY), [record()])
    result = run_day(resource(str(tmp_path / "bucket"), str(tmp_path / "warehouse"), ingest_workers=3))
    assert metadata(result, "cloudtrail_events")["events"] == 1
    assert seen == [3]
