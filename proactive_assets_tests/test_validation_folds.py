"""Validation folds kept with a model (core.evidence.folds): a warm model D reuses model D-1's
folds of the days both validate on and computes only the newest."""

import io
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from proactive_assets.core.backends import TrainedModel
from proactive_assets.core.backends.local import LocalBackend
from proactive_assets.core.evidence.detector import train_detector
from proactive_assets.core.evidence.features import FEATURES
from proactive_assets.core.evidence.folds import Fold, folds_from_bytes, folds_to_bytes, reusable
from proactive_assets.core.evidence.networks import load_networks
from proactive_assets.core.model import warm
from proactive_assets.core.model.warm import full_plan, plan_retraining
from proactive_assets_tests.test_warm_retraining import PARAMS, START, WINDOW, _rows, _window

PROVENANCE = {"networks": {"source": "test", "date": "2024-01-01"}}
#: The columns that carry IP Insights' judgement: a reused fold keeps the judgement of the model that computed it.
IPI_COLUMNS = [FEATURES.index(name) for name in ("ip_insights", "ip_insights_missing", "novel_x_ip_insights")]


def _fold(day: int, rows: int, seed: int) -> Fold:
    rng = np.random.default_rng(seed)
    x = rng.random((rows, len(FEATURES))).astype(np.float32)
    suspicious = rng.random(rows) < 0.5
    return Fold(day, x, suspicious, np.where(suspicious, 1, -1).astype(np.int8), rows // 2)


def test_folds_round_trip_and_are_reused_only_where_they_mean_the_same() -> None:
    folds = [_fold(19_000, 50, 1), _fold(19_001, 70, 2)]
    data = folds_to_bytes(folds, FEATURES, PROVENANCE)
    back, meta = folds_from_bytes(data)
    assert meta["provenance"] == PROVENANCE and tuple(meta["features"]) == FEATURES
    for a, b in zip(folds, back, strict=True):
        assert (a.day, a.identities) == (b.day, b.identities)
        assert np.array_equal(a.x, b.x) and np.array_equal(a.suspicious, b.suspicious)
        assert np.array_equal(a.kind, b.kind)
    assert sorted(reusable(data, [19_001, 19_002], FEATURES, PROVENANCE)) == [19_001]
    assert reusable(data, [19_001], FEATURES[:-1], PROVENANCE) == {}  # other features
    assert reusable(data, [19_001], FEATURES, {"networks": {"source": "test", "date": "2024-02-01"}}) == {}
    assert reusable(b"not parquet", [19_001], FEATURES, PROVENANCE) == {}
    assert reusable(None, [19_001], FEATURES, PROVENANCE) == {}
    # a model from before the folds were Arrow IPC kept them as Parquet: computed afresh, not misread
    table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
    as_parquet = io.BytesIO()
    pq.write_table(table, as_parquet)
    assert reusable(as_parquet.getvalue(), [19_001], FEATURES, PROVENANCE) == {}


@pytest.fixture(scope="module")
def detectors() -> dict:
    """Detector D-1 trained fully, detector D warm from it (with its folds) and fully."""
    table = _rows(WINDOW + 2, users=200, seed=3)
    networks = load_networks()
    d1 = START + timedelta(days=WINDOW)
    d = d1 + timedelta(days=1)

    def train(day: date, plan: warm.RetrainPlan) -> TrainedModel:
        return train_detector(_window(table, day), LocalBackend(), PARAMS, day, networks, 1.0, plan)

    previous = train(d1, full_plan("first model"))
    meta = {**previous.metadata, "window_start": (d1 - timedelta(days=WINDOW)).isoformat()}
    meta["window_end"] = (d1 - timedelta(days=1)).isoformat()
    window = (d - timedelta(days=WINDOW), d - timedelta(days=1))
    args = {"backend": "local", "warm_capable": True, "params": PARAMS, "window": window, "full_every": 7}
    plan = plan_retraining(meta, previous.artifact, **args, folds=previous.folds)
    return {
        "previous": previous,
        "plan": plan,
        "warm": train(d, plan),
        "full": train(d, full_plan("x")),
        "train": train,
    }


def _by_day(model: TrainedModel) -> dict[int, Fold]:
    return {f.day: f for f in folds_from_bytes(model.folds)[0]}


def test_a_warm_detector_reuses_the_day_befores_folds_and_computes_the_newest(detectors: dict) -> None:
    previous, warm_model, full = detectors["previous"], detectors["warm"], detectors["full"]
    assert detectors["plan"].warm and warm_model.metadata["retraining"]["mode"] == "warm"
    days = warm_model.metadata["evidence"]["validation_days"]
    assert len(days) == 3 and warm_model.metadata["evidence"]["folds_reused"] == days[:2]
    assert full.metadata["evidence"]["folds_reused"] == []
    stored, reused, fresh = _by_day(previous), _by_day(warm_model), _by_day(full)
    assert sorted(reused) == sorted(fresh) and len(reused) == 3
    newest = max(reused)
    for day in sorted(reused)[:2]:  # exactly what model D-1 computed
        assert np.array_equal(reused[day].x, stored[day].x)
        assert np.array_equal(reused[day].suspicious, stored[day].suspicious)
    # The newest day is computed here, as a full retrain computes it: the same synthetic pairs
    # (drawn from the seed and the day alone) and the same evidence but IP Insights' judgement.
    other = np.setdiff1d(np.arange(len(FEATURES)), IPI_COLUMNS)
    assert newest not in stored
    assert np.array_equal(reused[newest].suspicious, fresh[newest].suspicious)
    assert np.array_equal(reused[newest].x[:, other], fresh[newest].x[:, other])
    assert not np.array_equal(reused[newest].x[:, IPI_COLUMNS], fresh[newest].x[:, IPI_COLUMNS])


def test_a_warm_start_that_falls_back_to_a_full_retrain_computes_every_fold(
    detectors: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warm, "AUC_TOLERANCE", -1.0)  # any warm IP Insights model counts as a drop
    model = detectors["train"](START + timedelta(days=WINDOW + 1), detectors["plan"])
    assert model.metadata["retraining"]["mode"] == "full"
    assert model.metadata["evidence"]["folds_reused"] == []
    # the history too starts afresh at the first validation day: the full retrain's folds and index
    assert model.folds == detectors["full"].folds and model.window == detectors["full"].window
