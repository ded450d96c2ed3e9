"""Settings: the one place the environment is read (every variable is optional; README lists them).

Each field names its environment variable once (its alias); pydantic parses and validates, and a
bad value becomes a one-line error naming the variable. No Dagster here: the CLI, the benchmarks
and the Dagster resource (``defs/resources.py``, which carries a ``Settings`` as its config) all
read the same object.
"""

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


def _env(*names: str) -> Any:
    return AliasChoices(*names)


class Settings(BaseModel):
    """Everything a run needs to know about where data lives and how to treat it."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    home: str = Field(default="", validation_alias=_env("home", "PROACTIVE_HOME"))
    cloudtrail_uri: str = Field(default="", validation_alias=_env("cloudtrail_uri", "PROACTIVE_CLOUDTRAIL_URI"))
    accounts: list[str] = Field(default=[], validation_alias=_env("accounts", "PROACTIVE_ACCOUNTS"))
    regions: list[str] = Field(default=[], validation_alias=_env("regions", "PROACTIVE_REGIONS"))
    security_lake_uri: str | None = Field(
        default=None, validation_alias=_env("security_lake_uri", "PROACTIVE_SECURITY_LAKE_URI")
    )
    sqs_queue_url: str | None = Field(default=None, validation_alias=_env("sqs_queue_url", "PROACTIVE_SQS_QUEUE_URL"))
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
    aws_ip_ranges: str | None = Field(
        default=None, validation_alias=_env("aws_ip_ranges", "PROACTIVE_AWS_IP_RANGES")
    )
    max_object_bytes: int = Field(
        default=DEFAULT_MAX_OBJECT_BYTES,
        ge=1024,
        le=1024 * 1024 * 1024,
        validation_alias=_env("max_object_bytes", "PROACTIVE_MAX_OBJECT_BYTES"),
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

    @field_validator("model_backend", "sagemaker_scoring_mode", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("model_backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        return _one_of(value, MODEL_BACKENDS)

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
    def alerts_file(self) -> str:
        return str(Path(self.home) / "alerts.jsonl")

    @property
    def suppressions_file(self) -> str:
        return str(Path(self.home) / "suppressions.toml")

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
