"""The production path, exercised: Dagster on PostgreSQL with a real daemon (issue 14, item 1).

The project runs as ``deploy/`` runs it, as separate processes: a PostgreSQL server, the code
location as a gRPC code server, the daemon and the webserver, on an instance derived from
``deploy/dagster.yaml`` (``production.stack.production_instance_config``: only the ECS run
launcher is replaced, by Dagster's default launcher, which runs each run in a subprocess of the
code server, apart from the daemon as an ECS task is). AWS is moto's standalone server on
127.0.0.1: the CloudTrail bucket, the warehouse bucket, an SNS topic for alerts.

One stack serves the whole module (starting it and processing the history are most of the
cost). The ``production`` fixture switches on ``cloudtrail_s3_sensor`` over days 1-4 of
``proactive-assets sample`` (packed into one object per account, region and day by
``production.data``); its first tick runs the four days, so days 1-3 are history for a model
(``PROACTIVE_MIN_TRAINING_DAYS=3``). Each test then works on its own days and leaves no object
unseen by the sensor, so the tests do not depend on each other's order.

The sensor ticks at most every 300 s (``minimum_interval_seconds``). Instead of waiting, a test
moves the sensor's stored last-tick time back by that interval (``fast_forward_sensor``), which
is what the daemon reads to decide that a tick is due; the cursor is left alone.

PostgreSQL's server binaries are needed: ``bash .ci/run`` installs Debian's ``postgresql`` when
they are missing. Without them (and not in CI) these tests skip.
"""

import json
import os
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from proactive_assets_tests.production import data
from proactive_assets_tests.production.postgres import PostgresServer, PostgresUnavailable, start_postgres
from proactive_assets_tests.production.stack import (
    DEPLOY_INSTANCE_YAML,
    ProductionStack,
    Service,
    fast_forward_sensor,
    launch_job_backfill,
    max_overlap,
    occupancy,
    run_failure_details,
    sensor_ticks,
    start_moto_server,
    timeline,
    wait_for,
    wait_for_runs,
    wait_for_tick,
    worker_pid,
)

pytestmark = pytest.mark.production

START = date(2024, 6, 1)
SAMPLE_DAYS = 5
TRAIL_BUCKET = "proactive-trail"
WAREHOUSE_BUCKET = "proactive-warehouse"
REGION = "us-east-1"
SENSOR = "cloudtrail_s3_sensor"
JOB = "proactive_daily_job"
INGEST_ASSETS = ("raw_cloudtrail", "cloudtrail_events", "security_lake_activity", "learning_set")
MODEL_ASSETS = ("training_set", "ip_insights_model", "daily_insights", "alerts")
DEPLOYED = yaml.safe_load(DEPLOY_INSTANCE_YAML.read_text())


def day(n: int) -> str:
    """Partition key of day ``n`` of the sample, counting from 1."""
    return (START + timedelta(days=n - 1)).isoformat()


def sample_day(n: int) -> date:
    return START + timedelta(days=n - 1)


class Aws:
    """moto's endpoint, and boto3 clients on it with dummy credentials."""

    def __init__(self, url: str) -> None:
        self.url = url

    def client(self, name: str) -> Any:
        return boto3.client(
            name,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def put(self, objects: dict[str, bytes]) -> None:
        data.upload(self.client("s3"), TRAIL_BUCKET, objects)


@dataclass
class Production:
    """The running stack, its AWS, and what the history phase did."""

    stack: ProductionStack
    aws: Aws
    sample: Path
    topic: str
    history: dict[str, bytes]
    history_runs: list[Any] = field(default_factory=list)

    @property
    def instance(self) -> Any:
        return self.stack.instance

    def tick(self) -> Any:
        """Make the sensor due now and return its next finished tick."""
        seen = len(sensor_ticks(self.instance, SENSOR))
        fast_forward_sensor(self.instance, SENSOR)
        return wait_for_tick(self.stack, SENSOR, after=seen)

    def runs_of(self, tick: Any) -> dict[str, Any]:
        """The tick's runs by partition, once finished."""
        runs = wait_for_runs(self.stack, list(tick.run_ids))
        return {run.tags["dagster/partition"]: run for run in runs}

    def template(self) -> dict[str, Any]:
        """A history record of the busiest IAM user: whom the injected objects impersonate."""
        return data.busiest_user(data.records(self.history))


def assert_succeeded(instance: Any, run: Any) -> None:
    assert run.status.value == "SUCCESS", (
        f"run {run.run_id} ({run.tags.get('dagster/partition')}) {run.status.value}:\n"
        + run_failure_details(instance, run.run_id)
    )


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


@pytest.fixture(scope="module")
def production(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    """The stack on sample days 1-4, after the sensor's first tick ran each of them."""
    sample = data.make_sample(tmp_path_factory.mktemp("production-sample") / "sample", START, SAMPLE_DAYS)
    with tempfile.TemporaryDirectory(prefix="proactive-production-") as folder:
        root = Path(folder)
        moto: Service | None = None
        stack: ProductionStack | None = None
        try:
            moto, url = start_moto_server(root)
            aws = Aws(url)
            aws.client("s3").create_bucket(Bucket=TRAIL_BUCKET)
            aws.client("s3").create_bucket(Bucket=WAREHOUSE_BUCKET)
            topic = aws.client("sns").create_topic(Name="proactive-alerts")["TopicArn"]
            code_env = {
                **aws.env(),
                "PROACTIVE_HOME": str(root / "proactive_home"),
                "PROACTIVE_CLOUDTRAIL_URI": f"s3://{TRAIL_BUCKET}",
                "PROACTIVE_WAREHOUSE": f"s3://{WAREHOUSE_BUCKET}/proactive",
                "PROACTIVE_START_DATE": START.isoformat(),
                "PROACTIVE_MIN_TRAINING_DAYS": "3",
                # the tests deliver days of the sample's past, not today's: every tick lists the bucket
                "PROACTIVE_CLOUDTRAIL_FULL_LISTING_HOURS": "0",
                "SNS_TOPIC_ARN": topic,
            }
            stack = ProductionStack(root / "stack", postgres, postgres.create_database("dagster_production"), code_env)
            history = {}
            for n in (1, 2, 3, 4):
                history.update(data.packed_day(sample, sample_day(n)))
            aws.put(history)
            stack.start()
            stack.start_sensor(SENSOR)
            production = Production(stack, aws, sample, topic, history)

            # The first tick has no cursor: it requests every day in the bucket, one run each.
            first = wait_for_tick(stack, SENSOR, after=0)
            runs = production.runs_of(first)
            assert sorted(runs) == [day(n) for n in (1, 2, 3, 4)], first.run_keys
            for run in runs.values():
                assert_succeeded(stack.instance, run)
                assert run.job_name == JOB and run.tags["proactive/trigger"] == SENSOR
            production.history_runs = list(runs.values())
            yield production
        finally:
            if stack is not None:
                print(stack.logs(80))  # pytest shows this only for a failing test
                if stack._instance is not None:
                    print(timeline(stack.instance))
                stack.close()
            if moto is not None:
                moto.stop()


# ---------------------------------------------------------------------------------------- tests


def test_the_instance_is_deploy_dagster_yaml_on_postgresql(production: Production) -> None:
    """What runs is the deployed configuration: storage, run queue and its limits, retries, monitoring."""
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    instance = production.instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    queue = instance.get_concurrency_config().run_queue_config
    assert queue.max_concurrent_runs == DEPLOYED["concurrency"]["runs"]["max_concurrent_runs"]
    assert list(queue.tag_concurrency_limits) == DEPLOYED["concurrency"]["runs"]["tag_concurrency_limits"]
    assert instance.run_retries_enabled and instance.run_retries_max_retries == DEPLOYED["run_retries"]["max_retries"]
    assert instance.run_monitoring_enabled
    assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
    # The daemon and the history runs wrote to this database, not to some local SQLite file.
    stack = production.stack
    daemons = set(stack.postgres.psql(stack.database, "SELECT daemon_type FROM daemon_heartbeats").split())
    assert {"SENSOR", "QUEUED_RUN_COORDINATOR", "BACKFILL", "MONITORING", "EVENT_LOG_CONSUMER"} <= daemons
    ids = {run.run_id for run in production.history_runs}
    stored = set(stack.postgres.psql(stack.database, "SELECT run_id FROM runs").split())
    assert ids <= stored
    assert not list(stack.home.glob("**/*.db")), "nothing may fall back to SQLite"


def test_a_new_cloudtrail_object_is_run_by_the_sensor_and_its_alert_reaches_sqs_through_sns(
    production: Production,
) -> None:
    """An object put in the bucket -> the daemon's sensor tick -> a queued run -> SNS -> the subscribed queue."""
    aws, instance = production.aws, production.instance
    sqs = aws.client("sqs")
    queue = sqs.create_queue(QueueName="proactive-alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    aws.client("sns").subscribe(TopicArn=production.topic, Protocol="sqs", Endpoint=queue_arn)

    # A late object for day 4: the busiest IAM user's key reading secrets from a never-seen network.
    template = production.template()
    key, body = data.suspicious_object(template, sample_day(4))
    aws.put({key: body})
    tick = production.tick()
    runs = production.runs_of(tick)
    assert list(runs) == [day(4)], f"one run, for day 4 only: {tick.run_keys}"
    run = runs[day(4)]
    assert_succeeded(instance, run)
    assert run.tags["proactive/new_objects"] == "1"

    received: list[dict[str, Any]] = []

    def delivered() -> list[dict[str, Any]]:
        received.extend(receive_all(sqs, queue))
        return [m for m in received if data.SUSPICIOUS_IP in m["Message"]]

    (envelope,) = wait_for(delivered, 30, "the alert on the SQS queue")
    alert = json.loads(envelope["Message"])  # programs get the JSON document (MessageStructure=json)
    assert envelope["TopicArn"] == production.topic
    assert alert["entity"] == template["userIdentity"]["arn"]
    assert alert["source_ip"] == data.SUSPICIOUS_IP
    assert str(alert["day"]) == sample_day(4).isoformat()
    assert float(alert["insight"]) >= float(alert["threshold"])
    assert {"GetSecretValue", "CreateAccessKey"} <= set(alert["event_names"])
    trail = f"s3://{TRAIL_BUCKET}/AWSLogs/{template['recipientAccountId']}/CloudTrail/"
    assert any(str(location).startswith(trail) for location in alert["cloudtrail"])
    assert envelope["MessageAttributes"]["alert_id"]["Value"] == alert["alert_id"]

    # What the run's materialisation (in PostgreSQL) says it published arrived, each alert once.
    from dagster import DagsterEventType

    (event,) = [
        e for e in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
        if e.dagster_event.asset_key.to_user_string() == "alerts"
    ]  # fmt: skip
    metadata = event.asset_materialization.metadata
    arrived = [m["MessageAttributes"]["alert_id"]["Value"] for m in received]
    assert len(arrived) == len(set(arrived)) == metadata["published"].value
    assert set(arrived) <= set(metadata["alert_ids"].value)
    assert metadata["failed"].value == 0


def test_a_backfill_launched_through_graphql_runs_under_the_concurrency_limit(production: Production) -> None:
    """Days 2-4 as one backfill from the webserver's GraphQL API: at most the limit at once, all materialised."""
    instance, stack = production.instance, production.stack
    (limit,) = [
        rule["limit"]
        for rule in DEPLOYED["concurrency"]["runs"]["tag_concurrency_limits"]
        if rule["key"] == "dagster/backfill"
    ]
    days = [day(2), day(3), day(4)]
    assert len(days) > limit, "the backfill must be larger than the limit for the limit to show"
    backfill = launch_job_backfill(stack, JOB, days)

    from dagster import RunsFilter

    def all_runs() -> list[Any]:
        runs = instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill}))
        return runs if len(runs) == len(days) else []

    runs = wait_for_runs(
        stack, [r.run_id for r in wait_for(all_runs, 120, f"the runs of backfill {backfill}", on_timeout=stack.logs)]
    )
    assert sorted(r.tags["dagster/partition"] for r in runs) == days
    for run in runs:
        assert_succeeded(instance, run)

    # The coordinator's slots, from the runs' events in PostgreSQL: never more than the limit at once,
    # and the runs beyond the limit waited in the queue for a slot to free up.
    spans = sorted(occupancy(instance, [r.run_id for r in runs]))
    assert max_overlap(spans) <= limit, spans
    ends = sorted(end for _, end in spans)
    for k in range(limit, len(spans)):
        assert spans[k][0] >= ends[k - limit], f"run {k + 1} started before a slot was free: {spans}"

    # Every partition's materialisations, read from the event log table itself.
    ids = ", ".join(f"'{r.run_id}'" for r in runs)
    rows = stack.postgres.psql(
        stack.database,
        "SELECT asset_key, partition FROM event_logs"
        f" WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND run_id IN ({ids})",
    )
    found = {(json.loads(asset)[0], partition) for asset, partition in (line.split("\t") for line in rows.splitlines())}
    expected = {(asset, d) for d in days for asset in INGEST_ASSETS}
    expected |= {(asset, day(4)) for asset in MODEL_ASSETS}  # days 2 and 3 have fewer than 3 days of history
    assert found == expected


def test_the_daemon_killed_mid_run_loses_and_repeats_nothing(production: Production) -> None:
    """SIGKILL the daemon during a run, restart it: what Dagster does with the deployed policy.

    * The run goes on and succeeds without the daemon: it is executed by its own worker process
      (here a subprocess of the code server; with ECS its own task), which writes its events to
      PostgreSQL itself. Nothing marks it failed and nothing retries it.
    * An object that arrives while the daemon is down is picked up by the first tick after the
      restart, and the day that already ran is not requested again: the sensor's cursor and the
      run keys are in PostgreSQL.
    * A run whose worker dies (SIGKILL) is marked failed (by the code server that started it; with
      ECS by run monitoring) and, since ``run_retries`` retries failures that are not asset
      failures, the daemon re-executes it once from the failure, with success.
    """
    from dagster import DagsterEventType, RunsFilter

    aws, instance, stack = production.aws, production.instance, production.stack
    aws.put(data.packed_day(production.sample, sample_day(5)))
    tick = production.tick()
    assert len(tick.run_ids) == 1, tick.run_keys
    (run_id,) = tick.run_ids

    def started() -> bool:
        run = instance.get_run_by_id(run_id)
        assert not run.is_finished, f"day 5 finished before the daemon could be killed mid-run: {run.status}"
        return run.status.value == "STARTED"

    wait_for(started, 120, "the run of day 5 to start", interval=0.2, on_timeout=stack.logs)
    stack.daemon.kill()
    assert not instance.get_run_by_id(run_id).is_finished, "the daemon must die while the run is in progress"

    # While the daemon is down the run finishes by itself, and a late object for day 2 arrives.
    (run,) = wait_for_runs(stack, [run_id])
    assert_succeeded(instance, run)
    assert not stack.daemon.running
    aws.put(dict([data.suspicious_object(production.template(), sample_day(2), ip="198.51.100.23", uid="Late0001")]))

    stack.restart_daemon()
    tick = production.tick()
    assert len(tick.run_ids) == 1, f"one run, for day 2 only: {tick.run_keys}"
    (victim,) = tick.run_ids
    assert instance.get_run_by_id(victim).tags["dagster/partition"] == day(2)

    # That run's worker is killed mid-run: the run is marked failed, then retried by the daemon.
    pid = wait_for(
        lambda: worker_pid(instance, victim), 120, "the worker of the day-2 run", interval=0.2, on_timeout=stack.logs
    )
    assert not instance.get_run_by_id(victim).is_finished, "day 2 finished before its worker could be killed"
    os.kill(pid, signal.SIGKILL)
    (failed,) = wait_for_runs(stack, [victim])
    assert failed.status.value == "FAILURE", f"the killed run ended {failed.status.value}"
    crash = f"Run execution process for {victim} was terminated by signal {int(signal.SIGKILL)} (SIGKILL)."
    notes = [e.message for e in instance.all_logs(victim, of_type=DagsterEventType.ENGINE_EVENT)]
    assert any(crash in note for note in notes), notes

    def retried() -> list[Any]:
        return instance.get_runs(RunsFilter(tags={"dagster/parent_run_id": victim}))

    (retry,) = wait_for(retried, 120, "the automatic retry of the killed run", on_timeout=stack.logs)
    (retry,) = wait_for_runs(stack, [retry.run_id])
    assert_succeeded(instance, retry)
    assert retry.tags["dagster/retry_number"] == "1"
    assert retry.tags["dagster/partition"] == day(2)
    assert retry.tags["proactive/new_objects"] == "1"
    assert not instance.get_runs(RunsFilter(tags={"dagster/parent_run_id": run_id})), "a successful run is not retried"

    # The sensor never requested a run key twice (a retry carries its parent's key: it is the same request).
    requests = [r for r in instance.get_runs(RunsFilter(tags={"dagster/sensor_name": SENSOR})) if not r.parent_run_id]
    keys = [r.tags["dagster/run_key"] for r in requests]
    assert len(keys) == len(set(keys)), keys


# -------------------------------------------------------------------------------------- helpers


def receive_all(sqs: Any, queue: str) -> list[dict[str, Any]]:
    """Every message on the queue now (SNS envelopes), deleted once read."""
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            return messages
        for message in batch:
            messages.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
