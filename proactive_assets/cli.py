"""The ``proactive-assets`` console script.

Every subcommand that computes something goes through the Dagster definitions (an in-process
execution of the asset job, recorded in the Dagster instance), so what the CLI does is exactly
what ``dagster dev`` shows and what sensors and schedules run.
"""

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TextIO

from proactive_assets.config import Settings

# The console shows warnings (alerts, quarantined objects, skips); everything is in the instance's event log.
QUIET = {"loggers": {"console": {"config": {"log_level": os.environ.get("PROACTIVE_LOG_LEVEL", "WARNING")}}}}


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day as YYYY-MM-DD, got {text!r}") from None


def _days(start: date, end: date) -> list[date]:
    if end < start:
        raise SystemExit(f"--end {end} is before --start {start}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _instance(settings: Settings):  # -> DagsterInstance (import kept lazy: it is slow)
    from dagster import DagsterInstance

    if not os.environ.get("DAGSTER_HOME"):
        home = Path(settings.home) / "dagster"
        home.mkdir(parents=True, exist_ok=True)
        config = home / "dagster.yaml"
        if not config.exists():
            config.write_text("telemetry:\n  enabled: false\n")
        os.environ["DAGSTER_HOME"] = str(home)
    return DagsterInstance.get()


def _summary(result) -> str:
    """One line per day: the headline number of each asset materialised."""
    headline = {
        "raw_cloudtrail": "objects",
        "cloudtrail_events": "events",
        "learning_set": "pairs",
        "security_lake_activity": "events",
        "training_set": "rows",
        "ip_insights_model": "validation_auc",
        "daily_insights": "pairs_scored",
        "alerts": "alerts",
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
    instance = _instance(settings)
    ok = True
    for day in days:
        result = job.execute_in_process(
            partition_key=day.isoformat(), instance=instance, raise_on_error=False, run_config=QUIET
        )
        status = "ok" if result.success else "FAILED"
        print(f"{day} {status}: {_summary(result)}", file=out, flush=True)
        if not result.success:
            ok = False
            for event in result.all_events:
                if event.is_step_failure:
                    error = event.step_failure_data.error
                    print(f"  {event.step_key}: {error.message.strip() if error else 'failed'}", file=out)
    return ok


def _print_rows(settings: Settings, asset: str, day: date) -> int:
    from proactive_assets.core.storage import open_store
    from proactive_assets.core.warehouse import Warehouse

    warehouse = Warehouse(open_store(settings.warehouse))
    if not warehouse.has(asset, day):
        print(
            f"no {asset} for {day} in {settings.warehouse}: run `proactive-assets run --start {day} --end {day}`",
            file=sys.stderr,
        )
        return 1
    for row in warehouse.read_table(asset, day).to_pylist():
        clean = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        print(json.dumps(clean, default=_json_default))
    return 0


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def cmd_sample(args: argparse.Namespace) -> int:
    from proactive_assets.samples.cloudtrail import generate_sample

    start = args.start or (datetime.now(UTC).date() - timedelta(days=args.days))
    summary = generate_sample(Path(args.out_dir), start=start, days=args.days, seed=args.seed)
    print(f"wrote {summary} to {args.out_dir}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    return 0 if run_days(settings, _days(args.start, args.end)) else 1


def cmd_insights(args: argparse.Namespace) -> int:
    return _print_rows(Settings.from_env(), "daily_insights", args.day)


def cmd_alerts(args: argparse.Namespace) -> int:
    return _print_rows(Settings.from_env(), "alerts", args.day)


def cmd_demo(args: argparse.Namespace) -> int:
    from proactive_assets.demo import run_demo

    return run_demo(days=args.days, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="proactive-assets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sample = sub.add_parser("sample", help="write realistic synthetic CloudTrail in the bucket layout")
    sample.add_argument("out_dir")
    sample.add_argument("--start", type=_day, default=None, help="first day (default: DAYS days ago)")
    sample.add_argument("--days", type=int, default=21)
    sample.add_argument("--seed", type=int, default=7)
    sample.set_defaults(func=cmd_sample)

    run = sub.add_parser("run", help="materialise every asset for the days START..END")
    run.add_argument("--start", type=_day, required=True)
    run.add_argument("--end", type=_day, required=True)
    run.set_defaults(func=cmd_run)

    for name, func, what in (("insights", cmd_insights, "scored pairs"), ("alerts", cmd_alerts, "alerts")):
        cmd = sub.add_parser(name, help=f"print a day's {what} as JSON lines")
        cmd.add_argument("--day", type=_day, required=True)
        cmd.set_defaults(func=func)

    demo = sub.add_parser("demo", help="sample data, a run over it, the alerts, precision and recall")
    demo.add_argument("--days", type=int, default=21)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
