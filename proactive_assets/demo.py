"""``proactive-assets demo``: sample data in, a run over every day, alerts out, scored against the truth.

The demo runs in its own home, ``$PROACTIVE_HOME/demo`` (sample bucket, warehouse, alert file and
Dagster instance), emptied at every start: its results never mix with a real warehouse, and a
shorter ``--days`` leaves no partition from a longer earlier run. Security Lake and SNS are off
there, whatever the environment says: the sample is CloudTrail only, and its alerts are not news.
"""

import shutil
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from proactive_assets.config import Settings, SettingsProblem
from proactive_assets.core.evaluation import evaluate, load_ground_truth
from proactive_assets.core.storage import open_store
from proactive_assets.core.warehouse import Warehouse
from proactive_assets.defs import tables

DEMO_START = date(2024, 6, 1)
DEMO_FOLDER = "demo"
#: Written in a demo home, so the demo only ever empties a folder it made.
DEMO_MARK = ".proactive-demo"


def _collect(warehouse: Warehouse, asset: str, days: list[date]) -> pd.DataFrame:
    frames = [warehouse.read_table(asset, d).to_pandas().assign(day=str(d)) for d in days if warehouse.has(asset, d)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["day", "entity", "source_ip"])


def demo_settings(configured: Settings, start: date = DEMO_START) -> Settings:
    """The demo's settings: every location inside ``<home>/demo``; no Security Lake, no SNS."""
    home = Path(configured.home) / DEMO_FOLDER
    first = min(date.fromisoformat(configured.start_date), start)
    return configured.model_copy(
        update={
            "home": str(home),
            "cloudtrail_uri": str(home / "sample"),
            "warehouse": str(home / "warehouse"),
            "dagster_home": str(home / "dagster"),
            "security_lake_uri": None,
            "sqs_queue_url": None,
            "sns_topic_arn": None,
            "start_date": first.isoformat(),
        }
    )


def clean_home(home: Path) -> None:
    """Empty the demo home (only one the demo made: it carries ``DEMO_MARK``) and mark it again."""
    if home.exists():
        if not (home / DEMO_MARK).exists() and any(home.iterdir()):
            raise SettingsProblem(
                f"{home} exists and was not made by the demo, which empties its home at every start",
                "move that folder away, or set PROACTIVE_HOME to another folder for the demo",
            )
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / DEMO_MARK).write_text("made by `proactive-assets demo`, which empties this folder at every start\n")


def run_demo(
    configured: Settings, days: int = 28, seed: int = 11, start: date = DEMO_START, scenario: str = "realistic"
) -> int:
    """Everything on the embedded default, in a clean demo home; returns the process exit code."""
    from proactive_assets.runner import printable, run_days
    from proactive_assets.samples import generate

    settings = demo_settings(configured, start)
    home = Path(settings.home)
    clean_home(home)
    sample_dir = Path(settings.cloudtrail_uri)
    print(
        f"demo home {home} (emptied first): writing {days} days of sample CloudTrail ({scenario}, seed {seed}) ...",
        flush=True,
    )
    print(f"  {generate(scenario, sample_dir, start=start, days=days, seed=seed)}", flush=True)
    all_days = [start + timedelta(days=i) for i in range(days)]
    print(f"materialising every asset for {all_days[0]}..{all_days[-1]} (warehouse {settings.warehouse})", flush=True)
    # The sample starts on its first day: there is no earlier history to ingest.
    ok = run_days(settings, all_days, history=False)

    warehouse = Warehouse(open_store(settings.warehouse))
    insights = _collect(warehouse, tables.DAILY_INSIGHTS, all_days)
    alerts = _collect(warehouse, tables.ALERTS, all_days)
    rule = f"insight >= {settings.insight_threshold}" if settings.insight_threshold is not None else "budget threshold"
    print(f"\nalerts ({rule}):")
    for row in alerts.to_dict("records"):
        print(printable(f"  {row['day']} {row['entity']} from {row['source_ip']} insight={row['insight']:.3f}"))
        print(printable(f"      {row['explanation']}"))
    suspicious, benign = load_ground_truth(sample_dir / "ground_truth.json")
    result = evaluate(insights, alerts, suspicious, benign)
    print("\nagainst ground_truth.json:")
    for line in result.lines():
        print(f"  {line}")
    env = f"PROACTIVE_HOME={home}" + (
        f" PROACTIVE_START_DATE={settings.start_date}" if settings.start_date != configured.start_date else ""
    )
    print(f"\nalert file: {settings.alerts_file}")
    print(f"a day's alerts again: {env} proactive-assets alerts --day {all_days[-1]}")
    print(f"the lineage in the UI: {env} DAGSTER_HOME={settings.dagster_home} dagster dev")
    return 0 if ok else 1
