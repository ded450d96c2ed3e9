"""Asset tables as Parquet under ``PROACTIVE_WAREHOUSE`` (a local folder or ``s3://``).

Layout: ``<asset>/day=YYYY-MM-DD/<name>.parquet`` (Hive-style, so Athena or DuckDB can read the
warehouse directly). Writing a partition replaces it whole: files from an earlier run that this
run did not write are removed, so re-materialising a day is idempotent.
"""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from proactive_assets.core.storage import ObjectStore

ROW_GROUP_ROWS = 256_000


def partition_prefix(asset: str, day: date | str) -> str:
    return f"{asset}/day={day}/"


class PartitionWriter:
    """Collects the files of one partition in a temp folder; ``commit`` publishes them together."""

    def __init__(self, store: ObjectStore, asset: str, day: date | str) -> None:
        self.store = store
        self.prefix = partition_prefix(asset, day)
        self._dir = tempfile.TemporaryDirectory(prefix="proactive-")
        self._files: dict[str, str] = {}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._pending: dict[str, list[pa.Table]] = {}

    def path(self, name: str) -> str:
        path = os.path.join(self._dir.name, name)
        self._files[name] = path
        return path

    def write_table(self, name: str, table: pa.Table) -> None:
        pq.write_table(table, self.path(f"{name}.parquet"), compression="zstd")

    def write_bytes(self, name: str, data: bytes) -> None:
        Path(self.path(name)).write_bytes(data)

    def append(self, name: str, table: pa.Table) -> None:
        """Stream batches into ``name.parquet`` without holding the partition in memory.

        Small batches are buffered up to ``ROW_GROUP_ROWS`` so the file has few, large row groups.
        """
        if name not in self._writers:
            self._writers[name] = pq.ParquetWriter(self.path(f"{name}.parquet"), table.schema, compression="zstd")
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
        for name, writer in self._writers.items():
            self._flush(name)
            writer.close()
        written = []
        for name, path in sorted(self._files.items()):
            self.store.put_file(self.prefix + name, path)
            written.append(self.prefix + name)
        for info in list(self.store.list_objects(self.prefix)):
            if info.key not in written:
                self.store.delete(info.key)
        self._dir.cleanup()
        return written

    def abort(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._dir.cleanup()


class Warehouse:
    """Reads and writes the asset tables of every partition."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    @property
    def uri(self) -> str:
        return self.store.uri

    def key(self, asset: str, day: date | str, name: str) -> str:
        return partition_prefix(asset, day) + name

    def table_key(self, asset: str, day: date | str, name: str | None = None) -> str:
        return self.key(asset, day, f"{name or asset}.parquet")

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

    def has(self, asset: str, day: date | str, name: str | None = None) -> bool:
        return self.store.exists(self.table_key(asset, day, name))

    def read_table(
        self,
        asset: str,
        day: date | str,
        name: str | None = None,
        columns: list[str] | None = None,
        filters: list | None = None,
    ) -> pa.Table:
        """A partition's table; raises ``FileNotFoundError`` naming it when it was never written."""
        with self.local_file(asset, day, name) as path:
            return pq.read_table(path, columns=columns, filters=filters)

    @contextmanager
    def local_file(self, asset: str, day: date | str, name: str | None = None) -> Iterator[str]:
        """A local path to a partition's table (the file itself, or a temporary download from S3)."""
        key = self.table_key(asset, day, name)
        if not self.store.exists(key):
            raise FileNotFoundError(f"{self.store.uri_for(key)} does not exist: materialise {asset} for {day} first")
        local = self.store.local_path(key)
        if local is not None:
            yield local
            return
        with tempfile.TemporaryDirectory(prefix="proactive-") as tmp:
            path = os.path.join(tmp, "t.parquet")
            self.store.get_file(key, path)
            yield path

    def read_bytes(self, asset: str, day: date | str, name: str) -> bytes:
        return self.store.get(self.key(asset, day, name))
