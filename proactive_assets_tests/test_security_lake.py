"""Security Lake: keys, SQS notifications and OCSF rows, checked against OCSF-shaped samples.

The OCSF records and SQS events are the suite's own (``data/ocsf``, ``data/securitylake_workshop``;
see ``data/PROVENANCE.md``), written in the shapes of the OCSF schema and the Security Lake workshop.
"""

import copy
import io
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from proactive_assets.core.sources.notifications import MalformedNotification, parse_sqs_message_body
from proactive_assets.core.sources.ocsf import (
    ACTIVITY_SCHEMA,
    CLOUD_TRAIL_MGMT,
    ROUTE53,
    SUPPORTED_SOURCES,
    SUPPORTED_VERSIONS,
    VPC_FLOW,
    OcsfSchemaError,
    read_ocsf_activity,
)
from proactive_assets.core.sources.security_lake import parse_security_lake_key, read_ocsf_parquet, security_lake_key
from proactive_assets.samples.ocsf import make_ocsf_table, write_security_lake_sample
from proactive_assets_tests.conftest import SAMPLES

OCSF = SAMPLES / "ocsf"
WORKSHOP = SAMPLES / "securitylake_workshop"

WORKSHOP_KEY = (
    "aws/VPC_FLOW/1.0/region=us-east-1/accountId=645411899653/eventDay=20230726/"
    "02c4c95860435b9afa86fb93f7fa776a.gz.parquet"
)
WORKSHOP_BUCKET = "aws-security-data-lake-us-east-1-iiwhzfdilkd1tp1kcbh8mmk4shsvyy"

CLOUDTRAIL_SAMPLES = [
    ("ocsf-1.0.0-rc.2_cloudtrail_api_activity_3005.json", "1.0"),
    ("ocsf-1.1.0_cloudtrail_api_activity_6003.json", "2.0"),
    ("ocsf-1.1.0_cloudtrail_authentication_3002.json", "2.0"),
    ("ocsf-1.1.0_cloudtrail_account_change_3001.json", "2.0"),
]
INSTANCE_SAMPLES = [
    ("ocsf-1.0.0-rc.2_vpcflow_network_activity_4001.json", VPC_FLOW, "1.0"),
    ("ocsf-1.1.0_vpcflow_network_activity_4001.json", VPC_FLOW, "2.0"),
    ("ocsf-1.0.0-rc.2_route53_dns_activity_4003.json", ROUTE53, "1.0"),
    ("ocsf-1.1.0_route53_dns_activity_4003.json", ROUTE53, "2.0"),
]
ALL_SAMPLES = [(name, CLOUD_TRAIL_MGMT, version) for name, version in CLOUDTRAIL_SAMPLES]
ALL_SAMPLES += INSTANCE_SAMPLES


# ----------------------------------------------------------------------------- helpers


def load_sample(name: str) -> dict[str, Any]:
    return json.loads((OCSF / name).read_text())


def dig(obj: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def without_empty_structs(obj: Any) -> Any:
    """Drop ``{}`` values: Parquet cannot store a struct without fields (Security Lake
    writes its full schema instead, so real objects never have one)."""
    if isinstance(obj, dict):
        return {k: without_empty_structs(v) for k, v in obj.items() if v != {}}
    if isinstance(obj, list):
        return [without_empty_structs(v) for v in obj]
    return obj


def to_table(*records: dict[str, Any]) -> pa.Table:
    return pa.Table.from_pylist([without_empty_structs(r) for r in records])


def parquet_bytes(table: pa.Table, compression: str = "gzip") -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=compression)
    return sink.getvalue()


def sample_key(record: dict[str, Any], source: str, version: str, account: str) -> str:
    day = datetime.fromtimestamp(record["time"] / 1000, UTC).date()
    region = record["cloud"]["region"]
    return security_lake_key(source, version, region, account, day, "0a1b2c.gz.parquet")


def only_row(table: pa.Table) -> dict[str, Any]:
    assert table.num_rows == 1
    return table.to_pylist()[0]


# ------------------------------------------------------------------------- object keys


def test_workshop_key_parses() -> None:
    info = parse_security_lake_key(WORKSHOP_KEY)
    assert info is not None
    assert (info.source, info.source_version) == ("VPC_FLOW", "1.0")
    assert (info.region, info.account) == ("us-east-1", "645411899653")
    assert info.day == date(2023, 7, 26)
    assert info.key == WORKSHOP_KEY
    assert info.supported and not info.custom
    assert info.source_label == "security_lake:VPC_FLOW"


def test_version_two_and_prefixed_keys_parse() -> None:
    key = "lake/aws/CLOUD_TRAIL_MGMT/2.0/region=eu-west-1/accountId=111122223333/eventDay=20240229/abc.gz.parquet"
    info = parse_security_lake_key(key)
    assert info is not None and info.supported
    assert (info.source, info.source_version, info.region) == (
        "CLOUD_TRAIL_MGMT",
        "2.0",
        "eu-west-1",
    )
    assert info.day == date(2024, 2, 29)


def test_unknown_and_custom_sources_parse_but_are_unsupported() -> None:
    s3_data = parse_security_lake_key(
        "aws/S3_DATA/2.0/region=us-east-1/accountId=123456789012/eventDay=20240101/x.parquet"
    )
    assert s3_data is not None and s3_data.source == "S3_DATA" and not s3_data.supported
    future = parse_security_lake_key(
        "aws/VPC_FLOW/3.0/region=us-east-1/accountId=123456789012/eventDay=20240101/x.parquet"
    )
    assert future is not None and not future.supported
    custom = parse_security_lake_key(
        "ext/MOVIE_AUTH/1.0/region=us-east-1/accountId=123456789012/eventDay=20240101/f.parquet"
    )
    assert custom is not None and custom.custom and not custom.supported
    assert (custom.source, custom.source_version) == ("MOVIE_AUTH", "1.0")
    unversioned = parse_security_lake_key(
        "ext/MY_APP/region=us-east-1/accountId=123456789012/eventDay=20240101/f.parquet"
    )
    assert unversioned is not None and unversioned.source_version is None


@pytest.mark.parametrize(
    "key",
    [
        "aws/VPC_FLOW/1.0/region=us-east-1/accountId=64541189965/eventDay=20230726/a.parquet",
        "aws/VPC_FLOW/1.0/region=us-east-1/accountId=645411899653/eventDay=20231340/a.parquet",
        "aws/VPC_FLOW/1.0/region=us-east-1/accountId=645411899653/eventDay=20230726/a.json",
        "aws/VPC_FLOW/region=us-east-1/accountId=645411899653/eventDay=20230726/a.parquet",
        "AWSLogs/111122223333/CloudTrail/us-east-1/2024/01/01/"
        "111122223333_CloudTrail_us-east-1_20240101T0000Z_abc.json.gz",
        "",
    ],
)
def test_other_keys_are_not_security_lake_objects(key: str) -> None:
    assert parse_security_lake_key(key) is None


def test_security_lake_key_round_trips() -> None:
    key = security_lake_key("ROUTE53", "2.0", "ap-south-1", "123456789012", date(2024, 3, 5), "h.gz.parquet")
    info = parse_security_lake_key(key)
    assert info is not None
    assert (info.source, info.source_version, info.region, info.account, info.day) == (
        "ROUTE53",
        "2.0",
        "ap-south-1",
        "123456789012",
        date(2024, 3, 5),
    )


# ------------------------------------------------------------------------ SQS messages


def workshop_body(name: str) -> Any:
    event = json.loads((WORKSHOP / name).read_text())
    return event["Records"][0]["body"]


def test_workshop_dict_body_gives_bucket_and_key() -> None:
    body = workshop_body("test-securitylake-sqs-message.json")
    assert isinstance(body, dict)
    assert parse_sqs_message_body(body) == [(WORKSHOP_BUCKET, WORKSHOP_KEY)]


def test_workshop_body_as_json_string_and_bytes() -> None:
    """Real SQS delivers the body as text; the original Lambda skipped those."""
    text = json.dumps(workshop_body("test-securitylake-sqs-message.json"))
    assert parse_sqs_message_body(text) == [(WORKSHOP_BUCKET, WORKSHOP_KEY)]
    assert parse_sqs_message_body(text.encode()) == [(WORKSHOP_BUCKET, WORKSHOP_KEY)]


def test_url_encoded_keys_are_decoded() -> None:
    body = copy.deepcopy(workshop_body("test-securitylake-sqs-message.json"))
    obj = body["Records"][0]["s3"]["object"]
    obj["key"] = obj["key"].replace("=", "%3D").replace("02c4", "my+file%2B02c4")
    [(bucket, key)] = parse_sqs_message_body(json.dumps(body))
    assert bucket == WORKSHOP_BUCKET
    assert key == WORKSHOP_KEY.replace("02c4", "my file+02c4")
    assert parse_security_lake_key(key) is not None


def eventbridge_event(key: str, detail_type: str = "Object Created") -> dict[str, Any]:
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2023-09-22T16:06:46Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{WORKSHOP_BUCKET}"],
        "detail": {
            "version": "0",
            "bucket": {"name": WORKSHOP_BUCKET},
            "object": {"key": key, "size": 35095, "etag": "b68171d372a7"},
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "reason": "PutObject",
        },
    }


def test_eventbridge_body() -> None:
    event = eventbridge_event(WORKSHOP_KEY)
    assert parse_sqs_message_body(json.dumps(event)) == [(WORKSHOP_BUCKET, WORKSHOP_KEY)]
    assert parse_sqs_message_body(event) == [(WORKSHOP_BUCKET, WORKSHOP_KEY)]
    deleted = eventbridge_event(WORKSHOP_KEY, detail_type="Object Deleted")
    assert parse_sqs_message_body(deleted) == []


def test_sns_wrapped_body() -> None:
    inner = json.dumps(workshop_body("test-securitylake-sqs-message.json"))
    wrapped = {"Type": "Notification", "MessageId": "m-1", "Message": inner}
    assert parse_sqs_message_body(json.dumps(wrapped)) == [(WORKSHOP_BUCKET, WORKSHOP_KEY)]


def test_s3_test_event_and_non_creation_records_are_empty() -> None:
    test_event = {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2023-09-22T16:00:00.000Z",
        "Bucket": WORKSHOP_BUCKET,
        "RequestId": "5582815E1AEA5ADF",
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
    }
    assert parse_sqs_message_body(json.dumps(test_event)) == []
    removed = {
        "Records": [
            {
                "eventName": "ObjectRemoved:Delete",
                "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}},
            }
        ]
    }
    assert parse_sqs_message_body(removed) == []


def test_irrelevant_workshop_body_is_malformed_as_dict_and_string() -> None:
    """Rule: a body with neither shape is malformed (left for the dead-letter queue)."""
    body = workshop_body("test-lambda-message.json")
    for form in (body, json.dumps(body)):
        with pytest.raises(MalformedNotification, match=r"neither 'Records'.*nor 'detail'"):
            parse_sqs_message_body(form)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json {", "not JSON"),
        ("[1, 2]", "not an object"),
        ({"Records": []}, "non-empty list"),
        ({"Records": [{"eventSource": "aws:sqs", "body": "x"}]}, r"Records\[0\]"),
        ({"Records": ["x"]}, r"Records\[0\] is not an object"),
        ({"detail": {"bucket": {"name": "b"}}}, "detail.bucket.name/object.key"),
        ({"Type": "Notification", "Message": "<xml/>"}, "SNS Message is not JSON"),
        (42, "not JSON text or a dict"),
    ],
)
def test_malformed_bodies_raise(body: Any, message: str) -> None:
    with pytest.raises(MalformedNotification, match=message):
        parse_sqs_message_body(body)


# --------------------------------------------------------------- OCSF samples -> rows


def test_activity_schema_is_the_cloudtrail_events_schema_with_counts() -> None:
    """Security Lake activity and CloudTrail events feed one learning set: the same columns, then
    how many events a row stands for (a network pair of an object) and until when."""
    from proactive_assets.core.events import EVENTS_SCHEMA

    assert ACTIVITY_SCHEMA.names[: len(EVENTS_SCHEMA)] == EVENTS_SCHEMA.names
    assert ACTIVITY_SCHEMA.names[len(EVENTS_SCHEMA) :] == ["event_count", "last_event_time"]
    lake = read_ocsf_activity(make_ocsf_table(VPC_FLOW, "2.0", 10, seed=1), VPC_FLOW, "2.0", "k").table
    assert lake.schema == ACTIVITY_SCHEMA
    assert lake.select(EVENTS_SCHEMA.names).cast(EVENTS_SCHEMA).num_rows == lake.num_rows


@pytest.mark.parametrize(("name", "version"), CLOUDTRAIL_SAMPLES)
def test_cloudtrail_samples_give_entity_ip_pairs(name: str, version: str) -> None:
    record = load_sample(name)
    activity = read_ocsf_activity(to_table(record), CLOUD_TRAIL_MGMT, version, name)
    assert activity.table.schema == ACTIVITY_SCHEMA
    assert (activity.rows_read, activity.rejected) == (1, {})
    row = only_row(activity.table)
    arn_field = "actor.user.uuid" if version == "1.0" else "actor.user.uid"
    account_field = "actor.user.account_uid" if version == "1.0" else "actor.user.account.uid"
    assert row["identity_arn"] == dig(record, arn_field)
    assert row["identity_arn"].startswith("arn:aws:")
    assert row["identity_type"] == dig(record, "actor.user.type")
    assert row["source_ip"] == dig(record, "src_endpoint.ip")
    # The samples have no cloud account and ``name`` is no Security Lake key, so the
    # account comes from the caller's.
    assert row["account"] == dig(record, account_field)
    assert row["region"] == dig(record, "cloud.region")
    assert row["event_name"] == dig(record, "api.operation")
    assert row["event_source"] == dig(record, "api.service.name")
    assert row["user_agent"] == dig(record, "http_request.user_agent")
    assert row["error_code"] is None
    assert row["event_time"] == datetime.fromtimestamp(record["time"] / 1000, UTC)
    assert row["source_file"] == name
    assert row["source"] == "security_lake:CLOUD_TRAIL_MGMT"
    assert row["event_id"] == dig(record, "metadata.uid")
    assert (row["source_kind"], row["is_pair"]) == ("ip", True)
    assert activity.pair_count == 1


@pytest.mark.parametrize(("name", "version"), CLOUDTRAIL_SAMPLES)
def test_cloudtrail_samples_through_parquet(name: str, version: str) -> None:
    """Parquet bytes + key: the key's account wins over the caller's when rows lack
    ``cloud.account``, since Security Lake partitions by the account the logs belong to."""
    record = load_sample(name)
    key = sample_key(record, CLOUD_TRAIL_MGMT, version, "999999999999")
    activity = read_ocsf_parquet(parquet_bytes(to_table(record)), key)
    row = only_row(activity.table)
    assert row["account"] == "999999999999"
    assert row["source_file"] == key
    assert row["identity_arn"] == dig(record, "actor.user.uuid" if version == "1.0" else "actor.user.uid")
    assert row["source_ip"] == dig(record, "src_endpoint.ip")


def test_cloud_account_is_preferred_when_present() -> None:
    record = load_sample("ocsf-1.1.0_cloudtrail_api_activity_6003.json")
    record["cloud"]["account"] = {"uid": "444455556666"}
    key = sample_key(record, CLOUD_TRAIL_MGMT, "2.0", "999999999999")
    row = only_row(read_ocsf_parquet(parquet_bytes(to_table(record)), key).table)
    assert row["account"] == "444455556666"


#: Every network sample of data/ocsf and the (entity, type, remote, event name, error) pairs it gives,
#: or why it gives none: the issue's cases in both source versions.
NETWORK_PAIRS = {
    # inbound flows: the instance is on dst_endpoint, the remote end is the source
    "ocsf-1.0.0-rc.2_vpcflow_network_activity_4001.json": [
        ("i-0a1b2c3d4e5f60718", "Instance", "192.0.2.10", "tcp/443", None)
    ],
    "ocsf-1.1.0_vpcflow_network_activity_4001.json": [
        ("i-0a1b2c3d4e5f60718", "Instance", "198.51.100.123", "udp/123", None)
    ],
    # outbound flows: the instance's own address is src_endpoint.ip; the pair is the destination
    "ocsf-1.0.0-rc.2_vpcflow_network_activity_4001_outbound.json": [
        ("i-0a1b2c3d4e5f60718", "Instance", "203.0.113.45", "tcp/443", None)
    ],
    "ocsf-1.1.0_vpcflow_network_activity_4001_outbound.json": [
        ("i-0a1b2c3d4e5f60718", "Instance", "198.51.100.200", "tcp/443", None)
    ],
    # a Fargate task: no instance, its ENI
    "ocsf-1.1.0_vpcflow_network_activity_4001_fargate_eni.json": [
        ("eni-0c0ffee0c0ffee001", "NetworkInterface", "192.0.2.77", "tcp/8080", None)
    ],
    "ocsf-1.0.0-rc.2_vpcflow_network_activity_4001_nodata.json": "no addresses (NODATA or SKIPDATA record)",
    "ocsf-1.1.0_vpcflow_network_activity_4001_nodata.json": "no addresses (NODATA or SKIPDATA record)",
    # Route 53: the querying instance with each A record (the CNAME is no address)
    "ocsf-1.0.0-rc.2_route53_dns_activity_4003_instance.json": [
        ("i-0a1b2c3d4e5f60718", "Instance", "203.0.113.20", "DNS A packages.example.org.", None),
        ("i-0a1b2c3d4e5f60718", "Instance", "203.0.113.21", "DNS A packages.example.org.", None),
    ],
    "ocsf-1.1.0_route53_dns_activity_4003_instance.json": [
        ("i-0a1b2c3d4e5f60718", "Instance", "198.51.100.30", "DNS A api.partner.example.com.", None),
        ("i-0a1b2c3d4e5f60718", "Instance", "198.51.100.31", "DNS A api.partner.example.com.", None),
    ],
    # a query through a resolver endpoint: no instance, so its client address in its VPC
    "ocsf-1.0.0-rc.2_route53_dns_activity_4003.json": [
        ("vpc-0a1b2c3d/10.1.20.36", "ResolverClient", "198.51.100.81", "DNS A telemetry.example.net.", None)
    ],
    "ocsf-1.1.0_route53_dns_activity_4003.json": [
        ("vpc-0a1b2c3d/10.1.20.35", "ResolverClient", "198.51.100.80", "DNS A updates.example.com.", None)
    ],
    "ocsf-1.1.0_route53_dns_activity_4003_nxdomain.json": "no A or AAAA answer",
}


def network_sample(name: str) -> tuple[str, str]:
    source = VPC_FLOW if "_vpcflow_" in name else ROUTE53
    return source, "1.0" if name.startswith("ocsf-1.0.0-rc.2") else "2.0"


def test_every_network_sample_is_listed() -> None:
    found = {p.name for p in OCSF.glob("ocsf-*.json") if "_vpcflow_" in p.name or "_route53_" in p.name}
    assert found == set(NETWORK_PAIRS)


@pytest.mark.parametrize("name", sorted(NETWORK_PAIRS))
def test_network_samples_pair_the_resource_with_the_remote_endpoint(name: str) -> None:
    """Both source versions, through Parquet and a lake key: (resource, remote end) pairs by direction,
    or, for ordinary rows that make none, a count by reason - nothing quarantined."""
    record = load_sample(name)
    source, version = network_sample(name)
    key = sample_key(record, source, version, "123456789012")
    activity = read_ocsf_parquet(parquet_bytes(to_table(record)), key)
    assert activity.table.schema == ACTIVITY_SCHEMA
    assert (activity.rows_read, activity.rejected, activity.rejected_examples) == (1, {}, [])
    want = NETWORK_PAIRS[name]
    rows = activity.table.to_pylist()
    got = [(r["identity_arn"], r["identity_type"], r["source_ip"], r["event_name"], r["error_code"]) for r in rows]
    if isinstance(want, str):
        assert (got, activity.unpaired) == ([], {want: 1})
        return
    assert (got, activity.unpaired) == (want, {})
    account_field = "cloud.account_uid" if version == "1.0" else "cloud.account.uid"
    for row in rows:
        assert (row["account"], row["region"]) == (dig(record, account_field), record["cloud"]["region"])
        assert row["event_source"] == ("vpc-flow-logs" if source == VPC_FLOW else "route53-resolver")
        assert (row["source"], row["source_file"]) == (f"security_lake:{source}", key)
        assert (row["is_pair"], row["source_kind"], row["event_count"]) == (True, "ip", 1)
        assert row["event_time"] == row["last_event_time"] == datetime.fromtimestamp(record["time"] / 1000, UTC)


def flow(**changes: Any) -> dict[str, Any]:
    """The 1.1.0 outbound flow with ``changes`` to its endpoints (``src_``/``dst_`` prefixed) or connection."""
    record = load_sample("ocsf-1.1.0_vpcflow_network_activity_4001_outbound.json")
    for name, value in changes.items():
        side, _, field = name.partition("_")
        target = {"src": "src_endpoint", "dst": "dst_endpoint", "conn": "connection_info"}[side]
        record[target][field] = value
    return record


def test_flow_direction_decides_the_side_and_blanks_are_no_value() -> None:
    cases = [
        flow(),  # outbound, instance on src: the destination
        flow(conn_direction_id=1, dst_instance_uid="i-2", src_instance_uid="-", src_interface_uid="-"),  # inbound
        flow(conn_direction_id=0),  # unknown direction, only src names a resource: src
        flow(conn_direction_id=0, dst_instance_uid="i-3"),  # unknown direction, both ends resources
        flow(src_instance_uid="-", src_interface_uid=" - "),  # no resource at all
        flow(dst_ip="-"),  # no remote address
        flow(dst_ip="10.1.20.35"),  # the remote is the instance's own address
        flow(dst_ip="not-an-address"),
        flow(dst_ip="203.0.113.007", dst_port=22, src_port=50000),  # leading zeros read as decimal
    ]
    activity = read_ocsf_activity(to_table(*cases), VPC_FLOW, "2.0", "k")
    got = sorted((r["identity_arn"], r["source_ip"], r["event_name"]) for r in activity.table.to_pylist())
    assert got == [
        ("i-0a1b2c3d4e5f60718", "198.51.100.200", "tcp/443"),
        ("i-0a1b2c3d4e5f60718", "203.0.113.7", "tcp/22"),
        ("i-2", "10.1.20.35", "tcp/443"),
    ]
    # the outbound and the direction-less row of the same pair are one row of two events
    [row] = [r for r in activity.table.to_pylist() if r["source_ip"] == "198.51.100.200"]
    assert row["event_count"] == 2
    assert activity.unpaired == {
        "both ends are resources and the direction is unknown": 1,
        "no instance or network interface on either end": 1,
        "no remote address": 1,
        "remote address is the resource's own": 1,
        "remote is not an IP address": 1,
    }
    assert activity.rejected == {} and activity.rejected_examples == []


def test_blocked_flows_and_failed_queries_keep_their_outcome_as_error_code() -> None:
    blocked = flow()
    blocked["disposition_id"] = 2
    rows = read_ocsf_activity(to_table(blocked), VPC_FLOW, "2.0", "k").table.to_pylist()
    assert [r["error_code"] for r in rows] == ["Blocked"]
    refused = load_sample("ocsf-1.1.0_route53_dns_activity_4003_instance.json")
    refused["rcode"] = "Refused"
    rows = read_ocsf_activity(to_table(refused), ROUTE53, "2.0", "k").table.to_pylist()
    assert {r["error_code"] for r in rows} == {"Refused"}


def test_a_query_from_nobody_makes_no_pair_and_aaaa_answers_do() -> None:
    nobody = load_sample("ocsf-1.1.0_route53_dns_activity_4003.json")
    del nobody["src_endpoint"]["vpc_uid"]
    six = load_sample("ocsf-1.1.0_route53_dns_activity_4003_instance.json")
    six["answers"] = [
        {"class": "IN", "rdata": "2001:DB8::1", "type": "aaaa"},
        {"class": "IN", "rdata": "-", "type": "A"},
    ]
    activity = read_ocsf_activity(to_table(nobody, six), ROUTE53, "2.0", "k")
    assert [(r["identity_arn"], r["source_ip"]) for r in activity.table.to_pylist()] == [
        ("i-0a1b2c3d4e5f60718", "2001:db8::1")
    ]
    assert activity.unpaired == {"no querying instance or client address": 1}


@pytest.mark.parametrize(("name", "source", "version"), ALL_SAMPLES)
def test_wrong_schema_version_raises_naming_the_key(name: str, source: str, version: str) -> None:
    record = load_sample(name)
    other = "1.0" if version == "2.0" else "2.0"
    key = sample_key(record, source, other, "123456789012")
    with pytest.raises(OcsfSchemaError) as caught:
        read_ocsf_parquet(parquet_bytes(to_table(record)), key)
    assert caught.value.key == key
    assert key in str(caught.value)
    assert caught.value.missing
    assert f"look like source version {version}" in str(caught.value)


def test_unknown_source_raises_naming_the_key() -> None:
    table = to_table(load_sample("ocsf-1.1.0_cloudtrail_api_activity_6003.json"))
    key = "aws/S3_DATA/2.0/region=us-east-1/accountId=123456789012/eventDay=20230921/a.gz.parquet"
    with pytest.raises(OcsfSchemaError, match="unsupported Security Lake source") as caught:
        read_ocsf_activity(table, "S3_DATA", "2.0", key)
    assert caught.value.key == key and key in str(caught.value)
    with pytest.raises(OcsfSchemaError, match="S3_DATA") as caught:
        read_ocsf_parquet(parquet_bytes(table), key)
    assert caught.value.key == key
    with pytest.raises(OcsfSchemaError, match="unsupported source version"):
        read_ocsf_activity(table, CLOUD_TRAIL_MGMT, "3.0", key)


def test_missing_columns_are_named() -> None:
    record = load_sample("ocsf-1.1.0_cloudtrail_api_activity_6003.json")
    del record["api"]
    del record["time"]
    with pytest.raises(OcsfSchemaError) as caught:
        read_ocsf_activity(to_table(record), CLOUD_TRAIL_MGMT, "2.0", "the/key")
    assert set(caught.value.missing) == {"time", "api.operation"}
    assert str(caught.value).startswith("the/key: ")


def test_class_of_another_source_raises() -> None:
    flows = to_table(load_sample("ocsf-1.1.0_vpcflow_network_activity_4001.json"))
    with pytest.raises(OcsfSchemaError, match=r"no row of class \[4003\].*found class_uid \[4001\]"):
        read_ocsf_activity(flows, ROUTE53, "2.0", "k")
    route53 = to_table(load_sample("ocsf-1.1.0_route53_dns_activity_4003.json"))
    with pytest.raises(OcsfSchemaError, match=r"missing: dst_endpoint.ip"):
        read_ocsf_activity(route53, VPC_FLOW, "2.0", "k")


def test_rows_of_unexpected_class_or_without_time_are_rejected() -> None:
    record = load_sample("ocsf-1.1.0_cloudtrail_api_activity_6003.json")
    finding = copy.deepcopy(record)
    finding["class_uid"] = 2004
    untimed = copy.deepcopy(record)
    untimed["time"] = None
    activity = read_ocsf_activity(to_table(record, finding, untimed), CLOUD_TRAIL_MGMT, "2.0", "k")
    assert activity.rows_read == 3 and activity.rows_kept == 1
    assert activity.rejected == {
        "class_uid not in [3001, 3002, 6003] for CLOUD_TRAIL_MGMT 2.0": 1,
        "missing time": 1,
    }
    assert [index for index, _ in activity.rejected_examples] == [1, 2]


def test_service_callers_count_but_are_not_pairs() -> None:
    record = load_sample("ocsf-1.1.0_cloudtrail_api_activity_6003.json")
    service = copy.deepcopy(record)
    service["actor"] = {"user": {"type": "AWSService"}, "invoked_by": "lambda.amazonaws.com"}
    service["src_endpoint"] = {"domain": "lambda.amazonaws.com"}
    internal = copy.deepcopy(record)
    internal["src_endpoint"] = {"ip": "AWS Internal"}
    table = to_table(record, service, internal)
    rows = read_ocsf_activity(table, CLOUD_TRAIL_MGMT, "2.0", "k").table.to_pylist()
    assert [r["is_pair"] for r in rows] == [True, False, False]
    assert [r["source_kind"] for r in rows] == ["ip", "aws_service", "aws_internal"]
    assert rows[1]["identity_arn"] is None
    assert rows[1]["source_ip"] == "lambda.amazonaws.com"
    assert rows[2]["source_ip"] == "AWS Internal"


def test_source_ips_are_canonical_and_error_codes_kept() -> None:
    record = load_sample("ocsf-1.1.0_cloudtrail_api_activity_6003.json")
    leading_zeros = copy.deepcopy(record)
    leading_zeros["src_endpoint"]["ip"] = "075.050.255.067"
    ipv6 = copy.deepcopy(record)
    ipv6["src_endpoint"]["ip"] = "2001:DB8:0:0::1"
    denied = copy.deepcopy(record)
    denied["api"]["response"]["error"] = "AccessDenied"
    rows = read_ocsf_activity(to_table(leading_zeros, ipv6, denied), CLOUD_TRAIL_MGMT, "2.0", "k").table.to_pylist()
    assert [r["source_ip"] for r in rows] == ["75.50.255.67", "2001:db8::1", "205.8.181.128"]
    assert all(r["is_pair"] for r in rows)
    assert [r["error_code"] for r in rows] == [None, None, "AccessDenied"]


def test_time_as_timestamp_column_is_accepted() -> None:
    record = load_sample("ocsf-1.1.0_cloudtrail_api_activity_6003.json")
    table = to_table(record)
    as_timestamp = pa.array([record["time"] * 1000], pa.int64()).cast(pa.timestamp("us"))
    table = table.set_column(table.schema.get_field_index("time"), "time", as_timestamp)
    row = only_row(read_ocsf_activity(table, CLOUD_TRAIL_MGMT, "2.0", "k").table)
    assert row["event_time"] == datetime.fromtimestamp(record["time"] / 1000, UTC)


def test_unreadable_parquet_and_foreign_keys_raise_naming_the_key() -> None:
    key = security_lake_key(VPC_FLOW, "2.0", "us-east-1", "123456789012", date(2024, 1, 1), "x.gz.parquet")
    with pytest.raises(OcsfSchemaError, match="unreadable Parquet") as caught:
        read_ocsf_parquet(b"PAR1 but truncated", key)
    assert caught.value.key == key and key in str(caught.value)
    with pytest.raises(OcsfSchemaError, match="not a Security Lake object key"):
        read_ocsf_parquet(b"", "AWSLogs/1/CloudTrail/x.json.gz")


def test_empty_table_gives_empty_activity() -> None:
    table = make_ocsf_table(CLOUD_TRAIL_MGMT, "2.0", 0, seed=1)
    activity = read_ocsf_activity(table, CLOUD_TRAIL_MGMT, "2.0", "k")
    assert activity.table.num_rows == 0 and activity.rejected == {}
    assert activity.table.schema == ACTIVITY_SCHEMA


# -------------------------------------------------------------------------- generator


@pytest.mark.parametrize("source", SUPPORTED_SOURCES)
@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_generated_tables_round_trip_through_the_reader(source: str, version: str) -> None:
    day = date(2024, 5, 6)
    table = make_ocsf_table(source, version, 2_000, seed=3, day=day, account="210987654321", region="eu-west-1")
    key = security_lake_key(source, version, "eu-west-1", "210987654321", day, "h.gz.parquet")
    activity = read_ocsf_parquet(parquet_bytes(table), key)
    out = activity.table
    assert out.schema == ACTIVITY_SCHEMA
    assert activity.rows_read == 2_000
    assert activity.rejected_count == 0
    assert activity.events + activity.unpaired_count == (2_000 if source != ROUTE53 else activity.events)
    assert activity.pair_count > 1_000
    assert set(out["account"].to_pylist()) == {"210987654321"}
    assert set(out["region"].to_pylist()) == {"eu-west-1"}
    assert {t.date() for t in out["event_time"].to_pylist()} == {day}
    pairs = out.filter(out["is_pair"]).to_pylist()
    prefix = ("arn:aws:",) if source == CLOUD_TRAIL_MGMT else ("i-", "eni-", "vpc-")
    assert all(p["identity_arn"].startswith(prefix) for p in pairs)
    if source == CLOUD_TRAIL_MGMT:
        assert activity.rejected == {}
        services = [r for r in out.to_pylist() if r["identity_type"] == "AWSService"]
        assert services and not any(r["is_pair"] for r in services)
        assert all(r["source_ip"].endswith(".amazonaws.com") for r in services)
    else:
        assert set(activity.unpaired) <= {"no addresses (NODATA or SKIPDATA record)"}
        # Resources pair with the remote end: an internet address, never their own VPC address.
        assert not any(p["source_ip"].startswith("10.") for p in pairs)
    other = "1.0" if version == "2.0" else "2.0"
    with pytest.raises(OcsfSchemaError):
        read_ocsf_activity(table, source, other, key)


def test_generator_is_deterministic_and_population_stable() -> None:
    a = make_ocsf_table(CLOUD_TRAIL_MGMT, "2.0", 500, seed=11)
    b = make_ocsf_table(CLOUD_TRAIL_MGMT, "2.0", 500, seed=11)
    c = make_ocsf_table(CLOUD_TRAIL_MGMT, "2.0", 500, seed=12, population_seed=11)
    assert a.equals(b)
    assert not a.equals(c)

    def entities(table: pa.Table) -> set[str]:
        rows = read_ocsf_activity(table, CLOUD_TRAIL_MGMT, "2.0", "k").table
        return {r for r in rows["identity_arn"].to_pylist() if r}

    assert entities(a) & entities(c)
    assert entities(c) <= entities(make_ocsf_table(CLOUD_TRAIL_MGMT, "2.0", 20_000, seed=11))


def test_write_security_lake_sample_layout(tmp_path: Path) -> None:
    paths = write_security_lake_sample(tmp_path / "lake", date(2024, 1, 30), 2, seed=7, rows_per_file=50)
    assert len(paths) == 2 * len(SUPPORTED_SOURCES) * len(SUPPORTED_VERSIONS)
    seen = set()
    for path in paths:
        key = path.relative_to(tmp_path / "lake").as_posix()
        assert key.endswith(".gz.parquet")
        info = parse_security_lake_key(key)
        assert info is not None and info.supported
        assert info.day in {date(2024, 1, 30), date(2024, 1, 31)}
        seen.add((info.source, info.source_version, info.day))
        metadata = pq.ParquetFile(path).metadata
        assert metadata.row_group(0).column(0).compression == "GZIP"
        activity = read_ocsf_parquet(path.read_bytes(), key)
        assert activity.rows_read == 50
    assert len(seen) == len(paths)
    again = write_security_lake_sample(tmp_path / "again", date(2024, 1, 30), 2, seed=7, rows_per_file=50)
    assert [p.relative_to(tmp_path / "again") for p in again] == [p.relative_to(tmp_path / "lake") for p in paths]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(paths, again, strict=True))


def test_a_remote_lake_is_listed_and_read_ahead_with_the_same_result(tmp_path: Path) -> None:
    """Accounts x regions x sources of a remote lake: folders listed and objects fetched several at
    once, the same objects, batches and problems as the same lake in a local folder (a damaged
    object among them)."""
    from proactive_assets.core.sources import security_lake
    from proactive_assets.core.storage import LocalStore
    from proactive_assets_tests.test_ingest_parallel import RemoteStore

    day = date(2024, 1, 30)
    root = tmp_path / "lake"
    accounts, regions = ("111111111111", "222222222222"), ("us-east-1", "eu-west-1")
    paths = write_security_lake_sample(root, day, 1, seed=7, rows_per_file=40, accounts=accounts, regions=regions)
    paths[3].write_bytes(b"PAR1 not parquet")

    def day_read(store: LocalStore) -> tuple[list, list[pa.Table], list[tuple[str, str]]]:
        listing = security_lake.list_day(store, day)
        batches = list(security_lake.read(store, listing.objects))
        problems = [(p.source_file, p.reason) for b in batches for p in b.problems]
        return [o.key for o in listing.objects], [b.events for b in batches], problems

    keys, tables, problems = day_read(LocalStore(root))
    remote = RemoteStore(root, seed=3)
    remote_keys, remote_tables, remote_problems = day_read(remote)
    assert remote_keys == keys and len(keys) == len(paths) >= 8
    assert all(a.equals(b) for a, b in zip(remote_tables, tables, strict=True))
    assert remote_problems == problems and [Path(f).name for f, _ in problems] == [paths[3].name]
    assert remote.most["get"] > 1 and remote.most["list"] > 1
