"""The local backend: the numpy IP Insights model, its weights stored as the model's artifact."""

from collections.abc import Callable
from datetime import date
from typing import Any

import pyarrow as pa

from proactive_assets.core.backends import TrainedModel
from proactive_assets.core.model import IPInsightsModel, IPInsightsParams
from proactive_assets.core.model.warm import RetrainPlan, full_plan, train_planned
from proactive_assets.core.scoring import Scorer


class LocalBackend:
    name = "local"
    #: Trains model D from model D-1 when ``train`` is given a warm ``RetrainPlan``.
    warm_start = True

    def train(
        self, training_set: pa.Table, params: IPInsightsParams, day: date, plan: RetrainPlan | None = None
    ) -> TrainedModel:
        """IP Insights on the rows (``day`` column included), warm or full as ``plan`` says (default: full)."""
        model = train_planned(
            training_set.column("entity"),
            training_set.column("source_ip"),
            training_set.column("event_count").to_numpy(),
            training_set.column("day").cast(pa.int32()).to_numpy() if "day" in training_set.column_names else None,
            params,
            plan or full_plan("no retraining plan given"),
            day,
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
