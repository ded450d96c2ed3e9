"""The one partitioning of the project: a UTC day (CloudTrail's delivery day), from the settings."""

from collections.abc import Callable
from datetime import date

from dagster import AssetCheckExecutionContext, AssetExecutionContext, DailyPartitionsDefinition

from proactive_assets.config import Settings
from proactive_assets.core.storage import ObjectStore, SourceUnavailable


def daily_partitions(settings: Settings) -> DailyPartitionsDefinition:
    """Days from ``PROACTIVE_START_DATE`` to today (``end_offset=1``: today is a partition too)."""
    return DailyPartitionsDefinition(start_date=settings.start_date, timezone="UTC", end_offset=1)


def partition_day(context: AssetExecutionContext | AssetCheckExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


def day_has_logs(settings: Settings, day: date, store: Callable[[str], ObjectStore]) -> bool:
    """Whether a configured source (CloudTrail, Security Lake) has log objects for ``day``.

    One listing of the day's folders per source; a source that cannot be listed counts as having
    logs, so that its ingest runs and says what is wrong.
    """
    from proactive_assets.core.sources import cloudtrail, security_lake

    sources = [(cloudtrail, settings.cloudtrail_uri)]
    if settings.security_lake_uri:
        sources.append((security_lake, settings.security_lake_uri))
    for source, uri in sources:
        try:
            if source.list_day(store(uri), day, settings.accounts, settings.regions).objects:
                return True
        except SourceUnavailable:
            return True
    return False
