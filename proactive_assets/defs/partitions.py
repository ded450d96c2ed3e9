"""The one partitioning of the project: a UTC day (CloudTrail's delivery day)."""

import os

from dagster import DailyPartitionsDefinition

DEFAULT_START_DATE = "2024-01-01"

daily_partitions = DailyPartitionsDefinition(
    start_date=os.environ.get("PROACTIVE_START_DATE") or DEFAULT_START_DATE,
    timezone="UTC",
    end_offset=1,
)
