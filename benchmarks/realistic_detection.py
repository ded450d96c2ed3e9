"""Detection on the realistic scenario, through the real pipeline, against a first-seen-prefix rule.

    python -m benchmarks.realistic_detection [--seeds 11 12 13] [--days 28] [--scale 1.0] [--jobs 2] [--json OUT]

For each seed: generate ``proactive_assets.samples.realistic`` into a temporary folder, run every
asset for every day exactly as the CLI does (``proactive_assets.runner.run_days``: in-process
Dagster, default settings but for the home, the CloudTrail folder and the start day), then read
``daily_insights`` and ``alerts`` of the test days (after the scenario's history days) from the
warehouse and compare with ``ground_truth.json``.

Reported per seed and pooled over seeds: per category (attack, benign novel, and ``known`` for
pairs the identity used before) the count, median insight and share alerted; the AUC of attacks
against every other scored pair; the AUC of the first-seen-prefix rule on the same pairs, computed
from the learning sets of each day's training window (0: address seen for this identity, 1: its
/24 (IPv6 /64) seen, 2: its /16 (/48) seen, 3: never-seen network; ties count half, as a rank AUC
does), and the model's margin over it; recall and false alerts per 100 identity-days at the
default threshold (what the ``alerts`` table holds; travel alerts counted apart), and every
benign alert, travel included, per 100 identity-days (what the alert budget counts), beside the
spread of the test days' models' default thresholds; the alerts the
ranking needs to reach 80% recall and the false alerts per 100 identity-days that costs; and the
wall time of generating and running each seed. The targets (issue 11) are printed beside them.
"""

import argparse
import functools
import ipaddress
import json
import logging
import math
import multiprocessing
import os
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from proactive_assets.config import Settings
from proactive_assets.core.model import roc_auc
from proactive_assets.core.storage import open_store
from proactive_assets.core.warehouse import Warehouse
from proactive_assets.defs import tables
from proactive_assets.defs.model_store import MODEL_JSON, load_model_metadata

START = date(2024, 6, 3)  # a Monday
TRAVEL = "travel"
KNOWN = "known"
TARGET_AUC = 0.98
TARGET_MARGIN = 0.03
TARGET_RECALL = 0.85
TARGET_FALSE_PER_100 = 1.0
RANKING_RECALL = 0.8


@functools.lru_cache(maxsize=1 << 18)
def prefixes(ip: str) -> tuple[str, str]:
    """The rule's two network levels of an address: /24 and /16 (IPv6: /64 and /48)."""
    if ":" in ip:
        text = ipaddress.IPv6Address(ip).exploded
        return text[:19], text[:14]
    parts = ip.split(".")
    return ".".join(parts[:3]), ".".join(parts[:2])


def first_seen_rule(pairs: pd.DataFrame, window: pd.DataFrame) -> np.ndarray:
    """The rule's score of each (entity, source_ip) of ``pairs`` given the window's pairs.

    0: the identity used this address in the window; 1: its /24 (/64); 2: its /16 (/48); 3: none.
    """
    seen: dict[str, tuple[set[str], set[str], set[str]]] = {}
    for entity, ip in zip(window["entity"], window["source_ip"], strict=True):
        addresses, nets24, nets16 = seen.setdefault(entity, (set(), set(), set()))
        p24, p16 = prefixes(ip)
        addresses.add(ip)
        nets24.add(p24)
        nets16.add(p16)
    empty: tuple[set[str], set[str], set[str]] = (set(), set(), set())
    scores = np.empty(len(pairs), dtype=np.float64)
    for i, (entity, ip) in enumerate(zip(pairs["entity"], pairs["source_ip"], strict=True)):
        addresses, nets24, nets16 = seen.get(entity, empty)
        p24, p16 = prefixes(ip)
        scores[i] = 0 if ip in addresses else 1 if p24 in nets24 else 2 if p16 in nets16 else 3
    return scores


def _read(warehouse: Warehouse, asset: str, day: date, columns: list[str]) -> pd.DataFrame:
    if not warehouse.has(asset, day):
        return pd.DataFrame(columns=columns)
    return warehouse.read_table(asset, day, columns=columns).to_pandas()


def run_seed(seed: int, days: int, scale: float, workdir: Path, log: Path) -> tuple[pd.DataFrame, dict]:
    """Generate, run the pipeline; every scored test-day pair with its labels and scores, and the run's figures."""
    from proactive_assets.runner import run_days  # imports Dagster: slow, so only when running

    # quiet: Dagster's warning on the first days (no model yet, so no blocking check result) would bury the report
    logging.getLogger("dagster._core.execution.plan.active").setLevel(logging.ERROR)
    from proactive_assets.samples.realistic import generate_realistic_sample

    sample, home = workdir / "sample", workdir / "home"
    began = time.perf_counter()
    summary = generate_realistic_sample(sample, START, days=days, seed=seed, scale=scale)
    generated = time.perf_counter() - began
    # the console shows errors only (every alert is a warning there); nothing else differs from the defaults
    settings = Settings(home=str(home), cloudtrail_uri=str(sample), start_date=START.isoformat(), log_level="ERROR")
    all_days = [START + timedelta(days=i) for i in range(days)]
    began = time.perf_counter()
    with open(log, "w") as out:
        ok = run_days(settings, all_days, out=out)
    ran = time.perf_counter() - began
    if not ok:
        print(f"  seed {seed}: some days FAILED (see {log}):\n" + "".join(log.read_text().splitlines(True)[-10:]))

    truth = json.loads(summary.ground_truth.read_text())
    label: dict[tuple[str, str, str], tuple[str, str]] = {}
    for entry in truth["benign_novelties"]:
        label[(entry["day"], entry["entity"], entry["source_ip"])] = ("benign", entry["category"])
    for entry in truth["suspicious"]:
        label[(entry["day"], entry["entity"], entry["source_ip"])] = ("attack", entry["category"])
    warehouse = Warehouse(open_store(settings.warehouse))
    test_days = [date.fromisoformat(d) for d in truth["test_days"]]
    models = {
        d: load_model_metadata(warehouse, d)
        for d in test_days
        if warehouse.has_file(tables.IP_INSIGHTS_MODEL, d, MODEL_JSON)
    }
    frames = []
    for day in test_days:
        insights = _read(warehouse, "daily_insights", day, ["entity", "source_ip", "insight"])
        alerts = _read(warehouse, "alerts", day, ["entity", "source_ip"])
        window = pd.concat(
            [
                _read(warehouse, "learning_set", d, ["entity", "source_ip"])
                for d in (day - timedelta(days=k) for k in range(1, settings.training_days + 1))
            ],
            ignore_index=True,
        )
        alerted = set(zip(alerts["entity"], alerts["source_ip"], strict=True))
        frame = insights.assign(
            day=day.isoformat(),
            rule=first_seen_rule(insights, window),
            alerted=[(e, ip) in alerted for e, ip in zip(insights["entity"], insights["source_ip"], strict=True)],
            own_threshold=_own_threshold(models.get(day)),
        )
        frames.append(frame)
    scored = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    keys = list(zip(scored["day"], scored["entity"], scored["source_ip"], strict=True))
    kinds = [label.get(k, ("benign", KNOWN)) for k in keys]
    scored["kind"] = [k[0] for k in kinds]
    scored["category"] = [k[1] for k in kinds]
    scored["seed"] = seed
    test = {d.isoformat() for d in test_days}
    attacks = [e for e in truth["suspicious"] if e["day"] in test]
    info = {
        "default_thresholds": [metadata["threshold"] for metadata in models.values()],
        "attacks_injected": len(attacks),
        "identities": summary.identities,
        "events": summary.events,
        "generate_seconds": generated,
        "pipeline_seconds": ran,
        "pipeline_ok": ok,
        "missed_injections": len(truth.get("missed_attacks", [])),
    }
    return scored, info


def _own_threshold(metadata: dict | None) -> float:
    """The threshold a day's model (its ``metadata``) set from its own validation days, before
    averaging it with the models before it (``combiner.AVERAGED_MODELS``); NaN without a model."""
    if metadata is None:
        return math.nan
    budget = (metadata.get("evidence") or {}).get("budget") or {}
    return float(budget.get("own_threshold", metadata["threshold"]))


def seed_job(seed: int, days: int, scale: float, keep: Path | None) -> tuple[pd.DataFrame, dict]:
    """One seed in a temporary folder (under ``keep`` when given, and left there), quietly."""
    warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    with tempfile.TemporaryDirectory(prefix=f"bench-realistic-{seed}-") as tmp:
        workdir = keep / f"seed-{seed}" if keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        return run_seed(seed, days, scale, workdir, Path(tmp) / "run.log")


def evaluate(scored: pd.DataFrame, attacks_injected: int) -> dict:
    """Every figure of one seed (or of several pooled) from its scored pairs."""
    attack = (scored["kind"] == "attack").to_numpy()
    travel = (scored["category"] == TRAVEL).to_numpy()
    insight = scored["insight"].to_numpy(dtype=np.float64)
    rule = scored["rule"].to_numpy(dtype=np.float64)
    alerted = scored["alerted"].to_numpy(dtype=bool)
    identity_days = len(set(zip(scored["seed"], scored["day"], scored["entity"], strict=True)))
    per100 = 100.0 / identity_days if identity_days else float("nan")
    auc = roc_auc(insight[attack], insight[~attack])
    rule_auc = roc_auc(rule[attack], rule[~attack])
    result: dict = {
        "identity_days": identity_days,
        "pairs": len(scored),
        "attacks_injected": attacks_injected,
        "attacks_scored": int(attack.sum()),
        "auc": auc,
        "rule_auc": rule_auc,
        "margin": auc - rule_auc,
        "recall": int((alerted & attack).sum()) / attacks_injected if attacks_injected else float("nan"),
        "false_alerts": int((alerted & ~attack & ~travel).sum()),
        "false_alerts_per_100_identity_days": int((alerted & ~attack & ~travel).sum()) * per100,
        "travel_alerts": int((alerted & travel).sum()),
        # what the alert budget counts: every benign alert, travel included
        "benign_alerts_per_100_identity_days": int((alerted & ~attack).sum()) * per100,
        "travel_pairs": int(travel.sum()),
        "lowest_alerted_insight": float(insight[alerted].min()) if alerted.any() else None,
    }
    if "own_threshold" in scored:  # each model's own threshold, beside the averaged default
        own = insight >= scored["own_threshold"].to_numpy(dtype=np.float64)
        result["own_threshold"] = {
            "recall": int((own & attack).sum()) / attacks_injected if attacks_injected else float("nan"),
            "false_alerts_per_100_identity_days": int((own & ~attack & ~travel).sum()) * per100,
            "travel_alerts": int((own & travel).sum()),
        }
    if attack.any():
        needed = math.ceil(RANKING_RECALL * attacks_injected)
        ranked = np.sort(insight[attack])[::-1]
        if needed <= len(ranked):
            threshold = float(ranked[needed - 1])
            flagged = insight >= threshold
            result["at_80_recall"] = {
                "threshold": threshold,
                "alerts": int(flagged.sum()),
                "false_alerts": int((flagged & ~attack & ~travel).sum()),
                "false_alerts_per_100_identity_days": int((flagged & ~attack & ~travel).sum()) * per100,
                "travel_alerts": int((flagged & travel).sum()),
            }
    categories = {}
    for (kind, category), group in scored.groupby(["kind", "category"], sort=True):
        categories[category] = {
            "kind": kind,
            "count": len(group),
            "median_insight": float(group["insight"].median()),
            "alerted_share": float(group["alerted"].mean()),
            "median_rule": float(group["rule"].median()),
        }
    result["categories"] = categories
    return result


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def report(per_seed: list[dict], pooled: dict, args: argparse.Namespace) -> None:
    print(
        f"\nrealistic scenario: seeds {' '.join(str(s) for s in args.seeds)}, {args.days} days, scale {args.scale:g}; "
        "scored: the test days after the history"
    )
    head = (
        f"{'seed':>6} {'id-days':>7} {'pairs':>6} {'attacks':>7} {'AUC':>6} {'rule':>6} {'margin':>7} "
        f"{'recall':>6} {'FA/100':>6} {'travel':>6} {'80%:alerts':>10} {'FA/100':>6} {'thr':>6} "
        f"{'gen s':>6} {'run s':>6}"
    )
    print(head)
    for row in [*per_seed, pooled]:
        r80 = row.get("at_80_recall", {})
        print(
            f"{row['name']:>6} {row['identity_days']:>7} {row['pairs']:>6} "
            f"{row['attacks_scored']:>3}/{row['attacks_injected']:<3} {_fmt(row['auc']):>6} {_fmt(row['rule_auc']):>6} "
            f"{_fmt(row['margin'], 3):>7} {_fmt(row['recall'], 2):>6} "
            f"{_fmt(row['false_alerts_per_100_identity_days'], 2):>6} "
            f"{row['travel_alerts']:>3}/{row['travel_pairs']:<2} "
            f"{r80.get('alerts', 'n/a'):>10} {_fmt(r80.get('false_alerts_per_100_identity_days'), 2):>6} "
            f"{_fmt(r80.get('threshold')):>6} {_fmt(row.get('generate_seconds'), 0):>6} "
            f"{_fmt(row.get('pipeline_seconds'), 0):>6}"
        )
    print("\nthe default threshold of each test day's model (min / median / max), and the benign alerts, travel")
    print("included, per 100 identity-days (what the alert budget counts):")
    for row in per_seed:
        low, mid, high = np.quantile(row["default_thresholds"] or [math.nan], [0, 0.5, 1])
        print(
            f"{row['name']:>6} {_fmt(low)} / {_fmt(mid)} / {_fmt(high)}   "
            f"{_fmt(row['benign_alerts_per_100_identity_days'], 2)}"
        )
    print(f"{'pooled':>6} {'':23}{_fmt(pooled['benign_alerts_per_100_identity_days'], 2)}")
    print("\nat each model's own threshold instead (before averaging it with the models of the two days before,")
    print("from the same run's scores): recall, false alerts per 100 identity-days (travel apart), travel alerts")
    for row in [*per_seed, pooled]:
        own = row.get("own_threshold")
        if own:
            print(
                f"{row['name']:>6} {_fmt(own['recall'], 2)} {_fmt(own['false_alerts_per_100_identity_days'], 2)} "
                f"{own['travel_alerts']:>3}   (default: {_fmt(row['recall'], 2)} "
                f"{_fmt(row['false_alerts_per_100_identity_days'], 2)} {row['travel_alerts']:>3})"
            )
    print(f"\nper category, pooled: {'count':>6} {'median insight':>14} {'alerted':>8} {'rule median':>11}")
    for kind in ("attack", "benign"):
        for name, c in sorted(pooled["categories"].items()):
            if c["kind"] == kind:
                print(
                    f"  {kind:<6} {name:<34} {c['count']:>6} {c['median_insight']:>14.3f} "
                    f"{c['alerted_share']:>8.0%} {c['median_rule']:>11.0f}"
                )
    auc_ok = pooled["auc"] >= TARGET_AUC and pooled["margin"] >= TARGET_MARGIN
    alert_ok = (
        pooled["recall"] >= TARGET_RECALL and pooled["false_alerts_per_100_identity_days"] <= TARGET_FALSE_PER_100
    )
    print(
        f"\ntargets (pooled): AUC >= {TARGET_AUC} and >= rule + {TARGET_MARGIN}: "
        f"{_fmt(pooled['auc'])} vs rule {_fmt(pooled['rule_auc'])} -> {'met' if auc_ok else 'NOT met'}; "
        f"recall >= {TARGET_RECALL} with <= {TARGET_FALSE_PER_100:g} false alert per 100 identity-days "
        f"(travel apart): {_fmt(pooled['recall'], 2)} with "
        f"{_fmt(pooled['false_alerts_per_100_identity_days'], 2)} -> {'met' if alert_ok else 'NOT met'}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--scale", type=float, default=1.0, help="people and machines (1.0: about 250 identities)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    parser.add_argument("--keep", type=Path, default=None, help="keep each seed's sample and home under this folder")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="seeds run at once (default: cores)")
    args = parser.parse_args(argv)
    jobs = max(1, min(args.jobs, len(args.seeds)))
    seeds = " ".join(map(str, args.seeds))
    print(f"seeds {seeds}: generating {args.days} days and running the pipeline, {jobs} seed(s) at a time", flush=True)
    began = time.perf_counter()
    n = len(args.seeds)
    if jobs == 1:
        results = [seed_job(seed, args.days, args.scale, args.keep) for seed in args.seeds]
    else:  # one process per seed: Dagster's in-process runs use one core each
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(seed_job, args.seeds, [args.days] * n, [args.scale] * n, [args.keep] * n))
    elapsed = time.perf_counter() - began
    per_seed, frames = [], []
    for seed, (scored, info) in zip(args.seeds, results, strict=True):
        figures = evaluate(scored, info["attacks_injected"])
        figures.update(name=str(seed), **info)
        per_seed.append(figures)
        frames.append(scored)
    pooled_frame = pd.concat(frames, ignore_index=True)
    pooled = evaluate(pooled_frame, sum(f["attacks_injected"] for f in per_seed))
    pooled.update(
        name="pooled",
        generate_seconds=sum(f["generate_seconds"] for f in per_seed),
        pipeline_seconds=sum(f["pipeline_seconds"] for f in per_seed),
    )
    report(per_seed, pooled, args)
    print(f"wall time of the whole benchmark: {elapsed:.0f}s ({jobs} seed(s) at a time on {os.cpu_count()} cores)")
    if args.json:
        payload = {
            "seeds": args.seeds,
            "days": args.days,
            "scale": args.scale,
            "jobs": jobs,
            "elapsed_seconds": elapsed,
            "per_seed": per_seed,
            "pooled": pooled,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=float) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
