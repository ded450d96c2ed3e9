"""The one partitioning of the project: a UTC day (CloudTrail's delivery day), from the settings."""

from datetime import date

from dagster import AssetCheckExecutionContext, AssetExecutionContext, DailyPartitionsDefinition

from proactive_assets.config import Settings


def daily_partitions(settings: Settings) -> DailyPartitionsDefinition:
    """Days from ``PROACTIVE_START_DATE`` to today (``end_offset=1``: today is a partition too)."""
    return DailyPartitionsDefinition(start_date=settings.start_date, timezone="UTC", end_offset=1)


def partition_day(context: AssetExecutionContext | AssetCheckExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)
