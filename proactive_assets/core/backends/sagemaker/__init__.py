"""The SageMaker backend: the built-in ``ipinsights`` algorithm, trained and served by SageMaker.

The warehouse keeps only the model's metadata (job, model, endpoint, calibration); the weights
live in SageMaker. A model is scored in the region, on the endpoint and in the mode it was
trained with, unless ``PROACTIVE_SAGEMAKER_SCORING_MODE`` overrides the mode.
"""

from collections.abc import Callable
from datetime import date
from typing import Any

import pyarrow as pa

from proactive_assets.config import Settings
from proactive_assets.core.backends import TrainedModel
from proactive_assets.core.backends.sagemaker import remote as remote_model
from proactive_assets.core.backends.sagemaker.client import SageMakerIPInsights
from proactive_assets.core.backends.sagemaker.jobs import DEFAULT_ENDPOINT_NAME
from proactive_assets.core.model import IPInsightsParams
from proactive_assets.core.model.warm import RetrainPlan
from proactive_assets.core.scoring import Scorer

#: What ``describe`` shows of a SageMaker model's metadata, as is.
_DESCRIBED = ("hyperparameters", "calibration", "scoring_mode", "model_name", "training_job_name", "validation_pairs")


class SageMakerBackend:
    name = remote_model.BACKEND

    def __init__(
        self,
        role_arn: str | None,
        artifacts_uri: str | None,
        region: str | None = None,
        scoring_mode: str | None = None,
        endpoint_name: str | None = None,
    ) -> None:
        self.role_arn = role_arn
        self.artifacts_uri = artifacts_uri
        self.region = region
        self.scoring_mode = scoring_mode
        self.endpoint_name = endpoint_name

    @classmethod
    def from_settings(cls, settings: Settings) -> "SageMakerBackend":
        return cls(
            settings.sagemaker_role_arn,
            settings.sagemaker_artifacts_uri,
            settings.aws_region,
            settings.sagemaker_scoring_mode,
            settings.sagemaker_endpoint_name,
        )

    def client(self, metadata: dict[str, Any] | None = None) -> SageMakerIPInsights:
        """The SageMaker client for training (no metadata) or for scoring an existing model."""
        meta = metadata or {}
        mode = self.scoring_mode or meta.get("scoring_mode") or "endpoint"
        return SageMakerIPInsights(
            role_arn=self.role_arn,
            artifacts_uri=self.artifacts_uri,
            region=meta.get("region") or self.region,
            scoring_mode=mode.lower(),
            endpoint_name=meta.get("endpoint_name") or self.endpoint_name or DEFAULT_ENDPOINT_NAME,
        )

    def train(
        self, training_set: pa.Table, params: IPInsightsParams, day: date, plan: RetrainPlan | None = None
    ) -> TrainedModel:
        """Train, deploy (endpoint mode) and calibrate through SageMaker: always a full retrain."""
        metadata = remote_model.train_remote(self.client(), _plain(training_set), params, day)
        metadata["retraining"] = {"mode": "full", "reason": f"the {self.name} backend always retrains fully"}
        return TrainedModel(metadata)

    def scorer(self, model: TrainedModel, training_set: Callable[[], pa.Table]) -> Scorer:
        known = remote_model.known_entities(_plain(training_set().select(["entity", "source_ip"])))
        return remote_model.RemoteScorer(self.client(model.metadata), model.metadata, known)

    def describe(self, model: TrainedModel) -> dict[str, Any]:
        meta = model.metadata
        return {
            **{name: meta.get(name) for name in _DESCRIBED},
            "artifact": meta.get("model_artifact_uri"),
            "endpoint": meta.get("endpoint_name") or f"none ({meta.get('scoring_mode')} scoring)",
            "skipped_ipv6": int(meta.get("skipped_ipv6") or 0),
        }


def _plain(table: pa.Table) -> pa.Table:
    """``table`` with dictionary-encoded columns (the detector hands IP Insights its codes) as plain
    values: the remote path's version hash and CSV files are of the text."""
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(field.type.value_type))
    return table
