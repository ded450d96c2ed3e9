"""Asset tables as Parquet under ``PROACTIVE_WAREHOUSE`` (a local folder or ``s3://``), committed atomically.

Layout: ``<asset>/day=YYYY-MM-DD/<name>.parquet`` (Hive-style, so Athena or DuckDB can read the
warehouse directly) plus ``_manifest.json`` in each partition, naming every file of the
partition with its size and SHA-256. The manifest is the partition: readers resolve each file
through it and check its size and hash, so they see one whole commit or the one before, never a
mix, and a torn or replaced file is an error naming it, not wrong data.

A commit (:class:`PartitionWriter`) never overwrites a file the current manifest names:

1. each file is uploaded to ``_staging/<commit>/<name>`` (``_`` keeps it out of Athena's and
   Hive's view);
2. the manifest naming the staged files is written: **the commit point** (one atomic PUT or rename);
3. each file is moved (local: renamed) or copied (S3: uploaded again) to its stable name;
4. the manifest is rewritten to name the stable files;
5. everything under the partition the manifest does not name is deleted (staging, files of
   earlier runs), so re-materialising a day replaces it exactly.

A crash before step 2 leaves the previous partition as it was; after it, the new one. A reader
that finds a named file gone (moved by step 3, or deleted by a later commit) re-reads the
manifest once. Partitions written before manifests existed are read by their stable names.
"""

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from proactive_assets.core.npz import read_aligned
from proactive_assets.core.storage import LocalStore, ObjectStore

ROW_GROUP_ROWS = 256_000
MANIFEST = "_manifest.json"
STAGING = "_staging"
MANIFEST_FORMAT = "proactive_assets.partition/1"
_HASH_CHUNK = 4 << 20


class WarehouseError(RuntimeError):
    """A partition's file does not match its manifest (torn, replaced or missing), or the manifest is unreadable."""


def partition_prefix(asset: str, day: date | str) -> str:
    return f"{asset}/day={day}/"


def file_digest(path: str | os.PathLike[str]) -> tuple[int, str]:
    """(size, SHA-256 hex) of a local file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a committed partition: where it is now, and what it must contain."""

    name: str
    key: str
    size: int
    sha256: str


def statistics_columns(schema: pa.Schema) -> list[str]:
    """The columns whose row groups record min/max: all but the list columns.

    A list's bounds prune nothing (no query filters on its elements' min or max), and computing
    them over ``daily_insights``' evidence lists was a tenth of writing the table. (Floats split by
    byte wrote it faster still, but not every Parquet reader reads that encoding: Trino only since
    2022, Athena's engine 2 not at all, and the warehouse is for them too.)
    """
    return [f.name for f in schema if not pa.types.is_list(f.type)]


class PartitionWriter:
    """Collects the files of one partition in a temp folder; ``commit`` publishes them atomically."""

    def __init__(self, store: ObjectStore, asset: str, day: date | str) -> None:
        self.store = store
        self.prefix = partition_prefix(asset, day)
        self._dir = tempfile.TemporaryDirectory(prefix="proactive-")
        self._files: dict[str, str] = {}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._pending: dict[str, list[pa.Table]] = {}

    def path(self, name: str) -> str:
        if name.startswith("_") or "/" in name or name in ("", ".", ".."):
            raise ValueError(f"invalid partition file name {name!r}: no '/', no leading '_'")
        path = os.path.join(self._dir.name, name)
        self._files[name] = path
        return path

    def write_table(self, name: str, table: pa.Table) -> None:
        path = self.path(f"{name}.parquet")
        pq.write_table(table, path, compression="zstd", write_statistics=statistics_columns(table.schema))

    def write_bytes(self, name: str, data: bytes) -> None:
        Path(self.path(name)).write_bytes(data)

    def append(self, name: str, table: pa.Table, statistics: list[str] | None = None) -> None:
        """Stream batches into ``name.parquet`` without holding the partition in memory.

        Small batches are buffered up to ``ROW_GROUP_ROWS`` so the file has few, large row groups.
        ``statistics``: the columns whose min/max each row group records (default: every column),
        as the first call for ``name`` says.
        """
        if name not in self._writers:
            self._writers[name] = pq.ParquetWriter(
                self.path(f"{name}.parquet"),
                table.schema,
                compression="zstd",
                write_statistics=True if statistics is None else statistics,
            )
            self._pending[name] = []
        pending = self._pending[name]
        if table.num_rows:
            pending.append(table)
        if sum(t.num_rows for t in pending) >= ROW_GROUP_ROWS:
            self._flush(name)

    def _flush(self, name: str) -> None:
        pending = self._pending[name]
        if pending:
            self._writers[name].write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
            pending.clear()

    def commit(self) -> list[str]:
        """Publish the partition (see the module docstring); returns the stable keys of its files."""
        for name, writer in self._writers.items():
            self._flush(name)
            writer.close()
        self._writers.clear()
        commit_id = uuid.uuid4().hex
        staged: dict[str, ManifestEntry] = {}
        for name, path in sorted(self._files.items()):
            size, sha256 = file_digest(path)
            key = f"{self.prefix}{STAGING}/{commit_id}/{name}"
            self.store.put_file(key, path)
            staged[name] = ManifestEntry(name, key, size, sha256)
        self._write_manifest(commit_id, staged)  # the commit point
        stable = {}
        for name, entry in staged.items():
            key = self.prefix + name
            _move(self.store, entry.key, key, self._files[name])
            stable[name] = ManifestEntry(name, key, entry.size, entry.sha256)
        self._write_manifest(commit_id, stable)
        keep = {entry.key for entry in stable.values()} | {self.prefix + MANIFEST}
        for info in list(self.store.list_objects(self.prefix)):
            if info.key not in keep:
                self.store.delete(info.key)
        if isinstance(self.store, LocalStore):
            shutil.rmtree(self.store.uri_for(self.prefix + STAGING), ignore_errors=True)
        self._dir.cleanup()
        return sorted(entry.key for entry in stable.values())

    def _write_manifest(self, commit_id: str, entries: dict[str, ManifestEntry]) -> None:
        body = {
            "format": MANIFEST_FORMAT,
            "commit": commit_id,
            "files": {
                name: {"key": e.key[len(self.prefix) :], "size": e.size, "sha256": e.sha256}
                for name, e in sorted(entries.items())
            },
        }
        self.store.put(self.prefix + MANIFEST, json.dumps(body, indent=1, sort_keys=True).encode())

    def abort(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._dir.cleanup()


def _move(store: ObjectStore, source: str, target: str, local_copy: str) -> None:
    """Give a staged file its stable name: a rename in a local folder, another upload elsewhere."""
    if isinstance(store, LocalStore):
        source_path, target_path = Path(store.uri_for(source)), Path(store.uri_for(target))
        target_path.parent.mkdir(parents=True, exist_ok=True)
        _rename(source_path, target_path)
        return
    store.put_file(target, local_copy)


def _rename(source: Path, target: Path) -> None:
    """Atomic rename within the warehouse folder (one function, so a test can inject a crash here)."""
    os.replace(source, target)


class PartitionSnapshot:
    """One committed version of a partition: its files as the manifest named them when it was read.

    Reading several files through one snapshot gives files of the same commit (the model's
    metadata with its own weights), or an error, never a mix.
    """

    def __init__(self, store: ObjectStore, asset: str, day: date | str) -> None:
        self.store = store
        self.asset = asset
        self.day = day
        self.prefix = partition_prefix(asset, day)
        self.entries: dict[str, ManifestEntry] | None = self._read_manifest()

    @property
    def committed(self) -> bool:
        """True when the partition has a manifest (False: never written, or written before manifests)."""
        return self.entries is not None

    def _read_manifest(self) -> dict[str, ManifestEntry] | None:
        key = self.prefix + MANIFEST
        try:
            raw = self.store.get(key)
        except FileNotFoundError:
            return None
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        try:
            body = json.loads(raw)
            if body.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"format {body.get('format')!r}")
            return {
                name: ManifestEntry(name, self.prefix + f["key"], int(f["size"]), str(f["sha256"]))
                for name, f in body["files"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WarehouseError(
                f"{self.store.uri_for(key)} is not a readable partition manifest ({exc}): "
                f"re-materialise {self.asset} for {self.day}"
            ) from None

    def has(self, name: str) -> bool:
        if self.entries is not None:
            return name in self.entries
        return self.store.exists(self.prefix + name)

    def _missing(self, name: str) -> FileNotFoundError:
        return FileNotFoundError(
            f"{self.store.uri_for(self.prefix + name)} does not exist: materialise {self.asset} for {self.day} first"
        )

    @contextmanager
    def local_file(self, name: str) -> Iterator[str]:
        """A local path to the file, checked against the manifest (the file itself, or a temporary download)."""
        if self.entries is None:
            key = self.prefix + name
            if not self.store.exists(key):
                raise self._missing(name)
            with _local(self.store, key) as path:
                yield path
            return
        entry = self.entries.get(name)
        if entry is None:
            raise self._missing(name)
        candidates = [entry.key]
        if entry.key != self.prefix + name:
            candidates.append(self.prefix + name)  # a staged file moved to its stable name since
        for key in candidates:
            if not self.store.exists(key):
                continue
            with _local(self.store, key) as path:
                self._check(entry, key, path)
                yield path
                return
        raise WarehouseError(
            f"{self.store.uri_for(entry.key)} is named by the partition manifest but missing "
            f"(deleted, or replaced by a newer commit while reading): re-run the step, or re-materialise "
            f"{self.asset} for {self.day}"
        )

    def _check(self, entry: ManifestEntry, key: str, path: str) -> None:
        size, sha256 = file_digest(path)
        if (size, sha256) != (entry.size, entry.sha256):
            raise WarehouseError(
                f"{self.store.uri_for(key)} does not match its partition manifest "
                f"({size} bytes, sha256 {sha256[:12]}..., expected {entry.size} bytes, {entry.sha256[:12]}...): "
                f"the file is torn or was replaced outside a commit; re-materialise {self.asset} for {self.day}"
            )

    def read_bytes(self, name: str) -> bytes:
        with self.local_file(name) as path:
            return Path(path).read_bytes()

    def read_aligned(self, name: str) -> memoryview:
        """The file's bytes in a buffer on a cache line's boundary (``npz.read_aligned``): an
        archive whose arrays are read in place, aligned as they are in the file."""
        with self.local_file(name) as path:
            return read_aligned(path)

    def read_table(self, name: str, columns: list[str] | None = None, filters: list | None = None) -> pa.Table:
        with self.local_file(name) as path:
            return pq.read_table(path, columns=columns, filters=filters)


@contextmanager
def _local(store: ObjectStore, key: str) -> Iterator[str]:
    local = store.local_path(key)
    if local is not None:
        yield local
        return
    with tempfile.TemporaryDirectory(prefix="proactive-") as tmp:
        path = os.path.join(tmp, "file")
        store.get_file(key, path)
        yield path


class Warehouse:
    """Reads and writes the asset tables of every partition."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @property
    def uri(self) -> str:
        return self.store.uri

    def key(self, asset: str, day: date | str, name: str) -> str:
        """The stable key of a partition's file (what external readers see after a commit)."""
        return partition_prefix(asset, day) + name

    def table_key(self, asset: str, day: date | str, name: str | None = None) -> str:
        return self.key(asset, day, _table_file(asset, name))

    def uri_for(self, asset: str, day: date | str, name: str | None = None) -> str:
        return self.store.uri_for(self.table_key(asset, day, name))

    @contextmanager
    def partition(self, asset: str, day: date | str) -> Iterator[PartitionWriter]:
        writer = PartitionWriter(self.store, asset, day)
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        writer.commit()

    def write_tables(self, asset: str, day: date | str, tables: dict[str, pa.Table]) -> None:
        with self.partition(asset, day) as writer:
            for name, table in tables.items():
                writer.write_table(name, table)

    def snapshot(self, asset: str, day: date | str) -> PartitionSnapshot:
        """The partition as committed now (read several files of one commit through it)."""
        return PartitionSnapshot(self.store, asset, day)

    def has(self, asset: str, day: date | str, name: str | None = None) -> bool:
        return self.snapshot(asset, day).has(_table_file(asset, name))

    def has_file(self, asset: str, day: date | str, name: str) -> bool:
        return self.snapshot(asset, day).has(name)

    def read_table(
        self,
        asset: str,
        day: date | str,
        name: str | None = None,
        columns: list[str] | None = None,
        filters: list | None = None,
    ) -> pa.Table:
        """A partition's table; ``FileNotFoundError`` naming it if never written, ``WarehouseError`` if torn."""
        with self.local_file(asset, day, name) as path:
            return pq.read_table(path, columns=columns, filters=filters)

    @contextmanager
    def local_file(self, asset: str, day: date | str, name: str | None = None) -> Iterator[str]:
        """A local path to a partition's table, checked against the manifest (re-read once if it moved)."""
        with self._resolved(asset, day, _table_file(asset, name)) as path:
            yield path

    @contextmanager
    def _resolved(self, asset: str, day: date | str, name: str) -> Iterator[str]:
        with ExitStack() as stack:
            try:
                path = stack.enter_context(self.snapshot(asset, day).local_file(name))
            except WarehouseError:
                # A commit may have moved or replaced the file between reading the manifest and the file.
                path = stack.enter_context(self.snapshot(asset, day).local_file(name))
            yield path

    def read_bytes(self, asset: str, day: date | str, name: str) -> bytes:
        with self._resolved(asset, day, name) as path:
            return Path(path).read_bytes()


def _table_file(asset: str, name: str | None) -> str:
    return f"{name or asset}.parquet"
