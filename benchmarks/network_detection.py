"""Detection on the realistic Security Lake network scenario, through the real pipeline, against a first-seen rule.

    python -m benchmarks.network_detection [--seeds 3 4 5] [--days 21] [--variants all egress] [--json OUT]

For each seed: generate ``proactive_assets.samples.network_scenario`` (VPC Flow and Route 53, source
version 2.0) into a temporary folder, run every asset for every day as the CLI does
(``runner.run_days``: in-process Dagster, the object reader, default settings but for the home,
the lake and the start day; no CloudTrail), then read ``daily_insights`` and ``alerts`` of the test
days and compare with ``ground_truth.json``.

Reported per attack class (a new internet host, an internal scan) and pooled over seeds: how many
pairs, the AUC of the pipeline's ``insight`` for the class's pairs against every non-attack pair
of the test days, the AUC of the first-seen-prefix rule of ``benchmarks.realistic_detection`` on
the same pairs (0 address seen for the entity in the window, 1 its /24, 2 its /16, 3 never), the
margin, and the share alerted; then the benign pairs by category (new instances, a moved package
mirror, and routine: every other one, AWS endpoint addresses that are new every day included) and
by the remote address's scope (private, aws, public), and the false alerts per 100 entity-days.
The variants measure which address scopes the model should see: ``all`` (the default: every pair)
and ``egress`` (private remote addresses left out of the lake, as a reader filtering them would).
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
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.realistic_detection import first_seen_rule
from proactive_assets.config import Settings
from proactive_assets.core.model import roc_auc
from proactive_assets.core.pairs import address_scopes
from proactive_assets.core.storage import open_store
from proactive_assets.core.warehouse import Warehouse
from proactive_assets.samples.network_scenario import ATTACK_NEW_HOST, ATTACK_SCAN, generate_network_sample

START = date(2024, 6, 3)
CLASSES = (ATTACK_NEW_HOST, ATTACK_SCAN)
VARIANTS = ("all", "egress")


def _egress_only(lake: Path) -> None:
    """Drop the VPC Flow rows whose remote end is a private address (what an egress-only reader keeps)."""
    for path in lake.rglob("*.parquet"):
        if "/VPC_FLOW/" not in path.as_posix():
            continue
        table = pq.read_table(path)
        outbound = pc.equal(pc.struct_field(table.column("connection_info"), "direction_id"), 2)
        src = pc.struct_field(table.column("src_endpoint"), "ip")
        dst = pc.struct_field(table.column("dst_endpoint"), "ip")
        remote = pc.if_else(outbound, dst, src)
        keep = pc.not_equal(address_scopes(remote), "private")
        pq.write_table(table.filter(keep), path, compression="gzip")


def _read(warehouse: Warehouse, asset: str, day: date, columns: list[str]) -> pd.DataFrame:
    if not warehouse.has(asset, day):
        return pd.DataFrame(columns=columns)
    return warehouse.read_table(asset, day, columns=columns).to_pandas()


def run_seed(seed: int, days: int, variant: str, workdir: Path) -> tuple[pd.DataFrame, dict]:
    """Generate, run the pipeline; every scored test-day pair with its label, insight and rule score."""
    from proactive_assets.runner import run_days

    logging.getLogger("dagster._core.execution.plan.active").setLevel(logging.ERROR)
    began = time.perf_counter()
    sample = generate_network_sample(workdir / "sample", START, days=days, seed=seed)
    if variant == "egress":
        _egress_only(sample.lake)
    generated = time.perf_counter() - began
    trail = workdir / "cloudtrail" / "AWSLogs"
    trail.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        home=str(workdir / "home"),
        cloudtrail_uri=str(trail.parent),
        security_lake_uri=str(sample.lake),
        start_date=START.isoformat(),
        log_level="ERROR",
    )
    began = time.perf_counter()
    with open(workdir / "run.log", "w") as out:
        ok = run_days(settings, [START + timedelta(days=i) for i in range(days)], out=out)
    ran = time.perf_counter() - began
    truth = json.loads(sample.ground_truth.read_text())
    label = {(e["day"], e["entity"], e["source_ip"]): ("attack", e["category"]) for e in truth["attacks"]}
    for e in truth["benign_novelties"]:
        label.setdefault((e["day"], e["entity"], e["source_ip"]), ("benign", e["category"]))
    warehouse = Warehouse(open_store(settings.warehouse))
    frames = []
    for day in (date.fromisoformat(d) for d in truth["test_days"]):
        insights = _read(warehouse, "daily_insights", day, ["entity", "source_ip", "insight"])
        alerts = _read(warehouse, "alerts", day, ["entity", "source_ip"])
        window = pd.concat(
            [_read(warehouse, "learning_set", day - timedelta(days=k), ["entity", "source_ip"]) for k in range(1, 15)],
            ignore_index=True,
        )
        alerted = set(zip(alerts["entity"], alerts["source_ip"], strict=True))
        frames.append(
            insights.assign(
                day=day.isoformat(),
                rule=first_seen_rule(insights, window),
                alerted=[(e, ip) in alerted for e, ip in zip(insights["entity"], insights["source_ip"], strict=True)],
            )
        )
    scored = pd.concat(frames, ignore_index=True)
    kinds = [
        label.get(k, ("benign", "routine"))  # not listed as a novelty (AWS endpoints are new daily)
        for k in zip(scored["day"], scored["entity"], scored["source_ip"], strict=True)
    ]
    scored["scope"] = address_scopes(pa.array(scored["source_ip"], pa.string())).to_pylist()
    scored["kind"] = [k[0] for k in kinds]
    scored["category"] = [k[1] for k in kinds]
    scored["seed"] = seed
    injected = {c: sum(1 for e in truth["attacks"] if e["category"] == c) for c in CLASSES}
    return scored, {"ok": ok, "generate_s": generated, "pipeline_s": ran, "injected": injected, "flows": sample.flows}


def evaluate(scored: pd.DataFrame, injected: dict[str, int]) -> dict:
    attack = (scored["kind"] == "attack").to_numpy()
    insight = scored["insight"].to_numpy(np.float64)
    rule = scored["rule"].to_numpy(np.float64)
    alerted = scored["alerted"].to_numpy(bool)
    entity_days = len(set(zip(scored["seed"], scored["day"], scored["entity"], strict=True)))
    out: dict = {
        "pairs": len(scored),
        "entity_days": entity_days,
        "classes": {},
        "benign": {},
        "benign_by_scope": {},
    }
    for name in CLASSES:
        mine = (scored["category"] == name).to_numpy()
        if not mine.any():
            out["classes"][name] = {"scored": 0, "injected": injected.get(name, 0)}
            continue
        auc, rule_auc = roc_auc(insight[mine], insight[~attack]), roc_auc(rule[mine], rule[~attack])
        out["classes"][name] = {
            "scored": int(mine.sum()),
            "injected": injected.get(name, 0),
            "auc": float(auc),
            "rule_auc": float(rule_auc),
            "margin": float(auc - rule_auc),
            "median_insight": float(np.median(insight[mine])),
            "alerted_share": float(alerted[mine].mean()),
        }
    for name, group in scored[~attack].groupby("category"):
        out["benign"][name] = {
            "count": len(group),
            "median_insight": float(group["insight"].median()),
            "alerted_share": float(group["alerted"].mean()),
        }
    for scope, group in scored[~attack].groupby("scope"):
        out["benign_by_scope"][scope] = {
            "count": len(group),
            "median_insight": float(group["insight"].median()),
            "alerted_share": float(group["alerted"].mean()),
        }
    if attack.any():
        out["auc"] = float(roc_auc(insight[attack], insight[~attack]))
        out["rule_auc"] = float(roc_auc(rule[attack], rule[~attack]))
    out["false_alerts_per_100_entity_days"] = 100.0 * int((alerted & ~attack).sum()) / max(entity_days, 1)
    return out


def report(name: str, figures: dict) -> None:
    print(f"\n{name}: {figures['pairs']} scored pairs, {figures['entity_days']} entity-days")
    print(f"  {'class':<20} {'pairs':>6} {'AUC':>6} {'rule':>6} {'margin':>7} {'median':>7} {'alerted':>8}")
    for cls, c in figures["classes"].items():
        if not c.get("scored"):
            print(f"  {cls:<20} {'0':>6}   (not scored: its pairs are not in the lake)")
            continue
        print(
            f"  {cls:<20} {c['scored']:>6} {c['auc']:>6.3f} {c['rule_auc']:>6.3f} {c['margin']:>+7.3f} "
            f"{c['median_insight']:>7.3f} {c['alerted_share']:>8.0%}"
        )
    for cls, c in figures["benign"].items():
        blank = ""
        print(f"  benign {cls:<13} {c['count']:>6} {blank:>21} {c['median_insight']:>7.3f} {c['alerted_share']:>8.0%}")
    for scope, c in figures["benign_by_scope"].items():
        label, blank = f"benign to {scope}", ""
        print(f"  {label:<20} {c['count']:>6} {blank:>21} {c['median_insight']:>7.3f} {c['alerted_share']:>8.0%}")
    print(f"  false alerts per 100 entity-days: {figures['false_alerts_per_100_entity_days']:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 4, 5])
    parser.add_argument("--days", type=int, default=21)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    results: dict = {}
    began = time.perf_counter()
    for variant in args.variants:
        frames, injected, runs = [], dict.fromkeys(CLASSES, 0), []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory(prefix=f"bench-network-{seed}-") as tmp:
                scored, info = run_seed(seed, args.days, variant, Path(tmp))
            frames.append(scored)
            runs.append(info)
            for cls in CLASSES:
                injected[cls] += info["injected"][cls]
            print(
                f"{variant} seed {seed}: {'ok' if info['ok'] else 'FAILED'}, {info['flows']} flow records, "
                f"generated in {info['generate_s']:.0f}s, pipeline {info['pipeline_s']:.0f}s",
                flush=True,
            )
        figures = evaluate(pd.concat(frames, ignore_index=True), injected)
        figures["runs"] = runs
        results[variant] = figures
        report(f"variant {variant}, seeds {' '.join(map(str, args.seeds))} pooled", figures)
    print(f"\nwall time: {time.perf_counter() - began:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
