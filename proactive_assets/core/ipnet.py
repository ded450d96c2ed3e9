"""IP addresses: what a CloudTrail source field holds, and address columns parsed to integers.

CloudTrail's ``sourceIPAddress`` holds an IPv4/IPv6 address, an AWS service host name
(``ec2.amazonaws.com``) or ``AWS Internal``. Only real addresses make (entity, ip) pairs.
Anonymised samples carry octets with leading zeros (``075.050.255.67``); they are read as
decimal (``75.50.255.67``), never as octal the way ``inet_aton`` would, by the classifier and
the parsers alike.

``parse_ips`` turns a column of addresses into their 128 bits (the model's input) without a
Python object per IPv4 address: those are parsed on the Arrow bytes; IPv6 goes through
``inet_pton`` one value at a time.
"""

import functools
import ipaddress
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

try:  # the compiled IPv4 parser (``_ipv4.c``, built by setup.py where a C compiler is)
    from proactive_assets.core import _ipv4
except ImportError:  # pragma: no cover - depends on the install
    _ipv4 = None

KIND_IP = "ip"
KIND_AWS_SERVICE = "aws_service"
KIND_AWS_INTERNAL = "aws_internal"
KIND_INVALID = "invalid"


#: Longer values are neither an address nor a host name (DNS names stop at 253 bytes).
MAX_SOURCE_LENGTH = 253


def classify_source(value: str | None) -> tuple[str, str | None]:
    """Return ``(kind, canonical_ip)``; ``canonical_ip`` is set only when kind is ``ip``.

    Values longer than ``MAX_SOURCE_LENGTH`` are invalid without being cached, so a log of huge
    values cannot fill the cache.
    """
    if value is None or len(value) > MAX_SOURCE_LENGTH:
        return KIND_INVALID, None
    return _classify(value)


@functools.lru_cache(maxsize=65536)
def _classify(value: str) -> tuple[str, str | None]:
    text = value.strip()
    if not text:
        return KIND_INVALID, None
    lowered = text.lower()
    if lowered.endswith(".amazonaws.com") or lowered == "amazonaws.com":
        return KIND_AWS_SERVICE, None
    if lowered == "aws internal":
        return KIND_AWS_INTERNAL, None
    canonical = canonical_ip(text)
    if canonical is None:
        return KIND_INVALID, None
    return KIND_IP, canonical


def canonical_ip(text: str) -> str | None:
    """Canonical text of an IPv4/IPv6 address, or None if ``text`` is not one."""
    if ":" in text:
        try:
            addr = ipaddress.IPv6Address(text.split("%", 1)[0])
        except ValueError:
            return None
        mapped = addr.ipv4_mapped
        return str(mapped) if mapped is not None else str(addr)
    parts = text.split(".")
    if len(parts) != 4:
        return None
    octets = []
    for part in parts:
        if not (part.isascii() and part.isdigit()) or len(part) > 3:  # "²".isdigit(), but int() refuses it
            return None
        number = int(part)
        if number > 255:
            return None
        octets.append(str(number))
    return ".".join(octets)


# --------------------------------------------------------------------------------------------
# string columns, as the parsers (and the model's entity column) take them


def string_column(values: Any) -> pa.ChunkedArray | None:
    """``values`` as a pyarrow ChunkedArray when it is a pyarrow string column (``string``,
    ``large_string`` or ``string_view``, plain or dictionary-encoded, Array or ChunkedArray);
    None for any other input."""
    if not isinstance(values, pa.Array | pa.ChunkedArray):
        return None
    value_type = values.type.value_type if pa.types.is_dictionary(values.type) else values.type
    if not (
        pa.types.is_string(value_type) or pa.types.is_large_string(value_type) or pa.types.is_string_view(value_type)
    ):
        return None
    if isinstance(values, pa.Array):
        values = pa.chunked_array([values])
    if pa.types.is_string_view(value_type):  # no offsets buffer: made a plain string column
        is_dictionary = pa.types.is_dictionary(values.type)
        values = values.cast(pa.dictionary(values.type.index_type, pa.string()) if is_dictionary else pa.string())
    return values


def string_array(values: pa.ChunkedArray) -> pa.Array:
    """The column as one Array (dictionary chunks are unified)."""
    return values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()


def arrow_to_pandas(values: Any) -> Any:
    """pyarrow arrays become pandas (dictionary arrays become Categoricals); others unchanged."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values.to_pandas()
    return values


def as_object_array(values: Any) -> np.ndarray:
    """A 1-d object array of the values (strings stay Python strings)."""
    values = arrow_to_pandas(values)
    if isinstance(values, np.ndarray) and values.dtype == object:
        return values.reshape(-1)
    return np.asarray(values, dtype=object).reshape(-1)


# --------------------------------------------------------------------------------------------
# parsing addresses to their 128 bits


def _offsets(values: pa.Array) -> np.ndarray:
    """The value offsets of a plain ``string`` or ``large_string`` array, without a copy."""
    dtype = np.dtype(np.int64 if pa.types.is_large_string(values.type) else np.int32)
    return np.frombuffer(values.buffers()[1], dtype=dtype, count=len(values) + 1, offset=values.offset * dtype.itemsize)


@functools.cache
def _dot_table() -> np.ndarray:
    """For every 16-bit mask of '.' positions in a 16-byte row: the positions of its first three
    dots (4 bits each, from bit 0), and bit 12 set when the mask has exactly three."""
    bits = (np.arange(1 << 16, dtype=np.uint32)[:, None] >> np.arange(16, dtype=np.uint32)) & 1
    rank = np.cumsum(bits, axis=1)
    table = np.zeros(1 << 16, dtype=np.uint16)
    for k in range(3):
        table |= np.argmax(rank == k + 1, axis=1).astype(np.uint16) << np.uint16(4 * k)
    table[rank[:, -1] == 3] |= np.uint16(1 << 12)
    return table


# bytes of a right-aligned 3-byte field that belong to a field of width 0..3
_FIELD_KEEP = np.array([0, 0xFF0000, 0xFFFF00, 0xFFFFFF], dtype=np.uint32)


def parse_ipv4_rows(data: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dotted-decimal values of n strings laid out in 16-byte rows: ``data`` is their 16 n bytes,
    each string of ``length`` bytes padded with NULs. Returns (uint32 value, ok); ok=False rows
    are not d.d.d.d (fields of 1-3 ASCII digits, at most 255; leading zeros read as decimal) and
    need a closer look.

    No per-string work: a 65,536-entry table turns the 16-bit mask of a row's dots into the dot
    positions; each field is then read with one unaligned 4-byte load per row (the 3 bytes
    before its end, or the row's first bytes shifted for the first field), the bytes before a
    shorter field replaced by '0', checked to be digits (SWAR: bit 7 of a byte of
    ``(x + 0x46) | (x - 0x30)`` is set unless it is '0'-'9') and combined into the octet.
    """
    n = len(length)
    u32 = np.uint32
    # windows[k] = bytes k..k+3 of data (little-endian); a field ending at byte e >= 3 of row r
    # (every field but the first: the first dot is at byte 1 or later) ends window 16 r + e - 3
    windows = np.ndarray((16 * n - 3,), dtype="<u4", buffer=data, strides=(1,))
    row_starts = np.ndarray((n,), dtype="<u4", buffer=data, strides=(16,))
    base = np.arange(-3, 16 * n - 3, 16, dtype=np.intp)
    dots = np.packbits(data == ord("."), bitorder="little").view("<u2")
    info = _dot_table()[dots]
    ok = info >= (1 << 12)
    ends = [(info >> np.uint16(4 * k)) & np.uint16(15) for k in range(3)] + [length.astype(np.uint16)]
    value = np.zeros(n, dtype=u32)
    not_digit = np.zeros(n, dtype=u32)
    start = np.zeros(n, dtype=np.uint16)
    for field, end in enumerate(ends):
        width = end - start  # wraps for rows without three dots, which are not ok anyway
        ok &= (width >= 1) & (width <= 3)
        if field == 0:
            x = row_starts << (u32(24) - u32(8) * np.minimum(width, 3)).astype(u32)
        else:
            x = windows[base + end]
        x ^= u32(0x303030)
        x &= np.take(_FIELD_KEEP, width, mode="clip")
        x ^= u32(0x303030)  # the field's bytes right-aligned in bytes 0-2, '0' before them
        not_digit |= (x + u32(0x464646)) | (x - u32(0x303030))
        x &= u32(0x0F0F0F)
        octet = (x & u32(0xFF)) * u32(100) + ((x >> u32(8)) & u32(0xFF)) * u32(10) + (x >> u32(16))
        ok &= octet <= 255
        value <<= u32(8)
        value |= octet & u32(0xFF)
        start = end + np.uint16(1)
    ok &= (not_digit & u32(0x808080)) == 0
    return value, ok


#: ``parse_ipv4_arrow``'s answers within ``parsed_once``, by the array's buffers: (answer, array)
_parsed: dict[tuple, tuple[Future, pa.Array]] | None = None
_parsed_lock = threading.Lock()


@contextmanager
def parsed_once() -> Iterator[None]:
    """Within it, ``parse_ipv4_arrow`` parses the bytes of an Arrow string array once however many
    times and threads ask (the others wait for that answer, whose arrays are read-only): a scored
    day's addresses are parsed for IP Insights on one core and for the evidence on the other, ~20 ms
    a million each. Each answer keeps its array, so no other array can have its buffers' addresses;
    all are dropped at the end of the outermost scope (when scopes of several threads overlap,
    the first to end: the others then parse again, with the same answers)."""
    global _parsed
    with _parsed_lock:
        outermost = _parsed is None
        if outermost:
            _parsed = {}
    try:
        yield
    finally:
        if outermost:
            with _parsed_lock:
                _parsed = None


def parse_ipv4_arrow(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(uint32 value, ok) of a plain pyarrow string array, parsed on its bytes: by the compiled
    ``_ipv4.parse`` where it was built, else ``parse_ipv4_rows`` (same answers where ok). Within
    ``parsed_once``, an array's bytes are parsed once.

    Strings of 7-15 bytes are padded to 16 by pyarrow (``ascii_rpad``), so their bytes become an
    (n, 16) array without a copy per string; the others (IPv6, nulls, junk) are not ok.
    """
    with _parsed_lock:
        parsed = _parsed
        if parsed is None or not len(values):
            answer = None
        else:
            key = (str(values.type), values.offset, len(values), *(b.address if b else 0 for b in values.buffers()))
            answer, _ = parsed.get(key, (None, None))
            mine = answer is None
            if mine:
                answer = Future()
                parsed[key] = (answer, values)
    if answer is None:
        return _parse_ipv4_arrow(values)
    if mine:
        try:
            value, ok = _parse_ipv4_arrow(values)
        except BaseException as error:
            answer.set_exception(error)
            raise
        value.flags.writeable = ok.flags.writeable = False  # (shared by the callers)
        answer.set_result((value, ok))
    return answer.result()


def _parse_ipv4_arrow(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    n = len(values)
    value = np.zeros(n, dtype=np.uint32)
    ok = np.zeros(n, dtype=bool)
    if n == 0:
        return value, ok
    if _ipv4 is not None:
        data = values.buffers()[2]
        _ipv4.parse(
            _offsets(values).astype(np.int64),
            np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8),
            value,
            ok.view(np.uint8),
        )
        if values.null_count:
            ok &= values.is_valid().to_numpy(zero_copy_only=False)
        return value, ok
    length = np.diff(_offsets(values))
    candidate = (length >= 7) & (length <= 15)
    if values.null_count:
        candidate &= values.is_valid().to_numpy(zero_copy_only=False)
    every = bool(candidate.all())
    if not every and not candidate.any():
        return value, ok
    subset = values if every else values.filter(pa.array(candidate))
    padded = pc.ascii_rpad(subset, 16, "\0")
    offsets = _offsets(padded)
    m = len(padded)
    if offsets[-1] - offsets[0] != 16 * m:  # cannot happen (padding never shortens): stay safe
        return value, ok
    data = np.frombuffer(padded.buffers()[2], dtype=np.uint8, count=16 * m, offset=int(offsets[0]))
    parsed, parsed_ok = parse_ipv4_rows(data, length if every else length[candidate])
    if every:
        return parsed, parsed_ok
    value[candidate] = parsed
    ok[candidate] = parsed_ok
    return value, ok


def parse_ip(text: Any) -> tuple[bool, int] | None:
    """(is_v6, 128-bit int) of one address string, or None; leading zeros read as decimal."""
    if not isinstance(text, str):
        return None
    if ":" in text:
        try:
            return True, int(ipaddress.IPv6Address(text))
        except ValueError:
            return None
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        return None
    return False, (int(parts[0]) << 24) | (int(parts[1]) << 16) | (int(parts[2]) << 8) | int(parts[3])


_inet_pton = socket.inet_pton


def pack_ip(text: Any) -> tuple[bool, bytes] | None:
    """(is_v6, 16 big-endian bytes) of one address, or None. IPv6 goes through the C library's
    inet_pton; whatever it refuses (a zone id, IPv4, junk) gets ``parse_ip``'s answer."""
    if isinstance(text, str) and ":" in text:
        try:
            return True, _inet_pton(socket.AF_INET6, text)
        except (OSError, ValueError):
            pass
    parsed = parse_ip(text)
    return None if parsed is None else (parsed[0], parsed[1].to_bytes(16, "big"))


def parse_ips(values: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse canonical address strings into (is_v6, hi, lo): the 128 bits as two uint64 halves.

    ``values``: a pyarrow string column, or a sequence of strings (converted to one first).
    IPv4 is parsed vectorised on the Arrow bytes; IPv6 and anything unusual one value at a
    time. Raises ValueError listing a few values that are not addresses: callers must pass
    addresses (``classify_source`` separates service names and ``AWS Internal`` beforehand).
    """
    column = string_column(values)
    arrow = string_array(column) if column is not None else None
    objects = None
    if arrow is None:
        objects = as_object_array(values)
        try:
            arrow = pa.array(objects, type=pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all strings: the per-value path says which
            arrow = None
    if arrow is not None and pa.types.is_dictionary(arrow.type):
        arrow = arrow.dictionary_decode()
    n = len(arrow) if arrow is not None else len(objects)
    is6 = np.zeros(n, dtype=bool)
    hi = np.zeros(n, dtype=np.uint64)
    if arrow is not None:
        value, ok = parse_ipv4_arrow(arrow)
        lo = value.astype(np.uint64)
        rest = np.flatnonzero(~ok)
        rest_values = arrow.take(pa.array(rest)).to_pylist() if len(rest) else []
    else:
        lo = np.zeros(n, dtype=np.uint64)
        rest = np.arange(n)
        rest_values = objects.tolist()
    if len(rest):
        try:  # usually all IPv6: one inet_pton each (more than 10x faster than ipaddress)
            blobs, v6 = [_inet_pton(socket.AF_INET6, value) for value in rest_values], True
        except (OSError, ValueError, TypeError):
            packed = [pack_ip(value) for value in rest_values]
            bad = [value for value, p in zip(rest_values, packed, strict=True) if p is None]
            if bad:
                raise ValueError(f"{len(bad)} values are not IP addresses, e.g. {[str(v) for v in bad[:5]]}") from None
            blobs, v6 = [p[1] for p in packed], [p[0] for p in packed]
        halves = np.frombuffer(b"".join(blobs), dtype=">u8").reshape(-1, 2)
        is6[rest] = v6
        hi[rest] = halves[:, 0]
        lo[rest] = halves[:, 1]
    return is6, hi, lo
