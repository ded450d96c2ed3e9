"""The CloudTrail sensor: a run for every day partition whose log objects are new or rewritten.

It runs ``proactive_daily_job`` (every asset) for each changed day, so a day is always
re-processed from its inputs down to its alerts - including a late delivery to an old day, which
the schedule alone would never revisit. STOPPED by default: switch it on in the UI (Automation).
"""

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

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
from dagster_aws.s3.sensor import get_objects

from proactive_assets.core.sources import cloudtrail
from proactive_assets.core.storage import ObjectInfo, split_s3_uri
from proactive_assets.defs.resources import ProactiveResource
from proactive_assets.defs.schedules import daily_job
from proactive_assets.defs.sensors.common import (
    CURSOR_VERSION,
    SENSOR_INTERVAL_SECONDS,
    fingerprint,
    is_partition,
    run_key,
)

#: How far behind the newest ``LastModified`` seen each listing starts again. S3 stamps an
#: object when its upload *starts*, so an object can become visible after a newer one; object
#: versions inside the window are remembered (by fingerprint) so they are not requested twice.
OVERLAP = timedelta(minutes=15)


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
        day = cloudtrail.object_day(info.key, accounts, regions)
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
    uri = proactive.settings.cloudtrail_uri
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
    store = proactive.store(uri)
    return [info for info in store.list_objects("AWSLogs/") if since is None or info.last_modified > since]


def cloudtrail_s3_sensor(partitions: DailyPartitionsDefinition) -> SensorDefinition:
    """The sensor on PROACTIVE_CLOUDTRAIL_URI: one run of ``job`` per day with new or rewritten objects."""

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
    def _cloudtrail_s3_sensor(context: SensorEvaluationContext, proactive: ProactiveResource) -> SensorResult:
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
        changes, new_cursor = detect_changes(listing, cursor, proactive.settings.accounts, proactive.settings.regions)
        run_requests = []
        for day, objects in sorted(changes.items()):
            key = day.isoformat()
            if not is_partition(partitions, key):
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
                skip_reason=SkipReason(f"no new CloudTrail objects under {proactive.settings.cloudtrail_uri}"),
                cursor=new_cursor.dump(),
            )
        return SensorResult(run_requests=run_requests, cursor=new_cursor.dump())

    return _cloudtrail_s3_sensor
