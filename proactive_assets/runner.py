"""Materialise every asset for a range of days, in-process through the Dagster definitions.

What the CLI and the demo run: an in-process execution of the asset job, recorded in the Dagster
instance, so it is exactly what ``dagster dev`` shows and what sensors and schedules run.
"""

import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from proactive_assets.config import Settings
from proactive_assets.defs import tables


def instance(settings: Settings) -> Any:  # a DagsterInstance (import kept lazy: it is slow)
    """The Dagster instance in ``DAGSTER_HOME`` (default ``$PROACTIVE_HOME/dagster``), telemetry off."""
    from dagster import DagsterInstance

    home = Path(settings.dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    return DagsterInstance.from_config(str(home))


def summary(result: Any) -> str:
    """One line per day: the headline number of each asset materialised."""
    headline = {
        tables.RAW_CLOUDTRAIL: "objects",
        tables.CLOUDTRAIL_EVENTS: "events",
        tables.LEARNING_SET: "pairs",
        tables.SECURITY_LAKE_ACTIVITY: "events",
        tables.TRAINING_SET: "rows",
        tables.IP_INSIGHTS_MODEL: "validation_auc",
        tables.DAILY_INSIGHTS: "pairs_scored",
        tables.ALERTS: "alerts",
    }
    shown: dict[str, str] = {}
    checks: set[str] = set()
    for event in result.all_events:
        step = event.step_key
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            name = mat.asset_key.to_user_string()
            value = mat.metadata.get(headline.get(name, ""))
            value = getattr(value, "value", value)
            shown[name] = f"{name}={value:.3f}" if isinstance(value, float) else f"{name}={value}"
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            checks.add(evaluation.check_name)
            if not evaluation.passed:
                shown[f"check:{evaluation.check_name}"] = f"check {evaluation.check_name} FAILED"
        elif step and event.is_step_skipped:
            shown[step] = f"{step}: skipped"
        elif step and event.is_step_success and step not in shown and not any(step.endswith(c) for c in checks):
            shown[step] = f"{step}: skipped (see its log)"
        elif step and event.is_step_failure:
            shown[step] = f"{step}: FAILED"
    parts = list(shown.values())
    return ", ".join(parts)


def run_days(settings: Settings, days: Sequence[date], out: TextIO | None = None) -> bool:
    """Materialise every asset for each day, in order; True when all days succeeded."""
    out = out or sys.stdout
    from proactive_assets.defs.definitions import build_definitions

    defs = build_definitions(settings)
    job = defs.resolve_implicit_global_asset_job_def()
    dagster_instance = instance(settings)
    ok = True
    for day in days:
        result = job.execute_in_process(
            partition_key=day.isoformat(),
            instance=dagster_instance,
            raise_on_error=False,
            run_config=_console(settings),
        )
        status = "ok" if result.success else "FAILED"
        print(f"{day} {status}: {summary(result)}", file=out, flush=True)
        if not result.success:
            ok = False
            for event in result.all_events:
                if event.is_step_failure:
                    error = event.step_failure_data.error
                    print(f"  {event.step_key}: {error.message.strip() if error else 'failed'}", file=out)
    return ok


def _console(settings: Settings) -> dict[str, Any]:
    """The console shows warnings (alerts, quarantined objects, skips); everything is in the event log."""
    return {"loggers": {"console": {"config": {"log_level": settings.log_level}}}}
