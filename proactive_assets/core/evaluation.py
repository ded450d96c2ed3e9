"""Detection quality against a sample's ``ground_truth.json``: precision, recall and AUC.

Shared by the demo and the detection benchmark, so the README's figures are the ones a user
reproduces with ``proactive-assets demo``.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from proactive_assets.core.model import roc_auc

KEY = ["day", "entity", "source_ip"]


@dataclass(frozen=True)
class Evaluation:
    days_scored: int
    alerts: int
    true_positives: int
    suspicious_scored: int
    benign_novelties_scored: int
    benign_novelties_alerted: int
    auc: float | None

    @property
    def precision(self) -> float:
        return self.true_positives / self.alerts if self.alerts else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.suspicious_scored if self.suspicious_scored else 0.0

    def lines(self) -> list[str]:
        auc = f"{self.auc:.3f}" if self.auc is not None else "n/a"
        return [
            f"days scored:          {self.days_scored}",
            f"alerts:               {self.alerts}",
            f"suspicious pairs:     {self.suspicious_scored} (on scored days)",
            f"true positives:       {self.true_positives}",
            f"precision:            {self.precision:.3f}",
            f"recall:               {self.recall:.3f}",
            f"benign novelties:     {self.benign_novelties_alerted} of {self.benign_novelties_scored} alerted",
            f"AUC (suspicious vs all other scored pairs): {auc}",
        ]


def load_ground_truth(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(suspicious, benign_novelties) as frames keyed by day, entity, source_ip."""
    truth = json.loads(Path(path).read_text())

    def frame(entries: list[dict]) -> pd.DataFrame:
        rows = [{"day": e["day"], "entity": e["entity"], "source_ip": e["source_ip"]} for e in entries]
        return pd.DataFrame(rows, columns=KEY).drop_duplicates()

    return frame(truth.get("suspicious", [])), frame(truth.get("benign_novelties", []))


def _keys(frame: pd.DataFrame) -> set[tuple[str, str, str]]:
    return set(zip(frame["day"].astype(str), frame["entity"], frame["source_ip"], strict=True))


def evaluate(
    insights: pd.DataFrame, alerts: pd.DataFrame, suspicious: pd.DataFrame, benign: pd.DataFrame
) -> Evaluation:
    """Score the run: only days that were scored count, so warm-up days do not lower recall."""
    scored_days = set(insights["day"].astype(str)) if len(insights) else set()
    scored = _keys(insights) if len(insights) else set()
    alerted = _keys(alerts) if len(alerts) else set()
    bad = {k for k in _keys(suspicious) if k[0] in scored_days} if len(suspicious) else set()
    good_new = {k for k in _keys(benign) if k[0] in scored_days} if len(benign) else set()
    auc = None
    if len(insights) and bad & scored:
        keys = list(zip(insights["day"].astype(str), insights["entity"], insights["source_ip"], strict=True))
        label = np.array([k in bad for k in keys])
        values = insights["insight"].to_numpy(dtype=float)
        if label.any() and (~label).any():
            auc = float(roc_auc(values[label], values[~label]))
    return Evaluation(
        days_scored=len(scored_days),
        alerts=len(alerted),
        true_positives=len(alerted & bad),
        suspicious_scored=len(bad),
        benign_novelties_scored=len(good_new & scored),
        benign_novelties_alerted=len(good_new & alerted),
        auc=auc,
    )
