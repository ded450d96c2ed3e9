"""The Dagster definitions: every asset, check, sensor and schedule, built from one ``Settings``.

``build_definitions(settings)`` honours the settings completely (partitions and the training
window's partition mapping included), so two definitions with different settings can live in one
process. ``defs`` is what ``dagster dev`` and ``dagster asset materialize`` load: the environment's.
"""

from dagster import Definitions

from proactive_assets.config import Settings
from proactive_assets.defs.assets.alerts import alert_assets
from proactive_assets.defs.assets.cloudtrail import cloudtrail_assets
from proactive_assets.defs.assets.learning import learning_assets
from proactive_assets.defs.assets.model import model_assets
from proactive_assets.defs.assets.security_lake import security_lake_assets
from proactive_assets.defs.checks import asset_checks
from proactive_assets.defs.partitions import daily_partitions
from proactive_assets.defs.resources import ProactiveResource
from proactive_assets.defs.schedules import daily_job, daily_schedule, with_automation
from proactive_assets.defs.sensors import sensors


def build_definitions(settings: Settings | None = None) -> Definitions:
    settings = settings or Settings.from_env()
    partitions = daily_partitions(settings)
    assets = [
        *cloudtrail_assets(partitions),
        *security_lake_assets(partitions),
        *learning_assets(partitions),
        *model_assets(partitions, settings.training_days),
        *alert_assets(partitions),
    ]
    return Definitions(
        assets=with_automation(assets),
        asset_checks=asset_checks(partitions),
        jobs=[daily_job],
        schedules=[daily_schedule(partitions)],
        sensors=sensors(partitions),
        resources={"proactive": ProactiveResource.from_settings(settings)},
    )


defs = build_definitions()
