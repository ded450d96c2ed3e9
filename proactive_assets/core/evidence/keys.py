"""Integer keys for addresses, their networks and (identity, network) pairs, so evidence is joins on numbers.

Each address gets a key per level: the address itself, its /24 (IPv6 /64), its /16 (/48) and its
/12 (/32) - the subnet, the site or home ISP block, and roughly the provider's pool. Keys are
64-bit hashes tagged by version and level, and a pair key hashes the identity code with a network
key; collisions are negligible at these sizes (2^-64 per pair of keys).
"""

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from proactive_assets.core.evidence.compiled import kernels
from proactive_assets.core.evidence.networks import Networks, Owner
from proactive_assets.core.hashing import mix64
from proactive_assets.core.ipnet import parse_ips, parse_ipv4_arrow, string_array
from proactive_assets.core.sorting import numbered_in_row_order

#: Prefix lengths of the levels after the address itself: (IPv4, IPv6).
LEVELS = ((24, 64), (16, 48), (12, 32))
LEVEL_NAMES = ("address", "/24 (/64)", "/16 (/48)", "/12 (/32)")


def pair_key(entity: np.ndarray, key: np.ndarray) -> np.ndarray:
    """The key of (identity code, network key)."""
    return mix64(key ^ mix64(entity.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)))


@dataclass
class AddressBook:
    """Every distinct address of a computation, parsed once: its level keys and owner."""

    is6: np.ndarray
    hi: np.ndarray
    lo: np.ndarray
    level_keys: list[np.ndarray]  # [address, /24, /16, /12] keys per distinct address
    owner: Owner | None  # None until ``with_owners`` (a book coded without ``Networks``)
    #: per address, a dense code of its /24 (/64), where the book's maker had it cheaply
    #: (``coded_addresses``, which sorts the IPv4 addresses anyway): the day's counts count by it
    networks: np.ndarray | None = None
    #: the codes of the book's IPv4 addresses in ascending address order (``coded_addresses``): a
    #: window's counts of their networks are merged in (``WindowIndex.address_counts``), not looked up
    ascending_v4: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.is6)

    @cached_property
    def ascending_v4_values(self) -> np.ndarray:
        """The IPv4 addresses of ``ascending_v4``, in that order (uint64): gathered once for the /24
        codes and the window's counts."""
        return np.ascontiguousarray(self.lo[self.ascending_v4], np.uint64)

    @classmethod
    def of(cls, is6: np.ndarray, hi: np.ndarray, lo: np.ndarray, networks: Networks | None) -> "AddressBook":
        """The book of parsed addresses (``ipnet.parse_ips`` form): their level keys and owners
        (without ``networks``, no owners yet: ``with_owners``)."""
        book = cls(is6, hi, lo, level_keys(is6, hi, lo), None)
        return book.with_owners(networks) if networks is not None else book

    def with_owners(self, networks: Networks) -> "AddressBook":
        """This book with its addresses' owners (``Networks.lookup``), for a book coded without them
        (scoring a day looks them up on its other thread)."""
        return replace(self, owner=networks.lookup(self.is6, self.hi, self.lo))


def level_keys(is6: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> list[np.ndarray]:
    """The four level keys of each address (by the compiled ``kernels.level_keys`` where it was built)."""
    if kernels is not None:
        out = np.empty((4, len(is6)), np.uint64)
        bits = np.array([b for pair in LEVELS for b in pair], np.int64)
        kernels.level_keys(
            np.ascontiguousarray(is6, bool),
            np.ascontiguousarray(hi, np.uint64),
            np.ascontiguousarray(lo, np.uint64),
            bits,
            out,
        )
        return list(out)
    exact = mix64(mix64(hi ^ np.uint64(0x5555)) ^ lo ^ is6.astype(np.uint64))
    keys = [exact]
    for level, (v4, v6) in enumerate(LEVELS, start=1):
        v4_prefix = lo >> np.uint64(32 - v4)
        v6_prefix = hi >> np.uint64(64 - v6)
        prefix = np.where(is6, v6_prefix, v4_prefix)
        tag = np.uint64(level * 2 + 1) + is6.astype(np.uint64) * np.uint64(16)
        keys.append(mix64(prefix ^ mix64(tag)))
    return keys


def address_book(addresses: list[str] | pa.Array, networks: Networks) -> AddressBook:
    """Parse distinct canonical addresses (the learning set's ``source_ip`` values)."""
    return AddressBook.of(*parse_ips(addresses), networks)


def coded_addresses(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, AddressBook]:
    """Each row's code into the book of the column's distinct addresses (canonical texts, as the
    learning set's ``source_ip``), without their owners (``AddressBook.with_owners``: scoring a day
    looks them up on its other thread).

    IPv4 rows are parsed where they lie (the compiled parser, on the Arrow bytes) and told apart by
    their value: hashing a million address strings cost 0.19 s at the IP Insights tutorial's
    scale, parsing and coding them ~0.06 s. The other rows (IPv6) are coded by their text and each
    distinct one parsed once. The book holds the IPv4 addresses first, then the others, each in the
    order the rows first have them: a pass over the rows reads the book's arrays in order (most of
    a day's addresses are on one row), not at random."""
    array = string_array(column) if isinstance(column, pa.ChunkedArray) else column  # (one chunk: not copied)
    array = array if array.type == pa.string() else array.cast(pa.string())
    if array.null_count:  # (IP Insights refuses them too)
        raise ValueError(f"{array.null_count} rows have no address: each needs its source_ip")
    value, v4 = parse_ipv4_arrow(array)
    every_v4 = bool(v4.all())  # (most days: the rows' codes are the IPv4 ones, not copied into place)
    v4_codes, v4_values, ascending = numbered_in_row_order(value if every_v4 else value[v4], 1 << 32)  # by value
    v4_values = v4_values.view(np.uint64)  # (int64 of 32-bit values)
    code = v4_codes if every_v4 else np.zeros(len(array), np.int64)
    if not every_v4:
        code[v4] = v4_codes
    is6, hi, lo = np.zeros(len(v4_values), bool), np.zeros(len(v4_values), np.uint64), v4_values
    if not every_v4:
        other = pc.dictionary_encode(array.filter(pa.array(~v4)))
        code[~v4] = len(v4_values) + other.indices.to_numpy(zero_copy_only=False)
        more = parse_ips(other.dictionary)
        is6, hi, lo = (np.concatenate([a, b]) for a, b in zip((is6, hi, lo), more, strict=True))
    book = AddressBook.of(is6, hi, lo, None)
    book.ascending_v4 = ascending
    book.networks = _network_codes(book.ascending_v4_values, ascending, is6[len(v4_values) :], hi[len(v4_values) :])
    return code, book


def _network_codes(
    ascending_values: np.ndarray, ascending: np.ndarray, other_is6: np.ndarray, other_hi: np.ndarray
) -> np.ndarray | None:
    """A dense code per address of its /24 (/64): the IPv4 addresses in ascending order
    (``ascending_values``, of the addresses ``ascending``) share a /24 with their neighbours, so
    their codes are a running count; the IPv6 ones' /64s are few. None if an address written other
    than as canonical IPv4 is IPv4 after all."""
    if not other_is6.all():
        return None
    v4_bits, v6_bits = LEVELS[0]
    net = ascending_values >> np.uint64(32 - v4_bits)
    v4_codes = np.empty(len(net), np.int64)
    v4_codes[ascending] = np.cumsum(np.r_[True, net[1:] != net[:-1]]) - 1 if len(net) else 0
    v6_codes = np.unique(other_hi >> np.uint64(64 - v6_bits), return_inverse=True)[1].reshape(-1)
    return np.concatenate([v4_codes, int(v4_codes.max(initial=-1)) + 1 + v6_codes]).astype(np.int64)


def codes(values: pa.ChunkedArray | pa.Array, categories: pd.Index) -> np.ndarray:
    """Codes of ``values`` in ``categories`` (-1 where absent)."""
    return categories.get_indexer(pd.Index(values.to_pandas() if hasattr(values, "to_pandas") else values))
