"""How an address maps to IP Insights' embedding rows: a bucket per prefix level (``PrefixLayout``),
the trained buckets' rows (``bucket_map``), and the head levels folded into one row per prefix.
Scoring a day's IPv4 addresses takes their rows in one compiled pass a level (``_embedding_rows``)."""

from collections.abc import Iterator

import numpy as np

from proactive_assets.core.hashing import mix64
from proactive_assets.core.model.params import IPInsightsParams
from proactive_assets.core.npz import aligned_empty

try:  # the compiled rows of IPv4 addresses (``_embedding_rows.c``, built by setup.py where a C compiler is)
    from proactive_assets.core.model import _embedding_rows
except ImportError:  # pragma: no cover - depends on the install
    _embedding_rows = None

MASK64 = (1 << 64) - 1


class PrefixLayout:
    """How an address maps to embedding buckets: one section of bucket ids per (IP version, prefix
    length); prefixes of at most 16 bits are indexed exactly, longer ones hashed into
    ``num_ip_vectors`` buckets. An address has one bucket per prefix level."""

    def __init__(self, params: IPInsightsParams) -> None:
        self.levels = max(len(params.ipv4_prefixes), len(params.ipv6_prefixes))
        self.sections: list[tuple[int, int, int, int, bool]] = []  # version, bits, offset, size, exact
        offset = 0
        for version, prefixes in ((4, params.ipv4_prefixes), (6, params.ipv6_prefixes)):
            for bits in prefixes:
                exact = bits <= 16
                size = (1 << bits) if exact else params.num_ip_vectors
                self.sections.append((version, bits, offset, size, exact))
                offset += size
        self.total = offset
        self.v4 = [s for s in self.sections if s[0] == 4]
        self.v6 = [s for s in self.sections if s[0] == 6]
        self.n_sections = len(self.sections)
        # Scoring folds each version's leading exactly-indexed levels (IPv4 /8 and /16, IPv6 /16 by
        # default) into one "head" row per prefix of the longest of them: head_table below.
        self.head_levels = {v: sum(1 for s in secs if s[4]) for v, secs in ((4, self.v4), (6, self.v6))}
        self.head_bits = {
            v: secs[self.head_levels[v] - 1][1] if self.head_levels[v] else 0
            for v, secs in ((4, self.v4), (6, self.v6))
        }

    def width(self, is6: np.ndarray) -> int:
        """Levels needed for the versions present (IPv4-only input skips IPv6's extra level)."""
        return max(len(self.v4) if (~is6).any() else 0, len(self.v6) if is6.any() else 0, 1)

    def _level_buckets(
        self, is6: np.ndarray, hi: np.ndarray, lo: np.ndarray, skip_head: bool = False
    ) -> Iterator[tuple[int, slice | np.ndarray, np.ndarray]]:
        """Yield (level, index, global bucket ids) for each version present and prefix level;
        with ``skip_head`` without the head levels, the next level being level 0."""
        for mask, sections in ((~is6, self.v4), (is6, self.v6)):
            if not mask.any():
                continue
            idx = slice(None) if mask.all() else np.flatnonzero(mask)
            h, lw = hi[idx], lo[idx]
            first = self.head_levels[sections[0][0]] if skip_head else 0
            for level, (version, bits, offset, size, exact) in enumerate(sections[first:]):
                salt = np.uint64((version * 1000 + bits) * 0x9E3779B97F4A7C15 & MASK64)
                if version == 4:
                    prefix = lw >> np.uint64(32 - bits)
                elif bits <= 64:
                    prefix = h >> np.uint64(64 - bits)
                else:
                    low = lw >> np.uint64(128 - bits) if bits < 128 else lw
                    prefix = mix64(h ^ salt) ^ low
                if exact:
                    local = prefix.astype(np.int64)
                elif size & (size - 1) == 0:
                    local = (mix64(prefix ^ salt) & np.uint64(size - 1)).astype(np.int64)
                else:
                    local = (mix64(prefix ^ salt) % np.uint64(size)).astype(np.int64)
                local += offset
                yield level, idx, local

    def buckets(self, is6: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """(levels, n) int64 global bucket ids; -1 pads versions with fewer prefixes."""
        out = np.full((self.width(is6), len(lo)), -1, dtype=np.int64)
        for level, idx, bucket in self._level_buckets(is6, hi, lo):
            out[level, idx] = bucket
        return out

    def rows(
        self, is6: np.ndarray, hi: np.ndarray, lo: np.ndarray, bucket_to_row: np.ndarray, width: int | None = None
    ) -> np.ndarray:
        """(levels, n) int32 embedding rows as ``bucket_to_row`` maps them; 0 (the zero row) pads."""
        out = np.zeros((width or self.width(is6), len(lo)), dtype=np.int32)
        for level, idx, bucket in self._level_buckets(is6, hi, lo):
            out[level, idx] = bucket_to_row[bucket]
        return out

    def head_table(self, ip_emb: np.ndarray, bucket_to_row: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Sums of the head levels' embeddings for every head prefix: IPv4's 2**head_bits[4] rows,
        then IPv6's (one zero row for a version without exact levels); given sorted ``rows``, only
        those rows of it, in that order.

        Each sum is accumulated in level order in float32, as ``pair_dots`` adds levels, so a
        head row plus the remaining levels is bit-for-bit the sum over all the levels.
        """
        parts = []
        first = 0  # the version's first row
        for sections in (self.v4, self.v6):
            version = sections[0][0]
            bits = self.head_bits[version]
            size = 1 << bits
            prefixes = (
                np.arange(size, dtype=np.int64)
                if rows is None
                else rows[(rows >= first) & (rows < first + size)] - first
            )
            table = np.zeros((len(prefixes), ip_emb.shape[1]), dtype=np.float32)
            for level, (_, level_bits, offset, _, _) in enumerate(sections[: self.head_levels[version]]):
                found = ip_emb[bucket_to_row[offset + (prefixes >> (bits - level_bits))]]
                if level == 0:
                    table = found
                else:
                    table += found
            parts.append(table)
            first += size
        # (on a cache line's bound, as the weights are read: each 128-byte row in two lines, not three)
        return np.concatenate(parts, out=aligned_empty((sum(map(len, parts)), ip_emb.shape[1]), ip_emb.dtype))

    def head_rows(
        self, is6: np.ndarray, hi: np.ndarray, lo: np.ndarray, bucket_to_row: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(row of ``head_table`` per address, (levels, n) int32 rows of the levels after the head)."""
        if _embedding_rows is not None and len(lo) and not is6.any():  # IPv4 alone: compiled, a pass a level
            return self._ipv4_head_rows(np.ascontiguousarray(lo, np.uint64), bucket_to_row)
        head = np.zeros(len(lo), dtype=np.intp)
        for mask, version, word, word_bits, first in ((~is6, 4, lo, 32, 0), (is6, 6, hi, 64, 1 << self.head_bits[4])):
            if not mask.any():
                continue
            bits = self.head_bits[version]
            part = slice(None) if mask.all() else mask
            head[part] = first + (word[part] >> np.uint64(word_bits - bits)).astype(np.intp) if bits else first
        width = max(
            len(self.v4) - self.head_levels[4] if (~is6).any() else 0,
            len(self.v6) - self.head_levels[6] if is6.any() else 0,
        )
        rows = np.zeros((width, len(lo)), dtype=np.int32)
        for level, idx, bucket in self._level_buckets(is6, hi, lo, skip_head=True):
            rows[level, idx] = bucket_to_row[bucket]
        return head, rows

    def _ipv4_head_rows(self, lo: np.ndarray, bucket_to_row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``head_rows`` of IPv4 addresses by the compiled ``_embedding_rows.ipv4_rows``: the same rows."""
        levels = self.v4[self.head_levels[4] :]
        head = np.empty(len(lo), np.int64)
        rows = np.empty((len(levels), len(lo)), np.int32)
        salts = [(version * 1000 + bits) * 0x9E3779B97F4A7C15 & MASK64 for version, bits, *_ in levels]
        _embedding_rows.ipv4_rows(
            lo,
            self.head_bits[4],
            np.array([bits for _, bits, *_ in levels], np.int64),
            np.array([offset for _, _, offset, _, _ in levels], np.int64),
            np.array([size for _, _, _, size, _ in levels], np.int64),
            np.array(salts, np.uint64),
            np.ascontiguousarray(bucket_to_row, np.int32),
            head,
            rows,
        )
        return head.astype(np.intp, copy=False), rows


def bucket_map(layout: PrefixLayout, ip_buckets: np.ndarray, unseen_rows: bool) -> np.ndarray:
    """Global bucket id -> ip_emb row.

    Row 0 is the zero row (padding: IPv4 has fewer levels than IPv6). With ``unseen_rows`` rows
    1..S are the unseen-prefix rows of the S (version, prefix length) sections, in the layout's
    order, every bucket not trained maps to its section's row, and the trained buckets follow;
    without (legacy artifacts) untrained buckets map to the zero row and trained ones start at 1.
    """
    if unseen_rows:
        sizes = [size for _, _, _, size, _ in layout.sections]
        mapping = np.repeat(np.arange(1, layout.n_sections + 1, dtype=np.int32), sizes)
        first = layout.n_sections + 1
    else:
        mapping = np.zeros(layout.total, dtype=np.int32)
        first = 1
    mapping[ip_buckets] = np.arange(first, first + len(ip_buckets), dtype=np.int32)
    return mapping
