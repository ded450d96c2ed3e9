"""The training window: which days train the model that scores day D, and their union.

No leakage: the window for day D is the ``days`` days strictly before D, never D itself.
Pure functions on tables; the Dagster layer reads the learning sets and passes them in.
"""

from collections.abc import Mapping
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc

TRAINING_SCHEMA = pa.schema(
    [
        ("entity", pa.string()),
        ("source_ip", pa.string()),
        ("event_count", pa.int64()),
        ("sources", pa.list_(pa.string())),
        ("event_names", pa.list_(pa.string())),
        ("user_agents", pa.list_(pa.string())),
        ("day", pa.date32()),
    ]
)
#: The learning-set columns a model trains on (what each identity did, too: the detector's
#: evidence compares a day's actions and user agents with the window's).
TRAINING_COLUMNS = TRAINING_SCHEMA.names[:-1]


def training_window(day: date, days: int) -> tuple[date, date]:
    """First and last day (inclusive) of the window used to train the model that scores ``day``."""
    return day - timedelta(days=days), day - timedelta(days=1)


def window_days(day: date, days: int) -> list[date]:
    start, end = training_window(day, days)
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def union_learning_sets(learning_sets: Mapping[date, pa.Table]) -> tuple[pa.Table, list[str]]:
    """The training set: the window's learning sets with a ``day`` column, and the days that had rows."""
    tables, used = [], []
    for day in sorted(learning_sets):
        table = _with_training_columns(learning_sets[day])
        if table.num_rows == 0:
            continue
        tables.append(table.append_column("day", pa.array([day] * table.num_rows, pa.date32())))
        used.append(day.isoformat())
    if not tables:
        return TRAINING_SCHEMA.empty_table(), used
    return pa.concat_tables(tables), used


def _with_training_columns(learning_set: pa.Table) -> pa.Table:
    """The training columns of a learning set; a column older partitions lack is empty lists."""
    n = learning_set.num_rows
    columns = {}
    for field in TRAINING_SCHEMA.remove(TRAINING_SCHEMA.get_field_index("day")):
        if field.name in learning_set.column_names:
            columns[field.name] = learning_set.column(field.name).cast(field.type)
        else:
            columns[field.name] = pa.array([[]] * n, field.type)
    return pa.table(columns)


#: The columns ``training_pairs`` reads.
PAIR_COLUMNS = ("entity", "source_ip", "event_count")


def training_pairs(training_set: pa.Table) -> pa.Table:
    """(entity, source_ip, event_count) summed over the window: what the model learnt from."""
    if training_set.num_rows == 0:
        return pa.table(
            {
                "entity": pa.array([], pa.string()),
                "source_ip": pa.array([], pa.string()),
                "event_count": pa.array([], pa.int64()),
            }
        )
    grouped = training_set.group_by(["entity", "source_ip"]).aggregate([("event_count", "sum")])
    return grouped.rename_columns(["entity", "source_ip", "event_count"])


def distinct_entities(table: pa.Table) -> int:
    return len(pc.unique(table.column("entity"))) if table.num_rows else 0
