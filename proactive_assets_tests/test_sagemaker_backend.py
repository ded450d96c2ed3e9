"""SageMaker backend against moto: in-process ``mock_aws`` for control-plane calls and S3, and a
``ThreadedMotoServer`` on 127.0.0.1 for ``invoke_endpoint`` with canned results.

Moto has no UpdateEndpoint and always reports jobs Completed, so updates, failures and slow
jobs are exercised with thin client wrappers that delegate everything else to moto.
"""

import csv
import io
import json
import math
from typing import Any

import boto3
import numpy as np
import pytest
import requests
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import Stubber
from moto import mock_aws

from proactive_assets.core import sagemaker_backend as smb

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


@pytest.fixture(autouse=True)
def _dummy_credentials(aws_env: None) -> None:
    """Every test here runs with conftest's dummy credentials."""


@pytest.fixture
def server_url(moto_server: str) -> str:
    requests.post(f"{moto_server}/moto-api/reset", timeout=10).raise_for_status()
    return moto_server


def server_client(url: str, service: str) -> Any:
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
    return {"predictions": [{"dot_product": v} for v in values]}


class Proxy:
    """Delegates every call to a real (moto) client; subclasses override single operations."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def client_error(code: str, message: str = "boom", status: int = 400, **extra: Any) -> ClientError:
    response = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    response.update(extra)
    return ClientError(response, "InvokeEndpoint")  # type: ignore[arg-type]


def read_s3_text(s3: Any, uri: str) -> str:
    bucket, key = smb.parse_s3_uri(uri)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")


# ---------------------------------------------------------------------------------------------
# CSV preparation and upload


def test_prepare_pairs_ipv4_only_and_escaping() -> None:
    entities = [
        "arn:aws:iam::1:user/alice",
        "arn:aws:sts::1:assumed-role/r,x/s%1",
        "arn:aws:iam::1:user/bob",
        "arn:aws:iam::1:user/carol",
        "",
        "arn:aws:iam::1:user/dave",
    ]
    ips = ["075.050.255.67", "10.0.0.1", "2001:db8::1", "::ffff:192.0.2.9", "10.0.0.2", "AWS Internal"]
    prepared = smb.prepare_pairs(entities, ips)
    assert prepared.lines == [
        "arn:aws:iam::1:user/alice,75.50.255.67",  # leading zeros read as decimal
        "arn:aws:sts::1:assumed-role/r%2Cx/s%251,10.0.0.1",
        "arn:aws:iam::1:user/carol,192.0.2.9",  # IPv4-mapped IPv6 becomes IPv4
    ]
    assert prepared.row_index.tolist() == [0, 1, 3]
    assert prepared.skipped_ipv6 == 1
    assert prepared.skipped_invalid == 2  # empty entity, non-address source
    assert prepared.escaped_entities == 1
    # Each line is exactly two CSV fields, whatever the entity held.
    for row in csv.reader(io.StringIO("\n".join(prepared.lines))):
        assert len(row) == 2


def test_encode_entity_is_injective_on_tricky_names() -> None:
    names = ["a,b", "a%2Cb", 'q"x', "line\nbreak", "cr\rx", "plain"]
    encoded = [smb.encode_entity(n) for n in names]
    assert len(set(encoded)) == len(names)
    assert all("," not in e and '"' not in e and "\n" not in e and "\r" not in e for e in encoded)
    assert smb.encode_entity("plain") == "plain"


@mock_aws
def test_upload_training_csv_writes_headerless_ipv4_rows() -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    entities = ["u1", "u2", "u,3", "u4"]
    ips = ["1.2.3.4", "fe80::1", "5.6.7.8", "9.9.9.9"]
    result = smb.upload_training_csv(s3, f"s3://{BUCKET}/data/v1/", entities, ips, shuffle_seed=None)
    assert result.s3_uri == f"s3://{BUCKET}/data/v1/train.csv"
    assert (result.rows, result.skipped_ipv6, result.skipped_invalid, result.escaped_entities) == (3, 1, 0, 1)
    text = read_s3_text(s3, result.s3_uri)
    assert text == "u1,1.2.3.4\nu%2C3,5.6.7.8\nu4,9.9.9.9\n"
    head = s3.head_object(Bucket=BUCKET, Key="data/v1/train.csv")
    assert head["ContentType"] == "text/csv"


@mock_aws
def test_upload_training_csv_repeats_counts_and_shuffles_deterministically() -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    entities = [f"user{i}" for i in range(50)]
    ips = [f"10.0.{i}.1" for i in range(50)]
    counts = [i % 3 for i in range(50)]  # zero drops the row
    first = smb.upload_training_csv(s3, f"s3://{BUCKET}/a", entities, ips, counts=counts, shuffle_seed=7)
    second = smb.upload_training_csv(s3, f"s3://{BUCKET}/b", entities, ips, counts=counts, shuffle_seed=7)
    text_a = read_s3_text(s3, first.s3_uri)
    assert text_a == read_s3_text(s3, second.s3_uri)
    rows = text_a.splitlines()
    assert first.rows == len(rows) == sum(counts)
    assert sorted(rows) == sorted(f"user{i},10.0.{i}.1" for i in range(50) for _ in range(counts[i]))
    assert rows != sorted(rows, key=lambda r: int(r.split(",")[0][4:]))  # actually shuffled


# ---------------------------------------------------------------------------------------------
# Image, names, configuration errors


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "ap-southeast-2", "cn-north-1", "us-gov-west-1"])
def test_image_uri_from_sdk_matches_fallback(region: str) -> None:
    from sagemaker.core import image_uris

    assert smb.ipinsights_image_uri(region) == image_uris.retrieve("ipinsights", region)
    assert smb.fallback_ipinsights_image_uri(region) == image_uris.retrieve("ipinsights", region)


def test_image_uri_unknown_region_is_clear() -> None:
    with pytest.raises(ValueError, match="mars-north-1"):
        smb.fallback_ipinsights_image_uri("mars-north-1")


def test_resource_names_are_valid_and_unique_per_run() -> None:
    from datetime import UTC, datetime

    name = smb.make_resource_name("proactive-ipinsights", "2024-01-15 / daily:v3" * 5)
    assert len(name) <= 63
    assert all(c.isalnum() or c == "-" for c in name) and name[0].isalnum() and name[-1].isalnum()
    a = smb.make_resource_name("p", "v", now=datetime(2024, 1, 1, 0, 0, 0, 1000, tzinfo=UTC))
    b = smb.make_resource_name("p", "v", now=datetime(2024, 1, 1, 0, 0, 0, 2000, tzinfo=UTC))
    assert a != b


def test_missing_role_and_artifacts_name_the_variables() -> None:
    with pytest.raises(ValueError, match="SAGEMAKER_ROLE_ARN"):
        smb.SageMakerIPInsights.from_env({"PROACTIVE_SAGEMAKER_ARTIFACTS_URI": f"s3://{BUCKET}/x"})
    with pytest.raises(ValueError, match="PROACTIVE_SAGEMAKER_ARTIFACTS_URI"):
        smb.SageMakerIPInsights.from_env({"SAGEMAKER_ROLE_ARN": ROLE})
    with pytest.raises(ValueError, match="SAGEMAKER_ROLE_ARN"):
        smb.start_training_job(
            object(),
            job_name="j",
            role_arn=None,
            hyperparameters=HYPER,
            train_s3_uri=f"s3://{BUCKET}/t.csv",
            output_s3_uri=f"s3://{BUCKET}/out",
            image_uri=IMAGE,
        )
    with pytest.raises(ValueError, match="PROACTIVE_SAGEMAKER_ARTIFACTS_URI"):
        smb.start_training_job(
            object(),
            job_name="j",
            role_arn=ROLE,
            hyperparameters=HYPER,
            train_s3_uri=f"s3://{BUCKET}/t.csv",
            output_s3_uri="",
            image_uri=IMAGE,
        )


def test_required_hyperparameters_are_checked() -> None:
    with pytest.raises(ValueError, match="vector_dim"):
        smb.normalise_hyperparameters({"num_entity_vectors": 10})
    assert smb.normalise_hyperparameters({"num_entity_vectors": 10, "vector_dim": 8, "x": True}) == {
        "num_entity_vectors": "10",
        "vector_dim": "8",
        "x": "true",
    }


# ---------------------------------------------------------------------------------------------
# Training job


@mock_aws
def test_training_job_uses_image_hyperparameters_and_csv_channels() -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    result = smb.start_training_job(
        sm,
        job_name="ipinsights-test-1",
        role_arn=ROLE,
        hyperparameters={**HYPER, "epochs": 5},
        train_s3_uri=f"s3://{BUCKET}/data/train.csv",
        validation_s3_uri=f"s3://{BUCKET}/data/validation.csv",
        output_s3_uri=f"s3://{BUCKET}/models",
        region=REGION,
        instance_type="ml.m5.xlarge",
        sleep=lambda _: None,
    )
    assert result.job_name == "ipinsights-test-1"
    assert result.model_artifact_uri == f"s3://{BUCKET}/models/ipinsights-test-1/output/model.tar.gz"
    job = sm.describe_training_job(TrainingJobName="ipinsights-test-1")
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert job["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert job["RoleArn"] == ROLE
    assert job["HyperParameters"] == {**HYPER, "epochs": "5"}
    channels = {c["ChannelName"]: c for c in job["InputDataConfig"]}
    assert set(channels) == {"train", "validation"}
    for name, file in (("train", "train.csv"), ("validation", "validation.csv")):
        assert channels[name]["ContentType"] == "text/csv"
        assert channels[name]["InputMode"] == "File"
        assert channels[name]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/data/{file}"
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/models"
    assert job["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"


class StatusSequence(Proxy):
    """describe_training_job walks through given statuses (moto itself is always Completed)."""

    def __init__(self, inner: Any, statuses: list[dict[str, Any]]) -> None:
        super().__init__(inner)
        self.statuses = statuses
        self.stopped: list[str] = []

    def describe_training_job(self, TrainingJobName: str) -> dict[str, Any]:
        real = self.inner.describe_training_job(TrainingJobName=TrainingJobName)
        return {**real, **(self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0])}

    def stop_training_job(self, TrainingJobName: str) -> None:
        self.stopped.append(TrainingJobName)


def _train(sm: Any, clock: FakeClock, **kwargs: Any) -> smb.TrainingJobResult:
    return smb.start_training_job(
        sm,
        job_name="job-x",
        role_arn=ROLE,
        hyperparameters=HYPER,
        train_s3_uri=f"s3://{BUCKET}/t.csv",
        output_s3_uri=f"s3://{BUCKET}/models",
        image_uri=IMAGE,
        poll_interval=10,
        sleep=clock.sleep,
        clock=clock.time,
        **kwargs,
    )


@mock_aws
def test_training_job_polls_until_complete_then_fails_with_reason() -> None:
    clock = FakeClock()
    sm = StatusSequence(
        boto3.client("sagemaker", region_name=REGION),
        [{"TrainingJobStatus": "InProgress"}, {"TrainingJobStatus": "InProgress"}, {"TrainingJobStatus": "Completed"}],
    )
    assert _train(sm, clock).model_artifact_uri.endswith("/job-x/output/model.tar.gz")
    assert clock.sleeps == [10, 10]

    failing = StatusSequence(
        boto3.client("sagemaker", region_name=REGION),
        [
            {"TrainingJobStatus": "InProgress"},
            {"TrainingJobStatus": "Failed", "FailureReason": "ClientError: No training data in channel train"},
        ],
    )
    with pytest.raises(smb.TrainingJobFailed, match="job-y Failed: ClientError: No training data"):
        smb.start_training_job(
            failing,
            job_name="job-y",
            role_arn=ROLE,
            hyperparameters=HYPER,
            train_s3_uri=f"s3://{BUCKET}/t.csv",
            output_s3_uri=f"s3://{BUCKET}/models",
            image_uri=IMAGE,
            sleep=lambda _: None,
        )


@mock_aws
def test_training_job_timeout_stops_the_job() -> None:
    clock = FakeClock()
    sm = StatusSequence(boto3.client("sagemaker", region_name=REGION), [{"TrainingJobStatus": "InProgress"}])
    with pytest.raises(smb.SageMakerTimeout, match="job-x"):
        _train(sm, clock, timeout=35)
    assert sm.stopped == ["job-x"]
    assert clock.now >= 35


# ---------------------------------------------------------------------------------------------
# Endpoint


def _deploy(sm: Any, model: str, artifact: str = f"s3://{BUCKET}/m/model.tar.gz", **kwargs: Any) -> Any:
    return smb.deploy_endpoint(
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
    assert smb.endpoint_model_names(sm, "ipinsights-ep") == ["model-v1"]
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
    with pytest.raises(smb.EndpointFailed, match="rolled back: Image pull failed"):
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
    assert smb.endpoint_model_names(inner, "ipinsights-ep") == ["model-v2"]

    class NeverHealthy(Proxy):
        def describe_endpoint(self, EndpointName: str) -> dict[str, Any]:
            real = self.inner.describe_endpoint(EndpointName=EndpointName)
            return {**real, "EndpointStatus": "Failed", "FailureReason": "ResourceLimitExceeded"}

    with pytest.raises(smb.EndpointFailed, match="other-ep Failed: ResourceLimitExceeded"):
        smb.deploy_endpoint(NeverHealthy(inner), endpoint_name="other-ep", model_name="model-v1", sleep=lambda _: None)


# ---------------------------------------------------------------------------------------------
# Scoring on a moto server


class RecordingRuntime(Proxy):
    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.bodies: list[bytes] = []

    def invoke_endpoint(self, **kwargs: Any) -> Any:
        self.bodies.append(kwargs["Body"])
        assert kwargs["ContentType"] == "text/csv" and kwargs["Accept"] == "application/json"
        return self.inner.invoke_endpoint(**kwargs)


def test_score_pairs_splits_requests_and_reassembles_in_order(server_url: str) -> None:
    entities = [f"arn:aws:iam::1:user/u{i}" for i in range(10)]
    ips = [f"10.0.0.{i}" for i in range(10)]
    ips[4] = "2001:db8::4"  # skipped: IPv6
    entities[7] = entities[2]  # repeated pair is sent once
    ips[7] = ips[2]
    line_size = len(f"{entities[0]},{ips[0]}")
    # Unique sendable rows: 0,1,2,3,5,6,8,9 (8 rows); three per request at most by size.
    post_results(server_url, [predictions([0.0, 1.0, 2.0]), predictions([3.0, 5.0, 6.0]), predictions([8.0, 9.0])])
    runtime = RecordingRuntime(server_client(server_url, "sagemaker-runtime"))
    scores = smb.score_pairs(
        runtime, "ipinsights-ep", entities, ips, max_payload_bytes=3 * line_size + 2, sleep=lambda _: None
    )
    assert scores.requests == 3 == len(runtime.bodies)
    assert all(len(body) <= 3 * line_size + 2 for body in runtime.bodies)
    assert runtime.bodies[0].decode().splitlines() == [f"{entities[i]},{ips[i]}" for i in (0, 1, 2)]
    assert scores.skipped_ipv6 == 1
    expected = [0.0, 1.0, 2.0, 3.0, math.nan, 5.0, 6.0, 2.0, 8.0, 9.0]
    np.testing.assert_array_equal(scores.dot_product, np.array(expected))


def test_score_pairs_respects_row_cap(server_url: str) -> None:
    post_results(server_url, [predictions([1.0, 2.0]), predictions([3.0])])
    runtime = RecordingRuntime(server_client(server_url, "sagemaker-runtime"))
    scores = smb.score_pairs(runtime, "ep", ["a", "b", "c"], ["1.1.1.1", "2.2.2.2", "3.3.3.3"], max_rows_per_request=2)
    assert [len(b.splitlines()) for b in runtime.bodies] == [2, 1]
    assert scores.dot_product.tolist() == [1.0, 2.0, 3.0]


def test_score_pairs_checks_prediction_count(server_url: str) -> None:
    post_results(server_url, [predictions([1.0])])
    runtime = server_client(server_url, "sagemaker-runtime")
    with pytest.raises(smb.SageMakerScoringError, match=r"'ep-count' returned 1 predictions for 2 rows"):
        smb.score_pairs(runtime, "ep-count", ["a", "b"], ["1.1.1.1", "2.2.2.2"])


def test_score_pairs_rejects_unreadable_response(server_url: str) -> None:
    post_results(server_url, [{"unexpected": True}])
    with pytest.raises(smb.SageMakerScoringError, match="unreadable response"):
        smb.score_pairs(server_client(server_url, "sagemaker-runtime"), "ep", ["a"], ["1.1.1.1"])


class FlakyRuntime(Proxy):
    """Raises the given errors first, then delegates to the moto server."""

    def __init__(self, inner: Any, errors: list[BaseException]) -> None:
        super().__init__(inner)
        self.errors = errors
        self.calls = 0

    def invoke_endpoint(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.inner.invoke_endpoint(**kwargs)


def test_score_pairs_retries_throttling_with_backoff(server_url: str) -> None:
    post_results(server_url, [predictions([0.5, -1.5])])
    runtime = FlakyRuntime(
        server_client(server_url, "sagemaker-runtime"),
        [client_error("ThrottlingException", "Rate exceeded"), client_error("ThrottlingException", "Rate exceeded")],
    )
    clock = FakeClock()
    scores = smb.score_pairs(runtime, "ep", ["a", "b"], ["1.1.1.1", "2.2.2.2"], backoff_base=1.0, sleep=clock.sleep)
    assert scores.dot_product.tolist() == [0.5, -1.5]
    assert runtime.calls == 3
    assert len(clock.sleeps) == 2
    assert 0.5 <= clock.sleeps[0] <= 1.0 and 1.0 <= clock.sleeps[1] <= 2.0  # exponential, jittered


def test_score_pairs_retries_connection_errors_and_5xx(server_url: str) -> None:
    post_results(server_url, [predictions([7.0])])
    runtime = FlakyRuntime(
        server_client(server_url, "sagemaker-runtime"),
        [
            EndpointConnectionError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com"),
            client_error("ServiceUnavailable", status=503),
            client_error("InternalFailure", status=500),
        ],
    )
    scores = smb.score_pairs(runtime, "ep", ["a"], ["1.1.1.1"], sleep=lambda _: None)
    assert scores.dot_product.tolist() == [7.0] and runtime.calls == 4


def test_score_pairs_persistent_failure_names_the_endpoint() -> None:
    runtime = FlakyRuntime(object(), [client_error("ThrottlingException", "Rate exceeded") for _ in range(10)])
    with pytest.raises(smb.SageMakerScoringError, match=r"endpoint 'prod-ep'.*after 3 attempts.*ThrottlingException"):
        smb.score_pairs(runtime, "prod-ep", ["a"], ["1.1.1.1"], max_attempts=3, sleep=lambda _: None)
    assert runtime.calls == 3

    not_retried = FlakyRuntime(object(), [client_error("ValidationError", "Endpoint prod-ep not found")])
    with pytest.raises(smb.SageMakerScoringError, match=r"'prod-ep'.*not retried: ValidationError"):
        smb.score_pairs(not_retried, "prod-ep", ["a"], ["1.1.1.1"], sleep=lambda _: None)
    assert not_retried.calls == 1


def test_model_error_retried_only_for_5xx_as_botocore_parses_it() -> None:
    runtime = boto3.client("sagemaker-runtime", region_name=REGION)
    body = json.dumps(predictions([1.25])).encode()
    with Stubber(runtime) as stub:
        stub.add_client_error(
            "invoke_endpoint",
            service_error_code="ModelError",
            http_status_code=424,
            modeled_fields={"OriginalStatusCode": 503, "OriginalMessage": "worker died"},
        )
        stub.add_response("invoke_endpoint", {"Body": io.BytesIO(body), "ContentType": "application/json"})
        scores = smb.score_pairs(runtime, "ep", ["a"], ["1.1.1.1"], sleep=lambda _: None)
    assert scores.dot_product.tolist() == [1.25]

    with Stubber(runtime) as stub:
        stub.add_client_error(
            "invoke_endpoint",
            service_error_code="ModelError",
            http_status_code=424,
            modeled_fields={"OriginalStatusCode": 400, "OriginalMessage": "bad csv"},
        )
        with pytest.raises(smb.SageMakerScoringError, match="not retried: ModelError"):
            smb.score_pairs(runtime, "ep", ["a"], ["1.1.1.1"], sleep=lambda _: None)


def test_score_pairs_with_nothing_to_send_makes_no_request() -> None:
    scores = smb.score_pairs(FlakyRuntime(object(), []), "ep", ["a", "b"], ["::1", "nope"])
    assert scores.requests == 0 and scores.skipped_ipv6 == 1 and scores.skipped_invalid == 1
    assert np.isnan(scores.dot_product).all()


# ---------------------------------------------------------------------------------------------
# The backend object, end to end on the moto server; batch transform in process


def test_backend_trains_deploys_and_scores_on_moto_server(server_url: str) -> None:
    s3 = server_client(server_url, "s3")
    s3.create_bucket(Bucket=BUCKET)
    backend = smb.SageMakerIPInsights(
        role_arn=ROLE,
        artifacts_uri=f"s3://{BUCKET}/ipinsights",
        sagemaker_client=server_client(server_url, "sagemaker"),
        runtime_client=server_client(server_url, "sagemaker-runtime"),
        s3_client=s3,
        endpoint_name="proactive-ipinsights",
        sleep=lambda _: None,
    )
    entities = ["alice", "alice", "bob", "carol"]
    ips = ["1.2.3.4", "2001:db8::1", "5.6.7.8", "9.10.11.12"]
    meta = backend.train(entities, ips, HYPER, "2024-01-15")
    assert meta["skipped_ipv6"] == 1 and meta["training_rows"] == 3
    assert meta["endpoint_name"] == "proactive-ipinsights" and meta["endpoint_action"] == "created"
    assert meta["image_uri"] == IMAGE and meta["hyperparameters"] == HYPER
    assert meta["training_job_name"].startswith("proactive-ipinsights-2024-01-15-")
    assert meta["model_artifact_uri"] == (
        f"s3://{BUCKET}/ipinsights/models/{meta['training_job_name']}/output/model.tar.gz"
    )
    assert sorted(read_s3_text(s3, meta["training_data_uri"]).splitlines()) == [
        "alice,1.2.3.4",
        "bob,5.6.7.8",
        "carol,9.10.11.12",
    ]

    post_results(server_url, [predictions([3.5, -2.0])])
    scores = backend.score(
        ["alice", "mallory", "bob"], ["1.2.3.4", "203.0.113.9", "::1"], model_name=meta["model_name"]
    )
    np.testing.assert_array_equal(scores.dot_product, np.array([3.5, -2.0, np.nan]))
    assert scores.skipped_ipv6 == 1
    with pytest.raises(smb.SageMakerScoringError, match=r"serves .* not 'some-older-model'"):
        backend.score(["alice"], ["1.2.3.4"], model_name="some-older-model")


def test_backend_refuses_to_train_on_no_ipv4_pairs(server_url: str) -> None:
    s3 = server_client(server_url, "s3")
    s3.create_bucket(Bucket=BUCKET)
    backend = smb.SageMakerIPInsights(
        role_arn=ROLE,
        artifacts_uri=f"s3://{BUCKET}/ipinsights",
        sagemaker_client=server_client(server_url, "sagemaker"),
        runtime_client=server_client(server_url, "sagemaker-runtime"),
        s3_client=s3,
        image_uri=IMAGE,
    )
    with pytest.raises(ValueError, match=r"no IPv4 pairs.*1 IPv6"):
        backend.train(["a"], ["::2"], HYPER, "v1")


class TransformWritesOutput(Proxy):
    """Moto accepts transform jobs but writes nothing: fake the algorithm's JSON Lines output."""

    def __init__(self, inner: Any, s3: Any) -> None:
        super().__init__(inner)
        self.s3 = s3
        self.requests: list[dict[str, Any]] = []

    def create_transform_job(self, **kwargs: Any) -> Any:
        self.requests.append(kwargs)
        response = self.inner.create_transform_job(**kwargs)
        input_uri = kwargs["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
        lines = read_s3_text(self.s3, input_uri).splitlines()
        out = "".join(json.dumps({"dot_product": float(len(line))}) + "\n" for line in lines)
        bucket, key = smb.parse_s3_uri(smb.join_s3_uri(kwargs["TransformOutput"]["S3OutputPath"], "pairs.csv.out"))
        self.s3.put_object(Bucket=bucket, Key=key, Body=out.encode())
        return response


@mock_aws
def test_backend_batch_transform_scores_with_the_requested_model() -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    sm = TransformWritesOutput(boto3.client("sagemaker", region_name=REGION), s3)
    backend = smb.SageMakerIPInsights(
        role_arn=ROLE,
        artifacts_uri=f"s3://{BUCKET}/ipinsights",
        sagemaker_client=sm,
        runtime_client=object(),
        s3_client=s3,
        scoring_mode="batch",
        image_uri=IMAGE,
        sleep=lambda _: None,
    )
    meta = backend.train(["alice", "bob"], ["1.2.3.4", "5.6.7.8"], HYPER, "2024-01-16")
    assert meta["endpoint_name"] is None  # batch mode deploys nothing that bills while idle
    assert sm.list_endpoints()["Endpoints"] == []

    entities = ["alice", "bob", "alice", "carol"]
    ips = ["1.2.3.4", "10.0.0.1", "1.2.3.4", "2001:db8::7"]
    scores = backend.score(entities, ips, model_name=meta["model_name"])
    (request,) = sm.requests
    assert request["ModelName"] == meta["model_name"]
    assert request["TransformInput"]["ContentType"] == "text/csv"
    assert request["TransformInput"]["SplitType"] == "Line"
    assert request["TransformOutput"]["Accept"] == "application/jsonlines"
    expected = [len("alice,1.2.3.4"), len("bob,10.0.0.1"), len("alice,1.2.3.4"), math.nan]
    np.testing.assert_array_equal(scores.dot_product, np.array(expected, dtype=float))
    assert scores.skipped_ipv6 == 1
