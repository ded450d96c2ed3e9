"""alerts: the day's insights at or above INSIGHT_THRESHOLD, explained, suppressed or published.

Values from logs are escaped in every line this asset logs, and the UI preview is a plain-text
table with one row per field, so nothing from a log becomes a link or a line of its own.
"""

from pathlib import Path

import pandas as pd
import pyarrow as pa
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    DailyPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from proactive_assets.core import suppressions, training
from proactive_assets.core.alert_rows import day_alerts
from proactive_assets.core.escaping import one_line
from proactive_assets.core.evidence.detector import threshold_for
from proactive_assets.core.publish import JsonLinesSink, ObjectStoreLedger, Sink, SnsSink, publish_alerts
from proactive_assets.defs import tables
from proactive_assets.defs.assets.cloudtrail import IO_RETRY
from proactive_assets.defs.metadata import record_preview
from proactive_assets.defs.model_store import load_model_metadata
from proactive_assets.defs.partitions import partition_day
from proactive_assets.defs.resources import ProactiveResource

ALERT_COLUMNS = [
    "alert_id",
    "day",
    "severity",
    "entity",
    "source_ip",
    "insight",
    "threshold",
    "dot_product",
    "event_count",
    "error_count",
    "access_denied_count",
    "event_names",
    "write_event_names",
    "user_agents",
    "first_seen",
    "last_seen",
    "accounts",
    "regions",
    "model_version",
    "entity_known",
    "ip_seen_for_entity_in_window",
    "nearest_known_network",
    "other_identities_on_ip_today",
    "other_identities_on_ip_in_window",
    "ip_insights",
    "novelty",
    "address_owner",
    "identity_churn",
    "known_network_today",
    "evidence_for",
    "evidence_against",
    "explanation",
    "source_files",
    "suppressed",
    "suppressed_by",
]


#: What the UI's preview shows of each alert, one field per row (the explanation wraps).
PREVIEW_FIELDS = [
    ("severity", "severity"),
    ("entity", "identity"),
    ("source_ip", "source IP"),
    ("insight", "insight"),
    ("threshold", "threshold"),
    ("event_count", "events"),
    ("write_event_names", "writes"),
    ("error_count", "errors"),
    ("access_denied_count", "AccessDenied"),
    ("user_agents", "user agents"),
    ("nearest_known_network", "nearest known network"),
    ("explanation", "explanation"),
    ("suppressed_by", "suppressed by"),
    ("published_to", "published to"),
]


def _possible_duplicates(sinks: list[Sink]) -> dict[str, list[str]]:
    """Alerts re-sent to a standard SNS topic after a lost response (consumers drop them by alert id)."""
    return {s.name: list(s.possible_duplicates) for s in sinks if getattr(s, "possible_duplicates", None)}


def _sinks(proactive: ProactiveResource) -> list[Sink]:
    sinks: list[Sink] = [JsonLinesSink(Path(proactive.settings.alerts_file))]
    if proactive.settings.sns_topic_arn:
        sinks.append(SnsSink(proactive.sns_client(), proactive.settings.sns_topic_arn))
    return sinks


def alert_assets(partitions: DailyPartitionsDefinition) -> list[AssetsDefinition]:
    @asset(
        name=tables.ALERTS,
        partitions_def=partitions,
        deps=[AssetKey(tables.DAILY_INSIGHTS), AssetKey(tables.TRAINING_SET)],
        group_name="alerts",
        retry_policy=IO_RETRY,
        code_version="1",
        description=(
            "Insights >= INSIGHT_THRESHOLD with an explanation and severity, and where each was published "
            "(exactly once to the file and SNS FIFO topics, at least once with the alert id elsewhere)."
        ),
    )
    def alerts(context: AssetExecutionContext, proactive: ProactiveResource) -> MaterializeResult:
        day = partition_day(context)
        warehouse = proactive.warehouse()
        settings = proactive.settings
        insights = warehouse.read_table(tables.DAILY_INSIGHTS, day)
        threshold = threshold_for(load_model_metadata(warehouse, day), settings.insight_threshold)
        window = training.training_window(day, settings.training_days)
        window_rows = warehouse.read_table(tables.TRAINING_SET, day, columns=list(training.PAIR_COLUMNS))
        explained = day_alerts(insights, window_rows, threshold, day, window)
        suppressions_path = Path(settings.suppressions_file)
        rules = suppressions.load_suppressions(suppressions_path) if suppressions_path.exists() else None
        applied = suppressions.apply_suppressions(explained, rules)

        ledger = ObjectStoreLedger(warehouse.store)
        sinks = _sinks(proactive)
        report = publish_alerts(applied, sinks, ledger, day=day, cloudtrail_location=settings.cloudtrail_uri)
        for row in applied.to_dict("records"):
            # Every value of a log line is escaped: a crafted ARN cannot add a line to the run's log.
            state = f"suppressed by {one_line(row['suppressed_by'])}" if row["suppressed"] else "alert"
            context.log.warning(
                f"{state} ({row['severity']}): {one_line(row['entity'])} from {one_line(row['source_ip'])} "
                f"insight={row['insight']:.3f} [{row['alert_id']}] {one_line(row['explanation'])}"
            )
        applied["published_to"] = [
            [s.name for s in sinks if ledger.already_published(aid, s.name)] for aid in applied["alert_id"]
        ]
        table = pa.Table.from_pandas(
            applied.reindex(columns=[*ALERT_COLUMNS, "published_to"]) if len(applied) else _empty(applied),
            preserve_index=False,
        )
        warehouse.write_tables(tables.ALERTS, day, {tables.ALERTS: table})
        model_meta = load_model_metadata(warehouse, day)
        metadata = {
            "alerts": len(applied),
            "published": len({p["alert_id"] for p in report.published}),
            "already_published": len({p["alert_id"] for p in report.skipped_already_published}),
            "suppressed": len(report.suppressed),
            "failed": len(report.failed),
            "threshold": threshold,
            "model_version": str(model_meta.get("version")),
            "model_validation_auc": float(model_meta.get("validation_auc", float("nan"))),
            "training_window": f"{window[0]}..{window[1]}",
            "sinks": [s.name for s in sinks],
            "possible_duplicates": MetadataValue.json(_possible_duplicates(sinks)),
            "alert_ids": MetadataValue.json(applied["alert_id"].tolist() if len(applied) else []),
            "table": warehouse.uri_for(tables.ALERTS, day),
            "preview": record_preview(table.to_pylist(), PREVIEW_FIELDS, "alert_id"),
        }
        if report.failed:
            context.log.error(f"{len(report.failed)} publish(es) failed: {report.failed[:5]}")
            raise Failure(
                description=f"{len(report.failed)} alert publish(es) failed; a retry sends only those "
                f"(first: {report.failed[0]['reason']})",
                metadata=metadata,
            )
        return MaterializeResult(metadata=metadata)

    return [alerts]


def _empty(frame: pd.DataFrame) -> pd.DataFrame:
    empty = pd.DataFrame({c: pd.Series(dtype="object") for c in [*ALERT_COLUMNS, "published_to"]})
    for column in ("insight", "dot_product", "threshold"):
        empty[column] = pd.Series(dtype="float64")
    return empty
