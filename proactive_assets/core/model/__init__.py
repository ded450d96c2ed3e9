"""The local IP Insights model: hyperparameters, metrics and calibration, the model, its training.

``train_ip_insights`` learns an ``IPInsightsModel`` from (entity, ip) rows; its ``score`` gives a
``ScoreResult`` per pair. ``fit_platt`` and ``calibrated_insight`` turn dot products into
insights for either backend. Design and measurements: docs/ip_insights_model.md.
"""

from proactive_assets.core.model.ipinsights import IPInsightsModel, ScoreResult
from proactive_assets.core.model.metrics import calibrated_insight, fit_platt, roc_auc, roc_points
from proactive_assets.core.model.params import IPInsightsParams
from proactive_assets.core.model.training import train_ip_insights

__all__ = [
    "IPInsightsModel",
    "IPInsightsParams",
    "ScoreResult",
    "calibrated_insight",
    "fit_platt",
    "roc_auc",
    "roc_points",
    "train_ip_insights",
]
