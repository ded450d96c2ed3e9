"""Detection quality on ``proactive-assets sample`` data, and the threshold sweep behind INSIGHT_THRESHOLD.

    python -m benchmarks.sample_quality [--days 21] [--seed 7] [--home DIR]

Runs every asset for every day through the Dagster definitions (as the demo does), then reports
the AUC of suspicious pairs against every other scored pair, and precision/recall at a range of
thresholds, so the default threshold in the README is a measured choice. With ``--home`` pointing
at an existing demo home (e.g. ``.proactive``) it reuses that run's tables.
"""

import argparse
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from proactive_assets.core.evaluation import evaluate, load_ground_truth

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--home", default=None, help="reuse a PROACTIVE_HOME that already ran the demo")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        home = Path(args.home) if args.home else Path(tmp) / "home"
        os.environ["PROACTIVE_HOME"] = str(home)
        os.environ.pop("PROACTIVE_CLOUDTRAIL_URI", None)
        os.environ.pop("PROACTIVE_WAREHOUSE", None)
        os.environ.setdefault("DAGSTER_HOME", str(home / "dagster"))
        Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)

        from proactive_assets.config import Settings
        from proactive_assets.core.storage import open_store
        from proactive_assets.core.warehouse import Warehouse
        from proactive_assets.demo import DEMO_START, _collect

        settings = Settings.from_env()
        days = [DEMO_START + timedelta(days=i) for i in range(args.days)]
        started = time.perf_counter()
        if not args.home:
            from proactive_assets.cli import run_days
            from proactive_assets.samples.cloudtrail import generate_sample

            generate_sample(Path(settings.cloudtrail_uri), start=DEMO_START, days=args.days, seed=args.seed)
            with open(os.devnull, "w") as quiet:
                run_days(settings, days, out=quiet)
        elapsed = time.perf_counter() - started
        warehouse = Warehouse(open_store(settings.warehouse))
        insights = _collect(warehouse, "daily_insights", days)
        suspicious, benign = load_ground_truth(Path(settings.cloudtrail_uri) / "ground_truth.json")

        print(f"sample: {args.days} days, seed {args.seed}; pipeline {elapsed:.0f}s; {len(insights)} scored pairs")
        base = evaluate(insights, insights.iloc[0:0], suspicious, benign)
        print(f"AUC (suspicious vs all other scored pairs): {base.auc:.3f}" if base.auc is not None else "AUC n/a")
        print(f"{'threshold':>9} {'alerts':>6} {'TP':>4} {'precision':>9} {'recall':>6} {'benign alerted':>14}")
        for threshold in THRESHOLDS:
            alerts = insights[insights["insight"] >= threshold]
            result = evaluate(insights, alerts, suspicious, benign)
            print(
                f"{threshold:>9.2f} {result.alerts:>6} {result.true_positives:>4} {result.precision:>9.3f} "
                f"{result.recall:>6.3f} {result.benign_novelties_alerted:>7}/{result.benign_novelties_scored}"
            )


if __name__ == "__main__":
    main()
