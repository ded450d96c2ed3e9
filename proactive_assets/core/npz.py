"""Uncompressed ``.npz`` files whose arrays are read in place: the window's index kept with each
model (92 MB at the IP Insights tutorial's scale) is read every scored day.

``np.load`` copies each array out of the archive and checks its CRC with zlib: 50 ms for that
index, ahead of everything else the day's scoring does. ``npz_bytes`` writes each member's data
at a 64-byte boundary (a zip extra field pads its local header), so ``npz_arrays`` can give
read-only views of the bytes instead, after checking each CRC with ISA-L's crc32 where it is
installed (7 ms against zlib's 24 ms). Archives written otherwise (``np.savez``) read the same,
with a copy of each array that does not sit aligned. Either way the result is ``np.load``'s.

The alignment holds in memory only if the archive's bytes start on a boundary too: a ``bytes``
object's data sits 32 bytes past its header, and a large one's block 16 bytes past a page, so
every member of an archive read into one sits 48 bytes off a cache line, and IP Insights'
128-byte embedding rows each span three lines instead of two (its gathers 55 against 40 ms a
million pairs). ``read_aligned`` reads a file into a buffer that starts on one.
"""

import io
import os
import struct
import zipfile
import zlib

import numpy as np

try:
    from isal import isal_zlib

    _crc32 = isal_zlib.crc32
except ImportError:  # pragma: no cover - depends on the install
    _crc32 = zlib.crc32

ALIGN = 64
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... file name length, extra field length
_PADDING_FIELD = 0xD935  # the extra field zipalign pads with; zip readers skip unknown fields


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An uncompressed ``.npz`` of ``arrays`` (no pickled objects), each member's data 64-byte aligned
    in the file, the same bytes for the same arrays (fixed timestamps)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            body = io.BytesIO()
            np.lib.format.write_array(body, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            data_at = out.tell() + _LOCAL_HEADER.size + len(info.filename.encode()) + 4
            padding = -data_at % ALIGN
            info.extra = struct.pack("<HH", _PADDING_FIELD, padding) + bytes(padding)
            archive.writestr(info, body.getbuffer())
    return out.getvalue()


def aligned_empty(shape: int | tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """``np.empty`` starting on a 64-byte boundary (numpy's own start 16 bytes past one)."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buffer = np.empty(size + ALIGN, np.uint8)
    start = -buffer.ctypes.data % ALIGN
    return buffer[start : start + size].view(dtype).reshape(shape)


def read_aligned(path: str | os.PathLike) -> memoryview:
    """A file's bytes (read-only), in a buffer that starts on a 64-byte boundary: an archive of
    ``npz_bytes`` read from it gives arrays aligned to cache lines. One read, as ``read_bytes``."""
    with open(path, "rb", buffering=0) as file:
        size = os.fstat(file.fileno()).st_size
        view = memoryview(aligned_empty(size, np.uint8))
        done = 0
        while done < size and (got := file.readinto(view[done:])):
            done += got
        if done < size or file.read(1):
            raise OSError(f"{os.fspath(path)} changed size while it was read")
    return view.toreadonly()


class _BufferFile(io.RawIOBase):
    """A read-only file over a buffer, for ``zipfile`` to read an archive's directory from:
    ``io.BytesIO`` copies anything but a ``bytes`` object whole (92 MB for the window's index)."""

    def __init__(self, data: bytes | memoryview) -> None:
        self._view = memoryview(data).cast("B")
        self._at = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._at

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: len(self._view)}[whence]
        self._at = max(0, base + offset)
        return self._at

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        part = self._view[self._at : self._at + len(buffer)]
        buffer[: len(part)] = part
        self._at += len(part)
        return len(part)


def zip_reader(data: bytes | memoryview) -> zipfile.ZipFile:
    """``data`` opened as a zip archive without copying it (raises zipfile.BadZipFile)."""
    return zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else _BufferFile(data))


def npz_arrays(data: bytes | memoryview) -> dict[str, np.ndarray]:
    """The arrays of an uncompressed ``.npz`` (``npz_bytes``, ``np.savez``): read-only views of
    ``data`` where aligned, copies where not. Raises ValueError naming the member that is damaged,
    compressed, or holds objects."""
    view = memoryview(data)
    try:
        with zip_reader(data) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile as error:
        raise ValueError(f"not an .npz archive: {error}") from None
    out = {}
    for info in members:
        name = info.filename.removesuffix(".npy")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"{info.filename}: compressed, where an uncompressed .npz is read in place")
        signature, name_length, extra_length = _LOCAL_HEADER.unpack_from(data, info.header_offset)
        start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        member = view[start : start + info.file_size]
        if signature != b"PK\x03\x04" or len(member) != info.file_size or _crc32(member) != info.CRC:
            raise ValueError(f"{info.filename}: damaged (its bytes do not match the archive's CRC)")
        out[name] = _array(member, info.filename)
    return out


def _array(member: memoryview, filename: str) -> np.ndarray:
    """The ``.npy`` in ``member``."""
    head = io.BytesIO(member[: min(len(member), 1 << 16)])  # the header: at most 64 KiB in practice
    try:
        version = np.lib.format.read_magic(head)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(head)
    except ValueError as error:
        raise ValueError(f"{filename}: not an .npy array ({error})") from None
    if dtype.hasobject:
        raise ValueError(f"{filename}: holds Python objects, which are not read")
    count = int(np.prod(shape, dtype=np.int64))
    offset = head.tell()
    if offset + count * dtype.itemsize > len(member):
        raise ValueError(f"{filename}: shorter than its header says")
    array = np.frombuffer(member, dtype, count, offset)
    if not array.flags.aligned:  # (np.savez's members sit anywhere)
        array = array.copy()
    return array.reshape(shape, order="F" if fortran_order else "C")
