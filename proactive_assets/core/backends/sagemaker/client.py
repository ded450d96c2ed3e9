"""``SageMakerIPInsights``: train, deploy and score the built-in IP Insights model on SageMaker.

One object per deployment, holding the boto3 clients and where artifacts go. Scoring is by
endpoint (real-time, one model served at a time) or by batch transform (per job, with exactly
the model asked for); endpoint mode refuses a model the endpoint does not serve.
"""

import time
from collections.abc import Mapping, Sequence
from typing import Any

from proactive_assets.core.backends.sagemaker.errors import SageMakerScoringError
from proactive_assets.core.backends.sagemaker.hosting import create_model, deploy_endpoint, endpoint_model_names
from proactive_assets.core.backends.sagemaker.invoke import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_MAX_ROWS_PER_REQUEST,
    SageMakerScores,
    score_pairs,
    score_pairs_batch,
)
from proactive_assets.core.backends.sagemaker.jobs import (
    DEFAULT_ENDPOINT_NAME,
    DEFAULT_INSTANCE_TYPE,
    DEFAULT_NAME_PREFIX,
    VALIDATION_AUC_METRIC,
    Sleep,
    ipinsights_image_uri,
    make_resource_name,
    normalise_hyperparameters,
    require_artifacts_uri,
    require_role_arn,
    start_training_job,
)
from proactive_assets.core.backends.sagemaker.training_data import join_s3_uri, parse_s3_uri, upload_training_csv


class SageMakerIPInsights:
    """Train, deploy and score the built-in IP Insights model; one instance per deployment.

    Artifacts layout under ``artifacts_uri``: ``training-data/<job>/train.csv``,
    ``models/<job>/output/model.tar.gz`` (SageMaker's own layout) and ``transform/<job>/``.
    """

    def __init__(
        self,
        *,
        role_arn: str | None,
        artifacts_uri: str | None,
        region: str | None = None,
        session: Any = None,
        sagemaker_client: Any = None,
        runtime_client: Any = None,
        s3_client: Any = None,
        training_instance_type: str = DEFAULT_INSTANCE_TYPE,
        inference_instance_type: str = DEFAULT_INSTANCE_TYPE,
        endpoint_name: str = DEFAULT_ENDPOINT_NAME,
        scoring_mode: str = "endpoint",
        name_prefix: str = DEFAULT_NAME_PREFIX,
        image_uri: str | None = None,
        poll_interval: float = 30.0,
        training_timeout: float | None = None,
        transform_timeout: float = 2 * 3600,
        deploy_timeout: float = 3600.0,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        max_rows_per_request: int = DEFAULT_MAX_ROWS_PER_REQUEST,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.role_arn = require_role_arn(role_arn)
        self.artifacts_uri = require_artifacts_uri(artifacts_uri)
        parse_s3_uri(self.artifacts_uri)
        if scoring_mode not in ("endpoint", "batch"):
            raise ValueError(f"scoring_mode must be 'endpoint' or 'batch', got {scoring_mode!r}")
        if session is None and None in (sagemaker_client, runtime_client, s3_client):
            import boto3

            session = boto3.session.Session(region_name=region) if region else boto3.session.Session()
        self.sagemaker = sagemaker_client or session.client("sagemaker")
        self.runtime = runtime_client or session.client("sagemaker-runtime")
        self.s3 = s3_client or session.client("s3")
        self.region = region or self.sagemaker.meta.region_name
        if not self.region:
            raise ValueError("no AWS region: set AWS_DEFAULT_REGION or pass region")
        self.training_instance_type = training_instance_type
        self.inference_instance_type = inference_instance_type
        self.endpoint_name = endpoint_name
        self.scoring_mode = scoring_mode
        self.name_prefix = name_prefix
        self._image_uri = image_uri
        self.poll_interval = poll_interval
        self.training_timeout = training_timeout
        self.transform_timeout = transform_timeout
        self.deploy_timeout = deploy_timeout
        self.max_payload_bytes = max_payload_bytes
        self.max_rows_per_request = max_rows_per_request
        self.sleep = sleep
        self.last_model_name: str | None = None

    @property
    def image_uri(self) -> str:
        """The algorithm's image in this region, looked up once."""
        if self._image_uri is None:
            self._image_uri = ipinsights_image_uri(self.region)
        return self._image_uri

    def train(
        self,
        entities: Sequence[Any],
        ips: Sequence[Any],
        hyperparameters: Mapping[str, Any],
        version: str,
        *,
        counts: Sequence[int] | None = None,
        validation_entities: Sequence[Any] | None = None,
        validation_ips: Sequence[Any] | None = None,
    ) -> dict[str, Any]:
        """Upload pairs, train, register the model and (endpoint mode) deploy it.

        Returns metadata for the model asset. With a validation set the job reports
        ``validation:discriminator_auc``, returned as ``validation_auc``.
        """
        hyper = normalise_hyperparameters(hyperparameters)
        job_name = make_resource_name(self.name_prefix, version)
        data_prefix = join_s3_uri(self.artifacts_uri, "training-data", job_name)
        train_csv = upload_training_csv(self.s3, data_prefix, entities, ips, counts=counts)
        if train_csv.rows == 0:
            raise ValueError(
                f"no IPv4 pairs to train on ({train_csv.skipped_ipv6} IPv6 and "
                f"{train_csv.skipped_invalid} invalid rows skipped)"
            )
        validation_csv = None
        if validation_entities is not None and validation_ips is not None:
            validation_csv = upload_training_csv(
                self.s3, data_prefix, validation_entities, validation_ips, filename="validation.csv"
            )
            if validation_csv.rows == 0:
                validation_csv = None
        job = start_training_job(
            self.sagemaker,
            job_name=job_name,
            role_arn=self.role_arn,
            hyperparameters=hyper,
            train_s3_uri=train_csv.s3_uri,
            validation_s3_uri=validation_csv.s3_uri if validation_csv else None,
            output_s3_uri=join_s3_uri(self.artifacts_uri, "models"),
            image_uri=self.image_uri,
            instance_type=self.training_instance_type,
            tags={"proactive:version": str(version)},
            poll_interval=self.poll_interval,
            timeout=self.training_timeout,
            sleep=self.sleep,
        )
        create_model(
            self.sagemaker,
            model_name=job_name,
            image_uri=self.image_uri,
            model_artifact_uri=job.model_artifact_uri,
            role_arn=self.role_arn,
        )
        self.last_model_name = job_name
        metadata: dict[str, Any] = {
            "backend": "sagemaker",
            "version": str(version),
            "region": self.region,
            "training_job_name": job.job_name,
            "model_name": job_name,
            "model_artifact_uri": job.model_artifact_uri,
            "training_data_uri": train_csv.s3_uri,
            "validation_data_uri": validation_csv.s3_uri if validation_csv else None,
            "image_uri": self.image_uri,
            "hyperparameters": hyper,
            "training_rows": train_csv.rows,
            "skipped_ipv6": train_csv.skipped_ipv6,
            "skipped_invalid": train_csv.skipped_invalid,
            "escaped_entities": train_csv.escaped_entities,
            "validation_auc": job.metrics.get(VALIDATION_AUC_METRIC),
            "metrics": job.metrics,
            "billable_seconds": job.billable_seconds,
            "training_instance_type": self.training_instance_type,
            "scoring_mode": self.scoring_mode,
            "endpoint_name": None,
            "endpoint_config_name": None,
        }
        if self.scoring_mode == "endpoint":
            deployment = deploy_endpoint(
                self.sagemaker,
                endpoint_name=self.endpoint_name,
                model_name=job_name,
                instance_type=self.inference_instance_type,
                poll_interval=self.poll_interval,
                timeout=self.deploy_timeout,
                sleep=self.sleep,
            )
            metadata["endpoint_name"] = deployment.endpoint_name
            metadata["endpoint_config_name"] = deployment.endpoint_config_name
            metadata["endpoint_action"] = deployment.action
        return metadata

    def score(self, entities: Sequence[Any], ips: Sequence[Any], *, model_name: str | None = None) -> SageMakerScores:
        """Score pairs with ``model_name`` (default: the last model trained here).

        Endpoint mode refuses to score when the endpoint serves a different model than asked
        for, so a backfill never silently uses a newer model; use batch mode for backfills.
        """
        wanted = model_name or self.last_model_name
        if self.scoring_mode == "batch":
            if not wanted:
                raise ValueError("batch scoring needs model_name (no model trained in this process)")
            job_name = make_resource_name(f"{self.name_prefix}-score", wanted[-20:])
            return score_pairs_batch(
                self.sagemaker,
                self.s3,
                model_name=wanted,
                entities=entities,
                ips=ips,
                s3_uri_prefix=join_s3_uri(self.artifacts_uri, "transform", job_name),
                job_name=job_name,
                instance_type=self.inference_instance_type,
                poll_interval=self.poll_interval,
                timeout=self.transform_timeout,
                sleep=self.sleep,
            )
        if model_name:
            served = endpoint_model_names(self.sagemaker, self.endpoint_name)
            if model_name not in served:
                raise SageMakerScoringError(
                    f"endpoint {self.endpoint_name!r} serves {served}, not {model_name!r}; "
                    "scoring with it would use a different model (use scoring_mode='batch' "
                    "for backfills)"
                )
        return score_pairs(
            self.runtime,
            self.endpoint_name,
            entities,
            ips,
            max_payload_bytes=self.max_payload_bytes,
            max_rows_per_request=self.max_rows_per_request,
            sleep=self.sleep,
        )
