"""Event-driven runs: new CloudTrail objects in S3 and Security Lake notifications on SQS.

Both sensors run ``proactive_daily_job`` (every asset) for each day partition that changed, so
a day is always re-processed from its inputs down to its alerts - including a late delivery to
an old day, which the schedule alone would never revisit. Both are STOPPED by default: switch
them on in the UI (Automation tab) once the sources are configured. See ``schedules.py`` for
how the schedule and the declarative automation fit with them.

Run keys name the day and a digest of what triggered the run (object versions or SQS message
ids): Dagster never launches the same run key twice for a sensor, so the same set of objects is
never requested twice, while new objects for a day make a new key and a new run for that day.

Interval: every run re-processes its whole day, so polling faster than data arrives only splits
one delivery wave (CloudTrail writes about every 5 minutes per account and region) into several
runs. ``minimum_interval_seconds`` is therefore 300 s for both sensors.
"""

import hashlib
import json
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster_aws.s3.sensor import get_objects

from proactive_assets.core.cloudtrail import LOG_NAME
from proactive_assets.core.security_lake import (
    MalformedNotification,
    parse_security_lake_key,
    parse_sqs_message_body,
)
from proactive_assets.core.storage import ObjectInfo, split_s3_uri
from proactive_assets.defs.partitions import daily_partitions
from proactive_assets.defs.resources import ProactiveResource
from proactive_assets.defs.schedules import daily_job

SENSOR_INTERVAL_SECONDS = 300
CURSOR_VERSION = 1

# ----------------------------------------------------------------------------------- helpers


def _digest(parts: Iterable[str], length: int = 16) -> str:
    return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()[:length]


def run_key(trigger: str, day: str, parts: Iterable[str]) -> str:
    """``<trigger>:<day>:<digest of what triggered it>`` - see the module docstring."""
    return f"{trigger}:{day}:{_digest(parts)}"


def is_partition(day: date | str) -> bool:
    """True when ``day`` is a partition of ``daily_partitions`` now (not before the start, not future)."""
    return daily_partitions.has_partition_key(day if isinstance(day, str) else day.isoformat())


# ------------------------------------------------------------------------- CloudTrail arrivals

#: A CloudTrail log object key relative to the trail's root (org-trail layout included): the
#: folder date is the delivery day, the partition ``list_day_objects`` finds the object in.
CLOUDTRAIL_KEY = re.compile(
    r"^AWSLogs/(?:o-[a-z0-9]{10,32}/)?(?P<account>\d{12})/CloudTrail/(?P<region>[a-z0-9-]+)/"
    r"(?P<year>\d{4})/(?P<month>\d{2})/(?P<day>\d{2})/(?P<name>[^/]+)$"
)
#: How far behind the newest ``LastModified`` seen each listing starts again. S3 stamps an
#: object when its upload *starts*, so an object can become visible after a newer one; object
#: versions inside the window are remembered (by fingerprint) so they are not requested twice.
OVERLAP = timedelta(minutes=15)


def cloudtrail_key_day(key: str, accounts: Iterable[str] = (), regions: Iterable[str] = ()) -> date | None:
    """Delivery day of a CloudTrail log object key, or None (digests, other files, filtered out)."""
    match = CLOUDTRAIL_KEY.match(key)
    if match is None or LOG_NAME.match(match["name"]) is None:
        return None
    accounts, regions = set(accounts), set(regions)
    if (accounts and match["account"] not in accounts) or (regions and match["region"] not in regions):
        return None
    try:
        return date(int(match["year"]), int(match["month"]), int(match["day"]))
    except ValueError:
        return None


def fingerprint(info: ObjectInfo) -> str:
    """Identifies one version of one object (a rewrite changes the etag, so the fingerprint)."""
    return hashlib.sha256(f"{info.key}\0{info.etag}".encode()).hexdigest()[:20]


@dataclass
class ArrivalCursor:
    """What the CloudTrail sensor has seen: the newest ``LastModified`` and the recent versions."""

    watermark: datetime | None = None
    recent: dict[str, float] = field(default_factory=dict)  # fingerprint -> LastModified (epoch s)

    @property
    def since(self) -> datetime | None:
        """Where the next listing starts (exclusive)."""
        return self.watermark - OVERLAP if self.watermark else None

    @classmethod
    def load(cls, text: str | None) -> "ArrivalCursor":
        if not text:
            return cls()
        try:
            doc = json.loads(text)
            watermark = datetime.fromisoformat(doc["watermark"]) if doc.get("watermark") else None
            return cls(watermark=watermark, recent={str(k): float(v) for k, v in doc.get("recent", {}).items()})
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"unreadable cloudtrail_s3_sensor cursor ({exc}); reset it in the UI to start from scratch"
            ) from None

    def dump(self) -> str:
        return json.dumps(
            {
                "version": CURSOR_VERSION,
                "watermark": self.watermark.isoformat() if self.watermark else None,
                "recent": self.recent,
            },
            sort_keys=True,
        )


def detect_changes(
    listing: Iterable[ObjectInfo],
    cursor: ArrivalCursor,
    accounts: Iterable[str] = (),
    regions: Iterable[str] = (),
) -> tuple[dict[date, list[ObjectInfo]], ArrivalCursor]:
    """New or rewritten log objects by delivery day, and the cursor that remembers them.

    ``listing`` holds the objects modified after ``cursor.since`` (the caller lists that way);
    the versions already in the cursor are dropped, so a listing repeated with the returned
    cursor finds nothing.
    """
    recent = dict(cursor.recent)
    watermark = cursor.watermark
    changed: dict[date, list[ObjectInfo]] = defaultdict(list)
    for info in listing:
        day = cloudtrail_key_day(info.key, accounts, regions)
        if day is None:
            continue
        modified = info.last_modified.astimezone(UTC)
        if watermark is None or modified > watermark:
            watermark = modified
        mark = fingerprint(info)
        if mark in recent:
            continue
        recent[mark] = modified.timestamp()
        changed[day].append(info)
    if watermark is not None:
        horizon = (watermark - OVERLAP).timestamp()
        recent = {mark: stamp for mark, stamp in recent.items() if stamp >= horizon}
    return dict(changed), ArrivalCursor(watermark=watermark, recent=recent)


def list_cloudtrail_objects(proactive: ProactiveResource, since: datetime | None) -> list[ObjectInfo]:
    """Log-folder objects modified after ``since`` (all of them when None), keys relative to the root.

    S3 goes through ``dagster_aws.s3.sensor.get_objects`` with ``since_last_modified`` (not
    ``since_key``: that one fails once its key is deleted and misses rewritten objects); a local
    folder (the embedded default) through the store's listing, whose etag is mtime+size.
    """
    uri = proactive.cloudtrail_uri
    if uri.startswith("s3://"):
        bucket, prefix = split_s3_uri(uri)
        base = f"{prefix}/" if prefix else ""
        objects = get_objects(
            bucket, prefix=f"{base}AWSLogs/", since_last_modified=since, client=proactive.s3.get_client()
        )
        return [
            ObjectInfo(
                key=obj["Key"][len(base) :],
                size=int(obj.get("Size", 0)),
                etag=str(obj.get("ETag", "")).strip('"'),
                last_modified=obj["LastModified"],
            )
            for obj in objects
        ]
    store = proactive.cloudtrail_store()
    return [info for info in store.list_objects("AWSLogs/") if since is None or info.last_modified > since]


@sensor(
    name="cloudtrail_s3_sensor",
    job=daily_job,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.STOPPED,
    description=(
        "Runs every asset for each day partition that received new or rewritten CloudTrail log objects "
        "(S3 bucket or local folder of PROACTIVE_CLOUDTRAIL_URI), late deliveries to old days included."
    ),
)
def cloudtrail_s3_sensor(context: SensorEvaluationContext, proactive: ProactiveResource) -> SensorResult:
    """One run per changed day; the cursor (JSON) carries the watermark and recent versions.

    On its very first tick (no cursor) every day in the bucket that is a partition is requested:
    set ``PROACTIVE_START_DATE`` to bound that first backfill.

    Cost: ``get_objects`` pages through every object under ``AWSLogs/`` on each tick (S3 has no
    server-side filter on ``LastModified``), about one request per 1,000 objects. That is fine
    for a trail of some months; for a large organisation trail narrow
    ``PROACTIVE_CLOUDTRAIL_URI`` to a prefix, or send the bucket's S3 event notifications to a
    queue and rely on the daily schedule plus that queue instead.
    """
    cursor = ArrivalCursor.load(context.cursor)
    listing = list_cloudtrail_objects(proactive, cursor.since)
    changes, new_cursor = detect_changes(listing, cursor, proactive.accounts, proactive.regions)
    run_requests = []
    for day, objects in sorted(changes.items()):
        key = day.isoformat()
        if not is_partition(key):
            context.log.info(f"ignoring {len(objects)} CloudTrail object(s) of {key}: not a day partition")
            continue
        run_requests.append(
            RunRequest(
                run_key=run_key("cloudtrail", key, (fingerprint(o) for o in objects)),
                partition_key=key,
                tags={"proactive/trigger": "cloudtrail_s3_sensor", "proactive/new_objects": str(len(objects))},
            )
        )
        context.log.info(f"{key}: {len(objects)} new CloudTrail object(s), e.g. {objects[0].key}")
    if not run_requests:
        return SensorResult(
            skip_reason=SkipReason(f"no new CloudTrail objects under {proactive.cloudtrail_uri}"),
            cursor=new_cursor.dump(),
        )
    return SensorResult(run_requests=run_requests, cursor=new_cursor.dump())


# ------------------------------------------------------------------- Security Lake notifications

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


def object_day(bucket: str, key: str, proactive: ProactiveResource) -> tuple[str | None, str]:
    """(partition key, "") for an object the project reads, else (None, why not)."""
    info = parse_security_lake_key(key)
    if info is None:
        return None, f"s3://{bucket}/{key} is not a Security Lake object key"
    if not info.supported:
        return None, f"unsupported source {info.source} {info.source_version or ''}".rstrip()
    lake = proactive.security_lake_uri or ""
    if lake.startswith("s3://"):
        lake_bucket, lake_prefix = split_s3_uri(lake)
        if bucket != lake_bucket or (lake_prefix and not key.startswith(f"{lake_prefix}/")):
            return None, f"s3://{bucket}/{key} is outside PROACTIVE_SECURITY_LAKE_URI {lake}"
    if proactive.accounts and info.account not in proactive.accounts:
        return None, f"account {info.account} is filtered out"
    if proactive.regions and info.region not in proactive.regions:
        return None, f"region {info.region} is filtered out"
    day = info.day.isoformat()
    if not is_partition(day):
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
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    wait_seconds: int = 1,
) -> SensorResult:
    """One tick of the Security Lake sensor; see ``make_security_lake_sqs_sensor``."""
    if not proactive.sqs_queue_url:
        return SensorResult(skip_reason=SkipReason("PROACTIVE_SQS_QUEUE_URL is not set"), cursor=context.cursor)
    if not proactive.security_lake_uri:
        return SensorResult(
            skip_reason=SkipReason("PROACTIVE_SECURITY_LAKE_URI is not set: a run would have nothing to read"),
            cursor=context.cursor,
        )
    queue = proactive.sqs_queue_url
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
            objects = parse_sqs_message_body(message.get("Body", ""))
        except MalformedNotification as exc:
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
            day, reason = object_day(bucket, key, proactive)
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
        return poll_security_lake_queue(context, proactive, visibility_timeout, max_messages, wait_seconds)

    return _security_lake_sqs_sensor


security_lake_sqs_sensor = make_security_lake_sqs_sensor()

SENSORS: list[SensorDefinition] = [cloudtrail_s3_sensor, security_lake_sqs_sensor]
