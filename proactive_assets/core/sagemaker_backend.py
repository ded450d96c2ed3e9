"""SageMaker backend for the IP Insights model: training CSV, training job, endpoint, scoring.

Pure boto3 logic (no Dagster). The built-in ``ipinsights`` algorithm takes headerless ``text/csv``
``entity,ip`` rows with IPv4 only, so IPv6 pairs are skipped and counted (IPv4-mapped IPv6 is
converted to IPv4 first; anything that is not an address is counted separately).

Choices, and why:

* **Entities with CSV-special characters.** IAM role and session names may contain ``,``. The
  algorithm's CSV parser is not documented to honour RFC 4180 quoting, so instead of quoting (or
  dropping those rows) every entity is percent-escaped for the five characters ``% , " CR LF``.
  The escape is injective and applied identically at training and scoring time; the algorithm
  only hashes the entity string, so the model sees one consistent identifier per entity.
  ``escaped_entities`` counts the rows that needed it.
* **Training via boto3 ``create_training_job``, not ``sagemaker.train.ModelTrainer``.**
  ModelTrainer (SDK 3.27) validates the role at construction time with
  ``iam:SimulatePrincipalPolicy`` (not implemented by moto, and an extra permission the workshop
  roles do not grant) and resolves a default ``sagemaker-<region>-<account>`` bucket; for a
  built-in algorithm with no source code it adds nothing the plain API call does not do. The
  image URI still comes from the SDK's offline table (``sagemaker.core.image_uris.retrieve``),
  with a built-in copy of the region -> account map as fallback.
* **Real-time endpoint vs batch transform.** Scoring here is a daily batch over one day's pairs.
  A real-time endpoint bills every hour it exists (one ml.m5.large is ~$80/month idle) and serves
  one model at a time, so backfilling day D with the endpoint scores D with whatever model is
  deployed *now* (``score(..., model_name=...)`` detects and refuses that mismatch). Batch
  transform starts an instance per job (minutes of start-up, billed per job only), scores with
  exactly the model trained for D, and writes results to S3. Conclusion: batch transform is the
  better fit for daily scoring and backfills; the endpoint is kept for the issue's real-time path
  and for low-latency use. Both are implemented (``scoring_mode="endpoint"`` or ``"batch"``).

Configuration errors name the environment variable to set (``SAGEMAKER_ROLE_ARN``,
``PROACTIVE_SAGEMAKER_ARTIFACTS_URI``), matching ``proactive_assets.config``.
"""

import io
import json
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from proactive_assets.core.ipnet import canonical_ip

ROLE_ENV_VAR = "SAGEMAKER_ROLE_ARN"
ARTIFACTS_ENV_VAR = "PROACTIVE_SAGEMAKER_ARTIFACTS_URI"

CSV_CONTENT_TYPE = "text/csv"
JSON_ACCEPT = "application/json"
JSONLINES_ACCEPT = "application/jsonlines"
REQUIRED_HYPERPARAMETERS = ("num_entity_vectors", "vector_dim")
DEFAULT_INSTANCE_TYPE = "ml.m5.large"
DEFAULT_ENDPOINT_NAME = "proactive-ipinsights"
DEFAULT_NAME_PREFIX = "proactive-ipinsights"
VALIDATION_AUC_METRIC = "validation:discriminator_auc"
# botocore's model caps InvokeEndpoint bodies at 6 MiB; stay safely below by default.
INVOKE_BODY_LIMIT = 6_291_456
DEFAULT_MAX_PAYLOAD_BYTES = 5_000_000
DEFAULT_MAX_ROWS_PER_REQUEST = 10_000

# Error codes worth another attempt: throttling, transient service faults, model still loading.
RETRYABLE_ERROR_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalDependencyException",
        "ModelNotReadyException",
        "RequestTimeout",
    }
)

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


class SageMakerError(RuntimeError):
    """A SageMaker job or endpoint did not reach the state we needed."""


class TrainingJobFailed(SageMakerError):
    """The training job ended Failed or Stopped; the message carries SageMaker's FailureReason."""


class EndpointFailed(SageMakerError):
    """Endpoint creation/update failed or was rolled back."""


class SageMakerScoringError(SageMakerError):
    """Scoring failed for good (retries exhausted, bad response, wrong model)."""


class SageMakerTimeout(SageMakerError, TimeoutError):
    """Polling gave up before the resource reached a final state."""


# ---------------------------------------------------------------------------------------------
# Pairs -> CSV lines


_ESCAPES = {"%": "%25", ",": "%2C", '"': "%22", "\r": "%0D", "\n": "%0A"}
_ESCAPE_RE = re.compile('[%,"\r\n]')


def encode_entity(entity: str) -> str:
    """Percent-escape the characters that would break a two-column CSV row (see module doc)."""
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], entity)


@dataclass(frozen=True)
class PreparedPairs:
    """CSV lines for the rows the algorithm accepts, and where they came from."""

    lines: list[str]
    row_index: np.ndarray  # position in the caller's input of each line
    total_rows: int
    skipped_ipv6: int
    skipped_invalid: int
    escaped_entities: int


def prepare_pairs(entities: Sequence[Any], ips: Sequence[Any]) -> PreparedPairs:
    """Turn (entity, ip) columns into ``entity,ip`` lines: IPv4 only, entities escaped."""
    entity_list = list(entities)
    ip_list = list(ips)
    if len(entity_list) != len(ip_list):
        raise ValueError(f"entities ({len(entity_list)}) and ips ({len(ip_list)}) differ in length")
    ip_cache: dict[Any, str | None] = {}
    entity_cache: dict[Any, str | None] = {}
    lines: list[str] = []
    index: list[int] = []
    skipped_ipv6 = skipped_invalid = escaped = 0
    for position, (entity, ip) in enumerate(zip(entity_list, ip_list, strict=True)):
        if ip not in ip_cache:
            ip_cache[ip] = canonical_ip(ip.strip()) if isinstance(ip, str) else None
        canonical = ip_cache[ip]
        if entity not in entity_cache:
            entity_cache[entity] = encode_entity(entity) if isinstance(entity, str) and entity.strip() else None
        encoded = entity_cache[entity]
        if canonical is None or encoded is None:
            skipped_invalid += 1
            continue
        if ":" in canonical:
            skipped_ipv6 += 1
            continue
        if encoded != entity:
            escaped += 1
        lines.append(f"{encoded},{canonical}")
        index.append(position)
    return PreparedPairs(
        lines=lines,
        row_index=np.asarray(index, dtype=np.int64),
        total_rows=len(entity_list),
        skipped_ipv6=skipped_ipv6,
        skipped_invalid=skipped_invalid,
        escaped_entities=escaped,
    )


# ---------------------------------------------------------------------------------------------
# S3


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``; the key may be empty."""
    if not uri or not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in S3 URI: {uri!r}")
    return bucket, key


def join_s3_uri(prefix: str, *parts: str) -> str:
    """Join S3 URI parts with single slashes."""
    out = prefix.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


@dataclass(frozen=True)
class TrainingCsv:
    """Where the training CSV went and what was left out of it."""

    s3_uri: str
    rows: int
    skipped_ipv6: int
    skipped_invalid: int
    escaped_entities: int


def upload_training_csv(
    s3_client: Any,
    s3_uri_prefix: str,
    entities: Sequence[Any],
    ips: Sequence[Any],
    *,
    counts: Sequence[int] | None = None,
    shuffle_seed: int | None = 0,
    filename: str = "train.csv",
) -> TrainingCsv:
    """Write headerless ``entity,ip`` CSV to ``<prefix>/<filename>``.

    ``counts`` repeats each pair (the algorithm expects every access event, repeats included);
    rows are shuffled with ``shuffle_seed`` (None keeps input order) so one entity's events do
    not fill a mini-batch, as the IP Insights tutorial does.
    """
    prepared = prepare_pairs(entities, ips)
    lines = prepared.lines
    order = np.arange(len(lines))
    if counts is not None:
        count_array = np.asarray(list(counts), dtype=np.int64)
        if len(count_array) != prepared.total_rows:
            raise ValueError("counts must have one value per pair")
        order = np.repeat(order, np.clip(count_array[prepared.row_index], 0, None))
    if shuffle_seed is not None:
        np.random.default_rng(shuffle_seed).shuffle(order)
    body = "".join(lines[i] + "\n" for i in order).encode("utf-8")
    uri = join_s3_uri(s3_uri_prefix, filename)
    bucket, key = parse_s3_uri(uri)
    s3_client.upload_fileobj(io.BytesIO(body), bucket, key, ExtraArgs={"ContentType": CSV_CONTENT_TYPE})
    return TrainingCsv(
        s3_uri=uri,
        rows=len(order),
        skipped_ipv6=prepared.skipped_ipv6,
        skipped_invalid=prepared.skipped_invalid,
        escaped_entities=prepared.escaped_entities,
    )


# ---------------------------------------------------------------------------------------------
# Names, image, hyperparameters


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


def _require(value: str | None, env_var: str, what: str) -> str:
    if not value:
        raise ValueError(f"{what} is not set: set {env_var}")
    return value


# ---------------------------------------------------------------------------------------------
# Polling


def _job_finished(status_field: str, what: str, error: type[SageMakerError]) -> Callable[[Mapping[str, Any]], bool]:
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


def _poll(
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


# ---------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class TrainingJobResult:
    """What the training job produced."""

    job_name: str
    model_artifact_uri: str
    metrics: dict[str, float] = field(default_factory=dict)
    billable_seconds: int | None = None


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
    stop_on_timeout: bool = True,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> TrainingJobResult:
    """Run an ``ipinsights`` training job and wait for it; returns the model artifact URI.

    Raises ``TrainingJobFailed`` (with FailureReason) if it fails or is stopped, and
    ``SageMakerTimeout`` after ``timeout`` seconds (default: ``max_runtime_seconds`` plus an
    hour for provisioning), stopping the job so it stops billing.
    """
    role_arn = _require(role_arn, ROLE_ENV_VAR, "SageMaker execution role")
    output_s3_uri = _require(output_s3_uri, ARTIFACTS_ENV_VAR, "S3 location for model artifacts")
    parse_s3_uri(output_s3_uri)
    if image_uri is None:
        if not region:
            raise ValueError("region is required to look up the ipinsights image")
        image_uri = ipinsights_image_uri(region)

    def channel(name: str, uri: str) -> dict[str, Any]:
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

    channels = [channel("train", train_s3_uri)]
    if validation_s3_uri:
        channels.append(channel("validation", validation_s3_uri))
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

    finished = _job_finished("TrainingJobStatus", f"training job {job_name}", TrainingJobFailed)

    try:
        description = _poll(
            lambda: sagemaker_client.describe_training_job(TrainingJobName=job_name),
            finished,
            what=f"training job {job_name}",
            poll_interval=poll_interval,
            timeout=max_runtime_seconds + 3600 if timeout is None else timeout,
            sleep=sleep,
            clock=clock,
        )
    except SageMakerTimeout:
        if stop_on_timeout:
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


# ---------------------------------------------------------------------------------------------
# Model and endpoint


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
    tags: Mapping[str, str] | None = None,
) -> str:
    """Register the trained artifact as a SageMaker model (idempotent: reuses an existing one).

    Models are metadata only (no cost), so one per training job is kept; batch transform and
    endpoint configs refer to them by name.
    """
    role_arn = _require(role_arn, ROLE_ENV_VAR, "SageMaker execution role")
    try:
        sagemaker_client.describe_model(ModelName=model_name)
        return model_name
    except ClientError as error:
        if not _is_not_found(error):
            raise
    request: dict[str, Any] = {
        "ModelName": model_name,
        "PrimaryContainer": {"Image": image_uri, "ModelDataUrl": model_artifact_uri},
        "ExecutionRoleArn": role_arn,
    }
    if tags:
        request["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
    sagemaker_client.create_model(**request)
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
    tags: Mapping[str, str] | None = None,
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
            tags=tags,
        )
    config_name = endpoint_config_name or model_name
    try:
        sagemaker_client.describe_endpoint_config(EndpointConfigName=config_name)
    except ClientError as error:
        if not _is_not_found(error):
            raise
        request: dict[str, Any] = {
            "EndpointConfigName": config_name,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": model_name,
                    "InitialInstanceCount": instance_count,
                    "InstanceType": instance_type,
                    "InitialVariantWeight": 1.0,
                }
            ],
        }
        if tags:
            request["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
        sagemaker_client.create_endpoint_config(**request)

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
        current = _poll(
            lambda: describe() or {"EndpointStatus": "Gone"},
            lambda d: d.get("EndpointStatus") not in _ENDPOINT_BUSY,
            what=f"endpoint {endpoint_name} (previous operation)",
            **wait_kwargs,
        )
        if current.get("EndpointStatus") == "Gone":
            current = None

    tag_list = [{"Key": k, "Value": v} for k, v in (tags or {}).items()]
    if current is None:
        action = "created"
        if tag_list:
            sagemaker_client.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=config_name, Tags=tag_list)
        else:
            sagemaker_client.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=config_name)
    elif current.get("EndpointStatus") == "Failed":
        action = "recreated"
        sagemaker_client.delete_endpoint(EndpointName=endpoint_name)
        _poll(
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

    _poll(
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


# ---------------------------------------------------------------------------------------------
# Scoring


@dataclass(frozen=True)
class SageMakerScores:
    """One ``dot_product`` per input row (NaN where the row could not be sent)."""

    dot_product: np.ndarray
    skipped_ipv6: int
    skipped_invalid: int = 0
    requests: int = 0


def _error_code(error: BaseException) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return type(error).__name__


def is_retryable(error: BaseException) -> bool:
    """Throttling, 5xx, model-side 5xx (ModelError) and connection problems are transient."""
    if isinstance(error, (BotoConnectionError, HTTPClientError)):
        return True
    if not isinstance(error, ClientError):
        return False
    response = error.response
    code = _error_code(error)
    if code in RETRYABLE_ERROR_CODES:
        return True
    if code == "ModelError":
        original = response.get("OriginalStatusCode", response.get("Error", {}).get("OriginalStatusCode"))
        try:
            original_status = int(original)
        except (TypeError, ValueError):
            return False
        return original_status >= 500 or original_status == 429
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return isinstance(status, int) and status >= 500


def _batches(sizes: Sequence[int], max_bytes: int, max_rows: int) -> Iterable[tuple[int, int]]:
    """Greedy ``[start, stop)`` ranges whose newline-joined size stays within ``max_bytes``."""
    start = 0
    total = 0
    for i, size in enumerate(sizes):
        if size > max_bytes:
            raise ValueError(f"a single CSV row is {size} bytes, above max_payload_bytes={max_bytes}")
        extra = size + (1 if i > start else 0)
        if i > start and (total + extra > max_bytes or i - start >= max_rows):
            yield start, i
            start, total = i, size
        else:
            total += extra
    if start < len(sizes):
        yield start, len(sizes)


def _invoke_with_retry(
    runtime_client: Any,
    endpoint_name: str,
    body: bytes,
    *,
    where: str,
    max_attempts: int,
    backoff_base: float,
    backoff_max: float,
    sleep: Sleep,
    rng: random.Random,
) -> bytes:
    last: BaseException | None = None
    for attempt in range(1, max_attempts + 1):
        try:
            response = runtime_client.invoke_endpoint(
                EndpointName=endpoint_name,
                ContentType=CSV_CONTENT_TYPE,
                Accept=JSON_ACCEPT,
                Body=body,
            )
            payload = response["Body"]
            return payload.read() if hasattr(payload, "read") else payload
        except (ClientError, BotoConnectionError, HTTPClientError) as error:
            last = error
            if not is_retryable(error):
                raise SageMakerScoringError(
                    f"invoke_endpoint on endpoint {endpoint_name!r} failed ({where}), not retried: "
                    f"{_error_code(error)}: {error}"
                ) from error
            if attempt < max_attempts:
                delay = min(backoff_max, backoff_base * 2 ** (attempt - 1))
                sleep(delay * rng.uniform(0.5, 1.0))
    raise SageMakerScoringError(
        f"invoke_endpoint on endpoint {endpoint_name!r} failed ({where}) after {max_attempts} "
        f"attempts: {_error_code(last) if last else ''}: {last}"
    ) from last


def _parse_predictions(raw: bytes, expected: int, endpoint_name: str, where: str) -> np.ndarray:
    try:
        document = json.loads(raw)
        predictions = document["predictions"]
        values = np.array([float(p["dot_product"]) for p in predictions], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as error:
        snippet = raw[:200].decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)[:200]
        raise SageMakerScoringError(
            f"endpoint {endpoint_name!r} returned an unreadable response ({where}): {snippet!r}"
        ) from error
    if len(values) != expected:
        raise SageMakerScoringError(
            f"endpoint {endpoint_name!r} returned {len(values)} predictions for {expected} rows ({where})"
        )
    return values


def score_pairs(
    runtime_client: Any,
    endpoint_name: str,
    entities: Sequence[Any],
    ips: Sequence[Any],
    *,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    max_rows_per_request: int = DEFAULT_MAX_ROWS_PER_REQUEST,
    max_attempts: int = 5,
    backoff_base: float = 0.5,
    backoff_max: float = 20.0,
    deduplicate: bool = True,
    sleep: Sleep = time.sleep,
    seed: int | None = None,
) -> SageMakerScores:
    """Score pairs on a real-time endpoint: ``text/csv`` in, ``{"predictions": [...]}`` out.

    Rows are sent in requests of at most ``max_payload_bytes`` / ``max_rows_per_request``
    (InvokeEndpoint caps bodies at 6 MiB); repeated pairs are sent once when ``deduplicate``.
    Transient errors are retried with exponential backoff and jitter, ``max_attempts`` in all.
    """
    if not 0 < max_payload_bytes <= INVOKE_BODY_LIMIT:
        raise ValueError(f"max_payload_bytes must be in 1..{INVOKE_BODY_LIMIT}")
    if max_rows_per_request < 1 or max_attempts < 1:
        raise ValueError("max_rows_per_request and max_attempts must be at least 1")
    prepared = prepare_pairs(entities, ips)
    if deduplicate:
        unique: dict[str, int] = {}
        inverse = np.fromiter(
            (unique.setdefault(line, len(unique)) for line in prepared.lines),
            dtype=np.int64,
            count=len(prepared.lines),
        )
        to_send = list(unique)
    else:
        to_send = prepared.lines
        inverse = np.arange(len(to_send), dtype=np.int64)
    encoded = [line.encode("utf-8") for line in to_send]
    ranges = list(_batches([len(b) for b in encoded], max_payload_bytes, max_rows_per_request))
    sent = np.empty(len(encoded), dtype=np.float64)
    rng = random.Random(seed)
    for number, (start, stop) in enumerate(ranges, 1):
        where = f"request {number}/{len(ranges)}, rows {start}..{stop - 1}"
        raw = _invoke_with_retry(
            runtime_client,
            endpoint_name,
            b"\n".join(encoded[start:stop]),
            where=where,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            sleep=sleep,
            rng=rng,
        )
        sent[start:stop] = _parse_predictions(raw, stop - start, endpoint_name, where)
    result = np.full(prepared.total_rows, np.nan, dtype=np.float64)
    if len(inverse):
        result[prepared.row_index] = sent[inverse]
    return SageMakerScores(
        dot_product=result,
        skipped_ipv6=prepared.skipped_ipv6,
        skipped_invalid=prepared.skipped_invalid,
        requests=len(ranges),
    )


# ---------------------------------------------------------------------------------------------
# Batch transform


def score_pairs_batch(
    sagemaker_client: Any,
    s3_client: Any,
    *,
    model_name: str,
    entities: Sequence[Any],
    ips: Sequence[Any],
    s3_uri_prefix: str,
    job_name: str,
    instance_type: str = DEFAULT_INSTANCE_TYPE,
    instance_count: int = 1,
    max_payload_mb: int = 6,
    poll_interval: float = 30.0,
    timeout: float = 2 * 3600,
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> SageMakerScores:
    """Score pairs with a batch transform job on ``model_name`` (no endpoint needed).

    Input ``<prefix>/input/pairs.csv`` is split by line; output is JSON Lines, one
    ``{"dot_product": x}`` per input line in order, read back from ``<prefix>/output/``.
    """
    prepared = prepare_pairs(entities, ips)
    unique: dict[str, int] = {}
    inverse = np.fromiter(
        (unique.setdefault(line, len(unique)) for line in prepared.lines),
        dtype=np.int64,
        count=len(prepared.lines),
    )
    result = np.full(prepared.total_rows, np.nan, dtype=np.float64)
    if not unique:
        return SageMakerScores(result, prepared.skipped_ipv6, prepared.skipped_invalid, 0)
    input_uri = join_s3_uri(s3_uri_prefix, "input", "pairs.csv")
    output_uri = join_s3_uri(s3_uri_prefix, "output")
    bucket, key = parse_s3_uri(input_uri)
    body = "".join(line + "\n" for line in unique).encode("utf-8")
    s3_client.upload_fileobj(io.BytesIO(body), bucket, key, ExtraArgs={"ContentType": CSV_CONTENT_TYPE})
    sagemaker_client.create_transform_job(
        TransformJobName=job_name,
        ModelName=model_name,
        BatchStrategy="MultiRecord",
        MaxPayloadInMB=max_payload_mb,
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": CSV_CONTENT_TYPE,
            "SplitType": "Line",
            "CompressionType": "None",
        },
        TransformOutput={
            "S3OutputPath": output_uri,
            "Accept": JSONLINES_ACCEPT,
            "AssembleWith": "Line",
        },
        TransformResources={"InstanceType": instance_type, "InstanceCount": instance_count},
    )

    finished = _job_finished("TransformJobStatus", f"transform job {job_name}", SageMakerScoringError)

    _poll(
        lambda: sagemaker_client.describe_transform_job(TransformJobName=job_name),
        finished,
        what=f"transform job {job_name}",
        poll_interval=poll_interval,
        timeout=timeout,
        sleep=sleep,
        clock=clock,
    )
    out_bucket, out_prefix = parse_s3_uri(output_uri + "/")
    keys = [
        obj["Key"]
        for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=out_bucket, Prefix=out_prefix)
        for obj in page.get("Contents", [])
        if obj["Key"].endswith(".out")
    ]
    if len(keys) != 1:
        raise SageMakerScoringError(
            f"transform job {job_name}: expected one .out file under {output_uri}, found {keys}"
        )
    raw = s3_client.get_object(Bucket=out_bucket, Key=keys[0])["Body"].read().decode("utf-8")
    try:
        values = np.array(
            [float(json.loads(line)["dot_product"]) for line in raw.splitlines() if line.strip()],
            dtype=np.float64,
        )
    except (ValueError, KeyError, TypeError) as error:
        raise SageMakerScoringError(f"transform job {job_name}: unreadable output {keys[0]}") from error
    if len(values) != len(unique):
        raise SageMakerScoringError(
            f"transform job {job_name} returned {len(values)} predictions for {len(unique)} rows"
        )
    if len(inverse):
        result[prepared.row_index] = values[inverse]
    return SageMakerScores(result, prepared.skipped_ipv6, prepared.skipped_invalid, 1)


# ---------------------------------------------------------------------------------------------
# The backend object


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
        self.role_arn = _require(role_arn, ROLE_ENV_VAR, "SageMaker execution role")
        self.artifacts_uri = _require(artifacts_uri, ARTIFACTS_ENV_VAR, "S3 location for model artifacts")
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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> "SageMakerIPInsights":
        """Build from ``SAGEMAKER_ROLE_ARN`` and ``PROACTIVE_SAGEMAKER_ARTIFACTS_URI``."""
        import os

        source = os.environ if env is None else env
        return cls(
            role_arn=source.get(ROLE_ENV_VAR) or None,
            artifacts_uri=source.get(ARTIFACTS_ENV_VAR) or None,
            **kwargs,
        )

    @property
    def image_uri(self) -> str:
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
        deploy: bool | None = None,
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
        if deploy if deploy is not None else self.scoring_mode == "endpoint":
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
