"""Gzip log objects read whole and bounded, with the fastest inflater installed for their size.

``decompress`` reads every gzip member of an object and refuses to produce more than a limit
(``PROACTIVE_MAX_OBJECT_BYTES``), so one object's memory is bounded whatever it claims to hold.

Inflating is about half of ingest's CPU time, so the first member (a CloudTrail object's only
one) goes through the fastest inflater installed for the object's size (``inflater_for``). Above
``SMALL_OBJECT_BYTES`` compressed that is ISA-L (the ``isal`` package, ~2x zlib's speed on
CloudTrail); at or below it, where ISA-L's setup costs more than its speed saves (a quiet
account's 1-5 KB deliveries), zlib-ng (the ``zlib-ng`` package, ~1.4x zlib there, ISA-L ~1.25x).
Without them, whichever is installed, else the standard library's zlib. Each checks what zlib
checks (the header, the trailer's CRC-32 and length; the tests hold them to it) and its errors
are raised as ``zlib.error``. Members after the first, rare, are read with zlib in bounded chunks.
"""

import re
import zlib
from collections.abc import Callable

try:  # ISA-L: the fastest; releases the GIL while it inflates
    from isal import igzip_lib, isal_zlib
except ImportError:  # pragma: no cover - depends on what is installed
    igzip_lib = isal_zlib = None
try:
    from zlib_ng import zlib_ng
except ImportError:  # pragma: no cover - depends on what is installed
    zlib_ng = None

#: Default most bytes read of one object, stored or decompressed (``PROACTIVE_MAX_OBJECT_BYTES``).
MAX_OBJECT_BYTES = 512 << 20

GZIP_MAGIC = b"\x1f\x8b"
_INPUT_CHUNK = 1 << 16
_NON_ZERO = re.compile(rb"[^\x00]")
#: Bounds of the first output buffer's size (``_guess``): CloudTrail compresses 10-25x, and ISA-L
#: allocates the whole buffer it is allowed up front (so not the limit, for every object).
_FIRST_GUESS_RATIO = 32
_FIRST_GUESS_MIN = 1 << 16
#: Smaller gzip objects go through ISA-L's zlib-style interface: its decompressor is cheaper to set
#: up, which is most of the cost of a small delivery's inflating; above ~8 KB its gzip one is faster.
_ISAL_SMALL_INPUT = 8 << 10
#: Objects of at most this many compressed bytes go through ``SMALL_INFLATER`` (zlib-ng where it is
#: installed): measured on CloudTrail objects of 1-80 records, zlib-ng takes 0.63-0.76x of zlib's
#: time below ~5 KB against ISA-L's 0.69-0.82x, and ISA-L wins above it (0.52-0.59x against 0.59-0.62x).
SMALL_OBJECT_BYTES = 5 << 10


class ObjectTooLarge(ValueError):
    """An object holds more than the configured number of bytes."""


def too_large(what: str, limit: int) -> str:
    """The quarantine reason for an object over the limit."""
    return f"{what} PROACTIVE_MAX_OBJECT_BYTES ({limit:,} bytes): not read past that; raise the setting to read it"


FirstMember = Callable[[bytes, int], tuple[bytes, bytes]]
"""Inflate the gzip member at the start of ``data`` into at most ``limit`` bytes: (text, what follows it)."""


def _guess(data: bytes, limit: int) -> int:
    """The first output buffer: the size the gzip trailer states (exact for a single member, the
    usual object, so the buffer is never copied to grow or shrink), at most 32x the input (the
    trailer is data: it may lie) and at most the limit."""
    stated = int.from_bytes(data[-4:], "little") + 1
    return min(limit + 1, stated, max(_FIRST_GUESS_MIN, _FIRST_GUESS_RATIO * len(data)))


def _first_member_isal(data: bytes, limit: int) -> tuple[bytes, bytes]:
    if len(data) <= _ISAL_SMALL_INPUT:
        return _first_member_isal_small(data, limit)
    member = igzip_lib.IgzipDecompressor(flag=igzip_lib.DECOMP_GZIP)
    try:
        text = member.decompress(data, _guess(data, limit))
        if len(text) <= limit and not member.eof and not member.needs_input:  # bigger than the guess
            parts, total = [text], len(text)
            while total <= limit and not member.eof and not member.needs_input:
                piece = member.decompress(b"", min(limit + 1 - total, max(total, _FIRST_GUESS_MIN)))  # doubling
                if not piece and not member.eof and not member.needs_input:
                    break  # no progress: reported as truncated below
                parts.append(piece)
                total += len(piece)
            text = b"".join(parts)
    except igzip_lib.IsalError as exc:
        raise zlib.error(f"Error while decompressing data: {exc}") from None
    if len(text) > limit:
        raise ObjectTooLarge(too_large("decompresses to more than", limit))
    if not member.eof:
        raise zlib.error("incomplete or truncated stream")
    return text, member.unused_data


def _zlib_first_member(module: object) -> FirstMember:
    def first_member(data: bytes, limit: int) -> tuple[bytes, bytes]:
        member = module.decompressobj(31)
        try:
            text = member.decompress(data, limit + 1)  # the usual single member: one call, no copy
        except module.error as exc:
            raise zlib.error(str(exc)) from None
        if len(text) > limit:
            raise ObjectTooLarge(too_large("decompresses to more than", limit))
        if not member.eof:
            raise zlib.error("incomplete or truncated stream")
        return text, member.unused_data

    return first_member


_first_member_isal_small = _zlib_first_member(isal_zlib) if isal_zlib is not None else None

#: The inflaters installed here, fastest first on big objects.
INFLATERS: dict[str, FirstMember] = {
    **({"isal": _first_member_isal} if igzip_lib is not None else {}),
    **({"zlib-ng": _zlib_first_member(zlib_ng)} if zlib_ng is not None else {}),
    "zlib": _zlib_first_member(zlib),
}
#: The inflater of objects over ``SMALL_OBJECT_BYTES`` compressed, and of the smaller ones.
INFLATER = next(iter(INFLATERS))
SMALL_INFLATER = next(name for name in ("zlib-ng", "isal", "zlib") if name in INFLATERS)
_BIG, _SMALL = INFLATERS[INFLATER], INFLATERS[SMALL_INFLATER]


def inflater_for(size: int) -> str:
    """The name of the inflater ``decompress`` uses for a gzip object of ``size`` bytes."""
    return SMALL_INFLATER if size <= SMALL_OBJECT_BYTES else INFLATER


def decompress(data: bytes, limit: int = MAX_OBJECT_BYTES, inflater: str | None = None) -> bytes:
    """gunzip every member of ``data`` (or pass plain JSON through), producing at most ``limit`` bytes.

    Raises ``ObjectTooLarge`` as soon as the output would pass ``limit`` (nothing more is
    inflated), and ``zlib.error`` for a corrupt or truncated member or trailing data that is not
    gzip (zero padding after the last member is allowed, as gzip itself allows it). ``inflater``
    (a key of ``INFLATERS``) picks the first member's inflater; default: ``inflater_for`` its size.
    """
    if data[:2] != GZIP_MAGIC:
        if len(data) > limit:
            raise ObjectTooLarge(too_large("plain object larger than", limit))
        return data
    if inflater is not None:
        first, rest = INFLATERS[inflater](data, limit)
    else:
        first, rest = (_SMALL if len(data) <= SMALL_OBJECT_BYTES else _BIG)(data, limit)
    if not rest or _NON_ZERO.search(rest) is None:  # the usual single member (or zero padding)
        return first
    parts, total, pos = [first], len(first), 0
    view = memoryview(rest)
    while (match := _NON_ZERO.search(rest, pos)) is not None:
        pos = match.start()
        if rest[pos : pos + 2] != GZIP_MAGIC:
            raise zlib.error(f"data after gzip member at byte {len(data) - len(rest) + pos} is not gzip")
        member = zlib.decompressobj(31)
        while not member.eof:  # fed in chunks: what is left over at the member's end stays small
            if pos >= len(rest):
                raise zlib.error("incomplete or truncated stream")
            chunk = view[pos : pos + _INPUT_CHUNK]
            pos += len(chunk)
            piece = member.decompress(chunk, limit + 1 - total)
            total += len(piece)
            if total > limit:
                raise ObjectTooLarge(too_large("decompresses to more than", limit))
            parts.append(piece)
        pos -= len(member.unused_data)
    return b"".join(parts)
