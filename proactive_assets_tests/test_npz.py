"""The window index's .npz, read in place: the arrays np.load gives, views where aligned, damage refused."""

import io
from pathlib import Path

import numpy as np
import pytest

from proactive_assets.core.npz import ALIGN, aligned_empty, npz_arrays, npz_bytes, read_aligned

ARRAYS = {
    "keys": np.arange(1000, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15),
    "counts": np.arange(7, dtype=np.int64),
    "flags": np.array([True, False, True]),
    "text": np.frombuffer(b"alice|bob", np.uint8),
    "matrix": np.arange(12, dtype=np.int32).reshape(3, 4),
    "fortran": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
    "empty": np.zeros(0, np.float64),
    "format": np.array([1]),
}


def _assert_same(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert list(got) == list(expected)
    for name, array in expected.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape, name
        np.testing.assert_array_equal(got[name], array, err_msg=name)


def test_arrays_read_in_place_are_what_np_load_reads_and_the_bytes_are_reproducible() -> None:
    data = npz_bytes(ARRAYS)
    assert data == npz_bytes(ARRAYS)
    got = npz_arrays(data)
    _assert_same(got, ARRAYS)
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        _assert_same(got, {name: z[name] for name in z.files})
    for name, array in got.items():
        if array.size:
            assert not array.flags.owndata and not array.flags.writeable, name  # a view of the bytes
            start = np.frombuffer(data, np.uint8).ctypes.data
            assert (array.ctypes.data - start) % ALIGN == 0, name  # at a 64-byte boundary in the file


def test_an_archive_np_savez_wrote_reads_the_same() -> None:
    out = io.BytesIO()
    np.savez(out, **ARRAYS)
    _assert_same(npz_arrays(out.getvalue()), ARRAYS)


def test_a_damaged_compressed_or_foreign_archive_is_refused_naming_the_member() -> None:
    data = bytearray(npz_bytes(ARRAYS))
    at = bytes(data).index(np.arange(7, dtype=np.int64).tobytes())
    data[at + 3] ^= 0xFF
    with pytest.raises(ValueError, match=r"counts\.npy: damaged"):
        npz_arrays(bytes(data))
    out = io.BytesIO()
    np.savez_compressed(out, **ARRAYS)
    with pytest.raises(ValueError, match=r"keys\.npy: compressed"):
        npz_arrays(out.getvalue())
    with pytest.raises(ValueError, match=r"not an \.npz archive"):
        npz_arrays(b"not a zip file at all")


@pytest.mark.parametrize("extra", [0, 1, 17, 48, 4096 + 5])
def test_a_file_read_aligned_gives_its_arrays_on_cache_line_boundaries(tmp_path: Path, extra: int) -> None:
    arrays = {**ARRAYS, "pad": np.zeros(extra, np.uint8)}  # files of several sizes, members at several offsets
    data = npz_bytes(arrays)
    path = tmp_path / "a.npz"
    path.write_bytes(data)
    buffer = read_aligned(path)
    assert buffer == data and buffer.readonly
    assert np.frombuffer(buffer, np.uint8).ctypes.data % ALIGN == 0
    got = npz_arrays(buffer)
    _assert_same(got, arrays)
    for name, array in got.items():
        if array.size:
            assert not array.flags.owndata and not array.flags.writeable, name
            assert array.ctypes.data % ALIGN == 0, name  # in memory, not only in the file


def test_an_archive_read_from_a_buffer_is_refused_as_from_bytes(tmp_path: Path) -> None:
    data = bytearray(npz_bytes(ARRAYS))
    data[bytes(data).index(np.arange(7, dtype=np.int64).tobytes()) + 3] ^= 0xFF
    (tmp_path / "damaged.npz").write_bytes(data)
    (tmp_path / "foreign").write_bytes(b"not a zip file at all")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ValueError, match=r"counts\.npy: damaged"):
        npz_arrays(read_aligned(tmp_path / "damaged.npz"))
    for name in ("foreign", "empty"):
        with pytest.raises(ValueError, match=r"not an \.npz archive"):
            npz_arrays(read_aligned(tmp_path / name))


@pytest.mark.parametrize(
    ("shape", "dtype"), [(0, np.uint8), (5, np.float64), ((3, 32), np.float32), ((70_000, 32), np.float32)]
)
def test_an_aligned_array_starts_on_a_cache_line(shape: int | tuple[int, int], dtype: type) -> None:
    arrays = [aligned_empty(shape, dtype) for _ in range(8)]
    for array in arrays:
        assert array.shape == np.empty(shape).shape and array.dtype == dtype and array.flags.writeable
        assert array.flags.c_contiguous and (array.ctypes.data % ALIGN == 0 or not array.size)
        array[...] = 1  # its own memory
    assert all(a.sum() == a.size for a in arrays)
