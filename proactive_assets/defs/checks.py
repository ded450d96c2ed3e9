"""Asset checks that read the partition's tables: parse ratio, quarantine, empty learning set, alert volume.

The model's AUC floor is a blocking check emitted by ``ip_insights_model`` itself; these are
warnings: they flag a day for a person without stopping the lineage.
"""

from datetime import date, timedelta

import pyarrow.compute as pc
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    DailyPartitionsDefinition,
    asset_check,
)

from proactive_assets.core import quality
from proactive_assets.defs import tables
from proactive_assets.defs.partitions import partition_day
from proactive_assets.defs.resources import ProactiveResource

HISTORY_DAYS = 14


def _quarantine(proactive: ProactiveResource, day: date) -> tuple[int, int, int]:
    warehouse = proactive.warehouse()
    objects = warehouse.read_table(tables.RAW_CLOUDTRAIL, day, columns=["key"]).num_rows
    table = warehouse.read_table(tables.CLOUDTRAIL_EVENTS, day, tables.QUARANTINE)
    whole = pc.equal(table.column("record_index"), -1)
    quarantined = int(pc.sum(whole).as_py() or 0)
    listing = warehouse.read_table(tables.RAW_CLOUDTRAIL, day, tables.LISTING_PROBLEMS).num_rows
    rejected = int(pc.sum(pc.and_(pc.invert(whole), table.column("record_rejected"))).as_py() or 0)
    return objects + listing, quarantined, rejected


def asset_checks(partitions: DailyPartitionsDefinition) -> list[AssetChecksDefinition]:

    @asset_check(asset=tables.CLOUDTRAIL_EVENTS, partitions_def=partitions, description="share of objects that parsed")
    def cloudtrail_parse_ratio(context: AssetCheckExecutionContext, proactive: ProactiveResource) -> AssetCheckResult:
        objects, quarantined, _ = _quarantine(proactive, partition_day(context))
        ratio, verdict = quality.parse_ratio(objects, quarantined)
        return AssetCheckResult(
            passed=verdict.passed,
            severity=AssetCheckSeverity.WARN,
            description=verdict.description,
            metadata={"parse_ratio": ratio, "objects": objects, "quarantined_objects": quarantined},
        )

    @asset_check(asset=tables.CLOUDTRAIL_EVENTS, partitions_def=partitions, description="no object quarantined")
    def cloudtrail_quarantine(context: AssetCheckExecutionContext, proactive: ProactiveResource) -> AssetCheckResult:
        _, quarantined, rejected = _quarantine(proactive, partition_day(context))
        verdict = quality.quarantine_count(quarantined, rejected)
        return AssetCheckResult(
            passed=verdict.passed,
            severity=AssetCheckSeverity.WARN,
            description=verdict.description,
            metadata={"quarantined_objects": quarantined, "rejected_records": rejected},
        )

    @asset_check(asset=tables.LEARNING_SET, partitions_def=partitions, description="the day has (entity, ip) pairs")
    def learning_set_not_empty(context: AssetCheckExecutionContext, proactive: ProactiveResource) -> AssetCheckResult:
        rows = (
            proactive.warehouse().read_table(tables.LEARNING_SET, partition_day(context), columns=["entity"]).num_rows
        )
        return AssetCheckResult(
            passed=rows > 0,
            severity=AssetCheckSeverity.WARN,
            description=f"{rows} pair(s)"
            if rows
            else "no pairs: empty day, filters too narrow, or every object quarantined",
            metadata={"pairs": rows},
        )

    @asset_check(asset=tables.ALERTS, partitions_def=partitions, description="alert count within its recent norm")
    def alert_volume(context: AssetCheckExecutionContext, proactive: ProactiveResource) -> AssetCheckResult:
        warehouse = proactive.warehouse()
        day = partition_day(context)
        today = warehouse.read_table(tables.ALERTS, day, columns=["alert_id"]).num_rows
        history = [
            warehouse.read_table(tables.ALERTS, d, columns=["alert_id"]).num_rows
            for d in (day - timedelta(days=i) for i in range(1, HISTORY_DAYS + 1))
            if warehouse.has(tables.ALERTS, d)
        ]
        bound, verdict = quality.alert_volume(today, history)
        return AssetCheckResult(
            passed=verdict.passed,
            severity=AssetCheckSeverity.WARN,
            description=verdict.description,
            metadata={"alerts": today, "bound": bound, "history_days": len(history)},
        )

    return [cloudtrail_parse_ratio, cloudtrail_quarantine, learning_set_not_empty, alert_volume]
