"""The optimiser of IP Insights training: lazy (sparse) Adam and the per-row gradient sums it takes."""

import numpy as np

_FLAT_SEGMENT_SUMS = 16384  # (entries x levels) up to which the plain sort is faster


class SparseAdam:
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


def segment_sums(rows: np.ndarray, grads: np.ndarray, skip_zero: bool) -> tuple[np.ndarray, np.ndarray]:
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
    """``segment_sums`` for small batches: one stable sort of every (entry, level) and a reduceat."""
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
