"""How well dot products separate normal from suspicious pairs, and how they become insights.

``roc_auc`` and ``roc_points`` measure the separation (attacks have low dot products);
``fit_platt`` maps a dot product to a probability of being suspicious, and
``calibrated_insight`` applies that map, so a threshold on ``insight`` means the same thing
from one model version (and backend) to the next.
"""

import math
from typing import Any

import numpy as np


def roc_auc(pos_scores: Any, neg_scores: Any) -> float:
    """ROC AUC = P(pos > neg) + P(tie) / 2 (Mann-Whitney); NaN if a side is empty.

    Both sides sorted, then each positive's negatives below it and tied with it counted (integers:
    the same value the rank sum gave, in half its time at a million scores)."""
    pos = np.sort(np.asarray(pos_scores, dtype=np.float64).ravel())
    neg = np.sort(np.asarray(neg_scores, dtype=np.float64).ravel())
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    below = np.searchsorted(neg, pos, side="left")
    tied = np.searchsorted(neg, pos, side="right") - below
    return float((int(below.sum()) + 0.5 * int(tied.sum())) / (len(pos) * len(neg)))


def roc_points(normal_dot: np.ndarray, attack_dot: np.ndarray, n_points: int = 50) -> dict:
    """ROC of flagging low dot products (attacks = positives), downsampled to ~n_points."""
    normal = np.sort(np.asarray(normal_dot, dtype=np.float64))
    attack = np.sort(np.asarray(attack_dot, dtype=np.float64))
    thresholds = np.unique(np.concatenate([normal, attack]))
    if len(thresholds) > n_points:
        thresholds = np.unique(np.quantile(thresholds, np.linspace(0, 1, n_points)))
    # flag when dot <= threshold
    fpr = np.searchsorted(normal, thresholds, side="right") / max(len(normal), 1)
    tpr = np.searchsorted(attack, thresholds, side="right") / max(len(attack), 1)
    fpr = np.r_[0.0, fpr, 1.0]
    tpr = np.r_[0.0, tpr, 1.0]
    dots = np.r_[-np.inf, thresholds, np.inf]
    return {
        "fpr": [round(float(v), 6) for v in fpr],
        "tpr": [round(float(v), 6) for v in tpr],
        "dot_product_threshold": [None if not np.isfinite(v) else float(v) for v in dots],
    }


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, written with tanh so that no input overflows."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_platt(dot: np.ndarray, is_suspicious: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Logistic fit P(suspicious | dot) = sigmoid(slope * dot + intercept), slope < 0.

    Platt's smoothed targets and a few Newton steps; if the data do not support a decreasing
    map (an untrained model), falls back to ``sigmoid(-dot)``.
    """
    x = np.asarray(dot, dtype=np.float64)
    y = np.asarray(is_suspicious, dtype=bool)
    sw = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    n_pos, n_neg = float(sw[y].sum()), float(sw[~y].sum())
    if n_pos <= 0 or n_neg <= 0:
        return -1.0, 0.0
    t = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    scale = float(np.std(x)) or 1.0
    xs = x / scale
    a, b = -1.0, 0.0
    for _ in range(100):
        p = sigmoid(a * xs + b)
        w = sw * np.maximum(p * (1 - p), 1e-12)
        r = sw * (p - t)
        ga, gb = float((r * xs).sum()), float(r.sum())
        haa = float((w * xs * xs).sum()) + 1e-9
        hab = float((w * xs).sum())
        hbb = float(w.sum()) + 1e-9
        det = haa * hbb - hab * hab
        if det <= 0:
            break
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        step = 1.0
        loss0 = _logloss(a, b, xs, t, sw)
        while step > 1e-6 and _logloss(a - step * da, b - step * db, xs, t, sw) > loss0:
            step /= 2
        a, b = a - step * da, b - step * db
        if abs(step * da) < 1e-10 and abs(step * db) < 1e-10:
            break
    slope = a / scale
    if not math.isfinite(slope) or not math.isfinite(b) or slope >= -1e-6:
        return -1.0, 0.0
    return float(slope), float(b)


def _logloss(a: float, b: float, x: np.ndarray, t: np.ndarray, w: np.ndarray) -> float:
    """Weighted cross-entropy of ``sigmoid(a x + b)`` against targets ``t`` (``fit_platt``'s line search)."""
    z = a * x + b
    return float((w * (np.logaddexp(0, z) - t * z)).sum())


def calibrated_insight(dot: Any, slope: float, intercept: float) -> np.ndarray:
    """``sigmoid(slope * dot + intercept)`` without overflow; NaN in, NaN out."""
    return sigmoid(slope * np.asarray(dot, dtype=np.float64) + intercept)
