"""The model half of the lineage, run through the CLI's Dagster path: window, skip, model, insights."""

import io
import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from proactive_assets import cli, runner
from proactive_assets.config import Settings
from proactive_assets.core.storage import LocalStore, open_store
from proactive_assets.core.training import training_window
from proactive_assets.core.warehouse import Warehouse
from proactive_assets.defs.model_store import load_model
from proactive_assets_tests.cloudtrail_fixtures import log_key, put_log, record, write_history

START = date(2024, 3, 1)


DAYS = [START + timedelta(days=i) for i in range(6)]


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, list[str]]]:
    """Six days of history with a never-seen network on the last day, run once for the module."""
    tmp_path = tmp_path_factory.mktemp("model")
    store = LocalStore(tmp_path / "bucket")
    arns = write_history(store, START, days=6)
    attack_day = DAYS[-1]
    put_log(
        store,
        log_key(attack_day, minute=45, uid="Attack0000000000"),
        [record(arn=arns[0], ip="185.220.101.4", name="CreateAccessKey", time=f"{attack_day}T12:00:00Z")],
    )
    (tmp_path / "dagster").mkdir()
    env = {
        "PROACTIVE_HOME": str(tmp_path / "home"),
        "PROACTIVE_CLOUDTRAIL_URI": str(tmp_path / "bucket"),
        "PROACTIVE_MIN_TRAINING_DAYS": "3",
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
        settings = Settings.from_env(env)
        out = io.StringIO()
        assert runner.run_days(settings, DAYS, out=out)
        assert runner.run_days(settings, DAYS[-1:], out=out)  # a re-run of the last day
        for name, value in env.items():
            patch.setenv(name, value)
        yield settings, out.getvalue().splitlines()


@pytest.fixture
def settings(ran: tuple[Settings, list[str]]) -> Settings:
    return ran[0]


def test_days_run_in_order_with_skip_then_scores(ran: tuple[Settings, list[str]]) -> None:
    settings, out = ran
    days = DAYS
    assert len(out) == 7 and "training_set: skipped" in out[0] and "daily_insights=" in out[5]
    warehouse = Warehouse(open_store(settings.warehouse))
    assert not warehouse.has("training_set", days[2])  # only 2 days of history before it
    model = load_model(warehouse, days[5])
    meta = model.metadata
    assert (meta["window_start"], meta["window_end"]) == tuple(d.isoformat() for d in training_window(days[5], 14))
    assert meta["validation_auc"] > 0.8
    training = warehouse.read_table("training_set", days[5])
    assert max(training.column("day").to_pylist()) == days[4]  # nothing from the scored day
    rows = warehouse.read_table("daily_insights", days[5]).to_pylist()
    attack = next(r for r in rows if r["source_ip"] == "185.220.101.4")
    normal = [r["insight"] for r in rows if r["source_ip"] != "185.220.101.4"]
    assert attack["insight"] > max(normal) and attack["model_version"] == model.version
    assert attack["event_names"] == ["CreateAccessKey"]


def test_insights_command_prints_json_lines(settings: Settings, capsys: pytest.CaptureFixture) -> None:
    day = DAYS[-1]
    assert cli.main(["insights", "--day", day.isoformat()]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines and {
        "entity",
        "source_ip",
        "insight",
        "dot_product",
        "event_count",
        "event_names",
        "model_version",
    } <= set(lines[0])
    assert lines[0]["insight"] >= lines[-1]["insight"]
    assert cli.main(["insights", "--day", START.isoformat()]) == 1  # never scored: clear message, no crash


def test_alerts_are_explained_and_published_once(settings: Settings, capsys: pytest.CaptureFixture) -> None:
    days = DAYS
    lines = [json.loads(x) for x in (Path(settings.home) / "alerts.jsonl").read_text().splitlines()]
    attack = [x for x in lines if x["source_ip"] == "185.220.101.4"]
    assert len(attack) == 1, "re-running a day must not publish twice"
    assert len({x["alert_id"] for x in lines}) == len(lines)
    warehouse = Warehouse(open_store(settings.warehouse))
    table = warehouse.read_table("alerts", days[-1]).to_pylist()
    row = next(r for r in table if r["source_ip"] == "185.220.101.4")
    assert row["ip_seen_for_entity_in_window"] is False and "never" in row["explanation"].lower()
    assert row["published_to"] == [f"file:{Path(settings.home) / 'alerts.jsonl'}"]
    capsys.readouterr()
    assert cli.main(["alerts", "--day", days[-1].isoformat()]) == 0
    printed = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [p["alert_id"] for p in printed] == [r["alert_id"] for r in table]
