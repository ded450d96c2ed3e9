"""IP Insights hyperparameters: SageMaker's nine, the local model's own, and their legacy values.

The first nine fields have SageMaker IP Insights' names and meanings, so a SageMaker training
job is configured from the same ``IPInsightsParams`` as the local model. Settings added after
the first artifacts were written have a legacy value that reproduces the older code
(``LEGACY_VALUES``): an artifact without them loads with those values, and a setting at its
legacy value stays out of the content version, so old artifacts keep matching their version.
"""

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

# the hyperparameters a SageMaker ipinsights training job takes, in SageMaker's names
_SAGEMAKER_NAMES = (
    "num_entity_vectors",
    "vector_dim",
    "epochs",
    "learning_rate",
    "mini_batch_size",
    "num_ip_encoder_layers",
    "random_negative_sampling_rate",
    "shuffled_negative_sampling_rate",
    "weight_decay",
)


@dataclass(frozen=True)
class IPInsightsParams:
    """Hyperparameters; the first nine have SageMaker IP Insights' names and meanings."""

    num_entity_vectors: int = 1_000_000
    vector_dim: int = 32
    epochs: int = 3
    learning_rate: float = 0.01
    mini_batch_size: int = 5000
    num_ip_encoder_layers: int = 0
    random_negative_sampling_rate: int = 1
    shuffled_negative_sampling_rate: int = 1
    weight_decay: float = 1e-5
    # local-only settings
    seed: int = 0
    num_ip_vectors: int = 262_144
    ipv4_prefixes: tuple[int, ...] = (8, 16, 24, 32)
    ipv6_prefixes: tuple[int, ...] = (16, 32, 48, 64, 128)
    validation_fraction: float = 0.1
    weight_power: float = 0.5
    max_validation_pairs: int = 200_000
    # local-only, added for small training sets (docs/ip_insights_model.md, "Small training
    # sets"); an artifact written before a setting existed loads with its LEGACY_VALUES entry
    min_steps: int = 200
    unseen_prefix_vectors: bool = True
    prefix_dropout: float = 0.25
    prefix_dropout_levels: int = 2
    other_version_negatives: float = 0.2
    cv_folds: int = 5
    cv_max_pairs: int = 2000

    def __post_init__(self) -> None:
        object.__setattr__(self, "ipv4_prefixes", tuple(int(p) for p in self.ipv4_prefixes))
        object.__setattr__(self, "ipv6_prefixes", tuple(int(p) for p in self.ipv6_prefixes))
        checks = [
            (self.num_entity_vectors >= 1, "num_entity_vectors >= 1"),
            (self.vector_dim >= 1, "vector_dim >= 1"),
            (self.epochs >= 1, "epochs >= 1"),
            (self.learning_rate > 0, "learning_rate > 0"),
            (self.mini_batch_size >= 1, "mini_batch_size >= 1"),
            (self.num_ip_encoder_layers >= 0, "num_ip_encoder_layers >= 0"),
            (self.random_negative_sampling_rate >= 0, "random_negative_sampling_rate >= 0"),
            (self.shuffled_negative_sampling_rate >= 0, "shuffled_negative_sampling_rate >= 0"),
            (
                self.random_negative_sampling_rate + self.shuffled_negative_sampling_rate >= 1,
                "at least one negative per positive",
            ),
            (self.weight_decay >= 0, "weight_decay >= 0"),
            (self.num_ip_vectors >= 1, "num_ip_vectors >= 1"),
            (0 <= self.validation_fraction < 1, "0 <= validation_fraction < 1"),
            (self.weight_power >= 0, "weight_power >= 0"),
            (self.min_steps >= 0, "min_steps >= 0"),
            (0 <= self.prefix_dropout < 1, "0 <= prefix_dropout < 1"),
            (self.prefix_dropout_levels >= 1, "prefix_dropout_levels >= 1"),
            (0 <= self.other_version_negatives <= 1, "0 <= other_version_negatives <= 1"),
            (self.cv_folds >= 0 and self.cv_max_pairs >= 0, "cv_folds, cv_max_pairs >= 0"),
            (_prefixes_ok(self.ipv4_prefixes, 32), "ipv4_prefixes: increasing, in 1..32"),
            (_prefixes_ok(self.ipv6_prefixes, 128), "ipv6_prefixes: increasing, in 1..128"),
        ]
        bad = [text for ok, text in checks if not ok]
        if bad:
            raise ValueError("invalid IPInsightsParams: " + "; ".join(bad))

    def to_sagemaker_hyperparameters(self) -> dict[str, str]:
        """The SageMaker-valid hyperparameters as strings, ready for a training job."""
        return {name: _sagemaker_text(getattr(self, name)) for name in _SAGEMAKER_NAMES}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["ipv4_prefixes"] = list(self.ipv4_prefixes)
        out["ipv6_prefixes"] = list(self.ipv6_prefixes)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "IPInsightsParams":
        """Inverse of ``to_dict``, for artifacts: unknown keys are ignored, and a setting added
        after the artifact was written takes the value that reproduces the older code
        (``LEGACY_VALUES``), so old artifacts load and score as they did."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**LEGACY_VALUES, **{k: v for k, v in values.items() if k in names}})


# Settings added after the first artifacts, with the values that reproduce those artifacts'
# training and scoring. A setting at its legacy value is left out of a model's content version,
# so an artifact written before the setting existed still matches its version when loaded.
LEGACY_VALUES: dict[str, Any] = {
    "min_steps": 0,
    "unseen_prefix_vectors": False,
    "prefix_dropout": 0.0,
    "prefix_dropout_levels": 1,
    "other_version_negatives": 0.0,
    "cv_folds": 0,
    "cv_max_pairs": 0,
}


def versioned_params(params: IPInsightsParams) -> dict[str, Any]:
    """``params.to_dict()`` without the later settings that are at their legacy values."""
    return {k: v for k, v in params.to_dict().items() if k not in LEGACY_VALUES or v != LEGACY_VALUES[k]}


def _prefixes_ok(prefixes: tuple[int, ...], bits: int) -> bool:
    return (
        len(prefixes) >= 1
        and all(1 <= p <= bits for p in prefixes)
        and all(a < b for a, b in itertools.pairwise(prefixes))
    )


def _sagemaker_text(value: Any) -> str:
    """A hyperparameter value as SageMaker reads it (floats by ``repr``: no digits lost)."""
    if isinstance(value, float):
        return repr(value)
    return str(value)
