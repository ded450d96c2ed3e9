"""SageMaker backend, hosting side, against in-process moto (``mock_aws``): models and endpoints.

Moto has no UpdateEndpoint and endpoints are always healthy, so updates, rollbacks and failed
endpoints are exercised with thin client wrappers that delegate everything else to moto.
"""

from typing import Any

import boto3
import pytest
from moto import mock_aws

from proactive_assets.core.backends.sagemaker.errors import EndpointFailed
from proactive_assets.core.backends.sagemaker.hosting import deploy_endpoint, endpoint_model_names
from proactive_assets_tests.sagemaker_fakes import BUCKET, IMAGE, REGION, ROLE, Proxy


@pytest.fixture(autouse=True)
def _dummy_credentials(aws_env: None) -> None:
    """Every test here runs with conftest's dummy credentials."""


def _deploy(sm: Any, model: str, artifact: str = f"s3://{BUCKET}/m/model.tar.gz", **kwargs: Any) -> Any:
    return deploy_endpoint(
        sm,
        endpoint_name="ipinsights-ep",
        model_name=model,
        image_uri=IMAGE,
        model_artifact_uri=artifact,
        role_arn=ROLE,
        instance_type="ml.m5.large",
        poll_interval=5,
        sleep=lambda _: None,
        **kwargs,
    )


@mock_aws
def test_deploy_creates_model_config_and_endpoint() -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    deployment = _deploy(sm, "model-v1")
    assert deployment.action == "created"
    model = sm.describe_model(ModelName="model-v1")
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"s3://{BUCKET}/m/model.tar.gz"
    assert model["ExecutionRoleArn"] == ROLE
    config = sm.describe_endpoint_config(EndpointConfigName=deployment.endpoint_config_name)
    assert config["ProductionVariants"][0]["ModelName"] == "model-v1"
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.large"
    endpoint = sm.describe_endpoint(EndpointName="ipinsights-ep")
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == deployment.endpoint_config_name
    assert endpoint_model_names(sm, "ipinsights-ep") == ["model-v1"]
    # Deploying the same model again changes nothing and creates no duplicates.
    assert _deploy(sm, "model-v1").action == "unchanged"
    assert len(sm.list_models()["Models"]) == 1


class UpdatingEndpoints(Proxy):
    """Adds UpdateEndpoint (missing in moto): Updating once, then the new config or a rollback."""

    def __init__(self, inner: Any, rollback_reason: str | None = None) -> None:
        super().__init__(inner)
        self.updates: list[tuple[str, str]] = []
        self.pending: str | None = None
        self.describes_since_update = 0
        self.rollback_reason = rollback_reason

    def update_endpoint(self, EndpointName: str, EndpointConfigName: str) -> dict[str, Any]:
        self.updates.append((EndpointName, EndpointConfigName))
        self.pending = EndpointConfigName
        return {"EndpointArn": "arn"}

    def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:
        real = dict(self.inner.describe_endpoint(EndpointName=EndpointName))
        if self.pending is None:
            return real
        self.describes_since_update += 1
        if self.describes_since_update == 1:
            return {**real, "EndpointStatus": "Updating"}
        if self.rollback_reason:
            return {**real, "EndpointStatus": "InService", "FailureReason": self.rollback_reason}
        return {**real, "EndpointStatus": "InService", "EndpointConfigName": self.pending}


@mock_aws
def test_deploy_updates_existing_endpoint_to_new_config() -> None:
    sm = UpdatingEndpoints(boto3.client("sagemaker", region_name=REGION))
    _deploy(sm, "model-v1")
    deployment = _deploy(sm, "model-v2", artifact=f"s3://{BUCKET}/m2/model.tar.gz")
    assert deployment.action == "updated"
    assert sm.updates == [("ipinsights-ep", deployment.endpoint_config_name)]
    assert sm.describes_since_update == 2  # waited through Updating
    config = sm.describe_endpoint_config(EndpointConfigName=deployment.endpoint_config_name)
    assert config["ProductionVariants"][0]["ModelName"] == "model-v2"


@mock_aws
def test_deploy_rolled_back_update_is_an_error() -> None:
    sm = UpdatingEndpoints(boto3.client("sagemaker", region_name=REGION), rollback_reason="Image pull failed")
    _deploy(sm, "model-v1")
    with pytest.raises(EndpointFailed, match="rolled back: Image pull failed"):
        _deploy(sm, "model-v2")


class FailedEndpoint(Proxy):
    """The existing endpoint is Failed; after our create it is healthy."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.deleted = False
        self.created_fresh = False

    def delete_endpoint(self, EndpointName: str) -> Any:
        self.deleted = True
        return self.inner.delete_endpoint(EndpointName=EndpointName)

    def create_endpoint(self, **kwargs: Any) -> Any:
        self.created_fresh = self.deleted
        return self.inner.create_endpoint(**kwargs)

    def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:
        real = self.inner.describe_endpoint(EndpointName=EndpointName)
        if self.deleted:
            return real
        return {**real, "EndpointStatus": "Failed", "FailureReason": "capacity"}


@mock_aws
def test_deploy_recreates_a_failed_endpoint_and_reports_create_failures() -> None:
    inner = boto3.client("sagemaker", region_name=REGION)
    _deploy(inner, "model-v1")
    sm = FailedEndpoint(inner)
    deployment = _deploy(sm, "model-v2")
    assert deployment.action == "recreated" and sm.deleted and sm.created_fresh
    assert endpoint_model_names(inner, "ipinsights-ep") == ["model-v2"]

    class NeverHealthy(Proxy):
        def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:
            real = self.inner.describe_endpoint(EndpointName=EndpointName)
            return {**real, "EndpointStatus": "Failed", "FailureReason": "ResourceLimitExceeded"}

    with pytest.raises(EndpointFailed, match="other-ep Failed: ResourceLimitExceeded"):
        deploy_endpoint(NeverHealthy(inner), endpoint_name="other-ep", model_name="model-v1", sleep=lambda _: None)
