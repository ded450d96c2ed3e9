"""raw_cloudtrail -> cloudtrail_events -> learning_set: the day's CloudTrail, read and paired."""

from contextlib import ExitStack
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dagster import (
    AssetExecutionContext,
    AssetKey,
    Backoff,
    DataVersion,
    Failure,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
)

from proactive_assets.core import cloudtrail, pairs
from proactive_assets.core.storage import SourceUnavailable
from proactive_assets.defs.metadata import PREVIEW_ROWS, table_preview, text_list
from proactive_assets.defs.partitions import daily_partitions
from proactive_assets.defs.resources import ProactiveResource

IO_RETRY = RetryPolicy(max_retries=2, delay=2, backoff=Backoff.EXPONENTIAL)


def partition_day(context: AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


@asset(
    partitions_def=daily_partitions,
    group_name="ingest",
    retry_policy=IO_RETRY,
    code_version="1",
    description="Inventory of the day's CloudTrail log objects (all pages, accounts, regions; no digests).",
)
def raw_cloudtrail(context: AssetExecutionContext, proactive: ProactiveResource) -> MaterializeResult:
    day = partition_day(context)
    try:
        store = proactive.cloudtrail_store()
        objects, problems = cloudtrail.list_day_objects(store, day, proactive.accounts, proactive.regions)
    except SourceUnavailable as exc:
        raise Failure(description=f"CloudTrail source {proactive.cloudtrail_uri}: {exc}", allow_retries=False) from exc
    inventory = cloudtrail.inventory_table(objects)
    proactive.warehouse().write_tables(
        "raw_cloudtrail",
        day,
        {"raw_cloudtrail": inventory, "listing_problems": cloudtrail.problems_table(problems)},
    )
    for problem in problems:
        context.log.warning(f"skipped {problem.message()}")
    if not objects:
        context.log.warning(f"no CloudTrail objects for {day} under {store.uri}")
    return MaterializeResult(
        data_version=DataVersion(cloudtrail.inventory_digest(objects)),
        metadata={
            "source": store.uri,
            "objects": len(objects),
            "bytes": int(sum(o.info.size for o in objects)),
            "skipped_objects": len(problems),
            "accounts": sorted({o.account for o in objects}),
            "regions": sorted({o.region for o in objects}),
            "org_ids": sorted({o.org_id for o in objects if o.org_id}),
            "object_keys": text_list([o.info.key for o in objects]),
            "preview": table_preview(inventory, ["key", "size", "account", "region", "delivered_at"]),
        },
    )


@asset(
    partitions_def=daily_partitions,
    deps=[raw_cloudtrail],
    group_name="ingest",
    retry_policy=IO_RETRY,
    code_version="1",
    description="Normalised CloudTrail events of the day, plus the quarantine of unreadable objects/records.",
)
def cloudtrail_events(context: AssetExecutionContext, proactive: ProactiveResource) -> MaterializeResult:
    day = partition_day(context)
    warehouse = proactive.warehouse()
    inventory = warehouse.read_table("raw_cloudtrail", day)
    listing_problems = warehouse.read_table("raw_cloudtrail", day, "listing_problems")
    objects = [
        cloudtrail.LogObject(
            info=cloudtrail.ObjectInfo(row["key"], row["size"], row["etag"], row["last_modified"]),
            uri=row["uri"],
            org_id=row["org_id"],
            account=row["account"],
            region=row["region"],
            delivered_at=row["delivered_at"],
        )
        for row in inventory.to_pylist()
    ]
    store = proactive.cloudtrail_store()
    problems: list[cloudtrail.Problem] = []
    events = pairs_count = 0
    accounts: set[str] = set()
    regions: set[str] = set()
    quarantined: list[str] = []
    head = cloudtrail.EVENTS_SCHEMA.empty_table()
    with warehouse.partition("cloudtrail_events", day) as out:
        out.append("cloudtrail_events", cloudtrail.EVENTS_SCHEMA.empty_table())
        for _members, parsed in cloudtrail.iter_day_events(store, objects):
            out.append("cloudtrail_events", parsed.events)
            if head.num_rows < PREVIEW_ROWS:
                head = pa.concat_tables([head, parsed.events.slice(0, PREVIEW_ROWS)])
            problems.extend(parsed.problems)
            for problem in parsed.problems:
                if problem.record_index < 0:
                    quarantined.append(problem.source_file)
                    context.log.warning(f"quarantined {problem.message()}")
            events += parsed.events.num_rows
            pairs_count += int(pc.sum(parsed.events.column("is_pair")).as_py() or 0)
            accounts.update(a for a in pc.unique(parsed.events.column("account")).to_pylist() if a)
            regions.update(r for r in pc.unique(parsed.events.column("region")).to_pylist() if r)
        quarantine = pa.concat_tables([listing_problems, cloudtrail.problems_table(problems)])
        out.write_table("quarantine", quarantine)
    rejected = sum(1 for p in problems if p.record_index >= 0 and p.record_rejected)
    parsed_objects = len(objects) - len(quarantined)
    return MaterializeResult(
        metadata={
            "objects": len(objects),
            "objects_parsed": parsed_objects,
            "bytes": int(sum(o.info.size for o in objects)),
            "events": events,
            "pair_events": pairs_count,
            "rejected_records": rejected,
            "quarantined_objects": len(quarantined) + listing_problems.num_rows,
            "parse_ratio": float(parsed_objects / len(objects)) if objects else 1.0,
            "quarantine": table_preview(quarantine, rows=20) if quarantine.num_rows else MetadataValue.md("(none)"),
            "accounts": sorted(accounts),
            "regions": sorted(regions),
            "table": warehouse.uri_for("cloudtrail_events", day),
            "preview": table_preview(
                head, ["event_time", "event_name", "identity_arn", "source_ip", "source_kind", "account", "region"]
            ),
        }
    )


@asset(
    partitions_def=daily_partitions,
    # security_lake_activity by key: its module imports this one (IO_RETRY, partition_day).
    deps=[cloudtrail_events, AssetKey("security_lake_activity")],
    group_name="ingest",
    code_version="2",
    description=(
        "One row per (entity, source_ip) of the day from CloudTrail and Security Lake: counts, "
        "first/last seen, event names, sources."
    ),
)
def learning_set(context: AssetExecutionContext, proactive: ProactiveResource) -> MaterializeResult:
    day = partition_day(context)
    warehouse = proactive.warehouse()
    with ExitStack() as stack:
        sources = [stack.enter_context(warehouse.local_file("cloudtrail_events", day))]
        # Security Lake is optional: a partition that was never materialised simply adds nothing.
        lake_rows = 0
        if warehouse.has("security_lake_activity", day):
            sources.append(stack.enter_context(warehouse.local_file("security_lake_activity", day)))
            lake_rows = int(pc.sum(pq.read_table(sources[-1], columns=["is_pair"]).column("is_pair")).as_py() or 0)
        else:
            context.log.info(f"no security_lake_activity partition for {day}: CloudTrail pairs only")
        table, stats = pairs.build_learning_set(*sources)
    with warehouse.partition("learning_set", day) as out:
        out.write_table("learning_set", table)
        out.write_bytes("learning.csv", pairs.sagemaker_csv(table))
    if table.num_rows == 0:
        context.log.warning(f"learning set for {day} is empty")
    return MaterializeResult(
        data_version=DataVersion(pairs.table_digest(table)),
        metadata={
            **{k: int(v) for k, v in stats.items()},
            "security_lake_pair_events": lake_rows,
            "sources": sorted(pc.unique(pc.list_flatten(table.column("sources"))).to_pylist()),
            "table": warehouse.uri_for("learning_set", day),
            "sagemaker_csv": warehouse.store.uri_for(warehouse.key("learning_set", day, "learning.csv")),
            "preview": table_preview(table, ["entity", "source_ip", "event_count", "event_names", "accounts"]),
        },
    )
