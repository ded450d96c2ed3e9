"""The compiled hot loops (``_evidence_kernels.c``) give the numpy code's answers."""

from pathlib import Path

import numpy as np
import pytest

from proactive_assets.core.evidence import detector, features
from proactive_assets.core.evidence.features import FEATURES
from proactive_assets.core.evidence.keys import mix64
from proactive_assets_tests.sanitized import run_sanitized

kernels = pytest.importorskip("proactive_assets.core.evidence._evidence_kernels")


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
        kernels.slots(np.zeros(0, np.uint64), np.zeros(3, np.uint64), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="as long"):
        kernels.slots(np.ones(4, np.uint64), np.zeros(3, np.uint64), np.zeros(2, np.int64))


def test_each_rows_strongest_evidence_is_named_as_numpy_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    n = 2000
    x = np.asfortranarray(np.round(rng.normal(0, 1, (n, len(FEATURES))), 1))  # rounded: many ties
    x[:50] = 0.0  # rows that name nothing
    weights = np.round(rng.normal(0, 1.5, len(FEATURES)), 1)
    weights[[3, 7]] = 0.0
    compiled = [a.to_pylist() for a in detector._named(x, weights, (4, 3))]
    monkeypatch.setattr(detector, "kernels", None)
    assert compiled == [a.to_pylist() for a in detector._named(x, weights, (4, 3))]
    assert any(len(v) == 4 for v in compiled[0]) and any(v == [] for v in compiled[1])
    empty = detector._named(x[:0], weights, (4, 3))
    assert [a.to_pylist() for a in empty] == [[], []]


def test_top_contributions_refuses_mismatched_buffers() -> None:
    x = np.zeros((len(FEATURES), 10))
    with pytest.raises(ValueError, match="mismatched"):
        kernels.top_contributions(x, np.zeros(len(FEATURES)), 0.5, *_outputs(9, 4), *_outputs(10, 3))


def _outputs(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((n, k), np.int8), np.zeros(n, np.uint8)


SANITIZED_RUN = """
import sys
import numpy as np
from proactive_assets.core.evidence import compiled, detector, features
from proactive_assets_tests import test_evidence_kernels as t
from proactive_assets_tests.sanitized import load_extension
sanitized = load_extension("_evidence_kernels", sys.argv[1])
compiled.kernels = features.kernels = detector.kernels = sanitized
for n in (1, 2, 7, 9, 1000, 70_000):
    t.test_hash_keys_and_skewed_keys_sit_where_searchsorted_puts_them(n)
class Patch:
    def setattr(self, target, name, value):
        setattr(target, name, value)
t.test_each_rows_strongest_evidence_is_named_as_numpy_names_it(Patch())
print("clean")
"""


def test_the_kernels_are_clean_under_address_and_undefined_behaviour_sanitizers(tmp_path: Path) -> None:
    source = Path(detector.__file__).with_name("_evidence_kernels.c")
    assert run_sanitized(source, "_evidence_kernels", SANITIZED_RUN, tmp_path).startswith("clean")
