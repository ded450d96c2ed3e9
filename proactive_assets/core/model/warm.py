"""Warm-start retraining: model D starts from model D-1 instead of from scratch.

Model D-1 already knows every pair of its window but the newest day's, so model D keeps its
entity, address-prefix and encoder weights (same hashing, same hyperparameters: the buckets are
the same), gives fresh ones to identities and prefixes new to the window, drops the ones that
aged out of it, and trains one epoch on the pairs first seen since D-1's training plus a replay
sample of the rest of the window. Pairs are held out for validation by a hash salted with the day
of the chain's last full retrain, so D and D-1 hold out the same pairs and model D is never
validated on a pair model D-1 learnt.

The policy (``plan_retraining``): a full retrain when there is no usable model D-1 (none, another
backend, other hyperparameters, not the window just before D's, cross-validated), every
``full_every`` days, and when the warm model's validation AUC falls more than ``AUC_TOLERANCE``
below model D-1's. Every model records how it was trained under ``retraining`` in its metadata.
No leakage: model D-1 was trained on days before D-1, and model D sees only its own window.
"""

import math
import time
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

import numpy as np

from proactive_assets.core.model.ipinsights import IPInsightsModel
from proactive_assets.core.model.params import IPInsightsParams
from proactive_assets.core.model.training import (
    PairData,
    finish_model,
    held_out_pairs,
    negatives_per_held_out,
    prepare_pairs,
    train_full,
    train_subset,
    uses_cross_validation,
    validate,
)

#: Default number of days between full retrains (``PROACTIVE_FULL_RETRAIN_DAYS``).
FULL_RETRAIN_DAYS = 7
#: A warm model whose validation AUC is more than this below model D-1's is retrained fully.
AUC_TOLERANCE = 0.01
#: Replayed pairs of the rest of the window per new pair ...
REPLAY_PER_NEW_PAIR = 0.5
#: ... and at least this share of them, so a quiet day still revisits the window.
MIN_REPLAY_SHARE = 0.05
#: Passes over the new and replayed pairs (a full retrain makes ``params.epochs`` over everything).
WARM_EPOCHS = 1

_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class RetrainPlan:
    """How model D is to be trained: from ``previous`` (model D-1's IP Insights) or fully, and why."""

    previous: IPInsightsModel | None
    reason: str
    previous_version: str | None = None
    days_since_full: int = 0  # model D-1's: 0 when it was a full retrain
    previous_combiner: dict[str, Any] | None = None  # model D-1's evidence combiner: where its fit starts
    previous_folds: bytes | None = None  # model D-1's validation folds (``evidence.folds``): reused where shared
    # the false alerts expected by model D-1 and the models before it (``combiner.Budget.estimates``),
    # which model D's threshold averages with its own, whether it is trained warm or fully
    earlier_false_alerts: dict[str, Any] | None = None

    @property
    def warm(self) -> bool:
        return self.previous is not None


def full_plan(reason: str) -> RetrainPlan:
    """A full retrain, for ``reason``."""
    return RetrainPlan(None, reason)


def plan_retraining(
    previous: dict[str, Any] | None,
    artifact: bytes | None,
    *,
    backend: str,
    warm_capable: bool,
    params: IPInsightsParams,
    window: tuple[date, date],
    full_every: int,
    folds: bytes | None = None,
) -> RetrainPlan:
    """Warm from model D-1 (``previous``: its metadata, ``artifact``: its IP Insights weights,
    ``folds``: its validation folds) when it is usable for the model of ``window``, else a full
    retrain with the reason."""
    if not warm_capable:
        return full_plan(f"the {backend} backend always retrains fully")
    if full_every <= 1:
        return full_plan("warm start is off (PROACTIVE_FULL_RETRAIN_DAYS=1)")
    if previous is None:
        return full_plan("no model for the day before")
    expected = tuple((d - timedelta(days=1)).isoformat() for d in window)
    found = (str(previous.get("window_start")), str(previous.get("window_end")))
    if found != expected:
        return full_plan(f"the day before's model was trained on {found[0]}..{found[1]}, not {'..'.join(expected)}")
    if previous.get("backend") != backend:
        return full_plan(f"the day before's model was trained by the {previous.get('backend')} backend")
    if previous.get("hyperparameters") != params.to_dict():
        return full_plan("the hyperparameters changed since the day before's model")
    if previous.get("validation") != "held-out pairs" or "newest_first_seen" not in previous:
        return full_plan("the day before's model was cross-validated (a small window) or predates warm starts")
    if previous.get("validation_auc") is None:
        return full_plan("the day before's model has no validation AUC to compare with")
    since_full = int((previous.get("retraining") or {}).get("days_since_full", 0))
    if since_full + 1 >= full_every:
        return full_plan(
            f"{since_full + 1} days since the last full retrain (PROACTIVE_FULL_RETRAIN_DAYS={full_every})"
        )
    if artifact is None:
        return full_plan("the day before's model has no weights stored")
    try:
        model = IPInsightsModel.from_bytes(artifact)
    except (ValueError, KeyError, OSError) as exc:
        return full_plan(f"the day before's model cannot be loaded ({exc})")
    version = str(previous.get("version", model.version))
    combiner = (previous.get("evidence") or {}).get("combiner")
    return RetrainPlan(model, f"warm start from {version}", version, since_full, combiner, folds)


def train_planned(
    entities: Any,
    ips: Any,
    weights: Any,
    days: Any,
    params: IPInsightsParams,
    plan: RetrainPlan,
    day: date,
) -> IPInsightsModel:
    """Train the model of ``day`` as ``plan`` says; ``days``: each row's day (days since 1970-01-01).

    A warm model whose validation AUC falls more than ``AUC_TOLERANCE`` below model D-1's is
    replaced by a full retrain. The model's ``retraining`` metadata says which happened and why.
    """
    started = time.perf_counter()
    data = prepare_pairs(entities, ips, weights, params, days)
    reason = plan.reason
    if plan.previous is not None:
        if data.pair_first is None:
            reason = "the training rows have no day"
        elif uses_cross_validation(params, len(data.pair_e)):
            reason = "the window is small enough to cross-validate"
        else:
            model = train_warm(data, plan.previous, started)
            before = float(plan.previous.metadata["validation_auc"])
            after = model.metadata.get("validation_auc")
            if after is not None and after >= before - AUC_TOLERANCE:
                model.metadata["retraining"] = {
                    **model.metadata["retraining"],
                    "reason": plan.reason,
                    "warm_from": plan.previous_version,
                    "previous_validation_auc": before,
                    "days_since_full": plan.days_since_full + 1,
                }
                return model
            shown = "none" if after is None else f"{after:.4f}"
            reason = (
                f"the warm model's validation AUC {shown} fell more than {AUC_TOLERANCE} "
                f"below the day before's {before:.4f}"
            )
    model = train_full(data, day_number(day), started)
    model.metadata["retraining"] = {"mode": "full", "reason": reason, "days_since_full": 0}
    return model


def train_warm(data: PairData, start: IPInsightsModel, started: float) -> IPInsightsModel:
    """One warm-started model on prepared pairs (``data`` must carry first and last days)."""
    if data.pair_first is None:
        raise ValueError("a warm start needs each training row's day")
    params = data.params
    salt = int(start.metadata["holdout_salt"])
    rng = np.random.default_rng([params.seed, salt, int(data.pair_last.max())])
    held = held_out_pairs(data, params.validation_fraction, salt)
    trainable = ~held
    newest_first_seen = day_number(date.fromisoformat(start.metadata["newest_first_seen"]))
    new = trainable & (data.pair_first > newest_first_seen)
    rest = np.flatnonzero(trainable & ~new)
    n_new = int(new.sum())
    n_replay = min(len(rest), max(math.ceil(REPLAY_PER_NEW_PAIR * n_new), math.ceil(MIN_REPLAY_SHARE * len(rest))))
    fit = new.copy()
    if n_replay:
        fit[rng.choice(rest, n_replay, replace=False)] = True
    share = data.pair_rows[fit].sum() / max(int(data.pair_rows[trainable].sum()), 1)
    # as many steps per row trained on as a full retrain takes (its floor of steps scaled by the rows it covers)
    min_steps = math.ceil(params.min_steps * share * WARM_EPOCHS / params.epochs)
    fit_params = replace(params, epochs=WARM_EPOCHS, min_steps=min_steps)
    trained = train_subset(data, trainable, rng, start=start, fit=fit, fit_params=fit_params)
    k = negatives_per_held_out(params, [held])
    validation = [validate(trained, data, held, k, rng)]
    retraining = {"mode": "warm", "new_pairs": n_new, "replayed_pairs": n_replay, "epochs": WARM_EPOCHS}
    extra = {"holdout_salt": salt, "retraining": retraining}
    return finish_model(data, trained, validation, k, "held-out pairs", started, extra)


def day_number(day: date) -> int:
    """Days since 1970-01-01 (pyarrow's date32 value)."""
    return (day - _EPOCH).days
