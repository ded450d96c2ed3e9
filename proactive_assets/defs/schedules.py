"""The daily job, the daily schedule and the declarative automation: what triggers what.

Triggers, all of them off until switched on in the UI (Automation tab), so that installing the
project never starts work on its own:

* ``daily_schedule`` (01:30 UTC) runs ``proactive_daily_job`` - every asset - for *yesterday's*
  partition, once CloudTrail has finished delivering it (usually within 15 minutes of the
  hour). ``build_schedule_from_partitioned_job`` is not used: with ``end_offset=1`` (today is a
  partition, so the CLI and the sensors can process the day in progress) it targets *today*.
* ``cloudtrail_s3_sensor`` and ``security_lake_sqs_sensor`` (``sensors.py``) run
  ``proactive_daily_job`` for every day partition that received new objects, including late
  deliveries to old days; one run re-processes that day from ``raw_cloudtrail`` to ``alerts``.
* ``default_automation_condition_sensor`` (created by Dagster because some assets below carry an
  ``AutomationCondition``) covers partial refreshes: when someone materialises only a parent
  (say ``security_lake_activity`` for today), ``AutomationCondition.eager()`` requests the
  children that follow it. ``eager()`` only considers the latest time partition (today, as
  ``end_offset=1``), never older days, so it can never fan out a backfill; older days are the
  business of the schedule, the sensors and explicit backfills. ``training_set`` and
  ``ip_insights_model`` carry no condition: model D learns from the days *before* D, so a change
  to day D does not change model D, and retraining (minutes, possibly SageMaker) should be an
  explicit run. Whole-job runs never cause extra automation runs: a child updated in the same
  run as its parent is not "newly updated without root".
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from dagster import (
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    AutomationCondition,
    DailyPartitionsDefinition,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    in_process_executor,
    map_asset_specs,
    schedule,
)

DAILY_JOB_NAME = "proactive_daily_job"
#: Assets that follow their parents for the latest partition (see the module docstring).
EAGER_ASSETS = frozenset({"cloudtrail_events", "learning_set", "daily_insights", "alerts"})

daily_job = define_asset_job(
    DAILY_JOB_NAME,
    selection=AssetSelection.all(),  # every asset is day-partitioned: the job is too
    # One process: a step's own work is seconds, the multiprocess executor's start-up ~30 s a run.
    executor_def=in_process_executor,
    description="Every asset for one day partition: ingestion, Security Lake, model, insights and alerts.",
)


def with_automation(assets: Sequence[AssetsDefinition]) -> list[AssetsDefinition]:
    """``assets`` with ``AutomationCondition.eager()`` on ``EAGER_ASSETS``.

    Applied here, in one place, rather than in each asset module, so the whole trigger policy
    reads in this file; a condition an asset module sets itself is kept.
    """

    def apply(spec: AssetSpec) -> AssetSpec:
        if spec.key.to_user_string() in EAGER_ASSETS and spec.automation_condition is None:
            return spec.replace_attributes(automation_condition=AutomationCondition.eager())
        return spec

    return [a for a in map_asset_specs(apply, assets) if isinstance(a, AssetsDefinition)]


def previous_day(moment: datetime) -> str:
    """Partition key of the UTC day before ``moment``."""
    return (moment.astimezone(UTC) - timedelta(days=1)).date().isoformat()


def daily_schedule(partitions: DailyPartitionsDefinition) -> ScheduleDefinition:
    @schedule(
        name="daily_schedule",
        job=daily_job,
        cron_schedule="30 1 * * *",
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.STOPPED,
        description="Every asset for yesterday's partition (UTC), at 01:30 UTC once CloudTrail has delivered the day.",
    )
    def _daily_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        moment = context.scheduled_execution_time or datetime.now(UTC)
        day = previous_day(moment)
        if not partitions.has_partition_key(day):
            return SkipReason(f"{day} is not a partition (before PROACTIVE_START_DATE?)")
        return RunRequest(
            run_key=f"daily:{day}",
            partition_key=day,
            tags={"proactive/trigger": "daily_schedule"},
        )

    return _daily_schedule
