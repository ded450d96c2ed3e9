"""The evidence combined into ``insight``: a logistic fit on the organisation's own recent days.

Self-supervised and temporal: the positives are the real pairs of the window's last days (with
their genuinely new addresses, which is what benign churn looks like here), the negatives are
synthetic attacker-like pairs for the same identities and days (``negatives.py``), weighted to
the same total. ``insight`` is then "how unlikely this pair is the identity's own" on the same
scale for every model version. The threshold comes from an alert budget: the smallest insight
whose expected false alerts - measured on the real pairs of those days, out of fold - stay within
the budget per 100 active identities a day.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from proactive_assets.core.evidence.features import FEATURES

#: Ridge penalty on the coefficients (features are 0..~3 in scale): small, only for stability.
L2 = 1e-2
#: No threshold below this: a pair must look more like an attacker's than its identity's own.
MIN_THRESHOLD = 0.5


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_logistic(x: np.ndarray, y: np.ndarray, weight: np.ndarray, l2: float = L2, steps: int = 50) -> np.ndarray:
    """Weighted L2-regularised logistic regression by Newton's method; returns [intercept, coefficients...]."""
    design = np.hstack([np.ones((len(x), 1)), x])
    beta = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2 * weight.sum())
    penalty[0] = 0.0
    for _ in range(steps):
        p = _sigmoid(design @ beta)
        gradient = design.T @ (weight * (p - y)) + penalty * beta
        hessian = (design * (weight * p * (1 - p))[:, None]).T @ design + np.diag(penalty) + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.max(np.abs(step)) < 1e-8:
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

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Per pair and feature, what the feature adds to the log-odds (for explanations)."""
        return x * self.vector

    def to_dict(self) -> dict[str, Any]:
        return {"intercept": self.intercept, "coefficients": self.coefficients, "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "Combiner":
        return cls(
            float(doc["intercept"]), {k: float(v) for k, v in doc["coefficients"].items()}, doc.get("fitted_on", {})
        )


def fit_combiner(x: np.ndarray, suspicious: np.ndarray, fitted_on: dict[str, Any] | None = None) -> Combiner:
    """Fit on real (``suspicious`` False) and synthetic (True) pairs, the two classes weighted equally."""
    n_pos, n_neg = int((~suspicious).sum()), int(suspicious.sum())
    weight = np.where(suspicious, 0.5 / max(n_neg, 1), 0.5 / max(n_pos, 1)) * len(x)
    beta = fit_logistic(x, suspicious.astype(float), weight)
    return Combiner(
        float(beta[0]), {name: float(b) for name, b in zip(FEATURES, beta[1:], strict=True)}, fitted_on or {}
    )


@dataclass(frozen=True)
class Budget:
    """The default threshold and what it is expected to cost and catch."""

    threshold: float
    budget_per_100: float
    expected_false_alerts_per_100: float
    expected_recall: float
    identity_days: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "budget_per_100_identities_a_day": self.budget_per_100,
            "expected_false_alerts_per_100_identities_a_day": self.expected_false_alerts_per_100,
            "expected_recall_on_synthetic_attacks": self.expected_recall,
            "identity_days": self.identity_days,
        }


def budget_threshold(real: np.ndarray, synthetic: np.ndarray, identity_days: int, per_100: float) -> Budget:
    """The smallest threshold whose false alerts on ``real`` stay within ``per_100`` per 100 identity-days.

    ``real`` are out-of-fold insights of the real pairs of the validation days (presumed benign),
    ``synthetic`` those of the synthetic attacks; ``identity_days`` counts (day, identity) pairs.
    """
    allowed = per_100 / 100.0 * max(identity_days, 1)
    ordered = np.sort(real)[::-1]
    # Alerting on the k highest real pairs costs k false alerts; take the largest k within budget.
    k = int(np.floor(allowed))
    if k >= len(ordered):
        threshold = MIN_THRESHOLD
    else:
        threshold = float(np.nextafter(ordered[k], 1.0)) if k >= 0 else 1.0
    threshold = min(max(threshold, MIN_THRESHOLD), 1.0)
    false_alerts = int((real >= threshold).sum())
    recall = float((synthetic >= threshold).mean()) if len(synthetic) else float("nan")
    return Budget(threshold, per_100, 100.0 * false_alerts / max(identity_days, 1), recall, identity_days)
