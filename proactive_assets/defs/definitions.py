"""The Dagster definitions: every asset, check, sensor and schedule, with resources from the environment."""

from dagster import Definitions

from proactive_assets.config import Settings
from proactive_assets.defs.assets import alerts, ingest, model, security_lake
from proactive_assets.defs.checks import ASSET_CHECKS
from proactive_assets.defs.resources import ProactiveResource
from proactive_assets.defs.schedules import daily_job, daily_schedule, with_automation
from proactive_assets.defs.sensors import SENSORS

ASSETS = [
    ingest.raw_cloudtrail,
    ingest.cloudtrail_events,
    security_lake.security_lake_activity,
    ingest.learning_set,
    model.training_set,
    model.ip_insights_model,
    model.daily_insights,
    alerts.alerts,
]

JOBS = [daily_job]
SCHEDULES = [daily_schedule]


def build_definitions(settings: Settings | None = None) -> Definitions:
    settings = settings or Settings.from_env()
    return Definitions(
        assets=with_automation(ASSETS),
        asset_checks=ASSET_CHECKS,
        jobs=JOBS,
        schedules=SCHEDULES,
        sensors=SENSORS,
        resources={"proactive": ProactiveResource.from_settings(settings)},
    )


defs = build_definitions()
