"""Sensors and schedule: CloudTrail arrivals (moto S3 and a local folder), Security Lake SQS
notifications (moto SQS), the daily schedule and the definitions that register them."""

import json
import logging
import os
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from dagster import AssetKey, DagsterInstance, SensorResult, build_schedule_context, build_sensor_context
from moto import mock_aws

from proactive_assets.config import Settings
from proactive_assets.core.sources import cloudtrail
from proactive_assets.core.sources.security_lake import security_lake_key
from proactive_assets.core.storage import LocalStore, ObjectInfo, S3Store
from proactive_assets.defs.definitions import build_definitions
from proactive_assets.defs.partitions import daily_partitions
from proactive_assets.defs.resources import ProactiveResource
from proactive_assets.defs.schedules import DAILY_JOB_NAME, EAGER_ASSETS, daily_schedule
from proactive_assets.defs.sensors.cloudtrail import ArrivalCursor, detect_changes
from proactive_assets.defs.sensors.cloudtrail import cloudtrail_s3_sensor as build_cloudtrail_sensor
from proactive_assets.defs.sensors.security_lake import QueueCursor, make_security_lake_sqs_sensor
from proactive_assets_tests.cloudtrail_fixtures import (
    ACCOUNT,
    ORG_ACCOUNT,
    ORG_ID,
    log_key,
    put_digest,
    put_log,
    record,
)
from proactive_assets_tests.conftest import SAMPLES, project_resource

D1, D2, D3 = date(2024, 3, 5), date(2024, 3, 6), date(2024, 3, 7)
BUCKET = "trail-bucket"
LAKE_BUCKET = "aws-security-data-lake-us-east-1-abc"
LAKE_ACCOUNT = "123456789012"
PARTITIONS = daily_partitions(Settings())
cloudtrail_s3_sensor = build_cloudtrail_sensor(PARTITIONS)


def resource(tmp_path: Path, cloudtrail_uri: str, **kwargs: Any) -> ProactiveResource:
    return project_resource(tmp_path, cloudtrail_uri=cloudtrail_uri, **kwargs)


class Records(logging.Handler):
    """Collects what a sensor logs through ``context.log`` (a logger outside the hierarchy
    that pytest's caplog watches)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.INFO) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


def tick(sensor, res: ProactiveResource, cursor: str | None, logs: Records | None = None) -> SensorResult:
    """One evaluation, in a fresh context (as after a daemon restart) holding only the cursor."""
    with build_sensor_context(
        cursor=cursor, resources={"proactive": res}, instance=DagsterInstance.ephemeral()
    ) as context:
        if logs is not None:
            context.log.addHandler(logs)
        result = sensor(context)
    assert isinstance(result, SensorResult)
    return result


def requested(result: SensorResult) -> dict[str, str]:
    """partition key -> run key."""
    return {r.partition_key: r.run_key for r in result.run_requests or []}


# -------------------------------------------------------------------------- CloudTrail sensor


def test_key_to_delivery_day() -> None:
    assert cloudtrail.object_day(log_key(D1)) == D1
    assert cloudtrail.object_day(log_key(D2, account=ORG_ACCOUNT, org_id=ORG_ID, region="eu-west-1")) == D2
    assert cloudtrail.object_day(log_key(D1), accounts=[ORG_ACCOUNT]) is None
    assert cloudtrail.object_day(log_key(D1), regions=["eu-west-1"]) is None
    digest = f"AWSLogs/{ACCOUNT}/CloudTrail-Digest/us-east-1/2024/03/05/{ACCOUNT}_CloudTrail-Digest_x.json.gz"
    assert cloudtrail.object_day(digest) is None
    assert cloudtrail.object_day(f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2024/03/05/notes.txt") is None
    assert cloudtrail.object_day(log_key(D1).replace("/03/05/", "/02/30/")) is None


def test_cursor_rejects_garbage() -> None:
    assert ArrivalCursor.load(None) == ArrivalCursor()
    with pytest.raises(ValueError, match="reset it"):
        ArrivalCursor.load("{not json")
    with pytest.raises(ValueError, match="reset it"):
        QueueCursor.load("[1, 2]")


def _s3_arrivals(tmp_path: Path, uri: str, store: S3Store | LocalStore) -> None:
    """The scenario both the S3 and the local test run: arrivals, repeats, restart, late delivery
    (a bucket listed in full on every tick: a local folder always is)."""
    res = resource(tmp_path, uri, cloudtrail_full_listing_hours=0)
    put_log(store, log_key(D1, minute=5), [record()])
    put_log(store, log_key(D1, minute=10, uid="Second0000000000"), [record()])
    put_log(store, log_key(D2, account=ORG_ACCOUNT, org_id=ORG_ID, minute=0), [record()])
    put_digest(store, D1)
    store.put(f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2024/03/05/notes.txt", b"hello")
    store.put("elsewhere/file.json.gz", b"x")

    first = tick(cloudtrail_s3_sensor, res, None)
    runs = requested(first)
    assert sorted(runs) == [D1.isoformat(), D2.isoformat()]
    assert all(r.job_name in (None, DAILY_JOB_NAME) for r in first.run_requests)
    assert runs[D1.isoformat()].startswith("cloudtrail:2024-03-05:")
    assert {r.tags["proactive/new_objects"] for r in first.run_requests} == {"2", "1"}
    cursor = first.cursor
    assert cursor is not None and json.loads(cursor)["watermark"]

    again = tick(cloudtrail_s3_sensor, res, cursor)
    assert not again.run_requests and again.skip_reason is not None
    assert json.loads(again.cursor)["recent"] == json.loads(cursor)["recent"]

    time.sleep(0.01)
    put_log(store, log_key(D1, minute=55, uid="Late000000000000"), [record()])  # late, to an old day
    put_log(store, log_key(D3, minute=0), [record()])
    late = tick(cloudtrail_s3_sensor, res, again.cursor)  # a new context: as after a restart
    late_runs = requested(late)
    assert sorted(late_runs) == [D1.isoformat(), D3.isoformat()]
    assert late_runs[D1.isoformat()] != runs[D1.isoformat()]
    assert {r.partition_key: r.tags["proactive/new_objects"] for r in late.run_requests} == {
        D1.isoformat(): "1",
        D3.isoformat(): "1",
    }
    assert not tick(cloudtrail_s3_sensor, res, late.cursor).run_requests


@mock_aws
def test_cloudtrail_sensor_on_s3(tmp_path: Path, aws_env: None) -> None:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    _s3_arrivals(tmp_path, f"s3://{BUCKET}/trail", S3Store(f"s3://{BUCKET}/trail"))


@mock_aws
def test_between_full_listings_the_sensor_lists_only_recent_day_folders(
    tmp_path: Path, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bucket holds years of days: after the first tick's full listing, a tick lists each account
    and region folder's recent days only, and the next full listing (due after
    ``PROACTIVE_CLOUDTRAIL_FULL_LISTING_HOURS``) finds a late object in an old day's folder."""
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
    store = S3Store(f"s3://{BUCKET}")
    old_days = [date(2024, 1, 1) + timedelta(days=k) for k in range(0, 60, 3)]
    for day in old_days:
        put_log(store, log_key(day), [record()])
        put_log(store, log_key(day, account=ORG_ACCOUNT, org_id=ORG_ID, region="eu-west-1"), [record()])
    res = resource(tmp_path, f"s3://{BUCKET}")
    start = datetime.now(UTC)
    first = tick(cloudtrail_s3_sensor, res, None)
    assert sorted(requested(first)) == [day.isoformat() for day in old_days]
    assert ArrivalCursor.load(first.cursor).listed_in_full is not None
    folders: list[str] = []
    real_list = S3Store.list_objects

    def listing(self: S3Store, prefix: str):
        folders.append(prefix)
        return real_list(self, prefix)

    monkeypatch.setattr(S3Store, "list_objects", listing)
    today = start.date()
    put_log(store, log_key(old_days[0], minute=30, uid="Late000000000000"), [record()])
    put_log(store, log_key(today, account=ORG_ACCOUNT, org_id=ORG_ID, region="eu-west-1"), [record()])
    cursor = ArrivalCursor.load(first.cursor)
    cursor.active = {}  # as if the old days had been written long ago
    cursor.listed_in_full = start - timedelta(hours=23)
    between = tick(cloudtrail_s3_sensor, res, cursor.dump())
    assert list(requested(between)) == [today.isoformat()]
    listed_days = {folder.rstrip("/")[-10:] for folder in folders}
    assert listed_days <= {f"{d:%Y/%m/%d}" for d in (today, today - timedelta(days=1), today + timedelta(days=1))}
    assert len(folders) <= 2 * 3  # two account and region folders, today and yesterday (a third at midnight)
    seen = ArrivalCursor.load(between.cursor)
    assert seen.listed_in_full == cursor.listed_in_full and today.isoformat() in seen.active
    seen.listed_in_full = start - timedelta(hours=25)  # a full listing is due
    folders.clear()
    full = tick(cloudtrail_s3_sensor, res, seen.dump())
    assert list(requested(full)) == [old_days[0].isoformat()] and not folders
    assert ArrivalCursor.load(full.cursor).listed_in_full > seen.listed_in_full


def test_the_cursor_keeps_the_days_written_to_lately() -> None:
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    info = [
        ObjectInfo(log_key(D1), 10, "a", now - timedelta(hours=1)),  # copied in just now
        ObjectInfo(log_key(D2), 10, "b", now - timedelta(hours=49)),  # long ago
    ]
    changes, cursor = detect_changes(info, ArrivalCursor(), now=now)
    assert sorted(changes) == [D1, D2]
    assert cursor.active == {D1.isoformat(): (now - timedelta(hours=1)).timestamp()}
    assert cursor.days_to_list(now) == [D1, now.date() - timedelta(days=1), now.date()]
    assert ArrivalCursor.load(cursor.dump()) == cursor
    assert cursor.full_listing_due(now, timedelta(hours=24))  # never listed in full
    cursor.listed_in_full = now - timedelta(hours=2)
    assert not cursor.full_listing_due(now, timedelta(hours=24)) and cursor.full_listing_due(now, timedelta(0))


def test_cloudtrail_sensor_on_a_local_folder(tmp_path: Path) -> None:
    _s3_arrivals(tmp_path, str(tmp_path / "bucket"), LocalStore(tmp_path / "bucket"))


def test_cloudtrail_sensor_rewritten_object_and_filters(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "bucket")
    key = log_key(D1, minute=5)
    put_log(store, key, [record()])
    put_log(store, log_key(D1, region="eu-west-1"), [record()])
    res = resource(tmp_path, store.uri, regions=["us-east-1"])
    first = tick(cloudtrail_s3_sensor, res, None)
    assert [r.tags["proactive/new_objects"] for r in first.run_requests] == ["1"]
    path = Path(store.uri_for(key))
    put_log(store, key, [record(), record(name="RunInstances")])  # same key, new content
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    second = tick(cloudtrail_s3_sensor, res, first.cursor)
    assert requested(second).keys() == {D1.isoformat()}
    assert requested(second)[D1.isoformat()] != requested(first)[D1.isoformat()]


def test_cloudtrail_sensor_ignores_days_that_are_not_partitions(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "bucket")
    put_log(store, log_key(date(2019, 1, 1)), [record()])
    result = tick(cloudtrail_s3_sensor, resource(tmp_path, store.uri), None)
    assert not result.run_requests
    assert json.loads(result.cursor)["recent"]  # remembered, so it is not reconsidered


def test_cloudtrail_sensor_on_moto_server(tmp_path: Path, moto_endpoint: str) -> None:
    """The same listing through a real HTTP endpoint (paginated by moto's server)."""
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    store = S3Store(f"s3://{BUCKET}")
    for minute in range(0, 60, 5):
        put_log(store, log_key(D1, minute=minute, uid=f"U{minute:015d}"), [record()])
    result = tick(cloudtrail_s3_sensor, resource(tmp_path, f"s3://{BUCKET}"), None)
    assert [(r.partition_key, r.tags["proactive/new_objects"]) for r in result.run_requests] == [("2024-03-05", "12")]


# ------------------------------------------------------------------------- Security Lake sensor

sqs_sensor = make_security_lake_sqs_sensor(PARTITIONS, name="test_sqs_sensor", visibility_timeout=30, wait_seconds=0)
sqs_sensor_no_visibility = make_security_lake_sqs_sensor(
    PARTITIONS, name="test_sqs_sensor_vt0", visibility_timeout=0, wait_seconds=0
)


def lake_key(day: date, source: str = "VPC_FLOW", version: str = "1.0", name: str = "a.gz.parquet") -> str:
    return security_lake_key(source, version, "us-east-1", LAKE_ACCOUNT, day, name)


def s3_body(*keys: str, bucket: str = LAKE_BUCKET) -> str:
    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": bucket}, "object": {"key": key.replace("=", "%3D")}},
                }
                for key in keys
            ]
        }
    )


def eventbridge_body(key: str) -> str:
    return json.dumps(
        {
            "version": "0",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "detail": {"bucket": {"name": LAKE_BUCKET}, "object": {"key": key}},
        }
    )


def queue_counts(sqs: Any, url: str) -> tuple[int, int]:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def sqs_resource(tmp_path: Path, url: str, **kwargs: Any) -> ProactiveResource:
    return resource(
        tmp_path,
        str(tmp_path / "bucket"),
        security_lake_uri=f"s3://{LAKE_BUCKET}",
        sqs_queue_url=url,
        **kwargs,
    )


@mock_aws
def test_sqs_sensor_requests_runs_and_deletes_only_after_they_are_recorded(tmp_path: Path, aws_env: None) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="SecurityLake_us-east-1_MAIN_QUEUE_1_0")["QueueUrl"]
    sent = {
        "s3": sqs.send_message(QueueUrl=url, MessageBody=s3_body(lake_key(D1), lake_key(D2, "ROUTE53", "2.0"))),
        "eventbridge": sqs.send_message(QueueUrl=url, MessageBody=eventbridge_body(lake_key(D1, name="b.gz.parquet"))),
        "other_source": sqs.send_message(QueueUrl=url, MessageBody=s3_body(lake_key(D1, "S3_DATA", "2.0"))),
        "other_bucket": sqs.send_message(QueueUrl=url, MessageBody=s3_body(lake_key(D3), bucket="not-our-lake")),
        "test_event": sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"Event": "s3:TestEvent"})),
        "malformed": sqs.send_message(QueueUrl=url, MessageBody="<html>not json</html>"),
    }
    res = sqs_resource(tmp_path, url)
    logs = Records()
    first = tick(sqs_sensor, res, None, logs)
    runs = requested(first)
    assert sorted(runs) == [D1.isoformat(), D2.isoformat()]
    assert all(key.startswith(f"security_lake:{day}:") for day, key in runs.items())
    by_day = {r.partition_key: r.tags for r in first.run_requests}
    assert by_day[D1.isoformat()]["proactive/messages"] == "2"  # the S3 and the EventBridge message
    assert by_day[D2.isoformat()]["proactive/new_objects"] == "1"
    # The two messages behind the runs are still on the queue (in flight): nothing is deleted
    # before Dagster has recorded the run requests. The irrelevant ones are gone; the
    # malformed one is in flight until its visibility timeout, then back for the redrive policy.
    assert queue_counts(sqs, url) == (0, 3)
    ack = dict(QueueCursor.load(first.cursor).ack)
    assert set(ack) == {sent["s3"]["MessageId"], sent["eventbridge"]["MessageId"]}
    malformed_id = sent["malformed"]["MessageId"]
    assert any(malformed_id in m and "not JSON" in m for m in logs.messages(logging.WARNING))
    assert any(sent["other_source"]["MessageId"] in m and "S3_DATA" in m for m in logs.messages())
    assert any(sent["other_bucket"]["MessageId"] in m and "outside" in m for m in logs.messages())

    second = tick(sqs_sensor, res, first.cursor)  # the cursor came back: runs are recorded
    assert not second.run_requests
    assert queue_counts(sqs, url) == (0, 1)  # only the malformed message is left
    assert QueueCursor.load(second.cursor).ack == []
    assert set(QueueCursor.load(second.cursor).requested) == set(ack)

    # A tick that failed (its cursor never stored) deletes nothing: the next one retries.
    sqs.send_message(QueueUrl=url, MessageBody=eventbridge_body(lake_key(D3)))
    third = tick(sqs_sensor, res, second.cursor)
    assert sorted(requested(third)) == [D3.isoformat()]
    tick(sqs_sensor, res, second.cursor)  # as if `third` had failed: nothing deleted
    assert queue_counts(sqs, url)[1] == 2  # the D3 message is still there, and the malformed one


@mock_aws
def test_sqs_malformed_message_stays_and_redelivery_is_not_rerun(tmp_path: Path, aws_env: None) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="lake-queue")["QueueUrl"]
    bad = sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"hello": "world"}))["MessageId"]
    good = sqs.send_message(QueueUrl=url, MessageBody=s3_body(lake_key(D1)))["MessageId"]
    res = sqs_resource(tmp_path, url)
    logs = Records()
    first = tick(sqs_sensor_no_visibility, res, None, logs)
    assert sorted(requested(first)) == [D1.isoformat()]
    assert any(bad in m and "neither 'Records'" in m for m in logs.messages(logging.WARNING))
    # Visibility timeout 0: both are visible again; the good one is not deleted yet.
    assert queue_counts(sqs, url) == (2, 0)
    # Say its delete failed (or the sensor was stopped past the visibility timeout): the good
    # message comes back, is recognised by its id and acknowledged without a second run.
    lost_ack = QueueCursor(ack=[], requested=QueueCursor.load(first.cursor).requested).dump()
    second = tick(sqs_sensor_no_visibility, res, lost_ack)
    assert not second.run_requests
    assert [mid for mid, _ in QueueCursor.load(second.cursor).ack] == [good]
    third = tick(sqs_sensor_no_visibility, res, second.cursor)
    assert not third.run_requests
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
    assert [m["MessageId"] for m in messages] == [bad]  # the malformed one waits for the redrive policy
    assert good in QueueCursor.load(third.cursor).requested


@mock_aws
def test_sqs_sensor_filters_and_skips(tmp_path: Path, aws_env: None) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="lake-queue")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=s3_body(lake_key(D1)))
    sqs.send_message(QueueUrl=url, MessageBody=s3_body(lake_key(date(2019, 1, 1))))
    filtered = sqs_resource(tmp_path, url, accounts=["999999999999"])
    result = tick(sqs_sensor, filtered, None)
    assert not result.run_requests and queue_counts(sqs, url) == (0, 0)  # nothing for us: deleted
    no_queue = tick(sqs_sensor, sqs_resource(tmp_path, ""), None)
    assert "PROACTIVE_SQS_QUEUE_URL" in str(no_queue.skip_reason)
    no_lake = tick(sqs_sensor, resource(tmp_path, str(tmp_path), sqs_queue_url=url), None)
    assert "PROACTIVE_SECURITY_LAKE_URI" in str(no_lake.skip_reason)


def test_sqs_sensor_on_moto_server_with_the_workshop_message(tmp_path: Path, moto_endpoint: str) -> None:
    """The workshop's real notification (body as the JSON string SQS delivers) via moto's server."""
    event = json.loads((SAMPLES / "securitylake_workshop" / "test-securitylake-sqs-message.json").read_text())
    body = event["Records"][0]["body"]
    bucket = body["Records"][0]["s3"]["bucket"]["name"]
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="SecurityLake_us-east-1_MAIN_QUEUE_1_0")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))
    res = resource(tmp_path, str(tmp_path), security_lake_uri=f"s3://{bucket}", sqs_queue_url=url)
    result = tick(sqs_sensor, res, None)
    # 2023-07-26 precedes the partitions' start: valid, but nothing to run - so it is deleted.
    assert not result.run_requests
    assert queue_counts(sqs, url) == (0, 0)


# ----------------------------------------------------------------------------- schedule, defs


def test_schedule_requests_yesterday() -> None:
    context = build_schedule_context(scheduled_execution_time=datetime(2024, 3, 6, 1, 30, tzinfo=UTC))
    request = daily_schedule(PARTITIONS)(context)
    assert request.partition_key == "2024-03-05"
    assert request.run_key == "daily:2024-03-05"
    late_evening = build_schedule_context(scheduled_execution_time=datetime(2024, 3, 1, 0, 5, tzinfo=UTC))
    assert daily_schedule(PARTITIONS)(late_evening).partition_key == "2024-02-29"
    before_start = build_schedule_context(scheduled_execution_time=datetime(2020, 1, 2, 1, 30, tzinfo=UTC))
    assert "not a partition" in str(daily_schedule(PARTITIONS)(before_start).skip_message)


def test_definitions_register_sensors_schedule_and_automation(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"PROACTIVE_HOME": str(tmp_path), "PROACTIVE_SQS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/q"}
    )
    defs = build_definitions(settings)
    repo = defs.get_repository_def()
    sensors = {s.name: s for s in repo.sensor_defs}
    assert {"cloudtrail_s3_sensor", "security_lake_sqs_sensor", "default_automation_condition_sensor"} <= set(sensors)
    assert all(s.default_status.value == "STOPPED" for s in sensors.values())
    assert sensors["cloudtrail_s3_sensor"].job_name == DAILY_JOB_NAME
    assert sensors["security_lake_sqs_sensor"].job_name == DAILY_JOB_NAME
    assert sensors["cloudtrail_s3_sensor"].minimum_interval_seconds >= 60
    schedule = repo.get_schedule_def("daily_schedule")
    assert schedule.job_name == DAILY_JOB_NAME and schedule.cron_schedule == "30 1 * * *"
    job = repo.get_job(DAILY_JOB_NAME)
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert {"raw_cloudtrail", "security_lake_activity", "learning_set", "alerts"} <= keys
    automated = {
        key.to_user_string()
        for key in repo.asset_graph.get_all_asset_keys()
        if repo.asset_graph.get(key).automation_condition is not None
    }
    assert automated == set(EAGER_ASSETS)
    deps = {k.to_user_string() for k in repo.asset_graph.get(AssetKey("learning_set")).parent_keys}
    assert deps == {"cloudtrail_events", "security_lake_activity"}
    assert defs.resources["proactive"].settings.sqs_queue_url == "https://sqs.eu-west-1.amazonaws.com/1/q"
