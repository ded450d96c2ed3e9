"""A first run on your own data: one command scores the day asked for, from a bucket with history.

Through ``proactive-assets`` itself (``cli.main``), on a fresh, relative ``PROACTIVE_HOME``.
"""

import io
import json
import os
from datetime import date, timedelta
from pathlib import Path

import pytest
from dagster import AssetKey

from proactive_assets import cli, runner
from proactive_assets.config import Settings
from proactive_assets.core.storage import LocalStore, open_store
from proactive_assets.core.warehouse import Warehouse
from proactive_assets.defs.definitions import build_definitions
from proactive_assets_tests.cloudtrail_fixtures import log_key, put_log, record, write_history

START = date(2024, 3, 1)
DAY = START + timedelta(days=6)  # 2024-03-07: six days of history before it
ATTACK_IP = "185.220.101.4"


@pytest.fixture
def bucket_with_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with ``bucket/`` (START..DAY, an attack on DAY) and a clean environment."""
    for name in list(os.environ):
        if name.startswith("PROACTIVE_") or name in ("INSIGHT_THRESHOLD", "SNS_TOPIC_ARN", "DAGSTER_HOME"):
            monkeypatch.delenv(name)
    store = LocalStore(tmp_path / "bucket")
    arns = write_history(store, START, days=7)
    put_log(
        store,
        log_key(DAY, minute=45, uid="Attack0000000000"),
        [record(arn=arns[0], ip=ATTACK_IP, name="CreateAccessKey", time=f"{DAY}T12:00:00Z")],
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROACTIVE_HOME", "state")  # relative, as a person would write it
    monkeypatch.setenv("PROACTIVE_CLOUDTRAIL_URI", "bucket")
    return tmp_path


def cli_run(capsys: pytest.CaptureFixture, *argv: str, code: int = 0) -> tuple[list[str], list[str]]:
    capsys.readouterr()
    assert cli.main(list(argv)) == code
    captured = capsys.readouterr()
    return captured.out.splitlines(), captured.err.splitlines()


def test_fresh_home_scores_the_requested_day_from_the_buckets_history(
    bucket_with_history: Path, capsys: pytest.CaptureFixture
) -> None:
    out, _ = cli_run(capsys, "run", "--start", str(DAY), "--end", str(DAY))
    assert out[0] == (
        "history: ingesting 6 day(s) of the training window 2024-02-22..2024-03-06 first "
        "(6 missing; 8 day(s) without logs left out; --no-history skips this)"
    )
    assert out[1].startswith("2024-03-07 ok: ") and "daily_insights=" in out[1] and "training_set=" in out[1]
    assert len(out) == 2

    home = bucket_with_history / "state"  # the relative PROACTIVE_HOME, under the working folder
    assert (home / "warehouse" / "daily_insights" / "day=2024-03-07" / "daily_insights.parquet").is_file()
    assert (home / "dagster" / "dagster.yaml").is_file()
    warehouse = Warehouse(open_store(str(home / "warehouse")))
    ingested = [START + timedelta(days=i) for i in range(6)]
    assert all(warehouse.has("learning_set", d) for d in ingested)
    assert not warehouse.has("ip_insights_model", DAY - timedelta(days=1))  # history is ingest only

    out, _ = cli_run(capsys, "alerts", "--day", str(DAY))
    assert ATTACK_IP in [json.loads(line)["source_ip"] for line in out]
    assert cli_run(capsys, "alerts", "--day", str(DAY), "--limit", "1")[0] == out[:1]
    out, _ = cli_run(capsys, "insights", "--day", str(DAY))
    riskiest, _ = cli_run(capsys, "insights", "--day", str(DAY), "--limit", "2")
    assert len(out) > 2 and riskiest == out[:2]
    assert json.loads(out[0])["insight"] == max(json.loads(line)["insight"] for line in out)

    class ClosedPipe(io.StringIO):  # the reader went away (``proactive-assets insights ... | head``)
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdout", ClosedPipe())
        assert cli.main(["insights", "--day", str(DAY)]) == 141
    assert capsys.readouterr().err == ""  # not an error to report

    out, _ = cli_run(capsys, "run", "--start", str(DAY), "--end", str(DAY))  # nothing left to ingest
    assert len(out) == 1 and out[0].startswith("2024-03-07 ok: ")


def test_no_history_skips_the_day_and_says_how_to_fix_it(
    bucket_with_history: Path, capsys: pytest.CaptureFixture
) -> None:
    out, _ = cli_run(capsys, "run", "--start", str(DAY), "--end", str(DAY), "--no-history")
    reason = (
        "only 0 day(s) with data in the training window 2024-02-22..2024-03-06 (need 3, PROACTIVE_MIN_TRAINING_DAYS)"
    )
    assert out[0].startswith("2024-03-07 ok: ") and "training_set: skipped" in out[0]
    assert out[1:] == [f"  not scored: {reason}"]
    for command in ("insights", "alerts"):
        _, err = cli_run(capsys, command, "--day", str(DAY), code=1)
        assert err == [
            f"2024-03-07 was not scored: {reason}",
            "fix: ingest the 6 day(s) of the window that have logs but no learning_set (2024-03-01..2024-03-06): "
            "`proactive-assets run` does it unless --no-history; in the UI, materialise the ingest group for "
            "those days",
        ]
    _, err = cli_run(capsys, "insights", "--day", str(DAY + timedelta(days=1)), code=1)
    assert err == [
        f"no daily_insights for 2024-03-08 in {bucket_with_history / 'state' / 'warehouse'}: "
        "the day was never ingested",
        "fix: `proactive-assets run --start 2024-03-08 --end 2024-03-08`",
    ]


def test_history_re_ingests_a_stale_day(bucket_with_history: Path) -> None:
    """A window day whose raw_cloudtrail was re-materialised after its learning_set is stale."""
    settings = Settings.from_env()
    defs = build_definitions(settings)
    instance = runner.instance(settings)
    window_day = DAY - timedelta(days=3)
    plan = runner.plan_history(settings, [DAY], instance, defs)
    assert plan.missing == [START + timedelta(days=i) for i in range(6)] and plan.stale == []
    assert runner.ingest_history(settings, plan, defs, instance, io.StringIO())
    assert runner.plan_history(settings, [DAY], instance, defs).days == []
    ingest = defs.resolve_job_def("proactive_ingest_job")
    assert ingest.execute_in_process(
        partition_key=str(window_day), instance=instance, asset_selection=[AssetKey("raw_cloudtrail")]
    ).success
    plan = runner.plan_history(settings, [DAY], instance, defs)
    assert (plan.missing, plan.stale) == ([], [window_day])
    assert plan.line(date.fromisoformat(settings.start_date)) == (
        "history: ingesting 1 day(s) of the training window 2024-02-22..2024-03-06 first "
        "(1 stale; 8 day(s) without logs left out; --no-history skips this)"
    )


def test_demo_starts_from_a_clean_demo_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A shorter --days leaves nothing of a longer earlier run: not in the warehouse, results or instance."""
    for name in list(os.environ):
        if name.startswith("PROACTIVE_") or name in ("INSIGHT_THRESHOLD", "SNS_TOPIC_ARN", "DAGSTER_HOME"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PROACTIVE_HOME", str(tmp_path / "home"))
    demo_home = tmp_path / "home" / "demo"
    # what a longer earlier demo left behind: a later day's partition, an alert, its sample
    old = demo_home / "warehouse" / "alerts" / "day=2024-06-20"
    old.mkdir(parents=True)
    (old / "alerts.parquet").write_bytes(b"from an earlier, longer run")
    (demo_home / "alerts.jsonl").write_text('{"day": "2024-06-20"}\n')
    (demo_home / ".proactive-demo").write_text("")
    out, _ = cli_run(capsys, "demo", "--days", "2", "--scenario", "classic")
    assert not old.exists() and not (demo_home / "alerts.jsonl").exists()
    days = {p.name for p in (demo_home / "warehouse" / "learning_set").iterdir()}
    assert days == {"day=2024-06-01", "day=2024-06-02"}
    assert sorted(p.name for p in (demo_home / "sample" / "AWSLogs").iterdir())  # a fresh sample was written
    assert out[0].startswith(f"demo home {demo_home} (emptied first): writing 2 days of sample CloudTrail")
    assert not (tmp_path / "home" / "warehouse").exists()  # nothing outside the demo home

    # a folder the demo did not make is never emptied
    (demo_home / ".proactive-demo").unlink()
    _, err = cli_run(capsys, "demo", "--days", "2", "--scenario", "classic", code=2)
    assert err == [
        f"error: {demo_home} exists and was not made by the demo, which empties its home at every start",
        "fix: move that folder away, or set PROACTIVE_HOME to another folder for the demo",
    ]
    assert (demo_home / "warehouse").is_dir()


def test_a_model_refused_by_the_auc_check_is_the_reason_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A day whose model the blocking check refused: insights says so, with the model's AUC."""
    from proactive_assets.core.backends import TrainedModel
    from proactive_assets.defs.model_store import save_model

    monkeypatch.setenv("PROACTIVE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PROACTIVE_WAREHOUSE", raising=False)
    monkeypatch.delenv("PROACTIVE_START_DATE", raising=False)
    warehouse = Warehouse(open_store(Settings.from_env().warehouse))
    save_model(warehouse, DAY, TrainedModel({"version": "ipi-0123abcd", "backend": "local", "validation_auc": 0.62}))
    _, err = cli_run(capsys, "alerts", "--day", str(DAY), code=1)
    assert err == [
        "2024-03-07 was not scored: model ipi-0123abcd has validation AUC 0.620, below the floor 0.8 "
        "(the blocking validation_auc_floor check)",
        "fix: a longer training window (PROACTIVE_TRAINING_DAYS) usually helps; the ip_insights_model partition "
        "in the UI shows the ROC curve",
    ]
