"""The local backend: the numpy IP Insights model, its weights stored as the model's artifact."""

from collections.abc import Callable
from datetime import date
from typing import Any

import pyarrow as pa

from proactive_assets.core.backends import TrainedModel
from proactive_assets.core.model import IPInsightsModel, IPInsightsParams, train_ip_insights
from proactive_assets.core.scoring import Scorer


class LocalBackend:
    name = "local"

    def train(self, training_set: pa.Table, params: IPInsightsParams, day: date) -> TrainedModel:
        model = train_ip_insights(
            training_set.column("entity").to_pylist(),
            training_set.column("source_ip").to_pylist(),
            training_set.column("event_count").to_numpy(),
            params,
        )
        return TrainedModel({**model.metadata, "backend": self.name}, model.to_bytes())

    def scorer(self, model: TrainedModel, training_set: Callable[[], pa.Table]) -> Scorer:
        if model.artifact is None:
            raise ValueError(f"local model {model.version} has no artifact to load")
        return IPInsightsModel.from_bytes(model.artifact).score

    def describe(self, model: TrainedModel) -> dict[str, Any]:
        return {
            "hyperparameters": model.metadata.get("hyperparameters", {}),
            "calibration": model.metadata.get("calibration", {}),
        }
