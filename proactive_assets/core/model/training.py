"""Training the IP Insights model: sparse Adam on observed pairs against sampled negatives.

Positives are the observed (entity, ip) pairs, weighted by event count; negatives are random
addresses and the mini-batch's pairs shuffled. A share of the pairs is held out (or, for small
data, cross-validated) to measure the validation AUC and fit the Platt calibration. The same
seed and the same multiset of rows give the same model. Design and measurements:
docs/ip_insights_model.md.
"""

import math
import time
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np

from proactive_assets.core.hashing import mix64
from proactive_assets.core.ipnet import parse_ips
from proactive_assets.core.model.ipinsights import IPInsightsModel, encode_forward, entity_hash64, factorize, pair_dots
from proactive_assets.core.model.metrics import fit_platt, roc_auc, roc_points, sigmoid
from proactive_assets.core.model.optimizer import SparseAdam, segment_sums
from proactive_assets.core.model.params import IPInsightsParams
from proactive_assets.core.model.prefixes import MASK64, PrefixLayout, bucket_map

_MIN_VALIDATION_NEGATIVES = 2000
_MAX_NEGATIVES_PER_HELD_OUT = 50
_MIN_AUTO_BATCH = 128
_BLOCK_POSITIVES = 16384  # positives whose random negatives are drawn at once


def _systematic_sample(weights: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices drawn in proportion to weights with little variance, then shuffled.

    Each index appears floor(e) or ceil(e) times, e = its expected count; with equal weights
    and size = len(weights) this is a plain permutation (every pair once per epoch).
    """
    expected = weights / weights.sum() * size
    base = np.floor(expected).astype(np.int64)
    extra = rng.random(len(weights)) < (expected - base)
    idx = np.repeat(np.arange(len(weights)), base + extra)
    rng.shuffle(idx)
    return idx


def _random_addresses(is6: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random negatives of the same IP version: IPv4 with uniform octets; IPv6 in 2000::/3."""
    n = len(is6)
    lo = rng.integers(0, 1 << 32, size=n, dtype=np.uint64)
    hi = np.zeros(n, dtype=np.uint64)
    if is6.any():
        k = int(is6.sum())
        hi6 = rng.integers(0, 1 << 61, size=k, dtype=np.uint64) | np.uint64(1 << 61)
        lo6 = rng.integers(0, 1 << 63, size=k, dtype=np.uint64) << np.uint64(1)
        hi[is6] = hi6
        lo[is6] = lo6
    return is6.copy(), hi, lo


def train_ip_insights(
    entities: Any,
    ips: Any,
    weights: Any = None,
    params: IPInsightsParams = IPInsightsParams(),
    days: Any = None,
    holdout_salt: int = 0,
) -> IPInsightsModel:
    """Train a model on (entity, ip) rows; ``weights`` are per-row event counts (default 1).

    ``days`` (optional, one int per row: days since 1970-01-01) are recorded as the newest day
    and newest first-seen day, so the next day's model can start from this one
    (``core.model.warm``); ``holdout_salt`` picks which pairs are held out for validation.
    Deterministic for ``params.seed``, the salt and the same multiset of rows, whatever their order.
    """
    started = time.perf_counter()
    return train_full(prepare_pairs(entities, ips, weights, params, days), holdout_salt, started)


def train_full(data: "PairData", holdout_salt: int, started: float) -> IPInsightsModel:
    """``train_ip_insights`` on prepared pairs: every embedding from scratch (``started``: when the call began)."""
    params = data.params
    rng = np.random.default_rng(params.seed)
    n_pairs = len(data.pair_e)
    cross_validate = uses_cross_validation(params, n_pairs)
    if cross_validate:
        fold_of = rng.integers(0, params.cv_folds, n_pairs)
        folds = [_keep_one_per_entity(data.pair_e, fold_of == f) for f in range(params.cv_folds)]
    else:
        folds = [held_out_pairs(data, params.validation_fraction, holdout_salt)]
    k = negatives_per_held_out(params, folds)
    validation: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    final = None
    for held in folds:
        trained = train_subset(data, ~held, rng)
        validation.append(validate(trained, data, held, k, rng))
        if not cross_validate:
            final = trained
    if final is None:  # cross-validated: the model that scores learns from every pair
        final = train_subset(data, np.ones(n_pairs, dtype=bool), rng)
    method = f"{params.cv_folds}-fold cross-validation" if cross_validate else "held-out pairs"
    extra = {} if cross_validate else {"holdout_salt": int(holdout_salt)}
    return finish_model(data, final, validation, k, method, started, extra)


def uses_cross_validation(params: IPInsightsParams, n_pairs: int) -> bool:
    """Whether a training set of ``n_pairs`` distinct pairs is cross-validated (small) or holds pairs out."""
    return params.validation_fraction > 0 and params.cv_folds >= 2 and n_pairs <= params.cv_max_pairs


def negatives_per_held_out(params: IPInsightsParams, folds: list[np.ndarray]) -> int:
    n_val = sum(min(int(h.sum()), params.max_validation_pairs) for h in folds)
    return max(1, min(_MAX_NEGATIVES_PER_HELD_OUT, math.ceil(_MIN_VALIDATION_NEGATIVES / max(n_val, 1))))


def validate(
    trained: "_Trained", data: "PairData", held: np.ndarray, k: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dot products of the held-out pairs (at most ``max_validation_pairs``), of k random-address
    negatives per pair and of the pairs shuffled."""
    val = np.flatnonzero(held)
    if len(val) > data.params.max_validation_pairs:
        val = np.sort(rng.choice(val, data.params.max_validation_pairs, replace=False))
    if not len(val):
        empty = np.zeros(0, np.float32)
        return empty, empty, empty
    return trained.validation_dots(data, val, k, rng)


def finish_model(
    data: "PairData",
    final: "_Trained",
    validation: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    k: int,
    method: str,
    started: float,
    extra: dict[str, Any],
) -> IPInsightsModel:
    """The model from trained embeddings: validation AUC, ROC, Platt calibration and metadata."""
    pos_dot = np.concatenate([v[0] for v in validation]) if validation else np.zeros(0, np.float32)
    neg_dot = np.concatenate([v[1] for v in validation]) if validation else np.zeros(0, np.float32)
    metadata: dict[str, Any] = {
        "backend": "local",
        "training_rows": int(data.pair_rows.sum()),
        "training_pairs": final.pairs,
        "training_entities": len(final.known_hashes),
        "training_ips": final.ips,
        "ip_embedding_rows": len(final.ip_buckets),
        "validation": method,
        "validation_pairs": len(pos_dot),
        "epoch_losses": [round(v, 6) for v in final.losses],
        "optimizer_steps": final.steps,
        "mini_batch_size_used": final.batch,
        **data.day_range(),
        **extra,
    }
    calibration = (-1.0, 0.0)
    if len(pos_dot):
        calibration = fit_platt(
            np.r_[pos_dot, neg_dot],
            np.r_[np.zeros(len(pos_dot), bool), np.ones(len(neg_dot), bool)],
            np.r_[np.ones(len(pos_dot)), np.full(len(neg_dot), 1.0 / k)],
        )
        metadata["validation_auc"] = roc_auc(pos_dot, neg_dot)
        metadata["validation_shuffled_auc"] = roc_auc(pos_dot, np.concatenate([v[2] for v in validation]))
        metadata["roc"] = roc_points(pos_dot, neg_dot)
        metadata["calibration"] = {
            "fitted_on": "held-out pairs (normal) vs random-address pairs (suspicious), 1:1",
            "positives": len(pos_dot),
            "negatives": len(neg_dot),
            "negative_weight": 1.0 / k,
        }
    else:
        metadata["validation_auc"] = None
        metadata["calibration"] = {"fitted_on": "none (no validation data): sigmoid(-dot)"}
    metadata["training_seconds"] = round(time.perf_counter() - started, 3)
    return IPInsightsModel(
        params=data.params,
        entity_hashes=final.known_hashes,
        entity_buckets=final.entity_buckets,
        entity_emb=final.entity_emb,
        ip_buckets=final.ip_buckets,
        ip_emb=final.ip_emb,
        enc_w=final.enc_w,
        enc_b=final.enc_b,
        calibration=calibration,
        metadata=metadata,
    )


def prepare_pairs(entities: Any, ips: Any, weights: Any, params: IPInsightsParams, days: Any = None) -> "PairData":
    """The rows' distinct pairs in canonical order (entities by text, addresses by version and
    value) with their weights, address buckets and, given ``days``, first and last day."""
    ecodes, euniques = factorize(entities)
    icodes, iuniques = factorize(ips)
    n_rows = len(ecodes)
    if len(icodes) != n_rows:
        raise ValueError(f"{n_rows} entities but {len(icodes)} addresses")
    if n_rows == 0:
        raise ValueError("no training rows")
    w = np.ones(n_rows) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if len(w) != n_rows or not np.all(np.isfinite(w)) or (w < 0).any():
        raise ValueError("weights must be finite, non-negative and one per row")
    row_days = None if days is None else np.asarray(days, dtype=np.int64).ravel()
    if row_days is not None and len(row_days) != n_rows:
        raise ValueError(f"{n_rows} rows but {len(row_days)} days")

    # canonical order: entities by text, addresses by (version, value)
    euniques_str = np.array([str(v) for v in euniques], dtype=object)
    eorder = np.argsort(euniques_str, kind="stable")
    ecodes = np.argsort(eorder)[ecodes]
    euniques_str = euniques_str[eorder]
    is6, hi, lo = parse_ips(iuniques)
    iorder = np.lexsort((lo, hi, is6))
    icodes = np.argsort(iorder)[icodes]
    iuniques = iuniques[iorder]
    is6, hi, lo = is6[iorder], hi[iorder], lo[iorder]

    # distinct pairs, weight = sum over rows of count ** weight_power
    n_ips = len(iuniques)
    pair_key = ecodes * n_ips + icodes
    pair_keys, pair_inv = np.unique(pair_key, return_inverse=True)
    pair_w = np.bincount(pair_inv, weights=np.power(w, params.weight_power), minlength=len(pair_keys))
    pair_rows = np.bincount(pair_inv, minlength=len(pair_keys))
    first = last = None
    if row_days is not None:
        order = np.argsort(pair_inv, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(pair_inv[order]) != 0])
        first = np.minimum.reduceat(row_days[order], starts)
        last = np.maximum.reduceat(row_days[order], starts)
    pair_e = pair_keys // n_ips
    pair_i = pair_keys % n_ips
    keep = pair_w > 0
    pair_e, pair_i, pair_w, pair_rows = pair_e[keep], pair_i[keep], pair_w[keep], pair_rows[keep]
    if len(pair_e) == 0:
        raise ValueError("all training weights are zero")
    layout = PrefixLayout(params)
    return PairData(
        params=params,
        layout=layout,
        pair_e=pair_e,
        pair_i=pair_i,
        pair_w=pair_w,
        pair_rows=pair_rows,
        ehash=entity_hash64(euniques_str),
        buckets=layout.buckets(is6, hi, lo),
        is6=is6,
        hi=hi,
        lo=lo,
        pair_first=None if first is None else first[keep],
        pair_last=None if last is None else last[keep],
    )


@dataclass
class PairData:
    """The canonical distinct pairs of a training call and their addresses' prefix buckets."""

    params: IPInsightsParams
    layout: PrefixLayout
    pair_e: np.ndarray  # entity code per pair (entities sorted by text)
    pair_i: np.ndarray  # address code per pair (addresses sorted by version, value)
    pair_w: np.ndarray  # sampling weight
    pair_rows: np.ndarray  # input rows per pair
    ehash: np.ndarray  # 64-bit hash per entity code
    buckets: np.ndarray  # (levels, n_ips) global bucket ids
    is6: np.ndarray
    hi: np.ndarray
    lo: np.ndarray
    pair_first: np.ndarray | None = None  # first day per pair (days since 1970-01-01), when known
    pair_last: np.ndarray | None = None  # last day per pair

    def day_range(self) -> dict[str, str]:
        """The newest day of the rows and the newest day a pair was first seen on (ISO), when known."""
        if self.pair_first is None or self.pair_last is None:
            return {}
        epoch = date(1970, 1, 1)
        return {
            "newest_day": (epoch + timedelta(days=int(self.pair_last.max()))).isoformat(),
            "newest_first_seen": (epoch + timedelta(days=int(self.pair_first.max()))).isoformat(),
        }


@dataclass
class _Trained:
    """Embeddings learnt from a subset of the pairs, and how to look the pairs up in them."""

    pairs: int
    ips: int
    known_hashes: np.ndarray
    entity_buckets: np.ndarray
    entity_emb: np.ndarray
    ent_row: np.ndarray  # entity code -> entity_emb row (-1: not trained)
    ip_buckets: np.ndarray
    ip_emb: np.ndarray
    bucket_to_row: np.ndarray
    ip_row_table: np.ndarray  # (n_ips, levels) ip_emb rows of every address of the call
    enc_w: np.ndarray
    enc_b: np.ndarray
    losses: list[float]
    steps: int
    batch: int

    def validation_dots(
        self, data: PairData, val: np.ndarray, k: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Held-out pairs; k random addresses per pair (same entity and version); shuffled pairs."""
        val_ent = self.ent_row[data.pair_e[val]]
        val_rows = self.ip_row_table[data.pair_i[val]].T
        pos = pair_dots(self.entity_emb, val_ent, self.ip_emb, val_rows, self.enc_w, self.enc_b)
        rand = _random_addresses(np.tile(data.is6[data.pair_i[val]], k), rng)
        rand_rows = data.layout.rows(*rand, self.bucket_to_row)
        neg = pair_dots(self.entity_emb, np.tile(val_ent, k), self.ip_emb, rand_rows, self.enc_w, self.enc_b)
        perm = rng.permutation(len(val))
        shuf = pair_dots(self.entity_emb, val_ent[perm], self.ip_emb, val_rows, self.enc_w, self.enc_b)
        return pos, neg, shuf


def train_subset(
    data: PairData,
    tr: np.ndarray,
    rng: np.random.Generator,
    start: IPInsightsModel | None = None,
    fit: np.ndarray | None = None,
    fit_params: IPInsightsParams | None = None,
) -> _Trained:
    """Train embeddings on the pairs where ``tr`` is True.

    Warm start (``core.model.warm``): the vocabulary is still ``tr``'s, but every entity bucket,
    address bucket and encoder weight ``start`` has begins from ``start``'s value (the others as
    in a full retrain, the ones ``start`` has and ``tr`` lacks are dropped), and only the pairs
    where ``fit`` is True are trained on, on ``fit_params``' schedule.
    """
    params, layout = data.params, data.layout
    pair_e, pair_i = data.pair_e, data.pair_i

    # entity rows: hashed buckets actually used
    used_e = np.flatnonzero(np.bincount(pair_e[tr], minlength=len(data.ehash)))  # np.unique, without its sort
    ebucket = (data.ehash % np.uint64(params.num_entity_vectors)).astype(np.int64)
    entity_buckets, ent_row_of_code = np.unique(ebucket[used_e], return_inverse=True)
    ent_row = np.full(len(data.ehash), -1, dtype=np.int64)
    ent_row[used_e] = ent_row_of_code
    known_hashes = np.sort(data.ehash[used_e])

    # IP rows: buckets of prefixes seen in training positives; the others map to the unseen rows
    train_ips = np.flatnonzero(np.bincount(pair_i[tr], minlength=data.buckets.shape[1]))
    tb = data.buckets[:, train_ips].ravel()
    seen = np.zeros(layout.total, dtype=bool)
    seen[tb[tb >= 0]] = True
    ip_buckets = np.flatnonzero(seen)
    unseen = params.unseen_prefix_vectors
    bucket_to_row = bucket_map(layout, ip_buckets, unseen)
    width = layout.levels if params.other_version_negatives > 0 else None
    ip_row_table = np.ascontiguousarray(layout.rows(data.is6, data.hi, data.lo, bucket_to_row, width=width).T)

    dim = params.vector_dim
    entity_emb = (rng.standard_normal((len(entity_buckets), dim)) / math.sqrt(dim)).astype(np.float32)
    ip_emb = np.zeros((len(ip_buckets) + 1 + (layout.n_sections if unseen else 0), dim), dtype=np.float32)
    n_layers = params.num_ip_encoder_layers
    enc_w = (rng.standard_normal((n_layers, dim, dim)) * (0.1 / math.sqrt(dim))).astype(np.float32)
    enc_b = np.zeros((n_layers, dim), dtype=np.float32)
    if start is not None:
        _copy_rows(entity_emb, entity_buckets, start.entity_emb, start.entity_buckets)
        head = 1 + (layout.n_sections if unseen else 0)  # the zero row, then the unseen-prefix rows
        ip_emb[:head] = start.ip_emb[:head]
        _copy_rows(ip_emb[head:], ip_buckets, start.ip_emb[head:], start.ip_buckets)
        enc_w[:], enc_b[:] = start.enc_w, start.enc_b

    fit = tr if fit is None else fit
    losses, steps, batch = _fit(
        fit_params or params,
        rng,
        ent_row[pair_e[fit]],
        ip_row_table[pair_i[fit]],
        data.is6[pair_i[fit]],
        data.pair_w[fit],
        int(data.pair_rows[fit].sum()),
        entity_emb,
        ip_emb,
        enc_w,
        enc_b,
        layout,
        bucket_to_row,
    )
    return _Trained(
        pairs=int(tr.sum()),
        ips=len(train_ips),
        known_hashes=known_hashes,
        entity_buckets=entity_buckets,
        entity_emb=entity_emb,
        ent_row=ent_row,
        ip_buckets=ip_buckets,
        ip_emb=ip_emb,
        bucket_to_row=bucket_to_row,
        ip_row_table=ip_row_table,
        enc_w=enc_w,
        enc_b=enc_b,
        losses=losses,
        steps=steps,
        batch=batch,
    )


def _copy_rows(dst: np.ndarray, dst_keys: np.ndarray, src: np.ndarray, src_keys: np.ndarray) -> None:
    """dst[i] = src[j] wherever dst_keys[i] == src_keys[j] (both key arrays sorted and distinct)."""
    if not len(src_keys) or not len(dst_keys):
        return
    pos = np.minimum(np.searchsorted(src_keys, dst_keys), len(src_keys) - 1)
    hit = src_keys[pos] == dst_keys
    dst[hit] = src[pos[hit]]


def held_out_pairs(data: PairData, fraction: float, salt: int) -> np.ndarray:
    """Hold out about ``fraction`` of pairs, always leaving each entity a training pair.

    Which pairs is a hash of (entity, address, ``salt``), not a random draw: models trained with
    the same salt on overlapping windows hold out the same pairs, so a model warm-started from
    another is never validated on pairs the other learnt from.
    """
    addr = mix64(data.hi[data.pair_i] ^ mix64(data.lo[data.pair_i] ^ np.uint64(salt & MASK64)))
    h = mix64(data.ehash[data.pair_e] ^ addr)
    unit = (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    return _keep_one_per_entity(data.pair_e, unit < fraction)


def _keep_one_per_entity(pair_e: np.ndarray, held: np.ndarray) -> np.ndarray:
    """``held`` with the first pair of every entity whose pairs are all held given back to training."""
    if not held.any():
        return held
    # pairs are sorted by entity: un-hold the first pair of an entity whose pairs all went
    starts = np.flatnonzero(np.r_[True, pair_e[1:] != pair_e[:-1]])
    counts = np.diff(np.r_[starts, len(pair_e)])
    held_per_entity = np.add.reduceat(held.astype(np.int64), starts)
    all_held = held_per_entity == counts
    held[starts[all_held]] = False
    return held


def _drop_prefixes(
    params: IPInsightsParams, layout: PrefixLayout, rows: np.ndarray, is6: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Positives' rows with, for a ``prefix_dropout`` share, the longest prefixes made unseen."""
    if params.prefix_dropout <= 0:
        return rows
    drop = np.flatnonzero(rng.random(len(rows)) < params.prefix_dropout)
    if not len(drop):
        return rows
    rows = rows.copy()
    n_v4 = len(layout.v4)
    v6 = is6[drop]
    nlev = np.where(v6, len(layout.v6), n_v4)
    depth = np.minimum(params.prefix_dropout_levels, nlev - 1)
    first = nlev - 1 - (rng.random(len(drop)) * depth).astype(np.int64)
    unseen = params.unseen_prefix_vectors
    for k in range(1, rows.shape[1]):
        hit = (k >= first) & (k < nlev)
        if hit.any():
            rows[drop[hit], k] = np.where(v6[hit], 1 + n_v4 + k, 1 + k) if unseen else 0
    return rows


def _schedule(params: IPInsightsParams, epoch_size: int) -> tuple[int, int]:
    """(mini-batch size, passes over the rows per epoch) giving at least ``params.min_steps`` steps."""
    batch = min(params.mini_batch_size, epoch_size)
    if params.epochs * math.ceil(epoch_size / batch) >= params.min_steps:
        return batch, 1
    batch = min(batch, max(_MIN_AUTO_BATCH, math.ceil(params.epochs * epoch_size / params.min_steps)))
    if params.epochs * math.ceil(epoch_size / batch) >= params.min_steps:
        return batch, 1
    return batch, math.ceil(params.min_steps * batch / (params.epochs * epoch_size))


def _fit(
    params: IPInsightsParams,
    rng: np.random.Generator,
    pos_ent: np.ndarray,
    pos_rows: np.ndarray,
    pos_is6: np.ndarray,
    pos_w: np.ndarray,
    epoch_size: int,
    entity_emb: np.ndarray,
    ip_emb: np.ndarray,
    enc_w: np.ndarray,
    enc_b: np.ndarray,
    layout: PrefixLayout,
    bucket_to_row: np.ndarray,
) -> tuple[list[float], int, int]:
    """Mini-batch training loop (updates the arrays in place): (mean loss per epoch, steps, batch size)."""
    lr, wd = params.learning_rate, params.weight_decay
    opt_e = SparseAdam(entity_emb, lr, wd)
    opt_ip = SparseAdam(ip_emb, lr, wd)
    opt_layers = [(SparseAdam(enc_w[k], lr, wd), SparseAdam(enc_b[k], lr, 0.0)) for k in range(len(enc_w))]
    opts = (opt_e, opt_ip, opt_layers)
    n_rand = params.random_negative_sampling_rate
    n_shuf = params.shuffled_negative_sampling_rate
    batch, passes = _schedule(params, epoch_size)
    levels = pos_rows.shape[1]
    block = batch * max(1, _BLOCK_POSITIVES // batch)
    losses, steps = [], 0
    for _epoch in range(params.epochs):
        order = _systematic_sample(pos_w, epoch_size * passes, rng)
        total_loss, total_pairs = 0.0, 0
        for block_start in range(0, len(order), block):
            # positives and random negatives of several mini-batches at once (fewer small numpy calls)
            block_idx = order[block_start : block_start + block]
            block_rows = _drop_prefixes(params, layout, pos_rows[block_idx], pos_is6[block_idx], rng)
            if n_rand:
                r6 = np.tile(pos_is6[block_idx], n_rand)
                if params.other_version_negatives > 0:
                    r6 ^= rng.random(len(r6)) < params.other_version_negatives
                rand_rows = layout.rows(*_random_addresses(r6, rng), bucket_to_row, width=levels)
                rand_rows = rand_rows.T.reshape(n_rand, len(block_idx), levels)
            for s in range(0, len(block_idx), batch):
                idx = block_idx[s : s + batch]
                b = len(idx)
                ent = pos_ent[idx]
                rows = block_rows[s : s + b]
                if n_rand:
                    rows = np.concatenate([rows, rand_rows[:, s : s + b].reshape(n_rand * b, levels)])
                total_loss += _step(params, rng, ent, rows, b, entity_emb, ip_emb, enc_w, enc_b, opts)
                total_pairs += b * (1 + n_rand + n_shuf)
                steps += 1
        losses.append(total_loss / max(total_pairs, 1))
    return losses, steps, batch


def _step(
    params: IPInsightsParams,
    rng: np.random.Generator,
    ent: np.ndarray,
    rows: np.ndarray,
    b: int,
    entity_emb: np.ndarray,
    ip_emb: np.ndarray,
    enc_w: np.ndarray,
    enc_b: np.ndarray,
    opts: tuple,
) -> float:
    """One mini-batch: b positives (rows[:b]), random negatives (rows[b:]) and shuffled negatives."""
    opt_e, opt_ip, opt_layers = opts
    n_rand = params.random_negative_sampling_rate
    n_shuf = params.shuffled_negative_sampling_rate
    levels = rows.shape[1]
    h0 = ip_emb[rows[:, 0]]
    for k in range(1, levels):
        h0 += ip_emb[rows[:, k]]
    v, cache = encode_forward(h0, enc_w, enc_b) if len(enc_w) else (h0, [])
    u = entity_emb[ent]
    vp = v[:b]
    n_total = b * (1 + n_rand + n_shuf)
    # positives
    sp = np.einsum("ij,ij->i", u, vp)
    gp = (sigmoid(sp) - 1.0) / n_total
    loss = np.logaddexp(0, -sp).sum()
    du = gp[:, None] * vp
    dv = np.empty_like(v)
    dv[:b] = gp[:, None] * u
    # random negatives: block r pairs entity j with random address r*b + j
    if n_rand:
        vr = v[b:].reshape(n_rand, b, -1)
        sr = np.einsum("jd,rjd->rj", u, vr)
        gr = sigmoid(sr) / n_total
        loss += np.logaddexp(0, sr).sum()
        du += np.einsum("rj,rjd->jd", gr, vr)
        dv[b:] = (gr[:, :, None] * u[None, :, :]).reshape(n_rand * b, -1)
    # shuffled negatives: entity j with the batch's address perm[j]
    for _ in range(n_shuf):
        perm = rng.permutation(b)
        ss = np.einsum("ij,ij->i", u, vp[perm])
        gs = sigmoid(ss) / n_total
        loss += np.logaddexp(0, ss).sum()
        du += gs[:, None] * vp[perm]
        dv[perm] += gs[:, None] * u
    # back through the encoder
    if cache:
        dh = dv
        for layer in range(len(cache) - 1, -1, -1):
            hin, t = cache[layer]
            dz = dh * (1.0 - t * t)
            gw, gb = hin.T @ dz, dz.sum(axis=0)
            dh = dh + dz @ enc_w[layer].T
            opt_layers[layer][0].step_dense(gw)
            opt_layers[layer][1].step_dense(gb)
        dh0 = dh
    else:
        dh0 = dv
    # sparse updates
    urows, ugrad = segment_sums(rows, dh0, skip_zero=True)
    opt_ip.step_rows(urows, ugrad)
    erows, egrad = segment_sums(ent[:, None], du, skip_zero=False)
    opt_e.step_rows(erows, egrad)
    return float(loss)
