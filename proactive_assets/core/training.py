"""The training window and model artifacts: pure helpers shared by the Dagster assets and the CLI.

No leakage: the window for day D is the ``days`` days strictly before D, never D itself.

One ``ip_insights_model`` partition holds ``model.json`` (metadata, ``backend`` says which) and,
for the local backend only, ``model.npz``; a SageMaker model lives in SageMaker and its
``model.json`` says where. ``load_scorer`` hides the difference from ``daily_insights``.
"""

import json
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from proactive_assets.core import remote_model
from proactive_assets.core.ipinsights import IPInsightsModel
from proactive_assets.core.scoring import Scorer
from proactive_assets.core.warehouse import Warehouse

TRAINING_COLUMNS = ["entity", "source_ip", "event_count", "sources"]
MODEL_ASSET = "ip_insights_model"
MODEL_JSON = "model.json"
MODEL_NPZ = "model.npz"

RemoteBackendFactory = Callable[[dict[str, Any]], remote_model.RemoteBackend]


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
        out.write_bytes(MODEL_NPZ, model.to_bytes())
        out.write_bytes(MODEL_JSON, _json_bytes(meta))
    return warehouse.store.uri_for(warehouse.key(MODEL_ASSET, day, MODEL_NPZ))


def save_remote_model(warehouse: Warehouse, day: date, metadata: dict[str, Any], extra: dict) -> str:
    """Write a remote model's metadata as the model partition (no npz); returns its URI.

    The partition replaces any earlier one for the day, so a local ``model.npz`` left from a
    run with the other backend cannot be picked up by mistake.
    """
    with warehouse.partition(MODEL_ASSET, day) as out:
        out.write_bytes(MODEL_JSON, _json_bytes({**metadata, **extra}))
    return warehouse.store.uri_for(warehouse.key(MODEL_ASSET, day, MODEL_JSON))


def _json_bytes(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, indent=2, sort_keys=True, default=str).encode()


def load_model_metadata(warehouse: Warehouse, day: date) -> dict[str, Any]:
    """The metadata of the model that scores ``day``, whichever backend trained it."""
    key = warehouse.key(MODEL_ASSET, day, MODEL_JSON)
    if not warehouse.store.exists(key):
        raise FileNotFoundError(f"{warehouse.store.uri_for(key)} does not exist: materialise {MODEL_ASSET} for {day}")
    return json.loads(warehouse.read_bytes(MODEL_ASSET, day, MODEL_JSON))


def load_model(warehouse: Warehouse, day: date) -> tuple[IPInsightsModel, dict]:
    """The local model that scores ``day`` (trained on the window before it) and its metadata."""
    key = warehouse.key(MODEL_ASSET, day, MODEL_NPZ)
    if not warehouse.store.exists(key):
        meta_key = warehouse.key(MODEL_ASSET, day, MODEL_JSON)
        if warehouse.store.exists(meta_key):
            backend = load_model_metadata(warehouse, day).get("backend")
            raise FileNotFoundError(
                f"the {MODEL_ASSET} for {day} was trained by the {backend!r} backend and has no local "
                "artifact: use load_scorer or load_model_metadata"
            )
        raise FileNotFoundError(f"{warehouse.store.uri_for(key)} does not exist: materialise {MODEL_ASSET} for {day}")
    model = IPInsightsModel.from_bytes(warehouse.read_bytes(MODEL_ASSET, day, MODEL_NPZ))
    meta = json.loads(warehouse.read_bytes(MODEL_ASSET, day, MODEL_JSON))
    return model, meta


def load_scorer(
    warehouse: Warehouse, day: date, remote_backend_factory: RemoteBackendFactory | None = None
) -> tuple[Scorer, dict[str, Any]]:
    """A scorer for ``day``'s model and its metadata, for either backend.

    For a remote model, ``remote_backend_factory(metadata)`` builds the client (it may read
    the region, endpoint and scoring mode the model was trained with from the metadata), and
    ``entity_known`` comes from the entities of ``training_set`` for the same day.
    """
    meta = load_model_metadata(warehouse, day)
    backend = meta.get("backend", "local")
    if backend == "local":
        model, meta = load_model(warehouse, day)
        return model.score, meta
    if backend != remote_model.BACKEND:
        raise ValueError(f"the {MODEL_ASSET} for {day} has unknown backend {backend!r}")
    if remote_backend_factory is None:
        raise ValueError(f"the {MODEL_ASSET} for {day} is a {backend} model: a remote backend factory is needed")
    known = remote_model.known_entities(warehouse.read_table("training_set", day, columns=["entity", "source_ip"]))
    return remote_model.RemoteScorer(remote_backend_factory(meta), meta, known), meta


def distinct_entities(table: pa.Table) -> int:
    return len(pc.unique(table.column("entity"))) if table.num_rows else 0
