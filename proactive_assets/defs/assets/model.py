"""training_set -> ip_insights_model -> daily_insights: learn each identity's networks, score the day."""

import time

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
from proactive_assets.core import plots, scoring, training
from proactive_assets.core.ipinsights import IPInsightsParams, train_ip_insights
from proactive_assets.defs.assets.ingest import learning_set, partition_day
from proactive_assets.defs.metadata import table_preview
from proactive_assets.defs.partitions import daily_partitions
from proactive_assets.defs.resources import ProactiveResource

AUC_FLOOR = 0.8
MODEL_PARAMS = IPInsightsParams()
# The partition mapping is fixed when the definitions load; the window length comes from the same setting.
WINDOW_DAYS = Settings.from_env().training_days


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
    code_version="1",
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
    started = time.perf_counter()
    model = train_ip_insights(
        table.column("entity").to_pylist(),
        table.column("source_ip").to_pylist(),
        table.column("event_count").to_numpy(),
        MODEL_PARAMS,
    )
    seconds = time.perf_counter() - started
    window = {"window_start": start.isoformat(), "window_end": end.isoformat()}
    artifact = training.save_model(warehouse, day, model, {**window, "training_rows": table.num_rows})
    auc = float(model.metadata.get("validation_auc", float("nan")))
    context.log.info(f"model {model.version} trained on {start}..{end}: validation AUC {auc:.3f} in {seconds:.1f}s")
    yield MaterializeResult(
        metadata={
            "version": model.version,
            "backend": "local",
            "validation_auc": auc,
            "training_rows": table.num_rows,
            "training_seconds": round(seconds, 2),
            **window,
            "hyperparameters": MetadataValue.json(model.params.to_dict()),
            "calibration": MetadataValue.json(model.metadata.get("calibration", {})),
            "artifact": artifact,
            **_roc_plot(model.metadata, auc),
        }
    )
    yield AssetCheckResult(
        check_name="validation_auc_floor",
        passed=bool(auc >= AUC_FLOOR),
        severity=AssetCheckSeverity.ERROR,
        metadata={"validation_auc": auc, "floor": AUC_FLOOR, "model_version": model.version},
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
    model, meta = training.load_model(warehouse, day)
    insights = scoring.score_learning_set(pairs, model.score, model.version, day)
    warehouse.write_tables("daily_insights", day, {"daily_insights": insights})
    threshold = proactive.insight_threshold
    edges, counts = scoring.insight_histogram(insights)
    return MaterializeResult(
        metadata={
            "pairs_scored": insights.num_rows,
            "unknown_entities": int(insights.num_rows - sum(insights.column("entity_known").to_pylist())),
            "at_or_above_threshold": scoring.count_at_or_above(insights, threshold),
            "threshold": threshold,
            "model_version": model.version,
            "model_validation_auc": float(meta.get("validation_auc", float("nan"))),
            "training_window": f"{meta.get('window_start')}..{meta.get('window_end')}",
            "insight_histogram": MetadataValue.json({"bin_edges": edges, "counts": counts}),
            "insight_distribution": MetadataValue.md(
                plots.as_markdown_image(plots.insight_histogram_svg(edges, counts, threshold), "insight distribution")
            ),
            "table": warehouse.uri_for("daily_insights", day),
            "preview": table_preview(insights, ["entity", "source_ip", "insight", "dot_product", "event_count"]),
        }
    )


def _roc_plot(model_metadata: dict, auc: float) -> dict:
    roc = model_metadata.get("roc") or {}
    if not roc.get("fpr"):
        return {}
    svg = plots.roc_svg(roc["fpr"], roc["tpr"], auc)
    return {"validation_roc": MetadataValue.md(plots.as_markdown_image(svg, "validation ROC"))}
