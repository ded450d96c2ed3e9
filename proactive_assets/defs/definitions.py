"""The Dagster definitions: every asset, check, sensor and schedule, built from one ``Settings``.

``build_definitions(settings)`` honours the settings completely (partitions and the training
window's partition mapping included), so two definitions with different settings can live in one
process. ``defs`` is what ``dagster dev`` and ``dagster asset materialize`` load: the environment's.
"""

import warnings

from dagster import (
    AssetSelection,
    DailyPartitionsDefinition,
    Definitions,
    PreviewWarning,
    define_asset_job,
    in_process_executor,
)

from proactive_assets.config import Settings
from proactive_assets.core.heap import retain_freed_memory
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

INGEST_GROUP = "ingest"

#: The days of a training window need only their learning sets: the ingest group, without the model.
ingest_job = define_asset_job(
    "proactive_ingest_job",
    selection=AssetSelection.groups(INGEST_GROUP),
    executor_def=in_process_executor,
    description=(
        "The ingest assets (raw_cloudtrail, cloudtrail_events, security_lake_activity, learning_set) for one day: "
        "backfill it over D-14..D-1 before scoring D on a fresh home."
    ),
)


def build_definitions(settings: Settings | None = None) -> Definitions:
    """Every definition, for ``settings`` (default: the environment's)."""
    settings = settings or Settings.from_env()
    retain_freed_memory()  # every process that runs the assets builds them first
    with warnings.catch_warnings():
        # Asset checks on partitioned assets are a preview feature of Dagster 1.13 that the project
        # uses knowingly; its warning, once per check at every load, would bury what matters.
        warnings.simplefilter("ignore", PreviewWarning)
        return _definitions(settings)


def _security_lake(settings: Settings, partitions: DailyPartitionsDefinition) -> tuple[list, dict]:
    """``security_lake_activity`` as ``PROACTIVE_SECURITY_LAKE_READER`` says, and the resources it needs."""
    if settings.security_lake_reader != "athena":
        return security_lake_assets(partitions), {}
    from dagster_aws.athena import AthenaClientResource

    from proactive_assets.defs.athena import make_security_lake_athena_asset

    region = settings.lake_region or "us-east-1"  # preflight refuses a run without one
    asset = make_security_lake_athena_asset(partitions, region, settings.athena_output_uri or "")
    return [asset], {"athena": AthenaClientResource(workgroup=settings.athena_workgroup)}


def _definitions(settings: Settings) -> Definitions:
    partitions = daily_partitions(settings)
    lake_assets, lake_resources = _security_lake(settings, partitions)
    assets = [
        *cloudtrail_assets(partitions),
        *lake_assets,
        *learning_assets(partitions),
        *model_assets(partitions, settings.training_days),
        *alert_assets(partitions),
    ]
    return Definitions(
        assets=with_automation(assets),
        asset_checks=asset_checks(partitions),
        jobs=[daily_job, ingest_job],
        schedules=[daily_schedule(partitions)],
        sensors=sensors(partitions),
        resources={"proactive": ProactiveResource.from_settings(settings), **lake_resources},
    )


defs = build_definitions()
