"""Warehouse partitions commit atomically: a crash between any two writes leaves a whole partition.

A store that crashes at its n-th write (PUT, upload, delete, rename) is run for every n over the
commit of a new model version on top of an old one, on a local folder and on S3 (moto); after each
crash a fresh reader must see the old version whole (before the manifest is written) or the new
one whole (after), never the new metadata with the old weights. A torn or replaced file is an
error naming it. Partitions written before manifests existed still read.
"""

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from proactive_assets.core import warehouse as warehouse_module
from proactive_assets.core.backends import TrainedModel
from proactive_assets.core.npz import ALIGN, npz_arrays, npz_bytes
from proactive_assets.core.storage import LocalStore, ObjectStore, S3Store
from proactive_assets.core.warehouse import MANIFEST, STAGING, Warehouse, WarehouseError
from proactive_assets.defs.model_store import load_model, load_model_metadata, save_model

DAY = "2024-06-20"
MODEL_ASSET = "ip_insights_model"


class Crash(Exception):
    """The process died here."""


class _CrashAfter:
    """Counts writes; raises :class:`Crash` instead of the write number ``budget`` (0-based)."""

    budget: int | None = None
    writes: list[tuple[str, str]]

    def _write(self, operation: str, key: str) -> None:
        if self.budget is not None and len(self.writes) >= self.budget:
            raise Crash(f"{operation} {key}")
        self.writes.append((operation, key))

    def put(self, key: str, data: bytes) -> None:
        self._write("put", key)
        super().put(key, data)  # type: ignore[misc]

    def put_file(self, key: str, path: str) -> None:
        self._write("put_file", key)
        super().put_file(key, path)  # type: ignore[misc]

    def delete(self, key: str) -> None:
        self._write("delete", key)
        super().delete(key)  # type: ignore[misc]


_LOCAL_STORES: list["CrashingLocalStore"] = []


class CrashingLocalStore(_CrashAfter, LocalStore):
    def __init__(self, root: Path, budget: int | None = None) -> None:
        LocalStore.__init__(self, root)
        self.budget, self.writes = budget, []
        _LOCAL_STORES.append(self)


class CrashingS3Store(_CrashAfter, S3Store):
    def __init__(self, uri: str, budget: int | None = None) -> None:
        S3Store.__init__(self, uri, client=boto3.client("s3", region_name="us-east-1"))
        self.budget, self.writes = budget, []


@pytest.fixture(autouse=True)
def crashing_renames(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A rename in a local warehouse counts as a write of the crashing store whose folder it is in."""
    real = warehouse_module._rename

    def rename(source: Path, target: Path) -> None:
        for store in reversed(_LOCAL_STORES):  # the newest store of that folder is the one committing
            if str(target).startswith(str(store.root) + os.sep):
                store._write("rename", str(target))
                break
        real(source, target)

    monkeypatch.setattr(warehouse_module, "_rename", rename)
    yield
    _LOCAL_STORES.clear()


def _model(version: str) -> TrainedModel:
    return TrainedModel({"version": version, "backend": "local"}, f"weights of {version}".encode() * 100)


def _read_model(store: ObjectStore) -> tuple[str, bytes | None]:
    model = load_model(Warehouse(store), DAY)
    return model.metadata["version"], model.artifact


def _crash_every_write(make_store: Callable[[int | None], Any], plain_store: Callable[[], ObjectStore]) -> list[str]:
    """Commit v2 over v1 crashing at each write in turn; returns what a reader saw after each crash."""
    seen = []
    n = 0
    while True:
        store = make_store(None)
        _clear(plain_store())
        save_model(Warehouse(store), DAY, _model("v1"))
        store.budget = len(store.writes) + n
        try:
            save_model(Warehouse(store), DAY, _model("v2"))
        except Crash:
            version, artifact = _read_model(plain_store())
            assert artifact == _model(version).artifact, f"crash at write {n}: {version} metadata with other weights"
            seen.append(version)
            n += 1
            continue
        break
    # the last run completed: a clean v2, with nothing left of v1 or of the staging area
    assert _read_model(plain_store()) == ("v2", _model("v2").artifact)
    keys = sorted(info.key for info in plain_store().list_objects(f"{MODEL_ASSET}/day={DAY}/"))
    assert keys == [f"{MODEL_ASSET}/day={DAY}/{name}" for name in (MANIFEST, "model.json", "model.npz")]
    return seen


def _clear(store: ObjectStore) -> None:
    for info in list(store.list_objects("")):
        store.delete(info.key)


@pytest.mark.parametrize("rows", [3, 1000, 70_000])
def test_a_models_weights_and_window_are_read_in_place_on_cache_line_boundaries(tmp_path: Path, rows: int) -> None:
    # (the scored day's gathers read each 128-byte row in two cache lines, not three)
    weights = {"ip_emb": np.arange(rows * 32, dtype=np.float32).reshape(rows, 32)}
    window = {"keys": np.arange(rows, dtype=np.uint64)}
    save_model(
        Warehouse(LocalStore(tmp_path / "w")),
        DAY,
        TrainedModel({"version": "v1"}, npz_bytes(weights), npz_bytes(window)),
    )
    model = load_model(Warehouse(LocalStore(tmp_path / "w")), DAY)
    for data, expected in ((model.artifact, weights), (model.window, window)):
        for name, array in npz_arrays(data).items():
            np.testing.assert_array_equal(array, expected[name])
            assert not array.flags.owndata and array.ctypes.data % ALIGN == 0, name


def test_local_commit_is_atomic_at_every_write(tmp_path: Path) -> None:
    root = tmp_path / "warehouse"
    seen = _crash_every_write(lambda budget: CrashingLocalStore(root, budget), lambda: LocalStore(root))
    # 2 staged uploads, then the manifest (the commit point), 2 renames, the manifest again, clean-up
    assert seen[:3] == ["v1", "v1", "v1"] and set(seen[3:]) == {"v2"} and len(seen) >= 6


@mock_aws
def test_s3_commit_is_atomic_at_every_write(aws_env: None) -> None:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="lake")
    uri = "s3://lake/warehouse"
    seen = _crash_every_write(lambda budget: CrashingS3Store(uri, budget), lambda: S3Store(uri))
    assert seen[:3] == ["v1", "v1", "v1"] and set(seen[3:]) == {"v2"} and len(seen) >= 6


def test_model_metadata_and_weights_always_come_from_one_commit(tmp_path: Path) -> None:
    # The bug this replaces: model.json and model.npz written one after the other, so a crash
    # between them gave the new version's metadata with the old weights.
    store = CrashingLocalStore(tmp_path / "w")
    save_model(Warehouse(store), DAY, _model("v1"))
    store.budget = len(store.writes) + 1  # the new weights are staged, then the crash
    with pytest.raises(Crash):
        save_model(Warehouse(store), DAY, _model("v2"))
    assert load_model_metadata(Warehouse(LocalStore(tmp_path / "w")), DAY)["version"] == "v1"
    assert _read_model(LocalStore(tmp_path / "w")) == ("v1", _model("v1").artifact)


def _table_path(root: Path, name: str = "pairs") -> Path:
    return root / "learning_set" / f"day={DAY}" / f"{name}.parquet"


def test_torn_or_replaced_file_is_an_error_naming_it(tmp_path: Path) -> None:
    warehouse = Warehouse(LocalStore(tmp_path))
    table = pa.table({"entity": [f"arn:aws:iam::1:user/u{i}" for i in range(500)], "n": list(range(500))})
    warehouse.write_tables("learning_set", DAY, {"pairs": table})
    assert warehouse.read_table("learning_set", DAY, "pairs").equals(table)
    path = _table_path(tmp_path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # torn: the tail never arrived
    with pytest.raises(WarehouseError, match=r"learning_set/day=2024-06-20/pairs\.parquet.*torn") as info:
        warehouse.read_table("learning_set", DAY, "pairs")
    assert "re-materialise learning_set for 2024-06-20" in str(info.value)
    other = pa.table({"entity": ["x"] * 500, "n": list(range(500))})
    pq.write_table(other, path)  # a valid Parquet file, but not the one committed
    with pytest.raises(WarehouseError, match="does not match its partition manifest"):
        warehouse.read_table("learning_set", DAY, "pairs")


def test_torn_model_weights_are_detected(tmp_path: Path) -> None:
    warehouse = Warehouse(LocalStore(tmp_path))
    save_model(warehouse, DAY, _model("v1"))
    weights = tmp_path / MODEL_ASSET / f"day={DAY}" / "model.npz"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(WarehouseError, match=r"model\.npz"):
        load_model(warehouse, DAY)


def test_unreadable_manifest_names_the_partition(tmp_path: Path) -> None:
    warehouse = Warehouse(LocalStore(tmp_path))
    warehouse.write_tables("learning_set", DAY, {"pairs": pa.table({"a": [1]})})
    (tmp_path / "learning_set" / f"day={DAY}" / MANIFEST).write_text("{not json")
    with pytest.raises(WarehouseError, match=r"_manifest\.json is not a readable partition manifest"):
        warehouse.read_table("learning_set", DAY, "pairs")


def test_missing_file_and_partition(tmp_path: Path) -> None:
    warehouse = Warehouse(LocalStore(tmp_path))
    with pytest.raises(FileNotFoundError, match="materialise learning_set for 2024-06-20 first"):
        warehouse.read_table("learning_set", DAY)
    warehouse.write_tables("learning_set", DAY, {"pairs": pa.table({"a": [1]})})
    assert warehouse.has("learning_set", DAY, "pairs") and not warehouse.has("learning_set", DAY)
    # a file dropped beside a committed partition is not part of it
    (tmp_path / "learning_set" / f"day={DAY}" / "learning_set.parquet").write_bytes(b"stray")
    assert not warehouse.has("learning_set", DAY)
    with pytest.raises(FileNotFoundError):
        warehouse.read_table("learning_set", DAY)


def test_rerun_replaces_the_partition_exactly(tmp_path: Path) -> None:
    warehouse = Warehouse(LocalStore(tmp_path))
    warehouse.write_tables("learning_set", DAY, {"pairs": pa.table({"a": [1]}), "old": pa.table({"b": [2]})})
    warehouse.write_tables("learning_set", DAY, {"pairs": pa.table({"a": [3]})})
    folder = tmp_path / "learning_set" / f"day={DAY}"
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, "pairs.parquet"]
    assert not (folder / STAGING).exists()
    assert not warehouse.has("learning_set", DAY, "old")
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["files"]["pairs.parquet"]["key"] == "pairs.parquet"
    assert manifest["files"]["pairs.parquet"]["size"] == os.path.getsize(folder / "pairs.parquet")


def test_partitions_written_before_manifests_still_read(tmp_path: Path) -> None:
    folder = tmp_path / "learning_set" / f"day={DAY}"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"a": [7]}), folder / "learning_set.parquet")
    warehouse = Warehouse(LocalStore(tmp_path))
    assert warehouse.has("learning_set", DAY)
    assert warehouse.read_table("learning_set", DAY).column("a").to_pylist() == [7]
    model_folder = tmp_path / MODEL_ASSET / f"day={DAY}"
    model_folder.mkdir(parents=True)
    (model_folder / "model.json").write_text(json.dumps({"version": "old", "backend": "local"}))
    assert load_model(warehouse, DAY).metadata["version"] == "old" and load_model(warehouse, DAY).artifact is None


def test_invalid_file_names_are_refused(tmp_path: Path) -> None:
    with Warehouse(LocalStore(tmp_path)).partition("learning_set", DAY) as out:
        for name in ("_manifest.json", "a/b", ".."):
            with pytest.raises(ValueError, match="invalid partition file name"):
                out.write_bytes(name, b"x")


def test_event_tables_keep_min_max_of_time_and_flags_only(tmp_path: Path) -> None:
    """A row group's min/max of a string prunes nothing (rows arrive unsorted) and cost a quarter of the write."""
    from datetime import UTC, datetime

    from proactive_assets.core.events import EVENTS_SCHEMA, EventBatch, write_events

    row = {f.name: None for f in EVENTS_SCHEMA}
    row.update(event_time=datetime(2024, 6, 1, tzinfo=UTC), event_name="GetObject", is_pair=True)
    batch = EventBatch(pa.Table.from_pylist([row], schema=EVENTS_SCHEMA))
    warehouse = Warehouse(LocalStore(str(tmp_path)))
    with warehouse.partition("cloudtrail_events", "2024-06-01") as out:
        write_events(out, "cloudtrail_events", "quarantine", [batch])
    with warehouse.local_file("cloudtrail_events", "2024-06-01") as path:
        group = pq.ParquetFile(path).metadata.row_group(0)
    kept = {group.column(i).path_in_schema for i in range(group.num_columns) if group.column(i).is_stats_set}
    assert kept == {"event_time", "is_pair", "read_only"}


def test_tables_keep_statistics_where_they_prune(tmp_path: Path) -> None:
    warehouse = Warehouse(LocalStore(tmp_path))
    table = pa.table(
        {
            "entity": [f"arn:aws:iam::1:user/u{i:03}" for i in range(300)],
            "insight": [i / 299 for i in range(300)],
            "evidence_for": [[f"reason {i % 7}"] for i in range(300)],
            "events": list(range(300)),
        }
    )
    warehouse.write_tables("daily_insights", DAY, {"daily_insights": table})
    assert warehouse.read_table("daily_insights", DAY).equals(table)
    group = pq.ParquetFile(tmp_path / "daily_insights" / f"day={DAY}" / "daily_insights.parquet").metadata.row_group(0)
    columns = {group.column(i).path_in_schema.split(".")[0]: group.column(i) for i in range(group.num_columns)}
    assert columns["entity"].statistics.min == "arn:aws:iam::1:user/u000"
    assert columns["events"].statistics.max == 299
    assert not columns["evidence_for"].is_stats_set  # a list's bounds prune nothing
    assert columns["insight"].statistics.max == 1.0
