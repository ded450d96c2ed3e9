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
#: Between full listings of a bucket, the day folders written to this recently (by the objects'
#: ``LastModified``) are listed on every tick beside today's and yesterday's: a day being copied or
#: backfilled into the bucket, and late deliveries to a day just past.
ACTIVE_FOR = timedelta(hours=48)


def _now() -> datetime:
    return datetime.now(UTC)


def _still_active(active: dict[str, float], now: datetime) -> dict[str, float]:
    """The days of ``active`` (day -> newest ``LastModified``) written to within ``ACTIVE_FOR`` of ``now``."""
    lately = (now - ACTIVE_FOR).timestamp()
    return {day: stamp for day, stamp in active.items() if stamp >= lately}


@dataclass
class ArrivalCursor:
    """What the CloudTrail sensor has seen: the newest ``LastModified``, the recent versions, when
    the bucket was last listed in full and the day folders written to lately."""

    watermark: datetime | None = None
    recent: dict[str, float] = field(default_factory=dict)  # fingerprint -> LastModified (epoch s)
    listed_in_full: datetime | None = None
    active: dict[str, float] = field(default_factory=dict)  # day -> its newest LastModified (epoch s)

    @property
    def since(self) -> datetime | None:
        """Where the next listing starts (exclusive)."""
        return self.watermark - OVERLAP if self.watermark else None

    def full_listing_due(self, now: datetime, every: timedelta) -> bool:
        """Whether the next listing covers the whole bucket rather than the days ``days_to_list`` names."""
        return self.watermark is None or self.listed_in_full is None or now - self.listed_in_full >= every

    def days_to_list(self, now: datetime) -> list[date]:
        """Today and yesterday (by the clock and by the newest object), and the days written to lately:
        CloudTrail delivers into the folder of the day it delivers, within minutes."""
        days = {now.date(), now.date() - timedelta(days=1)}
        if self.watermark is not None:
            days |= {self.watermark.date(), self.watermark.date() - timedelta(days=1)}
        return sorted(days | {date.fromisoformat(day) for day in _still_active(self.active, now)})

    @classmethod
    def load(cls, text: str | None) -> "ArrivalCursor":
        if not text:
            return cls()
        try:
            doc = json.loads(text)

            def moment(name: str) -> datetime | None:
                return datetime.fromisoformat(doc[name]) if doc.get(name) else None

            return cls(
                watermark=moment("watermark"),
                recent={str(k): float(v) for k, v in doc.get("recent", {}).items()},
                listed_in_full=moment("listed_in_full"),
                active={date.fromisoformat(k).isoformat(): float(v) for k, v in doc.get("active", {}).items()},
            )
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
                "listed_in_full": self.listed_in_full.isoformat() if self.listed_in_full else None,
                "active": self.active,
            },
            sort_keys=True,
        )


def detect_changes(
    listing: Iterable[ObjectInfo],
    cursor: ArrivalCursor,
    accounts: Iterable[str] = (),
    regions: Iterable[str] = (),
    now: datetime | None = None,
) -> tuple[dict[date, list[ObjectInfo]], ArrivalCursor]:
    """New or rewritten log objects by delivery day, and the cursor that remembers them.

    ``listing`` holds the objects modified after ``cursor.since`` (the caller lists that way);
    the versions already in the cursor are dropped, so a listing repeated with the returned
    cursor finds nothing. The days written to within ``ACTIVE_FOR`` of ``now`` stay active.
    """
    recent, active = dict(cursor.recent), dict(cursor.active)
    watermark = cursor.watermark
    changed: dict[date, list[ObjectInfo]] = defaultdict(list)
    for info in listing:
        day = cloudtrail.object_day(info.key, accounts, regions)
        if day is None:
            continue
        modified = info.last_modified.astimezone(UTC)
        if watermark is None or modified > watermark:
            watermark = modified
        active[day.isoformat()] = max(active.get(day.isoformat(), 0.0), modified.timestamp())
        mark = fingerprint(info)
        if mark in recent:
            continue
        recent[mark] = modified.timestamp()
        changed[day].append(info)
    if watermark is not None:
        horizon = (watermark - OVERLAP).timestamp()
        recent = {mark: stamp for mark, stamp in recent.items() if stamp >= horizon}
    return dict(changed), ArrivalCursor(watermark, recent, cursor.listed_in_full, _still_active(active, now or _now()))


def list_cloudtrail_objects(
    proactive: ProactiveResource, cursor: ArrivalCursor, now: datetime
) -> tuple[list[ObjectInfo], bool]:
    """Log-folder objects modified after ``cursor.since`` (all of them when None), keys relative to
    the root; and whether the whole bucket was listed.

    S3 is listed in full every ``PROACTIVE_CLOUDTRAIL_FULL_LISTING_HOURS`` (through
    ``dagster_aws.s3.sensor.get_objects`` with ``since_last_modified``, not ``since_key``: that one
    fails once its key is deleted and misses rewritten objects), and between those only the folders
    of ``cursor.days_to_list``. A local folder (the embedded default) is walked in full on every
    tick (its etag is mtime+size).
    """
    settings = proactive.settings
    uri, since = settings.cloudtrail_uri, cursor.since
    every = timedelta(hours=settings.cloudtrail_full_listing_hours)
    in_full = not uri.startswith("s3://") or cursor.full_listing_due(now, every)
    if not in_full:
        store, days = proactive.store(uri), cursor.days_to_list(now)
        listing = cloudtrail.list_day_folders(store, days, settings.accounts, settings.regions)
    elif uri.startswith("s3://"):
        bucket, prefix = split_s3_uri(uri)
        base = f"{prefix}/" if prefix else ""
        objects = get_objects(
            bucket, prefix=f"{base}AWSLogs/", since_last_modified=since, client=proactive.s3.get_client()
        )
        listing = [
            ObjectInfo(
                key=obj["Key"][len(base) :],
                size=int(obj.get("Size", 0)),
                etag=str(obj.get("ETag", "")).strip('"'),
                last_modified=obj["LastModified"],
            )
            for obj in objects
        ]
    else:
        listing = proactive.store(uri).list_objects("AWSLogs/")
    return [info for info in listing if since is None or info.last_modified > since], in_full


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

        Cost: S3 has no server-side filter on ``LastModified``, so a full listing pages through
        every object under ``AWSLogs/``, about one request per 1,000 objects: a year of an
        organisation trail is tens of millions of objects. It is done on the first tick and every
        ``PROACTIVE_CLOUDTRAIL_FULL_LISTING_HOURS`` (24; 0: every tick); the ticks between list only
        each account and region folder's recent days (``ArrivalCursor.days_to_list``): two requests
        per account, and one per account, region and day. An object written into an older day's
        folder is seen by the next full listing.
        """
        cursor, now = ArrivalCursor.load(context.cursor), _now()
        listing, in_full = list_cloudtrail_objects(proactive, cursor, now)
        settings = proactive.settings
        changes, new_cursor = detect_changes(listing, cursor, settings.accounts, settings.regions, now)
        if in_full:
            new_cursor.listed_in_full = now
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
