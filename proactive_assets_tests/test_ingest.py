"""CloudTrail ingestion: listing (local, S3, org trail, pagination), parsing, quarantine, idempotence."""

import gzip
import json
from datetime import date
from pathlib import Path

import boto3
import pyarrow.compute as pc
import pytest
from dagster import DagsterInstance, materialize
from moto import mock_aws

from proactive_assets.core.pairs import build_learning_set, sagemaker_csv
from proactive_assets.core.sources import cloudtrail, cloudtrail_records
from proactive_assets.core.storage import LocalStore, S3Store, SourceUnavailable, open_store
from proactive_assets.defs.resources import ProactiveResource
from proactive_assets_tests.cloudtrail_fixtures import (
    ACCOUNT,
    ORG_ACCOUNT,
    ORG_ID,
    log_key,
    put_digest,
    put_log,
    record,
)
from proactive_assets_tests.conftest import SAMPLES, project_assets, project_resource

DAY = date(2024, 3, 5)
INGEST = ["raw_cloudtrail", "cloudtrail_events", "learning_set"]


@pytest.fixture(params=["scanner", "pyarrow"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the C scanner and with the pyarrow reader used where it was not built."""
    if request.param == "pyarrow":
        monkeypatch.setattr(cloudtrail_records, "scanner", None)
    elif cloudtrail_records.scanner is None:
        pytest.skip("the C scanner is not built here")
    return request.param


def resource(cloudtrail_uri: str, warehouse_uri: str, **kwargs) -> ProactiveResource:
    home = str(Path(warehouse_uri).parent) if not warehouse_uri.startswith("s3://") else "/tmp"
    return project_resource(home, cloudtrail_uri=cloudtrail_uri, warehouse=warehouse_uri, **kwargs)


def run_day(res: ProactiveResource, day: date = DAY, raise_on_error: bool = True):
    return materialize(
        project_assets(res, *INGEST),
        partition_key=day.isoformat(),
        resources={"proactive": res},
        instance=DagsterInstance.ephemeral(),
        raise_on_error=raise_on_error,
    )


def metadata(result, asset: str) -> dict:
    mats = [m for m in result.asset_materializations_for_node(asset)]
    return {k: getattr(v, "value", v) for k, v in mats[-1].metadata.items()}


def populate(store) -> None:
    """Two accounts (one under an org trail), two regions, a digest and a stray object."""
    put_log(store, log_key(DAY, minute=5), [record(), record(name="RunInstances", time="2024-03-05T10:01:00Z")])
    put_log(
        store,
        log_key(DAY, region="eu-west-1", minute=10),
        [record(arn="arn:aws:sts::111122223333:assumed-role/Admin/bob", ip="2001:db8::1")],
    )
    put_log(
        store,
        log_key(DAY, account=ORG_ACCOUNT, org_id=ORG_ID, minute=15),
        [record(arn=f"arn:aws:iam::{ORG_ACCOUNT}:user/carol", ip="198.51.100.7", recipientAccountId=ORG_ACCOUNT)],
    )
    put_log(store, log_key(date(2024, 3, 6), minute=0), [record(time="2024-03-06T00:00:00Z")])
    put_digest(store, DAY)
    store.put(f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2024/03/05/notes.txt", b"hello")


def test_listing_finds_every_account_region_and_org_trail(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    populate(store)
    listing = cloudtrail.list_day(store, DAY)
    objects, problems = listing.objects, listing.problems
    assert [(o.account, o.region, o.org_id) for o in objects] == [
        (ACCOUNT, "eu-west-1", None),
        (ACCOUNT, "us-east-1", None),
        (ORG_ACCOUNT, "us-east-1", ORG_ID),
    ]
    assert all("Digest" not in o.info.key for o in objects)
    assert [p.reason for p in problems] == ["not a CloudTrail log file name"]
    listing = cloudtrail.list_day(store, DAY, accounts=[ORG_ACCOUNT])
    only, _ = listing.objects, listing.problems
    assert [o.account for o in only] == [ORG_ACCOUNT]
    listing = cloudtrail.list_day(store, DAY, regions=["eu-west-1"])
    only, _ = listing.objects, listing.problems
    assert [o.region for o in only] == ["eu-west-1"]


def test_local_day_materialises_with_metadata(tmp_path: Path, reader: str) -> None:
    populate(LocalStore(tmp_path / "bucket"))
    res = resource(str(tmp_path / "bucket"), str(tmp_path / "warehouse"))
    result = run_day(res)
    raw = metadata(result, "raw_cloudtrail")
    assert raw["objects"] == 3 and raw["skipped_objects"] == 1
    assert raw["accounts"] == [ACCOUNT, ORG_ACCOUNT] and raw["org_ids"] == [ORG_ID]
    events = metadata(result, "cloudtrail_events")
    assert events["events"] == 4 and events["pair_events"] == 4
    assert "arn:aws:iam::111122223333:user/alice" in events["preview"] and "203.0.113.10" in events["preview"]
    pairs = metadata(result, "learning_set")
    assert pairs["pairs"] == 3
    table = res.warehouse().read_table("learning_set", DAY)
    row = {r["entity"]: r for r in table.to_pylist()}["arn:aws:iam::111122223333:user/alice"]
    assert row["event_count"] == 2 and row["event_names"] == ["DescribeInstances", "RunInstances"]
    assert row["source_files"][0].endswith(".json.gz")
    assert "2001:db8::1" in table.column("source_ip").to_pylist()


def test_bad_inputs_are_quarantined_and_the_rest_is_processed(tmp_path: Path, reader: str) -> None:
    store = LocalStore(tmp_path / "bucket")
    good = [record(), record(arn=None, ip="lambda.amazonaws.com", userIdentity={"type": "AWSService"})]
    put_log(store, log_key(DAY, minute=0), good)
    truncated = gzip.compress(json.dumps({"Records": [record()]}).encode())[:-12]
    store.put(log_key(DAY, minute=5, uid="Truncated0000000"), truncated)
    store.put(log_key(DAY, minute=10, uid="NotJson000000000"), gzip.compress(b"<html>oops</html>"))
    store.put(log_key(DAY, minute=15, uid="NoRecords0000000"), gzip.compress(b'{"foo": 1}'))
    store.put(log_key(DAY, minute=20, uid="Empty00000000000"), b"")
    bad_records = [
        {k: v for k, v in record().items() if k != "userIdentity"},
        {k: v for k, v in record().items() if k != "sourceIPAddress"},
        record(time="yesterday"),
        record(ip="not-an-ip"),
        record(name="GetObject", userAgent={"nested": True}),
        record(ip="075.050.255.067", name="ListBuckets"),
    ]
    put_log(store, log_key(DAY, minute=25, uid="BadRecords000000"), bad_records)
    res = resource(str(tmp_path / "bucket"), str(tmp_path / "warehouse"))
    result = run_day(res)
    events = metadata(result, "cloudtrail_events")
    assert events["quarantined_objects"] == 4  # truncated, not JSON, no Records, empty
    assert events["rejected_records"] == 4  # no userIdentity, no sourceIPAddress, bad time, mistyped field
    quarantine = res.warehouse().read_table("cloudtrail_events", DAY, "quarantine").to_pylist()
    reasons = {(Path(q["source_file"]).name.split("_")[-1], q["field"], q["reason"].split(" (")[0]) for q in quarantine}
    assert ("Truncated0000000.json.gz", None, "not a readable gzip object") in reasons
    assert ("NotJson000000000.json.gz", None, "not valid JSON") in reasons
    assert (
        "NoRecords0000000.json.gz",
        None,
        'not a CloudTrail log: expected an object with a "Records" array',
    ) in reasons
    assert ("Empty00000000000.json.gz", None, "empty object") in reasons
    fields = {q["field"] for q in quarantine if q["record_index"] >= 0}
    assert fields == {"userIdentity", "sourceIPAddress", "eventTime", "userAgent"}
    table = res.warehouse().read_table("cloudtrail_events", DAY)
    assert table.num_rows == 2 + 2  # good file (incl. the AWS service record) + invalid IP + leading-zero IP
    kinds = dict(zip(table.column("source_ip").to_pylist(), table.column("source_kind").to_pylist(), strict=True))
    assert kinds["lambda.amazonaws.com"] == "aws_service" and kinds["not-an-ip"] == "invalid"
    assert kinds["75.50.255.67"] == "ip"  # leading zeros read as decimal, not octal
    assert metadata(result, "learning_set")["pairs"] == 2


def test_empty_day_gives_empty_tables(tmp_path: Path) -> None:
    (tmp_path / "bucket" / "AWSLogs").mkdir(parents=True)
    res = resource(str(tmp_path / "bucket"), str(tmp_path / "warehouse"))
    result = run_day(res)
    assert metadata(result, "raw_cloudtrail")["objects"] == 0
    assert metadata(result, "learning_set")["pairs"] == 0
    assert res.warehouse().read_table("learning_set", DAY).num_rows == 0


def test_missing_folder_fails_with_a_clear_message(tmp_path: Path) -> None:
    res = resource(str(tmp_path / "nowhere"), str(tmp_path / "warehouse"))
    result = run_day(res, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "nowhere" in failure.step_failure_data.error.message


def test_rerun_replaces_partition_exactly(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "bucket")
    populate(store)
    res = resource(str(tmp_path / "bucket"), str(tmp_path / "warehouse"))
    run_day(res)
    first = res.warehouse().read_table("learning_set", DAY)
    stale = tmp_path / "warehouse" / "learning_set" / f"day={DAY}" / "stale.parquet"
    stale.write_bytes(b"left over")
    run_day(res)
    assert res.warehouse().read_table("learning_set", DAY).equals(first)
    assert not stale.exists()


def test_duplicate_deliveries_are_counted_once(reader: str) -> None:
    rec = record(event_id="same-id")
    parsed = cloudtrail_records.parse_log_bytes(
        gzip.compress(json.dumps({"Records": [rec, rec, record(event_id="other")]}).encode()), "f"
    )
    table, stats = build_learning_set(parsed.events)
    assert stats["duplicate_events"] == 1 and table.column("event_count").to_pylist() == [2]
    assert sagemaker_csv(table).data == b"arn:aws:iam::111122223333:user/alice,203.0.113.10\n"  # one line a pair


def test_cloudtrail_samples_parse(reader: str) -> None:
    records = []
    for path in sorted((SAMPLES / "cloudtrail").glob("*.json")):
        records += json.loads(path.read_text())
    assert records, f"no CloudTrail samples in {SAMPLES / 'cloudtrail'}"
    parsed = cloudtrail_records.parse_log_bytes(gzip.compress(json.dumps({"Records": records}).encode()), "stratus")
    assert parsed.problems == []
    assert parsed.events.num_rows == len(records) == 15
    assert pc.all(parsed.events.column("is_pair")).as_py()
    assert "arn:aws:sts::111122223333:federated-user/contractor-kim" in parsed.events.column("identity_arn").to_pylist()


def test_blank_arns_rewritten_addresses_and_key_fallbacks_are_normalised(reader: str) -> None:
    """The shortcuts of normalising (no trim of every ARN; the address and account columns kept as
    read where nothing changes) give what the rules say, in a batch where something does change."""
    blanks = ["", " ", "\t\n", "\u00a0\u2003", " x "]
    records = [record(arn=arn, event_id=f"blank{i}") for i, arn in enumerate(blanks)]
    records += [record(ip="2001:DB8::0:1", event_id="v6"), record(ip="010.1.2.3", event_id="zeros")]
    keyless = record(event_id="keyless")
    del keyless["recipientAccountId"], keyless["awsRegion"]
    records.append(keyless)
    parsed = cloudtrail_records.parse_logs(
        [cloudtrail_records.RawLog(json.dumps({"Records": records}).encode(), "f", "444455556666", "eu-west-1")]
    )
    rows = {r["event_id"]: r for r in parsed.events.to_pylist()}
    assert [rows[f"blank{i}"]["identity_arn"] for i in range(len(blanks))] == [None, None, None, None, " x "]
    assert rows["v6"]["source_ip"] == "2001:db8::1" and rows["zeros"]["source_ip"] == "10.1.2.3"
    assert rows["keyless"]["account"] == "444455556666" and rows["keyless"]["region"] == "eu-west-1"
    assert {rows["v6"]["account"], rows["v6"]["region"]} == {"111122223333", "us-east-1"}


@mock_aws
def test_s3_listing_paginates_past_1000_objects(aws_env: None) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="trail")
    store = S3Store("s3://trail/prefix", client=s3)
    body = gzip.compress(json.dumps({"Records": [record()]}).encode())
    for i in range(1100):
        s3.put_object(Bucket="trail", Key="prefix/" + log_key(DAY, minute=i % 1440, uid=f"U{i:015d}"), Body=body)
    put_digest(store, DAY)
    listing = cloudtrail.list_day(store, DAY)
    objects, problems = listing.objects, listing.problems
    assert len(objects) == 1100 and not problems
    assert objects[0].uri.startswith("s3://trail/prefix/AWSLogs/")


@mock_aws
def test_missing_bucket_is_a_clear_error(aws_env: None) -> None:
    store = S3Store("s3://no-such-bucket", client=boto3.client("s3", region_name="us-east-1"))
    with pytest.raises(SourceUnavailable, match=r"no-such-bucket.*NoSuchBucket"):
        cloudtrail.list_day(store, DAY)


def test_no_credentials_is_a_clear_error(no_aws_credentials: None) -> None:
    store = open_store("s3://some-bucket/trail")
    with pytest.raises(SourceUnavailable, match="no AWS credentials"):
        cloudtrail.list_day(store, DAY)


def test_s3_source_and_warehouse_through_moto_server(moto_endpoint: str) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="trail")
    s3.create_bucket(Bucket="lake")
    populate(S3Store("s3://trail", client=s3))
    res = resource("s3://trail", "s3://lake/warehouse")
    result = run_day(res)
    assert metadata(result, "raw_cloudtrail")["org_ids"] == [ORG_ID]
    assert metadata(result, "learning_set")["pairs"] == 3
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="lake")["Contents"]}
    assert f"warehouse/learning_set/day={DAY}/learning_set.parquet" in keys
    assert f"warehouse/cloudtrail_events/day={DAY}/quarantine.parquet" in keys


def test_data_version_changes_only_when_the_day_changes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "bucket")
    populate(store)
    res = resource(str(tmp_path / "bucket"), str(tmp_path / "warehouse"))

    def versions() -> tuple[str, str]:
        result = run_day(res)
        found = {}
        for asset in ("raw_cloudtrail", "learning_set"):
            mat = result.asset_materializations_for_node(asset)[-1]
            found[asset] = mat.tags["dagster/data_version"]
        return found["raw_cloudtrail"], found["learning_set"]

    first = versions()
    assert versions() == first  # same objects: same versions, nothing downstream goes stale
    put_log(store, log_key(DAY, minute=55, uid="LateDelivery0000"), [record(ip="192.0.2.77")])
    late = versions()
    assert late[0] != first[0] and late[1] != first[1]
