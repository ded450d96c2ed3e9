"""The compiled lookup of hash keys (``_sorted_lookup``) gives numpy's answers (``features._slots``)."""

import numpy as np
import pytest

from proactive_assets.core.evidence import features
from proactive_assets.core.evidence.keys import mix64

lookup = pytest.importorskip("proactive_assets.core.evidence._sorted_lookup")


def _numpy_slots(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(keys, queries), len(keys) - 1)


@pytest.mark.parametrize("n", [1, 2, 7, 9, 1000, 70_000])
def test_hash_keys_and_skewed_keys_sit_where_searchsorted_puts_them(n: int) -> None:
    rng = np.random.default_rng(n)
    top = np.uint64(2**64 - 1)
    spread = np.sort(mix64(rng.integers(0, 1 << 62, n)))
    skewed = np.sort(rng.integers(0, 50, n).astype(np.uint64))  # all in the first bucket, with repeats
    for keys in (spread, skewed, np.unique(skewed)):
        queries = np.concatenate([keys, keys + np.uint64(1), keys - np.uint64(1), mix64(rng.integers(0, 1 << 62, 500))])
        queries = np.concatenate([queries, np.array([0, 1, top, top - np.uint64(1)], np.uint64)])
        assert np.array_equal(features._slots(keys, queries), _numpy_slots(keys, queries))
        assert np.array_equal(features.member(keys, queries), np.isin(queries, keys))


def test_the_lookup_refuses_what_it_cannot_search() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        lookup.slots(np.zeros(0, np.uint64), np.zeros(3, np.uint64), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="as long"):
        lookup.slots(np.ones(4, np.uint64), np.zeros(3, np.uint64), np.zeros(2, np.int64))
