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

from proactive_assets.config import Settings
from proactive_assets.defs import tables


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day as YYYY-MM-DD, got {text!r}") from None


def _days(start: date, end: date) -> list[date]:
    if end < start:
        raise SystemExit(f"--end {end} is before --start {start}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


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
    from proactive_assets.runner import run_days

    settings = Settings.from_env()
    return 0 if run_days(settings, _days(args.start, args.end)) else 1


def cmd_insights(args: argparse.Namespace) -> int:
    return _print_rows(Settings.from_env(), tables.DAILY_INSIGHTS, args.day)


def cmd_alerts(args: argparse.Namespace) -> int:
    return _print_rows(Settings.from_env(), tables.ALERTS, args.day)


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
