"""The Security Lake sensor: a run for every day partition announced on the subscriber SQS queue.

It runs ``proactive_daily_job`` (every asset) for each announced day. STOPPED by default: switch it
on in the UI (Automation) once PROACTIVE_SECURITY_LAKE_URI and PROACTIVE_SQS_QUEUE_URL are set.
"""

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from dagster import (
    DailyPartitionsDefinition,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from proactive_assets.core.sources import notifications, security_lake
from proactive_assets.core.storage import split_s3_uri
from proactive_assets.defs.resources import ProactiveResource
from proactive_assets.defs.schedules import daily_job
from proactive_assets.defs.sensors.common import CURSOR_VERSION, SENSOR_INTERVAL_SECONDS, is_partition, run_key

#: How long a message id whose run was requested is remembered, to recognise a redelivery
#: (SQS keeps messages at most 14 days), and at most how many are remembered.
REQUESTED_RETENTION = timedelta(days=14)
REQUESTED_MAX = 5000
DEFAULT_VISIBILITY_TIMEOUT = 900
DEFAULT_MAX_MESSAGES = 100


@dataclass
class QueueCursor:
    """The SQS sensor's state between ticks.

    ``ack``: (message id, receipt handle) of the messages behind the run requests of the tick
    that wrote this cursor - deleted by the next tick. ``requested``: message id -> epoch seconds
    when a run was requested for it, so a redelivered message is acknowledged, not re-run.
    """

    ack: list[tuple[str, str]] = field(default_factory=list)
    requested: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, text: str | None) -> "QueueCursor":
        if not text:
            return cls()
        try:
            doc = json.loads(text)
            ack = [(str(mid), str(handle)) for mid, handle in doc.get("ack", [])]
            return cls(ack=ack, requested={str(k): float(v) for k, v in doc.get("requested", {}).items()})
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"unreadable security_lake_sqs_sensor cursor ({exc}); reset it in the UI to start from scratch"
            ) from None

    def dump(self) -> str:
        return json.dumps(
            {"version": CURSOR_VERSION, "ack": [list(pair) for pair in self.ack], "requested": self.requested},
            sort_keys=True,
        )


def _pruned(requested: dict[str, float], now: float) -> dict[str, float]:
    horizon = now - REQUESTED_RETENTION.total_seconds()
    kept = sorted(((stamp, mid) for mid, stamp in requested.items() if stamp >= horizon), reverse=True)
    return {mid: stamp for stamp, mid in kept[:REQUESTED_MAX]}


def announced_day(
    bucket: str, key: str, proactive: ProactiveResource, partitions: DailyPartitionsDefinition
) -> tuple[str | None, str]:
    """(partition key, "") for an object the project reads, else (None, why not)."""
    info = security_lake.parse_security_lake_key(key)
    if info is None:
        return None, f"s3://{bucket}/{key} is not a Security Lake object key"
    if not info.supported:
        return None, f"unsupported source {info.source} {info.source_version or ''}".rstrip()
    settings = proactive.settings
    lake = settings.security_lake_uri or ""
    if lake.startswith("s3://"):
        lake_bucket, lake_prefix = split_s3_uri(lake)
        if bucket != lake_bucket or (lake_prefix and not key.startswith(f"{lake_prefix}/")):
            return None, f"s3://{bucket}/{key} is outside PROACTIVE_SECURITY_LAKE_URI {lake}"
    if settings.accounts and info.account not in settings.accounts:
        return None, f"account {info.account} is filtered out"
    if settings.regions and info.region not in settings.regions:
        return None, f"region {info.region} is filtered out"
    day = info.day.isoformat()
    if not is_partition(partitions, day):
        return None, f"{day} is not a day partition"
    return day, ""


def receive_messages(
    client: Any, queue_url: str, visibility_timeout: int, max_messages: int, wait_seconds: int
) -> list[dict[str, Any]]:
    """Up to ``max_messages`` distinct messages (a message seen twice in one tick counts once)."""
    seen: dict[str, dict[str, Any]] = {}
    while len(seen) < max_messages:
        response = client.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, max_messages - len(seen)),
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=visibility_timeout,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        batch = response.get("Messages", [])
        fresh = [m for m in batch if m["MessageId"] not in seen]
        # Keep the latest copy of a message seen twice: only its newest receipt handle deletes it.
        seen.update((m["MessageId"], m) for m in batch)
        if not fresh:
            break
    return list(seen.values())


def delete_messages(
    client: Any, queue_url: str, messages: Sequence[tuple[str, str]], context: SensorEvaluationContext
) -> int:
    """Delete (id, receipt handle) pairs in batches of 10; failures are logged, never raised.

    A failed delete only means the message comes back: its id is still in ``requested``, so it
    is then acknowledged without a new run.
    """
    deleted = 0
    for start in range(0, len(messages), 10):
        batch = messages[start : start + 10]
        response = client.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": handle} for i, (_, handle) in enumerate(batch)],
        )
        deleted += len(response.get("Successful", []))
        for failure in response.get("Failed", []):
            mid = batch[int(failure["Id"])][0]
            context.log.warning(
                f"could not delete SQS message {mid}: {failure.get('Code')} {failure.get('Message', '')}".rstrip()
            )
    return deleted


def poll_security_lake_queue(
    context: SensorEvaluationContext,
    proactive: ProactiveResource,
    partitions: DailyPartitionsDefinition,
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    wait_seconds: int = 1,
) -> SensorResult:
    """One tick of the Security Lake sensor; see ``make_security_lake_sqs_sensor``."""
    if not proactive.settings.sqs_queue_url:
        return SensorResult(skip_reason=SkipReason("PROACTIVE_SQS_QUEUE_URL is not set"), cursor=context.cursor)
    if not proactive.settings.security_lake_uri:
        return SensorResult(
            skip_reason=SkipReason("PROACTIVE_SECURITY_LAKE_URI is not set: a run would have nothing to read"),
            cursor=context.cursor,
        )
    queue = proactive.settings.sqs_queue_url
    client = proactive.sqs_client()
    cursor = QueueCursor.load(context.cursor)
    now = time.time()

    # The cursor reaching this tick proves the previous tick finished, i.e. its runs exist.
    if cursor.ack:
        deleted = delete_messages(client, queue, cursor.ack, context)
        context.log.info(f"deleted {deleted} SQS message(s) whose runs were requested by the previous tick")

    ack: list[tuple[str, str]] = []
    irrelevant: list[tuple[str, str]] = []
    requested = dict(cursor.requested)
    by_day: dict[str, list[str]] = defaultdict(list)
    objects_by_day: dict[str, int] = defaultdict(int)
    malformed = 0
    for message in receive_messages(client, queue, visibility_timeout, max_messages, wait_seconds):
        mid, handle = message["MessageId"], message["ReceiptHandle"]
        if mid in requested:
            ack.append((mid, handle))
            context.log.info(f"SQS message {mid} was redelivered; its run was already requested")
            continue
        try:
            objects = notifications.parse_sqs_message_body(message.get("Body", ""))
        except notifications.MalformedNotification as exc:
            malformed += 1
            receives = message.get("Attributes", {}).get("ApproximateReceiveCount", "?")
            context.log.warning(
                f"malformed SQS message {mid} (received {receives} times) left on the queue for its "
                f"redrive/dead-letter policy: {exc}"
            )
            continue
        days: set[str] = set()
        reasons: list[str] = []
        for bucket, key in objects:
            day, reason = announced_day(bucket, key, proactive, partitions)
            if day is None:
                reasons.append(reason)
            else:
                days.add(day)
                objects_by_day[day] += 1
        if not days:
            irrelevant.append((mid, handle))
            why = "; ".join(dict.fromkeys(reasons)) or "no created object (test event or other event type)"
            context.log.info(f"SQS message {mid} names nothing this project reads ({why}); deleting it")
            continue
        for day in days:
            by_day[day].append(mid)
        ack.append((mid, handle))
        requested[mid] = now

    # No run depends on these: delete now.
    if irrelevant:
        delete_messages(client, queue, irrelevant, context)
    run_requests = [
        RunRequest(
            run_key=run_key("security_lake", day, ids),
            partition_key=day,
            tags={
                "proactive/trigger": "security_lake_sqs_sensor",
                "proactive/messages": str(len(ids)),
                "proactive/new_objects": str(objects_by_day[day]),
            },
        )
        for day, ids in sorted(by_day.items())
    ]
    for request in run_requests:
        context.log.info(f"{request.partition_key}: run requested ({request.run_key})")
    new_cursor = QueueCursor(ack=ack, requested=_pruned(requested, now)).dump()
    if run_requests:
        return SensorResult(run_requests=run_requests, cursor=new_cursor)
    summary = f"no new Security Lake objects ({malformed} malformed message(s) left on the queue)"
    return SensorResult(skip_reason=SkipReason(summary), cursor=new_cursor)


def make_security_lake_sqs_sensor(
    partitions: DailyPartitionsDefinition,
    name: str = "security_lake_sqs_sensor",
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    wait_seconds: int = 1,
    minimum_interval_seconds: int = SENSOR_INTERVAL_SECONDS,
) -> SensorDefinition:
    """A sensor on the Security Lake subscriber queue (``PROACTIVE_SQS_QUEUE_URL``).

    Each tick receives up to ``max_messages`` messages, maps the announced objects to day
    partitions (``parse_security_lake_key(...).day``) and requests one run per day.

    When is a message deleted? **Only once its run request is recorded, one tick later.** A
    tick returns its run requests together with a cursor that lists the messages behind them
    (ids and receipt handles). Dagster stores a tick's cursor only after the tick finished,
    i.e. after its runs were created (a tick that fails keeps the previous cursor). So when the
    next tick reads that cursor, the runs exist, and it deletes those messages first. Deleting
    in the same tick, after building the result, would lose the notification if the daemon
    stopped between the delete and the run's creation. The price is that a message stays
    in flight one interval longer, hence a ``visibility_timeout`` (900 s) of a few intervals;
    should it still reappear (sensor stopped for a while), its id is in the cursor's
    ``requested`` set and it is acknowledged without a second run.

    Other messages: a malformed one (not JSON, neither S3-notification nor EventBridge shape)
    is logged with its id and reason and left alone, so the queue's redrive policy moves it to
    the dead-letter queue after ``maxReceiveCount`` receives - never silently dropped. A valid
    one that names nothing this project reads (other sources, another bucket, filtered
    accounts/regions, the S3 test event) is logged and deleted at once: no run depends on it.
    """

    @sensor(
        name=name,
        job=daily_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.STOPPED,
        description=(
            "Runs every asset for each day partition announced on the Security Lake subscriber queue "
            "(PROACTIVE_SQS_QUEUE_URL); deletes a message once its run is recorded, leaves malformed ones "
            "to the queue's dead-letter policy."
        ),
    )
    def _security_lake_sqs_sensor(context: SensorEvaluationContext, proactive: ProactiveResource) -> SensorResult:
        return poll_security_lake_queue(context, proactive, partitions, visibility_timeout, max_messages, wait_seconds)

    return _security_lake_sqs_sensor
