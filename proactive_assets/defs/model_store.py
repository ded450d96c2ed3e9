"""Trained models in the warehouse: one ``ip_insights_model`` partition per day.

A partition holds ``model.json`` (the metadata; ``backend`` names who trained it), ``window.npz``
(the index of the training window the model judges a day against, whichever backend trained it)
and, when the weights live with us (the local backend), ``model.npz``; a SageMaker model lives in
SageMaker and its ``model.json`` says where. The files are written by one atomic partition commit
and read through one snapshot of its manifest, so a model's metadata always comes with its own
weights and window.
"""

import json
from datetime import date
from typing import Any

from proactive_assets.core.backends import TrainedModel
from proactive_assets.core.warehouse import Warehouse
from proactive_assets.defs import tables

MODEL_JSON = "model.json"
MODEL_ARTIFACT = "model.npz"
WINDOW_INDEX = "window.npz"


def save_model(warehouse: Warehouse, day: date, model: TrainedModel) -> dict[str, str]:
    """Write the model as the day's partition (replacing any earlier one); returns where its files are."""
    with warehouse.partition(tables.IP_INSIGHTS_MODEL, day) as out:
        if model.artifact is not None:
            out.write_bytes(MODEL_ARTIFACT, model.artifact)
        if model.window is not None:
            out.write_bytes(WINDOW_INDEX, model.window)
        out.write_bytes(MODEL_JSON, json.dumps(model.metadata, indent=2, sort_keys=True, default=str).encode())
    names = {"model_json": MODEL_JSON}
    if model.artifact is not None:
        names["artifact"] = MODEL_ARTIFACT
    if model.window is not None:
        names["window_index"] = WINDOW_INDEX
    return {
        label: warehouse.store.uri_for(warehouse.key(tables.IP_INSIGHTS_MODEL, day, n)) for label, n in names.items()
    }


def load_model_metadata(warehouse: Warehouse, day: date) -> dict[str, Any]:
    """The metadata of the model that scores ``day``, whichever backend trained it."""
    return json.loads(warehouse.read_bytes(tables.IP_INSIGHTS_MODEL, day, MODEL_JSON))


def load_model(warehouse: Warehouse, day: date, with_window: bool = True) -> TrainedModel:
    """The model that scores ``day`` (trained on the window before it): metadata and weights of one commit,
    and its window index unless ``with_window`` is False (a warm start needs only the weights)."""
    snapshot = warehouse.snapshot(tables.IP_INSIGHTS_MODEL, day)
    metadata = json.loads(snapshot.read_bytes(MODEL_JSON))
    artifact = snapshot.read_bytes(MODEL_ARTIFACT) if snapshot.has(MODEL_ARTIFACT) else None
    window = snapshot.read_bytes(WINDOW_INDEX) if with_window and snapshot.has(WINDOW_INDEX) else None
    return TrainedModel(metadata, artifact, window)
