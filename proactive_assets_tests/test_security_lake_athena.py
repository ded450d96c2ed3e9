"""The Athena reader: its SQL run on the same Parquet by DuckDB, and the asset end to end on moto.

The text ``pairs_query`` sends to Athena runs unchanged on DuckDB (``DUCKDB_SETUP``: the arrow
lambda syntax and a ``transform`` macro), over a view that adds Security Lake's partition
columns, so what the lake would return is compared with what ``read_ocsf_activity`` makes of the
very same rows. End to end, moto answers the Athena API (it records queries but runs no SQL), so
the test's Athena client executes the ``UNLOAD``'s inner query with DuckDB and writes its result
where ``UNLOAD`` would, in moto's S3, before handing the call to moto.
"""

import io
import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize
from dagster_aws.athena import AthenaClient, AthenaClientResource
from moto import mock_aws

from proactive_assets.config import Settings
from proactive_assets.core.sources.athena_sql import DUCKDB_SETUP, pairs_activity, pairs_query
from proactive_assets.core.sources.ocsf import ACTIVITY_SCHEMA, CLOUD_TRAIL_MGMT, ROUTE53, VPC_FLOW, read_ocsf_activity
from proactive_assets.core.sources.ocsf_network import PAIR_KEYS, aggregate
from proactive_assets.core.storage import S3Store
from proactive_assets.defs.athena import make_security_lake_athena_asset
from proactive_assets.defs.definitions import build_definitions
from proactive_assets.defs.partitions import daily_partitions
from proactive_assets.samples.ocsf import make_ocsf_table
from proactive_assets_tests.conftest import SAMPLES, project_resource

DAY = date(2024, 3, 5)
ACCOUNT = "111122223333"
REGION = "us-east-1"
S, I32 = pa.string(), pa.int32()
ENDPOINT = pa.struct(
    [("instance_uid", S), ("interface_uid", S), ("ip", S), ("port", I32), ("vpc_uid", S), ("svc_name", S)]
)


def lake_schema(version: str) -> pa.Schema:
    """The columns the network SQL reads, typed as Security Lake's tables have them (every field present)."""
    if version == "1.0":
        cloud = pa.struct([("region", S), ("account_uid", S), ("provider", S)])
    else:
        cloud = pa.struct([("region", S), ("account", pa.struct([("uid", S)])), ("provider", S)])
    return pa.schema(
        [
            ("time", pa.int64()),
            ("class_uid", I32),
            ("cloud", cloud),
            ("src_endpoint", ENDPOINT),
            ("dst_endpoint", ENDPOINT),
            ("connection_info", pa.struct([("direction_id", I32), ("protocol_num", I32)])),
            ("disposition_id", I32),
            ("rcode", S),
            ("query", pa.struct([("hostname", S), ("type", S), ("class", S)])),
            ("answers", pa.list_(pa.struct([("type", S), ("rdata", S), ("class", S)]))),
        ]
    )


def sample_records(source: str, version: str) -> list[dict[str, Any]]:
    kind = "vpcflow" if source == VPC_FLOW else "route53"
    ocsf = "1.0.0-rc.2" if version == "1.0" else "1.1.0"
    return [json.loads(p.read_text()) for p in sorted((SAMPLES / "ocsf").glob(f"ocsf-{ocsf}_{kind}_*.json"))]


def corpus(source: str, version: str) -> pa.Table:
    """Every data/ocsf sample of the source and version, plus generated rows, as one lake table."""
    rows = sample_records(source, version)
    generated = make_ocsf_table(source, version, 3_000, seed=5, day=DAY, account=ACCOUNT)
    rows += generated.to_pylist()
    if source == VPC_FLOW:  # the cases only a mixed table has: both ends resources, no direction...
        both = json.loads(json.dumps(rows[0]))
        both["src_endpoint"]["instance_uid"], both["dst_endpoint"]["instance_uid"] = "i-1", "i-2"
        both["connection_info"]["direction_id"] = 0
        untimed = json.loads(json.dumps(rows[0]))
        untimed["time"] = None
        rows += [both, untimed]
    return pa.Table.from_pylist(rows, schema=lake_schema(version))


def duckdb_lake(tables: dict[str, pa.Table]) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with each table as ``"<database>"."<table>"`` plus the partition columns."""
    con = duckdb.connect()
    for statement in DUCKDB_SETUP:
        con.execute(statement)
    for name, table in tables.items():
        database, table_name = name.split(".")
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{database}"')
        con.register(f"raw_{table_name}", table)
        con.execute(
            f'CREATE OR REPLACE VIEW "{database}"."{table_name}" AS SELECT *, '
            f"'{DAY:%Y%m%d}' AS eventday, '{REGION}' AS region, '{ACCOUNT}' AS accountid FROM raw_{table_name}"
        )
    return con


def arrow(result: Any) -> pa.Table:
    table = result.arrow()
    return table.read_all() if hasattr(table, "read_all") else table


def pairs_of(table: pa.Table) -> pa.Table:
    """Activity rows over the day (one object or another, one query or another), comparable."""
    rows = table.select([*PAIR_KEYS, "event_count", "event_time", "last_event_time"])
    return aggregate(rows)


@pytest.mark.parametrize("source", [VPC_FLOW, ROUTE53])
@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_the_athena_sql_gives_what_the_object_reader_gives(source: str, version: str) -> None:
    table = corpus(source, version)
    con = duckdb_lake({f"db.{source.lower()}": table})
    sql = pairs_query(
        DAY, source, version, REGION, accounts=[ACCOUNT], regions=[REGION], table=f'"db"."{source.lower()}"'
    )
    result = arrow(con.sql(sql))
    assert result.num_rows < table.num_rows  # pairs and reasons, not rows
    lake = pairs_activity(result, source, version, "athena")
    objects = read_ocsf_activity(table, source, version, "object", key_account=ACCOUNT, key_region=REGION)
    assert lake.table.num_rows > 100
    assert pairs_of(lake.table).equals(pairs_of(objects.table))
    assert lake.unpaired == objects.unpaired and lake.rejected == objects.rejected
    assert lake.events == objects.events
    if source == VPC_FLOW:
        assert set(lake.unpaired) == {
            "no addresses (NODATA or SKIPDATA record)",
            "both ends are resources and the direction is unknown",
        }
        assert lake.rejected == {"missing time": 1}
    else:
        assert lake.unpaired == ({"no A or AAAA answer": 1} if version == "2.0" else {})  # the NXDOMAIN sample


def test_the_athena_sql_on_the_real_samples_when_present() -> None:
    """AWS's own Security Lake validation Parquet (source version 1.0), where a developer keeps it."""
    import os

    folders = [Path(p) for p in os.environ.get("PROACTIVE_REAL_SECURITY_LAKE", "").split(os.pathsep) if p]
    files = [
        (path, VPC_FLOW if "VPC_FLOW" in path.parts else ROUTE53)
        for folder in folders
        for path in sorted(folder.rglob("*.parquet"))
        if ("VPC_FLOW" in path.parts or "ROUTE53" in path.parts) and "inputs" not in path.parts
    ]
    if not files:
        pytest.skip("PROACTIVE_REAL_SECURITY_LAKE names no folder with VPC_FLOW or ROUTE53 Parquet")
    for path, source in files:
        raw = pq.read_table(path)
        rows = [
            {k: v for k, v in r.items() if k in lake_schema("1.0").names}
            | {
                "cloud": {
                    "region": (r.get("cloud") or {}).get("region"),
                    "account_uid": (r.get("cloud") or {}).get("account_uid"),
                }
            }
            for r in raw.to_pylist()
        ]
        table = pa.Table.from_pylist(rows, schema=lake_schema("1.0"))
        con = duckdb_lake({"db.t": table})
        result = arrow(con.sql(pairs_query(DAY, source, "1.0", REGION, table='"db"."t"')))
        lake = pairs_activity(result, source, "1.0", "athena")
        objects = read_ocsf_activity(raw, source, "1.0", str(path), key_account=ACCOUNT, key_region=REGION)
        assert pairs_of(lake.table).equals(pairs_of(objects.table)), path
        assert lake.unpaired == objects.unpaired, path


# ------------------------------------------------------------------------------- end to end


class DuckDbAthena(AthenaClient):
    """moto's Athena with an engine: an ``UNLOAD`` runs its query on DuckDB over the lake tables and
    writes the result where Athena would (moto's S3), then moto records the call."""

    def __init__(self, client: Any, con: duckdb.DuckDBPyConnection, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.con = con

    def execute_query(self, query: str, fetch_results: bool = False) -> Any:
        match = re.fullmatch(r"UNLOAD \((?P<sql>.*)\)\nTO '(?P<target>s3://[^']+)'\nWITH \(.*\)", query, re.DOTALL)
        assert match, query[:200]
        result = arrow(self.con.sql(match["sql"]))
        sink = io.BytesIO()
        pq.write_table(result, sink)
        bucket, _, prefix = match["target"][len("s3://") :].partition("/")
        boto3.client("s3", region_name=REGION).put_object(
            Bucket=bucket, Key=f"{prefix}20240305_000000_00001_abcde_part0", Body=sink.getvalue()
        )
        return super().execute_query(query, fetch_results)


class DuckDbAthenaResource(AthenaClientResource):
    """The ``athena`` resource the asset gets, answering with ``DuckDbAthena``."""

    def get_client(self) -> AthenaClient:
        return DuckDbAthena(
            boto3.client("athena", region_name=REGION),
            LAKE_CONNECTION[0],
            workgroup=self.workgroup,
            polling_interval=0,
            max_polls=self.max_polls,
        )


LAKE_CONNECTION: list[duckdb.DuckDBPyConnection] = []


@mock_aws
def test_the_asset_reads_pairs_through_athena_end_to_end(tmp_path: Path, aws_env: None) -> None:
    """``PROACTIVE_SECURITY_LAKE_READER=athena``: the definitions carry the Athena asset; one UNLOAD per
    source and version through moto's Athena; the warehouse gets pairs with counts, unpaired rows counted,
    a missing table quarantined, and the unloaded files deleted."""
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="athena-results")
    database = "amazon_security_lake_glue_db_us_east_1"
    tables = {
        f"{database}.amazon_security_lake_table_us_east_1_{s.lower()}_{v.replace('.', '_')}": corpus(s, v)
        for s in (VPC_FLOW, ROUTE53)
        for v in ("1.0", "2.0")
    }
    trail = make_ocsf_table(CLOUD_TRAIL_MGMT, "2.0", 200, seed=2, day=DAY, account=ACCOUNT)
    tables[f"{database}.amazon_security_lake_table_us_east_1_cloud_trail_mgmt_2_0"] = trail
    LAKE_CONNECTION[:] = [duckdb_lake(tables)]  # no cloud_trail_mgmt_1_0: that query fails

    settings = dict(security_lake_reader="athena", athena_output_uri="s3://athena-results/unload", aws_region=REGION)
    defs = build_definitions(Settings(home=str(tmp_path), **settings))
    lake_asset = defs.get_assets_def("security_lake_activity")
    assert "athena" in defs.resources and "via Athena" in lake_asset.descriptions_by_key[lake_asset.key]
    res = project_resource(tmp_path, cloudtrail_uri=str(tmp_path / "cloudtrail"), **settings)
    asset = make_security_lake_athena_asset(daily_partitions(res.settings), REGION, "s3://athena-results/unload")
    result = materialize(
        [asset],
        partition_key=DAY.isoformat(),
        resources={"proactive": res, "athena": DuckDbAthenaResource()},
        instance=DagsterInstance.ephemeral(),
    )
    meta = {
        k: getattr(v, "value", v)
        for k, v in result.asset_materializations_for_node(asset.key.path[-1])[-1].metadata.items()
    }
    athena = boto3.client("athena", region_name=REGION)
    queries = [
        athena.get_query_execution(QueryExecutionId=i)["QueryExecution"]["Query"]
        for i in athena.list_query_executions()["QueryExecutionIds"]
    ]
    assert len(queries) == 5  # the failing 1.0 CloudTrail query never reached moto
    assert sum("GROUP BY reason" in q for q in queries) == 4
    assert meta["status"] == "configured (Athena)"
    assert meta["quarantined_objects"] == 1  # the missing table, with DuckDB's reason
    got = res.warehouse().read_table("security_lake_activity", DAY)
    assert got.schema == ACTIVITY_SCHEMA
    expected = pa.concat_tables(
        [
            read_ocsf_activity(corpus(s, v), s, v, "o", key_account=ACCOUNT, key_region=REGION).table
            for s in (VPC_FLOW, ROUTE53)
            for v in ("1.0", "2.0")
        ]
        + [read_ocsf_activity(trail, CLOUD_TRAIL_MGMT, "2.0", "o", key_account=ACCOUNT, key_region=REGION).table]
    )
    network = pc.is_in(got.column("source"), value_set=pa.array(["security_lake:VPC_FLOW", "security_lake:ROUTE53"]))
    want_network = pc.is_in(
        expected.column("source"), value_set=pa.array(["security_lake:VPC_FLOW", "security_lake:ROUTE53"])
    )
    assert pairs_of(got.filter(network)).equals(pairs_of(expected.filter(want_network)))
    assert got.filter(pc.invert(network)).num_rows == trail.num_rows  # CloudTrail: one row per event
    assert meta["unpaired_reasons"]["no addresses (NODATA or SKIPDATA record)"] > 0
    assert meta["events_read"] == sum(expected.column("event_count").to_pylist())
    assert list(S3Store("s3://athena-results/unload").list_objects("")) == []  # UNLOAD's files are removed


# ---------------------------------------------------------------------------------- settings


def test_the_reader_is_a_setting_checked_before_any_work(tmp_path: Path) -> None:
    from proactive_assets.config import SettingsProblem, preflight

    assert Settings.from_env({}).security_lake_reader == "objects"
    assert Settings.from_env({"PROACTIVE_SECURITY_LAKE_READER": " Athena "}).security_lake_reader == "athena"
    with pytest.raises(ValueError, match="PROACTIVE_SECURITY_LAKE_READER: must be one of objects, athena, got 'glue'"):
        Settings.from_env({"PROACTIVE_SECURITY_LAKE_READER": "glue"})
    (tmp_path / "trail" / "AWSLogs").mkdir(parents=True)
    base = {
        "PROACTIVE_SECURITY_LAKE_READER": "athena",
        "PROACTIVE_HOME": str(tmp_path),
        "PROACTIVE_CLOUDTRAIL_URI": str(tmp_path / "trail"),
    }
    for env, cause in (
        ({**base, "AWS_REGION": "us-east-1"}, "needs PROACTIVE_ATHENA_OUTPUT_URI"),
        ({**base, "PROACTIVE_ATHENA_OUTPUT_URI": "s3://r/u"}, "needs the lake's region"),
        (
            {**base, "PROACTIVE_ATHENA_OUTPUT_URI": "s3://r/u", "PROACTIVE_SECURITY_LAKE_REGION": "nowhere"},
            "not an AWS",
        ),
    ):
        with pytest.raises(SettingsProblem, match=cause) as caught:
            preflight(Settings.from_env(env))
        assert "PROACTIVE_SECURITY_LAKE_READER=objects" in caught.value.fix


def test_the_definitions_follow_the_reader_setting(tmp_path: Path) -> None:
    objects = build_definitions(Settings(home=str(tmp_path)))
    athena = build_definitions(
        Settings(
            home=str(tmp_path),
            security_lake_reader="athena",
            athena_output_uri="s3://r/unload",
            athena_workgroup="proactive",
            security_lake_region="eu-west-1",
            aws_region="eu-west-1",
        )
    )
    assert "athena" not in objects.resources
    assert athena.resources["athena"].workgroup == "proactive"
    asset = athena.get_assets_def("security_lake_activity")
    assert "amazon_security_lake_glue_db_eu_west_1" in asset.descriptions_by_key[asset.key]
    assert "athena" in asset.required_resource_keys
