"""Which rows of a day's pair events are the first copy of their event, exactly and fast.

An event is one (eventID, identity, address, time) (``pairs.EVENT_KEY``). Arrow's hash
aggregation over those keys is exact but slow on a real day, where nearly every eventID is new:
about 4 s for 5M distinct ids on one core (the benchmark's day of copied objects, 130k distinct
ids, hid it). CloudTrail's eventIDs are UUIDs, 36 bytes, so here such rows are told apart in
numpy: a 64-bit hash of the id's bytes and the other keys; only the rows whose hash another row
has are compared, key by key, with the group's first row, so a hash collision never merges two
events. Other ids, any group where the comparison finds a collision, and a day where many events
come twice (``MANY_DUPLICATES``) go through the exact aggregation.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from proactive_assets.core.hashing import mix64
from proactive_assets.core.sorting import sort_keys

#: The length of a UUID eventID, as CloudTrail (and Security Lake, which keeps it) writes it.
ID_CHARS = 36
#: With more than one duplicated event in this many (a day read from CloudTrail and from Security
#: Lake, which keeps its eventIDs), comparing each copy in numpy costs more than Arrow's aggregation.
MANY_DUPLICATES = 8
_K = np.uint64(0x9E3779B97F4A7C15)
#: Low bits of the hash in the bitmap that finds the rows sharing a hash (2**20 bits: 1 MB).
_FILTER_BITS = 20
_FILTER_MASK = np.uint64((1 << _FILTER_BITS) - 1)


def first_occurrences(keys: pa.Table, key: list[str]) -> np.ndarray:
    """True for the first row of each event (the ``key`` columns, the event id first), and for
    every row without an event id."""
    keep = np.asarray(keys.column(key[0]).is_null(), dtype=bool)
    if keys.num_rows == 0 or keep.all():
        return keep
    hashes, hashed = _hashes(keys, key)
    exact = ~keep & ~hashed  # ids of other lengths
    rows = np.flatnonzero(hashed)
    if len(rows):
        hashes = hashes[rows]
        ordered = sort_keys(hashes)
        repeated = ordered[1:] == ordered[:-1]
        shared = ordered[1:][repeated]
        shared = shared[np.r_[True, shared[1:] != shared[:-1]]] if len(shared) else shared  # each once
        if len(shared) * MANY_DUPLICATES > len(rows):  # CloudTrail and Security Lake both: aggregated exactly
            exact[rows] = True
        else:  # the usual day: few duplicates, found by binary search, then compared key by key
            member = np.zeros(len(rows), dtype=bool)
            if len(shared):
                # a bitmap of the shared hashes' low bits rules most rows out before the binary search
                bits = np.zeros(1 << _FILTER_BITS, dtype=bool)
                bits[shared & _FILTER_MASK] = True
                maybe = np.flatnonzero(bits[hashes & _FILTER_MASK])
                found = shared[np.minimum(np.searchsorted(shared, hashes[maybe]), len(shared) - 1)] == hashes[maybe]
                member[maybe[found]] = True
            keep[rows[~member]] = True  # no other row has its hash: the only copy of its event
            if member.any():
                exact[_groups(keys, key, rows[member], hashes[member], keep)] = True
    if exact.any():
        keep[_exact_firsts(keys, key, np.flatnonzero(exact))] = True
    return keep


def _groups(keys: pa.Table, key: list[str], rows: np.ndarray, hashes: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Rows sharing a hash, in groups: where every row has the key of the group's first row, that
    row is kept (in ``keep``); the rows of any other group are returned, for the exact aggregation."""
    order = np.argsort(hashes)
    rows, hashes = rows[order], hashes[order]
    starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])
    sizes = np.diff(np.r_[starts, len(rows)])
    lead = np.repeat(np.minimum.reduceat(rows, starts), sizes)  # each row's group's first row
    followers = rows != lead
    same = np.ones(len(rows), dtype=bool)
    same[followers] = _same_keys(keys, key, rows[followers], lead[followers])
    broken = np.repeat(np.logical_and.reduceat(same, starts), sizes) == 0
    keep[lead[~broken]] = True
    return rows[broken]


def _exact_firsts(keys: pa.Table, key: list[str], rows: np.ndarray) -> np.ndarray:
    """The first of ``rows`` of each distinct key, by Arrow's hash aggregation. ``rows`` hold every
    row of their keys, so most of a day is aggregated whole rather than copied first."""
    if len(rows) * 4 > keys.num_rows:
        rows = np.arange(keys.num_rows)
        subset = keys.select(key).append_column("row", pa.array(rows))
    else:
        subset = keys.select(key).take(pa.array(rows)).append_column("row", pa.array(rows))
    firsts = subset.group_by(key, use_threads=False).aggregate([("row", "min")])
    return np.asarray(firsts.column("row_min"))


def _id_text(chunk: pa.Array, wanted: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(which of the chunk's rows hold an id of ``ID_CHARS`` bytes, those ids' bytes as rows of a
    uint8 matrix), of ``wanted`` rows only if given; ``(None, None)`` for a column that is not text."""
    if pa.types.is_large_string(chunk.type) or pa.types.is_large_binary(chunk.type):
        width = np.int64
    elif pa.types.is_string(chunk.type) or pa.types.is_binary(chunk.type):
        width = np.int32
    else:
        return None, None
    size = np.dtype(width).itemsize
    offsets = np.frombuffer(chunk.buffers()[1], width, len(chunk) + 1, chunk.offset * size).astype(np.int64)
    mine = np.diff(offsets) == ID_CHARS
    if chunk.null_count:
        mine &= np.asarray(chunk.is_valid(), dtype=bool)
    data = chunk.buffers()[2]
    data = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    if wanted is None and mine.all():  # the usual chunk: every id a UUID, their bytes one block
        return mine, data[offsets[0] : offsets[0] + len(chunk) * ID_CHARS].reshape(-1, ID_CHARS)
    starts = offsets[:-1][mine] if wanted is None else offsets[wanted]
    if len(data) < ID_CHARS:
        return mine, np.zeros((0, ID_CHARS), np.uint8)
    # every ID_CHARS-byte window of the data as one item (a view, no copy): the ids are items of it
    windows = np.ndarray((len(data) - ID_CHARS + 1,), np.dtype(f"V{ID_CHARS}"), data, 0, (1,))
    return mine, windows[starts].view(np.uint8).reshape(-1, ID_CHARS)


def _hashes(keys: pa.Table, key: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(a 64-bit hash of each row's key, whether the row was hashed: its id has ``ID_CHARS`` bytes)."""
    n = keys.num_rows
    hashes = np.zeros(n, dtype=np.uint64)
    hashed = np.zeros(n, dtype=bool)
    start = 0
    for chunk in keys.column(key[0]).chunks:
        mine, text = _id_text(chunk)
        if mine is None:
            return hashes, hashed  # not text: nothing hashed, all exact
        hashes[start : start + len(chunk)][mine] = _id_hash(text)
        hashed[start : start + len(chunk)] = mine
        start += len(chunk)
    for name in key[1:]:
        values = _numbers(keys.column(name))
        if values is not None:
            hashes = _step(hashes, values.astype(np.uint64))
    return mix64(hashes), hashed


def _id_hash(text: np.ndarray) -> np.ndarray:
    """The running hash of each id (a row of ``text``: ``ID_CHARS`` bytes) over its four 8-byte
    words and its last four bytes, read in place by strided views (a zero-padded copy of the
    day's ids took 0.15-0.3 s for 2M; this 0.1 s)."""
    text = np.ascontiguousarray(text)
    n = len(text)
    h = np.zeros(n, dtype=np.uint64)
    if n == 0:
        return h
    for offset in range(0, ID_CHARS - 7, 8):
        h = _step(h, np.ndarray((n,), np.uint64, text, offset, (ID_CHARS,)))
    return _step(h, np.ndarray((n,), np.uint32, text, ID_CHARS - 4, (ID_CHARS,)).astype(np.uint64))


def _step(h: np.ndarray, word: np.ndarray) -> np.ndarray:
    """One word into a running hash (FxHash's step: rotate, xor, multiply), in place."""
    high = h >> np.uint64(59)
    h <<= np.uint64(5)
    h |= high
    h ^= word
    h *= _K
    return h


def _numbers(column: pa.ChunkedArray) -> np.ndarray | None:
    """A key column without nulls as integers (timestamps as their int64), else None."""
    if column.null_count or not (pa.types.is_integer(column.type) or pa.types.is_timestamp(column.type)):
        return None
    values = column.to_numpy()
    return values.view(np.int64) if pa.types.is_timestamp(column.type) else values


def _same_keys(keys: pa.Table, key: list[str], rows: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Whether each of ``rows`` (their ids ``ID_CHARS`` bytes long) has the same key as the row
    ``others`` names: ids compared byte by byte, the other keys value by value (nulls equal nulls)."""
    same = _same_ids(keys.column(key[0]), rows, others)
    for name in key[1:]:
        column = keys.column(name)
        values = _numbers(column)
        if values is not None:
            same &= values[rows] == values[others]
            continue
        a, b = column.take(pa.array(rows)), column.take(pa.array(others))
        equal = pc.fill_null(pc.equal(a, b), False)
        same &= np.asarray(pc.or_(equal, pc.and_(pc.is_null(a), pc.is_null(b))), dtype=bool)
    return same


def _same_ids(ids: pa.ChunkedArray, rows: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Whether the ids of ``rows`` and ``others`` (all ``ID_CHARS`` bytes long) are the same bytes."""
    chunks = ids.chunks
    bounds = np.cumsum([0, *(len(chunk) for chunk in chunks)])
    texts = []
    for wanted in (rows, others):
        out = np.zeros((len(wanted), ID_CHARS), np.uint8)
        chunk_of = np.searchsorted(bounds, wanted, side="right") - 1
        by_chunk = np.argsort(chunk_of.astype(np.int16 if len(chunks) < 1 << 15 else np.int64), kind="stable")
        cuts = np.searchsorted(chunk_of[by_chunk], np.arange(len(chunks) + 1))
        for c, chunk in enumerate(chunks):
            part = by_chunk[cuts[c] : cuts[c + 1]]
            if len(part):
                out[part] = _id_text(chunk, wanted[part] - bounds[c])[1]
        texts.append(out)
    return (texts[0] == texts[1]).all(axis=1)
