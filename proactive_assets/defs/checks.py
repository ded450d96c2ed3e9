"""Asset checks that read the partition's tables: parse ratio, quarantine, empty learning set, alert volume.

The model's AUC floor is a blocking check emitted by ``ip_insights_model`` itself; these are
warnings: they flag a day for a person without stopping the lineage.
"""

from datetime import date, timedelta

import pyarrow.compute as pc
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, asset_check

from proactive_assets.core import quality
from proactive_assets.defs.assets.alerts import alerts
from proactive_assets.defs.assets.ingest import cloudtrail_events, learning_set
from proactive_assets.defs.partitions import daily_partitions
from proactive_assets.defs.resources import ProactiveResource

HISTORY_DAYS = 14


def _day(context: AssetCheckExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


def _quarantine(proactive: ProactiveResource, day: date) -> tuple[int, int, int]:
    warehouse = proactive.warehouse()
    objects = warehouse.read_table("raw_cloudtrail", day, columns=["key"]).num_rows
    table = warehouse.read_table("cloudtrail_events", day, "quarantine")
    whole = pc.equal(table.column("record_index"), -1)
    quarantined = int(pc.sum(whole).as_py() or 0)
    listing = warehouse.read_table("raw_cloudtrail", day, "listing_problems").num_rows
    rejected = int(pc.sum(pc.and_(pc.invert(whole), table.column("record_rejected"))).as_py() or 0)
    return objects + listing, quarantined, rejected


@asset_check(asset=cloudtrail_events, partitions_def=daily_partitions, description="share of objects that parsed")
def cloudtrail_parse_ratio(context: AssetCheckExecutionContext, proactive: ProactiveResource) -> AssetCheckResult:
    objects, quarantined, _ = _quarantine(proactive, _day(context))
    ratio, verdict = quality.parse_ratio(objects, quarantined)
    return AssetCheckResult(
        passed=verdict.passed,
        severity=AssetCheckSeverity.WARN,
        description=verdict.description,
        metadata={"parse_ratio": ratio, "objects": objects, "quarantined_objects": quarantined},
    )


@asset_check(asset=cloudtrail_events, partitions_def=daily_partitions, description="no object quarantined")
def cloudtrail_quarantine(context: AssetCheckExecutionContext, proactive: ProactiveResource) -> AssetCheckResult:
    _, quarantined, rejected = _quarantine(proactive, _day(context))
    verdict = quality.quarantine_count(quarantined, rejected)
    return AssetCheckResult(
        passed=verdict.passed,
        severity=AssetCheckSeverity.WARN,
        description=verdict.description,
        metadata={"quarantined_objects": quarantined, "rejected_records": rejected},
    )


@asset_check(asset=learning_set, partitions_def=daily_partitions, description="the day has (entity, ip) pairs")
def learning_set_not_empty(context: AssetCheckExecutionContext, proactive: ProactiveResource) -> AssetCheckResult:
    rows = proactive.warehouse().read_table("learning_set", _day(context), columns=["entity"]).num_rows
    return AssetCheckResult(
        passed=rows > 0,
        severity=AssetCheckSeverity.WARN,
        description=f"{rows} pair(s)"
        if rows
        else "no pairs: empty day, filters too narrow, or every object quarantined",
        metadata={"pairs": rows},
    )


@asset_check(asset=alerts, partitions_def=daily_partitions, description="alert count within its recent norm")
def alert_volume(context: AssetCheckExecutionContext, proactive: ProactiveResource) -> AssetCheckResult:
    warehouse = proactive.warehouse()
    day = _day(context)
    today = warehouse.read_table("alerts", day, columns=["alert_id"]).num_rows
    history = [
        warehouse.read_table("alerts", d, columns=["alert_id"]).num_rows
        for d in (day - timedelta(days=i) for i in range(1, HISTORY_DAYS + 1))
        if warehouse.has("alerts", d)
    ]
    bound, verdict = quality.alert_volume(today, history)
    return AssetCheckResult(
        passed=verdict.passed,
        severity=AssetCheckSeverity.WARN,
        description=verdict.description,
        metadata={"alerts": today, "bound": bound, "history_days": len(history)},
    )


ASSET_CHECKS = [cloudtrail_parse_ratio, cloudtrail_quarantine, learning_set_not_empty, alert_volume]
