"""Warm-start retraining through the Dagster assets: lineage in the model's metadata, and no leakage."""

import io
import itertools
from datetime import date, timedelta

import pytest
from dagster import AssetKey

from proactive_assets import runner
from proactive_assets.config import Settings
from proactive_assets.core.backends import TrainedModel
from proactive_assets.core.backends.local import LocalBackend
from proactive_assets.core.model import IPInsightsModel, warm
from proactive_assets.core.storage import LocalStore, open_store
from proactive_assets.core.warehouse import Warehouse
from proactive_assets.defs.assets import model as model_assets
from proactive_assets.defs.model_store import load_model, save_model
from proactive_assets_tests.cloudtrail_fixtures import log_key, put_log, record, write_history

START = date(2024, 3, 1)
DAYS = [START + timedelta(days=i) for i in range(7)]
LATE = "arn:aws:iam::111122223333:user/only-on-day-5"


def test_model_d_starts_from_model_d_minus_1_only(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path / "bucket")
    write_history(store, START, days=7)
    put_log(  # a pair present only on day 5: models 6 on see it, model 5 never may
        store,
        log_key(DAYS[5], minute=45, uid="Late000000000000"),
        [record(arn=LATE, ip="198.51.100.7", name="ListBuckets", time=f"{DAYS[5]}T12:00:00Z")],
    )
    # these windows are small enough to be cross-validated, which never warm-starts: hold pairs out instead,
    # and keep every warm model whatever its validation AUC (a handful of held-out pairs is noisy)
    monkeypatch.setattr(model_assets, "MODEL_PARAMS", model_assets.MODEL_PARAMS.__class__(cv_max_pairs=0))
    monkeypatch.setattr(warm, "AUC_TOLERANCE", 1.0)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    settings = Settings.from_env(
        {"PROACTIVE_HOME": str(tmp_path / "home"), "PROACTIVE_CLOUDTRAIL_URI": str(tmp_path / "bucket")}
    )
    out = io.StringIO()
    assert runner.run_days(settings, DAYS[3:7], out=out), out.getvalue()
    warehouse = Warehouse(open_store(settings.warehouse))
    models = {d: load_model(warehouse, d) for d in DAYS[3:7]}
    first = models[DAYS[3]].metadata["retraining"]
    assert first["mode"] == "full" and first["reason"] == "no model for the day before"
    for before, day in itertools.pairwise(DAYS[3:7]):
        retraining = models[day].metadata["retraining"]
        assert retraining["mode"] == "warm" and retraining["warm_from"] == models[before].version
    assert models[DAYS[6]].metadata["retraining"]["days_since_full"] == 3
    # the window (PROACTIVE_TRAINING_DAYS, 14) has not filled: model D's window holds D days of data
    assert [models[d].metadata["evidence"]["window_lacking"] for d in DAYS[3:7]] == [
        round(1 - i / settings.training_days, 4) for i in range(3, 7)
    ]
    # each threshold averages the false alerts expected by the models of its day and the two before
    # (the ones that exist), as model D-1 recorded them, whether it was trained warm or fully
    budgets = {d: models[d].metadata["evidence"]["budget"] for d in DAYS[3:7]}
    assert [budgets[d]["averaged_models"] for d in DAYS[3:7]] == [
        [d.isoformat() for d in DAYS[max(3, i - 2) : i + 1]] for i in range(3, 7)
    ]
    for before, day in itertools.pairwise(DAYS[3:7]):
        estimates = budgets[day]["false_alert_estimates"]
        assert estimates[before.isoformat()] == budgets[before]["false_alert_estimates"][before.isoformat()]
    assert budgets[DAYS[3]]["own_threshold"] == budgets[DAYS[3]]["threshold"] == models[DAYS[3]].metadata["threshold"]

    def window_entities(day: date) -> set[str]:
        return set(warehouse.read_table("training_set", day, columns=["entity"]).column("entity").to_pylist())

    assert LATE in window_entities(DAYS[6]) and LATE not in window_entities(DAYS[5])
    assert not IPInsightsModel.from_bytes(models[DAYS[5]].artifact).entity_known([LATE])[0]
    # model 5 again, now that model 6 (whose window holds the day-5 pair) exists: the same weights, calibration
    # and combiner (the version is their content hash; the artifact's bytes also hold the training time), from model 4
    assert runner.run_days(settings, DAYS[5:6], out=out, history=False), out.getvalue()
    again = load_model(warehouse, DAYS[5])
    assert again.version == models[DAYS[5]].version
    assert again.metadata["retraining"]["warm_from"] == models[DAYS[4]].version
    assert again.metadata["evidence"]["budget"] == budgets[DAYS[5]]  # models 3 and 4 only: never a later day's
    # the materialization says it too
    event = runner.instance(settings).get_latest_materialization_event(AssetKey("ip_insights_model"))
    shown = event.asset_materialization.metadata
    assert shown["retraining"].value == f"warm start from {models[DAYS[4]].version}"
    assert shown["threshold_averaged_over"].value == budgets[DAYS[5]]["averaged_models"]
    assert shown["own_threshold"].value == budgets[DAYS[5]]["own_threshold"]


def test_an_unreadable_model_d_minus_1_costs_a_full_retrain_not_the_day(tmp_path) -> None:
    warehouse = Warehouse(open_store(str(tmp_path / "warehouse")))
    day = date(2024, 3, 10)
    metadata = {"version": "ipi-0+0", "backend": "local", "window_start": "2024-02-24", "window_end": "2024-03-08"}
    save_model(warehouse, day - timedelta(days=1), TrainedModel(metadata, b"weights"))
    torn = next((tmp_path / "warehouse").rglob("model.npz"))
    torn.write_bytes(b"weightz")  # same size, another hash: the manifest refuses it
    settings = Settings.from_env({"PROACTIVE_HOME": str(tmp_path / "home")})
    plan = model_assets._retraining_plan(
        warehouse, day, LocalBackend(), settings, (date(2024, 2, 25), date(2024, 3, 9))
    )
    assert not plan.warm and plan.reason.startswith("the day before's model cannot be read")
