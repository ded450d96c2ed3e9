"""From a day's normalised events to the learning set: one row per (entity, source_ip).

This is the seed's ``learning.csv`` made useful: it keeps the source IP (the seed dropped it),
counts events once even when CloudTrail delivers a record twice, and keeps what a person auditing
an alert needs (first/last seen, event names, accounts, regions, source objects).
"""

import io
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

MAX_SOURCE_FILES = 50

LEARNING_SET_SCHEMA = pa.schema(
    [
        ("entity", pa.string()),
        ("source_ip", pa.string()),
        ("event_count", pa.int64()),
        ("error_count", pa.int64()),
        ("first_seen", pa.timestamp("ms", tz="UTC")),
        ("last_seen", pa.timestamp("ms", tz="UTC")),
        ("event_names", pa.list_(pa.string())),
        ("identity_types", pa.list_(pa.string())),
        ("accounts", pa.list_(pa.string())),
        ("regions", pa.list_(pa.string())),
        ("sources", pa.list_(pa.string())),
        ("source_files", pa.list_(pa.string())),
        ("source_file_count", pa.int64()),
    ]
)

PAIR_COLUMNS = [
    "event_time",
    "event_name",
    "identity_arn",
    "identity_type",
    "account",
    "region",
    "source_ip",
    "error_code",
    "event_id",
    "source",
    "source_file",
]


EventSource = pa.Table | str
"""Pair events: an in-memory table, or the path of a Parquet file read batch by batch."""

BATCH_ROWS = 256_000
_LIST_COLUMNS = {
    "event_names": "event_name",
    "identity_types": "identity_type",
    "accounts": "account",
    "regions": "region",
    "sources": "source",
    "source_files": "source_file",
}
_KEYS = ["entity", "source_ip"]


def _read(source: EventSource, columns: list[str]) -> pa.Table:
    if isinstance(source, pa.Table):
        return source.select(columns)
    return pq.read_table(source, columns=columns)


def _batches(source: EventSource, columns: list[str]) -> Iterator[pa.Table]:
    if isinstance(source, pa.Table):
        for batch in source.select(columns).to_batches(max_chunksize=BATCH_ROWS):
            yield pa.Table.from_batches([batch])
        return
    for batch in pq.ParquetFile(source).iter_batches(batch_size=BATCH_ROWS, columns=columns):
        yield pa.Table.from_batches([batch])


def first_occurrences(event_ids: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """True for the first row of each eventID, and for every row without one.

    CloudTrail may deliver a record twice (in different objects of the same day), and Security
    Lake keeps CloudTrail's eventID, so the same event can come from both. The hash aggregation
    runs in Arrow: no Python object per event, so a multi-million-event day stays small.
    """
    n = len(event_ids)
    keep = np.asarray(pc.is_null(event_ids), dtype=bool)
    if n == 0 or keep.all():
        return keep
    # Nulls form one group of their own; they are kept anyway. No filtered copy of the ids.
    rows = pa.table({"id": event_ids, "row": pa.array(np.arange(n, dtype=np.int64))})
    firsts = rows.group_by("id").aggregate([("row", "min")])
    del rows
    keep[np.asarray(firsts.column("row_min"))] = True
    return keep


def _partial(pairs: pa.Table) -> pa.Table:
    """Aggregate one batch of pair events per (entity, source_ip)."""
    pairs = pairs.append_column("is_error", pc.is_valid(pairs.column("error_code")).cast(pa.int64()))
    grouped = pairs.group_by(["identity_arn", "source_ip"]).aggregate(
        [
            ("event_time", "count"),
            ("is_error", "sum"),
            ("event_time", "min"),
            ("event_time", "max"),
            *[(column, "distinct") for column in _LIST_COLUMNS.values()],
        ]
    )
    return pa.table(
        {
            "entity": grouped.column("identity_arn"),
            "source_ip": grouped.column("source_ip"),
            "event_count": grouped.column("event_time_count").cast(pa.int64()),
            "error_count": grouped.column("is_error_sum").cast(pa.int64()),
            "first_seen": grouped.column("event_time_min"),
            "last_seen": grouped.column("event_time_max"),
            **{name: grouped.column(f"{column}_distinct") for name, column in _LIST_COLUMNS.items()},
        }
    )


def _combine(partials: list[pa.Table]) -> pa.Table:
    """Merge per-batch aggregates: sums, min/max, and the union of each list column."""
    merged = pa.concat_tables(partials)
    table = merged.group_by(_KEYS).aggregate(
        [("event_count", "sum"), ("error_count", "sum"), ("first_seen", "min"), ("last_seen", "max")]
    )
    table = table.rename_columns([*_KEYS, "event_count", "error_count", "first_seen", "last_seen"])
    index = {key: i for i, key in enumerate(zip(*(table.column(k).to_pylist() for k in _KEYS), strict=True))}
    for name in _LIST_COLUMNS:
        values: list[set] = [set() for _ in range(table.num_rows)]
        for entity, ip, items in zip(
            merged.column("entity").to_pylist(),
            merged.column("source_ip").to_pylist(),
            merged.column(name).to_pylist(),
            strict=True,
        ):
            values[index[(entity, ip)]].update(v for v in items or () if v is not None)
        table = table.append_column(name, pa.array([sorted(v) for v in values], pa.list_(pa.string())))
    return table


def build_learning_set(*sources: EventSource) -> tuple[pa.Table, dict[str, int]]:
    """The learning set of a day from its event sources (CloudTrail, Security Lake), streamed.

    Two passes over the sources: the first reads only ``is_pair`` and ``event_id`` to find the
    first copy of every event; the second aggregates batch by batch. Memory is bounded by one
    batch and the (small) per-pair aggregates, not by the day.
    """
    total, is_pair, pair_ids = 0, [], []
    for source in sources:  # one source's ids at a time: only the pair events' ids stay in memory
        flags = _read(source, ["is_pair", "event_id"])
        total += flags.num_rows
        is_pair.append(np.asarray(pc.fill_null(flags.column("is_pair"), False), dtype=bool))
        pair_ids.append(flags.column("event_id").filter(pa.array(is_pair[-1])).combine_chunks())
        del flags
    keep_pairs = first_occurrences(pa.chunked_array(pair_ids, pa.string()))
    del pair_ids
    stats = {"events": total, "pair_events": int(keep_pairs.sum()), "duplicate_events": int((~keep_pairs).sum())}
    partials, offset = [], 0
    for source, pair_mask in zip(sources, is_pair, strict=True):
        keep = np.zeros(len(pair_mask), dtype=bool)
        keep[pair_mask] = keep_pairs[offset : offset + int(pair_mask.sum())]
        offset += int(pair_mask.sum())
        start = 0
        for batch in _batches(source, PAIR_COLUMNS):
            mask = keep[start : start + batch.num_rows]
            start += batch.num_rows
            if mask.any():
                partials.append(_partial(batch.filter(pa.array(mask))))
    if not partials:
        stats["pairs"] = 0
        return LEARNING_SET_SCHEMA.empty_table(), stats
    table = _combine(partials)
    files = table.column("source_files")
    table = table.set_column(
        table.schema.get_field_index("source_files"),
        "source_files",
        pa.array([v[:MAX_SOURCE_FILES] for v in files.to_pylist()], pa.list_(pa.string())),
    ).append_column("source_file_count", pc.list_value_length(files).cast(pa.int64()))
    table = table.select(LEARNING_SET_SCHEMA.names).cast(LEARNING_SET_SCHEMA)
    table = table.sort_by([("entity", "ascending"), ("source_ip", "ascending")])
    stats["pairs"] = table.num_rows
    stats["entities"] = len(pc.unique(table.column("entity")))
    return table, stats


def table_digest(table: pa.Table) -> str:
    """Content digest of a (sorted) table: the data version of ``learning_set``."""
    import hashlib

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()[:24]


def sagemaker_csv(learning_set: pa.Table) -> bytes:
    """Headerless ``entity,ip`` CSV, one line per event, the way SageMaker IP Insights trains on it."""
    frame = learning_set.select(["entity", "source_ip", "event_count"]).to_pandas()
    frame = frame.loc[frame.index.repeat(frame["event_count"].clip(lower=1))]
    buffer = io.StringIO()
    frame[["entity", "source_ip"]].to_csv(buffer, header=False, index=False, lineterminator="\n")
    return buffer.getvalue().encode()
