"""A day's pairs judged from their evidence: each pair's ``insight``, the evidence it names and the
features ``daily_insights`` shows beside it.

The combiner's log-odds is a dot product of a pair's features with its coefficients, so everything
``daily_insights`` keeps of the evidence is a function of one row of the matrix. The compiled kernel
(``compiled.judged_pairs``) judges each row while it builds it and never writes the matrix (344 MB
at a million pairs: writing it and reading it back a column at a time cost more than building
it); ``Judge.of_matrix`` gives the same answers from a matrix (numpy, and the kernel's tests).
"""

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from proactive_assets.core.evidence.combiner import Combiner
from proactive_assets.core.evidence.compiled import kernels
from proactive_assets.core.evidence.features import FEATURES
from proactive_assets.core.model.metrics import sigmoid

#: Contributions to the log-odds at least this large (either way) are named as evidence.
NAMED_EVIDENCE = 0.5
#: How many named for and against a pair (``evidence_for``, ``evidence_against``).
NAMED_LIMITS = (4, 3)
NOVELTY = (
    "seen address",
    "new address in a known /24",
    "new /24 in a known /16",
    "new /16 in a known /12",
    "never-seen network",
    "new identity",
)
#: The features that grade a pair's novelty, in this order (``NOVELTY`` from the end).
GRADES = ("new_identity", "novel_network", "novel_12", "novel_16", "novel_24")
#: What ``daily_insights`` shows of a pair's evidence (``Judged.shown``), as the kernel writes it:
#: its novelty (an index into ``NOVELTY``); how many other identities used its address in the
#: window and today, and its /24 in the window; its identity's churn; whether the identity was
#: on one of its known /24s today.
SHOWN = {
    "novelty": np.int8,
    "others_address_window": np.int64,
    "others_address_today": np.int64,
    "others_24_window": np.int64,
    "churn_24": np.float64,
    "known_network_today": np.bool_,
}


def shown_of_matrix(x: np.ndarray) -> dict[str, np.ndarray]:
    """``SHOWN`` of the rows of an evidence matrix (whose counts are log1p of the counts)."""

    def column(name: str) -> np.ndarray:
        return x[:, FEATURES.index(name)]

    def count(name: str) -> np.ndarray:
        return np.rint(np.expm1(column(name))).astype(np.int64)

    return {
        "novelty": np.select([column(name) > 0 for name in GRADES], [5, 4, 3, 2, 1], default=0).astype(np.int8),
        "others_address_window": count("others_address_window"),
        "others_address_today": count("others_address_today"),
        "others_24_window": count("others_24_window"),
        "churn_24": np.ascontiguousarray(column("churn_24")),
        "known_network_today": column("known_network_today") > 0,
    }


_NAMES = pa.array(FEATURES, pa.string())
_NOVELTY = pa.array(NOVELTY, pa.string())


def _named_lists(offsets: np.ndarray | bytes, codes: np.ndarray | bytes, safe: bool = True) -> pa.ListArray:
    """A list of feature names per pair from its list offsets (int32) and codes into ``FEATURES``
    (int8): the names dictionary-encoded, one byte a name (their text per pair, 34 MB a side at a
    million pairs, took longer to write than the pairs took to judge). ``safe=False``: the codes
    are known to be in range (``kernels.named_codes`` checked them), so Arrow does not check again."""
    offsets = np.frombuffer(offsets, np.int32)
    codes = np.frombuffer(codes, np.int8)[: offsets[-1]]  # (the compiled pass's bytes hold one when empty)
    names = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int8()), _NAMES, safe=safe)
    return pa.ListArray.from_arrays(pa.array(offsets), names)


@dataclass
class Judged:
    """Per pair: its insight, the codes (into ``FEATURES``) and counts of the evidence named for
    and against it (``NAMED_LIMITS`` at most each, strongest first), and its ``SHOWN`` features."""

    insight: np.ndarray
    codes: tuple[np.ndarray, np.ndarray]  # pairs x limit, int8
    counts: tuple[np.ndarray, np.ndarray]  # per pair, uint8
    shown: dict[str, np.ndarray]

    @classmethod
    def empty(cls, n: int) -> "Judged":
        """Room for ``n`` pairs' judgements (what the kernel fills)."""
        return cls(
            np.empty(n, np.float64),
            tuple(np.zeros((n, k), np.int8) for k in NAMED_LIMITS),
            tuple(np.zeros(n, np.uint8) for _ in NAMED_LIMITS),
            {name: np.empty(n, dtype) for name, dtype in SHOWN.items()},
        )

    def named(self) -> list[pa.Array]:
        """``evidence_for`` and ``evidence_against``: a list of feature names per pair."""
        return [self.named_side(side) for side in range(len(NAMED_LIMITS))]

    def named_side(self, side: int) -> pa.Array:
        """``named()[side]`` alone: each pair's named codes gathered in one compiled pass
        (``kernels.named_codes``), or by numpy."""
        code, count = self.codes[side], self.counts[side]
        if kernels is not None:
            codes = kernels.named_codes(np.ascontiguousarray(code), np.ascontiguousarray(count), len(FEATURES))
            return _named_lists(*codes, safe=False)
        offsets = np.zeros(len(count) + 1, np.int32)
        np.cumsum(count, out=offsets[1:])
        return _named_lists(offsets, code[np.arange(code.shape[1]) < count[:, None]])

    def shown_columns(self) -> dict[str, pa.Array]:
        """The evidence ``daily_insights`` shows, in words and counts a person reads."""
        s = self.shown
        return {
            "novelty": pa.DictionaryArray.from_arrays(pa.array(s["novelty"]), _NOVELTY),
            "others_on_address_window": pa.array(s["others_address_window"]),
            "others_on_address_today": pa.array(s["others_address_today"]),
            "others_on_24_window": pa.array(s["others_24_window"]),
            "identity_churn": pa.array(s["churn_24"], pa.float64()),
            "known_network_today": pa.array(s["known_network_today"]),
        }


@dataclass(frozen=True)
class Judge:
    """How a pair is judged from its features: by a combiner (its coefficients over ``FEATURES``)."""

    weights: np.ndarray
    intercept: float
    bar: float = NAMED_EVIDENCE

    @classmethod
    def of(cls, combiner: Combiner) -> "Judge":
        return cls(np.ascontiguousarray(combiner.vector, np.float64), float(combiner.intercept))

    @staticmethod
    def blank(n: int) -> Judged:
        """Room for ``n`` pairs' judgements (what the kernel fills)."""
        return Judged.empty(n)

    def of_matrix(self, x: np.ndarray) -> Judged:
        """The judgements of the rows of an evidence matrix (pairs x ``FEATURES``)."""
        codes, counts = top_contributions(x, self.weights, NAMED_LIMITS, self.bar)
        return Judged(sigmoid(self.intercept + x @ self.weights), codes, counts, shown_of_matrix(x))


def top_contributions(
    x: np.ndarray, weights: np.ndarray, limits: tuple[int, int], bar: float = NAMED_EVIDENCE
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Per row of ``x``: the (at most ``limits[0]``) features whose contribution to the log-odds
    (``x * weights``) raises it by at least ``bar`` and the (at most ``limits[1]``) lowering it
    by as much, largest first (ties: the earlier feature); as codes (rows x limit)
    and counts per row, for each side.

    numpy goes a feature at a time over its column, and orders only the entries that pass (a row
    has a handful at most); the compiled ``kernels.top_contributions`` goes a row at a time."""
    n = len(x)
    codes = tuple(np.zeros((n, k), np.int8) for k in limits)
    counts = tuple(np.zeros(n, np.uint8) for _ in limits)
    if kernels is not None:
        rows = np.ascontiguousarray(x, np.float64)
        weights = np.ascontiguousarray(weights, np.float64)
        kernels.top_contributions(rows, weights, bar, codes[0], counts[0], codes[1], counts[1])
        return codes, counts
    found: list[list[tuple[np.ndarray, int, np.ndarray]]] = [[], []]
    for i, weight in enumerate(np.asarray(weights).tolist()):
        if weight == 0.0:
            continue
        contribution = x[:, i] * weight
        for side, hit in enumerate((contribution >= bar, contribution <= -bar)):
            rows = np.flatnonzero(hit)
            found[side].append((rows, i, np.abs(contribution[rows])))
    for side, k in enumerate(limits):
        parts = found[side] or [(np.zeros(0, np.int64), 0, np.zeros(0))]
        row = np.concatenate([r for r, _, _ in parts])
        column = np.concatenate([np.full(len(r), i, np.int64) for r, i, _ in parts])
        value = np.concatenate([v for _, _, v in parts])
        ranked = np.lexsort((column, -value, row))
        row, column = row[ranked], column[ranked]
        rank = np.arange(len(row)) - np.searchsorted(row, row)
        kept = rank < k
        codes[side][row[kept], rank[kept]] = column[kept]
        counts[side][:] = np.bincount(row[kept], minlength=n)
    return codes, counts
