"""The SQL that reads a day of Security Lake through Amazon Athena, and what its results mean.

Security Lake registers one Glue database per region and one table per source and source
version, partitioned by ``region``, ``accountid`` and ``eventday`` (``YYYYMMDD``):

* ``CLOUD_TRAIL_MGMT``: the day's rows with the columns the mapping reads (``rows_query``), one
  row per event, so an event that CloudTrail also delivered still counts once.
* ``VPC_FLOW`` and ``ROUTE53``: the pairs, aggregated in the lake (``pairs_query``): the same
  mapping as ``ocsf_network.py`` written in SQL, grouped by entity, remote address and class (the
  event name), with the event count and first/last time; rows that make no pair come back as one
  row per reason with their count. The Dagster process receives pairs, not flow rows.

The SQL is Athena's (Trino) and uses only what DuckDB also understands once it is given the
arrow lambda syntax and a ``transform`` macro (``DUCKDB_SETUP``), so the tests run the very text
sent to Athena on the same Parquet. Values are validated (12-digit accounts, region names) and
never pasted raw into the SQL.
"""

import re
from collections.abc import Iterable, Sequence
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from proactive_assets.core.sources import ocsf_network as net
from proactive_assets.core.sources.ocsf import (
    ACCOUNT_FIELDS,
    CLOUD_TRAIL_MGMT,
    EXPECTED_CLASSES,
    ROUTE53,
    SUPPORTED_SOURCES,
    SUPPORTED_VERSIONS,
    VPC_FLOW,
    OcsfActivity,
    classify_source_ips,
    network_activity,
    source_label,
)
from proactive_assets.core.sources.ocsf_columns import timestamps

#: Top-level OCSF columns the CloudTrail mapping reads (``read_ocsf_activity``).
CLOUDTRAIL_COLUMNS: tuple[str, ...] = (
    "class_uid",
    "time",
    "cloud",
    "actor",
    "api",
    "src_endpoint",
    "http_request",
    "metadata",
)
#: Columns of a ``pairs_query`` result, in order.
PAIRS_COLUMNS: tuple[str, ...] = (
    "reason",
    "entity",
    "entity_type",
    "remote",
    "event_name",
    "error_code",
    "account",
    "region",
    "event_count",
    "first_time",
    "last_time",
)
#: What a DuckDB connection needs to run the Athena text (the tests' local engine).
DUCKDB_SETUP: tuple[str, ...] = (
    "SET lambda_syntax='ENABLE_SINGLE_ARROW'",
    "CREATE OR REPLACE MACRO transform(l, f) AS list_transform(l, f)",
)
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d$")
_ACCOUNT = re.compile(r"^\d{12}$")


def checked_region(region: str) -> str:
    """``region`` when it is an AWS region name, else ``ValueError``."""
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
    return f"amazon_security_lake_glue_db_{checked_region(lake_region).replace('-', '_')}"


def glue_table(lake_region: str, source: str, version: str) -> str:
    """``(us-east-1, VPC_FLOW, 2.0)`` -> ``amazon_security_lake_table_us_east_1_vpc_flow_2_0``."""
    _checked_version(source, version)
    region = checked_region(lake_region).replace("-", "_")
    return f"amazon_security_lake_table_{region}_{source.lower()}_{version.replace('.', '_')}"


def _quote(text: str) -> str:
    """A SQL string literal (only ever of validated values and this module's own words)."""
    return "'" + text.replace("'", "''") + "'"


def _in_list(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(_quote(v) for v in sorted(set(values)))})"


def _partition_filter(day: date, accounts: Sequence[str], regions: Sequence[str]) -> list[str]:
    for account in accounts:
        if not _ACCOUNT.match(account):
            raise ValueError(f"not a 12-digit account id: {account!r}")
    for region in regions:
        checked_region(region)
    where = [f"eventday = '{day:%Y%m%d}'"]
    if regions:
        where.append(_in_list("region", regions))
    if accounts:
        where.append(_in_list("accountid", accounts))
    return where


def _table(lake_region: str, source: str, version: str) -> str:
    return f'"{glue_database(lake_region)}"."{glue_table(lake_region, source, version)}"'


def rows_query(
    day: date,
    source: str,
    version: str,
    lake_region: str,
    accounts: Sequence[str] = (),
    regions: Sequence[str] = (),
) -> str:
    """The ``SELECT`` of one day's CloudTrail rows (the columns the mapping reads), pruned to the partitions."""
    _checked_version(source, version)
    if source != CLOUD_TRAIL_MGMT:
        raise ValueError(f"{source} is read aggregated: use pairs_query")
    columns = ", ".join(f'"{c}"' for c in CLOUDTRAIL_COLUMNS)
    where = _partition_filter(day, accounts, regions)
    return f"SELECT {columns}\nFROM {_table(lake_region, source, version)}\nWHERE " + "\n  AND ".join(where)


def _blank(expr: str) -> str:
    """``expr`` with Security Lake's no-value markers (``''``, ``'-'``) as NULL."""
    return f"CASE WHEN trim({expr}) IN ('', '-') THEN NULL ELSE {expr} END"


def _account(version: str) -> str:
    """The cloud account, else the partition's ``accountid`` (as ``read_ocsf_activity`` takes the key's)."""
    field = ACCOUNT_FIELDS[(VPC_FLOW, version)][0]  # the same for both network sources
    return f"COALESCE({field}, accountid)"


def _rejection(source: str, version: str) -> str:
    """The CASE branches of rows that cannot be read, with ``read_ocsf_activity``'s words."""
    classes = sorted(EXPECTED_CLASSES[(source, version)])
    listed = ", ".join(str(c) for c in classes)
    return (
        "WHEN t IS NULL THEN 'missing time' "
        "WHEN class_uid IS NULL THEN 'missing class_uid' "
        f"WHEN class_uid NOT IN ({listed}) THEN 'class_uid not in {classes} for {source} {version}' "
    )


#: The rejection reasons the SQL can return (everything else is an unpaired reason).
def rejection_reasons(source: str, version: str) -> set[str]:
    classes = sorted(EXPECTED_CLASSES[(source, version)])
    return {"missing time", "missing class_uid", f"class_uid not in {classes} for {source} {version}"}


def _protocol() -> str:
    number = "connection_info.protocol_num"
    named = " ".join(f"WHEN {n} THEN '{name}'" for n, name in sorted(net.PROTOCOLS.items()))
    return (
        f"CASE WHEN {number} IS NULL THEN 'ip' ELSE CASE {number} {named} "
        f"ELSE 'proto-' || CAST({number} AS VARCHAR) END END"
    )


def _flow_select(version: str) -> str:
    """Per VPC Flow row: the pair's parts and, for rows that make none, the reason."""
    src_res = f"COALESCE({_blank('src_endpoint.instance_uid')}, {_blank('src_endpoint.interface_uid')})"
    dst_res = f"COALESCE({_blank('dst_endpoint.instance_uid')}, {_blank('dst_endpoint.interface_uid')})"
    sp, dp = "src_endpoint.port", "dst_endpoint.port"
    port = f"CASE WHEN {sp} > 0 AND ({dp} IS NULL OR {dp} <= 0 OR {sp} <= {dp}) THEN {sp} WHEN {dp} > 0 THEN {dp} END"
    return f"""SELECT "time" AS t, class_uid,
    {_account(version)} AS account,
    COALESCE(cloud.region, region) AS region_name,
    {src_res} AS src_res,
    CASE WHEN {_blank("src_endpoint.instance_uid")} IS NOT NULL THEN 'Instance'
         WHEN {_blank("src_endpoint.interface_uid")} IS NOT NULL THEN 'NetworkInterface' END AS src_type,
    {dst_res} AS dst_res,
    CASE WHEN {_blank("dst_endpoint.instance_uid")} IS NOT NULL THEN 'Instance'
         WHEN {_blank("dst_endpoint.interface_uid")} IS NOT NULL THEN 'NetworkInterface' END AS dst_type,
    {_blank("src_endpoint.ip")} AS src_ip,
    {_blank("dst_endpoint.ip")} AS dst_ip,
    COALESCE(connection_info.direction_id, 0) AS direction,
    {_protocol()} AS protocol,
    {port} AS port,
    CASE WHEN disposition_id = {net.BLOCKED} THEN 'Blocked' END AS error_code"""


def _flow_query(table: str, where: list[str], source: str, version: str) -> str:
    own = (
        f"CASE WHEN src_res IS NOT NULL AND (direction = {net.OUTBOUND} OR dst_res IS NULL) THEN 'src' "
        f"WHEN dst_res IS NOT NULL AND (direction = {net.INBOUND} OR src_res IS NULL) THEN 'dst' END"
    )
    ported = ", ".join(_quote(p) for p in net.PORTED)
    return f"""WITH flows AS (
  {_flow_select(version)}
  FROM {table}
  WHERE {" AND ".join(where)}
), sides AS (
  SELECT *, {own} AS own FROM flows
), facts AS (
  SELECT t, account, region_name, error_code,
    CASE WHEN own = 'src' THEN src_res WHEN own = 'dst' THEN dst_res END AS entity,
    CASE WHEN own = 'src' THEN src_type WHEN own = 'dst' THEN dst_type END AS entity_type,
    CASE WHEN own = 'src' THEN dst_ip WHEN own = 'dst' THEN src_ip END AS remote,
    CASE WHEN own = 'src' THEN src_ip WHEN own = 'dst' THEN dst_ip END AS own_ip,
    CASE WHEN protocol IN ({ported}) AND port IS NOT NULL THEN protocol || '/' || CAST(port AS VARCHAR)
         ELSE protocol END AS event_name,
    CASE {_rejection(source, version)}
      WHEN src_ip IS NULL AND dst_ip IS NULL THEN {_quote(net.NO_DATA)}
      WHEN src_res IS NULL AND dst_res IS NULL THEN {_quote(net.NO_RESOURCE)}
      WHEN own IS NULL THEN {_quote(net.BOTH_RESOURCES)}
    END AS early_reason
  FROM sides
), reasons AS (
  SELECT *, CASE WHEN early_reason IS NOT NULL THEN early_reason
    WHEN remote IS NULL THEN {_quote(net.NO_REMOTE)}
    WHEN trim(remote) = trim(own_ip) THEN {_quote(net.OWN_ADDRESS)} END AS reason
  FROM facts
)
{_grouped("reasons")}"""


def _route53_query(table: str, where: list[str], source: str, version: str) -> str:
    instance = _blank("src_endpoint.instance_uid")
    vpc, client_ip = _blank("src_endpoint.vpc_uid"), _blank("src_endpoint.ip")
    types = ", ".join(_quote(t) for t in net.ADDRESS_TYPES)
    is_address = f"upper(trim(a.\"type\")) IN ({types}) AND a.rdata IS NOT NULL AND trim(a.rdata) NOT IN ('', '-')"
    return f"""WITH queries AS (
  SELECT "time" AS t, class_uid,
    {_account(version)} AS account,
    COALESCE(cloud.region, region) AS region_name,
    COALESCE({instance}, CASE WHEN {vpc} IS NOT NULL AND {client_ip} IS NOT NULL
                              THEN {vpc} || '/' || {client_ip} END) AS entity,
    CASE WHEN {instance} IS NOT NULL THEN 'Instance'
         WHEN {vpc} IS NOT NULL AND {client_ip} IS NOT NULL THEN 'ResolverClient' END AS entity_type,
    'DNS ' || COALESCE("query"."type", '?') || ' ' || COALESCE("query".hostname, '?') AS event_name,
    CASE WHEN rcode IS NULL OR rcode IN ('NoError', '', '-') THEN NULL ELSE rcode END AS error_code,
    filter(answers, a -> {is_address}) AS addresses
  FROM {table}
  WHERE {" AND ".join(where)}
), reasons AS (
  SELECT *, CASE {_rejection(source, version)}
      WHEN entity IS NULL THEN {_quote(net.NO_QUERIER)}
      WHEN COALESCE(cardinality(addresses), 0) = 0 THEN {_quote(net.NO_ANSWER)}
    END AS reason
  FROM queries
), facts AS (
  SELECT t, account, region_name, error_code, entity, entity_type, CAST(NULL AS VARCHAR) AS remote,
    event_name, reason
  FROM reasons WHERE reason IS NOT NULL
  UNION ALL
  SELECT t, account, region_name, error_code, entity, entity_type, u.rdata AS remote, event_name, reason
  FROM reasons CROSS JOIN UNNEST(transform(addresses, a -> a.rdata)) AS u(rdata)
  WHERE reason IS NULL
)
{_grouped("facts")}"""


def _grouped(relation: str) -> str:
    """One row per pair (entity, remote, class...) with its count and first/last time; one per reason."""
    keep = "CASE WHEN reason IS NULL THEN {0} END"
    keys = {
        "entity": keep.format("entity"),
        "entity_type": keep.format("entity_type"),
        "remote": keep.format("remote"),
        "event_name": keep.format("event_name"),
        "error_code": keep.format("error_code"),
        "account": keep.format("account"),
        "region": keep.format("region_name"),
    }
    select = ",\n  ".join(f"{expr} AS {name}" for name, expr in keys.items())
    group = ", ".join(["reason", *keys.values()])
    return (
        f"SELECT reason,\n  {select},\n  count(*) AS event_count, min(t) AS first_time, max(t) AS last_time\n"
        f"FROM {relation}\nGROUP BY {group}"
    )


def pairs_query(
    day: date,
    source: str,
    version: str,
    lake_region: str,
    accounts: Sequence[str] = (),
    regions: Sequence[str] = (),
    table: str | None = None,
) -> str:
    """The day's (resource, remote endpoint) pairs of a network source, aggregated in the lake.

    ``table`` overrides the Glue table name (a test's local view); the partition filters stay.
    """
    _checked_version(source, version)
    if source not in (VPC_FLOW, ROUTE53):
        raise ValueError(f"{source} is not a network source: use rows_query")
    where = _partition_filter(day, accounts, regions)
    name = table or _table(lake_region, source, version)
    build = _flow_query if source == VPC_FLOW else _route53_query
    return build(name, where, source, version)


def pairs_activity(result: pa.Table, source: str, version: str, source_file: str) -> OcsfActivity:
    """A ``pairs_query`` result as activity: the pairs (addresses canonical, re-aggregated), the
    rejected and unpaired rows by reason, all counted in rows of the lake."""
    reason = result.column("reason")
    counts = result.column("event_count").cast(pa.int64())
    rows_read = int(pc.sum(counts).as_py() or 0)
    rejected: dict[str, int] = {}
    unpaired: dict[str, int] = {}
    rejections = rejection_reasons(source, version)
    for text, count in zip(reason.to_pylist(), counts.to_pylist(), strict=True):
        if text is None:
            continue
        target = rejected if text in rejections else unpaired
        target[text] = target.get(text, 0) + int(count)
    pairs = result.filter(pc.is_null(reason))
    kind, canonical = classify_source_ips(pairs.column("remote"))
    is_ip = pc.equal(kind, "ip")
    not_ip = int(pc.sum(pc.if_else(is_ip, 0, pairs.column("event_count").cast(pa.int64()))).as_py() or 0)
    if not_ip:
        unpaired[net.NOT_AN_IP] = unpaired.get(net.NOT_AN_IP, 0) + not_ip
    rows = pa.table(
        {
            "identity_arn": pairs.column("entity"),
            "identity_type": pairs.column("entity_type"),
            "source_ip": canonical,
            "event_name": pairs.column("event_name"),
            "error_code": pairs.column("error_code"),
            "account": pairs.column("account"),
            "region": pairs.column("region"),
            "event_count": pairs.column("event_count").cast(pa.int64()),
            "event_time": timestamps(_one(pairs.column("first_time")), source_file),
            "last_event_time": timestamps(_one(pairs.column("last_time")), source_file),
        }
    ).filter(is_ip)
    table = network_activity(net.aggregate(rows), source, source_file)
    return OcsfActivity(
        key=source_file,
        source=source,
        source_version=version,
        table=table,
        rows_read=rows_read,
        rejected=rejected,
        unpaired=unpaired,
    )


def _one(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    return values


__all__ = ["source_label"]
