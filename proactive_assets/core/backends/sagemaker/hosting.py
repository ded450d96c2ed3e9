"""Hosting on SageMaker: a trained artifact registered as a model, served on a real-time endpoint.

Models are metadata only (no cost): one per training job is kept, and batch transform jobs and
endpoint configs refer to them by name. An endpoint bills every hour it exists.
"""

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from proactive_assets.core.backends.sagemaker.errors import EndpointFailed
from proactive_assets.core.backends.sagemaker.jobs import (
    DEFAULT_INSTANCE_TYPE,
    Clock,
    Sleep,
    poll_until,
    require_role_arn,
)


def _is_not_found(error: ClientError) -> bool:
    err = error.response.get("Error", {})
    return err.get("Code") in ("ValidationException", "ResourceNotFound") and (
        "Could not find" in err.get("Message", "") or "does not exist" in err.get("Message", "")
    )


def create_model(
    sagemaker_client: Any,
    *,
    model_name: str,
    image_uri: str,
    model_artifact_uri: str,
    role_arn: str | None,
) -> str:
    """Register the trained artifact as a SageMaker model (idempotent: reuses an existing one)."""
    role_arn = require_role_arn(role_arn)
    try:
        sagemaker_client.describe_model(ModelName=model_name)
        return model_name
    except ClientError as error:
        if not _is_not_found(error):
            raise
    sagemaker_client.create_model(
        ModelName=model_name,
        PrimaryContainer={"Image": image_uri, "ModelDataUrl": model_artifact_uri},
        ExecutionRoleArn=role_arn,
    )
    return model_name


@dataclass(frozen=True)
class EndpointDeployment:
    """Result of ``deploy_endpoint``; ``action`` is created, updated, recreated or unchanged."""

    endpoint_name: str
    endpoint_config_name: str
    model_name: str
    action: str


_ENDPOINT_BUSY = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")


def deploy_endpoint(
    sagemaker_client: Any,
    *,
    endpoint_name: str,
    model_name: str,
    instance_type: str = DEFAULT_INSTANCE_TYPE,
    instance_count: int = 1,
    endpoint_config_name: str | None = None,
    image_uri: str | None = None,
    model_artifact_uri: str | None = None,
    role_arn: str | None = None,
    poll_interval: float = 30.0,
    timeout: float = 3600.0,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> EndpointDeployment:
    """Serve ``model_name`` on ``endpoint_name`` and wait until InService.

    Creates the model first when ``image_uri`` and ``model_artifact_uri`` are given. A new
    endpoint is created; an existing one is switched to the new config with ``update_endpoint``
    (no downtime); a Failed one cannot be updated, so it is deleted and recreated. An update that
    SageMaker rolls back (InService on the old config, FailureReason set) raises EndpointFailed.
    """
    if image_uri and model_artifact_uri:
        create_model(
            sagemaker_client,
            model_name=model_name,
            image_uri=image_uri,
            model_artifact_uri=model_artifact_uri,
            role_arn=role_arn,
        )
    config_name = endpoint_config_name or model_name
    try:
        sagemaker_client.describe_endpoint_config(EndpointConfigName=config_name)
    except ClientError as error:
        if not _is_not_found(error):
            raise
        sagemaker_client.create_endpoint_config(
            EndpointConfigName=config_name,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": model_name,
                    "InitialInstanceCount": instance_count,
                    "InstanceType": instance_type,
                    "InitialVariantWeight": 1.0,
                }
            ],
        )

    def describe() -> Mapping[str, Any] | None:
        try:
            return sagemaker_client.describe_endpoint(EndpointName=endpoint_name)
        except ClientError as error:
            if _is_not_found(error):
                return None
            raise

    wait_kwargs: dict[str, Any] = {
        "poll_interval": poll_interval,
        "timeout": timeout,
        "sleep": sleep,
        "clock": clock,
    }
    current = describe()
    if current is not None and current.get("EndpointStatus") in _ENDPOINT_BUSY:
        # An earlier deployment is still in flight; SageMaker refuses updates until it settles.
        current = poll_until(
            lambda: describe() or {"EndpointStatus": "Gone"},
            lambda d: d.get("EndpointStatus") not in _ENDPOINT_BUSY,
            what=f"endpoint {endpoint_name} (previous operation)",
            **wait_kwargs,
        )
        if current.get("EndpointStatus") == "Gone":
            current = None

    if current is None:
        action = "created"
        sagemaker_client.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=config_name)
    elif current.get("EndpointStatus") == "Failed":
        action = "recreated"
        sagemaker_client.delete_endpoint(EndpointName=endpoint_name)
        poll_until(
            lambda: describe() or {"EndpointStatus": "Gone"},
            lambda d: d.get("EndpointStatus") == "Gone",
            what=f"deletion of failed endpoint {endpoint_name}",
            **wait_kwargs,
        )
        sagemaker_client.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=config_name)
    elif current.get("EndpointConfigName") == config_name:
        action = "unchanged"
    else:
        action = "updated"
        sagemaker_client.update_endpoint(EndpointName=endpoint_name, EndpointConfigName=config_name)

    def finished(desc: Mapping[str, Any]) -> bool:
        status = desc.get("EndpointStatus")
        if status == "Failed":
            reason = desc.get("FailureReason") or "no FailureReason given"
            raise EndpointFailed(f"endpoint {endpoint_name} Failed: {reason}")
        if status != "InService":
            return False
        if desc.get("EndpointConfigName") == config_name:
            return True
        if desc.get("FailureReason"):
            raise EndpointFailed(
                f"update of endpoint {endpoint_name} to {config_name} was rolled back: {desc['FailureReason']}"
            )
        return False  # update accepted but not visible yet

    poll_until(
        lambda: describe() or {"EndpointStatus": "Missing"},
        finished,
        what=f"endpoint {endpoint_name}",
        **wait_kwargs,
    )
    return EndpointDeployment(
        endpoint_name=endpoint_name,
        endpoint_config_name=config_name,
        model_name=model_name,
        action=action,
    )


def endpoint_model_names(sagemaker_client: Any, endpoint_name: str) -> list[str]:
    """Models currently served by an endpoint (via its endpoint config)."""
    endpoint = sagemaker_client.describe_endpoint(EndpointName=endpoint_name)
    config = sagemaker_client.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    return [v["ModelName"] for v in config.get("ProductionVariants", []) if "ModelName" in v]
