"""The production path, exercised: Dagster on PostgreSQL with a real daemon (issue 14, item 1).

Each test starts the project as ``deploy/`` runs it, as separate processes: a PostgreSQL server
(one per session, a database per test), the code location as a gRPC code server, the daemon and
the webserver, on an instance derived from ``deploy/dagster.yaml`` (see
``production.stack.production_instance_config``; only the ECS run launcher is replaced, by
Dagster's default launcher, which runs each run in a subprocess of the code server, as an ECS
task runs it apart from the daemon). AWS is moto's standalone server on 127.0.0.1.

Data: the days of ``proactive-assets sample`` (seed 7), packed into one object per account,
region and day (``production.data``), so a model trains on three days of history
(``PROACTIVE_MIN_TRAINING_DAYS=3``) and scores the fourth.

Sensors tick at most every 300 s (``minimum_interval_seconds``); instead of waiting, a test
moves the sensor's stored last-tick time back by that interval (``fast_forward_sensor``), which
is what the daemon reads to decide that a tick is due.

These tests need PostgreSQL's server binaries: ``bash .ci/run`` installs Debian's
``postgresql`` when they are missing. Without them (and not in CI) the tests skip.
"""

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from proactive_assets_tests.production import data
from proactive_assets_tests.production.postgres import PostgresServer, PostgresUnavailable, start_postgres
from proactive_assets_tests.production.stack import (
    DEPLOY_INSTANCE_YAML,
    ProductionStack,
    Service,
    fast_forward_sensor,
    run_failure_details,
    sensor_ticks,
    start_moto_server,
    wait_for,
    wait_for_runs,
    wait_for_tick,
)

pytestmark = pytest.mark.production

START = date(2024, 6, 1)
SAMPLE_DAYS = 6
TRAIL_BUCKET = "proactive-trail"
WAREHOUSE_BUCKET = "proactive-warehouse"
REGION = "us-east-1"
CLOUDTRAIL_SENSOR = "cloudtrail_s3_sensor"
JOB = "proactive_daily_job"
MODEL_ASSETS = ("training_set", "ip_insights_model", "daily_insights", "alerts")
INGEST_ASSETS = ("raw_cloudtrail", "cloudtrail_events", "learning_set")


def day(n: int) -> date:
    """Day ``n`` of the sample, counting from 1."""
    return START + timedelta(days=n - 1)


# ------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return data.make_sample(tmp_path_factory.mktemp("production-sample") / "sample", START, SAMPLE_DAYS)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A temp folder the code server, run workers and (as root) nobody else need to share."""
    with tempfile.TemporaryDirectory(prefix="proactive-production-") as folder:
        yield Path(folder)


@pytest.fixture
def aws(workdir: Path) -> Iterator["Aws"]:
    """A fresh moto server for the test, with the two buckets."""
    service, url = start_moto_server(workdir)
    try:
        env = Aws(url, service)
        env.client("s3").create_bucket(Bucket=TRAIL_BUCKET)
        env.client("s3").create_bucket(Bucket=WAREHOUSE_BUCKET)
        yield env
    finally:
        service.stop()


class Aws:
    """moto's endpoint, and boto3 clients on it with dummy credentials."""

    def __init__(self, url: str, service: Service) -> None:
        self.url = url
        self.service = service

    def client(self, name: str) -> Any:
        return boto3.client(
            name, endpoint_url=self.url, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
        )

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }


@pytest.fixture
def make_stack(postgres: PostgresServer, aws: Aws, workdir: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., ProductionStack]]:
    """Build and start the stack with extra code-location settings; everything is stopped afterwards."""
    stacks: list[ProductionStack] = []

    def build(**settings: str) -> ProductionStack:
        database = postgres.create_database(f"dagster_{request.node.name[:40].lower()}_{len(stacks)}")
        code_env = {
            **aws.env(),
            "PROACTIVE_HOME": str(workdir / "proactive_home"),
            "PROACTIVE_CLOUDTRAIL_URI": f"s3://{TRAIL_BUCKET}",
            "PROACTIVE_WAREHOUSE": f"s3://{WAREHOUSE_BUCKET}/proactive",
            "PROACTIVE_START_DATE": START.isoformat(),
            "PROACTIVE_MIN_TRAINING_DAYS": "3",
            **settings,
        }
        stack = ProductionStack(workdir / f"stack{len(stacks)}", postgres, database, code_env)
        stacks.append(stack)
        stack.start()
        return stack

    try:
        yield build
    finally:
        for stack in stacks:
            print(stack.logs(60))  # shown by pytest only when the test failed
            stack.close()


def upload_days(aws: Aws, sample: Path, days: list[date]) -> dict[str, bytes]:
    objects: dict[str, bytes] = {}
    for d in days:
        objects.update(data.packed_day(sample, d))
    data.upload(aws.client("s3"), TRAIL_BUCKET, objects)
    return objects


def materialized(instance: Any, asset: str) -> set[str]:
    from dagster import AssetKey

    return set(instance.get_materialized_partitions(AssetKey(asset)))


def alerts_topic(aws: Aws) -> tuple[str, str]:
    """An SNS topic with an SQS queue subscribed to it: (topic ARN, queue URL)."""
    sns, sqs = aws.client("sns"), aws.client("sqs")
    topic = sns.create_topic(Name="proactive-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="proactive-alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return topic, queue


def receive_all(aws: Aws, queue: str) -> list[dict[str, Any]]:
    """Every message on the queue now (SNS envelopes), deleted once read."""
    sqs = aws.client("sqs")
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            return messages
        for message in batch:
            messages.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


def fields(message: str) -> dict[str, str]:
    """``KEY=value`` lines of an alert's SNS message."""
    pairs = (line.strip().split("=", 1) for line in message.splitlines() if "=" in line)
    return {key: value for key, value in pairs}


# ---------------------------------------------------------------------------------------- tests


def test_instance_is_deploy_dagster_yaml_on_postgres(make_stack: Callable[..., ProductionStack]) -> None:
    """The running instance is the deployed one: its storage, coordinator, limits and retries."""
    import yaml
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    deployed = yaml.safe_load(DEPLOY_INSTANCE_YAML.read_text())
    stack = make_stack()
    instance = stack.instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    limits = deployed["concurrency"]["runs"]
    queue = instance.get_concurrency_config().run_queue_config
    assert queue.max_concurrent_runs == limits["max_concurrent_runs"]
    assert list(queue.tag_concurrency_limits) == limits["tag_concurrency_limits"]
    assert instance.run_retries_enabled is deployed["run_retries"]["enabled"] is True
    assert instance.run_retries_max_retries == deployed["run_retries"]["max_retries"]
    assert instance.run_monitoring_enabled is True
    assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
    # The webserver and the daemon see the same instance: the daemon's heartbeats are in PostgreSQL.
    tables = stack.postgres.psql(stack.database, "SELECT daemon_type FROM daemon_heartbeats").split()
    assert {"SENSOR", "QUEUED_RUN_COORDINATOR", "BACKFILL"} <= set(tables)


def test_s3_sensor_run_publishes_the_alert_to_sqs_through_sns(
    make_stack: Callable[..., ProductionStack], aws: Aws, sample: Path
) -> None:
    """A new CloudTrail object -> the daemon's sensor tick -> a queued run -> SNS -> the subscribed queue."""
    topic, queue = alerts_topic(aws)
    history = upload_days(aws, sample, [day(1), day(2), day(3)])
    stack = make_stack(SNS_TOPIC_ARN=topic)
    stack.start_sensor(CLOUDTRAIL_SENSOR)

    # First tick: no cursor, so every day in the bucket is requested, one run each.
    first = wait_for_tick(stack, CLOUDTRAIL_SENSOR, after=0)
    runs = wait_for_runs(stack, list(first.run_ids))
    assert sorted(r.tags["dagster/partition"] for r in runs) == [day(n).isoformat() for n in (1, 2, 3)]
    for run in runs:
        assert run.status.value == "SUCCESS", run_failure_details(stack.instance, run.run_id)
        assert run.job_name == JOB and run.tags["proactive/trigger"] == CLOUDTRAIL_SENSOR
    assert receive_all(aws, queue) == []  # no model before three days of history: nothing to alert on

    # Day 4 arrives, with a stolen-key session of the busiest IAM user from a never-seen network.
    template = data.busiest_user(data.records(history))
    arrivals = data.packed_day(sample, day(4))
    key, body = data.suspicious_object(template, day(4))
    arrivals[key] = body
    data.upload(aws.client("s3"), TRAIL_BUCKET, arrivals)
    fast_forward_sensor(stack.instance, CLOUDTRAIL_SENSOR)
    second = wait_for_tick(stack, CLOUDTRAIL_SENSOR, after=1)
    assert len(second.run_ids) == 1, f"expected one run for {day(4)}, got {second.run_keys}"
    (run,) = wait_for_runs(stack, list(second.run_ids))
    assert run.tags["dagster/partition"] == day(4).isoformat()
    assert run.tags["proactive/new_objects"] == str(len(arrivals))
    assert run.status.value == "SUCCESS", run_failure_details(stack.instance, run.run_id)

    # The alert went through SNS to the subscribed queue, once, with what an analyst needs.
    received: list[dict[str, Any]] = []

    def delivered() -> list[dict[str, Any]]:
        received.extend(receive_all(aws, queue))
        return [m for m in received if data.SUSPICIOUS_IP in m["Message"]]

    (envelope,) = wait_for(delivered, 30, "the alert on the SQS queue")
    alert = fields(envelope["Message"])
    assert envelope["TopicArn"] == topic
    assert alert["ARN"] == template["userIdentity"]["arn"]
    assert alert["SOURCE_IP"] == data.SUSPICIOUS_IP
    assert alert["DAY"] == f"{day(4):%Y/%m/%d}"
    assert float(alert["INSIGHT"]) >= 0.85
    assert {"GetSecretValue", "CreateAccessKey"} <= set(alert["ACTION"].split(","))
    assert f"CLOUDTRAIL=s3://{TRAIL_BUCKET}/AWSLogs/{template['recipientAccountId']}/CloudTrail/" in envelope["Message"]
    assert envelope["MessageAttributes"]["alert_id"]["Value"] == alert["ALERT_ID"]

    # Every published alert arrived exactly once, as the materialisation recorded in PostgreSQL says.
    from dagster import AssetKey

    event = stack.instance.get_latest_materialization_event(AssetKey("alerts"))
    metadata = event.asset_materialization.metadata
    published_ids = set(metadata["alert_ids"].value)
    arrived = [m["MessageAttributes"]["alert_id"]["Value"] for m in received]
    assert sorted(arrived) == sorted(published_ids), "each published alert must arrive exactly once"
    assert metadata["published"].value == len(published_ids) and metadata["failed"].value == 0
    assert event.asset_materialization.partition == day(4).isoformat()
