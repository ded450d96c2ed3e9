"""What both sensors share: run keys, object fingerprints and the polling interval.

Run keys name the day and a digest of what triggered the run (object versions or SQS message
ids): Dagster never launches the same run key twice for a sensor, so the same set of objects is
never requested twice, while new objects for a day make a new key and a new run for that day.
"""

import hashlib
from collections.abc import Iterable
from datetime import date

from dagster import DailyPartitionsDefinition

from proactive_assets.core.storage import ObjectInfo

#: Every run re-processes its whole day, so polling faster than data arrives only splits one
#: delivery wave (CloudTrail writes about every 5 minutes per account and region) into several runs.
SENSOR_INTERVAL_SECONDS = 300
CURSOR_VERSION = 1


def _digest(parts: Iterable[str], length: int = 16) -> str:
    return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()[:length]


def run_key(trigger: str, day: str, parts: Iterable[str]) -> str:
    """``<trigger>:<day>:<digest of what triggered it>``."""
    return f"{trigger}:{day}:{_digest(parts)}"


def fingerprint(info: ObjectInfo) -> str:
    """Identifies one version of one object (a rewrite changes the etag, so the fingerprint)."""
    return hashlib.sha256(f"{info.key}\0{info.etag}".encode()).hexdigest()[:20]


def is_partition(partitions: DailyPartitionsDefinition, day: date | str) -> bool:
    """True when ``day`` is a partition now (not before the start date, not in the future)."""
    return partitions.has_partition_key(day if isinstance(day, str) else day.isoformat())
