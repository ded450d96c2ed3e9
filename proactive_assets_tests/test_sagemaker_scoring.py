"""SageMaker backend, scoring side: ``invoke_endpoint`` against a ``ThreadedMotoServer`` on 127.0.0.1
with canned results (batching, retries, bad responses), and ``SageMakerIPInsights`` end to end;
batch transform in process with ``mock_aws``, with the algorithm's output faked.
"""

import io
import json
import math
from typing import Any

import boto3
import numpy as np
import pytest
import requests
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber
from moto import mock_aws

from proactive_assets.core.backends.sagemaker.client import SageMakerIPInsights
from proactive_assets.core.backends.sagemaker.errors import SageMakerScoringError
from proactive_assets.core.backends.sagemaker.invoke import score_pairs
from proactive_assets.core.backends.sagemaker.training_data import join_s3_uri, parse_s3_uri
from proactive_assets_tests.sagemaker_fakes import (
    BUCKET,
    HYPER,
    IMAGE,
    REGION,
    ROLE,
    FakeClock,
    Proxy,
    client_error,
    post_results,
    predictions,
    read_s3_text,
    server_client,
)


@pytest.fixture(autouse=True)
def _dummy_credentials(aws_env: None) -> None:
    """Every test here runs with conftest's dummy credentials."""


@pytest.fixture
def server_url(moto_server: str) -> str:
    requests.post(f"{moto_server}/moto-api/reset", timeout=10).raise_for_status()
    return moto_server


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
    scores = score_pairs(
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
    scores = score_pairs(runtime, "ep", ["a", "b", "c"], ["1.1.1.1", "2.2.2.2", "3.3.3.3"], max_rows_per_request=2)
    assert [len(b.splitlines()) for b in runtime.bodies] == [2, 1]
    assert scores.dot_product.tolist() == [1.0, 2.0, 3.0]


def test_score_pairs_checks_prediction_count(server_url: str) -> None:
    post_results(server_url, [predictions([1.0])])
    runtime = server_client(server_url, "sagemaker-runtime")
    with pytest.raises(SageMakerScoringError, match=r"'ep-count' returned 1 predictions for 2 rows"):
        score_pairs(runtime, "ep-count", ["a", "b"], ["1.1.1.1", "2.2.2.2"])


def test_score_pairs_rejects_unreadable_response(server_url: str) -> None:
    post_results(server_url, [{"unexpected": True}])
    with pytest.raises(SageMakerScoringError, match="unreadable response"):
        score_pairs(server_client(server_url, "sagemaker-runtime"), "ep", ["a"], ["1.1.1.1"])


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
    scores = score_pairs(runtime, "ep", ["a", "b"], ["1.1.1.1", "2.2.2.2"], backoff_base=1.0, sleep=clock.sleep)
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
    scores = score_pairs(runtime, "ep", ["a"], ["1.1.1.1"], sleep=lambda _: None)
    assert scores.dot_product.tolist() == [7.0] and runtime.calls == 4


def test_score_pairs_persistent_failure_names_the_endpoint() -> None:
    runtime = FlakyRuntime(object(), [client_error("ThrottlingException", "Rate exceeded") for _ in range(10)])
    with pytest.raises(SageMakerScoringError, match=r"endpoint 'prod-ep'.*after 3 attempts.*ThrottlingException"):
        score_pairs(runtime, "prod-ep", ["a"], ["1.1.1.1"], max_attempts=3, sleep=lambda _: None)
    assert runtime.calls == 3

    not_retried = FlakyRuntime(object(), [client_error("ValidationError", "Endpoint prod-ep not found")])
    with pytest.raises(SageMakerScoringError, match=r"'prod-ep'.*not retried: ValidationError"):
        score_pairs(not_retried, "prod-ep", ["a"], ["1.1.1.1"], sleep=lambda _: None)
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
        scores = score_pairs(runtime, "ep", ["a"], ["1.1.1.1"], sleep=lambda _: None)
    assert scores.dot_product.tolist() == [1.25]

    with Stubber(runtime) as stub:
        stub.add_client_error(
            "invoke_endpoint",
            service_error_code="ModelError",
            http_status_code=424,
            modeled_fields={"OriginalStatusCode": 400, "OriginalMessage": "bad csv"},
        )
        with pytest.raises(SageMakerScoringError, match="not retried: ModelError"):
            score_pairs(runtime, "ep", ["a"], ["1.1.1.1"], sleep=lambda _: None)


def test_score_pairs_with_nothing_to_send_makes_no_request() -> None:
    scores = score_pairs(FlakyRuntime(object(), []), "ep", ["a", "b"], ["::1", "nope"])
    assert scores.requests == 0 and scores.skipped_ipv6 == 1 and scores.skipped_invalid == 1
    assert np.isnan(scores.dot_product).all()


# ---------------------------------------------------------------------------------------------
# The backend object, end to end on the moto server; batch transform in process


def test_backend_trains_deploys_and_scores_on_moto_server(server_url: str) -> None:
    s3 = server_client(server_url, "s3")
    s3.create_bucket(Bucket=BUCKET)
    backend = SageMakerIPInsights(
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
    with pytest.raises(SageMakerScoringError, match=r"serves .* not 'some-older-model'"):
        backend.score(["alice"], ["1.2.3.4"], model_name="some-older-model")


def test_backend_refuses_to_train_on_no_ipv4_pairs(server_url: str) -> None:
    s3 = server_client(server_url, "s3")
    s3.create_bucket(Bucket=BUCKET)
    backend = SageMakerIPInsights(
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
        bucket, key = parse_s3_uri(join_s3_uri(kwargs["TransformOutput"]["S3OutputPath"], "pairs.csv.out"))
        self.s3.put_object(Bucket=bucket, Key=key, Body=out.encode())
        return response


@mock_aws
def test_backend_batch_transform_scores_with_the_requested_model() -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    sm = TransformWritesOutput(boto3.client("sagemaker", region_name=REGION), s3)
    backend = SageMakerIPInsights(
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
