"""Detection quality of the local IP Insights model on ``proactive-assets sample`` data, without Dagster.

    python -m benchmarks.sample_detection [--seed 7] [--days 21] [--sample-dir DIR] [--set name=value ...]

The demo's data are small: 52 identities and about 45 (entity, ip) pairs a day, so a 14-day
training window holds 100-600 rows, three orders of magnitude less than the tutorial-style
benchmark (``benchmarks.detection``). This benchmark does what the pipeline does for every day
D with enough history, in one process: train model D on the learning sets of the ``--window``
days before D (rows (entity, ip, event_count), one per pair and day, as ``training_set`` holds
them), score day D's pairs, and compare with ``ground_truth.json``. It prints, per day, the
validation AUC (the blocking check's figure, floor 0.8), the insight of the attacks and of the
benign novelties and the highest insight of any other pair; then the ground-truth AUC and
alerts, true positives, precision, recall and benign novelties alerted per threshold, and the
non-attack pairs that score highest (what an analyst would look at first).

The sample is written once to ``--sample-dir`` (default: a folder per seed and length under the
system temporary directory) and reused while its ``ground_truth.json`` matches. The learning
sets come from the same parsing code as the pipeline's (``cloudtrail``, ``pairs``), so the rows
are the ones the assets would train on. ``benchmarks.realistic_detection`` measures the whole
pipeline end to end, through Dagster, on the realistic scenario.
"""

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from benchmarks.detection import _parse_overrides
from proactive_assets.core import pairs
from proactive_assets.core.model import IPInsightsParams, roc_auc, train_ip_insights
from proactive_assets.core.sources import cloudtrail
from proactive_assets.core.storage import LocalStore
from proactive_assets.samples.cloudtrail import generate_sample

START = date(2024, 6, 1)  # the demo's start day (proactive_assets.demo.DEMO_START)
THRESHOLDS = (0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99)
VAL_AUC_FLOOR = 0.8  # proactive_assets.defs.assets.model.AUC_FLOOR


@dataclass
class Sample:
    days: list[date]
    learning_sets: dict[date, pa.Table]
    suspicious: set[tuple[str, str, str]]
    benign: set[tuple[str, str, str]]


def load_sample(root: Path, seed: int, days: int, start: date = START) -> Sample:
    """Generate the sample into ``root`` unless it is already there, then build every day's learning set."""
    truth_path = root / "ground_truth.json"
    truth = json.loads(truth_path.read_text()) if truth_path.exists() else {}
    if (truth.get("seed"), truth.get("start"), truth.get("days")) != (seed, start.isoformat(), days):
        print(f"writing the sample (seed {seed}, {days} days) to {root} ...", flush=True)
        generate_sample(root, start=start, days=days, seed=seed)
        truth = json.loads(truth_path.read_text())
    store = LocalStore(root)
    all_days = [start + timedelta(days=i) for i in range(days)]
    sets = {}
    for d in all_days:
        objects = cloudtrail.list_day(store, d).objects
        events = [batch.events for batch in cloudtrail.read(store, objects)]
        sets[d], _ = pairs.build_learning_set(pa.concat_tables(events))

    def keys(entries: list[dict]) -> set[tuple[str, str, str]]:
        return {(e["day"], e["entity"], e["source_ip"]) for e in entries}

    return Sample(all_days, sets, keys(truth["suspicious"]), keys(truth["benign_novelties"]))


@dataclass
class DayResult:
    day: date
    training_rows: int
    validation_auc: float
    seconds: float
    entities: list[str]
    ips: list[str]
    insight: np.ndarray
    entity_known: np.ndarray
    is_attack: np.ndarray
    is_benign: np.ndarray


def run(sample: Sample, params: IPInsightsParams, window: int = 14, min_days: int = 3) -> list[DayResult]:
    """Train model D on the ``window`` days before D and score D, for every D with ``min_days`` of history."""
    results = []
    for i in range(min_days, len(sample.days)):
        d = sample.days[i]
        train = pa.concat_tables([sample.learning_sets[x] for x in sample.days[max(0, i - window) : i]])
        started = time.perf_counter()
        model = train_ip_insights(
            train.column("entity").to_pylist(),
            train.column("source_ip").to_pylist(),
            train.column("event_count").to_numpy(),
            params,
        )
        seconds = time.perf_counter() - started
        today = sample.learning_sets[d]
        entities = today.column("entity").to_pylist()
        ips = today.column("source_ip").to_pylist()
        scored = model.score(entities, ips)
        keys = [(d.isoformat(), e, ip) for e, ip in zip(entities, ips, strict=True)]
        results.append(
            DayResult(
                day=d,
                training_rows=train.num_rows,
                validation_auc=float(model.metadata["validation_auc"]),
                seconds=seconds,
                entities=entities,
                ips=ips,
                insight=np.asarray(scored.insight, dtype=np.float64),
                entity_known=np.asarray(scored.entity_known),
                is_attack=np.array([k in sample.suspicious for k in keys], dtype=bool),
                is_benign=np.array([k in sample.benign for k in keys], dtype=bool),
            )
        )
    return results


def summarise(results: list[DayResult], thresholds: tuple[float, ...] = THRESHOLDS) -> dict:
    """Ground-truth AUC, per-threshold alert counts and the validation AUC range."""
    insight = np.concatenate([r.insight for r in results])
    attack = np.concatenate([r.is_attack for r in results])
    benign = np.concatenate([r.is_benign for r in results])
    val = np.array([r.validation_auc for r in results])
    per_threshold = {}
    for thr in thresholds:
        alert = insight >= thr
        tp = int((alert & attack).sum())
        per_threshold[thr] = {
            "alerts": int(alert.sum()),
            "tp": tp,
            "precision": tp / max(int(alert.sum()), 1),
            "recall": tp / max(int(attack.sum()), 1),
            "benign_alerted": int((alert & benign).sum()),
        }
    return {
        "days": len(results),
        "pairs": len(insight),
        "attacks": int(attack.sum()),
        "benign_novelties": int(benign.sum()),
        "auc": roc_auc(insight[attack], insight[~attack]),
        "validation_auc_min": float(val.min()),
        "validation_auc_median": float(np.median(val)),
        "validation_auc_max": float(val.max()),
        "days_below_floor": int((val < VAL_AUC_FLOOR).sum()),
        "attack_insight_min": float(insight[attack].min()) if attack.any() else None,
        "benign_insight_max": float(insight[benign].max()) if benign.any() else None,
        "max_training_seconds": max(r.seconds for r in results),
        "thresholds": per_threshold,
    }


def _fmt(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7, help="sample seed (the demo uses 7)")
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--window", type=int, default=14, help="training days before D (PROACTIVE_TRAINING_DAYS)")
    parser.add_argument("--min-days", type=int, default=3, help="history needed to score (PROACTIVE_MIN_TRAINING_DAYS)")
    parser.add_argument("--sample-dir", help="where the sample is (or is written); default under the temp dir")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a parameter")
    parser.add_argument("--top", type=int, default=8, help="highest-scoring non-attack pairs to list")
    parser.add_argument("--json", help="also write the summary as JSON to this file")
    args = parser.parse_args(argv)
    params = IPInsightsParams(**_parse_overrides(args.set))
    root = Path(args.sample_dir or Path(tempfile.gettempdir()) / f"proactive-sample-seed{args.seed}-days{args.days}")

    t0 = time.perf_counter()
    sample = load_sample(root, args.seed, args.days)
    print(f"sample {root}: {args.days} days, seed {args.seed}; learning sets built in {time.perf_counter() - t0:.1f}s")
    results = run(sample, params, args.window, args.min_days)
    for r in results:
        other = ~r.is_attack
        top = int(np.argmax(np.where(other, r.insight, -1)))
        print(
            f"{r.day} rows {r.training_rows:4d} val AUC {r.validation_auc:.3f} train {r.seconds:.2f}s "
            f"attacks {_fmt(r.insight[r.is_attack])} benign {_fmt(r.insight[r.is_benign])} "
            f"max other {r.insight[top]:.3f}"
        )
    summary = summarise(results)
    print()
    print(
        f"validation AUC: min {summary['validation_auc_min']:.3f}, median {summary['validation_auc_median']:.3f}, "
        f"max {summary['validation_auc_max']:.3f}; {summary['days_below_floor']} of {summary['days']} days "
        f"below the {VAL_AUC_FLOOR} floor; slowest training {summary['max_training_seconds']:.2f}s"
    )
    print(
        f"ground-truth AUC (attacks vs every other scored pair): {summary['auc']:.3f} "
        f"({summary['attacks']} attacks, {summary['benign_novelties']} benign novelties, {summary['pairs']} pairs)"
    )
    print(f"{'threshold':>9} {'alerts':>6} {'TP':>4} {'precision':>9} {'recall':>6} {'benign alerted':>14}")
    for thr, m in summary["thresholds"].items():
        print(
            f"{thr:>9.2f} {m['alerts']:>6} {m['tp']:>4} {m['precision']:>9.3f} {m['recall']:>6.3f} "
            f"{m['benign_alerted']:>7}/{summary['benign_novelties']}"
        )
    if args.top:
        rows = [
            (r.insight[i], r.day, r.entities[i], r.ips[i], bool(r.entity_known[i]), bool(r.is_benign[i]))
            for r in results
            for i in np.flatnonzero(~r.is_attack)
        ]
        rows.sort(key=lambda row: -row[0])
        print(f"highest-scoring non-attack pairs (of {len(rows)}):")
        for insight, d, entity, ip, known, is_benign in rows[: args.top]:
            note = ("" if known else " (unknown entity)") + (" (benign novelty)" if is_benign else "")
            print(f"  {insight:.3f} {d} {ip:<40} {entity}{note}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({**summary, "thresholds": {str(k): v for k, v in summary["thresholds"].items()}}, fh, indent=2)
    return summary


if __name__ == "__main__":
    main()
