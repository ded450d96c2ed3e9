"""Publishing through faults: a proxy on 127.0.0.1 between the SNS client and moto's server drops
responses after moto accepted the message, answers 5xx and throttles; an SQS queue subscribed to
the topic counts what was delivered.

What must hold (the README's reliability section): a FIFO topic delivers each alert exactly once
(``MessageDeduplicationId`` = alert id; moto applies it in the subscribed FIFO queue, SNS does in
its own 5-minute window); a standard topic delivers each alert at least once, every repeat with
the same ``alert_id`` attribute; and a run that could not publish an alert never reports success.

Measured before this design (botocore's own retries, the issue's set-up): every third response
dropped, 17 alerts gave 25 deliveries on a standard topic and the run reported plain success.
"""

import json
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest

from proactive_assets.core.alerts import add_alert_ids
from proactive_assets.core.publish import ObjectStoreLedger, PublishError, SnsSink, publish_alerts, sns_client
from proactive_assets.core.storage import LocalStore
from proactive_assets_tests.fault_proxy import Plan, cycle, every, fault_proxy

DAY = date(2024, 1, 15)
ALERTS = 17
MIXED = cycle(None, "drop", None, "error500", "throttle", None, "unavailable")


def _alerts(n: int = ALERTS) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "entity": [f"arn:aws:iam::111122223333:user/u{i}" for i in range(n)],
            "source_ip": [f"198.51.100.{i + 1}" for i in range(n)],
            "insight": [0.95] * n,
            "dot_product": [-3.0] * n,
            "event_count": [5] * n,
            "event_names": [["ListUsers"]] * n,
            "accounts": [["111122223333"]] * n,
            "regions": [["us-east-1"]] * n,
            "model_version": "m-1",
            "explanation": ["x"] * n,
        }
    )
    return add_alert_ids(frame, DAY)


@pytest.fixture
def aws(moto_endpoint: str) -> Iterator[tuple[Any, Any, str]]:
    """SNS and SQS clients straight to moto (set-up and counting never go through the proxy)."""
    yield boto3.client("sns"), boto3.client("sqs"), moto_endpoint


def _topic(sns: Any, sqs: Any, name: str, fifo: bool) -> tuple[str, str]:
    suffix = ".fifo" if fifo else ""
    topic = sns.create_topic(Name=name + suffix, Attributes={"FifoTopic": "true"} if fifo else {})["TopicArn"]
    queue = sqs.create_queue(QueueName=name + suffix, Attributes={"FifoQueue": "true"} if fifo else {})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return topic, queue


def _deliveries(sqs: Any, queue: str) -> list[tuple[str, str]]:
    """(alert_id attribute, document alert_id) of every message in the queue, deleting them."""
    found = []
    while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            envelope = json.loads(message["Body"])
            found.append(
                (envelope["MessageAttributes"]["alert_id"]["Value"], json.loads(envelope["Message"])["alert_id"])
            )
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return found


def _publish(proxy_url: str, topic: str, ledger: Path, alerts: pd.DataFrame, attempts: int = 5):
    sink = SnsSink(sns_client("us-east-1", endpoint_url=proxy_url), topic, max_attempts=attempts, sleep=lambda s: None)
    report = publish_alerts(alerts, [sink], ObjectStoreLedger(LocalStore(ledger)), day=DAY)
    return sink, report


@pytest.mark.parametrize("plan_name", ["every third response lost", "mixed faults"])
def test_fifo_topic_delivers_each_alert_exactly_once(aws, tmp_path: Path, plan_name: str) -> None:
    sns, sqs, moto = aws
    plan: Plan = every(3, "drop") if plan_name.startswith("every") else MIXED
    topic, queue = _topic(sns, sqs, "fifo-faults", fifo=True)
    alerts = _alerts()
    with fault_proxy(moto, plan) as proxy:
        sink, report = _publish(proxy.url, topic, tmp_path / "ledger", alerts)
    assert report.ok and len(report.published) == ALERTS
    assert proxy.forwarded > ALERTS  # some accepted messages were sent again after a lost answer...
    delivered = _deliveries(sqs, queue)
    assert sorted(a for a, _ in delivered) == sorted(alerts["alert_id"])  # ...and each arrived exactly once
    assert sink.possible_duplicates == []


@pytest.mark.parametrize("plan_name", ["every third response lost", "mixed faults"])
def test_standard_topic_delivers_at_least_once_with_the_alert_id(aws, tmp_path: Path, plan_name: str) -> None:
    sns, sqs, moto = aws
    plan: Plan = every(3, "drop") if plan_name.startswith("every") else MIXED
    topic, queue = _topic(sns, sqs, "std-faults", fifo=False)
    alerts = _alerts()
    with fault_proxy(moto, plan) as proxy:
        sink, report = _publish(proxy.url, topic, tmp_path / "ledger", alerts)
    assert report.ok and len(report.published) == ALERTS
    delivered = _deliveries(sqs, queue)
    counts = Counter(a for a, _ in delivered)
    assert set(counts) == set(alerts["alert_id"])  # every alert at least once
    assert all(attribute == document for attribute, document in delivered)  # every repeat carries its id
    repeats = {a for a, c in counts.items() if c > 1}
    assert repeats, "the faults should have caused repeats"
    assert len(delivered) == proxy.forwarded  # each message SNS accepted was delivered, once per acceptance
    assert repeats <= set(sink.possible_duplicates)  # and the run says which alerts may repeat


def test_a_run_never_reports_success_with_an_alert_missing(aws, tmp_path: Path) -> None:
    sns, sqs, moto = aws
    topic, queue = _topic(sns, sqs, "persistent", fifo=True)
    alerts = _alerts()
    # From the 10th Publish on, SNS accepts every message but no answer ever comes back.
    with fault_proxy(moto, lambda n: "drop" if n >= 10 else None) as proxy:
        _, report = _publish(proxy.url, topic, tmp_path / "ledger", alerts, attempts=3)
    assert not report.ok
    failed = {f["alert_id"] for f in report.failed}
    assert failed and failed | {p["alert_id"] for p in report.published} == set(alerts["alert_id"])
    assert all("after 3 attempts" in f["reason"] for f in report.failed)
    with pytest.raises(PublishError, match=f"{len(failed)} alert publication"):
        report.raise_for_failures()
    # The retry (a re-run of the step) sends only what the ledger lacks; the FIFO topic drops the
    # copies SNS had accepted without answering: exactly once overall.
    with fault_proxy(moto, lambda n: None) as proxy:
        _, second = _publish(proxy.url, topic, tmp_path / "ledger", alerts)
    assert second.ok and {p["alert_id"] for p in second.published} == failed
    assert sorted(a for a, _ in _deliveries(sqs, queue)) == sorted(alerts["alert_id"])


def test_throttling_and_unavailable_without_delivery_are_not_possible_duplicates(aws, tmp_path: Path) -> None:
    sns, sqs, moto = aws
    topic, queue = _topic(sns, sqs, "throttled", fifo=False)
    with fault_proxy(moto, cycle("throttle", None)) as proxy:
        sink, report = _publish(proxy.url, topic, tmp_path / "ledger", _alerts(5))
    assert report.ok and proxy.faults.count("throttle") == 5
    assert len(_deliveries(sqs, queue)) == 5 and sink.possible_duplicates == []
