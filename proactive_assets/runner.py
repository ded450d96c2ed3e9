"""Materialise every asset for a range of days, in-process through the Dagster definitions.

What the CLI and the demo run: an in-process execution of the asset job, recorded in the Dagster
instance, so it is exactly what ``dagster dev`` shows and what sensors and schedules run. Before
the first requested day, the days of its training window that were never ingested (or whose
ingest is stale) are ingested first, so that a fresh home scores the day it was asked for.
"""

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from proactive_assets.config import Settings
from proactive_assets.core.storage import open_store
from proactive_assets.core.training import window_days
from proactive_assets.core.warehouse import Warehouse
from proactive_assets.defs import tables
from proactive_assets.defs.partitions import day_has_logs
from proactive_assets.defs.skips import find_skip


class _QuietUngatedCheck(logging.Filter):
    """Drops Dagster's notice that the blocking AUC check "emitted no result" on a skipped day.

    It comes whenever a model step skips a day; the missing model output already stops scoring
    (the CLI runs the whole job, checks included), so in the CLI's output the notice only misleads.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Blocking asset check")


_UNGATED = _QuietUngatedCheck()


def instance(settings: Settings) -> Any:  # a DagsterInstance (import kept lazy: it is slow)
    """The Dagster instance in ``DAGSTER_HOME`` (default ``$PROACTIVE_HOME/dagster``), telemetry off."""
    from dagster import DagsterInstance

    home = Path(settings.dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    return DagsterInstance.from_config(str(home))


@dataclass
class HistoryPlan:
    """The days before the requested ones whose ingest a training window needs, and why each is due."""

    window: tuple[date, date] | None = None
    missing: list[date] = field(default_factory=list)
    stale: list[date] = field(default_factory=list)
    without_logs: int = 0
    before_start: int = 0

    @property
    def days(self) -> list[date]:
        return sorted(self.missing + self.stale)

    def line(self, first_partition: date) -> str | None:
        """The one line the CLI prints about it (None when there is nothing to say)."""
        if self.window is None:
            return None
        window = f"the training window {self.window[0]}..{self.window[1]}"
        early = (
            f"; {self.before_start} day(s) of it are before the first day partition {first_partition} "
            "(PROACTIVE_START_DATE)"
            if self.before_start
            else ""
        )
        if not self.days:
            return f"history: nothing to ingest in {window}{early}" if early else None
        due = ", ".join(f"{n} {what}" for what, n in (("missing", len(self.missing)), ("stale", len(self.stale))) if n)
        if self.without_logs:
            due += f"; {self.without_logs} day(s) without logs left out"
        return f"history: ingesting {len(self.days)} day(s) of {window} first ({due}{early}; --no-history skips this)"


def plan_history(settings: Settings, days: Sequence[date], dagster_instance: Any, defs: Any) -> HistoryPlan:
    """Which days of the first requested day's training window (and the later days') must be ingested.

    A day is due when its ``learning_set`` is not in the warehouse while its sources have log
    objects that day (missing: one listing of the day's folders tells), or when the Dagster instance
    shows one of its ingest assets materialised with an older code version or before one of its
    parents (stale). A day without logs has nothing to learn from and is not ingested. Requested
    days are not history: they run in full, in order.
    """
    if not days:
        return HistoryPlan()
    first_partition = date.fromisoformat(settings.start_date)
    requested = set(days)
    window = sorted({d for day in days for d in window_days(day, settings.training_days)} - requested)
    if not window:
        return HistoryPlan()
    plan = HistoryPlan(window=(window[0], window[-1]))
    warehouse = Warehouse(open_store(settings.warehouse))
    for day in window:
        if day < first_partition:
            plan.before_start += 1
        elif not warehouse.has(tables.LEARNING_SET, day):
            if day_has_logs(settings, day, open_store):
                plan.missing.append(day)
            else:
                plan.without_logs += 1
        elif _stale(dagster_instance, defs, day):
            plan.stale.append(day)
    return plan


def _stale(dagster_instance: Any, defs: Any, day: date) -> bool:
    """Whether an ingest asset of ``day`` was materialised by older code or before one of its parents."""
    from dagster import AssetKey, AssetRecordsFilter

    from proactive_assets.defs.definitions import INGEST_GROUP

    graph = defs.resolve_asset_graph()
    latest: dict[AssetKey, Any] = {}
    for key in graph.asset_keys_for_group(INGEST_GROUP):
        records = dagster_instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, asset_partitions=[day.isoformat()]), limit=1
        ).records
        latest[key] = records[0] if records else None
    for key, record in latest.items():
        if record is None:
            continue
        node = graph.get(key)
        recorded = (record.asset_materialization.tags or {}).get("dagster/code_version")
        if node.code_version and recorded and recorded != node.code_version:
            return True
        for parent in node.parent_keys:
            newer = latest.get(parent)
            if newer is not None and newer.timestamp > record.timestamp:
                return True
    return False


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
    return ", ".join(shown.values())


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (say, in an object key from a bucket) escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _failures(result: Any) -> list[str]:
    lines = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            message = error.message.strip().splitlines()[0] if error and error.message.strip() else "failed"
            lines.append(f"  {event.step_key}: {printable(message)}")
    return lines


def ingest_history(settings: Settings, plan: HistoryPlan, defs: Any, dagster_instance: Any, out: TextIO) -> bool:
    """Materialise the ingest assets for the plan's days, in order; True when all succeeded."""
    from proactive_assets.defs.definitions import ingest_job

    job = defs.resolve_job_def(ingest_job.name)
    ok = True
    for day in plan.days:
        result = job.execute_in_process(
            partition_key=day.isoformat(),
            instance=dagster_instance,
            raise_on_error=False,
            run_config=_console(settings),
        )
        if not result.success:
            ok = False
            print(f"{day} ingest FAILED: {summary(result)}", file=out, flush=True)
            for line in _failures(result):
                print(line, file=out)
    return ok


def run_days(settings: Settings, days: Sequence[date], out: TextIO | None = None, history: bool = True) -> bool:
    """Materialise every asset for each day, in order; True when all days succeeded.

    With ``history`` (the default), the days of the training windows that were never ingested, or
    whose ingest is stale, are ingested first (one line says so).
    """
    out = out or sys.stdout
    from proactive_assets.defs.definitions import build_definitions

    logging.getLogger("dagster._core.execution.plan.active").addFilter(_UNGATED)  # once: filters are a set

    defs = build_definitions(settings)
    job = defs.resolve_implicit_global_asset_job_def()
    dagster_instance = instance(settings)
    ok = True
    if history:
        plan = plan_history(settings, days, dagster_instance, defs)
        line = plan.line(date.fromisoformat(settings.start_date))
        if line:
            print(line, file=out, flush=True)
        ok = ingest_history(settings, plan, defs, dagster_instance, out)
    warehouse = Warehouse(open_store(settings.warehouse))
    for day in days:
        result = job.execute_in_process(
            partition_key=day.isoformat(),
            instance=dagster_instance,
            raise_on_error=False,
            run_config=_console(settings),
        )
        status = "ok" if result.success else "FAILED"
        print(f"{day} {status}: {summary(result)}", file=out, flush=True)
        skip = find_skip(warehouse, day)
        if skip is not None and skip.run_id == result.run_id:
            print(f"  not scored: {skip.reason}", file=out, flush=True)
        if not result.success:
            ok = False
            for line in _failures(result):
                print(line, file=out)
    return ok


def _console(settings: Settings) -> dict[str, Any]:
    """The console shows warnings (alerts, quarantined objects, skips); everything is in the event log."""
    return {"loggers": {"console": {"config": {"log_level": settings.log_level}}}}
