"""The training window and model artifacts: pure helpers shared by the Dagster assets and the CLI.

No leakage: the window for day D is the ``days`` days strictly before D, never D itself.
"""

import json
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from proactive_assets.core.ipinsights import IPInsightsModel
from proactive_assets.core.warehouse import Warehouse

TRAINING_COLUMNS = ["entity", "source_ip", "event_count", "sources"]
MODEL_ASSET = "ip_insights_model"


def training_window(day: date, days: int) -> tuple[date, date]:
    """First and last day (inclusive) of the window used to train the model that scores ``day``."""
    return day - timedelta(days=days), day - timedelta(days=1)


def window_days(day: date, days: int) -> list[date]:
    start, end = training_window(day, days)
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def build_training_set(warehouse: Warehouse, day: date, days: int) -> tuple[pa.Table, list[str]]:
    """Union of the learning sets in the window; days never materialised or empty are left out."""
    tables, used = [], []
    for d in window_days(day, days):
        if not warehouse.has("learning_set", d):
            continue
        table = warehouse.read_table("learning_set", d, columns=TRAINING_COLUMNS)
        if table.num_rows == 0:
            continue
        tables.append(table.append_column("day", pa.array([d] * table.num_rows, pa.date32())))
        used.append(d.isoformat())
    if not tables:
        schema = pa.schema(
            [
                ("entity", pa.string()),
                ("source_ip", pa.string()),
                ("event_count", pa.int64()),
                ("sources", pa.list_(pa.string())),
                ("day", pa.date32()),
            ]
        )
        return schema.empty_table(), used
    return pa.concat_tables(tables), used


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


def save_model(warehouse: Warehouse, day: date, model: IPInsightsModel, extra: dict) -> str:
    """Write the artifact and its metadata as the model partition; returns the artifact URI."""
    meta = {**model.metadata, **extra}
    with warehouse.partition(MODEL_ASSET, day) as out:
        out.write_bytes("model.npz", model.to_bytes())
        out.write_bytes("model.json", json.dumps(meta, indent=2, sort_keys=True, default=str).encode())
    return warehouse.store.uri_for(warehouse.key(MODEL_ASSET, day, "model.npz"))


def load_model(warehouse: Warehouse, day: date) -> tuple[IPInsightsModel, dict]:
    """The model that scores ``day`` (trained on the window before it) and its metadata."""
    key = warehouse.key(MODEL_ASSET, day, "model.npz")
    if not warehouse.store.exists(key):
        raise FileNotFoundError(f"{warehouse.store.uri_for(key)} does not exist: materialise {MODEL_ASSET} for {day}")
    model = IPInsightsModel.from_bytes(warehouse.read_bytes(MODEL_ASSET, day, "model.npz"))
    meta = json.loads(warehouse.read_bytes(MODEL_ASSET, day, "model.json"))
    return model, meta


def distinct_entities(table: pa.Table) -> int:
    return len(pc.unique(table.column("entity"))) if table.num_rows else 0
