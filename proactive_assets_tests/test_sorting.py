"""The compiled radix sort of 64-bit keys gives numpy's sort, in place or not, and is memory-clean."""

from pathlib import Path

import numpy as np
import pytest

from proactive_assets.core import sorting
from proactive_assets.core.sorting import distinct_keys, numbered, numbered_in_row_order, sort_keys
from proactive_assets_tests.sanitized import run_sanitized


def _cases() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    n = 20_000
    return [
        rng.integers(0, 2**64, n, dtype=np.uint64),  # every digit differs
        rng.integers(-(2**62), 2**62, n, dtype=np.int64),  # negatives: the sign bit decides the top digit
        np.full(n, 12345, np.int64),  # one value: no digit moves anything
        (rng.integers(0, 2**32, n).astype(np.uint64) << np.uint64(32)) | np.arange(n, dtype=np.uint64),  # packed rows
        rng.integers(0, 300, n).astype(np.int64),  # few values in the low digits only
        np.array([2**63, 0, 2**64 - 1, 1, 2**63 - 1] * 300, np.uint64),  # the extremes
        np.array([-(2**63), 2**63 - 1, -1, 0, 1] * 300, np.int64),
        rng.integers(0, 2**64, sorting.RADIX_FROM - 1, dtype=np.uint64),  # numpy's side of the cut
    ]


def _check(keys: np.ndarray) -> None:
    expected = np.sort(keys)
    got = sort_keys(keys)
    assert got.dtype == keys.dtype and np.array_equal(got, expected)
    copy = keys.copy()
    assert sort_keys(copy, in_place=True) is copy and np.array_equal(copy, expected)
    strided = np.repeat(keys, 2)[::2]  # not contiguous: sorted from a copy, or where it lies
    assert np.array_equal(sort_keys(strided), expected)
    assert sort_keys(strided, in_place=True) is strided and np.array_equal(strided, expected)


@pytest.mark.parametrize("case", range(len(_cases())))
def test_the_radix_sort_gives_numpys_order(case: int) -> None:
    if sorting._radix_sort is None:
        pytest.skip("the compiled sort was not built")
    _check(_cases()[case])


def test_without_the_compiled_sort_numpy_sorts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sorting, "_radix_sort", None)
    for keys in _cases():
        _check(keys)


def test_the_compiled_sort_refuses_mismatched_buffers() -> None:
    if sorting._radix_sort is None:
        pytest.skip("the compiled sort was not built")
    with pytest.raises(ValueError, match="64-bit keys, an output as long"):
        sorting._radix_sort.sort(np.zeros(10, np.uint64), np.zeros(9, np.uint64), False)
    with pytest.raises(ValueError, match="64-bit keys"):
        sorting._radix_sort.sort(np.zeros(10, np.uint8), np.zeros(10, np.uint8), False)


SANITIZED_RUN = """
import sys
from proactive_assets.core import sorting
from proactive_assets_tests import test_sorting as t
from proactive_assets_tests.sanitized import load_extension
sorting._radix_sort = load_extension("_radix_sort", sys.argv[1])
for keys in t._cases():
    t._check(keys)
t._check_numbering()
print("clean")
"""


def test_the_sort_is_clean_under_address_and_undefined_behaviour_sanitizers(tmp_path: Path) -> None:
    source = Path(sorting.__file__).with_name("_radix_sort.c")
    assert run_sanitized(source, "_radix_sort", SANITIZED_RUN, tmp_path).startswith("clean")


@pytest.mark.parametrize("space", [50, 1 << 30, 1 << 32, 1 << 62])
def test_keys_are_numbered_as_numpy_unique_numbers_them(space: int) -> None:
    """Counted (few possible keys), sorted with their row numbers, or by ``np.unique`` (too wide
    for the row numbers beside them): the same numbers and distinct keys each way."""
    rng = np.random.default_rng(7)
    values = np.r_[rng.integers(0, space, 60, dtype=np.int64), [0, space - 1]]
    for keys in (values[rng.integers(0, len(values), 5000)], values[:0]):
        number, distinct = numbered(keys, space)
        expected, inverse = np.unique(keys, return_inverse=True)
        assert distinct.tolist() == expected.tolist()
        assert number.tolist() == inverse.tolist()
        assert distinct_keys(keys).tolist() == expected.tolist()


@pytest.mark.parametrize("space", [50, 1 << 32, 1 << 62])
def test_keys_are_numbered_in_the_order_the_rows_first_have_them(space: int) -> None:
    """``numbered_in_row_order``: each distinct key numbered by its first row, and the numbers in
    ascending key order; radix-sorted with the row numbers, or by ``np.unique`` where they do not fit."""
    rng = np.random.default_rng(11)
    values = np.r_[rng.integers(0, space, 60, dtype=np.int64), [0, space - 1]]
    for keys in (values[rng.integers(0, len(values), 5000)], values[:0], values[:1]):
        number, distinct, ascending = numbered_in_row_order(keys, space)
        _, first = np.unique(keys, return_index=True)
        assert distinct.tolist() == keys[np.sort(first)].tolist()
        assert distinct[number].tolist() == keys.tolist()
        assert distinct[ascending].tolist() == np.unique(keys).tolist()


def _numbering_cases() -> list[tuple[np.ndarray, int]]:
    """Keys and their space: row numbers of two and three digits (the last row 1,023, 1,024,
    65,536, 19,999), keys of 32 bits (as a day's IPv4 addresses come), of 40 in 64, and of 2."""
    rng = np.random.default_rng(5)
    cases = []
    for n in (sorting.RADIX_FROM, 1024 + 1, 65_537, 20_000):
        for space, dtype in ((1 << 32, np.uint32), (1 << 32, np.int64), (1 << 40, np.uint64), (3, np.int64)):
            pool = rng.integers(0, space, max(2, n // 3), dtype=np.uint64)
            keys = pool[rng.integers(0, len(pool), n)].astype(dtype)
            keys[rng.integers(0, n)] = space - 1
            cases.append((keys, space))
    return cases


def _check_numbering() -> None:
    for keys, space in _numbering_cases():
        number, distinct, ascending = numbered_in_row_order(keys, space)
        wide = keys.astype(np.int64)
        _, first = np.unique(wide, return_index=True)
        assert distinct.dtype == number.dtype == ascending.dtype == np.int64
        assert distinct.tolist() == wide[np.sort(first)].tolist()
        assert np.array_equal(distinct[number], wide)
        assert np.array_equal(distinct[ascending], np.unique(wide))


def test_the_compiled_numbering_in_row_order_is_numpys(monkeypatch: pytest.MonkeyPatch) -> None:
    if sorting._radix_sort is None:
        pytest.skip("the compiled sort was not built")
    _check_numbering()
    compiled = [numbered_in_row_order(keys, space) for keys, space in _numbering_cases()]
    monkeypatch.setattr(sorting, "_radix_sort", None)
    for got, (keys, space) in zip(compiled, _numbering_cases(), strict=True):
        for a, b in zip(got, numbered_in_row_order(keys, space), strict=True):
            assert np.array_equal(a, b)


def test_the_compiled_numbering_refuses_keys_above_the_rows_and_mismatched_buffers() -> None:
    if sorting._radix_sort is None:
        pytest.skip("the compiled sort was not built")
    out = [np.zeros(2000, np.int64) for _ in range(3)]
    with pytest.raises(ValueError, match="does not fit above the rows"):  # 2,000 rows: two digits, 48 bits left
        sorting._radix_sort.numbered_in_row_order(np.full(2000, 1 << 48, np.uint64), *out)
    sorting._radix_sort.numbered_in_row_order(np.full(2000, (1 << 48) - 1, np.uint64), *out)
    with pytest.raises(ValueError, match="three int64 outputs as long"):
        sorting._radix_sort.numbered_in_row_order(np.zeros(2000, np.uint16), *out)
    with pytest.raises(ValueError, match="three int64 outputs as long"):
        sorting._radix_sort.numbered_in_row_order(np.zeros(1999, np.uint64), *out)


def test_keys_packed_above_their_rows_sort_without_passes_over_the_rows() -> None:
    """``sort(..., in_order)``: the rows' low digits already ascend, so a sort of the digits above
    them gives numpy's order."""
    if sorting._radix_sort is None:
        pytest.skip("the compiled sort was not built")
    rng = np.random.default_rng(3)
    for n, digits in ((300, 2), (70_000, 3)):
        packed = (rng.integers(0, 1 << 20, n).astype(np.int64) << (8 * digits)) | np.arange(n)
        assert np.array_equal(sort_keys(packed, in_order=digits), np.sort(packed))
    # rows of 17 bits, the lowest two bytes of them skipped: they wrap, but ascend among equal keys
    packed = (rng.integers(0, 50, 70_000).astype(np.int64) << 17) | np.arange(70_000)
    assert np.array_equal(sort_keys(packed, in_order=2), np.sort(packed))
    keys = rng.integers(0, 1 << 44, 70_000) // 7 * 7  # (repeats; rows then take 17 bits, not 24)
    number, distinct = numbered(keys, 1 << 44)
    assert distinct.tolist() == np.unique(keys).tolist() and np.array_equal(distinct[number], keys)
