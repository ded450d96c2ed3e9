"""training_set -> ip_insights_model -> daily_insights: learn each identity's networks, score the day.

``PROACTIVE_MODEL_BACKEND`` picks who trains (``core.backends``); a stored model names the backend
that trained it, so ``daily_insights`` scores with whichever did. Both go through the same
assets, metadata and blocking AUC check.
"""

import functools
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    DailyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
    multi_asset,
)

from proactive_assets.config import Settings
from proactive_assets.core import plots, scoring, training
from proactive_assets.core.backends import ModelBackend, create_backend
from proactive_assets.core.evidence.detector import score_day, threshold_for, train_detector, window_index
from proactive_assets.core.evidence.networks import load_networks
from proactive_assets.core.model import IPInsightsParams, ScoreResult
from proactive_assets.core.model.warm import RetrainPlan, full_plan, plan_retraining
from proactive_assets.core.warehouse import Warehouse, WarehouseError
from proactive_assets.defs import tables
from proactive_assets.defs.metadata import PREVIEW_ROWS, table_preview
from proactive_assets.defs.model_store import MODEL_JSON, load_model, load_model_metadata, save_model
from proactive_assets.defs.partitions import day_has_logs, partition_day
from proactive_assets.defs.resources import ProactiveResource
from proactive_assets.defs.skips import record_skip

AUC_FLOOR = 0.8
MODEL_PARAMS = IPInsightsParams()
AUC_CHECK = AssetCheckSpec(
    "validation_auc_floor",
    asset=tables.IP_INSIGHTS_MODEL,
    blocking=True,
    description=f"validation AUC must be at least {AUC_FLOOR} to score with the model",
)


def model_assets(partitions: DailyPartitionsDefinition, training_days: int) -> list[AssetsDefinition]:
    """The model's assets; the training window (``training_days``) is fixed in the partition mapping."""

    @asset(
        name=tables.TRAINING_SET,
        partitions_def=partitions,
        deps=[
            AssetDep(
                AssetKey(tables.LEARNING_SET),
                partition_mapping=TimeWindowPartitionMapping(start_offset=-training_days, end_offset=-1),
            )
        ],
        group_name="model",
        code_version="1",
        output_required=False,
        description="Union of learning_set over the days before D (never D itself): what model D learns from.",
    )
    def training_set(context: AssetExecutionContext, proactive: ProactiveResource):
        day = partition_day(context)
        settings = proactive.settings
        warehouse = proactive.warehouse()
        learning_sets = {
            d: _training_columns(warehouse, d)
            for d in training.window_days(day, settings.training_days)
            if warehouse.has(tables.LEARNING_SET, d)
        }
        table, used = training.union_learning_sets(learning_sets)
        start, end = training.training_window(day, settings.training_days)
        if len(used) < settings.min_training_days:
            missing = [d for d in training.window_days(day, settings.training_days) if d not in learning_sets]
            reason = (
                f"only {len(used)} day(s) with data in the training window {start}..{end} "
                f"(need {settings.min_training_days}, PROACTIVE_MIN_TRAINING_DAYS)"
            )
            fix = _window_fix(missing, settings, lambda d: day_has_logs(settings, d, proactive.store))
            _skip(context, warehouse, tables.TRAINING_SET, day, reason, fix)
            return
        warehouse.write_tables(tables.TRAINING_SET, day, {tables.TRAINING_SET: table})
        yield MaterializeResult(
            metadata={
                "rows": table.num_rows,
                "events": int(sum(table.column("event_count").to_pylist())),
                "entities": training.distinct_entities(table),
                "window_start": start.isoformat(),
                "window_end": end.isoformat(),
                "days_with_data": used,
                "table": warehouse.uri_for(tables.TRAINING_SET, day),
            }
        )

    # A multi_asset only for ``can_subset``: it makes both the model and its check optional outputs,
    # so a window that cannot be validated skips the day (no model, no check, scoring skipped)
    # instead of failing the step for a missing check result.
    @multi_asset(
        name=tables.IP_INSIGHTS_MODEL,
        partitions_def=partitions,
        specs=[
            AssetSpec(
                tables.IP_INSIGHTS_MODEL,
                deps=[training_set],
                group_name="model",
                code_version="6",
                description="IP Insights model trained on training_set D; 'deployed' = ready to score day D.",
            )
        ],
        check_specs=[AUC_CHECK],
        can_subset=True,
    )
    def ip_insights_model(context: AssetExecutionContext, proactive: ProactiveResource):
        day = partition_day(context)
        settings = proactive.settings
        warehouse = proactive.warehouse()
        table = warehouse.read_table(tables.TRAINING_SET, day)
        start, end = training.training_window(day, settings.training_days)
        if AssetKey(tables.IP_INSIGHTS_MODEL) not in context.selected_asset_keys:  # the check alone: the stored model
            yield _auc_check(load_model_metadata(warehouse, day))
            return
        backend = create_backend(settings.model_backend, settings)
        networks = load_networks(settings.aws_ip_ranges, settings.cache_folder)
        plan = _retraining_plan(warehouse, day, backend, settings, (start, end))
        started = time.perf_counter()
        model = train_detector(
            table, backend, MODEL_PARAMS, day, networks, settings.alert_budget, plan, settings.training_days
        )
        seconds = time.perf_counter() - started
        if model.validation_auc is None:
            # No held-out pair, so neither the AUC floor nor the insight calibration can be measured:
            # scoring with such a model would make the threshold meaningless. Skip, and say why.
            _skip(context, warehouse, tables.IP_INSIGHTS_MODEL, day, *_unvalidated(table, start, end))
            return
        model.metadata.update(
            {"window_start": start.isoformat(), "window_end": end.isoformat(), "training_rows": table.num_rows}
        )
        locations = save_model(warehouse, day, model)
        auc = float(model.validation_auc)
        context.log.info(
            f"model {model.version} ({backend.name}) trained on {start}..{end}: "
            f"validation AUC {auc:.3f} in {seconds:.1f}s"
        )
        yield MaterializeResult(
            asset_key=tables.IP_INSIGHTS_MODEL,
            metadata={
                "version": model.version,
                "backend": backend.name,
                "validation_auc": auc,
                "training_rows": table.num_rows,
                "training_seconds": round(seconds, 2),
                **_retraining_metadata(model.metadata),
                "window_start": start.isoformat(),
                "window_end": end.isoformat(),
                **locations,
                **{name: _metadata_value(value) for name, value in backend.describe(model).items()},
                **_evidence_metadata(model.metadata),
                **_roc_plot(model.metadata, auc),
            },
        )
        if AUC_CHECK.key in context.selected_asset_check_keys:
            yield _auc_check(model.metadata)

    @asset(
        name=tables.DAILY_INSIGHTS,
        partitions_def=partitions,
        deps=[AssetKey(tables.LEARNING_SET), ip_insights_model],
        group_name="model",
        code_version="3",
        description=(
            "Every (entity, source_ip) pair of D scored by model D: insight in [0, 1], higher = more suspicious."
        ),
    )
    def daily_insights(context: AssetExecutionContext, proactive: ProactiveResource) -> MaterializeResult:
        day = partition_day(context)
        settings = proactive.settings
        warehouse = proactive.warehouse()
        pairs = warehouse.read_table(tables.LEARNING_SET, day)
        model = load_model(warehouse, day)
        backend = create_backend(model.backend, settings)
        networks = load_networks(settings.aws_ip_ranges, settings.cache_folder)

        @functools.cache
        def window() -> pa.Table:
            return warehouse.read_table(tables.TRAINING_SET, day)

        scorer = backend.scorer(model, window)
        scores = score_day(model, scorer, lambda: window_index(model, window, networks), pairs, networks)
        result = ScoreResult(scores.dot_product, scores.insight, scores.entity_known)
        insights = scoring.insights_table(pairs, result, model.version, day, scores.evidence_columns())
        warehouse.write_tables(tables.DAILY_INSIGHTS, day, {tables.DAILY_INSIGHTS: insights})
        threshold = threshold_for(model.metadata, settings.insight_threshold)
        edges, counts = scoring.insight_histogram(insights)
        return MaterializeResult(
            metadata={
                "pairs_scored": insights.num_rows,
                "unknown_entities": insights.num_rows - int(pc.sum(insights.column("entity_known")).as_py() or 0),
                "at_or_above_threshold": scoring.count_at_or_above(insights, threshold),
                "threshold": threshold,
                "model_version": model.version,
                "model_backend": model.backend,
                "model_validation_auc": _auc(model.metadata),
                **_unscored(insights),
                "training_window": f"{model.metadata.get('window_start')}..{model.metadata.get('window_end')}",
                "insight_histogram": MetadataValue.json({"bin_edges": edges, "counts": counts}),
                "insight_distribution": MetadataValue.md(
                    plots.as_markdown_image(
                        plots.insight_histogram_svg(edges, counts, threshold), "insight distribution"
                    )
                ),
                "table": warehouse.uri_for(tables.DAILY_INSIGHTS, day),
                "preview": table_preview(
                    scoring.riskiest_first(insights, PREVIEW_ROWS),
                    ["entity", "source_ip", "insight", "dot_product", "event_count"],
                ),
            }
        )

    return [training_set, ip_insights_model, daily_insights]


def _retraining_plan(
    warehouse: Warehouse, day: date, backend: ModelBackend, settings: Settings, window: tuple[date, date]
) -> RetrainPlan:
    """Warm-start from the model of D-1 (that partition only: never a later day's) when it is usable;
    either way, the false-alert estimates it recorded go to model D's threshold."""
    before = day - timedelta(days=1)
    previous, artifact, folds = None, None, None
    try:
        if warehouse.has_file(tables.IP_INSIGHTS_MODEL, before, MODEL_JSON):
            stored = load_model(warehouse, before, for_warm_start=True)
            previous, artifact, folds = stored.metadata, stored.artifact, stored.folds
    except (WarehouseError, OSError, ValueError) as exc:  # an unreadable model D-1 costs a full retrain, not the day
        return full_plan(f"the day before's model cannot be read ({type(exc).__name__}: {exc})")
    plan = plan_retraining(
        previous,
        artifact,
        backend=backend.name,
        warm_capable=bool(getattr(backend, "warm_start", False)),
        params=MODEL_PARAMS,
        window=window,
        full_every=settings.full_retrain_days,
        folds=folds,
    )
    budget = ((previous or {}).get("evidence") or {}).get("budget") or {}
    return replace(plan, earlier_false_alerts=budget.get("false_alert_estimates"))


def _retraining_metadata(model_metadata: dict) -> dict:
    """How the model was trained (warm from which model, or full and why), for the materialization."""
    retraining = model_metadata.get("retraining") or {}
    if retraining.get("mode") == "warm":
        summary = f"warm start from {retraining.get('warm_from')}"
    else:
        summary = f"full retrain: {retraining.get('reason', 'unknown')}"
    return {"retraining": summary, "retraining_detail": MetadataValue.json(retraining)}


def _training_columns(warehouse: Warehouse, day: date) -> pa.Table:
    """The training columns of a day's learning set (older partitions may lack some: they stay out)."""
    with warehouse.local_file(tables.LEARNING_SET, day) as path:
        present = set(pq.read_schema(path).names)
        return pq.read_table(path, columns=[c for c in training.TRAINING_COLUMNS if c in present])


def _skip(context: AssetExecutionContext, warehouse: Warehouse, asset: str, day: date, reason: str, fix: str) -> None:
    """Log why ``asset`` skips ``day`` and record it where ``proactive-assets insights`` finds it."""
    context.log.warning(f"skipping {day}: {reason}; {fix}")
    record_skip(warehouse, asset, day, reason, fix, context.run.run_id)


def _window_fix(missing: list[date], settings: Settings, has_logs: Callable[[date], bool]) -> str:
    """What would give the window enough days: ingest days with logs never ingested, an earlier start, or time."""
    first = date.fromisoformat(settings.start_date)
    ingestable = [d for d in missing if d >= first and has_logs(d)]
    if ingestable:
        return (
            f"ingest the {len(ingestable)} day(s) of the window that have logs but no learning_set "
            f"({ingestable[0]}..{ingestable[-1]}): `proactive-assets run` does it unless --no-history; "
            "in the UI, materialise the ingest group for those days"
        )
    if missing and missing[0] < first:
        return (
            f"the window starts before the first day partition {first} (PROACTIVE_START_DATE): "
            f"set PROACTIVE_START_DATE={missing[0]} if the logs go back that far"
        )
    return f"wait for more days of logs, or lower PROACTIVE_MIN_TRAINING_DAYS (now {settings.min_training_days})"


def _unvalidated(table: pa.Table, start: date, end: date) -> tuple[str, str]:
    """Why a window gave no validation pair (every identity needs one address kept for training)."""
    pairs = training.training_pairs(table)
    per_entity = pairs.group_by("entity").aggregate([("source_ip", "count")])
    several = int(pc.sum(pc.greater(per_entity.column("source_ip_count"), 1)).as_py() or 0)
    reason = (
        f"the training window {start}..{end} cannot be validated: {pairs.num_rows} (identity, address) pair(s) "
        f"of {per_entity.num_rows} identities, {several} of them with more than one address, leave no pair "
        "to hold out, so the model's AUC and the insight calibration cannot be measured"
    )
    fix = "more history (a longer PROACTIVE_TRAINING_DAYS) or more active identities in the window"
    return reason, fix


def _auc_check(meta: dict) -> AssetCheckResult:
    """The blocking quality gate: a model below ``AUC_FLOOR`` (or without a validation AUC) never scores."""
    auc = _auc(meta)
    return AssetCheckResult(
        asset_key=tables.IP_INSIGHTS_MODEL,
        check_name=AUC_CHECK.name,
        passed=bool(auc >= AUC_FLOOR),
        severity=AssetCheckSeverity.ERROR,
        metadata={"validation_auc": auc, "floor": AUC_FLOOR, "model_version": str(meta.get("version"))},
    )


def _auc(meta: dict) -> float:
    value = meta.get("validation_auc")
    return float("nan") if value is None else float(value)


def _metadata_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return MetadataValue.json(value)
    return "none" if value is None else value


def _unscored(insights: pa.Table) -> dict:
    """Pairs the model could not score (the evidence alone judged them), and how many are IPv6."""
    if insights.num_rows == 0:
        return {"unscored_pairs": 0, "skipped_ipv6": 0}
    nan = pc.is_nan(insights.column("ip_insights"))
    ipv6 = pc.match_substring(insights.column("source_ip"), ":")
    return {
        "unscored_pairs": int(pc.sum(nan).as_py() or 0),
        "skipped_ipv6": int(pc.sum(pc.and_(nan, ipv6)).as_py() or 0),
    }


def _evidence_metadata(model_metadata: dict) -> dict:
    """The detector's threshold, what it is expected to cost and catch, and what it was fitted on."""
    evidence = model_metadata.get("evidence") or {}
    budget = evidence.get("budget") or {}
    return {
        "threshold": float(model_metadata.get("threshold", float("nan"))),
        # the threshold from this model's validation days alone, and the models whose estimates were averaged
        "own_threshold": float(budget.get("own_threshold", model_metadata.get("threshold", float("nan")))),
        "threshold_averaged_over": budget.get("averaged_models", []),
        "expected_false_alerts_per_100_identities": float(
            budget.get("expected_false_alerts_per_100_identities_a_day", float("nan"))
        ),
        "expected_recall_on_synthetic_attacks": float(budget.get("expected_recall_on_synthetic_attacks", float("nan"))),
        "alert_budget_per_100_identities": float(budget.get("budget_per_100_identities_a_day", float("nan"))),
        "evidence_auc": float("nan") if evidence.get("evidence_auc") is None else float(evidence["evidence_auc"]),
        "evidence_validation_days": evidence.get("validation_days", []),
        "network_ranges": MetadataValue.json(evidence.get("networks", {})),
        "combiner": MetadataValue.json(evidence.get("combiner", {})),
    }


def _roc_plot(model_metadata: dict, auc: float) -> dict:
    roc = model_metadata.get("roc") or {}
    if not roc.get("fpr"):
        return {}
    svg = plots.roc_svg(roc["fpr"], roc["tpr"], auc)
    return {"validation_roc": MetadataValue.md(plots.as_markdown_image(svg, "validation ROC"))}
