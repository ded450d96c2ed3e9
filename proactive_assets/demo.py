"""``proactive-assets demo``: sample data in, a run over every day, alerts out, scored against the truth."""

import json
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from proactive_assets.config import Settings
from proactive_assets.core.evaluation import evaluate, load_ground_truth
from proactive_assets.core.storage import open_store
from proactive_assets.core.warehouse import Warehouse
from proactive_assets.defs import tables

DEMO_START = date(2024, 6, 1)


def _collect(warehouse: Warehouse, asset: str, days: list[date]) -> pd.DataFrame:
    frames = [warehouse.read_table(asset, d).to_pandas() for d in days if warehouse.has(asset, d)]
    frames = [f.assign(day=str(d)) for f, d in zip(frames, [d for d in days if warehouse.has(asset, d)], strict=True)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["day", "entity", "source_ip"])


def run_demo(days: int = 21, seed: int = 7, start: date = DEMO_START) -> int:
    """Everything on the embedded default; returns the process exit code."""
    from proactive_assets.runner import run_days
    from proactive_assets.samples.cloudtrail import generate_sample

    configured = Settings.from_env()
    sample_dir = Path(configured.home) / "sample"
    settings = configured.model_copy(update={"cloudtrail_uri": str(sample_dir)})
    if configured.cloudtrail_uri != settings.cloudtrail_uri:
        print(f"PROACTIVE_CLOUDTRAIL_URI is set; the demo uses its own sample data in {sample_dir}")
    truth_path = sample_dir / "ground_truth.json"
    if sample_dir.is_dir() and truth_path.exists():
        truth = json.loads(truth_path.read_text())
        fresh = (truth.get("seed"), truth.get("start"), truth.get("days")) == (seed, start.isoformat(), days)
    else:
        fresh = False
    if not fresh:
        print(f"writing {days} days of sample CloudTrail (seed {seed}) to {sample_dir} ...", flush=True)
        print(f"  {generate_sample(sample_dir, start=start, days=days, seed=seed)}", flush=True)
    all_days = [start + timedelta(days=i) for i in range(days)]
    print(f"materialising every asset for {all_days[0]}..{all_days[-1]} (warehouse {settings.warehouse})", flush=True)
    ok = run_days(settings, all_days)

    warehouse = Warehouse(open_store(settings.warehouse))
    insights = _collect(warehouse, tables.DAILY_INSIGHTS, all_days)
    alerts = _collect(warehouse, tables.ALERTS, all_days)
    rule = f"insight >= {settings.insight_threshold}" if settings.insight_threshold is not None else "budget threshold"
    print(f"\nalerts ({rule}):")
    for row in alerts.to_dict("records"):
        print(f"  {row['day']} {row['entity']} from {row['source_ip']} insight={row['insight']:.3f}")
        print(f"      {row['explanation']}")
    suspicious, benign = load_ground_truth(truth_path)
    result = evaluate(insights, alerts, suspicious, benign)
    print("\nagainst ground_truth.json:")
    for line in result.lines():
        print(f"  {line}")
    print(f"\nalert file: {settings.alerts_file}")
    print(f"open the lineage in the UI: DAGSTER_HOME={settings.dagster_home} dagster dev")
    return 0 if ok else 1
