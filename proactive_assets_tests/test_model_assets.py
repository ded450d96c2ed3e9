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
    day_lines = [line for line in out if not line.startswith("  ")]
    assert len(day_lines) == 7 and "training_set: skipped" in day_lines[0] and "daily_insights=" in day_lines[5]
    assert not any(line.startswith("history:") for line in out)  # the bucket has nothing before START
    # each skipped day says why, right under its line
    assert out[1] == (
        "  not scored: only 0 day(s) with data in the training window 2024-02-16..2024-02-29 "
        "(need 3, PROACTIVE_MIN_TRAINING_DAYS)"
    )
    warehouse = Warehouse(open_store(settings.warehouse))
    assert not warehouse.has("training_set", days[2])  # only 2 days of history before it
    model = load_model(warehouse, days[5])
    meta = model.metadata
    # the window's index and the validation folds are committed with the model; scoring reads the
    # index, a warm start the weights and folds
    warm = load_model(warehouse, days[5], for_warm_start=True)
    assert model.window is not None and model.folds is None and warm.window is None and warm.folds is not None
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
    insights = [line["insight"] for line in lines]
    assert insights == sorted(insights, reverse=True)  # riskiest first, though the table keeps the learning set's order
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


def test_skipped_day_says_why_from_its_record(settings: Settings, capsys: pytest.CaptureFixture) -> None:
    """insights/alerts on a skipped day print the reason its run recorded, and the fix."""
    day = DAYS[2]  # two days of data before it, three needed
    for command in ("insights", "alerts"):
        capsys.readouterr()
        assert cli.main([command, "--day", day.isoformat()]) == 1
        assert capsys.readouterr().err.splitlines() == [
            "2024-03-03 was not scored: only 2 day(s) with data in the training window 2024-02-18..2024-03-02 "
            "(need 3, PROACTIVE_MIN_TRAINING_DAYS)",
            "fix: wait for more days of logs, or lower PROACTIVE_MIN_TRAINING_DAYS (now 3)",
        ]


def _one_address_each(store: LocalStore, start: date, days: int, identities: int = 10) -> list[str]:
    """``identities`` users, each calling from one address of its own, once a day."""
    arns = [f"arn:aws:iam::111122223333:user/solo{i:02d}" for i in range(identities)]
    for d in range(days):
        day = start + timedelta(days=d)
        records = [
            record(arn=arn, ip=f"198.51.100.{10 + i}", name="GetCallerIdentity", time=f"{day}T0{i % 10}:00:00Z")
            for i, arn in enumerate(arns)
        ]
        put_log(store, log_key(day, minute=5, uid=f"Solo{d:012d}"), records)
    return arns


def test_window_that_cannot_be_validated_is_skipped_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """3 days, 30 rows, one address per identity: no validation pair, so the day is skipped, not crashed."""
    store = LocalStore(tmp_path / "bucket")
    _one_address_each(store, START, days=4)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    env = {
        "PROACTIVE_HOME": str(tmp_path / "home"),
        "PROACTIVE_CLOUDTRAIL_URI": str(tmp_path / "bucket"),
        "PROACTIVE_START_DATE": START.isoformat(),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env(env)
    day = START + timedelta(days=3)
    out = io.StringIO()
    assert runner.run_days(settings, [START + timedelta(days=i) for i in range(4)], out=out), out.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[-2].startswith("2024-03-04 ok: ") and "training_set=30" in lines[-2]
    assert "ip_insights_model: skipped" in lines[-2] and "daily_insights: skipped" in lines[-2]
    reason = (
        "the training window 2024-02-19..2024-03-03 cannot be validated: 10 (identity, address) pair(s) of 10 "
        "identities, 0 of them with more than one address, leave no pair to hold out, so the model's AUC and "
        "the insight calibration cannot be measured"
    )
    assert lines[-1] == f"  not scored: {reason}"
    warehouse = Warehouse(open_store(settings.warehouse))
    assert warehouse.has("training_set", day) and not warehouse.has("daily_insights", day)
    assert not warehouse.store.exists(warehouse.key("ip_insights_model", day, "model.json"))
    capsys.readouterr()
    assert cli.main(["insights", "--day", day.isoformat()]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"2024-03-04 was not scored: {reason}",
        "fix: more history (a longer PROACTIVE_TRAINING_DAYS) or more active identities in the window",
    ]


def test_auc_check_alone_evaluates_the_stored_model(settings: Settings) -> None:
    """The model asset can be subset: the blocking check on its own re-checks the day's stored model."""
    from proactive_assets.defs.assets.model import AUC_CHECK
    from proactive_assets.defs.definitions import build_definitions

    job = build_definitions(settings).resolve_implicit_global_asset_job_def()
    subset = job.get_subset(asset_selection=set(), asset_check_selection={AUC_CHECK.key})
    result = subset.execute_in_process(partition_key=DAYS[-1].isoformat(), instance=runner.instance(settings))
    assert result.success
    evaluations = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert [(e.check_name, e.passed) for e in evaluations] == [("validation_auc_floor", True)]
    assert not [e for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]
    model = load_model(Warehouse(open_store(settings.warehouse)), DAYS[-1])
    assert evaluations[0].metadata["model_version"].value == model.version
