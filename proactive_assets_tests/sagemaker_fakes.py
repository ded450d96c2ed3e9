"""Shared pieces of the SageMaker backend tests: constants, moto server clients, canned results, fakes."""

import json
from typing import Any

import boto3
import requests
from botocore.exceptions import ClientError

from proactive_assets.core.backends.sagemaker.training_data import parse_s3_uri

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
BUCKET = "proactive-artifacts"
HYPER = {
    "num_entity_vectors": "20000",
    "vector_dim": "128",
    "random_negative_sampling_rate": "5",
    "mini_batch_size": "1000",
    "epochs": "5",
    "learning_rate": "0.01",
}
IMAGE = "382416733822.dkr.ecr.us-east-1.amazonaws.com/ipinsights:1"


def server_client(url: str, service: str) -> Any:
    """A boto3 client for ``service`` on the moto server at ``url``."""
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def post_results(url: str, bodies: list[Any]) -> None:
    """Queue canned InvokeEndpoint responses, consumed one per distinct request."""
    results = [{"Body": json.dumps(b), "ContentType": "application/json"} for b in bodies]
    response = requests.post(f"{url}/moto-api/static/sagemaker/endpoint-results", json={"results": results}, timeout=10)
    response.raise_for_status()


def predictions(values: list[float]) -> dict[str, Any]:
    """An endpoint response body with these dot products."""
    return {"predictions": [{"dot_product": v} for v in values]}


class Proxy:
    """Delegates every call to a real (moto) client; subclasses override single operations."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class FakeClock:
    """Time that passes only when slept; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def client_error(code: str, message: str = "boom", status: int = 400, **extra: Any) -> ClientError:
    """The ClientError botocore raises for an InvokeEndpoint error response."""
    response = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    response.update(extra)
    return ClientError(response, "InvokeEndpoint")  # type: ignore[arg-type]


def read_s3_text(s3: Any, uri: str) -> str:
    """The text of the S3 object at ``uri``."""
    bucket, key = parse_s3_uri(uri)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
