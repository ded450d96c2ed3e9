"""The evidence combined into ``insight``: a logistic fit on the organisation's own recent days.

Self-supervised and temporal: the positives are the real pairs of the window's last days (with
their genuinely new addresses, which is what benign churn looks like here), the negatives are
synthetic attacker-like pairs for the same identities and days (``negatives.py``), weighted to
the same total. ``insight`` is then "how unlikely this pair is the identity's own" on the same
scale for every model version. The threshold comes from an alert budget: the smallest insight
whose expected false alerts - measured on the real pairs of those days, out of fold - stay within
the budget per 100 active identities a day.
"""

import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np

from proactive_assets.core.evidence.features import FEATURES

#: Ridge penalty on the coefficients (features are 0..~3 in scale): small, only for stability.
L2 = 1e-3
#: Pull towards the hand-set prior combiner, in pairs' worth of evidence: it decides a short window
#: (a few hundred validation pairs), a long one outweighs it.
PRIOR_STRENGTH = 50.0
#: No threshold below this: a pair must look more like an attacker's than its identity's own.
MIN_THRESHOLD = 0.5
#: The default threshold keeps the false alerts expected by the models of this many days, averaged,
#: within the budget: this model's estimate and, where they exist, those of the models of the days
#: just before it. Each estimate rests on a few tail pairs, so one model's threshold jumps from day
#: to day (0.50-0.93 on the realistic benchmark's seeds); averaged, the same budget catches more.
AVERAGED_MODELS = 3
#: The logistic fit keeps its Hessian after a Newton step no larger than this in any coefficient.
HESSIAN_REUSE = 0.005
#: Rows per block of the logistic fit (a block's design matrix, ~6 MB, stays in cache; the ~9,000
#: rows of a realistic window's folds are one block).
_BLOCK = 16384


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    weight: np.ndarray,
    l2: float = L2,
    steps: int = 50,
    prior: np.ndarray | None = None,
    prior_strength: float = 0.0,
    start: np.ndarray | None = None,
    tolerance: float = 1e-5,
) -> np.ndarray:
    """Weighted regularised logistic regression by Newton's method; returns [intercept, coefficients...].

    The coefficients are pulled towards zero (``l2`` per unit of weight) and towards ``prior``
    (``prior_strength`` in all, whatever the weight): a MAP fit that a little data barely moves.
    ``start`` (a nearby fit) saves most of the Newton steps. The fit stops after a step smaller than
    ``tolerance`` in every coefficient: Newton's convergence is quadratic, so the default leaves
    them within ~1e-10 of the optimum, and 1e-3 within ~1e-6 (one step fewer).
    """
    beta = np.zeros(x.shape[1] + 1) if start is None else np.array(start, np.float64)
    centre = np.zeros(len(beta)) if prior is None else np.r_[0.0, prior]
    strength = 0.0 if prior is None else prior_strength
    ridge = l2 * weight.sum()
    penalty = np.full(len(beta), ridge + strength)
    penalty[0] = 0.0
    target = strength * centre / np.maximum(penalty, 1e-12)
    # The rows a block at a time, the block's design matrix in cache: a step reads ``x`` once instead
    # of building, scaling and reading a float64 copy of all of it (a million rows: 0.2 s a step, not 0.4).
    # The Hessian's product, most of a step, is taken in float32 (x is float32 already): it only sets
    # the step's size and direction, and the fit ends where the float64 gradient is zero all the same
    # (a million rows: 0.05 s a step, not 0.12).
    block = np.empty((min(len(x), _BLOCK), len(beta)))
    scaled = np.empty(block.shape, np.float32)
    # Newton's method from a start far from the optimum (model D-1's combiner) can overshoot and
    # diverge (a realistic benchmark's model once ended with an intercept of -2e12): a step after
    # which the objective grew is halved and tried again instead.
    last: tuple[float, np.ndarray, np.ndarray] | None = None  # (objective, coefficients, step) before the last step
    # Once the steps are small the Hessian barely changes: the last one computed serves again (a pass
    # without its product costs a third), and the convergence stays all but quadratic.
    hessian = np.zeros((len(beta), len(beta)))
    built = False  # the design matrix of the only block (the fit's rows up to ``_BLOCK``), made once
    for _ in range(steps):
        gradient = penalty * (beta - target)
        fresh = last is None or np.max(np.abs(last[2])) > HESSIAN_REUSE
        if fresh:
            hessian = np.diag(penalty) + 1e-9 * np.eye(len(beta))
        objective = 0.5 * float(np.sum(penalty * (beta - target) ** 2))
        for lo in range(0, len(x), _BLOCK):
            rows = slice(lo, lo + _BLOCK)
            design = block[: len(x[rows])]
            if not built:
                design[:, 0] = 1.0
                design[:, 1:] = x[rows]
                built = len(x) <= _BLOCK
            z = design @ beta
            p = _sigmoid(z)
            w = weight[rows]
            objective += float(w @ (np.logaddexp(0.0, z) - y[rows] * z))  # the weighted log-loss
            gradient += design.T @ (w * (p - y[rows]))
            if fresh:  # X' W X as (sqrt(W) X)' (sqrt(W) X): one contiguous product, of x scaled in float32
                root = scaled[: len(design)]
                root[:, 0] = np.sqrt(w * p * (1 - p))
                np.multiply(x[rows], root[:, :1], out=root[:, 1:])
                hessian += root.T @ root
        if last is not None and not objective <= last[0] + 1e-12 * abs(last[0]):
            beta = last[1] - last[2] / 2  # overshot: half the step from where it was taken
            last = (last[0], last[1], last[2] / 2)
            continue
        step = np.linalg.solve(hessian, gradient)
        last = (objective, beta.copy(), step)
        beta = beta - step
        if np.max(np.abs(step)) < tolerance:
            break
    return beta


@dataclass
class Combiner:
    """Coefficients over ``FEATURES`` (JSON in the model's metadata)."""

    intercept: float
    coefficients: dict[str, float]
    fitted_on: dict[str, Any] = field(default_factory=dict)

    @property
    def vector(self) -> np.ndarray:
        return np.array([self.coefficients.get(name, 0.0) for name in FEATURES])

    def insight(self, x: np.ndarray) -> np.ndarray:
        return _sigmoid(self.intercept + x @ self.vector)

    def to_dict(self) -> dict[str, Any]:
        return {"intercept": self.intercept, "coefficients": self.coefficients, "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "Combiner":
        return cls(
            float(doc["intercept"]), {k: float(v) for k, v in doc["coefficients"].items()}, doc.get("fitted_on", {})
        )


def fit_combiner(
    x: np.ndarray,
    suspicious: np.ndarray,
    fitted_on: dict[str, Any] | None = None,
    prior: "Combiner | None" = None,
    start: "Combiner | None" = None,
    prior_strength: float = PRIOR_STRENGTH,
    tolerance: float = 1e-5,
    left_out: np.ndarray | None = None,
) -> Combiner:
    """Fit on real (``suspicious`` False) and synthetic (True) pairs, the two classes weighted equally.

    With a ``prior``, a short window's fit stays near it (``PRIOR_STRENGTH``); Newton's method
    starts from ``start`` when given (model D-1's combiner on a warm day), and stops at ``tolerance``
    (``fit_logistic``). ``left_out``: rows that weigh nothing, as if they were not in ``x`` (a copy
    of a tutorial-scale window's rows without them is 180 MB).
    """
    counted = ~left_out if left_out is not None else np.ones(len(x), bool)
    n_pos, n_neg = int((~suspicious & counted).sum()), int((suspicious & counted).sum())
    weight = np.where(suspicious, 0.5 / max(n_neg, 1), 0.5 / max(n_pos, 1)) * (n_pos + n_neg) * counted
    centre = None if prior is None else prior.vector
    initial = None if start is None else np.r_[start.intercept, start.vector]
    beta = fit_logistic(
        x,
        suspicious.astype(float),
        weight,
        prior=centre,
        prior_strength=prior_strength,
        start=initial,
        tolerance=tolerance,
    )
    return Combiner(
        float(beta[0]), {name: float(b) for name, b in zip(FEATURES, beta[1:], strict=True)}, fitted_on or {}
    )


@dataclass(frozen=True)
class Budget:
    """The default threshold and what it is expected to cost and catch.

    ``estimates``: the false-alert estimates averaged for the threshold, by the day of the model that
    made each (this model's and those of the days before it); the next model takes them on."""

    threshold: float
    budget_per_100: float
    expected_false_alerts_per_100: float
    expected_recall: float
    identity_days: int
    own_threshold: float  # from this model's own validation days alone
    estimates: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "budget_per_100_identities_a_day": self.budget_per_100,
            "expected_false_alerts_per_100_identities_a_day": self.expected_false_alerts_per_100,
            "expected_recall_on_synthetic_attacks": self.expected_recall,
            "identity_days": self.identity_days,
            "own_threshold": self.own_threshold,
            "averaged_models": sorted(self.estimates),
            "false_alert_estimates": self.estimates,
        }


#: The tail of the real pairs' scores is fitted above this quantile of them: a wide base keeps the
#: threshold steady from one model to the next (from the 95th percentile, with the median's rate,
#: it swung 0.50-0.98 between consecutive days; ``docs/detector.md``).
TAIL_QUANTILE = 0.9
#: Exceedances above this quantile of them count only as "at least this large" (censored).
CENSORED = 0.8
#: ... and never on fewer than this many pairs (otherwise the plain count is used).
MIN_TAIL = 20


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def _logit_of(p: float) -> float:
    """``_logit`` of one threshold (the budget's search takes ~60; numpy's call costs ~100x this)."""
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


def _sorted_quantile(values: np.ndarray, q: float) -> float:
    """``np.quantile(values, q)`` (its linear method, the same float) of values already sorted, without
    its partition of them and its ~50 us of Python a call."""
    virtual = (len(values) - 1) * q
    below = math.floor(virtual)
    a, b = float(values[below]), float(values[min(below + 1, len(values) - 1)])
    t, diff = virtual - below, b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


class FalseAlertModel:
    """How many of the real pairs' scores a threshold is expected to flag, the top of the tail smoothed.

    The validation days may hold real attacks, which sit at the very top; counting them as false
    alerts would push the threshold above every attack like them. So above the ``TAIL_QUANTILE``
    the log-odds are modelled as exponential, as peaks-over-threshold does; below it the count is
    exact. The rate is the maximum-likelihood one with the largest exceedances censored at the
    ``CENSORED`` quantile: attacks, and pairs the combiner saturates at 1, sit there, and count as
    "at least this far", so they cannot stretch the tail (with a plain mean, the tutorial scale's
    threshold let through a 25th of its budget), while every exceedance still counts (the median
    alone left the threshold noisy).
    """

    def __init__(self, real: np.ndarray) -> None:
        self.z = np.sort(_logit(real))
        self.u = float("inf")
        if len(self.z) >= MIN_TAIL / (1 - TAIL_QUANTILE):
            u = _sorted_quantile(self.z, TAIL_QUANTILE)
            exceed = self.z[self.z > u] - u  # sorted, as z is
            cap = _sorted_quantile(exceed, CENSORED) if len(exceed) else 0.0
            observed, exposure = int((exceed < cap).sum()), float(np.minimum(exceed, cap).sum())
            if len(exceed) >= MIN_TAIL and observed and exposure > 0:
                self.u, self.count, self.rate = u, len(exceed), observed / exposure

    @property
    def smoothed(self) -> bool:
        """Whether the top of the tail is modelled (enough pairs) rather than counted."""
        return bool(np.isfinite(self.u))

    def expected(self, t: float) -> float:
        """The real pairs expected at or above the threshold whose log-odds is ``t``."""
        if t > self.u:
            return self.count * math.exp(-self.rate * (t - self.u))
        return float(len(self.z) - self.z.searchsorted(t, side="left"))

    def summary(self) -> dict[str, Any]:
        """What ``expected`` needs at thresholds of at least ``MIN_THRESHOLD``, for a later model to
        average (``from_summary``): the tail's parameters, and the log-odds at or above it that are
        counted (none above the tail's start: a large day's summary is a few numbers)."""
        top = self.z[(self.z >= _logit_of(MIN_THRESHOLD)) & (self.z <= self.u)]
        tail = {"u": self.u, "count": self.count, "rate": self.rate} if self.smoothed else {}
        return {**tail, "top": [round(float(v), 6) for v in top]}

    @classmethod
    def from_summary(cls, doc: dict[str, Any]) -> "FalseAlertModel":
        model = cls.__new__(cls)
        model.z, model.u = np.sort(np.asarray(doc.get("top", []), dtype=float)), float("inf")
        if "u" in doc:  # the ``count`` pairs above the tail's start: counted there by the tail alone
            model.u, model.count, model.rate = float(doc["u"]), int(doc["count"]), float(doc["rate"])
            model.z = np.r_[model.z, np.full(model.count, np.inf)]
        return model


class DayRates:
    """One model's expected false alerts per identity-day: its validation days' tails summed."""

    def __init__(self, models: list[FalseAlertModel], identities: int) -> None:
        self.models, self.identities = models, max(identities, 1)

    @classmethod
    def of(cls, real_by_day: list[np.ndarray], identities_by_day: list[int]) -> "DayRates":
        """Each day's tail modelled on its own (days differ: weekends, a VPN egress moving for
        everyone at once), or, when a day has too few pairs for that, one tail over all of them
        (so a real attack on a validation day is not counted as a whole false alert of its own)."""
        models = [FalseAlertModel(real) for real in real_by_day]
        if len(models) > 1 and not all(m.smoothed for m in models):
            models = [FalseAlertModel(np.concatenate(real_by_day))]
        return cls(models, sum(identities_by_day))

    def rate(self, t: float) -> float:
        """Expected false alerts per identity-day at the threshold whose log-odds is ``t``."""
        return sum(m.expected(t) for m in self.models) / self.identities

    def summary(self) -> dict[str, Any]:
        return {"identities": self.identities, "days": [m.summary() for m in self.models]}

    @classmethod
    def from_summary(cls, doc: dict[str, Any]) -> "DayRates":
        return cls([FalseAlertModel.from_summary(d) for d in doc["days"]], int(doc["identities"]))


def budget_threshold(
    real_by_day: list[np.ndarray],
    identities_by_day: list[int],
    synthetic: np.ndarray,
    per_100: float,
    day: date | None = None,
    earlier: dict[str, dict[str, Any]] | None = None,
) -> Budget:
    """The smallest threshold whose expected false alerts stay within ``per_100`` per 100 identities a day.

    ``real_by_day`` are the insights of each validation day's real pairs (presumed benign,
    see ``FalseAlertModel``) and ``identities_by_day`` how many identities were active that day;
    ``synthetic`` the insights of the synthetic attacks. ``earlier``: the estimates of the models of
    the days before ``day`` (``Budget.estimates`` of model D-1), averaged with this one's over
    ``AVERAGED_MODELS`` days. Never below ``MIN_THRESHOLD``.
    """
    own = DayRates.of(real_by_day, identities_by_day)
    before = {(day - timedelta(days=k)).isoformat() for k in range(1, AVERAGED_MODELS)} if day else set()
    kept = {d: rates for d, rates in _readable(earlier or {}).items() if d in before}
    estimates = {d: rates.summary() for d, rates in kept.items()}
    if day:
        estimates[day.isoformat()] = own.summary()
    averaged = [own, *kept.values()]

    def rate(t: float) -> float:
        return sum(r.rate(t) for r in averaged) / len(averaged)

    threshold = _lowest(rate, per_100)
    recall = float((synthetic >= threshold).mean()) if len(synthetic) else float("nan")
    return Budget(
        threshold,
        per_100,
        100.0 * rate(_logit_of(threshold)),
        recall,
        int(sum(identities_by_day)),
        _lowest(own.rate, per_100) if kept else threshold,
        estimates,
    )


def _readable(estimates: dict[str, Any]) -> dict[str, DayRates]:
    """The estimates a model D-1 recorded that can be read (one of another format is left out: it
    costs the average a model, never the day)."""
    out = {}
    for day, doc in estimates.items():
        try:
            out[str(day)] = DayRates.from_summary(doc)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return out


def _lowest(rate: Any, per_100: float) -> float:
    """The least threshold (at least ``MIN_THRESHOLD``) whose ``rate`` (of its log-odds) is within ``per_100``."""
    allowed = per_100 / 100.0

    def within(threshold: float) -> bool:
        return rate(_logit_of(threshold)) <= allowed

    low, high = MIN_THRESHOLD, 1.0 - 1e-9
    if not within(low):  # the expected rate falls as the threshold rises: bisect
        for _ in range(60):
            middle = 0.5 * (low + high)
            low, high = (low, middle) if within(middle) else (middle, high)
        low = high
    return float(low)
