"""SageMaker training jobs for the built-in ``ipinsights`` algorithm, and what every job needs.

The job is made with boto3's ``create_training_job``: the SDK's ``ModelTrainer`` adds nothing for
a built-in algorithm, checks the role with ``iam:SimulatePrincipalPolicy`` and wants a default
bucket. The algorithm's image, its hyperparameters, unique resource names and the polling loop
that waits for jobs and endpoints live here too.
"""

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from proactive_assets.core.backends.sagemaker.errors import SageMakerError, SageMakerTimeout, TrainingJobFailed
from proactive_assets.core.backends.sagemaker.training_data import CSV_CONTENT_TYPE, parse_s3_uri

REQUIRED_HYPERPARAMETERS = ("num_entity_vectors", "vector_dim")
DEFAULT_INSTANCE_TYPE = "ml.m5.large"
DEFAULT_ENDPOINT_NAME = "proactive-ipinsights"
DEFAULT_NAME_PREFIX = "proactive-ipinsights"
VALIDATION_AUC_METRIC = "validation:discriminator_auc"

# Fallback copy of the SDK's image_uri_config/ipinsights.json (version "1"), used only when the
# SDK cannot be imported. Same registry accounts for training and inference.
_IPINSIGHTS_ACCOUNTS = {
    "af-south-1": "455444449433",
    "ap-east-1": "286214385809",
    "ap-northeast-1": "351501993468",
    "ap-northeast-2": "835164637446",
    "ap-northeast-3": "867004704886",
    "ap-south-1": "991648021394",
    "ap-south-2": "628508329040",
    "ap-southeast-1": "475088953585",
    "ap-southeast-2": "712309505854",
    "ap-southeast-3": "951798379941",
    "ap-southeast-4": "106583098589",
    "ca-central-1": "469771592824",
    "ca-west-1": "190319476487",
    "cn-north-1": "390948362332",
    "cn-northwest-1": "387376663083",
    "eu-central-1": "664544806723",
    "eu-central-2": "680994064768",
    "eu-north-1": "669576153137",
    "eu-south-1": "257386234256",
    "eu-south-2": "104374241257",
    "eu-west-1": "438346466558",
    "eu-west-2": "644912444149",
    "eu-west-3": "749696950732",
    "il-central-1": "898809789911",
    "me-central-1": "272398656194",
    "me-south-1": "249704162688",
    "sa-east-1": "855470959533",
    "us-east-1": "382416733822",
    "us-east-2": "404615174143",
    "us-gov-east-1": "237065988967",
    "us-gov-west-1": "226302683700",
    "us-west-1": "632365934929",
    "us-west-2": "174872318107",
}

Sleep = Callable[[float], None]
Clock = Callable[[], float]


def ipinsights_image_uri(region: str) -> str:
    """ECR image of the built-in ``ipinsights`` algorithm (same image trains and serves)."""
    try:
        from sagemaker.core import image_uris  # slow import (~2.5 s); only on this path
    except Exception:  # SDK missing or broken: the static copy of its table is enough
        return fallback_ipinsights_image_uri(region)
    return str(image_uris.retrieve("ipinsights", region))


def fallback_ipinsights_image_uri(region: str) -> str:
    """The same URI from the built-in account map, for when the SDK is unavailable."""
    account = _IPINSIGHTS_ACCOUNTS.get(region)
    if account is None:
        raise ValueError(f"no ipinsights image known for region {region!r}; pass image_uri explicitly")
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}/ipinsights:1"


def normalise_hyperparameters(hyperparameters: Mapping[str, Any]) -> dict[str, str]:
    """SageMaker wants string values; the algorithm refuses to start without the required two."""
    missing = [name for name in REQUIRED_HYPERPARAMETERS if name not in hyperparameters]
    if missing:
        raise ValueError(f"IP Insights hyperparameters missing required {', '.join(missing)}")
    out: dict[str, str] = {}
    for name, value in hyperparameters.items():
        out[str(name)] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


_NAME_BAD = re.compile(r"[^A-Za-z0-9]+")


def make_resource_name(prefix: str, version: str, *, now: datetime | None = None) -> str:
    """A unique SageMaker name (<= 63 chars, ``[A-Za-z0-9-]``) for a job/model of ``version``.

    SageMaker job names can never be reused, so a UTC timestamp is appended: re-running a
    partition makes a new job rather than failing on a name clash.
    """
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S%f")[:17]
    head = _NAME_BAD.sub("-", f"{prefix}-{version}").strip("-")
    head = head[: 63 - len(stamp) - 1].rstrip("-")
    return f"{head}-{stamp}"


def require_role_arn(role_arn: str | None) -> str:
    """The execution role SageMaker runs as; the error names the setting to set."""
    if not role_arn:
        raise ValueError("SageMaker execution role is not set: set SAGEMAKER_ROLE_ARN")
    return role_arn


def require_artifacts_uri(artifacts_uri: str | None) -> str:
    """The S3 prefix for training data and models; the error names the setting to set."""
    if not artifacts_uri:
        raise ValueError("S3 location for model artifacts is not set: set PROACTIVE_SAGEMAKER_ARTIFACTS_URI")
    return artifacts_uri


def job_completed(status_field: str, what: str, error: type[SageMakerError]) -> Callable[[Mapping[str, Any]], bool]:
    """A poll predicate for a SageMaker job: True when Completed, ``error`` with its reason on failure."""

    def finished(desc: Mapping[str, Any]) -> bool:
        status = desc.get(status_field)
        if status == "Completed":
            return True
        if status in ("Failed", "Stopped"):
            reason = desc.get("FailureReason") or "no FailureReason given"
            raise error(f"{what} {status}: {reason}")
        return False

    return finished


def poll_until(
    describe: Callable[[], Mapping[str, Any]],
    finished: Callable[[Mapping[str, Any]], bool],
    *,
    what: str,
    poll_interval: float,
    timeout: float,
    sleep: Sleep,
    clock: Clock,
) -> Mapping[str, Any]:
    """Call ``describe`` until ``finished`` says so (it raises on failure) or ``timeout``."""
    deadline = clock() + timeout
    while True:
        description = describe()
        if finished(description):
            return description
        if clock() >= deadline:
            raise SageMakerTimeout(f"{what} not finished after {timeout:.0f} s")
        sleep(poll_interval)


@dataclass(frozen=True)
class TrainingJobResult:
    """What the training job produced."""

    job_name: str
    model_artifact_uri: str
    metrics: dict[str, float] = field(default_factory=dict)
    billable_seconds: int | None = None


def _csv_channel(name: str, uri: str) -> dict[str, Any]:
    """An input channel reading the CSV under ``uri``."""
    parse_s3_uri(uri)
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": uri,
                "S3DataDistributionType": "FullyReplicated",
            }
        },
        "ContentType": CSV_CONTENT_TYPE,
        "CompressionType": "None",
        "InputMode": "File",
    }


def start_training_job(
    sagemaker_client: Any,
    *,
    job_name: str,
    role_arn: str | None,
    hyperparameters: Mapping[str, Any],
    train_s3_uri: str,
    output_s3_uri: str | None,
    image_uri: str | None = None,
    region: str | None = None,
    validation_s3_uri: str | None = None,
    instance_type: str = DEFAULT_INSTANCE_TYPE,
    instance_count: int = 1,
    volume_size_gb: int = 10,
    max_runtime_seconds: int = 4 * 3600,
    tags: Mapping[str, str] | None = None,
    poll_interval: float = 30.0,
    timeout: float | None = None,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> TrainingJobResult:
    """Run an ``ipinsights`` training job and wait for it; returns the model artifact URI.

    Raises ``TrainingJobFailed`` (with FailureReason) if it fails or is stopped, and
    ``SageMakerTimeout`` after ``timeout`` seconds (default: ``max_runtime_seconds`` plus an
    hour for provisioning), stopping the job so it stops billing.
    """
    role_arn = require_role_arn(role_arn)
    output_s3_uri = require_artifacts_uri(output_s3_uri)
    parse_s3_uri(output_s3_uri)
    if image_uri is None:
        if not region:
            raise ValueError("region is required to look up the ipinsights image")
        image_uri = ipinsights_image_uri(region)

    channels = [_csv_channel("train", train_s3_uri)]
    if validation_s3_uri:
        channels.append(_csv_channel("validation", validation_s3_uri))
    request: dict[str, Any] = {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": {"TrainingImage": image_uri, "TrainingInputMode": "File"},
        "RoleArn": role_arn,
        "HyperParameters": normalise_hyperparameters(hyperparameters),
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": output_s3_uri},
        "ResourceConfig": {
            "InstanceType": instance_type,
            "InstanceCount": instance_count,
            "VolumeSizeInGB": volume_size_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_seconds},
    }
    if tags:
        request["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
    sagemaker_client.create_training_job(**request)

    try:
        description = poll_until(
            lambda: sagemaker_client.describe_training_job(TrainingJobName=job_name),
            job_completed("TrainingJobStatus", f"training job {job_name}", TrainingJobFailed),
            what=f"training job {job_name}",
            poll_interval=poll_interval,
            timeout=max_runtime_seconds + 3600 if timeout is None else timeout,
            sleep=sleep,
            clock=clock,
        )
    except SageMakerTimeout:
        sagemaker_client.stop_training_job(TrainingJobName=job_name)
        raise
    artifact = (description.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if not artifact:
        raise TrainingJobFailed(f"training job {job_name} completed without S3ModelArtifacts")
    metrics = {
        m["MetricName"]: float(m["Value"])
        for m in description.get("FinalMetricDataList") or []
        if "MetricName" in m and "Value" in m
    }
    return TrainingJobResult(
        job_name=job_name,
        model_artifact_uri=artifact,
        metrics=metrics,
        billable_seconds=description.get("BillableTimeInSeconds"),
    )
