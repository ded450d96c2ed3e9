"""The ``proactive-assets`` console script: suspicious identity activity in AWS logs, as Dagster assets.

Every subcommand that computes something goes through the Dagster definitions (an in-process
execution of the asset job, recorded in the Dagster instance), so what the CLI does is exactly
what ``dagster dev`` shows and what sensors and schedules run. An error is one line naming the
cause and one naming the fix; ``--verbose`` adds the traceback.
"""

import argparse
import json
import math
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.exceptions import NoCredentialsError

from proactive_assets.config import Settings, SettingsProblem, preflight
from proactive_assets.core.storage import SourceUnavailable
from proactive_assets.defs import tables

if TYPE_CHECKING:
    from proactive_assets.core.warehouse import Warehouse

EPILOG = """\
settings come from environment variables (PROACTIVE_HOME, PROACTIVE_CLOUDTRAIL_URI, ...; the README's
Configuration table lists them all). Errors print the cause and the fix; --verbose adds the traceback."""


class CliError(Exception):
    """A problem a person can fix: ``cause`` and ``fix`` are printed, one line each."""

    def __init__(self, cause: str, fix: str) -> None:
        super().__init__(cause)
        self.cause = cause
        self.fix = fix


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day as YYYY-MM-DD, got {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ValueError as exc:
        raise CliError(
            f"unreadable setting: {exc}",
            "correct the variable or unset it for its default (the README's Configuration table lists each one)",
        ) from None


def _days(start: date, end: date) -> list[date]:
    if end < start:
        raise CliError(f"--end {end} is before --start {start}", "give the earlier day to --start")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _check_partitions(settings: Settings, start: date, end: date, history: bool) -> None:
    """Every requested day must be a day partition: from PROACTIVE_START_DATE to today (UTC)."""
    first = date.fromisoformat(settings.start_date)
    if start < first:
        earliest = start - timedelta(days=settings.training_days) if history else start
        raise CliError(
            f"{start} is before the first day partition {first} (PROACTIVE_START_DATE)",
            f"set PROACTIVE_START_DATE={earliest}"
            + (" (the first day of its training window)" if history else "")
            + " or earlier, and run again",
        )
    today = datetime.now(UTC).date()
    if end > today:
        raise CliError(
            f"{end} is in the future: the last day partition is today, {today} (UTC)", "choose an earlier --end"
        )


def _why_missing(settings: Settings, asset: str, day: date) -> list[str]:
    """Why ``asset`` has no table for ``day``, from what the runs recorded: two lines, cause and fix."""
    from proactive_assets.defs.skips import find_skip

    run = f"`proactive-assets run --start {day} --end {day}`"
    first = date.fromisoformat(settings.start_date)
    if day < first:
        return [
            f"{day} is before the first day partition {first} (PROACTIVE_START_DATE): it is never scored",
            f"fix: set PROACTIVE_START_DATE={day - timedelta(days=settings.training_days)} or earlier, then {run}",
        ]
    warehouse = _warehouse(settings)
    scored = warehouse.has(tables.DAILY_INSIGHTS, day)
    if not scored:
        skip = find_skip(warehouse, day)
        if skip is not None:
            return skip.lines()
        refused = _refused_model(warehouse, day)
        if refused:
            return refused
    if not warehouse.has(tables.LEARNING_SET, day):
        return [f"no {asset} for {day} in {settings.warehouse}: the day was never ingested", f"fix: {run}"]
    step = "scoring (daily_insights)" if not scored else "the alerts step"
    return [
        f"no {asset} for {day} in {settings.warehouse}: {step} did not finish for that day",
        f"fix: {run}, and read the lines it prints for {day}",
    ]


def _refused_model(warehouse: "Warehouse", day: date) -> list[str]:
    """The blocking AUC check's verdict, when it is what stopped scoring ``day``."""
    from proactive_assets.defs.assets.model import AUC_FLOOR
    from proactive_assets.defs.model_store import load_model_metadata

    try:
        meta = load_model_metadata(warehouse, day)
    except FileNotFoundError:
        return []
    auc = meta.get("validation_auc")
    if auc is None or float(auc) >= AUC_FLOOR:
        return []
    return [
        f"{day} was not scored: model {meta.get('version')} has validation AUC {float(auc):.3f}, below the "
        f"floor {AUC_FLOOR} (the blocking validation_auc_floor check)",
        "fix: a longer training window (PROACTIVE_TRAINING_DAYS) usually helps; the ip_insights_model "
        "partition in the UI shows the ROC curve",
    ]


def _warehouse(settings: Settings) -> "Warehouse":
    from proactive_assets.core.storage import open_store
    from proactive_assets.core.warehouse import Warehouse

    return Warehouse(open_store(settings.warehouse))


#: Rows turned into JSON at a time: a million-pair day is printed without a million dicts at once.
PRINT_BATCH_ROWS = 10_000


def _print_rows(settings: Settings, asset: str, day: date, limit: int | None = None) -> int:
    warehouse = _warehouse(settings)
    if not warehouse.has(asset, day):
        for line in _why_missing(settings, asset, day):
            print(line, file=sys.stderr)
        return 1
    table = warehouse.read_table(asset, day)
    if asset == tables.DAILY_INSIGHTS:
        from proactive_assets.core.scoring import riskiest_first

        table = riskiest_first(table, limit)
    elif limit is not None:
        table = table.slice(0, limit)
    for batch in table.to_batches(max_chunksize=PRINT_BATCH_ROWS):
        for row in batch.to_pylist():
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


SCENARIOS = ("realistic", "classic")
SCENARIO_HELP = (
    "realistic: an organisation's everyday address churn (offices, a VPN that moves, home ISPs, mobile "
    "carriers, IPv6 privacy addresses, CI runner pools, Lambda) with attacks hidden in it; classic: the "
    "small first sample (52 identities, a few incidents) (default: realistic)"
)


def cmd_sample(args: argparse.Namespace) -> int:
    from proactive_assets.samples import generate

    start = args.start or (datetime.now(UTC).date() - timedelta(days=args.days))
    summary = generate(args.scenario, Path(args.out_dir), start=start, days=args.days, seed=args.seed)
    print(f"wrote {summary} to {args.out_dir}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from proactive_assets.runner import run_days

    settings = _settings()
    days = _days(args.start, args.end)
    _check_partitions(settings, args.start, args.end, history=not args.no_history)
    for note in preflight(settings):
        print(f"note: {note}", file=sys.stderr)
    return 0 if run_days(settings, days, history=not args.no_history) else 1


def cmd_insights(args: argparse.Namespace) -> int:
    return _print_rows(_settings(), tables.DAILY_INSIGHTS, args.day, args.limit)


def cmd_alerts(args: argparse.Namespace) -> int:
    return _print_rows(_settings(), tables.ALERTS, args.day, args.limit)


def cmd_demo(args: argparse.Namespace) -> int:
    from proactive_assets.demo import run_demo

    return run_demo(_settings(), days=args.days, seed=args.seed, scenario=args.scenario)


def build_parser() -> argparse.ArgumentParser:
    """Every command and option, each with its help text."""
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="on an error, print the full traceback"
    )
    parser = argparse.ArgumentParser(
        prog="proactive-assets",
        description="Find suspicious identity activity in AWS CloudTrail and Security Lake logs, as "
        "day-partitioned Dagster assets.",
        epilog=EPILOG,
        parents=[verbose],
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to do (each has its own --help)"
    )

    sample = sub.add_parser(
        "sample",
        parents=[verbose],
        help="write realistic synthetic CloudTrail in the bucket layout",
        description="Write realistic synthetic CloudTrail (with injected suspicious activity and a "
        "ground_truth.json) laid out like a CloudTrail bucket.",
    )
    sample.add_argument("out_dir", metavar="OUT_DIR", help="folder to write AWSLogs/... and ground_truth.json into")
    sample.add_argument(
        "--start", type=_day, default=None, help="first day, YYYY-MM-DD (default: DAYS days before today)"
    )
    sample.add_argument("--days", type=_positive, default=28, help="number of days (default: 28)")
    sample.add_argument(
        "--seed", type=int, default=11, help="random seed: the same seed writes the same logs (default: 11)"
    )
    sample.add_argument("--scenario", choices=SCENARIOS, default="realistic", help=SCENARIO_HELP)
    sample.set_defaults(func=cmd_sample)

    run = sub.add_parser(
        "run",
        parents=[verbose],
        help="materialise every asset for the days START..END",
        description="Materialise every asset for each day START..END, in order, through the Dagster "
        "definitions. The days of the first day's training window that were never ingested are "
        "ingested first, so a fresh home scores the day it is asked for.",
    )
    run.add_argument("--start", type=_day, required=True, help="first day to score, YYYY-MM-DD")
    run.add_argument("--end", type=_day, required=True, help="last day to score, YYYY-MM-DD (inclusive)")
    run.add_argument(
        "--no-history",
        action="store_true",
        help="do not ingest the training window's missing or stale days first (a day without enough "
        "history is then skipped, with the reason)",
    )
    run.set_defaults(func=cmd_run)

    for name, func, what in (
        ("insights", cmd_insights, "scored pairs, riskiest first,"),
        ("alerts", cmd_alerts, "alerts"),
    ):
        cmd = sub.add_parser(
            name,
            parents=[verbose],
            help=f"print a day's {what} as JSON lines",
            description=f"Print a day's {what} from the warehouse as JSON lines; for a day that was not "
            "scored, say why (from what its run recorded).",
        )
        cmd.add_argument("--day", type=_day, required=True, help="the day, YYYY-MM-DD")
        cmd.add_argument("--limit", type=_positive, default=None, help=f"print only the first N {what.rstrip(',')}")
        cmd.set_defaults(func=func)

    demo = sub.add_parser(
        "demo",
        parents=[verbose],
        help="sample data, a run over it, the alerts, precision and recall",
        description="Everything on sample data in a clean demo home ($PROACTIVE_HOME/demo, emptied first): "
        "synthetic CloudTrail, a run over every day, the alerts, precision and recall against the truth.",
    )
    demo.add_argument("--days", type=_positive, default=28, help="days of sample data (default: 28)")
    demo.add_argument("--seed", type=int, default=11, help="sample seed (default: 11, the README's figures)")
    demo.add_argument("--scenario", choices=SCENARIOS, default="realistic", help=SCENARIO_HELP)
    demo.set_defaults(func=cmd_demo)
    return parser


def _fail(verbose: bool, cause: str, fix: str) -> int:
    if verbose:
        traceback.print_exc()
    print(f"error: {cause}", file=sys.stderr)
    print(f"fix: {fix}", file=sys.stderr)
    return 2


def _drop_stdout() -> None:
    """Send what is left of stdout nowhere: the interpreter's last flush would hit the closed pipe
    again and print a warning."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # not a real file (tests capture it; io.UnsupportedOperation is both)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 a day failed or has no rows, 2 an error)."""
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    args = build_parser().parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    with warnings.catch_warnings():
        if not verbose:
            _quiet_warnings()
        try:
            return int(args.func(args))
        except (CliError, SettingsProblem) as exc:
            return _fail(verbose, exc.cause, exc.fix)
        except SourceUnavailable as exc:
            return _fail(verbose, str(exc), "check the location's setting and the AWS credentials")
        except NoCredentialsError:
            return _fail(
                verbose,
                "no AWS credentials for an s3:// location (PROACTIVE_WAREHOUSE, PROACTIVE_CLOUDTRAIL_URI...)",
                "set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            )
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # the reader stopped reading (``| head``): nothing is wrong
            _drop_stdout()
            return 141  # as a process that SIGPIPE ended (128 + 13)
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            return _fail(verbose, f"{exc.strerror or exc}{where}", "check that path, its folders and permissions")
        except Exception as exc:  # a person gets two lines; --verbose gives the trace
            first = (str(exc).strip().splitlines() or [""])[0]
            fix = (
                "the trace above shows where; report it if it looks like a bug"
                if verbose
                else ("run again with --verbose for the full trace")
            )
            return _fail(verbose, f"{type(exc).__name__}: {first}", fix)


def _quiet_warnings() -> None:
    """Library warnings meant for developers (Dagster previews, deprecations) are not a user's business."""
    from dagster import BetaWarning, PreviewWarning

    for category in (PreviewWarning, BetaWarning, DeprecationWarning, FutureWarning):
        warnings.simplefilter("ignore", category)


if __name__ == "__main__":
    sys.exit(main())
