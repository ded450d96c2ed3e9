"""Model backends: who trains the IP Insights model and scores with it, behind one interface.

A backend trains a window's training set into a ``TrainedModel`` (JSON-able metadata, plus the
artifact bytes when the model lives with us) and turns a stored model back into a ``Scorer``.
The assets never branch on the backend: ``create_backend`` picks by name, and a stored model
names the backend that trained it. To add one (say, a model served elsewhere), implement
``ModelBackend`` in a module here and add it to ``BACKENDS``.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

import pyarrow as pa

from proactive_assets.config import Settings
from proactive_assets.core.model import IPInsightsParams
from proactive_assets.core.model.warm import RetrainPlan
from proactive_assets.core.scoring import Scorer


@dataclass
class TrainedModel:
    """A trained model: its metadata (``version``, ``backend``, ``validation_auc``, ``calibration``...),
    the artifact bytes when the model's weights live in the warehouse, and the index of the window
    it judges days against (``evidence.window``; kept with the model whichever backend trained it),
    and its validation folds (``evidence.folds``: what the next day's warm start reuses)."""

    metadata: dict[str, Any]
    artifact: bytes | memoryview | None = None  # (memoryview: read from the warehouse, aligned)
    window: bytes | memoryview | None = None
    folds: bytes | memoryview | None = None

    @property
    def version(self) -> str:
        return str(self.metadata["version"])

    @property
    def backend(self) -> str:
        return str(self.metadata.get("backend", "local"))

    @property
    def validation_auc(self) -> float | None:
        value = self.metadata.get("validation_auc")
        return None if value is None else float(value)


class ModelBackend(Protocol):
    """Train a window, and score with a model this backend trained."""

    name: str

    def train(
        self, training_set: pa.Table, params: IPInsightsParams, day: date, plan: RetrainPlan | None = None
    ) -> TrainedModel:
        """Train on the window's rows; ``plan`` says whether to warm-start from model D-1 (a backend
        without ``warm_start = True`` retrains fully and says so in ``retraining``)."""
        ...

    def scorer(self, model: TrainedModel, training_set: Callable[[], pa.Table]) -> Scorer:
        """A scorer for ``model``; ``training_set()`` reads the window it was trained on, if needed."""
        ...

    def describe(self, model: TrainedModel) -> dict[str, Any]:
        """What a person auditing the model wants shown beside it (job names, endpoint...)."""
        ...


def _local(settings: Settings) -> ModelBackend:
    from proactive_assets.core.backends.local import LocalBackend

    return LocalBackend()


def _sagemaker(settings: Settings) -> ModelBackend:
    from proactive_assets.core.backends.sagemaker import SageMakerBackend

    return SageMakerBackend.from_settings(settings)


#: Backend name (``PROACTIVE_MODEL_BACKEND``) -> how to build it from the settings.
BACKENDS: dict[str, Callable[[Settings], ModelBackend]] = {"local": _local, "sagemaker": _sagemaker}


def create_backend(name: str, settings: Settings) -> ModelBackend:
    """The backend called ``name``; a ``ValueError`` naming the known ones otherwise."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown model backend {name!r}; known: {', '.join(BACKENDS)}") from None
    return factory(settings)
