"""security_lake_activity on generated and real OCSF Parquet, and learning_set over both sources."""

from datetime import UTC, date, datetime
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, Failure, materialize
from moto import mock_aws

from proactive_assets.core.events import QUARANTINE_SCHEMA
from proactive_assets.core.sources.ocsf import ACTIVITY_SCHEMA, CLOUD_TRAIL_MGMT, ROUTE53, VPC_FLOW
from proactive_assets.core.sources.security_lake import list_day as list_security_lake_day
from proactive_assets.core.sources.security_lake import security_lake_key
from proactive_assets.core.storage import LocalStore, S3Store
from proactive_assets.defs.athena import (
    activity_query,
    glue_database,
    glue_table,
    unload_statement,
)
from proactive_assets.defs.resources import ProactiveResource
from proactive_assets.samples.ocsf import make_ocsf_table, write_security_lake_sample
from proactive_assets_tests.cloudtrail_fixtures import log_key, put_log, record
from proactive_assets_tests.conftest import project_assets, project_resource
from proactive_assets_tests.test_security_lake import (
    ALL_SAMPLES,
    load_sample,
    parquet_bytes,
    sample_key,
    to_table,
)

DAY = date(2024, 3, 5)
LAKE_ACCOUNT = "111111111111"
OTHER_ACCOUNT = "222222222222"


def resource(tmp_path: Path, security_lake_uri: str | None, **kwargs) -> ProactiveResource:
    return project_resource(
        tmp_path, cloudtrail_uri=str(tmp_path / "cloudtrail"), security_lake_uri=security_lake_uri, **kwargs
    )


def run(assets: list[str], res: ProactiveResource, day: date = DAY, raise_on_error: bool = True):
    return materialize(
        project_assets(res, *assets),
        partition_key=day.isoformat(),
        resources={"proactive": res},
        instance=DagsterInstance.ephemeral(),
        raise_on_error=raise_on_error,
    )


def metadata(result, asset: str) -> dict:
    mats = list(result.asset_materializations_for_node(asset))
    return {k: getattr(v, "value", v) for k, v in mats[-1].metadata.items()}


def day_key(source: str, version: str, name: str, account: str = LAKE_ACCOUNT, day: date = DAY) -> str:
    return security_lake_key(source, version, "us-east-1", account, day, name)


def populate_lake(root: Path) -> None:
    """Both source versions of the three sources for DAY and the next day, plus the bad cases:
    corrupt Parquet, v2 rows under a 1.0 key, an unsupported and a custom source, an unknown
    version, and a second account."""
    write_security_lake_sample(root, DAY, days=2, seed=7, rows_per_file=200, accounts=(LAKE_ACCOUNT, OTHER_ACCOUNT))
    store = LocalStore(root)
    store.put(day_key(VPC_FLOW, "2.0", "corrupt.gz.parquet"), b"PAR1 this is not parquet")
    v2_rows = make_ocsf_table(CLOUD_TRAIL_MGMT, "2.0", 20, 3, day=DAY, account=LAKE_ACCOUNT)
    store.put(day_key(CLOUD_TRAIL_MGMT, "1.0", "wrong-version.gz.parquet"), parquet_bytes(v2_rows))
    store.put(day_key("S3_DATA", "2.0", "s3.gz.parquet"), parquet_bytes(v2_rows))
    store.put(day_key(VPC_FLOW, "3.0", "future.gz.parquet"), parquet_bytes(v2_rows))
    store.put(
        f"ext/MOVIE_AUTH/1.0/region=us-east-1/accountId={LAKE_ACCOUNT}/eventDay={DAY:%Y%m%d}/f.parquet",
        parquet_bytes(v2_rows),
    )


def test_listing_walks_supported_sources_and_reports_the_rest(tmp_path: Path) -> None:
    populate_lake(tmp_path)
    listing = list_security_lake_day(LocalStore(tmp_path), DAY)
    # 3 sources x 2 versions x 2 accounts, + corrupt + wrong version
    assert len(listing.objects) == 14
    assert all(f"eventDay={DAY:%Y%m%d}/" in info.key for info in listing.objects)
    skipped = sorted(Path(p.source_file).name for p in listing.problems)
    assert skipped == ["3.0", "MOVIE_AUTH", "S3_DATA"]
    only = list_security_lake_day(LocalStore(tmp_path), DAY, accounts=[OTHER_ACCOUNT], regions=["us-east-1"])
    assert len(only.objects) == 6 and all(f"accountId={OTHER_ACCOUNT}" in i.key for i in only.objects)
    assert list_security_lake_day(LocalStore(tmp_path), DAY, regions=["eu-west-1"]).objects == []


def test_activity_from_v1_and_v2_with_bad_objects_quarantined(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    populate_lake(lake)
    res = resource(tmp_path, str(lake), accounts=[LAKE_ACCOUNT])
    meta = metadata(run(["security_lake_activity"], res), "security_lake_activity")
    assert meta["status"] == "configured"
    assert (meta["objects"], meta["objects_parsed"], meta["quarantined_objects"]) == (8, 6, 2)
    assert meta["skipped_folders"] == 3
    expected = [f"{s}/{v}" for s in (CLOUD_TRAIL_MGMT, ROUTE53, VPC_FLOW) for v in ("1.0", "2.0")]
    assert sorted(meta["sources"]) == expected
    assert all(counts["objects"] == 1 and counts["events"] > 0 for counts in meta["sources"].values())
    assert meta["accounts"] == [LAKE_ACCOUNT] and meta["regions"] == ["us-east-1"]
    assert meta["pair_events"] > 0 and meta["events"] >= meta["pair_events"]

    warehouse = res.warehouse()
    table = warehouse.read_table("security_lake_activity", DAY)
    assert table.schema == ACTIVITY_SCHEMA
    assert table.num_rows == meta["events"]  # a network row is one pair of an object, with its count
    assert sum(table.column("event_count").to_pylist()) == meta["events_read"] > table.num_rows
    assert set(table.column("source").to_pylist()) == {
        "security_lake:CLOUD_TRAIL_MGMT",
        "security_lake:VPC_FLOW",
        "security_lake:ROUTE53",
    }
    assert all(d.date() == DAY for d in table.column("event_time").to_pylist())

    quarantine = warehouse.read_table("security_lake_activity", DAY, "quarantine")
    assert quarantine.schema == QUARANTINE_SCHEMA
    whole = {Path(r["source_file"]).name: r["reason"] for r in quarantine.to_pylist() if r["record_index"] < 0}
    assert "unreadable Parquet" in whole["corrupt.gz.parquet"]
    assert "wrong-version.gz.parquet" in whole  # v2 columns under a 1.0 key
    assert "unsupported Security Lake source 'S3_DATA'" in whole["S3_DATA"]
    assert "custom Security Lake source 'MOVIE_AUTH'" in whole["MOVIE_AUTH"]
    assert "unsupported source version '3.0'" in whole["3.0"]
    # Ordinary traffic that makes no pair (NODATA records) is counted, never quarantined.
    assert [r for r in quarantine.to_pylist() if r["record_index"] >= 0] == []
    assert meta["unpaired_reasons"] == {"no addresses (NODATA or SKIPDATA record)": meta["unpaired_rows"]}
    assert meta["unpaired_rows"] > 0


def test_not_configured_materialises_empty_tables(tmp_path: Path) -> None:
    res = resource(tmp_path, None)
    meta = metadata(run(["security_lake_activity"], res), "security_lake_activity")
    assert meta["status"] == "not configured" and meta["objects"] == 0
    warehouse = res.warehouse()
    assert warehouse.read_table("security_lake_activity", DAY).num_rows == 0
    assert warehouse.read_table("security_lake_activity", DAY, "quarantine").num_rows == 0


def test_empty_day_and_missing_lake(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    populate_lake(lake)
    res = resource(tmp_path, str(lake))
    meta = metadata(run(["security_lake_activity"], res, day=date(2024, 3, 9)), "security_lake_activity")
    assert (meta["objects"], meta["events"]) == (0, 0)
    missing = resource(tmp_path, str(tmp_path / "no-such-lake"))
    with pytest.raises(Failure, match="does not exist"):
        run(["security_lake_activity"], missing)


def test_rerun_gives_the_same_tables(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    populate_lake(lake)
    res = resource(tmp_path, str(lake))
    run(["security_lake_activity"], res)
    first = res.warehouse().read_table("security_lake_activity", DAY)
    run(["security_lake_activity"], res)
    assert res.warehouse().read_table("security_lake_activity", DAY).equals(first)


def test_real_ocsf_samples_through_the_asset(tmp_path: Path) -> None:
    """The OCSF sample records (moved to DAY: their own dates precede the partitions), one
    Parquet object each, in the lake layout."""
    store = LocalStore(tmp_path / "lake")
    noon = int(datetime(DAY.year, DAY.month, DAY.day, 12, tzinfo=UTC).timestamp() * 1000)
    for name, source, version in ALL_SAMPLES:
        sample = load_sample(name)
        sample["time"] = noon
        key = sample_key(sample, source, version, LAKE_ACCOUNT).replace("0a1b2c", Path(name).stem)
        store.put(key, parquet_bytes(to_table(sample)))
    res = resource(tmp_path, store.uri)
    meta = metadata(run(["security_lake_activity"], res), "security_lake_activity")
    assert (meta["objects"], meta["quarantined_objects"]) == (len(ALL_SAMPLES), 0)
    assert meta["pair_events"] == len(ALL_SAMPLES)
    assert sorted(meta["sources"]) == [
        "CLOUD_TRAIL_MGMT/1.0",
        "CLOUD_TRAIL_MGMT/2.0",
        "ROUTE53/1.0",
        "ROUTE53/2.0",
        "VPC_FLOW/1.0",
        "VPC_FLOW/2.0",
    ]


@mock_aws
def test_s3_lake_through_moto(tmp_path: Path, aws_env: None) -> None:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="aws-security-data-lake-us-east-1-test")
    write_security_lake_sample(tmp_path / "gen", DAY, days=1, seed=3, rows_per_file=50, sources=(VPC_FLOW,))
    s3 = S3Store("s3://aws-security-data-lake-us-east-1-test/lake")
    for path in (tmp_path / "gen").rglob("*.parquet"):
        s3.put(path.relative_to(tmp_path / "gen").as_posix(), path.read_bytes())
    s3.put(day_key(ROUTE53, "2.0", "broken.gz.parquet"), b"")
    res = resource(tmp_path, "s3://aws-security-data-lake-us-east-1-test/lake")
    meta = metadata(run(["security_lake_activity"], res), "security_lake_activity")
    assert (meta["objects"], meta["objects_parsed"], meta["quarantined_objects"]) == (3, 2, 1)
    assert meta["source"] == "s3://aws-security-data-lake-us-east-1-test/lake"
    assert sorted(meta["sources"]) == ["VPC_FLOW/1.0", "VPC_FLOW/2.0"]


def test_learning_set_combines_cloudtrail_and_security_lake(tmp_path: Path) -> None:
    put_log(LocalStore(tmp_path / "cloudtrail"), log_key(DAY, minute=5), [record(), record(ip="198.51.100.9")])
    lake = tmp_path / "lake"
    write_security_lake_sample(lake, DAY, days=1, seed=11, rows_per_file=100)
    res = resource(tmp_path, str(lake))
    result = run(["raw_cloudtrail", "cloudtrail_events", "security_lake_activity", "learning_set"], res)
    meta = metadata(result, "learning_set")
    lake_meta = metadata(result, "security_lake_activity")
    assert meta["pair_events_by_table"]["security_lake_activity"] == lake_meta["pair_events"] > 0
    assert meta["pair_events"] == 2 + lake_meta["pair_events"] - meta["duplicate_events"]
    table = res.warehouse().read_table("learning_set", DAY)
    sources = {s for row in table.column("sources").to_pylist() for s in row}
    assert sources == {
        "cloudtrail",
        "security_lake:CLOUD_TRAIL_MGMT",
        "security_lake:VPC_FLOW",
        "security_lake:ROUTE53",
    }
    assert meta["sources"] == sorted(sources)
    alice = [r for r in table.to_pylist() if r["entity"] == "arn:aws:iam::111122223333:user/alice"]
    assert sorted(r["source_ip"] for r in alice) == ["198.51.100.9", "203.0.113.10"]
    assert any(r["entity"].startswith("i-") for r in table.to_pylist())
    csv_lines = res.warehouse().read_bytes("learning_set", DAY, "learning.csv").decode().splitlines()
    assert len(csv_lines) == table.num_rows == meta["sagemaker_csv_lines"]  # one line per pair and day
    assert meta["sagemaker_csv_skipped_ipv6"] == 0
    assert set(table.column("address_scope").to_pylist()) <= {"private", "aws", "public"}


def test_learning_set_metadata_counts_the_ipv6_pairs_left_out_of_learning_csv(tmp_path: Path) -> None:
    """SageMaker IP Insights reads IPv4 only: the CSV skips an IPv6 pair and the metadata says how many."""
    put_log(
        LocalStore(tmp_path / "cloudtrail"),
        log_key(DAY, minute=5),
        [record(), record(), record(ip="2001:db8::7"), record(ip="10.1.2.3")],
    )
    res = resource(tmp_path, None)
    meta = metadata(run(["raw_cloudtrail", "cloudtrail_events", "learning_set"], res), "learning_set")
    csv_lines = res.warehouse().read_bytes("learning_set", DAY, "learning.csv").decode().splitlines()
    assert csv_lines == [
        "arn:aws:iam::111122223333:user/alice,10.1.2.3",
        "arn:aws:iam::111122223333:user/alice,203.0.113.10",
    ]
    assert (meta["pairs"], meta["sagemaker_csv_lines"], meta["sagemaker_csv_skipped_ipv6"]) == (3, 2, 1)
    assert meta["address_scopes"] == {"private": 1, "public": 2}


def test_learning_set_without_security_lake_partition(tmp_path: Path) -> None:
    put_log(LocalStore(tmp_path / "cloudtrail"), log_key(DAY, minute=5), [record()])
    res = resource(tmp_path, None)
    meta = metadata(run(["raw_cloudtrail", "cloudtrail_events", "learning_set"], res), "learning_set")
    assert meta["pairs"] == 1 and meta["pair_events_by_table"]["security_lake_activity"] == 0
    assert meta["sources"] == ["cloudtrail"]


def test_generated_sample_files_are_gzip_parquet(tmp_path: Path) -> None:
    """The layout the asset walks is the one the generator writes (guards both against drift)."""
    paths = write_security_lake_sample(tmp_path, DAY, days=1, seed=1, rows_per_file=10, sources=(ROUTE53,))
    assert all(pq.ParquetFile(p).metadata.row_group(0).column(0).compression == "GZIP" for p in paths)
    assert len(list_security_lake_day(LocalStore(tmp_path), DAY).objects) == len(paths)


# ------------------------------------------------------------------------------------ Athena


def test_athena_names_and_partition_filters() -> None:
    assert glue_database("us-east-1") == "amazon_security_lake_glue_db_us_east_1"
    assert glue_table("eu-west-1", ROUTE53, "2.0") == "amazon_security_lake_table_eu_west_1_route53_2_0"
    assert glue_table("us-east-1", CLOUD_TRAIL_MGMT, "1.0").endswith("_cloud_trail_mgmt_1_0")
    sql = activity_query(DAY, VPC_FLOW, "1.0", "us-east-1", accounts=[LAKE_ACCOUNT], regions=["us-west-2", "us-east-1"])
    assert 'FROM "amazon_security_lake_glue_db_us_east_1"."amazon_security_lake_table_us_east_1_vpc_flow_1_0"' in sql
    assert "eventday = '20240305'" in sql
    assert "region IN ('us-east-1', 'us-west-2')" in sql and f"accountid IN ('{LAKE_ACCOUNT}')" in sql
    assert "GROUP BY reason" in sql and "count(*) AS event_count" in sql  # pairs, aggregated in the lake
    cloudtrail_sql = activity_query(DAY, CLOUD_TRAIL_MGMT, "2.0", "us-east-1")
    assert "accountid" not in cloudtrail_sql and "GROUP BY" not in cloudtrail_sql and '"actor"' in cloudtrail_sql
    unload = unload_statement(sql, "s3://results/unload")
    assert unload.startswith("UNLOAD (WITH") and "TO 's3://results/unload/'" in unload and "'PARQUET'" in unload
    for bad in (
        lambda: activity_query(DAY, VPC_FLOW, "1.0", "us-east-1", accounts=["1' OR '1'='1"]),
        lambda: activity_query(DAY, VPC_FLOW, "1.0", "us-east-1'; DROP TABLE x; --"),
        lambda: activity_query(DAY, VPC_FLOW, "1.0", "us-east-1", regions=["us-east-1') OR ('1"]),
        lambda: activity_query(DAY, "S3_DATA", "2.0", "us-east-1"),
        lambda: activity_query(DAY, VPC_FLOW, "3.0", "us-east-1"),
        lambda: unload_statement(sql, "s3://x/it's"),
    ):
        with pytest.raises(ValueError):
            bad()


def test_an_event_in_both_cloudtrail_and_security_lake_counts_once(tmp_path: Path) -> None:
    """Security Lake's CloudTrail rows keep eventID as metadata.uid, so learning_set's
    deduplication by event_id keeps one copy when a trail and the lake both hold the event."""
    sample = load_sample("ocsf-1.1.0_cloudtrail_api_activity_6003.json")
    sample["time"] = int(datetime(DAY.year, DAY.month, DAY.day, 12, tzinfo=UTC).timestamp() * 1000)
    arn, ip, uid = sample["actor"]["user"]["uid"], sample["src_endpoint"]["ip"], sample["metadata"]["uid"]
    trail = record(arn=arn, ip=ip, time="2024-03-05T12:00:00Z", event_id=uid)
    put_log(LocalStore(tmp_path / "cloudtrail"), log_key(DAY, minute=5), [trail])
    lake = LocalStore(tmp_path / "lake")
    lake.put(sample_key(sample, CLOUD_TRAIL_MGMT, "2.0", LAKE_ACCOUNT), parquet_bytes(to_table(sample)))
    res = resource(tmp_path, lake.uri)
    result = run(["raw_cloudtrail", "cloudtrail_events", "security_lake_activity", "learning_set"], res)
    meta = metadata(result, "learning_set")
    assert (meta["pair_events"], meta["duplicate_events"], meta["pairs"]) == (1, 1, 1)
    [row] = res.warehouse().read_table("learning_set", DAY).to_pylist()
    assert (row["entity"], row["source_ip"], row["event_count"]) == (arn, ip, 1)
