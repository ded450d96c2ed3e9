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
from typing import Any

import numpy as np

from proactive_assets.core.ipnet import parse_ips
from proactive_assets.core.model.ipinsights import (
    IPInsightsModel,
    PrefixLayout,
    bucket_map,
    encode_forward,
    entity_hash64,
    factorize,
    pair_dots,
)
from proactive_assets.core.model.metrics import fit_platt, roc_auc, roc_points, sigmoid
from proactive_assets.core.model.params import IPInsightsParams

_MIN_VALIDATION_NEGATIVES = 2000
_MAX_NEGATIVES_PER_HELD_OUT = 50
_MIN_AUTO_BATCH = 128
_BLOCK_POSITIVES = 16384  # positives whose random negatives are drawn at once
_FLAT_SEGMENT_SUMS = 16384  # (entries x levels) up to which the plain sort is faster


class _SparseAdam:
    """Lazy Adam: moments and parameters change only for the rows a batch touches."""

    def __init__(self, param: np.ndarray, lr: float, weight_decay: float) -> None:
        self.param = param
        self.m = np.zeros_like(param)
        self.v = np.zeros_like(param)
        self.lr = lr
        self.wd = weight_decay
        self.t = 0

    def step_rows(self, rows: np.ndarray, grad: np.ndarray) -> None:
        """One step for distinct ``rows`` with their summed gradient (``grad`` is overwritten)."""
        self.t += 1
        p = self.param[rows]
        if self.wd:
            grad += self.wd * p
        m = self.m[rows]
        m *= 0.9
        m += 0.1 * grad
        v = self.v[rows]
        v *= 0.999
        grad *= grad
        grad *= 0.001
        v += grad
        self.m[rows] = m
        self.v[rows] = v
        bc1 = 1 - 0.9**self.t
        bc2 = 1 - 0.999**self.t
        v *= 1.0 / bc2
        np.sqrt(v, out=v)
        v += 1e-8
        m *= self.lr / bc1
        m /= v
        p -= m
        self.param[rows] = p

    def step_dense(self, grad: np.ndarray) -> None:
        self.t += 1
        if self.wd:
            grad = grad + self.wd * self.param
        self.m *= 0.9
        self.m += 0.1 * grad
        self.v *= 0.999
        self.v += 0.001 * (grad * grad)
        bc1 = 1 - 0.9**self.t
        bc2 = 1 - 0.999**self.t
        self.param -= (self.lr / bc1) * self.m / (np.sqrt(self.v / bc2) + 1e-8)


def _segment_sums(rows: np.ndarray, grads: np.ndarray, skip_zero: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sum the gradients that hit the same parameter row: (distinct rows, float32 sums).

    ``rows`` is (n, levels) and every level of entry i receives ``grads[i]``. One lexicographic
    sort groups every level at once (a longer prefix sorts inside its shorter ones), one
    float64 cumulative sum gives all the group sums, and the rare rows that still repeat (hash
    collisions between unrelated prefixes) are merged at the end. Much faster than
    ``np.add.at`` or ``reduceat`` over many small groups; small batches (the small-data
    schedule) go to ``_segment_sums_flat``, whose fewer numpy calls win there.
    """
    n, levels = rows.shape
    if n * levels <= _FLAT_SEGMENT_SUMS:
        return _segment_sums_flat(rows, grads, skip_zero)
    order = np.lexsort(rows.T[::-1]) if levels > 1 else np.argsort(rows[:, 0], kind="stable")
    srows = rows[order]
    csum = np.zeros((n + 1, grads.shape[1]), dtype=np.float64)
    np.cumsum(grads[order], axis=0, dtype=np.float64, out=csum[1:])
    out_rows, out_sums = [], []
    for k in range(levels):
        r = srows[:, k]
        starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
        ends = np.r_[starts[1:], n]
        if skip_zero:
            keep = r[starts] > 0
            starts, ends = starts[keep], ends[keep]
        out_rows.append(r[starts])
        out_sums.append(csum[ends] - csum[starts])
    urows = np.concatenate(out_rows)
    usums = np.concatenate(out_sums)
    o = np.argsort(urows, kind="stable")
    sorted_rows = urows[o]
    same = sorted_rows[1:] == sorted_rows[:-1]
    if not same.any():
        return urows, usums.astype(np.float32)
    # merge only the repeated rows; everything else passes through
    repeated = np.r_[same, False] | np.r_[False, same]
    single = o[~repeated]
    rep_idx = o[repeated]
    rep_rows = sorted_rows[repeated]
    starts = np.flatnonzero(np.r_[True, rep_rows[1:] != rep_rows[:-1]])
    merged = np.add.reduceat(usums[rep_idx], starts, axis=0)
    return (
        np.concatenate([urows[single], rep_rows[starts]]),
        np.concatenate([usums[single], merged]).astype(np.float32),
    )


def _segment_sums_flat(rows: np.ndarray, grads: np.ndarray, skip_zero: bool) -> tuple[np.ndarray, np.ndarray]:
    """``_segment_sums`` for small batches: one stable sort of every (entry, level) and a reduceat."""
    levels = rows.shape[1]
    flat = rows.ravel()
    order = np.argsort(flat, kind="stable")
    sorted_rows = flat[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_rows[1:] != sorted_rows[:-1])))
    sums = np.add.reduceat(grads[order // levels if levels > 1 else order], starts, axis=0)
    out_rows = sorted_rows[starts]
    if skip_zero and len(out_rows) and out_rows[0] == 0:
        return out_rows[1:], sums[1:]
    return out_rows, sums


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
) -> IPInsightsModel:
    """Train a model on (entity, ip) rows; ``weights`` are per-row event counts (default 1).

    Deterministic for ``params.seed`` and the same multiset of rows, whatever their order.
    """
    started = time.perf_counter()
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
    pair_e = pair_keys // n_ips
    pair_i = pair_keys % n_ips
    keep = pair_w > 0
    pair_e, pair_i, pair_w, pair_rows = pair_e[keep], pair_i[keep], pair_w[keep], pair_rows[keep]
    if len(pair_e) == 0:
        raise ValueError("all training weights are zero")

    rng = np.random.default_rng(params.seed)
    layout = PrefixLayout(params)
    data = _PairData(
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
    )
    n_pairs = len(pair_e)
    cross_validate = params.validation_fraction > 0 and params.cv_folds >= 2 and n_pairs <= params.cv_max_pairs
    if cross_validate:
        fold_of = rng.integers(0, params.cv_folds, n_pairs)
        folds = [_keep_one_per_entity(pair_e, fold_of == f) for f in range(params.cv_folds)]
    else:
        folds = [_holdout(pair_e, params.validation_fraction, rng)]
    n_val = sum(min(int(h.sum()), params.max_validation_pairs) for h in folds)
    k = max(1, min(_MAX_NEGATIVES_PER_HELD_OUT, math.ceil(_MIN_VALIDATION_NEGATIVES / max(n_val, 1))))
    pos, neg, shuf = [], [], []
    final = None
    for held in folds:
        trained = _train_subset(data, ~held, rng)
        val = np.flatnonzero(held)
        if len(val) > params.max_validation_pairs:
            val = np.sort(rng.choice(val, params.max_validation_pairs, replace=False))
        if len(val):
            dots = trained.validation_dots(data, val, k, rng)
            pos.append(dots[0])
            neg.append(dots[1])
            shuf.append(dots[2])
        if not cross_validate:
            final = trained
    if final is None:  # cross-validated: the model that scores learns from every pair
        final = _train_subset(data, np.ones(n_pairs, dtype=bool), rng)
    pos_dot = np.concatenate(pos) if pos else np.zeros(0, np.float32)
    neg_dot = np.concatenate(neg) if neg else np.zeros(0, np.float32)
    metadata: dict[str, Any] = {
        "backend": "local",
        "training_rows": n_rows,
        "training_pairs": final.pairs,
        "training_entities": len(final.known_hashes),
        "training_ips": final.ips,
        "ip_embedding_rows": len(final.ip_buckets),
        "validation": f"{params.cv_folds}-fold cross-validation" if cross_validate else "held-out pairs",
        "validation_pairs": len(pos_dot),
        "epoch_losses": [round(v, 6) for v in final.losses],
        "optimizer_steps": final.steps,
        "mini_batch_size_used": final.batch,
    }
    calibration = (-1.0, 0.0)
    if len(pos_dot):
        calibration = fit_platt(
            np.r_[pos_dot, neg_dot],
            np.r_[np.zeros(len(pos_dot), bool), np.ones(len(neg_dot), bool)],
            np.r_[np.ones(len(pos_dot)), np.full(len(neg_dot), 1.0 / k)],
        )
        metadata["validation_auc"] = roc_auc(pos_dot, neg_dot)
        metadata["validation_shuffled_auc"] = roc_auc(pos_dot, np.concatenate(shuf))
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
        params=params,
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


@dataclass
class _PairData:
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
        self, data: _PairData, val: np.ndarray, k: int, rng: np.random.Generator
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


def _train_subset(data: _PairData, tr: np.ndarray, rng: np.random.Generator) -> _Trained:
    """Train embeddings on the pairs where ``tr`` is True."""
    params, layout = data.params, data.layout
    pair_e, pair_i = data.pair_e, data.pair_i

    # entity rows: hashed buckets actually used
    used_e = np.unique(pair_e[tr])
    ebucket = (data.ehash % np.uint64(params.num_entity_vectors)).astype(np.int64)
    entity_buckets, ent_row_of_code = np.unique(ebucket[used_e], return_inverse=True)
    ent_row = np.full(len(data.ehash), -1, dtype=np.int64)
    ent_row[used_e] = ent_row_of_code
    known_hashes = np.sort(data.ehash[used_e])

    # IP rows: buckets of prefixes seen in training positives; the others map to the unseen rows
    train_ips = np.unique(pair_i[tr])
    tb = data.buckets[:, train_ips].ravel()
    ip_buckets = np.unique(tb[tb >= 0])
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

    losses, steps, batch = _fit(
        params,
        rng,
        ent_row[pair_e[tr]],
        ip_row_table[pair_i[tr]],
        data.is6[pair_i[tr]],
        data.pair_w[tr],
        int(data.pair_rows[tr].sum()),
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


def _holdout(pair_e: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Hold out about ``fraction`` of pairs, always leaving each entity a training pair."""
    return _keep_one_per_entity(pair_e, rng.random(len(pair_e)) < fraction)


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
    opt_e = _SparseAdam(entity_emb, lr, wd)
    opt_ip = _SparseAdam(ip_emb, lr, wd)
    opt_layers = [(_SparseAdam(enc_w[k], lr, wd), _SparseAdam(enc_b[k], lr, 0.0)) for k in range(len(enc_w))]
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
    urows, ugrad = _segment_sums(rows, dh0, skip_zero=True)
    opt_ip.step_rows(urows, ugrad)
    erows, egrad = _segment_sums(ent[:, None], du, skip_zero=False)
    opt_e.step_rows(erows, egrad)
    return float(loss)
