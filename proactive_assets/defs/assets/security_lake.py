"""security_lake_activity: the day's Amazon Security Lake OCSF Parquet as (entity, IP) activity.

Security Lake stores ``aws/<SOURCE>/<version>/region=<r>/accountId=<id>/eventDay=<YYYYMMDD>/``
objects. For day D this asset walks that layout for the sources the project maps
(``CLOUD_TRAIL_MGMT``, ``VPC_FLOW``, ``ROUTE53``; source versions 1.0 and 2.0), honours the
account/region filters, and streams every object through ``core.security_lake`` into the
same columns as ``cloudtrail_events`` - so ``learning_set`` simply concatenates the two.

Nothing here is fatal for the day: unreadable Parquet, an object whose columns belong to the
other OCSF version, an object that is not a Security Lake key, and folders of sources or
versions the project does not map are recorded in the ``quarantine`` table with a reason.
When ``PROACTIVE_SECURITY_LAKE_URI`` is not set the asset still materialises (empty tables,
``status: not configured``) so that the lineage is the same for every deployment.

For lakes too large to read object by object, see ``proactive_assets.defs.athena``.
"""

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from proactive_assets.core import cloudtrail
from proactive_assets.core.security_lake import (
    ACTIVITY_SCHEMA,
    SUPPORTED_SOURCES,
    SUPPORTED_VERSIONS,
    OcsfActivity,
    OcsfSchemaError,
    read_ocsf_parquet,
)
from proactive_assets.core.storage import ObjectInfo, ObjectStore, SourceUnavailable
from proactive_assets.core.warehouse import Warehouse
from proactive_assets.defs.assets.ingest import IO_RETRY, partition_day
from proactive_assets.defs.metadata import PREVIEW_ROWS, table_preview, text_list
from proactive_assets.defs.partitions import daily_partitions
from proactive_assets.defs.resources import ProactiveResource

ASSET = "security_lake_activity"
#: Top-level folders of a Security Lake bucket: native sources and custom sources.
NATIVE, CUSTOM = "aws/", "ext/"


def _leaf(prefix: str) -> str:
    """``a/b/region=us-east-1/`` -> ``region=us-east-1``."""
    return prefix.rstrip("/").rsplit("/", 1)[-1]


@dataclass
class DayListing:
    """What one day of the lake holds for this project: readable objects and skipped folders."""

    objects: list[ObjectInfo] = field(default_factory=list)
    problems: list[cloudtrail.Problem] = field(default_factory=list)


def list_security_lake_day(
    store: ObjectStore, day: date, accounts: Iterable[str] = (), regions: Iterable[str] = ()
) -> DayListing:
    """Objects of ``day`` for the supported sources and versions (filtered by account/region).

    Folders of other sources (``SH_FINDINGS``, ``S3_DATA``, custom ``ext/`` sources...) or other
    source versions are not walked further - their objects could be numerous and cannot be
    mapped - but each is reported once as a problem, so an operator can see what was skipped.
    """
    wanted_accounts, wanted_regions = set(accounts), set(regions)
    listing = DayListing()
    for root in (NATIVE, CUSTOM):
        for source_prefix in store.list_prefixes(root):
            source = _leaf(source_prefix)
            if root == CUSTOM or source not in SUPPORTED_SOURCES:
                kind = "custom" if root == CUSTOM else "unsupported"
                listing.problems.append(
                    cloudtrail.Problem(
                        store.uri_for(source_prefix),
                        f"{kind} Security Lake source {source!r} (supported: {', '.join(SUPPORTED_SOURCES)}); not read",
                    )
                )
                continue
            for version_prefix in store.list_prefixes(source_prefix):
                version = _leaf(version_prefix)
                if version not in SUPPORTED_VERSIONS:
                    listing.problems.append(
                        cloudtrail.Problem(
                            store.uri_for(version_prefix),
                            f"unsupported source version {version!r} of {source} "
                            f"(supported: {', '.join(SUPPORTED_VERSIONS)}); not read",
                        )
                    )
                    continue
                for region_prefix in store.list_prefixes(version_prefix):
                    region = _leaf(region_prefix).removeprefix("region=")
                    if wanted_regions and region not in wanted_regions:
                        continue
                    for account_prefix in store.list_prefixes(region_prefix):
                        account = _leaf(account_prefix).removeprefix("accountId=")
                        if wanted_accounts and account not in wanted_accounts:
                            continue
                        listing.objects.extend(store.list_objects(f"{account_prefix}eventDay={day:%Y%m%d}/"))
    listing.objects.sort(key=lambda info: info.key)
    return listing


@dataclass
class _Tally:
    """Running totals for the metadata, per ``SOURCE/version``."""

    objects: Counter = field(default_factory=Counter)
    events: Counter = field(default_factory=Counter)
    pairs: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    accounts: set[str] = field(default_factory=set)
    regions: set[str] = field(default_factory=set)

    def add(self, activity: OcsfActivity) -> None:
        name = f"{activity.source}/{activity.source_version}"
        self.objects[name] += 1
        self.events[name] += activity.rows_kept
        self.pairs[name] += activity.pair_count
        self.rejected.update(activity.rejected)
        self.accounts.update(a for a in pc.unique(activity.table["account"]).to_pylist() if a)
        self.regions.update(r for r in pc.unique(activity.table["region"]).to_pylist() if r)

    def sources(self) -> dict[str, dict[str, int]]:
        return {
            name: {"objects": self.objects[name], "events": self.events[name], "pairs": self.pairs[name]}
            for name in sorted(self.objects)
        }


@dataclass(frozen=True)
class ReadUnit:
    """One thing to read for the day - an object, or an Athena query - and how to read it.

    ``read`` yields activity tables; anything it raises quarantines the unit (rows it yielded
    before failing are kept), so one bad unit never fails the day.
    """

    uri: str
    read: Callable[[], Iterable[OcsfActivity]]


def write_activity_partition(
    context: AssetExecutionContext,
    warehouse: Warehouse,
    day: date,
    units: Sequence[ReadUnit],
    skipped: Sequence[cloudtrail.Problem] = (),
) -> dict[str, Any]:
    """Stream every unit into the ``security_lake_activity`` partition; returns the metadata."""
    tally = _Tally()
    preview = ACTIVITY_SCHEMA.empty_table()
    problems: list[cloudtrail.Problem] = list(skipped)
    quarantined: list[str] = []
    with warehouse.partition(ASSET, day) as out:
        out.append(ASSET, ACTIVITY_SCHEMA.empty_table())
        for unit in units:
            try:
                for activity in unit.read():
                    out.append(ASSET, activity.table)
                    if preview.num_rows < PREVIEW_ROWS and activity.table.num_rows:
                        head = activity.table.slice(0, PREVIEW_ROWS - preview.num_rows)
                        preview = pa.concat_tables([preview, head])
                    tally.add(activity)
                    problems.extend(
                        cloudtrail.Problem(unit.uri, reason, record_index=index)
                        for index, reason in activity.rejected_examples
                    )
            except OcsfSchemaError as exc:
                problem = cloudtrail.Problem(unit.uri, str(exc))
            except Exception as exc:  # any read failure quarantines only this unit
                problem = cloudtrail.Problem(unit.uri, f"could not be read ({type(exc).__name__}: {exc})")
            else:
                continue
            problems.append(problem)
            quarantined.append(unit.uri)
            context.log.warning(f"quarantined {problem.message()}")
        quarantine = cloudtrail.problems_table(problems)
        out.write_table("quarantine", quarantine)
    return {
        "objects": len(units),
        "objects_parsed": len(units) - len(quarantined),
        "events": sum(tally.events.values()),
        "pair_events": sum(tally.pairs.values()),
        "rejected_rows": sum(tally.rejected.values()),
        "rejected_reasons": MetadataValue.json(dict(tally.rejected)),
        "quarantined_objects": len(quarantined),
        "skipped_folders": len(skipped),
        "quarantine": table_preview(quarantine, rows=20) if quarantine.num_rows else MetadataValue.md("(none)"),
        "sources": MetadataValue.json(tally.sources()),
        "accounts": sorted(tally.accounts),
        "regions": sorted(tally.regions),
        "table": warehouse.uri_for(ASSET, day),
        "preview": table_preview(preview, ["identity_arn", "source_ip", "event_name", "account", "region", "source"]),
    }


def write_not_configured(context: AssetExecutionContext, warehouse: Warehouse, day: date) -> MaterializeResult:
    """Empty tables, so learning_set and the lineage look the same with or without Security Lake."""
    warehouse.write_tables(
        ASSET,
        day,
        {ASSET: ACTIVITY_SCHEMA.empty_table(), "quarantine": cloudtrail.problems_table([])},
    )
    context.log.info("PROACTIVE_SECURITY_LAKE_URI is not set: Security Lake is not configured")
    return MaterializeResult(
        metadata={"status": "not configured", "objects": 0, "events": 0, "pair_events": 0, "quarantined_objects": 0}
    )


def _object_unit(store: ObjectStore, key: str) -> ReadUnit:
    return ReadUnit(store.uri_for(key), lambda: [read_ocsf_parquet(store.get(key), key)])


@asset(
    partitions_def=daily_partitions,
    group_name="ingest",
    retry_policy=IO_RETRY,
    code_version="1",
    description=(
        "(entity, IP) activity of the day from Security Lake OCSF Parquet (CloudTrail mgmt, VPC Flow, "
        "Route 53; source versions 1.0 and 2.0), same columns as cloudtrail_events; empty when not configured."
    ),
)
def security_lake_activity(context: AssetExecutionContext, proactive: ProactiveResource) -> MaterializeResult:
    day = partition_day(context)
    warehouse = proactive.warehouse()
    try:
        store = proactive.security_lake_store()
        if store is None:
            return write_not_configured(context, warehouse, day)
        listing = list_security_lake_day(store, day, proactive.accounts, proactive.regions)
    except SourceUnavailable as exc:
        raise Failure(
            description=f"Security Lake source {proactive.security_lake_uri}: {exc}", allow_retries=False
        ) from exc
    for problem in listing.problems:
        context.log.info(f"skipped {problem.message()}")
    if not listing.objects:
        context.log.warning(f"no Security Lake objects for {day} under {store.uri}")
    units = [_object_unit(store, info.key) for info in listing.objects]
    metadata = write_activity_partition(context, warehouse, day, units, listing.problems)
    return MaterializeResult(
        metadata={
            "status": "configured",
            "source": store.uri,
            "bytes": int(sum(info.size for info in listing.objects)),
            **metadata,
            "object_keys": text_list([info.key for info in listing.objects]),
        }
    )
