"""The one Dagster resource: the ``Settings`` as its config, and the clients and stores built from them."""

from typing import Any

from dagster import Config, ConfigurableResource
from dagster_aws.s3 import S3Resource

from proactive_assets.config import Settings
from proactive_assets.core.storage import ObjectStore, open_store
from proactive_assets.core.warehouse import Warehouse


class ProactiveSettings(Settings, Config):
    """``Settings`` as Dagster config: the same fields and validation, shown in the UI's resource view."""


class ProactiveResource(ConfigurableResource):
    """Where data lives and how to treat it; S3 clients come from dagster-aws (standard endpoint/region config)."""

    settings: ProactiveSettings
    s3: S3Resource

    @classmethod
    def from_settings(cls, settings: Settings) -> "ProactiveResource":
        return cls(settings=ProactiveSettings(**settings.model_dump()), s3=S3Resource())

    def _client(self, uri: str) -> Any:
        return self.s3.get_client() if uri.startswith("s3://") else None

    def store(self, uri: str, must_exist: bool = True) -> ObjectStore:
        """An object store over ``uri`` (a local folder or ``s3://bucket/prefix``)."""
        return open_store(uri, s3_client=self._client(uri), must_exist=must_exist)

    def warehouse(self) -> Warehouse:
        return Warehouse(self.store(self.settings.warehouse, must_exist=False))

    def sqs_client(self) -> Any:
        """A boto3 SQS client in the queue's region (read from its URL when it is an AWS one)."""
        import boto3

        region = sqs_region(self.settings.sqs_queue_url or "")
        return boto3.client("sqs", region_name=region) if region else boto3.client("sqs")

    def sns_client(self) -> Any:
        """A boto3 SNS client in the topic's region, making one attempt per call (``SnsSink`` retries)."""
        from proactive_assets.core.publish import sns_client

        topic = self.settings.sns_topic_arn or ""
        region = topic.split(":")[3] if topic.count(":") >= 5 else None
        return sns_client(region or None)


def sqs_region(queue_url: str) -> str | None:
    """``https://sqs.eu-west-1.amazonaws.com/123/q`` -> ``eu-west-1``; None for other hosts (moto, VPC endpoints)."""
    import re

    match = re.match(
        r"^https?://(?:sqs[.-](?P<a>[a-z0-9-]+)|(?P<b>[a-z0-9-]+)\.queue)\.amazonaws\.com(?:\.cn)?/", queue_url
    )
    return (match["a"] or match["b"]) if match else None
