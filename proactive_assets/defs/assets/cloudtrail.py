"""raw_cloudtrail -> cloudtrail_events: the day's CloudTrail objects, listed, then read into events."""

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Backoff,
    DailyPartitionsDefinition,
    DataVersion,
    Failure,
    MaterializeResult,
    RetryPolicy,
    asset,
)

from proactive_assets.core.escaping import one_line
from proactive_assets.core.events import problems_from_table, problems_table, write_events
from proactive_assets.core.sources import cloudtrail
from proactive_assets.core.storage import SourceUnavailable
from proactive_assets.defs import tables
from proactive_assets.defs.metadata import event_metadata, log_quarantined, table_preview, text_list
from proactive_assets.defs.partitions import partition_day
from proactive_assets.defs.resources import ProactiveResource

#: Reading object stores: transient failures (throttling, a dropped connection) deserve a retry.
IO_RETRY = RetryPolicy(max_retries=2, delay=2, backoff=Backoff.EXPONENTIAL)


def cloudtrail_assets(partitions: DailyPartitionsDefinition) -> list[AssetsDefinition]:
    @asset(
        name=tables.RAW_CLOUDTRAIL,
        partitions_def=partitions,
        group_name="ingest",
        retry_policy=IO_RETRY,
        code_version="1",
        description="Inventory of the day's CloudTrail log objects (all pages, accounts, regions; no digests).",
    )
    def raw_cloudtrail(context: AssetExecutionContext, proactive: ProactiveResource) -> MaterializeResult:
        day = partition_day(context)
        settings = proactive.settings
        try:
            store = proactive.store(settings.cloudtrail_uri)
            listing = cloudtrail.list_day(store, day, settings.accounts, settings.regions)
        except SourceUnavailable as exc:
            raise Failure(
                description=f"CloudTrail source {settings.cloudtrail_uri}: {exc}", allow_retries=False
            ) from exc
        objects = listing.objects
        inventory = cloudtrail.inventory_table(objects)
        proactive.warehouse().write_tables(
            tables.RAW_CLOUDTRAIL,
            day,
            {tables.RAW_CLOUDTRAIL: inventory, tables.LISTING_PROBLEMS: problems_table(listing.problems)},
        )
        for problem in listing.problems:
            context.log.warning(f"skipped {one_line(problem.message())}")
        if not objects:
            context.log.warning(f"no CloudTrail objects for {day} under {store.uri}")
        return MaterializeResult(
            data_version=DataVersion(cloudtrail.inventory_digest(objects)),
            metadata={
                "source": store.uri,
                "objects": len(objects),
                "bytes": int(sum(o.info.size for o in objects)),
                "skipped_objects": len(listing.problems),
                "accounts": sorted({o.account for o in objects}),
                "regions": sorted({o.region for o in objects}),
                "org_ids": sorted({o.org_id for o in objects if o.org_id}),
                "object_keys": text_list([o.info.key for o in objects]),
                "preview": table_preview(inventory, ["key", "size", "account", "region", "delivered_at"]),
            },
        )

    @asset(
        name=tables.CLOUDTRAIL_EVENTS,
        partitions_def=partitions,
        deps=[raw_cloudtrail],
        group_name="ingest",
        retry_policy=IO_RETRY,
        code_version="2",
        description="Normalised CloudTrail events of the day, plus the quarantine of unreadable objects/records.",
    )
    def cloudtrail_events(context: AssetExecutionContext, proactive: ProactiveResource) -> MaterializeResult:
        day = partition_day(context)
        warehouse = proactive.warehouse()
        inventory = warehouse.read_table(tables.RAW_CLOUDTRAIL, day)
        skipped = warehouse.read_table(tables.RAW_CLOUDTRAIL, day, tables.LISTING_PROBLEMS)
        objects = cloudtrail.objects_from_inventory(inventory)
        store = proactive.store(proactive.settings.cloudtrail_uri)
        with warehouse.partition(tables.CLOUDTRAIL_EVENTS, day) as out:
            tally, quarantine = write_events(
                out,
                tables.CLOUDTRAIL_EVENTS,
                tables.QUARANTINE,
                cloudtrail.read(
                    store,
                    objects,
                    max_object_bytes=proactive.settings.max_object_bytes,
                    workers=proactive.settings.ingest_workers,
                ),
                problems_from_table(skipped),
            )
        log_quarantined(context, tally)
        return MaterializeResult(
            metadata={
                **event_metadata(tally, quarantine, len(objects), skipped.num_rows),
                "problems_not_listed": tally.unlisted_problems,
                "bytes": int(sum(o.info.size for o in objects)),
                "table": warehouse.uri_for(tables.CLOUDTRAIL_EVENTS, day),
            }
        )

    return [raw_cloudtrail, cloudtrail_events]
