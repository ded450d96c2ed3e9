"""The Dagster definitions: every asset, check, sensor and schedule, with resources from the environment."""

from dagster import Definitions

from proactive_assets.config import Settings
from proactive_assets.defs.assets import alerts, ingest, model
from proactive_assets.defs.checks import ASSET_CHECKS
from proactive_assets.defs.resources import ProactiveResource

ASSETS = [
    ingest.raw_cloudtrail,
    ingest.cloudtrail_events,
    ingest.learning_set,
    model.training_set,
    model.ip_insights_model,
    model.daily_insights,
    alerts.alerts,
]


def build_definitions(settings: Settings | None = None) -> Definitions:
    settings = settings or Settings.from_env()
    return Definitions(
        assets=ASSETS,
        asset_checks=ASSET_CHECKS,
        resources={"proactive": ProactiveResource.from_settings(settings)},
    )


defs = build_definitions()
