"""Warm-start retraining against a full retrain: daily training time and detection AUC, measured in one run.

    python -m benchmarks.retraining [--quick] [--users 10000] [--days 28] [--scale 1.0] [--rounds 3]

Two data sets, each trained day after day both ways in the same process:

* the IP Insights tutorial's scale (``benchmarks.tutorial_data``: 10,000 users, 10 days, a 7-day
  window as the tutorial trains on): model 7 fully, then models 8 and 9 warm (from the day
  before's model) and fully; each model's detection AUC on its own day (that day's real pairs of
  known users against as many random-ASN attacks, as ``benchmarks.detector_scale`` scores them);
* the realistic scenario (``proactive_assets.samples.realistic``, ingested through the ingest
  job, a 14-day window): every day after the first 14, the warm chain (a full retrain every
  ``PROACTIVE_FULL_RETRAIN_DAYS``, default 7) against a full retrain each day; the AUC of the
  scenario's attacks against every other pair of the scored days, as ``benchmarks.realistic_detection``.

Each day is trained warm and fully ``--rounds`` times, alternated, and the best time of each is
kept (as ``benchmarks.detector_scale`` does: the two share the host's quiet and busy moments); the
first round's ratio alone is printed beside it. Reported: IP Insights' own training time
(``backend.train``) and the whole ``train_detector`` per day, warm over full as ratios (target
<= 0.25), the AUCs (target: warm within 0.005 of full), and
a 90-day backfill's total training time both ways, extrapolated from the measured days' means with
a full retrain every 7 days (said so in the output).
"""

import argparse
import json
import logging
import os
import tempfile
import time
import warnings
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks import tutorial_data as td
from benchmarks.detection import _learning_set
from proactive_assets.core import training
from proactive_assets.core.backends import TrainedModel
from proactive_assets.core.backends.local import LocalBackend
from proactive_assets.core.evidence.detector import score_day, train_detector, window_index
from proactive_assets.core.evidence.networks import Networks, load_networks
from proactive_assets.core.model import IPInsightsParams, roc_auc
from proactive_assets.core.model.warm import FULL_RETRAIN_DAYS, RetrainPlan, full_plan, plan_retraining

TUTORIAL_START = date(2024, 6, 1)
REALISTIC_START = date(2024, 6, 3)
BACKFILL_DAYS = 90
TARGET_RATIO = 0.25
TARGET_AUC_GAP = 0.005


def _train(
    window: pa.Table, day: date, start: date, plan: RetrainPlan, networks: Networks
) -> tuple[TrainedModel, float, float]:
    """(model, seconds of the whole train_detector, seconds of IP Insights' own training)."""
    began = time.perf_counter()
    model = train_detector(window, LocalBackend(), IPInsightsParams(), day, networks, 1.0, plan)
    seconds = time.perf_counter() - began
    model.metadata.update({"window_start": start.isoformat(), "window_end": (day - timedelta(days=1)).isoformat()})
    return model, seconds, float(model.metadata["training_seconds"])


def _both_ways(
    window: pa.Table, day: date, start: date, plan: RetrainPlan, networks: Networks, rounds: int
) -> tuple[TrainedModel, TrainedModel, dict]:
    """The day trained warm (``plan``) and fully, alternated ``rounds`` times: the two models (every
    round gives the same ones) and ``_day_figures``' timings, the best of the rounds (a shared host's
    timings swing by a fifth from one run to the next) and the first round's alone (what one run
    of each measures)."""
    runs = [
        (_train(window, day, start, plan, networks), _train(window, day, start, full_plan("baseline"), networks))
        for _ in range(max(rounds, 1))
    ]
    (warm, *_), (full, *_) = runs[0]

    def best(side: int, k: int) -> float:
        return min(run[side][k] for run in runs)

    times = {
        "warm_detector_s": best(0, 1),
        "full_detector_s": best(1, 1),
        "warm_ip_insights_s": best(0, 2),
        "full_ip_insights_s": best(1, 2),
        "first_round_warm_detector_s": runs[0][0][1],
        "first_round_full_detector_s": runs[0][1][1],
    }
    return warm, full, times


def _plan(previous: TrainedModel | None, day: date, window_days: int, full_every: int) -> RetrainPlan:
    return plan_retraining(
        None if previous is None else previous.metadata,
        None if previous is None else previous.artifact,
        backend="local",
        warm_capable=True,
        params=IPInsightsParams(),
        window=training.training_window(day, window_days),
        full_every=full_every,
        folds=None if previous is None else previous.folds,
    )


def _auc(model: TrainedModel, window: pa.Table, pairs: pa.Table, attack: np.ndarray, networks: Networks) -> float:
    scorer = LocalBackend().scorer(model, lambda: window)
    scores = score_day(model, scorer, window_index(model, lambda: window, networks), pairs, networks)
    return float(roc_auc(scores.insight[attack], scores.insight[~attack]))


def tutorial(users: int, seed: int, networks: Networks, rounds: int) -> dict:
    """Models 8 and 9 of the tutorial's 10 days, warm and full; model 7 (full) starts the chain."""
    data = td.generate(users, seed=seed)
    rows = data.events.groupby(["user", "ip_int", "day"], sort=False).size().reset_index(name="event_count")
    rng = np.random.default_rng(seed + 1)
    window_days = td.TRAIN_DAYS

    def window(d: int) -> pa.Table:
        part = rows[(rows.day >= d - window_days) & (rows.day < d)]
        return pa.table(
            {
                "entity": pa.array(td.entity_name(part.user.to_numpy()), pa.string()),
                "source_ip": pa.array(td.ip_strings(part.ip_int.to_numpy()), pa.string()),
                "event_count": pa.array(part.event_count.to_numpy(), pa.int64()),
                "day": pa.array([TUTORIAL_START + timedelta(days=int(x)) for x in part.day], pa.date32()),
            }
        )

    def scored(d: int) -> tuple[pa.Table, np.ndarray]:
        ev = data.events
        known = np.unique(ev[(ev.day >= d - window_days) & (ev.day < d)].user.to_numpy())
        normal = ev[(ev.day == d) & np.isin(ev.user.to_numpy(), known)]
        n_side = min(100_000, len(normal))
        normal = normal.iloc[np.sort(rng.choice(len(normal), n_side, replace=False))]
        atk_user, atk_ip = td.attacks(known, n_side, data, rng)
        entities = td.entity_name(np.r_[normal.user.to_numpy(), atk_user])
        ips = td.ip_strings(np.r_[normal.ip_int.to_numpy(), atk_ip])
        pairs = _learning_set(entities, ips, TUTORIAL_START + timedelta(days=d))
        attack_keys = set(zip(td.entity_name(atk_user).tolist(), td.ip_strings(atk_ip).tolist(), strict=True))
        keys = zip(pairs.column("entity").to_pylist(), pairs.column("source_ip").to_pylist(), strict=True)
        return pairs, np.array([k in attack_keys for k in keys])

    first = window_days
    day = TUTORIAL_START + timedelta(days=first)
    previous, _, _ = _train(window(first), day, day - timedelta(days=window_days), full_plan("first"), networks)
    out = []
    for d in range(first + 1, td.DAYS):
        day = TUTORIAL_START + timedelta(days=d)
        start = day - timedelta(days=window_days)
        win = window(d)
        plan = _plan(previous, day, window_days, FULL_RETRAIN_DAYS)
        warm, full, times = _both_ways(win, day, start, plan, networks, rounds)
        pairs, attack = scored(d)
        out.append(_day_figures(day, warm, full, times))
        out[-1]["warm_auc"] = _auc(warm, win, pairs, attack, networks)
        out[-1]["full_auc"] = _auc(full, win, pairs, attack, networks)
        out[-1]["pairs_scored"] = pairs.num_rows
        previous = warm
    return {"users": users, "window_days": window_days, "days": out}


def _day_figures(day: date, warm: TrainedModel, full: TrainedModel, times: dict) -> dict:
    retraining = warm.metadata.get("retraining", {})
    return {
        "day": day.isoformat(),
        "mode": retraining.get("mode"),
        "reason": retraining.get("reason"),
        "new_pairs": retraining.get("new_pairs"),
        "replayed_pairs": retraining.get("replayed_pairs"),
        "training_pairs": full.metadata.get("training_pairs"),
        **times,
        "warm_validation_auc": warm.metadata.get("validation_auc"),
        "full_validation_auc": full.metadata.get("validation_auc"),
        "warm_evidence_auc": warm.metadata["evidence"].get("evidence_auc"),
        "full_evidence_auc": full.metadata["evidence"].get("evidence_auc"),
    }


def realistic(days: int, scale: float, seed: int, networks: Networks, workdir: Path, rounds: int) -> dict:
    """The realistic scenario ingested once, then every day after the first window trained both ways."""
    from proactive_assets.config import Settings
    from proactive_assets.core.storage import open_store
    from proactive_assets.core.warehouse import Warehouse
    from proactive_assets.defs.definitions import build_definitions, ingest_job
    from proactive_assets.runner import instance
    from proactive_assets.samples.realistic import generate_realistic_sample

    logging.getLogger("dagster").setLevel(logging.ERROR)
    summary = generate_realistic_sample(workdir / "sample", REALISTIC_START, days=days, seed=seed, scale=scale)
    settings = Settings(
        home=str(workdir / "home"),
        cloudtrail_uri=str(workdir / "sample"),
        start_date=REALISTIC_START.isoformat(),
        log_level="ERROR",
    )
    job = build_definitions(settings).resolve_job_def(ingest_job.name)
    dagster_instance = instance(settings)
    all_days = [REALISTIC_START + timedelta(days=i) for i in range(days)]
    began = time.perf_counter()
    for day in all_days:
        job.execute_in_process(
            partition_key=day.isoformat(),
            instance=dagster_instance,
            raise_on_error=True,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        )
    ingest_s = time.perf_counter() - began
    warehouse = Warehouse(open_store(settings.warehouse))

    def learning_set(day: date) -> pa.Table:
        with warehouse.local_file("learning_set", day) as path:
            present = set(pq.read_schema(path).names)
            return pq.read_table(path, columns=[c for c in training.TRAINING_COLUMNS if c in present])

    sets = {d: learning_set(d) for d in all_days}
    truth = json.loads(summary.ground_truth.read_text())
    attacks = {(e["day"], e["entity"], e["source_ip"]) for e in truth["suspicious"]}
    window_days = settings.training_days
    previous = None
    out, warm_scores, full_scores, labels = [], [], [], []
    for day in all_days[window_days:]:
        start, _ = training.training_window(day, window_days)
        win, _ = training.union_learning_sets({d: sets[d] for d in training.window_days(day, window_days)})
        plan = _plan(previous, day, window_days, settings.full_retrain_days)
        warm, full, times = _both_ways(win, day, start, plan, networks, rounds)
        out.append(_day_figures(day, warm, full, times))
        pairs = warehouse.read_table("learning_set", day)
        keys = zip(pairs.column("entity").to_pylist(), pairs.column("source_ip").to_pylist(), strict=True)
        labels.append(np.array([(day.isoformat(), e, ip) in attacks for e, ip in keys]))
        for model, into in ((warm, warm_scores), (full, full_scores)):
            scorer = LocalBackend().scorer(model, lambda w=win: w)
            index = window_index(model, lambda w=win: w, networks)
            into.append(score_day(model, scorer, index, pairs, networks).insight)
        previous = warm
    attack = np.concatenate(labels)
    warm_all, full_all = np.concatenate(warm_scores), np.concatenate(full_scores)
    return {
        "days": days,
        "scale": scale,
        "seed": seed,
        "identities": summary.identities,
        "ingest_seconds": ingest_s,
        "window_days": window_days,
        "full_retrain_days": settings.full_retrain_days,
        "attacks_scored": int(attack.sum()),
        "pairs_scored": len(attack),
        "warm_auc": float(roc_auc(warm_all[attack], warm_all[~attack])),
        "full_auc": float(roc_auc(full_all[attack], full_all[~attack])),
        "per_day": out,
    }


def _ratios(days: list[dict]) -> dict:
    """Warm over full, over the days the warm chain did warm-start (full days cost the same both ways)."""
    warm_days = [d for d in days if d["mode"] == "warm"] or days
    total = {k: sum(d[k] for d in warm_days) for k in days[0] if k.endswith("_s")}
    return {
        "warm_days": sum(d["mode"] == "warm" for d in days),
        "full_days_in_chain": sum(d["mode"] != "warm" for d in days),
        "ip_insights_ratio": total["warm_ip_insights_s"] / total["full_ip_insights_s"],
        "detector_ratio": total["warm_detector_s"] / total["full_detector_s"],
        "first_round_detector_ratio": total["first_round_warm_detector_s"] / total["first_round_full_detector_s"],
        "warm_detector_s": total["warm_detector_s"] / len(warm_days),
        "full_detector_s": total["full_detector_s"] / len(warm_days),
        "warm_ip_insights_s": total["warm_ip_insights_s"] / len(warm_days),
        "full_ip_insights_s": total["full_ip_insights_s"] / len(warm_days),
    }


def backfill(ratios: dict, days: int = BACKFILL_DAYS, every: int = FULL_RETRAIN_DAYS) -> dict:
    """Total training time of ``days`` consecutive days both ways, from the measured per-day means."""
    full_days = -(-days // every)
    full_total = days * ratios["full_detector_s"]
    warm_total = full_days * ratios["full_detector_s"] + (days - full_days) * ratios["warm_detector_s"]
    return {"days": days, "full_retrains_in_warm_chain": full_days, "full_s": full_total, "warm_s": warm_total}


def _duration(seconds: float) -> str:
    """``seconds`` in the unit that shows it: a realistic warm day is tens of milliseconds."""
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _print_part(name: str, days: list[dict], ratios: dict, auc: tuple[float, float]) -> None:
    print(f"\n{name}")
    print(
        f"  {'day':<10} {'mode':<5} {'new':>7} {'replay':>7} {'pairs':>8} "
        f"{'IPI warm/full s':>16} {'detector warm/full s':>21}  warm chain: why"
    )
    for d in days:
        print(
            f"  {d['day']:<10} {d['mode']:<5} {d['new_pairs'] or 0:>7} {d['replayed_pairs'] or 0:>7} "
            f"{d['training_pairs']:>8} {d['warm_ip_insights_s']:>7.2f}/{d['full_ip_insights_s']:<8.2f} "
            f"{d['warm_detector_s']:>10.2f}/{d['full_detector_s']:<10.2f} {d['reason']}"
        )
    rest = ratios["warm_detector_s"] - ratios["warm_ip_insights_s"]
    print(
        f"  warm/full on the {ratios['warm_days']} warm day(s): IP Insights {ratios['ip_insights_ratio']:.3f}, "
        f"whole train_detector {ratios['detector_ratio']:.3f} (target <= {TARGET_RATIO}; the first round's alone "
        f"{ratios['first_round_detector_ratio']:.3f}); of a warm day's "
        f"{_duration(ratios['warm_detector_s'])}, {_duration(ratios['warm_ip_insights_s'])} IP Insights and "
        f"{_duration(rest)} evidence folds and combiner"
    )
    gap = auc[0] - auc[1]
    print(
        f"  detection AUC warm {auc[0]:.4f}, full {auc[1]:.4f}, difference {gap:+.4f} "
        f"(target within {TARGET_AUC_GAP}: {'met' if abs(gap) <= TARGET_AUC_GAP else 'NOT met'})"
    )
    b = backfill(ratios)
    print(
        f"  {b['days']}-day backfill, extrapolated from these days' means (a full retrain every {FULL_RETRAIN_DAYS} "
        f"days: {b['full_retrains_in_warm_chain']} of {b['days']}): warm {_duration(b['warm_s'])}, "
        f"full {_duration(b['full_s'])}, ratio {b['warm_s'] / b['full_s']:.3f}"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 tutorial users, 21 realistic days")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=28, help="realistic scenario days (the first 14 are history)")
    parser.add_argument(
        "--scale",
        type=float,
        default=2.0,
        help="realistic people and machines (1.0: about 250 identities, whose windows are small enough to be "
        "cross-validated, so always retrained fully; 2.0: about 500)",
    )
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--rounds", type=int, default=3, help="each day trained warm and fully this many times, alternated"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    users, days, scale = (1_000, 21, args.scale) if args.quick else (args.users, args.days, args.scale)
    networks = load_networks()
    print(f"warm-start retraining vs full retrain, {os.cpu_count()} cores", flush=True)
    tut = tutorial(users, 0, networks, args.rounds)
    tut_ratios = _ratios(tut["days"])
    aucs = [(d["warm_auc"], d["full_auc"]) for d in tut["days"]]
    _print_part(
        f"tutorial scale: {users:,} users, a {tut['window_days']}-day window, models 8 and 9 (model 7 full)",
        tut["days"],
        tut_ratios,
        (float(np.mean([a[0] for a in aucs])), float(np.mean([a[1] for a in aucs]))),
    )
    with tempfile.TemporaryDirectory(prefix="bench-retraining-") as tmp:
        real = realistic(days, scale, args.seed, networks, Path(tmp), args.rounds)
    real_ratios = _ratios(real["per_day"])
    _print_part(
        f"realistic scenario: seed {args.seed}, scale {scale:g} ({real['identities']} identities), {days} days, "
        f"{len(real['per_day'])} trained both ways ({real['attacks_scored']} attacks in {real['pairs_scored']} pairs)",
        real["per_day"],
        real_ratios,
        (real["warm_auc"], real["full_auc"]),
    )
    result = {
        "cores": os.cpu_count(),
        "tutorial": {**tut, "ratios": tut_ratios, "backfill": backfill(tut_ratios)},
        "realistic": {**real, "ratios": real_ratios, "backfill": backfill(real_ratios)},
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float) + "\n")
    return result


if __name__ == "__main__":
    main()
