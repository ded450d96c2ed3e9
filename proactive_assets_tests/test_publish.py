"""Publishing: ledger, JSON-lines sink, SNS sink with retries (moto), exactly-once re-runs."""

import json
from datetime import date
from typing import Any

import boto3
import pandas as pd
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from proactive_assets.core.alerts import add_alert_ids, alert_id
from proactive_assets.core.publish import (
    JsonLinesSink,
    LedgerError,
    ObjectStoreLedger,
    OutgoingAlert,
    PublishError,
    SnsSink,
    publish_alerts,
    render_alert,
    sns_client,
)
from proactive_assets.core.storage import LocalStore
from proactive_assets.core.suppressions import apply_suppressions, parse_suppressions

DAY = date(2024, 1, 15)
ACCT = "111122223333"
REGION = "us-east-1"


def _alerts(n: int = 3) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "entity": [f"arn:aws:iam::{ACCT}:user/u{i}" for i in range(n)],
            "source_ip": [f"198.51.100.{i + 1}" for i in range(n)],
            "insight": [0.99 - i * 0.01 for i in range(n)],
            "dot_product": [-3.0] * n,
            "event_count": [5 + i for i in range(n)],
            "event_names": [["ListUsers", "CreateAccessKey"]] * n,
            "first_seen": [pd.Timestamp("2024-01-15T10:00Z")] * n,
            "last_seen": [pd.Timestamp("2024-01-15T11:00Z")] * n,
            "accounts": [[ACCT]] * n,
            "regions": [[REGION]] * n,
            "model_version": "m-1",
            "explanation": [f"explanation {i}" for i in range(n)],
        }
    )
    return add_alert_ids(frame, DAY)


def _drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message now in the queue (deleted as read), as parsed SNS envelopes."""
    envelopes = []
    while True:
        response = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = response.get("Messages", [])
        if not messages:
            return envelopes
        for message in messages:
            envelopes.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def _topic_with_queue(sns: Any, sqs: Any, name: str = "ProactiveExploration") -> tuple[str, str]:
    topic_arn = sns.create_topic(Name=name)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"{name}-q")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return topic_arn, queue_url


class ThrottlingClient:
    """Wraps an SNS client; raises Throttling for the chosen alert ids (persistently or N times)."""

    def __init__(self, inner: Any, fail_ids: set[str], times: int | None = None, code: str = "Throttling") -> None:
        self.inner, self.fail_ids, self.times, self.code = inner, fail_ids, times, code
        self.calls: list[str] = []

    def publish(self, **kwargs: Any) -> dict[str, Any]:
        the_id = kwargs["MessageAttributes"]["alert_id"]["StringValue"]
        self.calls.append(the_id)
        if the_id in self.fail_ids and (self.times is None or self.calls.count(the_id) <= self.times):
            raise ClientError({"Error": {"Code": self.code, "Message": "Rate exceeded"}}, "Publish")
        return self.inner.publish(**kwargs)


class RecordingSink:
    """In-memory sink to count deliveries."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.delivered: list[str] = []

    def publish(self, alert: OutgoingAlert) -> str:
        self.delivered.append(alert.alert_id)
        return f"m-{len(self.delivered)}"


# --------------------------------------------------------------------------------------------


def PublishLedger(path) -> ObjectStoreLedger:
    """The ledger the alerts asset uses, on a local folder."""
    return ObjectStoreLedger(LocalStore(path))


def test_ledger_persists_across_instances(tmp_path) -> None:
    ledger = PublishLedger(tmp_path / "ledger")
    assert not ledger.already_published("a1", "sns:t")
    ledger.record("a1", "sns:t", "msg-1")
    ledger.record("a1", "file:x", None)
    assert ledger.already_published("a1", "sns:t") and not ledger.already_published("a2", "sns:t")
    reopened = PublishLedger(tmp_path / "ledger")
    assert reopened.get("a1", "sns:t")["message_id"] == "msg-1"
    assert reopened.already_published("a1", "file:x") and not reopened.already_published("a2", "file:x")
    assert "published_at" in reopened.get("a1", "sns:t")


class _ReadOnlyStore(LocalStore):
    def put(self, key: str, data: bytes) -> None:
        raise OSError("read-only file system")


def test_ledger_write_failure_stops_publishing(tmp_path) -> None:
    ledger = ObjectStoreLedger(_ReadOnlyStore(tmp_path))
    with pytest.raises(LedgerError, match=r"alerts_ledger/.*read-only"):
        publish_alerts(_alerts(1), [RecordingSink()], ledger, day=DAY)


def test_json_lines_sink_appends_once_per_alert(tmp_path) -> None:
    path = tmp_path / "out" / "alerts.jsonl"
    alerts = _alerts(2)
    report = publish_alerts(alerts, [JsonLinesSink(path)], PublishLedger(tmp_path / "l1"), day=DAY)
    assert report.ok and len(report.published) == 2
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["alert_id"] for r in lines] == list(alerts["alert_id"])
    assert lines[0]["first_seen"] == "2024-01-15T10:00:00Z" and lines[0]["accounts"] == [ACCT]
    assert lines[0]["message"].startswith("Possible malicious activity detected\n\n ACCOUNT=")
    assert "message_trimmed" not in lines[0]
    # even with a lost ledger, the file sink does not write the same alert twice
    publish_alerts(alerts, [JsonLinesSink(path)], PublishLedger(tmp_path / "l2"), day=DAY)
    assert len(path.read_text().splitlines()) == 2


def test_suppressed_alerts_are_recorded_not_published(tmp_path) -> None:
    alerts = apply_suppressions(_alerts(3), parse_suppressions({"cidrs": ["198.51.100.2/32"]}))
    sink = RecordingSink()
    report = publish_alerts(alerts, [sink], PublishLedger(tmp_path), day=DAY)
    assert report.suppressed == [alerts.loc[1, "alert_id"]]
    assert sink.delivered == [alerts.loc[0, "alert_id"], alerts.loc[2, "alert_id"]]


def test_day_comes_from_argument_or_column(tmp_path) -> None:
    alerts = _alerts(1).drop(columns=["alert_id"])
    with pytest.raises(ValueError, match="day"):
        render_alert(alerts.iloc[0].to_dict())
    rendered = render_alert({**alerts.iloc[0].to_dict(), "day": "2024-01-15"})
    assert rendered.alert_id == alert_id(DAY, alerts.loc[0, "entity"], alerts.loc[0, "source_ip"])
    report = publish_alerts(alerts, [RecordingSink()], PublishLedger(tmp_path))
    assert len(report.failed) == 1 and "day" in report.failed[0]["reason"]


# --------------------------------------------------------------------------------------------
# SNS (moto decorator)


@mock_aws
def test_sns_to_sqs_message_subject_and_attributes(aws_env, tmp_path) -> None:
    sns, sqs = sns_client(REGION), boto3.client("sqs", region_name=REGION)
    topic_arn, queue_url = _topic_with_queue(sns, sqs)
    alerts = _alerts(3)
    ledger = PublishLedger(tmp_path)
    sink = SnsSink(sns, topic_arn, sleep=lambda s: pytest.fail("no retry expected"))

    report = publish_alerts(alerts, [sink], ledger, day=DAY, cloudtrail_location="s3://trail")
    assert report.ok and len(report.published) == 3 and not report.skipped_already_published
    envelopes = _drain(sqs, queue_url)
    assert len(envelopes) == 3
    by_id = {e["MessageAttributes"]["alert_id"]["Value"]: e for e in envelopes}
    assert set(by_id) == set(alerts["alert_id"])
    first = alerts.iloc[0]
    envelope = by_id[first["alert_id"]]
    assert envelope["Subject"] == "proactive_assets alert: user/u0 from 198.51.100.1 (insight 0.99)"
    # an SQS subscriber gets the JSON document (MessageStructure=json: "default"); email gets the text
    document = json.loads(envelope["Message"])
    assert document["schema"] == "proactive_assets.alert/2" and document["alert_id"] == first["alert_id"]
    assert document["entity"] == first["entity"] and document["source_ip"] == "198.51.100.1"
    assert document["cloudtrail"] == [f"s3://trail/AWSLogs/{ACCT}/CloudTrail/{REGION}/2024/01/15"]
    body = render_alert(first.to_dict(), DAY, "s3://trail").text
    assert body.startswith(f"Possible malicious activity detected\n\n ACCOUNT={ACCT}\nREGION={REGION}\n")
    for line in (
        f"ARN={first['entity']}",
        "ACTION=CreateAccessKey,ListUsers",
        "COUNT=5",
        "INSIGHT=0.990000",
        f"CLOUDTRAIL=s3://trail/AWSLogs/{ACCT}/CloudTrail/{REGION}/2024/01/15",
        "SOURCE_IP=198.51.100.1",
        "DOT_PRODUCT=-3.000000",
        "MODEL_VERSION=m-1",
        f"ALERT_ID={first['alert_id']}",
        "EXPLANATION=explanation 0",
        "DAY=2024/01/15",
    ):
        assert f"\n{line}" in body, line
    attributes = {k: v["Value"] for k, v in envelope["MessageAttributes"].items()}
    assert attributes["account"] == ACCT and attributes["model_version"] == "m-1"
    assert attributes["severity"] == "high" and attributes["insight"] == "0.9900"
    assert ledger.get(first["alert_id"], sink.name)["message_id"] == envelope["MessageId"]

    # a re-run with the same ledger sends nothing new
    again = publish_alerts(alerts, [sink], PublishLedger(tmp_path), day=DAY)
    assert not again.published and len(again.skipped_already_published) == 3
    assert _drain(sqs, queue_url) == []


@mock_aws
def test_persistent_throttling_fails_one_and_rerun_sends_it_once(aws_env, tmp_path) -> None:
    sns, sqs = sns_client(REGION), boto3.client("sqs", region_name=REGION)
    topic_arn, queue_url = _topic_with_queue(sns, sqs)
    alerts = _alerts(3)
    victim = alerts.loc[1, "alert_id"]
    file_path = tmp_path / "alerts.jsonl"
    sleeps: list[float] = []
    flaky = ThrottlingClient(sns, {victim})
    sinks = [
        SnsSink(flaky, topic_arn, max_attempts=4, base_delay=0.2, sleep=sleeps.append, jitter=lambda: 1.0),
        JsonLinesSink(file_path),
    ]

    report = publish_alerts(alerts, sinks, PublishLedger(tmp_path / "ledger"), day=DAY)
    assert not report.ok
    assert [(f["alert_id"], f["sink"]) for f in report.failed] == [(victim, f"sns:{topic_arn}")]
    reason = report.failed[0]["reason"]
    assert topic_arn in reason and victim in reason and "after 4 attempts" in reason and "Throttling" in reason
    assert flaky.calls.count(victim) == 4
    assert sleeps == pytest.approx([0.2, 0.4, 0.8])  # exponential, jitter pinned to its maximum
    assert len(report.published) == 5  # 2 alerts to SNS + 3 to the file
    with pytest.raises(PublishError, match="1 alert publication"):
        report.raise_for_failures()
    first_run = {e["MessageAttributes"]["alert_id"]["Value"] for e in _drain(sqs, queue_url)}
    assert first_run == set(alerts["alert_id"]) - {victim}

    healthy = [SnsSink(sns, topic_arn, sleep=sleeps.append), JsonLinesSink(file_path)]
    second = publish_alerts(alerts, healthy, PublishLedger(tmp_path / "ledger"), day=DAY)
    assert second.ok
    assert [(p["alert_id"], p["sink"]) for p in second.published] == [(victim, f"sns:{topic_arn}")]
    assert len(second.skipped_already_published) == 5
    second_run = [e["MessageAttributes"]["alert_id"]["Value"] for e in _drain(sqs, queue_url)]
    assert second_run == [victim]
    # exactly once each, overall
    assert sorted(first_run | set(second_run)) == sorted(alerts["alert_id"])
    assert len(file_path.read_text().splitlines()) == 3


@mock_aws
def test_transient_throttling_is_retried_then_succeeds(aws_env, tmp_path) -> None:
    sns, sqs = sns_client(REGION), boto3.client("sqs", region_name=REGION)
    topic_arn, queue_url = _topic_with_queue(sns, sqs)
    alerts = _alerts(1)
    sleeps: list[float] = []
    flaky = ThrottlingClient(sns, {alerts.loc[0, "alert_id"]}, times=2, code="ThrottledException")
    report = publish_alerts(
        alerts, [SnsSink(flaky, topic_arn, sleep=sleeps.append, jitter=lambda: 0.0)], PublishLedger(tmp_path), day=DAY
    )
    assert report.ok and len(report.published) == 1
    assert sleeps == pytest.approx([0.1, 0.2])  # jitter pinned to its minimum (half the step)
    assert len(_drain(sqs, queue_url)) == 1


def test_non_retryable_error_fails_at_once(tmp_path) -> None:
    sleeps: list[float] = []
    client = ThrottlingClient(None, {_alerts(1).loc[0, "alert_id"]}, code="AuthorizationError")
    report = publish_alerts(
        _alerts(1),
        [SnsSink(client, "arn:aws:sns:us-east-1:1:t", sleep=sleeps.append)],
        PublishLedger(tmp_path),
        day=DAY,
    )
    assert len(report.failed) == 1 and "not retryable" in report.failed[0]["reason"]
    assert sleeps == [] and len(client.calls) == 1


def test_connection_errors_are_retried() -> None:
    class Down:
        calls = 0

        def publish(self, **kwargs: Any) -> dict[str, Any]:
            Down.calls += 1
            raise EndpointConnectionError(endpoint_url="https://sns.us-east-1.amazonaws.com")

    sleeps: list[float] = []
    sink = SnsSink(Down(), "arn:aws:sns:us-east-1:1:t", max_attempts=3, sleep=sleeps.append)
    outgoing = render_alert(_alerts(1).iloc[0].to_dict(), DAY)
    with pytest.raises(PublishError, match=r"arn:aws:sns:us-east-1:1:t .*after 3 attempts"):
        sink.publish(outgoing)
    assert Down.calls == 3 and len(sleeps) == 2


def test_sns_sink_refuses_a_client_with_botocore_retries(aws_env) -> None:
    # botocore's own retries resend a message whose response was lost, behind the sink's back
    with pytest.raises(ValueError, match="one attempt per call"):
        SnsSink(boto3.client("sns", region_name=REGION), "arn:aws:sns:us-east-1:1:t")
    assert SnsSink(sns_client(REGION), "arn:aws:sns:us-east-1:1:t").client.meta.config.retries == {
        "total_max_attempts": 1,
        "mode": "standard",
    }


def test_fifo_topic_gets_deduplication_id() -> None:
    class Capture:
        request: dict[str, Any] = {}

        def publish(self, **kwargs: Any) -> dict[str, Any]:
            Capture.request = kwargs
            return {"MessageId": "x"}

    outgoing = render_alert(_alerts(1).iloc[0].to_dict(), DAY)
    SnsSink(Capture(), "arn:aws:sns:us-east-1:1:alerts.fifo").publish(outgoing)
    assert Capture.request["MessageDeduplicationId"] == outgoing.alert_id
    assert Capture.request["MessageGroupId"] == ACCT
    assert Capture.request["MessageStructure"] == "json"
    # a crafted account is not a valid group id: a fixed one is used, never a failing publish
    crafted = {**_alerts(1).iloc[0].to_dict(), "accounts": ["111122223333\nALERT_ID=x"]}
    SnsSink(Capture(), "arn:aws:sns:us-east-1:1:alerts.fifo").publish(render_alert(crafted, DAY))
    assert Capture.request["MessageGroupId"] == "proactive_assets"


# --------------------------------------------------------------------------------------------
# moto standalone server on 127.0.0.1


def test_publish_through_moto_server(moto_server: str, aws_env: None, tmp_path) -> None:
    sns = sns_client(REGION, endpoint_url=moto_server)
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto_server)
    topic_arn, queue_url = _topic_with_queue(sns, sqs, name="server-alerts")
    alerts = _alerts(2)
    sink = SnsSink(sns, topic_arn, sleep=lambda s: None)
    report = publish_alerts(alerts, [sink], PublishLedger(tmp_path), day=DAY)
    assert report.ok and len(report.published) == 2
    envelopes = _drain(sqs, queue_url)
    assert sorted(e["MessageAttributes"]["alert_id"]["Value"] for e in envelopes) == sorted(alerts["alert_id"])
    assert all(e["Subject"].startswith("proactive_assets alert: user/u") for e in envelopes)
    assert all(json.loads(e["Message"])["source_ip"].startswith("198.51.100.") for e in envelopes)
    rerun = publish_alerts(alerts, [sink], PublishLedger(tmp_path), day=DAY)
    assert not rerun.published and _drain(sqs, queue_url) == []


# --------------------------------------------------------------------------------------------
# SNS size limit


def _oversized() -> dict[str, Any]:
    alert = _alerts(1).iloc[0].to_dict()
    alert.update(
        entity=f"arn:aws:iam::{ACCT}:user/" + "A" * 150_000 + "\u2028" * 20_000,  # escapes make it longer still
        event_names=[f"Event{i:05d}" + "x" * 400 for i in range(2_000)],
        write_event_names=[f"Event{i:05d}" + "x" * 400 for i in range(0, 2_000, 2)],
        user_agents=["Mozilla/5.0 " + "z" * 60_000] * 10,
        explanation="why " * 20_000,
        threshold=0.85,
        severity="high",
    )
    return alert


def test_oversized_alert_is_trimmed_to_fit_and_keeps_its_key_fields() -> None:
    from proactive_assets.core.alert_message import SNS_MESSAGE_MAX_BYTES

    alert = _oversized()
    message = render_alert(alert, DAY, "s3://trail").message
    assert message.sns_size() <= SNS_MESSAGE_MAX_BYTES
    document = message.document
    for key in ("alert_id", "source_ip", "insight", "threshold", "severity", "day", "model_version", "event_count"):
        assert document[key] == {**alert, "day": "2024-01-15"}[key], key
    assert {"entity", "event_names", "write_event_names", "user_agents", "explanation"} <= set(document["trimmed"])
    assert document["entity"].startswith(f"arn:aws:iam::{ACCT}:user/AAAA") and "chars)" in document["entity"]
    assert document["event_names"][-1].startswith("... (+")  # says how many more there were
    lines = dict(line.partition("=")[::2] for line in message.text.splitlines()[3:])
    assert lines["ALERT_ID"] == alert["alert_id"] and lines["SOURCE_IP"] == alert["source_ip"]
    assert lines["TRIMMED"].startswith("entity,") and "size limit" in lines["TRIMMED"]
    small = render_alert(_alerts(1).iloc[0].to_dict(), DAY).message
    assert small.document["trimmed"] == [] and "TRIMMED=" not in small.text


def test_oversized_alert_is_published_not_a_failing_step(moto_server: str, aws_env: None, tmp_path) -> None:
    # moto refuses a message over 256 KiB as SNS does (InvalidParameter: not retryable): untrimmed,
    # this alert would fail the step on every retry.
    sns = sns_client(REGION, endpoint_url=moto_server)
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto_server)
    topic_arn, queue_url = _topic_with_queue(sns, sqs, name="oversized")
    alerts = pd.DataFrame([_oversized()])
    report = publish_alerts(alerts, [SnsSink(sns, topic_arn)], PublishLedger(tmp_path), day=DAY)
    assert report.ok, report.failed
    (envelope,) = _drain(sqs, queue_url)
    assert json.loads(envelope["Message"])["alert_id"] == alerts.loc[0, "alert_id"]
