"""Settings: the one place the environment is read (every variable is optional; README lists them).

Each field names its environment variable once (its alias); pydantic parses and validates, and a
bad value becomes a one-line error naming the variable. No Dagster here: the CLI, the benchmarks
and the Dagster resource (``defs/resources.py``, which carries a ``Settings`` as its config) all
read the same object.
"""

import importlib.util
import os
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_START_DATE = "2024-01-01"
#: Most bytes read of one log object, stored or decompressed. Real CloudTrail objects are far
#: smaller: a delivery covers about 5 minutes of one account and region (typically KB to a few MB;
#: the biggest reported, from very busy accounts, are ~50 MB compressed); 512 MiB leaves 10x room
#: over those while bounding what a planted gzip bomb can cost. At most 1 GiB.
DEFAULT_MAX_OBJECT_BYTES = 512 * 1024 * 1024
MODEL_BACKENDS = ("local", "sagemaker")
SCORING_MODES = ("endpoint", "batch")
#: How ``security_lake_activity`` reads the lake: its Parquet objects, or through Athena (pairs aggregated in SQL).
SECURITY_LAKE_READERS = ("objects", "athena")

#: Said once per run when the SageMaker backend is chosen without the SageMaker SDK installed.
SAGEMAKER_SDK_NOTE = (
    "the SageMaker SDK is not installed: the ipinsights image comes from the built-in region table "
    "(pip install 'proactive_assets[sagemaker]' to look it up with the SDK)"
)


def _env(*names: str) -> Any:
    return AliasChoices(*names)


class Settings(BaseModel):
    """Everything a run needs to know about where data lives and how to treat it."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    home: str = Field(default="", validation_alias=_env("home", "PROACTIVE_HOME"))
    cloudtrail_uri: str = Field(default="", validation_alias=_env("cloudtrail_uri", "PROACTIVE_CLOUDTRAIL_URI"))
    cloudtrail_full_listing_hours: float = Field(
        default=24.0,
        ge=0.0,
        validation_alias=_env("cloudtrail_full_listing_hours", "PROACTIVE_CLOUDTRAIL_FULL_LISTING_HOURS"),
    )
    accounts: list[str] = Field(default=[], validation_alias=_env("accounts", "PROACTIVE_ACCOUNTS"))
    regions: list[str] = Field(default=[], validation_alias=_env("regions", "PROACTIVE_REGIONS"))
    security_lake_uri: str | None = Field(
        default=None, validation_alias=_env("security_lake_uri", "PROACTIVE_SECURITY_LAKE_URI")
    )
    sqs_queue_url: str | None = Field(default=None, validation_alias=_env("sqs_queue_url", "PROACTIVE_SQS_QUEUE_URL"))
    security_lake_reader: str = Field(
        default="objects", validation_alias=_env("security_lake_reader", "PROACTIVE_SECURITY_LAKE_READER")
    )
    security_lake_region: str | None = Field(
        default=None, validation_alias=_env("security_lake_region", "PROACTIVE_SECURITY_LAKE_REGION")
    )
    athena_output_uri: str | None = Field(
        default=None, validation_alias=_env("athena_output_uri", "PROACTIVE_ATHENA_OUTPUT_URI")
    )
    athena_workgroup: str = Field(
        default="primary", validation_alias=_env("athena_workgroup", "PROACTIVE_ATHENA_WORKGROUP")
    )
    warehouse: str = Field(default="", validation_alias=_env("warehouse", "PROACTIVE_WAREHOUSE"))
    model_backend: str = Field(default="local", validation_alias=_env("model_backend", "PROACTIVE_MODEL_BACKEND"))
    training_days: int = Field(default=14, ge=1, validation_alias=_env("training_days", "PROACTIVE_TRAINING_DAYS"))
    min_training_days: int = Field(
        default=3, ge=1, validation_alias=_env("min_training_days", "PROACTIVE_MIN_TRAINING_DAYS")
    )
    insight_threshold: float | None = Field(
        default=None, ge=0.0, le=1.0, validation_alias=_env("insight_threshold", "INSIGHT_THRESHOLD")
    )
    alert_budget: float = Field(default=1.0, gt=0.0, validation_alias=_env("alert_budget", "PROACTIVE_ALERT_BUDGET"))
    # A full IP Insights retrain every this many days; the days between warm-start from the day before's model
    # (core.model.warm). 1: every day is a full retrain.
    full_retrain_days: int = Field(
        default=7, ge=1, validation_alias=_env("full_retrain_days", "PROACTIVE_FULL_RETRAIN_DAYS")
    )
    aws_ip_ranges: str | None = Field(default=None, validation_alias=_env("aws_ip_ranges", "PROACTIVE_AWS_IP_RANGES"))
    max_object_bytes: int = Field(
        default=DEFAULT_MAX_OBJECT_BYTES,
        ge=1024,
        le=1024 * 1024 * 1024,
        validation_alias=_env("max_object_bytes", "PROACTIVE_MAX_OBJECT_BYTES"),
    )
    ingest_workers: int | None = Field(
        default=None, ge=1, le=256, validation_alias=_env("ingest_workers", "PROACTIVE_INGEST_WORKERS")
    )
    start_date: str = Field(default=DEFAULT_START_DATE, validation_alias=_env("start_date", "PROACTIVE_START_DATE"))
    log_level: str = Field(default="WARNING", validation_alias=_env("log_level", "PROACTIVE_LOG_LEVEL"))
    sns_topic_arn: str | None = Field(default=None, validation_alias=_env("sns_topic_arn", "SNS_TOPIC_ARN"))
    aws_region: str | None = Field(
        default=None, validation_alias=_env("aws_region", "AWS_REGION", "AWS_DEFAULT_REGION")
    )
    dagster_home: str = Field(default="", validation_alias=_env("dagster_home", "DAGSTER_HOME"))
    sagemaker_role_arn: str | None = Field(
        default=None, validation_alias=_env("sagemaker_role_arn", "SAGEMAKER_ROLE_ARN")
    )
    sagemaker_artifacts_uri: str | None = Field(
        default=None, validation_alias=_env("sagemaker_artifacts_uri", "PROACTIVE_SAGEMAKER_ARTIFACTS_URI")
    )
    sagemaker_scoring_mode: str | None = Field(
        default=None, validation_alias=_env("sagemaker_scoring_mode", "PROACTIVE_SAGEMAKER_SCORING_MODE")
    )
    sagemaker_endpoint_name: str | None = Field(
        default=None, validation_alias=_env("sagemaker_endpoint_name", "PROACTIVE_SAGEMAKER_ENDPOINT_NAME")
    )

    @field_validator("accounts", "regions", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("model_backend", "sagemaker_scoring_mode", "security_lake_reader", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("model_backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        return _one_of(value, MODEL_BACKENDS)

    @field_validator("security_lake_reader")
    @classmethod
    def _known_reader(cls, value: str) -> str:
        return _one_of(value, SECURITY_LAKE_READERS)

    @field_validator("sagemaker_scoring_mode")
    @classmethod
    def _known_mode(cls, value: str | None) -> str | None:
        return None if value is None else _one_of(value, SCORING_MODES)

    @field_validator("start_date")
    @classmethod
    def _iso_day(cls, value: str) -> str:
        return date.fromisoformat(value).isoformat()

    @model_validator(mode="after")
    def _derived_paths(self) -> "Settings":
        """Paths default under ``home`` (itself ``.proactive`` in the working directory), made absolute."""
        home = str(Path(self.home or ".proactive").expanduser().resolve())
        object.__setattr__(self, "home", home)
        object.__setattr__(self, "cloudtrail_uri", _absolute(self.cloudtrail_uri or str(Path(home) / "sample")))
        object.__setattr__(self, "warehouse", _absolute(self.warehouse or str(Path(home) / "warehouse")))
        object.__setattr__(self, "dagster_home", _absolute(self.dagster_home or str(Path(home) / "dagster")))
        return self

    @property
    def lake_region(self) -> str | None:
        """The region of the Security Lake's Glue database: ``PROACTIVE_SECURITY_LAKE_REGION``, else ``AWS_REGION``."""
        return self.security_lake_region or self.aws_region

    @property
    def alerts_file(self) -> str:
        return str(Path(self.home) / "alerts.jsonl")

    @property
    def suppressions_file(self) -> str:
        return str(Path(self.home) / "suppressions.toml")

    @property
    def cache_folder(self) -> str:
        """What is derived from bundled data and kept to save work between runs (rebuilt when missing)."""
        return str(Path(self.home) / "cache")

    @classmethod
    def env_names(cls) -> set[str]:
        """Every environment variable the settings read."""
        return {name for field in cls.model_fields.values() for name in _aliases(field.validation_alias)}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Settings from ``env`` (default: ``os.environ``); empty variables count as unset.

        Raises ``ValueError`` with one line per bad variable, naming it and the value it had.
        """
        source = os.environ if env is None else env
        values = {name: source[name] for name in cls.env_names() if name in source and source[name].strip() != ""}
        # AWS_REGION wins over AWS_DEFAULT_REGION, as in boto3.
        if "AWS_REGION" in values:
            values.pop("AWS_DEFAULT_REGION", None)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ValueError(_describe(exc, values)) from None


def _one_of(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"must be one of {', '.join(allowed)}")
    return value


def _absolute(uri: str) -> str:
    return uri if "://" in uri else str(Path(uri).expanduser().resolve())


def _aliases(alias: Any) -> list[str]:
    if isinstance(alias, AliasChoices):
        return [a for a in alias.choices if isinstance(a, str) and a.upper() == a]
    return []


def _describe(exc: ValidationError, values: Mapping[str, str]) -> str:
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "settings"
        got = f", got {values[name]!r}" if name in values else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{name}: {message}{got}")
    return "; ".join(lines)


class SettingsProblem(ValueError):
    """A setting that cannot work, found before any work starts: the cause and the fix, one line each."""

    def __init__(self, cause: str, fix: str) -> None:
        super().__init__(cause)
        self.cause = cause
        self.fix = fix


def sagemaker_sdk_installed() -> bool:
    """Whether the optional SageMaker SDK (the ``sagemaker`` extra) can be imported; cheap, imports nothing."""
    try:
        return importlib.util.find_spec("sagemaker") is not None
    except (ImportError, ValueError):
        return False


def preflight(settings: Settings) -> list[str]:
    """Check that the settings can work before a run starts; returns notes worth a line each.

    Raises ``SettingsProblem`` for the first setting that would make every run fail: a CloudTrail
    or Security Lake location that cannot be read (missing folder or bucket, no AWS credentials,
    access denied), an S3 warehouse that cannot be reached, or a SageMaker backend without what it
    needs. S3 is probed with one ``ListObjectsV2`` call per location.
    """
    notes: list[str] = []
    if settings.model_backend == "sagemaker":
        notes += _sagemaker_problems(settings)
    default_sample = str(Path(settings.home) / "sample")
    if settings.cloudtrail_uri == default_sample and not Path(default_sample).is_dir():
        raise SettingsProblem(
            f"PROACTIVE_CLOUDTRAIL_URI is not set and the default sample folder {default_sample} does not exist",
            "set PROACTIVE_CLOUDTRAIL_URI=s3://<bucket>[/prefix] (or a local copy laid out like the bucket), "
            f"or write sample logs there first: proactive-assets sample {default_sample}",
        )
    found = _probe(settings.cloudtrail_uri, "PROACTIVE_CLOUDTRAIL_URI", "AWSLogs/")
    if not found:
        notes.append(
            f"no AWSLogs/ under {settings.cloudtrail_uri}: PROACTIVE_CLOUDTRAIL_URI should be the bucket "
            "(or the trail's S3 key prefix) that holds AWSLogs/; every day will be empty"
        )
    if settings.security_lake_reader == "athena":
        _athena_problems(settings)
    elif settings.security_lake_uri:
        _probe(settings.security_lake_uri, "PROACTIVE_SECURITY_LAKE_URI", "")
    if settings.warehouse.startswith("s3://"):
        _probe(settings.warehouse, "PROACTIVE_WAREHOUSE", "")
    return notes


def _sagemaker_problems(settings: Settings) -> list[str]:
    """The SageMaker backend's own settings; a note when it must use the built-in image table."""
    why = "PROACTIVE_MODEL_BACKEND=sagemaker needs"
    other = "or set PROACTIVE_MODEL_BACKEND=local"
    if not settings.sagemaker_role_arn:
        raise SettingsProblem(
            f"{why} SAGEMAKER_ROLE_ARN (the IAM role SageMaker's jobs run as)",
            f"set SAGEMAKER_ROLE_ARN=arn:aws:iam::<account>:role/<role>, {other}",
        )
    if not (settings.sagemaker_artifacts_uri or "").startswith("s3://"):
        raise SettingsProblem(
            f"{why} PROACTIVE_SAGEMAKER_ARTIFACTS_URI, an s3:// prefix for training data and model artifacts"
            + (f" (got {settings.sagemaker_artifacts_uri!r})" if settings.sagemaker_artifacts_uri else ""),
            f"set PROACTIVE_SAGEMAKER_ARTIFACTS_URI=s3://<bucket>/<prefix>, {other}",
        )
    if not settings.aws_region:
        raise SettingsProblem(f"{why} an AWS region", f"set AWS_REGION (e.g. AWS_REGION=us-east-1), {other}")
    if sagemaker_sdk_installed():
        return []
    from proactive_assets.core.backends.sagemaker.jobs import fallback_ipinsights_image_uri

    try:
        fallback_ipinsights_image_uri(settings.aws_region)
    except ValueError:
        raise SettingsProblem(
            f"the built-in table has no ipinsights image for region {settings.aws_region} "
            "and the SageMaker SDK is not installed",
            "pip install 'proactive_assets[sagemaker]' (the SDK knows every region), or choose another AWS_REGION",
        ) from None
    return [SAGEMAKER_SDK_NOTE]


def _athena_problems(settings: Settings) -> None:
    """The Athena reader's own settings: where UNLOAD writes, and the lake's region."""
    other = "or set PROACTIVE_SECURITY_LAKE_READER=objects"
    if not (settings.athena_output_uri or "").startswith("s3://") or "'" in (settings.athena_output_uri or ""):
        raise SettingsProblem(
            "PROACTIVE_SECURITY_LAKE_READER=athena needs PROACTIVE_ATHENA_OUTPUT_URI, an s3:// prefix UNLOAD writes to"
            + (f" (got {settings.athena_output_uri!r})" if settings.athena_output_uri else ""),
            f"set PROACTIVE_ATHENA_OUTPUT_URI=s3://<bucket>/<prefix>, {other}",
        )
    region = settings.lake_region
    if not region:
        raise SettingsProblem(
            "PROACTIVE_SECURITY_LAKE_READER=athena needs the lake's region (its Glue database is per region)",
            f"set PROACTIVE_SECURITY_LAKE_REGION (or AWS_REGION), e.g. us-east-1, {other}",
        )
    from proactive_assets.core.sources.athena_sql import checked_region

    try:
        checked_region(region)
    except ValueError:
        raise SettingsProblem(
            f"PROACTIVE_SECURITY_LAKE_REGION/AWS_REGION {region!r} is not an AWS region name",
            f"set PROACTIVE_SECURITY_LAKE_REGION to the lake's region, e.g. us-east-1, {other}",
        ) from None


def _probe(uri: str, variable: str, prefix: str) -> bool:
    """Whether ``uri`` holds anything under ``prefix``; ``SettingsProblem`` when it cannot be read."""
    if not uri.startswith("s3://"):
        if "://" in uri and not uri.startswith("file://"):
            raise SettingsProblem(
                f"{variable}={uri} is neither a local folder nor s3://",
                f"set {variable} to s3://bucket/prefix or a folder",
            )
        folder = Path(uri.removeprefix("file://"))
        if not folder.is_dir():
            raise SettingsProblem(
                f"{variable}: folder {folder} does not exist",
                f"set {variable} to an existing folder (laid out like the bucket) or to s3://bucket[/prefix]",
            )
        return (folder / prefix).exists() if prefix else any(folder.iterdir())
    return _probe_s3(uri, variable, prefix)


def _probe_s3(uri: str, variable: str, prefix: str) -> bool:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    rest = uri[len("s3://") :]
    bucket, _, root = rest.partition("/")
    key_prefix = "/".join(p for p in (root.strip("/"), prefix) if p)
    try:
        page = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=key_prefix, MaxKeys=1)
    except NoCredentialsError:
        raise SettingsProblem(
            f"no AWS credentials to read {uri} ({variable})",
            f"set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; or point {variable} at a local folder",
        ) from None
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            raise SettingsProblem(
                f"{variable}: bucket {bucket} does not exist", f"check the bucket name in {variable}={uri}"
            ) from None
        if code in ("AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise SettingsProblem(
                f"{variable}: {code} listing {uri}",
                f"use credentials (AWS_PROFILE...) allowed s3:ListBucket on {bucket}, or check {variable}",
            ) from None
        raise SettingsProblem(
            f"{variable}: cannot list {uri} ({code})", f"check {variable} and the AWS settings"
        ) from None
    except BotoCoreError as exc:
        raise SettingsProblem(
            f"{variable}: cannot reach {uri}: {exc}", "check the network, AWS_REGION and AWS_ENDPOINT_URL"
        ) from None
    return bool(page.get("KeyCount") or page.get("Contents"))
