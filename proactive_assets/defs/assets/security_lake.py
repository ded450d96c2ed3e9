"""security_lake_activity: the day's Amazon Security Lake OCSF Parquet as (entity, IP) activity.

The columns of ``cloudtrail_events`` plus ``event_count`` and ``last_event_time`` (a network row
is one (resource, remote endpoint) pair of an object), so ``learning_set`` reads both. Rows that
make no pair are counted by reason in the metadata (``unpaired_reasons``), never quarantined. Nothing here is
fatal for the day: unreadable Parquet, an object whose columns belong to the other OCSF version,
and folders of sources or versions the project does not map are quarantined with a reason. When
``PROACTIVE_SECURITY_LAKE_URI`` is not set the asset still materialises (empty tables, ``status:
not configured``), so the lineage is the same for every deployment. For lakes too large to read
object by object, see ``athena.py``.
"""

from collections.abc import Iterable
from datetime import date
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    DailyPartitionsDefinition,
    Failure,
    MaterializeResult,
    asset,
)

from proactive_assets.core.escaping import one_line
from proactive_assets.core.events import EventBatch, Problem, problems_table, write_events
from proactive_assets.core.sources import security_lake
from proactive_assets.core.sources.ocsf import ACTIVITY_SCHEMA
from proactive_assets.core.sources.security_lake import LakeTally
from proactive_assets.core.storage import SourceUnavailable
from proactive_assets.core.warehouse import Warehouse
from proactive_assets.defs import tables
from proactive_assets.defs.assets.cloudtrail import IO_RETRY
from proactive_assets.defs.metadata import event_metadata, log_quarantined, text_list
from proactive_assets.defs.partitions import partition_day
from proactive_assets.defs.resources import ProactiveResource


def write_activity_partition(
    context: AssetExecutionContext,
    warehouse: Warehouse,
    day: date,
    batches: Iterable[EventBatch],
    objects: int,
    skipped: list[Problem] | None = None,
    lake: LakeTally | None = None,
) -> dict[str, Any]:
    """Stream the batches into the ``security_lake_activity`` partition; returns the metadata.

    ``events`` counts the table's rows (a network row is one pair of an object with its
    ``event_count``); ``lake`` adds the rows read and why rows made no pair.
    """
    skipped = skipped or []
    with warehouse.partition(tables.SECURITY_LAKE_ACTIVITY, day) as out:
        tally, quarantine = write_events(
            out, tables.SECURITY_LAKE_ACTIVITY, tables.QUARANTINE, batches, skipped, schema=ACTIVITY_SCHEMA
        )
    log_quarantined(context, tally)
    return {
        **event_metadata(tally, quarantine, objects),
        **(lake.metadata() if lake is not None else {}),
        "skipped_folders": len(skipped),
        "table": warehouse.uri_for(tables.SECURITY_LAKE_ACTIVITY, day),
    }


def write_not_configured(context: AssetExecutionContext, warehouse: Warehouse, day: date) -> MaterializeResult:
    """Empty tables, so learning_set and the lineage look the same with or without Security Lake."""
    warehouse.write_tables(
        tables.SECURITY_LAKE_ACTIVITY,
        day,
        {tables.SECURITY_LAKE_ACTIVITY: ACTIVITY_SCHEMA.empty_table(), tables.QUARANTINE: problems_table([])},
    )
    context.log.info("PROACTIVE_SECURITY_LAKE_URI is not set: Security Lake is not configured")
    return MaterializeResult(
        metadata={"status": "not configured", "objects": 0, "events": 0, "pair_events": 0, "quarantined_objects": 0}
    )


def security_lake_assets(partitions: DailyPartitionsDefinition) -> list[AssetsDefinition]:
    @asset(
        name=tables.SECURITY_LAKE_ACTIVITY,
        partitions_def=partitions,
        group_name="ingest",
        retry_policy=IO_RETRY,
        code_version="2",
        description=(
            "(entity, IP) activity of the day from Security Lake OCSF Parquet: CloudTrail mgmt callers and their "
            "addresses, VPC Flow and Route 53 resources and the remote ends they talk to (source versions 1.0 "
            "and 2.0); the columns of cloudtrail_events plus event counts; empty when not configured."
        ),
    )
    def security_lake_activity(context: AssetExecutionContext, proactive: ProactiveResource) -> MaterializeResult:
        day = partition_day(context)
        settings = proactive.settings
        warehouse = proactive.warehouse()
        if not settings.security_lake_uri:
            return write_not_configured(context, warehouse, day)
        try:
            store = proactive.store(settings.security_lake_uri)
            listing = security_lake.list_day(store, day, settings.accounts, settings.regions)
        except SourceUnavailable as exc:
            raise Failure(
                description=f"Security Lake source {settings.security_lake_uri}: {exc}", allow_retries=False
            ) from exc
        for problem in listing.problems:
            context.log.info(f"skipped {one_line(problem.message())}")
        if not listing.objects:
            context.log.warning(f"no Security Lake objects for {day} under {store.uri}")
        lake = LakeTally()
        batches = security_lake.read(store, listing.objects, lake)
        metadata = write_activity_partition(
            context, warehouse, day, batches, len(listing.objects), listing.problems, lake
        )
        return MaterializeResult(
            metadata={
                "status": "configured",
                "source": store.uri,
                "bytes": int(sum(info.size for info in listing.objects)),
                **metadata,
                "object_keys": text_list([info.key for info in listing.objects]),
            }
        )

    return [security_lake_activity]
