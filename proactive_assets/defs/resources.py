"""Where data lives, as one Dagster resource built from the environment (``Settings``)."""

import re
from typing import Any

from dagster import ConfigurableResource
from dagster_aws.s3 import S3Resource

from proactive_assets.config import Settings
from proactive_assets.core.storage import ObjectStore, open_store
from proactive_assets.core.warehouse import Warehouse


class ProactiveResource(ConfigurableResource):
    """Locations and options; S3 clients come from dagster-aws so endpoint/region config is standard."""

    home: str
    cloudtrail_uri: str
    accounts: list[str] = []
    regions: list[str] = []
    security_lake_uri: str | None = None
    sqs_queue_url: str | None = None
    warehouse_uri: str
    model_backend: str = "local"
    training_days: int = 14
    min_training_days: int = 3
    insight_threshold: float = 0.85
    sns_topic_arn: str | None = None
    sagemaker_role_arn: str | None = None
    sagemaker_artifacts_uri: str | None = None
    sagemaker_scoring_mode: str | None = None
    sagemaker_endpoint_name: str | None = None
    s3: S3Resource

    @classmethod
    def from_settings(cls, settings: Settings) -> "ProactiveResource":
        return cls(
            home=settings.home,
            cloudtrail_uri=settings.cloudtrail_uri,
            accounts=list(settings.accounts),
            regions=list(settings.regions),
            security_lake_uri=settings.security_lake_uri,
            sqs_queue_url=settings.sqs_queue_url,
            warehouse_uri=settings.warehouse,
            model_backend=settings.model_backend,
            training_days=settings.training_days,
            min_training_days=settings.min_training_days,
            insight_threshold=settings.insight_threshold,
            sns_topic_arn=settings.sns_topic_arn,
            sagemaker_role_arn=settings.sagemaker_role_arn,
            sagemaker_artifacts_uri=settings.sagemaker_artifacts_uri,
            sagemaker_scoring_mode=settings.sagemaker_scoring_mode,
            sagemaker_endpoint_name=settings.sagemaker_endpoint_name,
            s3=S3Resource(),
        )

    def _client(self, uri: str) -> Any:
        return self.s3.get_client() if uri.startswith("s3://") else None

    def cloudtrail_store(self) -> ObjectStore:
        return open_store(self.cloudtrail_uri, s3_client=self._client(self.cloudtrail_uri), must_exist=True)

    def security_lake_store(self) -> ObjectStore | None:
        if not self.security_lake_uri:
            return None
        return open_store(self.security_lake_uri, s3_client=self._client(self.security_lake_uri), must_exist=True)

    def sqs_client(self) -> Any:
        """A boto3 SQS client in the queue's region (read from its URL when it is an AWS one)."""
        import boto3

        region = sqs_region(self.sqs_queue_url or "")
        return boto3.client("sqs", region_name=region) if region else boto3.client("sqs")

    def warehouse(self) -> Warehouse:
        return Warehouse(open_store(self.warehouse_uri, s3_client=self._client(self.warehouse_uri)))


_SQS_HOST = re.compile(r"^https?://(?:sqs[.-](?P<a>[a-z0-9-]+)|(?P<b>[a-z0-9-]+)\.queue)\.amazonaws\.com(?:\.cn)?/")


def sqs_region(queue_url: str) -> str | None:
    """``https://sqs.eu-west-1.amazonaws.com/123/q`` -> ``eu-west-1``; None for other hosts (moto, VPC endpoints)."""
    match = _SQS_HOST.match(queue_url)
    return (match["a"] or match["b"]) if match else None
