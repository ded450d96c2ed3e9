"""Warm-start retraining (core.model.warm): model D from model D-1, the policy, and no leakage."""

import dataclasses
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pytest

from proactive_assets.core.backends.local import LocalBackend
from proactive_assets.core.model import IPInsightsModel, IPInsightsParams, roc_auc, warm
from proactive_assets.core.model.training import held_out_pairs, prepare_pairs
from proactive_assets.core.model.warm import full_plan, plan_retraining, train_planned

START = date(2024, 5, 1)
WINDOW = 7
PARAMS = IPInsightsParams(epochs=3)


def _rows(days: int, users: int = 300, seed: int = 0) -> pa.Table:
    """Users calling from hosts of their own home and work /24s, a few new hosts every day."""
    rng = np.random.default_rng(seed)
    home = rng.integers(1 << 16, 200 << 16, users)  # /24 numbers
    work = rng.integers(1 << 16, 200 << 16, users)
    entity, ip, day, count = [], [], [], []
    for d in range(days):
        for u in range(users):
            for _ in range(int(rng.integers(2, 6))):
                net = home[u] if rng.random() < 0.6 else work[u]
                host = int(rng.integers(1, 40))
                address = (int(net) << 8) | host
                entity.append(f"arn:aws:iam::111122223333:user/u{u}")
                ip.append(".".join(str((address >> s) & 255) for s in (24, 16, 8, 0)))
                day.append(START + timedelta(days=d))
                count.append(int(rng.integers(1, 20)))
    table = pa.table(
        {
            "entity": pa.array(entity, pa.string()),
            "source_ip": pa.array(ip, pa.string()),
            "event_count": pa.array(count, pa.int64()),
            "day": pa.array(day, pa.date32()),
        }
    )
    return (
        table.group_by(["entity", "source_ip", "day"])
        .aggregate([("event_count", "sum")])
        .rename_columns(["entity", "source_ip", "day", "event_count"])
    )


def _window(table: pa.Table, day: date) -> pa.Table:
    """The rows of the ``WINDOW`` days before ``day`` (never ``day`` itself)."""
    days = np.array(table.column("day").to_pylist())
    keep = (days >= day - timedelta(days=WINDOW)) & (days < day)
    return table.filter(pa.array(keep))


def _train(table: pa.Table, day: date, plan: warm.RetrainPlan) -> IPInsightsModel:
    window = _window(table, day)
    return train_planned(
        window.column("entity"),
        window.column("source_ip"),
        window.column("event_count").to_numpy(),
        window.column("day").cast(pa.int32()).to_numpy(),
        PARAMS,
        plan,
        day,
    )


def _metadata(model: IPInsightsModel, day: date) -> dict:
    """What the asset stores beside a model: its own metadata plus the window it was trained on."""
    return {
        **model.metadata,
        "window_start": (day - timedelta(days=WINDOW)).isoformat(),
        "window_end": (day - timedelta(days=1)).isoformat(),
    }


def _plan(previous: IPInsightsModel | None, day: date, evidence: dict | None = None, **overrides) -> warm.RetrainPlan:
    meta = None if previous is None else _metadata(previous, day - timedelta(days=1))
    if meta is not None and evidence is not None:
        meta["evidence"] = evidence
    args = {
        "backend": "local",
        "warm_capable": True,
        "params": PARAMS,
        "window": (day - timedelta(days=WINDOW), day - timedelta(days=1)),
        "full_every": 7,
    }
    args.update(overrides)
    return plan_retraining(meta, None if previous is None else previous.to_bytes(), **args)


@pytest.fixture(scope="module")
def chain() -> dict:
    """Ten days of data; model D-1 full, model D warm from it and model D full, for comparison."""
    table = _rows(WINDOW + 3)
    d1 = START + timedelta(days=WINDOW)
    d = d1 + timedelta(days=1)
    previous = _train(table, d1, full_plan("first model"))
    plan = _plan(previous, d)
    return {
        "table": table,
        "day": d,
        "previous": previous,
        "plan": plan,
        "warm": _train(table, d, plan),
        "full": _train(table, d, full_plan("for comparison")),
    }


def _attack_auc(model: IPInsightsModel, table: pa.Table, day: date, seed: int = 5) -> float:
    """Day ``day``'s real pairs of known users against the same users on random addresses."""
    rows = table.filter(pa.array(np.array(table.column("day").to_pylist()) == day))
    entities = rows.column("entity").to_pylist()
    rng = np.random.default_rng(seed)
    random_ips = [".".join(str(int(v)) for v in rng.integers(1, 224, 4)) for _ in entities]
    normal = model.score(entities, rows.column("source_ip").to_pylist()).insight
    attack = model.score(entities, random_ips).insight
    return roc_auc(attack, normal)


def test_warm_model_starts_from_the_day_before_and_costs_a_fraction(chain: dict) -> None:
    plan, model, full = chain["plan"], chain["warm"], chain["full"]
    assert plan.warm and plan.reason == f"warm start from {chain['previous'].version}"
    retraining = model.metadata["retraining"]
    assert retraining["mode"] == "warm" and retraining["warm_from"] == chain["previous"].version
    assert retraining["days_since_full"] == 1 and retraining["new_pairs"] > 0
    assert model.metadata["optimizer_steps"] <= full.metadata["optimizer_steps"] / 4
    # it learnt from D-1's weights: one short epoch from scratch would be far worse than the full retrain
    assert model.metadata["validation_auc"] >= full.metadata["validation_auc"] - 0.01
    day = chain["day"]
    assert abs(_attack_auc(model, chain["table"], day) - _attack_auc(full, chain["table"], day)) < 0.01


def test_warm_start_without_the_previous_weights_is_worse(chain: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same short schedule from a model that knows nothing: what the copied weights are worth."""
    monkeypatch.setattr(warm, "AUC_TOLERANCE", 1.0)  # keep the cold model rather than retrain it fully
    previous = chain["previous"]
    blank = IPInsightsModel(
        params=previous.params,
        entity_hashes=np.zeros(0, np.uint64),
        entity_buckets=np.zeros(0, np.int64),
        entity_emb=np.zeros((0, previous.params.vector_dim), np.float32),
        ip_buckets=np.zeros(0, np.int64),
        ip_emb=np.zeros((1 + previous._layout.n_sections, previous.params.vector_dim), np.float32),
        enc_w=previous.enc_w,
        enc_b=previous.enc_b,
        calibration=previous.calibration,
        metadata=previous.metadata,
    )
    cold = _train(chain["table"], chain["day"], dataclasses.replace(chain["plan"], previous=blank))
    assert cold.metadata["retraining"]["mode"] == "warm"
    assert cold.metadata["validation_auc"] < chain["warm"].metadata["validation_auc"] - 0.01


def test_identities_age_out_and_new_ones_are_learnt(chain: dict) -> None:
    table, day = chain["table"], chain["day"]
    aged = pa.table(
        {
            "entity": ["arn:aws:iam::111122223333:user/old"],
            "source_ip": ["203.0.113.9"],
            "event_count": [5],
            "day": pa.array([day - timedelta(days=WINDOW + 1)], pa.date32()),
        }
    )
    fresh = aged.set_column(0, "entity", pa.array(["arn:aws:iam::111122223333:user/new"]))
    fresh = fresh.set_column(3, "day", pa.array([day - timedelta(days=1)], pa.date32()))
    extended = pa.concat_tables([table.select(aged.column_names), aged, fresh])
    previous = _train(extended, day - timedelta(days=1), full_plan("first"))
    assert previous.entity_known(["arn:aws:iam::111122223333:user/old"])[0]
    model = _train(extended, day, _plan(previous, day))
    assert model.metadata["retraining"]["mode"] == "warm"
    known = model.entity_known(["arn:aws:iam::111122223333:user/old", "arn:aws:iam::111122223333:user/new"])
    assert known.tolist() == [False, True]


def test_held_out_pairs_agree_between_overlapping_windows(chain: dict) -> None:
    """Model D never validates on a pair model D-1 trained on: the same salt holds out the same pairs."""
    table, day = chain["table"], chain["day"]

    def held(d: date, salt: int) -> set[tuple[str, str]]:
        window = _window(table, d)
        data = prepare_pairs(window.column("entity"), window.column("source_ip"), None, PARAMS)
        mask = held_out_pairs(data, PARAMS.validation_fraction, salt)
        pairs = set(zip(window.column("entity").to_pylist(), window.column("source_ip").to_pylist(), strict=True))
        keyed = {(data.ehash[e], data.lo[i]) for e, i in zip(data.pair_e[mask], data.pair_i[mask], strict=True)}
        return {p for p in pairs if (data.ehash[_code(data, p[0])], _ip(p[1])) in keyed}

    salt = chain["previous"].metadata["holdout_salt"]
    before, now = held(day - timedelta(days=1), salt), held(day, salt)
    both = _pairs(_window(table, day - timedelta(days=1))) & _pairs(_window(table, day))
    changed = (before ^ now) & both
    assert len(before & both) > 50 and len(changed) <= 0.02 * len(before & both)
    other = held(day, salt + 1)
    assert len(other & now) < 0.5 * len(now)  # another salt, other pairs


def _pairs(window: pa.Table) -> set[tuple[str, str]]:
    return set(zip(window.column("entity").to_pylist(), window.column("source_ip").to_pylist(), strict=True))


def _code(data, entity: str) -> int:
    from proactive_assets.core.model.ipinsights import entity_hash64

    return int(np.flatnonzero(data.ehash == entity_hash64([entity])[0])[0])


def _ip(text: str) -> int:
    a, b, c, d = (int(p) for p in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def test_policy_retrains_fully_and_says_why(chain: dict) -> None:
    previous, day = chain["previous"], chain["day"]
    assert _plan(None, day).reason == "no model for the day before"
    assert "always retrains fully" in _plan(previous, day, warm_capable=False, backend="sagemaker").reason
    assert "warm start is off" in _plan(previous, day, full_every=1).reason
    shifted = _plan(previous, day, window=(day - timedelta(days=7), day))
    assert "trained on 2024-05-01..2024-05-07, not 2024-05-01..2024-05-08" in shifted.reason
    assert "trained by the local backend" in _plan(previous, day, backend="sagemaker").reason
    assert "hyperparameters" in _plan(previous, day, params=dataclasses.replace(PARAMS, epochs=2)).reason
    # every N days: D-1 was warm for the 6th day running, so D is the 7th: full
    meta = _metadata(previous, day - timedelta(days=1))
    meta["retraining"] = {"mode": "warm", "days_since_full": 6}
    plan = plan_retraining(
        meta,
        previous.to_bytes(),
        backend="local",
        warm_capable=True,
        params=PARAMS,
        window=(day - timedelta(days=WINDOW), day - timedelta(days=1)),
        full_every=7,
    )
    assert plan.reason == "7 days since the last full retrain (PROACTIVE_FULL_RETRAIN_DAYS=7)" and not plan.warm
    meta["retraining"]["days_since_full"] = 5
    assert (
        plan_retraining(
            meta, None, backend="local", warm_capable=True, params=PARAMS, window=plan_window(day), full_every=7
        ).reason
        == "the day before's model has no weights stored"
    )
    torn = plan_retraining(
        meta, b"not a zip", backend="local", warm_capable=True, params=PARAMS, window=plan_window(day), full_every=7
    )
    assert torn.reason.startswith("the day before's model cannot be loaded")


def plan_window(day: date) -> tuple[date, date]:
    return day - timedelta(days=WINDOW), day - timedelta(days=1)


def test_full_retrain_when_the_warm_auc_drops(chain: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(warm, "AUC_TOLERANCE", -1.0)  # any warm model counts as a drop
    model = _train(chain["table"], chain["day"], chain["plan"])
    retraining = model.metadata["retraining"]
    assert retraining["mode"] == "full" and "fell more than -1.0 below the day before's" in retraining["reason"]
    assert model.metadata["holdout_salt"] == warm.day_number(chain["day"])  # a new chain of held-out pairs


def test_small_windows_and_rows_without_days_retrain_fully(chain: dict) -> None:
    small = dataclasses.replace(PARAMS, cv_max_pairs=10**9)
    window = _window(chain["table"], chain["day"])
    model = train_planned(
        window.column("entity"), window.column("source_ip"), None, None, small, chain["plan"], chain["day"]
    )
    assert model.metadata["retraining"]["reason"] == "the training rows have no day"
    days = window.column("day").cast(pa.int32()).to_numpy()
    model = train_planned(
        window.column("entity"), window.column("source_ip"), None, days, small, chain["plan"], chain["day"]
    )
    assert model.metadata["retraining"]["reason"] == "the window is small enough to cross-validate"


def test_local_backend_threads_the_plan(chain: dict) -> None:
    window = _window(chain["table"], chain["day"])
    trained = LocalBackend().train(window, PARAMS, chain["day"], chain["plan"])
    assert trained.metadata["retraining"]["mode"] == "warm"
    assert IPInsightsModel.from_bytes(trained.artifact).metadata["retraining"]["warm_from"] == chain["previous"].version
    assert LocalBackend().train(window, PARAMS, chain["day"]).metadata["retraining"]["mode"] == "full"


def test_the_local_backend_scores_with_the_model_it_just_trained(chain: dict) -> None:
    """Training scores its validation days with the model it returned: not read back from its bytes,
    and scoring alike; any other artifact is loaded."""
    window = _window(chain["table"], chain["day"])
    backend = LocalBackend()
    trained = backend.train(window, PARAMS, chain["day"])
    entities, addresses = window.column("entity")[:50], window.column("source_ip")[:50]
    kept = backend.scorer(trained, lambda: window)
    assert kept.__self__ is backend._trained[1]  # the trained model's own score
    loaded = backend.scorer(dataclasses.replace(trained, artifact=bytes(bytearray(trained.artifact))), lambda: window)
    assert loaded.__self__ is not backend._trained[1]
    assert np.array_equal(kept(entities, addresses).insight, loaded(entities, addresses).insight)
    other = LocalBackend().scorer(trained, lambda: window)  # another backend has trained nothing
    assert other.__self__.version == kept.__self__.version


def test_a_warm_plan_carries_the_day_befores_combiner(chain: dict) -> None:
    """The detector's combiner fit starts from model D-1's on a warm day (``fitting.fit_folds``)."""
    previous, day = chain["previous"], chain["day"]
    combiner = {"intercept": -2.0, "coefficients": {"novel_network": 1.5}, "fitted_on": {}}
    plan = _plan(previous, day, evidence={"combiner": combiner})
    assert plan.warm and plan.previous_combiner == combiner
    assert chain["plan"].previous_combiner is None  # a model D-1 without evidence (IP Insights alone)
