"""Reading Security Lake through Amazon Athena, for lakes too large to read object by object.

``security_lake_activity`` reads every Parquet object of the day itself: simple, no extra AWS
service, and fine for a few accounts. For an organisation's lake (VPC Flow alone can be
billions of rows a day, spread over one folder per account and region) let Athena do the
scan: it prunes to the day's partitions (``eventday``, ``region``, ``accountid``), reads only
the columns the mapping needs, drops rows that cannot make a pair (ingress flows, rows without
an instance) and runs in parallel; ``UNLOAD`` writes the result as Parquet that the asset then
streams through the very same ``read_ocsf_activity`` mapping, so both paths give the same
tables and quarantine.

What is here:

* ``glue_database`` / ``glue_table``: Security Lake's Glue database and table names, e.g.
  ``amazon_security_lake_glue_db_us_east_1.amazon_security_lake_table_us_east_1_vpc_flow_2_0``;
* ``activity_query``: the ``SELECT`` for one day, source and source version, with the
  partition filters; ``unload_statement`` wraps it in ``UNLOAD ... TO 's3://...'``;
* ``unload_activity``: runs one such statement through dagster-aws's ``AthenaClient``
  (``AthenaClientResource.get_client()``), reads and then deletes what it wrote;
* ``make_security_lake_athena_asset``: an asset with the same key and tables as
  ``security_lake_activity`` that takes its rows from Athena; build the definitions with it in
  place of ``security_lake_assets`` and add ``"athena": AthenaClientResource(...)`` to the
  resources to use it (see docs/security_lake_athena.md).

Athena runs in the region of the boto3 session (``AWS_DEFAULT_REGION``), which must be the
lake's region; the principal needs Lake Formation ``SELECT``/``DESCRIBE`` on the tables, Athena
and Glue read access, and write access to the output location.
"""

import io
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date

import pyarrow.parquet as pq
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    DailyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)
from dagster_aws.athena import AthenaClient, AthenaClientResource

from proactive_assets.core.events import EventBatch, quarantined
from proactive_assets.core.sources.ocsf import (
    CLOUD_TRAIL_MGMT,
    ROUTE53,
    SUPPORTED_SOURCES,
    SUPPORTED_VERSIONS,
    VPC_FLOW,
    OcsfActivity,
    read_ocsf_activity,
)
from proactive_assets.core.sources.security_lake import activity_batch
from proactive_assets.core.storage import ObjectStore, open_store
from proactive_assets.defs import tables
from proactive_assets.defs.assets.cloudtrail import IO_RETRY
from proactive_assets.defs.assets.security_lake import write_activity_partition
from proactive_assets.defs.partitions import partition_day
from proactive_assets.defs.resources import ProactiveResource

#: Top-level OCSF columns each source's mapping reads (``read_ocsf_activity``); selecting a
#: column the table lacks would fail the query, so the list is per source.
ATHENA_COLUMNS: dict[str, tuple[str, ...]] = {
    CLOUD_TRAIL_MGMT: ("class_uid", "time", "cloud", "actor", "api", "src_endpoint", "http_request", "metadata"),
    VPC_FLOW: ("class_uid", "time", "cloud", "src_endpoint", "activity_name", "metadata"),
    ROUTE53: ("class_uid", "time", "cloud", "src_endpoint", "activity_name", "metadata"),
}
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d$")
_ACCOUNT = re.compile(r"^\d{12}$")
_NO_VALUE = "('', '-')"


def _checked_region(region: str) -> str:
    if not _REGION.match(region):
        raise ValueError(f"not an AWS region name: {region!r}")
    return region


def _checked_version(source: str, version: str) -> None:
    if source not in SUPPORTED_SOURCES:
        raise ValueError(f"unsupported Security Lake source {source!r}; supported: {', '.join(SUPPORTED_SOURCES)}")
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"unsupported source version {version!r}; supported: {', '.join(SUPPORTED_VERSIONS)}")


def glue_database(lake_region: str) -> str:
    """``us-east-1`` -> ``amazon_security_lake_glue_db_us_east_1``."""
    return f"amazon_security_lake_glue_db_{_checked_region(lake_region).replace('-', '_')}"


def glue_table(lake_region: str, source: str, version: str) -> str:
    """``(us-east-1, VPC_FLOW, 2.0)`` -> ``amazon_security_lake_table_us_east_1_vpc_flow_2_0``."""
    _checked_version(source, version)
    region = _checked_region(lake_region).replace("-", "_")
    return f"amazon_security_lake_table_{region}_{source.lower()}_{version.replace('.', '_')}"


def _in_list(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in sorted(set(values)))})"


def activity_query(
    day: date,
    source: str,
    version: str,
    lake_region: str,
    accounts: Sequence[str] = (),
    regions: Sequence[str] = (),
) -> str:
    """The ``SELECT`` of one day's rows of one source table, pruned to its partitions.

    Values are validated (12-digit accounts, region names), never pasted raw into the SQL.
    For VPC Flow and Route 53 the rows that cannot make a pair are dropped in Athena, which
    is most of a VPC Flow table (the mapping would reject them anyway).
    """
    _checked_version(source, version)
    for account in accounts:
        if not _ACCOUNT.match(account):
            raise ValueError(f"not a 12-digit account id: {account!r}")
    for region in regions:
        _checked_region(region)
    columns = ", ".join(f'"{c}"' for c in ATHENA_COLUMNS[source])
    where = [f"eventday = '{day:%Y%m%d}'"]
    if regions:
        where.append(_in_list("region", regions))
    if accounts:
        where.append(_in_list("accountid", accounts))
    if source != CLOUD_TRAIL_MGMT:
        where += [
            "src_endpoint.instance_uid IS NOT NULL",
            f"src_endpoint.instance_uid NOT IN {_NO_VALUE}",
            "src_endpoint.ip IS NOT NULL",
            f"src_endpoint.ip NOT IN {_NO_VALUE}",
        ]
    table = f'"{glue_database(lake_region)}"."{glue_table(lake_region, source, version)}"'
    return f"SELECT {columns}\nFROM {table}\nWHERE " + "\n  AND ".join(where)


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
    raising ``AthenaError`` if it fails (a table that does not exist, no permission).
    """
    client.execute_query(unload_statement(select_sql, store.uri_for(prefix)))
    written = list(store.list_objects(prefix))
    try:
        for info in written:
            table = pq.read_table(io.BytesIO(store.get(info.key)))
            yield read_ocsf_activity(table, source, version, store.uri_for(info.key))
    finally:
        for info in written:
            store.delete(info.key)


def _query_batches(uri: str, activities: Callable[[], Iterable[OcsfActivity]]) -> Iterator[EventBatch]:
    """One query's result files as batches; a query that fails is quarantined (rows read before it kept)."""
    try:
        for activity in activities():
            yield activity_batch(uri, activity)
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

    Same key, partitions, tables and metadata as the Parquet-reading asset; a query that
    fails (say, no ``_1_0`` table because the lake only has source version 2) is quarantined
    like an unreadable object. Needs the ``athena`` resource (``AthenaClientResource``).
    """
    queries = [(source, version) for source in sources for version in versions]
    for source, version in queries:
        glue_table(lake_region, source, version)  # validate at load time, not in the run

    @asset(
        name=tables.SECURITY_LAKE_ACTIVITY,
        partitions_def=partitions,
        group_name="ingest",
        retry_policy=IO_RETRY,
        code_version="1-athena",
        description=(
            f"(entity, IP) activity of the day from Security Lake via Athena ({glue_database(lake_region)}), "
            "same columns as cloudtrail_events."
        ),
    )
    def security_lake_activity(
        context: AssetExecutionContext, proactive: ProactiveResource, athena: AthenaClientResource
    ) -> MaterializeResult:
        day = partition_day(context)
        client = athena.get_client()
        store = open_store(output_uri, s3_client=proactive.s3.get_client())
        statements: dict[str, str] = {}
        batches: list[Iterator[EventBatch]] = []
        settings = proactive.settings
        for source, version in queries:
            sql = activity_query(day, source, version, lake_region, settings.accounts, settings.regions)
            statements[f"{source}/{version}"] = sql
            prefix = f"{day}/{context.run.run_id}/{source}_{version}/"

            def read(sql: str = sql, prefix: str = prefix, source: str = source, version: str = version):
                return unload_activity(client, store, prefix, sql, source, version)

            batches.append(_query_batches(f"athena:{glue_table(lake_region, source, version)}", read))
        metadata = write_activity_partition(
            context, proactive.warehouse(), day, itertools.chain.from_iterable(batches), len(batches)
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
