"""training_set -> ip_insights_model -> daily_insights: learn each identity's networks, score the day.

``PROACTIVE_MODEL_BACKEND`` picks who trains: ``local`` (numpy, artifact in the warehouse) or
``sagemaker`` (the built-in algorithm; ``model.json`` in the warehouse says where the model
is). Both go through the same assets, metadata and blocking AUC check; ``daily_insights`` asks
``training.load_scorer`` for whichever backend trained the day's model.
"""

import os
import time
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)

from proactive_assets.config import Settings
from proactive_assets.core import plots, remote_model, scoring, training
from proactive_assets.core.ipinsights import IPInsightsParams, train_ip_insights
from proactive_assets.core.sagemaker_backend import DEFAULT_ENDPOINT_NAME, SageMakerIPInsights
from proactive_assets.core.warehouse import Warehouse
from proactive_assets.defs.assets.ingest import learning_set, partition_day
from proactive_assets.defs.metadata import table_preview
from proactive_assets.defs.partitions import daily_partitions
from proactive_assets.defs.resources import ProactiveResource

AUC_FLOOR = 0.8
MODEL_PARAMS = IPInsightsParams()
# The partition mapping is fixed when the definitions load; the window length comes from the same setting.
WINDOW_DAYS = Settings.from_env().training_days


def sagemaker_backend(
    proactive: ProactiveResource, model_metadata: dict[str, Any] | None = None
) -> SageMakerIPInsights:
    """The SageMaker client for training (no metadata) or for scoring an existing model.

    Role, artifacts location, endpoint name and scoring mode come from the resource, region from
    the environment; a model is scored in the region and on the endpoint it was deployed to, and
    in the mode it was trained with unless PROACTIVE_SAGEMAKER_SCORING_MODE overrides it.
    """
    meta = model_metadata or {}
    region = meta.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    mode = proactive.sagemaker_scoring_mode or meta.get("scoring_mode") or "endpoint"
    endpoint = meta.get("endpoint_name") or proactive.sagemaker_endpoint_name or DEFAULT_ENDPOINT_NAME
    return SageMakerIPInsights(
        role_arn=proactive.sagemaker_role_arn,
        artifacts_uri=proactive.sagemaker_artifacts_uri,
        region=region,
        scoring_mode=mode.lower(),
        endpoint_name=endpoint,
    )


@asset(
    partitions_def=daily_partitions,
    deps=[
        AssetDep(learning_set, partition_mapping=TimeWindowPartitionMapping(start_offset=-WINDOW_DAYS, end_offset=-1))
    ],
    group_name="model",
    code_version="1",
    output_required=False,
    description="Union of learning_set over the days before D (never D itself): what model D learns from.",
)
def training_set(context: AssetExecutionContext, proactive: ProactiveResource):
    day = partition_day(context)
    warehouse = proactive.warehouse()
    table, used = training.build_training_set(warehouse, day, proactive.training_days)
    start, end = training.training_window(day, proactive.training_days)
    if len(used) < proactive.min_training_days:
        context.log.warning(
            f"skipping {day}: only {len(used)} day(s) with data in the training window {start}..{end}; "
            f"need at least {proactive.min_training_days} (PROACTIVE_MIN_TRAINING_DAYS)"
        )
        return
    warehouse.write_tables("training_set", day, {"training_set": table})
    yield MaterializeResult(
        metadata={
            "rows": table.num_rows,
            "events": int(sum(table.column("event_count").to_pylist())),
            "entities": training.distinct_entities(table),
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "days_with_data": used,
            "table": warehouse.uri_for("training_set", day),
        }
    )


@asset(
    partitions_def=daily_partitions,
    deps=[training_set],
    group_name="model",
    code_version="2",
    check_specs=[
        AssetCheckSpec(
            "validation_auc_floor",
            asset="ip_insights_model",
            blocking=True,
            description=f"validation AUC must be at least {AUC_FLOOR} to score with the model",
        )
    ],
    description="IP Insights model trained on training_set D; 'deployed' = ready to score day D.",
)
def ip_insights_model(context: AssetExecutionContext, proactive: ProactiveResource):
    day = partition_day(context)
    warehouse = proactive.warehouse()
    table = warehouse.read_table("training_set", day)
    start, end = training.training_window(day, proactive.training_days)
    window = {"window_start": start.isoformat(), "window_end": end.isoformat()}
    started = time.perf_counter()
    backend = proactive.model_backend
    if backend not in ("local", remote_model.BACKEND):
        raise ValueError(f"PROACTIVE_MODEL_BACKEND must be 'local' or '{remote_model.BACKEND}', got {backend!r}")
    if backend == remote_model.BACKEND:
        version, auc, metadata = _train_sagemaker(proactive, warehouse, day, table, window)
    else:
        version, auc, metadata = _train_local(warehouse, day, table, window)
    seconds = time.perf_counter() - started
    context.log.info(
        f"model {version} ({backend}) trained on {start}..{end}: validation AUC {auc:.3f} in {seconds:.1f}s"
    )
    yield MaterializeResult(
        metadata={
            "version": version,
            "backend": backend,
            "validation_auc": auc,
            "training_rows": table.num_rows,
            "training_seconds": round(seconds, 2),
            **window,
            **metadata,
        }
    )
    yield AssetCheckResult(
        check_name="validation_auc_floor",
        passed=bool(auc >= AUC_FLOOR),
        severity=AssetCheckSeverity.ERROR,
        metadata={"validation_auc": auc, "floor": AUC_FLOOR, "model_version": version},
    )


def _train_local(warehouse: Warehouse, day: date, table: pa.Table, window: dict) -> tuple[str, float, dict]:
    model = train_ip_insights(
        table.column("entity").to_pylist(),
        table.column("source_ip").to_pylist(),
        table.column("event_count").to_numpy(),
        MODEL_PARAMS,
    )
    artifact = training.save_model(warehouse, day, model, {**window, "training_rows": table.num_rows})
    auc = float(model.metadata.get("validation_auc", float("nan")))
    return (
        model.version,
        auc,
        {
            "hyperparameters": MetadataValue.json(model.params.to_dict()),
            "calibration": MetadataValue.json(model.metadata.get("calibration", {})),
            "artifact": artifact,
            **_roc_plot(model.metadata, auc),
        },
    )


def _train_sagemaker(
    proactive: ProactiveResource, warehouse: Warehouse, day: date, table: pa.Table, window: dict
) -> tuple[str, float, dict]:
    """Train, deploy (endpoint mode) and calibrate through SageMaker; the warehouse keeps model.json."""
    meta = remote_model.train_remote(sagemaker_backend(proactive), table, MODEL_PARAMS, day)
    model_json = training.save_remote_model(warehouse, day, meta, window)
    auc = meta["validation_auc"]
    auc = float("nan") if auc is None else float(auc)
    endpoint = meta.get("endpoint_name") or f"none ({meta.get('scoring_mode')} scoring)"
    return (
        meta["version"],
        auc,
        {
            "hyperparameters": MetadataValue.json(meta["hyperparameters"]),
            "calibration": MetadataValue.json(meta["calibration"]),
            "artifact": str(meta.get("model_artifact_uri")),
            "endpoint": endpoint,
            "scoring_mode": str(meta.get("scoring_mode")),
            "model_name": str(meta["model_name"]),
            "training_job_name": str(meta.get("training_job_name")),
            "validation_pairs": int(meta["validation_pairs"]),
            "skipped_ipv6": int(meta["skipped_ipv6"]),
            "model_json": model_json,
            **_roc_plot(meta, auc),
        },
    )


@asset(
    partitions_def=daily_partitions,
    deps=[learning_set, ip_insights_model],
    group_name="model",
    code_version="1",
    description="Every (entity, source_ip) pair of D scored by model D: insight in [0, 1], higher = more suspicious.",
)
def daily_insights(context: AssetExecutionContext, proactive: ProactiveResource) -> MaterializeResult:
    day = partition_day(context)
    warehouse = proactive.warehouse()
    pairs = warehouse.read_table("learning_set", day)
    score, meta = training.load_scorer(warehouse, day, lambda m: sagemaker_backend(proactive, m))
    version = str(meta["version"])
    insights = scoring.score_learning_set(pairs, score, version, day)
    warehouse.write_tables("daily_insights", day, {"daily_insights": insights})
    threshold = proactive.insight_threshold
    edges, counts = scoring.insight_histogram(insights)
    return MaterializeResult(
        metadata={
            "pairs_scored": insights.num_rows,
            "unknown_entities": int(insights.num_rows - sum(insights.column("entity_known").to_pylist())),
            "at_or_above_threshold": scoring.count_at_or_above(insights, threshold),
            "threshold": threshold,
            "model_version": version,
            "model_backend": str(meta.get("backend", "local")),
            "model_validation_auc": _auc(meta),
            **_unscored(insights),
            "training_window": f"{meta.get('window_start')}..{meta.get('window_end')}",
            "insight_histogram": MetadataValue.json({"bin_edges": edges, "counts": counts}),
            "insight_distribution": MetadataValue.md(
                plots.as_markdown_image(plots.insight_histogram_svg(edges, counts, threshold), "insight distribution")
            ),
            "table": warehouse.uri_for("daily_insights", day),
            "preview": table_preview(insights, ["entity", "source_ip", "insight", "dot_product", "event_count"]),
        }
    )


def _auc(meta: dict) -> float:
    value = meta.get("validation_auc")
    return float("nan") if value is None else float(value)


def _unscored(insights: pa.Table) -> dict:
    """Pairs the backend could not score (NaN insight: they never alert), and how many are IPv6."""
    if insights.num_rows == 0:
        return {"unscored_pairs": 0, "skipped_ipv6": 0}
    nan = pc.is_nan(insights.column("insight"))
    ipv6 = pc.match_substring(insights.column("source_ip"), ":")
    return {
        "unscored_pairs": int(pc.sum(nan).as_py() or 0),
        "skipped_ipv6": int(pc.sum(pc.and_(nan, ipv6)).as_py() or 0),
    }


def _roc_plot(model_metadata: dict, auc: float) -> dict:
    roc = model_metadata.get("roc") or {}
    if not roc.get("fpr"):
        return {}
    svg = plots.roc_svg(roc["fpr"], roc["tpr"], auc)
    return {"validation_roc": MetadataValue.md(plots.as_markdown_image(svg, "validation ROC"))}
