"""Settings read from the environment variables that ../DESIGN.md names (all optional).

Kept free of Dagster so the CLI, the benchmarks and the Dagster resources read them the same way.
"""

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_INSIGHT_THRESHOLD = 0.85
DEFAULT_TRAINING_DAYS = 14
DEFAULT_MIN_TRAINING_DAYS = 3


def _csv(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _int(env: dict[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know about where data lives and how to treat it."""

    home: str
    cloudtrail_uri: str
    accounts: tuple[str, ...]
    regions: tuple[str, ...]
    security_lake_uri: str | None
    sqs_queue_url: str | None
    warehouse: str
    model_backend: str
    training_days: int
    min_training_days: int
    insight_threshold: float
    sns_topic_arn: str | None
    sagemaker_role_arn: str | None
    sagemaker_artifacts_uri: str | None
    sagemaker_scoring_mode: str | None = None
    sagemaker_endpoint_name: str | None = None

    @property
    def alerts_file(self) -> str:
        return str(Path(self.home) / "alerts.jsonl")

    @property
    def suppressions_file(self) -> str:
        return str(Path(self.home) / "suppressions.toml")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        home = env.get("PROACTIVE_HOME") or str(Path.cwd() / ".proactive")
        backend = (env.get("PROACTIVE_MODEL_BACKEND") or "local").lower()
        if backend not in ("local", "sagemaker"):
            raise ValueError(f"PROACTIVE_MODEL_BACKEND must be 'local' or 'sagemaker', got {backend!r}")
        return cls(
            home=home,
            cloudtrail_uri=env.get("PROACTIVE_CLOUDTRAIL_URI") or str(Path(home) / "sample"),
            accounts=_csv(env.get("PROACTIVE_ACCOUNTS")),
            regions=_csv(env.get("PROACTIVE_REGIONS")),
            security_lake_uri=env.get("PROACTIVE_SECURITY_LAKE_URI") or None,
            sqs_queue_url=env.get("PROACTIVE_SQS_QUEUE_URL") or None,
            warehouse=env.get("PROACTIVE_WAREHOUSE") or str(Path(home) / "warehouse"),
            model_backend=backend,
            training_days=_int(env, "PROACTIVE_TRAINING_DAYS", DEFAULT_TRAINING_DAYS),
            min_training_days=_int(env, "PROACTIVE_MIN_TRAINING_DAYS", DEFAULT_MIN_TRAINING_DAYS),
            insight_threshold=_float(env, "INSIGHT_THRESHOLD", DEFAULT_INSIGHT_THRESHOLD),
            sns_topic_arn=env.get("SNS_TOPIC_ARN") or None,
            sagemaker_role_arn=env.get("SAGEMAKER_ROLE_ARN") or None,
            sagemaker_artifacts_uri=env.get("PROACTIVE_SAGEMAKER_ARTIFACTS_URI") or None,
            sagemaker_scoring_mode=(env.get("PROACTIVE_SAGEMAKER_SCORING_MODE") or "").lower() or None,
            sagemaker_endpoint_name=env.get("PROACTIVE_SAGEMAKER_ENDPOINT_NAME") or None,
        )
