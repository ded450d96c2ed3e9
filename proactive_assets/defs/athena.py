"""Reading Security Lake through Amazon Athena (``PROACTIVE_SECURITY_LAKE_READER=athena``).

``security_lake_activity`` reads every Parquet object of the day itself by default: simple, no
extra AWS service, fine for a few accounts. For an organisation's lake (VPC Flow alone can be
billions of rows a day) Athena does the work next to the data: one ``UNLOAD`` per source and
source version (``core/sources/athena_sql.py``), pruned to the day's partitions and columns.
CloudTrail rows come back one per event (so an event also delivered by CloudTrail still counts
once); VPC Flow and Route 53 come back as (resource, remote endpoint) pairs aggregated in SQL,
with counts and first/last time, and the rows that make no pair as counts by reason. The files
``UNLOAD`` writes under ``PROACTIVE_ATHENA_OUTPUT_URI/<day>/<run id>/<SOURCE>_<version>/`` are
read and then deleted.

Athena runs in the region of the boto3 session (``AWS_REGION``); the lake's region names the
Glue database (``PROACTIVE_SECURITY_LAKE_REGION``, default ``AWS_REGION``). The principal needs
Lake Formation ``SELECT``/``DESCRIBE`` on the tables, Athena and Glue read access, and write
access to the output location (docs/security_lake_athena.md).
"""

import io
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date

import pyarrow.parquet as pq
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    DailyPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from dagster_aws.athena import AthenaClient, AthenaClientResource

from proactive_assets.core.events import EventBatch, quarantined
from proactive_assets.core.sources.athena_sql import (
    CLOUDTRAIL_COLUMNS,
    glue_database,
    glue_table,
    pairs_activity,
    pairs_query,
    rows_query,
)
from proactive_assets.core.sources.ocsf import (
    CLOUD_TRAIL_MGMT,
    SUPPORTED_SOURCES,
    SUPPORTED_VERSIONS,
    OcsfActivity,
    read_ocsf_activity,
)
from proactive_assets.core.sources.security_lake import LakeTally, activity_batch
from proactive_assets.core.storage import ObjectStore, open_store
from proactive_assets.defs import tables
from proactive_assets.defs.assets.cloudtrail import IO_RETRY
from proactive_assets.defs.assets.security_lake import write_activity_partition
from proactive_assets.defs.partitions import partition_day
from proactive_assets.defs.resources import ProactiveResource

__all__ = ["CLOUDTRAIL_COLUMNS", "glue_database", "glue_table"]


def activity_query(
    day: date,
    source: str,
    version: str,
    lake_region: str,
    accounts: Sequence[str] = (),
    regions: Sequence[str] = (),
) -> str:
    """The day's query of one source table: CloudTrail rows, or network pairs aggregated in SQL."""
    if source == CLOUD_TRAIL_MGMT:
        return rows_query(day, source, version, lake_region, accounts, regions)
    return pairs_query(day, source, version, lake_region, accounts, regions)


def unload_statement(select_sql: str, output_uri: str) -> str:
    """``UNLOAD (select) TO 's3://.../' WITH (format = 'PARQUET')``; the target must be empty."""
    if not output_uri.startswith("s3://") or "'" in output_uri:
        raise ValueError(f"UNLOAD needs an s3:// location without quotes, got {output_uri!r}")
    target = output_uri.rstrip("/") + "/"
    return f"UNLOAD ({select_sql})\nTO '{target}'\nWITH (format = 'PARQUET', compression = 'SNAPPY')"


def unload_activity(
    client: AthenaClient,
    store: ObjectStore,
    prefix: str,
    select_sql: str,
    source: str,
    version: str,
) -> Iterator[OcsfActivity]:
    """Run ``UNLOAD`` of ``select_sql`` into ``store``/``prefix``, yield the files as activity, delete them.

    ``AthenaClient.execute_query`` (dagster-aws) starts the query and polls until it ends,
    raising ``AthenaError`` if it fails (a table that does not exist, no permission). CloudTrail
    files are rows for ``read_ocsf_activity``; network files are ``pairs_query`` results.
    """
    client.execute_query(unload_statement(select_sql, store.uri_for(prefix)))
    written = list(store.list_objects(prefix))
    try:
        for info in written:
            table = pq.read_table(io.BytesIO(store.get(info.key)))
            uri = store.uri_for(info.key)
            if source == CLOUD_TRAIL_MGMT:
                yield read_ocsf_activity(table, source, version, uri)
            else:
                yield pairs_activity(table, source, version, uri)
    finally:
        for info in written:
            store.delete(info.key)


def _query_batches(uri: str, activities: Callable[[], Iterable[OcsfActivity]], lake: LakeTally) -> Iterator[EventBatch]:
    """One query's result files as batches; a query that fails is quarantined (rows read before it kept)."""
    try:
        for activity in activities():
            yield activity_batch(uri, activity, lake)
    except Exception as exc:
        yield quarantined(uri, f"could not be read ({type(exc).__name__}: {exc})")


def make_security_lake_athena_asset(
    partitions: DailyPartitionsDefinition,
    lake_region: str,
    output_uri: str,
    sources: Sequence[str] = SUPPORTED_SOURCES,
    versions: Sequence[str] = SUPPORTED_VERSIONS,
) -> AssetsDefinition:
    """``security_lake_activity`` with its rows from Athena (one ``UNLOAD`` per source and version).

    Same key, partitions and tables as the Parquet-reading asset; a query that fails (say, no
    ``_1_0`` table because the lake only has source version 2) is quarantined like an unreadable
    object. Needs the ``athena`` resource (``AthenaClientResource``).
    """
    queries = [(source, version) for source in sources for version in versions]
    for source, version in queries:
        glue_table(lake_region, source, version)  # validate at load time, not in the run

    @asset(
        name=tables.SECURITY_LAKE_ACTIVITY,
        partitions_def=partitions,
        group_name="ingest",
        retry_policy=IO_RETRY,
        code_version="2-athena",
        description=(
            f"(entity, IP) activity of the day from Security Lake via Athena ({glue_database(lake_region)}): "
            "CloudTrail events, and VPC Flow / Route 53 (resource, remote endpoint) pairs aggregated in SQL."
        ),
    )
    def security_lake_activity(
        context: AssetExecutionContext, proactive: ProactiveResource, athena: AthenaClientResource
    ) -> MaterializeResult:
        day = partition_day(context)
        if not output_uri.startswith("s3://"):
            raise Failure(
                description=(
                    f"PROACTIVE_ATHENA_OUTPUT_URI must be an s3:// location for UNLOAD, got {output_uri!r}; "
                    "set it (e.g. s3://my-athena-results/proactive-unload) or PROACTIVE_SECURITY_LAKE_READER=objects"
                ),
                allow_retries=False,
            )
        client = athena.get_client()
        store = open_store(output_uri, s3_client=proactive.s3.get_client())
        statements: dict[str, str] = {}
        batches: list[Iterator[EventBatch]] = []
        settings = proactive.settings
        lake = LakeTally()
        for source, version in queries:
            sql = activity_query(day, source, version, lake_region, settings.accounts, settings.regions)
            statements[f"{source}/{version}"] = sql
            prefix = f"{day}/{context.run.run_id}/{source}_{version}/"

            def read(sql: str = sql, prefix: str = prefix, source: str = source, version: str = version):
                return unload_activity(client, store, prefix, sql, source, version)

            batches.append(_query_batches(f"athena:{glue_table(lake_region, source, version)}", read, lake))
        metadata = write_activity_partition(
            context, proactive.warehouse(), day, itertools.chain.from_iterable(batches), len(batches), lake=lake
        )
        return MaterializeResult(
            metadata={
                "status": "configured (Athena)",
                "source": f"athena:{glue_database(lake_region)}",
                "unload_location": output_uri,
                **metadata,
                "queries": MetadataValue.md(
                    "\n\n".join(f"**{name}**\n```sql\n{sql}\n```" for name, sql in statements.items())
                ),
            }
        )

    return security_lake_activity
