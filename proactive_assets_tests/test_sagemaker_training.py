"""SageMaker backend, training side, against in-process moto (``mock_aws``): the training CSV, the
image, resource names and configuration errors, and the training job (polling, failure, timeout).

Moto always reports jobs Completed, so slow and failing jobs are exercised with a thin client
wrapper that delegates everything else to moto.
"""

import csv
import io
from typing import Any

import boto3
import pytest
from moto import mock_aws

from proactive_assets.core.backends.sagemaker.client import SageMakerIPInsights
from proactive_assets.core.backends.sagemaker.errors import SageMakerTimeout, TrainingJobFailed
from proactive_assets.core.backends.sagemaker.jobs import (
    TrainingJobResult,
    fallback_ipinsights_image_uri,
    ipinsights_image_uri,
    make_resource_name,
    normalise_hyperparameters,
    start_training_job,
)
from proactive_assets.core.backends.sagemaker.training_data import encode_entity, prepare_pairs, upload_training_csv
from proactive_assets_tests.sagemaker_fakes import BUCKET, HYPER, IMAGE, REGION, ROLE, FakeClock, Proxy, read_s3_text


@pytest.fixture(autouse=True)
def _dummy_credentials(aws_env: None) -> None:
    """Every test here runs with conftest's dummy credentials."""


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
    prepared = prepare_pairs(entities, ips)
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
    encoded = [encode_entity(n) for n in names]
    assert len(set(encoded)) == len(names)
    assert all("," not in e and '"' not in e and "\n" not in e and "\r" not in e for e in encoded)
    assert encode_entity("plain") == "plain"


@mock_aws
def test_upload_training_csv_writes_headerless_ipv4_rows() -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    entities = ["u1", "u2", "u,3", "u4"]
    ips = ["1.2.3.4", "fe80::1", "5.6.7.8", "9.9.9.9"]
    result = upload_training_csv(s3, f"s3://{BUCKET}/data/v1/", entities, ips, shuffle_seed=None)
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
    first = upload_training_csv(s3, f"s3://{BUCKET}/a", entities, ips, counts=counts, shuffle_seed=7)
    second = upload_training_csv(s3, f"s3://{BUCKET}/b", entities, ips, counts=counts, shuffle_seed=7)
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

    assert ipinsights_image_uri(region) == image_uris.retrieve("ipinsights", region)
    assert fallback_ipinsights_image_uri(region) == image_uris.retrieve("ipinsights", region)


def test_image_uri_unknown_region_is_clear() -> None:
    with pytest.raises(ValueError, match="mars-north-1"):
        fallback_ipinsights_image_uri("mars-north-1")


def test_resource_names_are_valid_and_unique_per_run() -> None:
    from datetime import UTC, datetime

    name = make_resource_name("proactive-ipinsights", "2024-01-15 / daily:v3" * 5)
    assert len(name) <= 63
    assert all(c.isalnum() or c == "-" for c in name) and name[0].isalnum() and name[-1].isalnum()
    a = make_resource_name("p", "v", now=datetime(2024, 1, 1, 0, 0, 0, 1000, tzinfo=UTC))
    b = make_resource_name("p", "v", now=datetime(2024, 1, 1, 0, 0, 0, 2000, tzinfo=UTC))
    assert a != b


def test_missing_role_and_artifacts_name_the_variables() -> None:
    with pytest.raises(ValueError, match="SAGEMAKER_ROLE_ARN"):
        SageMakerIPInsights(role_arn=None, artifacts_uri=f"s3://{BUCKET}/x")
    with pytest.raises(ValueError, match="PROACTIVE_SAGEMAKER_ARTIFACTS_URI"):
        SageMakerIPInsights(role_arn=ROLE, artifacts_uri=None)
    with pytest.raises(ValueError, match="SAGEMAKER_ROLE_ARN"):
        start_training_job(
            object(),
            job_name="j",
            role_arn=None,
            hyperparameters=HYPER,
            train_s3_uri=f"s3://{BUCKET}/t.csv",
            output_s3_uri=f"s3://{BUCKET}/out",
            image_uri=IMAGE,
        )
    with pytest.raises(ValueError, match="PROACTIVE_SAGEMAKER_ARTIFACTS_URI"):
        start_training_job(
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
        normalise_hyperparameters({"num_entity_vectors": 10})
    assert normalise_hyperparameters({"num_entity_vectors": 10, "vector_dim": 8, "x": True}) == {
        "num_entity_vectors": "10",
        "vector_dim": "8",
        "x": "true",
    }


# ---------------------------------------------------------------------------------------------
# Training job


@mock_aws
def test_training_job_uses_image_hyperparameters_and_csv_channels() -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    result = start_training_job(
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


def _train(sm: Any, clock: FakeClock, **kwargs: Any) -> TrainingJobResult:
    return start_training_job(
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
    with pytest.raises(TrainingJobFailed, match="job-y Failed: ClientError: No training data"):
        start_training_job(
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
    with pytest.raises(SageMakerTimeout, match="job-x"):
        _train(sm, clock, timeout=35)
    assert sm.stopped == ["job-x"]
    assert clock.now >= 35
