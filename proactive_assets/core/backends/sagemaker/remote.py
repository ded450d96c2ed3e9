"""The local model's semantics for a model trained on SageMaker: split, weights, calibration, version.

The built-in algorithm only gives dot products, so what makes a score *mean* something is done
here as the local model does it: a seeded validation split of distinct (entity, IPv4) pairs,
``event_count ** weight_power`` weights, and a Platt fit on held-out and random pairs scored
through the backend itself, i.e. by the model that will score the day.
"""

import hashlib
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from proactive_assets.core.ipnet import canonical_ip
from proactive_assets.core.model import (
    IPInsightsParams,
    ScoreResult,
    calibrated_insight,
    fit_platt,
    roc_auc,
    roc_points,
)

BACKEND = "sagemaker"
VERSION_PREFIX = "sm-"
_VERSION_COLUMNS = ("entity", "source_ip", "day", "event_count")


class RemoteScores(Protocol):
    """What a backend's ``score`` returns (``invoke.SageMakerScores`` fits)."""

    dot_product: np.ndarray
    skipped_ipv6: int
    skipped_invalid: int


class RemoteBackend(Protocol):
    """The part of ``client.SageMakerIPInsights`` this module relies on."""

    def train(
        self,
        entities: Sequence[Any],
        ips: Sequence[Any],
        hyperparameters: dict[str, Any],
        version: str,
        *,
        counts: Sequence[int] | None = None,
        validation_entities: Sequence[Any] | None = None,
        validation_ips: Sequence[Any] | None = None,
    ) -> dict[str, Any]: ...

    def score(self, entities: Sequence[Any], ips: Sequence[Any], *, model_name: str | None = None) -> RemoteScores: ...


# ---------------------------------------------------------------------------------------------
# Deterministic inputs: version, split, weights


def model_version(training_set: pa.Table, params: IPInsightsParams) -> str:
    """``sm-`` + 16 hex digits of SHA-256 over the sorted training rows and the parameters.

    Sorting first makes the version independent of row order (a warehouse may return a day's
    rows in any order); pyarrow's CSV writer gives a stable byte image without a Python loop.
    """
    columns = [c for c in _VERSION_COLUMNS if c in training_set.column_names]
    table = training_set.select(columns)
    if table.num_rows:
        table = table.sort_by([(c, "ascending") for c in columns])
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer)
    digest = hashlib.sha256(buffer.getvalue())
    digest.update(json.dumps(params.to_dict(), sort_keys=True).encode())
    digest.update(json.dumps(params.to_sagemaker_hyperparameters(), sort_keys=True).encode())
    return VERSION_PREFIX + digest.hexdigest()[:16]


@dataclass(frozen=True)
class ValidationSplit:
    """Which training rows go to the backend and which distinct pairs validate and calibrate it.

    ``entities``/``ips`` are the held-out pairs (canonical IPv4 text), in a deterministic order;
    ``random_ips`` pairs the same entities with random IPv4 addresses (the suspicious side).
    """

    train_rows: np.ndarray  # bool, one per training_set row
    entities: list[str]
    ips: list[str]
    random_ips: list[str]

    def __len__(self) -> int:
        return len(self.entities)


def _ipv4_codes(ip_column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Per-row code into the sorted list of canonical IPv4 addresses; -1 for IPv6 and junk.

    Canonicalising before pairing makes ``075.050.1.2`` and ``75.50.1.2`` one pair, as the
    backend will see them.
    """
    uniques = pc.unique(ip_column)
    canonical = []
    for value in uniques.to_pylist():
        text = canonical_ip(value.strip()) if isinstance(value, str) else None
        canonical.append(text if text is not None and ":" not in text else None)
    names = sorted({c for c in canonical if c is not None}, key=lambda s: tuple(int(p) for p in s.split(".")))
    position = {name: i for i, name in enumerate(names)}
    code_of_unique = np.array([position[c] if c is not None else -1 for c in canonical] + [-1], dtype=np.int64)
    index = pc.fill_null(pc.index_in(ip_column, value_set=uniques), len(canonical))
    index = index.to_numpy(zero_copy_only=False).astype(np.int64)
    return code_of_unique[index], names


def _entity_codes(entity_column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Per-row code into the sorted list of usable entities; -1 for null or blank entities."""
    uniques = pc.unique(entity_column)
    values = uniques.to_pylist()
    names = sorted({v for v in values if isinstance(v, str) and v.strip()})
    position = {name: i for i, name in enumerate(names)}
    code_of_unique = np.array([position.get(v, -1) if isinstance(v, str) else -1 for v in values] + [-1], np.int64)
    index = pc.fill_null(pc.index_in(entity_column, value_set=uniques), len(values))
    index = index.to_numpy(zero_copy_only=False).astype(np.int64)
    return code_of_unique[index], names


def random_ipv4(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` addresses with uniform octets (the local model's random negatives)."""
    values = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)
    return [f"{v >> 24 & 255}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}" for v in values.tolist()]


def split_validation(training_set: pa.Table, params: IPInsightsParams) -> ValidationSplit:
    """Hold out a seeded fraction of distinct (entity, IPv4) pairs, as validation and calibration data.

    Pairs are ordered by (entity text, address value) before drawing, so the split depends on
    the set of rows and the seed only. An entity always keeps at least one training pair, so no
    identity becomes unknown to the model because of validation. At most
    ``params.max_validation_pairs`` are held out; the rest stay in training, and so do IPv6
    rows (the algorithm cannot score them).
    """
    n = training_set.num_rows
    if n == 0:
        return ValidationSplit(np.zeros(0, bool), [], [], [])
    ent, ent_names = _entity_codes(training_set.column("entity"))
    ip, ip_names = _ipv4_codes(training_set.column("source_ip"))
    usable = (ent >= 0) & (ip >= 0)
    key = np.where(usable, ent * max(len(ip_names), 1) + ip, -1)
    pair_keys = np.unique(key[usable])  # sorted: by entity, then address
    pair_e = pair_keys // max(len(ip_names), 1)
    pair_i = pair_keys % max(len(ip_names), 1)
    rng = np.random.default_rng(params.seed)
    held = rng.random(len(pair_keys)) < params.validation_fraction
    if held.any():
        starts = np.flatnonzero(np.r_[True, pair_e[1:] != pair_e[:-1]])
        sizes = np.diff(np.r_[starts, len(pair_e)])
        all_held = np.add.reduceat(held.astype(np.int64), starts) == sizes
        held[starts[all_held]] = False
    held_idx = np.flatnonzero(held)
    if len(held_idx) > params.max_validation_pairs:
        held_idx = np.sort(rng.choice(held_idx, params.max_validation_pairs, replace=False))
    held_keys = pair_keys[held_idx]
    train_rows = ~np.isin(key, held_keys) if len(held_keys) else np.ones(n, dtype=bool)
    entities = [ent_names[i] for i in pair_e[held_idx].tolist()]
    ips = [ip_names[i] for i in pair_i[held_idx].tolist()]
    return ValidationSplit(train_rows, entities, ips, random_ipv4(len(entities), rng))


def repeat_counts(event_counts: Any, weight_power: float) -> np.ndarray:
    """How many CSV rows each (entity, ip, day) row becomes: ``round(count ** power)``, at least 1."""
    counts = np.asarray(event_counts, dtype=np.float64)
    counts = np.where(np.isfinite(counts) & (counts > 0), counts, 1.0)
    return np.maximum(1, np.rint(np.power(counts, weight_power))).astype(np.int64)


def known_entities(training_set: pa.Table) -> set[str]:
    """Entities with at least one IPv4 row: the ones the remote model was trained on.

    The split never removes an entity's last pair, so this is the same before and after it;
    an entity seen only from IPv6 addresses never reached the algorithm and is not "known".
    """
    if training_set.num_rows == 0:
        return set()
    ent, names = _entity_codes(training_set.column("entity"))
    ip, _ = _ipv4_codes(training_set.column("source_ip"))
    return {names[i] for i in np.unique(ent[(ent >= 0) & (ip >= 0)]).tolist()}


# ---------------------------------------------------------------------------------------------
# Training and calibration


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def train_remote(
    backend: RemoteBackend, training_set: pa.Table, params: IPInsightsParams, day: date | str
) -> dict[str, Any]:
    """Train on the backend, then validate and calibrate through it; returns JSON-able metadata.

    ``training_set`` has the ``training_set`` asset's columns (entity, source_ip, event_count,
    day). Raises ``ValueError`` when there is nothing to train on.
    """
    if training_set.num_rows == 0:
        raise ValueError("no training rows")
    version = model_version(training_set, params)
    split = split_validation(training_set, params)
    train_table = training_set.filter(pa.array(split.train_rows))
    counts = repeat_counts(train_table.column("event_count").to_numpy(zero_copy_only=False), params.weight_power)
    job = backend.train(
        train_table.column("entity").to_pylist(),
        train_table.column("source_ip").to_pylist(),
        params.to_sagemaker_hyperparameters(),
        version,
        counts=counts.tolist(),
        validation_entities=split.entities or None,
        validation_ips=split.ips or None,
    )
    model_name = job["model_name"]

    calibration: dict[str, Any]
    n = len(split)
    auc: float | None = None
    roc: dict[str, Any] = {}
    slope, intercept = -1.0, 0.0
    if n:
        # One call, held-out pairs first: the backend batches it under its payload limits.
        scores = backend.score(split.entities * 2, split.ips + split.random_ips, model_name=model_name)
        dots = np.asarray(scores.dot_product, dtype=np.float64)
        pos, neg = dots[:n], dots[n:]
        pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
        auc = _finite_or_none(roc_auc(pos, neg))
        if len(pos) and len(neg):
            roc = roc_points(pos, neg)
            slope, intercept = fit_platt(np.r_[pos, neg], np.r_[np.zeros(len(pos), bool), np.ones(len(neg), bool)])
        calibration = {
            "fitted_on": "held-out pairs (normal) vs random-IPv4 pairs (suspicious), 1:1, scored by the backend",
            "positives": len(pos),
            "negatives": len(neg),
        }
    else:
        calibration = {"fitted_on": "none (no validation pairs): sigmoid(-dot)", "positives": 0, "negatives": 0}
    calibration.update({"method": "platt", "slope": float(slope), "intercept": float(intercept)})

    return {
        "version": version,
        "backend": BACKEND,
        "day": str(day),
        "model_name": model_name,
        "endpoint_name": job.get("endpoint_name"),
        "endpoint_config_name": job.get("endpoint_config_name"),
        "scoring_mode": job.get("scoring_mode"),
        "region": job.get("region"),
        "image_uri": job.get("image_uri"),
        "training_job_name": job.get("training_job_name"),
        "model_artifact_uri": job.get("model_artifact_uri"),
        "training_data_uri": job.get("training_data_uri"),
        "validation_data_uri": job.get("validation_data_uri"),
        "hyperparameters": dict(job.get("hyperparameters") or params.to_sagemaker_hyperparameters()),
        "params": params.to_dict(),
        "training_rows": training_set.num_rows,
        "training_csv_rows": job.get("training_rows"),
        "skipped_ipv6": int(job.get("skipped_ipv6") or 0),
        "skipped_invalid": int(job.get("skipped_invalid") or 0),
        "escaped_entities": int(job.get("escaped_entities") or 0),
        "validation_pairs": n,
        "validation_auc": auc,
        "training_job_validation_auc": _finite_or_none(job.get("validation_auc")),
        "roc": roc,
        "calibration": calibration,
    }


# ---------------------------------------------------------------------------------------------
# Scoring


class RemoteScorer:
    """``score(entities, ips) -> ScoreResult`` on the backend's model, calibrated like local.

    Callable, so it can stand wherever a ``scoring.Scorer`` does: ``entities`` and ``ips`` are
    pyarrow string columns (``daily_insights`` passes the learning set's) or Python sequences;
    the backend gets Python lists either way, since it writes them out as CSV. ``skipped_ipv6``
    and ``skipped_invalid`` accumulate what the backend could not score (NaN in the result).
    An entity the model never saw still gets a dot product from the algorithm (its hashed
    vector), which means little: ``entity_known`` says so.
    """

    def __init__(self, backend: RemoteBackend, metadata: dict[str, Any], known_entities: Iterable[str]) -> None:
        self.backend = backend
        self.model_name = str(metadata["model_name"])
        self.version = str(metadata.get("version"))
        calibration = metadata.get("calibration") or {}
        self.slope = float(calibration.get("slope", -1.0))
        self.intercept = float(calibration.get("intercept", 0.0))
        self.known = frozenset(known_entities)
        self.skipped_ipv6 = 0
        self.skipped_invalid = 0

    def score(
        self, entities: Sequence[Any] | pa.Array | pa.ChunkedArray, ips: Sequence[Any] | pa.Array | pa.ChunkedArray
    ) -> ScoreResult:
        entity_list, ip_list = _as_list(entities), _as_list(ips)
        if len(entity_list) != len(ip_list):
            raise ValueError(f"{len(entity_list)} entities but {len(ip_list)} addresses")
        scores = self.backend.score(entity_list, ip_list, model_name=self.model_name)
        dot = np.asarray(scores.dot_product, dtype=np.float64)
        if len(dot) != len(entity_list):
            raise ValueError(f"backend returned {len(dot)} scores for {len(entity_list)} pairs")
        self.skipped_ipv6 += int(scores.skipped_ipv6)
        self.skipped_invalid += int(getattr(scores, "skipped_invalid", 0))
        known = np.fromiter((e in self.known for e in entity_list), dtype=bool, count=len(entity_list))
        return ScoreResult(
            dot_product=dot,
            insight=calibrated_insight(dot, self.slope, self.intercept),
            entity_known=known,
        )

    __call__ = score


def _as_list(values: Sequence[Any] | pa.Array | pa.ChunkedArray) -> list[Any]:
    """Python values of a pyarrow column (dictionary-encoded or not) or of any sequence."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values.to_pylist()
    return list(values)
