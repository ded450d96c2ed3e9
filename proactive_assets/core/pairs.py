"""From a day's normalised events to the learning set: one row per (entity, source_ip).

This is the seed's ``learning.csv`` made useful: it keeps the source IP (the seed dropped it),
counts events once even when CloudTrail delivers a record twice, and keeps what a person auditing
an alert needs (first/last seen, event names, accounts, regions, source objects).
"""

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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


def drop_duplicate_events(events: pa.Table) -> tuple[pa.Table, int]:
    """Keep the first copy of each eventID (CloudTrail may deliver a record twice)."""
    if events.num_rows == 0 or "event_id" not in events.column_names:
        return events, 0
    ids = events.column("event_id")
    if ids.null_count == len(ids):
        return events, 0
    hashes = pd.util.hash_array(np.asarray(ids.to_numpy(zero_copy_only=False), dtype=object))
    has_id = np.asarray(pc.is_valid(ids), dtype=bool)
    keep = ~has_id
    _, first = np.unique(hashes[has_id], return_index=True)
    keep[np.flatnonzero(has_id)[first]] = True
    dropped = int(len(keep) - keep.sum())
    return (events.filter(pa.array(keep)) if dropped else events), dropped


def _sorted_lists(column: pa.Array) -> pa.Array:
    return pa.array([sorted(v) if v is not None else [] for v in column.to_pylist()], pa.list_(pa.string()))


def build_learning_set(events: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    """Aggregate the day's pair events; returns the table and counts for metadata."""
    total = events.num_rows
    pairs = events.filter(pc.field("is_pair")) if total else events
    pairs = pairs.select(PAIR_COLUMNS)
    pairs, duplicates = drop_duplicate_events(pairs)
    stats = {"events": total, "pair_events": pairs.num_rows, "duplicate_events": duplicates}
    if pairs.num_rows == 0:
        stats["pairs"] = 0
        return LEARNING_SET_SCHEMA.empty_table(), stats
    pairs = pairs.append_column("is_error", pc.is_valid(pairs.column("error_code")).cast(pa.int64()))
    grouped = pairs.group_by(["identity_arn", "source_ip"]).aggregate(
        [
            ("event_time", "count"),
            ("is_error", "sum"),
            ("event_time", "min"),
            ("event_time", "max"),
            ("event_name", "distinct"),
            ("identity_type", "distinct"),
            ("account", "distinct"),
            ("region", "distinct"),
            ("source", "distinct"),
            ("source_file", "distinct"),
        ]
    )
    files = grouped.column("source_file_distinct")
    file_counts = pc.list_value_length(files).cast(pa.int64())
    capped = pa.array([sorted(v)[:MAX_SOURCE_FILES] for v in files.to_pylist()], pa.list_(pa.string()))
    table = pa.table(
        {
            "entity": grouped.column("identity_arn"),
            "source_ip": grouped.column("source_ip"),
            "event_count": grouped.column("event_time_count").cast(pa.int64()),
            "error_count": grouped.column("is_error_sum").cast(pa.int64()),
            "first_seen": grouped.column("event_time_min"),
            "last_seen": grouped.column("event_time_max"),
            "event_names": _sorted_lists(grouped.column("event_name_distinct")),
            "identity_types": _sorted_lists(grouped.column("identity_type_distinct")),
            "accounts": _sorted_lists(grouped.column("account_distinct")),
            "regions": _sorted_lists(grouped.column("region_distinct")),
            "sources": _sorted_lists(grouped.column("source_distinct")),
            "source_files": capped,
            "source_file_count": file_counts,
        },
        schema=LEARNING_SET_SCHEMA,
    )
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
