"""Trained models in the warehouse: one ``ip_insights_model`` partition per day.

A partition holds ``model.json`` (the metadata; ``backend`` names who trained it), ``window.npz``
(the index of the training window the model judges a day against, whichever backend trained it)
and ``folds.arrow`` (its validation days' evidence, which the next day's warm start reuses),
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
FOLDS = "folds.arrow"  # (models before it kept ``folds.parquet``: a warm day then computes every fold)


def save_model(warehouse: Warehouse, day: date, model: TrainedModel) -> dict[str, str]:
    """Write the model as the day's partition (replacing any earlier one); returns where its files are."""
    with warehouse.partition(tables.IP_INSIGHTS_MODEL, day) as out:
        if model.artifact is not None:
            out.write_bytes(MODEL_ARTIFACT, model.artifact)
        if model.window is not None:
            out.write_bytes(WINDOW_INDEX, model.window)
        if model.folds is not None:
            out.write_bytes(FOLDS, model.folds)
        out.write_bytes(MODEL_JSON, json.dumps(model.metadata, indent=2, sort_keys=True, default=str).encode())
    names = {"model_json": MODEL_JSON}
    if model.artifact is not None:
        names["artifact"] = MODEL_ARTIFACT
    if model.window is not None:
        names["window_index"] = WINDOW_INDEX
    if model.folds is not None:
        names["validation_folds"] = FOLDS
    return {
        label: warehouse.store.uri_for(warehouse.key(tables.IP_INSIGHTS_MODEL, day, n)) for label, n in names.items()
    }


def load_model_metadata(warehouse: Warehouse, day: date) -> dict[str, Any]:
    """The metadata of the model that scores ``day``, whichever backend trained it."""
    return json.loads(warehouse.read_bytes(tables.IP_INSIGHTS_MODEL, day, MODEL_JSON))


def load_model(warehouse: Warehouse, day: date, for_warm_start: bool = False) -> TrainedModel:
    """The model that scores ``day`` (trained on the window before it): metadata and weights of one
    commit, with its window index to score, or with its validation folds instead ``for_warm_start``."""
    snapshot = warehouse.snapshot(tables.IP_INSIGHTS_MODEL, day)

    def optional(name: str, wanted: bool = True) -> memoryview | None:
        # (aligned: the weights and the window's index are read in place, on cache lines' bounds)
        return snapshot.read_aligned(name) if wanted and snapshot.has(name) else None

    metadata = json.loads(snapshot.read_bytes(MODEL_JSON))
    window = optional(WINDOW_INDEX, not for_warm_start)
    return TrainedModel(metadata, optional(MODEL_ARTIFACT), window, optional(FOLDS, for_warm_start))
