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
from proactive_assets.core import storage
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


class RemoteStore(JitteryStore):
    """``JitteryStore`` as a remote store (no local path, as S3): each request waits 10 ms more, and
    the reads and listings under way at once are counted."""

    def __init__(self, root: Path, seed: int) -> None:
        super().__init__(root, seed)
        self.now = {"get": 0, "list": 0}
        self.most = {"get": 0, "list": 0}
        self.fetched: list[str] = []

    def _during(self, what: str, call):
        with self._lock:
            self.now[what] += 1
            self.most[what] = max(self.most[what], self.now[what])
        try:
            return call()
        finally:
            with self._lock:
                self.now[what] -= 1

    def local_path(self, key: str) -> None:
        return None

    def get(self, key: str) -> bytes:
        def got() -> bytes:
            time.sleep(0.01)
            with self._lock:
                self.fetched.append(key)
            return super(RemoteStore, self).get(key)

        return self._during("get", got)

    def list_objects(self, prefix: str):
        def listed() -> list:
            time.sleep(0.01)
            return list(super(RemoteStore, self).list_objects(prefix))

        return iter(self._during("list", listed))


def read_remote(
    store: LocalStore, workers: int, remote_reads: int, batch_bytes: int = 4096
) -> tuple[list[pa.Table], list[tuple[str, str]]]:
    objects = cloudtrail.list_day(store, DAY).objects
    batches = cloudtrail.read(
        store, objects, batch_bytes=batch_bytes, max_object_bytes=64 << 10, workers=workers, remote_reads=remote_reads
    )
    batches = list(batches)
    return [b.events for b in batches], [(p.source_file, p.message()) for b in batches for p in b.problems]


@pytest.mark.usefixtures("reader")
def test_a_remote_store_is_read_ahead_and_gives_the_same_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Objects of a remote store are fetched several at a time ahead of the one being parsed, within
    ``remote_reads`` requests: the same batches and problems as reading one object at a time."""
    write_day(tmp_path)
    monkeypatch.setattr(cloudtrail, "TASK_STORED_BYTES", 2048)
    monkeypatch.setattr(cloudtrail, "TASK_BATCHES", 2)  # tasks that stop early and hand objects on
    tables, problems = read_all(LocalStore(tmp_path), workers=1)
    for workers, remote_reads, seed in [(1, 8, 1), (2, 3, 2), (3, 8, 3)]:
        store = RemoteStore(tmp_path, seed)
        other_tables, other_problems = read_remote(store, workers, remote_reads)
        assert other_problems == problems
        assert pa.concat_tables(other_tables).equals(pa.concat_tables(tables))
        assert 2 < store.most["get"] <= remote_reads  # one task alone reads ahead too
    one_at_a_time = RemoteStore(tmp_path, 4)
    other_tables, other_problems = read_remote(one_at_a_time, 1, 0)
    assert one_at_a_time.most["get"] == 1 and other_problems == problems


def test_read_ahead_stops_at_its_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``READ_AHEAD_BYTES`` of stored objects a task fetches nothing more ahead (the object it
    reads apart), whatever the number of requests allowed. (One task: a task that stops early leaves
    what it fetched ahead to the next, which fetches it again.)"""
    store = RemoteStore(tmp_path, 6)
    for i in range(12):
        put_log(store, log_key(DAY, minute=i, uid=f"Obj{i:013d}"), [record(event_id=f"e{i}", pad="x" * 3000)])
    size = max(o.info.size for o in cloudtrail.list_day(store, DAY).objects)
    monkeypatch.setattr(storage, "READ_AHEAD_BYTES", 2 * size)
    _, problems = read_remote(store, 1, 8, batch_bytes=1 << 20)
    assert problems == [] and store.most["get"] == 2
    monkeypatch.setattr(storage, "READ_AHEAD_BYTES", 6 * size)
    store = RemoteStore(tmp_path, 6)
    read_remote(store, 1, 8, batch_bytes=1 << 20)
    assert store.most["get"] == 6


def test_an_object_over_the_limit_is_not_fetched_ahead(tmp_path: Path) -> None:
    """An object whose stored size passes ``max_object_bytes`` is quarantined unread, from a remote
    store too: the read-ahead never asks for it."""
    store = RemoteStore(tmp_path, 8)
    for i in range(6):
        pad = random.Random(i).randbytes(20_000).hex() if i == 2 else "x"  # barely compresses
        put_log(store, log_key(DAY, minute=i, uid=f"Obj{i:013d}"), [record(event_id=f"e{i}", pad=pad)])
    objects = cloudtrail.list_day(store, DAY).objects
    big = objects[2]
    limit = big.info.size - 1
    assert all(o.info.size <= limit for o in objects if o is not big)
    batches = list(cloudtrail.read(store, objects, max_object_bytes=limit, workers=1))
    assert [p.source_file for b in batches for p in b.problems] == [big.uri]
    assert sorted(store.fetched) == sorted(o.info.key for o in objects if o is not big)


def test_a_remote_trail_is_listed_several_folders_at_once(tmp_path: Path) -> None:
    """An organisation trail's accounts times regions: the folders of a remote store are listed at
    the same time, and the listing is the one a local folder gives."""
    local = LocalStore(tmp_path)
    for a in range(4):
        for region in ("us-east-1", "eu-west-1", "ap-southeast-2"):
            account = f"{a + 1:012d}"
            key = log_key(DAY, account=account, region=region, org_id="o-abcdefghij")
            put_log(local, key, [record(event_id=f"{account}{region}")])
    local.put(log_key(DAY, region="eu-west-1", org_id="o-abcdefghij").replace(".json.gz", ".txt"), b"x")
    expected = cloudtrail.list_day(local, DAY)
    remote = RemoteStore(tmp_path, 7)
    listed = cloudtrail.list_day(remote, DAY)
    assert [o.info.key for o in listed.objects] == [o.info.key for o in expected.objects]
    assert len(listed.objects) == 12 and [p.message() for p in listed.problems] == [
        p.message() for p in expected.problems
    ]
    assert remote.most["list"] > 1
    only = cloudtrail.list_day(remote, DAY, accounts=["000000000002"], regions=["eu-west-1"])
    assert [(o.account, o.region) for o in only.objects] == [("000000000002", "eu-west-1")]


@pytest.mark.usefixtures("reader")
def test_a_day_read_ahead_from_s3_through_moto_server(tmp_path: Path, moto_endpoint: str) -> None:
    """The day of ``write_day`` in a bucket (moto's server on 127.0.0.1), listed and read with
    read-ahead: what the same objects in a local folder give."""
    import boto3

    from proactive_assets.core.storage import S3Store

    write_day(tmp_path)
    local = LocalStore(tmp_path)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="trail")
    remote = S3Store("s3://trail/logs", client=s3)
    for obj in cloudtrail.list_day(local, DAY).objects:
        remote.put(obj.info.key, local.get(obj.info.key))
    assert storage.is_remote(remote) and not storage.is_remote(local)

    def day(store: LocalStore | S3Store) -> list:
        return list(cloudtrail.read(store, cloudtrail.list_day(store, DAY).objects, 4096, 64 << 10, workers=2))

    def in_bucket(path: str) -> str:
        return path.replace(f"{tmp_path}/", "s3://trail/logs/")

    expected, batches = day(local), day(remote)
    events, local_events = (pa.concat_tables([b.events for b in part]) for part in (batches, expected))
    assert events.column("source_file").to_pylist() == [in_bucket(f) for f in local_events["source_file"].to_pylist()]
    assert events.drop_columns(["source_file"]).equals(local_events.drop_columns(["source_file"]))
    problems = [(p.source_file, p.reason, p.record_index) for b in batches for p in b.problems]
    assert len(problems) >= 5
    assert problems == [(in_bucket(p.source_file), p.reason, p.record_index) for b in expected for p in b.problems]
