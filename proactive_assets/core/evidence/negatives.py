"""Synthetic pairs drawn the way stolen credentials appear, to learn what is *not* an identity's own.

For an identity active on a day, each kind replaces its address with one an attacker would use:

* ``random_network``: any public IPv4 address (a VPS, a proxy, a network nobody here uses);
* ``colleague_address``: a personal address of another identity of the organisation (used by at
  most two: a colleague's home, a CI runner's address) that this identity never used;
* ``same_isp_new_24``: a new /24 inside the /16 of one of the identity's own addresses (a
  residential proxy in the victim's own ISP);
* ``cloud_address``: an address in a cloud provider's ranges - for an identity with AWS history,
  AWS in another region (instance credentials used from the attacker's own instance);
* ``random_ipv6``: a global IPv6 address in a random /32, when the organisation uses IPv6;
* ``colleague_network``: a new /24 (/64) in the /16 (/48) of another identity's address (an
  attacker in an ISP or hosting network that others here use: other identities on the network
  is then no alibi).

Every kind is drawn for every sampled identity, so the mix does not depend on one scenario.
"""

import socket
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from proactive_assets.core.evidence.history import History, distinct_sorted, member
from proactive_assets.core.evidence.keys import AddressBook, level_keys, pair_key
from proactive_assets.core.evidence.networks import AWS, Networks
from proactive_assets.core.sorting import distinct_keys

KINDS = ("random_network", "colleague_address", "same_isp_new_24", "cloud_address", "random_ipv6", "colleague_network")

#: First octets that are not public unicast IPv4 (0, 10, 127, multicast and reserved).
_NOT_PUBLIC = {0, 10, 127, *range(224, 256)}


@dataclass
class Negatives:
    """Synthetic pairs: identity codes, addresses (parsed and as text) and their kind."""

    entity: np.ndarray
    is6: np.ndarray
    hi: np.ndarray
    lo: np.ndarray
    kind: np.ndarray

    def __len__(self) -> int:
        return len(self.entity)

    def texts(self) -> pa.Array:
        """The addresses as text, for IP Insights to score: IPv4 dotted decimal built on Arrow's
        buffers, IPv6 by the C library's ``inet_ntop`` (a text per address through ``ipaddress``
        cost ~0.25 s a validation day at the IP Insights tutorial's scale)."""
        octets = [(self.lo >> np.uint64(shift)) & np.uint64(255) for shift in (24, 16, 8, 0)]
        out = pc.binary_join_element_wise(*(_OCTETS.take(pa.array(o.astype(np.int64))) for o in octets), ".")
        if self.is6.any():
            v6 = [
                socket.inet_ntop(socket.AF_INET6, ((h << 64) | lo).to_bytes(16, "big"))
                for h, lo in zip(self.hi[self.is6].tolist(), self.lo[self.is6].tolist(), strict=True)
            ]
            out = pc.replace_with_mask(out, pa.array(self.is6), pa.array(v6, pa.string()))
        return out


#: "0" .. "255"
_OCTETS = pa.array([str(i) for i in range(256)], pa.string())


def _public_ipv4(rng: np.random.Generator, n: int) -> np.ndarray:
    values = rng.integers(1 << 24, 224 << 24, size=n, dtype=np.uint64)
    bad = np.isin(values >> np.uint64(24), np.array(sorted(_NOT_PUBLIC), dtype=np.uint64))
    while bad.any():
        values[bad] = rng.integers(1 << 24, 224 << 24, size=int(bad.sum()), dtype=np.uint64)
        bad = np.isin(values >> np.uint64(24), np.array(sorted(_NOT_PUBLIC), dtype=np.uint64))
    return values


def draw_other(pool: np.ndarray, selves: np.ndarray, rng: np.random.Generator, tries: int = 4) -> np.ndarray:
    """For each of ``selves``, a random index into ``pool`` whose value is not that self (redrawn up to
    ``tries`` times; the few still equal are left to the caller)."""
    pick = rng.integers(0, len(pool), size=len(selves))
    for _ in range(tries):
        clash = pool[pick] == selves
        if not clash.any():
            break
        pick[clash] = rng.integers(0, len(pool), size=int(clash.sum()))
    return pick


def _colleague(
    entities: np.ndarray, owner: np.ndarray, address: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """For each identity, a random *other* identity of ``owner``, then one of its ``address``es."""
    if len(entities) == 0:
        return None
    order = np.argsort(owner, kind="stable")
    owners, rows_per = distinct_sorted(owner[order])
    if len(owners) < 2:
        return None
    first_row = np.cumsum(rows_per) - rows_per
    pick = draw_other(owners, entities, rng)
    keep = owners[pick] != entities
    row = first_row[pick[keep]] + np.floor(rng.random(int(keep.sum())) * rows_per[pick[keep]]).astype(np.int64)
    return entities[keep], address[order[row]]


def _new_24(
    entities: np.ndarray, book: AddressBook, near: np.ndarray, history: History, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(is6, hi, lo) of a random /24 (/64) in the /16 (/48) of each address ``near``, new to its identity."""
    is6, hi, lo = book.is6[near].copy(), book.hi[near].copy(), book.lo[near].copy()
    for _ in range(3):  # redraw the few that land on a known /24
        new24 = rng.integers(0, 256, size=len(near), dtype=np.uint64)
        host = rng.integers(1, 255, size=len(near), dtype=np.uint64)
        lo4 = (lo & np.uint64(0xFFFF0000)) | (new24 << np.uint64(8)) | host
        hi6 = (hi & ~np.uint64(0xFFFF)) | rng.integers(0, 1 << 16, size=len(near), dtype=np.uint64)
        cand_hi = np.where(is6, hi6, hi)
        cand_lo = np.where(is6, rng.integers(0, 1 << 63, size=len(near), dtype=np.uint64), lo4)
        keys = level_keys(is6, cand_hi, cand_lo)[1]
        known = member(history.seen[1], pair_key(entities, keys))
        hi, lo = np.where(known, hi, cand_hi), np.where(known, lo, cand_lo)
        if not known.any():
            break
    return is6, hi, lo


def _distinct_pairs(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The distinct (first, second) code pairs, sorted, as a 2-row array (``np.unique(..., axis=1)``,
    which sorts rows of Python-visible tuples and took seconds on a large window)."""
    combined = distinct_keys((first.astype(np.int64) << 32) | second.astype(np.int64))
    return np.stack([combined >> 32, combined & 0xFFFFFFFF])


def _outside_clouds(
    entities: np.ndarray, is6: np.ndarray, hi: np.ndarray, lo: np.ndarray, kind: int, networks: Networks
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """The drawn pairs whose address is outside every cloud provider's ranges.

    A new /24 next to a cloud address is what the cloud hands its own workloads every day (a Lambda
    function's next AWS address in its region): nothing address-based tells an attacker's instance
    there from the identity's own, and as a negative it only taught the combiner to distrust that
    churn. Cloud attackers are the ``cloud_address`` kind.
    """
    keep = networks.lookup(is6, hi, lo).provider < 0
    return entities[keep], is6[keep], hi[keep], lo[keep], kind


def draw_negatives(
    entities: np.ndarray,
    history_entity: np.ndarray,
    history_address: np.ndarray,
    today_entity: np.ndarray,
    today_address: np.ndarray,
    book: AddressBook,
    history: History,
    networks: Networks,
    rng: np.random.Generator,
) -> Negatives:
    """One synthetic pair of every kind for each identity code in ``entities``.

    ``history_*`` are the window's (identity, address) rows as codes into ``book``, ``today_*`` the
    day's; a new /24 is drawn next to an address the identity uses today where it has one (an
    attacker on a residential proxy of the victim's ISP while the victim works); ``seen_24``
    ``history`` the window's index (so a 'new /24' really is new and 'another region' another).
    """
    n = len(entities)
    uses_ipv6 = bool(book.is6[history_address].any()) if len(history_address) else False
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]] = []

    # random public network
    parts.append((entities, np.zeros(n, bool), np.zeros(n, np.uint64), _public_ipv4(rng, n), 0))

    # another identity's address. For a person, a personal one of a colleague (used by at most two
    # identities: a home, a CI runner's address): an address everyone shares (the office, the VPN
    # egress) is where a new colleague legitimately comes from. For a machine identity (it only
    # ever called from cloud or AWS addresses), any colleague's address, shared ones included.
    machine = np.maximum(history.aws_share, history.cloud_share)[entities] >= 0.9
    if len(history_entity):
        pairs = _distinct_pairs(history_address, history_entity)
        users = np.bincount(pairs[0], minlength=len(book))
        personal = users[pairs[0]] <= 2
        for pool, who in ((personal, ~machine), (np.ones(pairs.shape[1], bool), machine)):
            drawn = _colleague(entities[who], pairs[1][pool], pairs[0][pool], rng)
            if drawn is not None:
                kept, address = drawn
                parts.append((kept, book.is6[address], book.hi[address], book.lo[address], 1))

    # a new /24 (/64) in the identity's own /16 (/48): next to today's address, else a past one
    own_entity = np.concatenate([today_entity, history_entity])
    own_address = np.concatenate([today_address, history_address])
    later = np.concatenate([np.zeros(len(today_entity), np.int64), np.ones(len(history_entity), np.int64)])
    # by identity, today's addresses first, at random within: one int64 key (a lexsort took ~0.5 s
    # for the tutorial's 1.5M rows)
    order = np.argsort(
        (own_entity.astype(np.int64) << 32) | (later << 31) | rng.integers(0, 1 << 31, len(own_entity), np.int64)
    )
    first = np.searchsorted(own_entity[order], entities)
    has = (first < len(order)) & (own_entity[order][np.minimum(first, len(order) - 1)] == entities)
    own = own_address[order[first[has]]]
    parts.append(_outside_clouds(entities[has], *_new_24(entities[has], book, own, history, rng), 2, networks))

    # a cloud address: AWS in another region for identities that call from AWS, any cloud otherwise
    aws_identity = history.aws_share[entities] > 0
    cloud_lo = networks.sample_ipv4(rng, n, provider=None)
    aws_lo = networks.sample_ipv4(rng, n, provider=AWS)
    for _ in range(4):  # an AWS identity's own regions are redrawn
        zero = np.zeros(n, np.uint64)
        region = networks.lookup(np.zeros(n, bool), zero, aws_lo).region
        own_region = aws_identity & np.isin(pair_key(entities, region.astype(np.uint64)), history.aws_regions)
        if not own_region.any():
            break
        aws_lo[own_region] = networks.sample_ipv4(rng, int(own_region.sum()), provider=AWS)
    parts.append((entities, np.zeros(n, bool), np.zeros(n, np.uint64), np.where(aws_identity, aws_lo, cloud_lo), 3))

    if uses_ipv6:
        v6_hi = (np.uint64(0x2) << np.uint64(60)) | rng.integers(0, 1 << 60, size=n, dtype=np.uint64)
        v6_lo = rng.integers(0, 1 << 63, size=n, dtype=np.uint64)
        parts.append((entities, np.ones(n, bool), v6_hi, v6_lo, 4))

    # a new /24 in a colleague's network (any colleague: shared networks too)
    if len(history_entity):
        drawn = _colleague(entities, pairs[1], pairs[0], rng)
        if drawn is not None:
            kept, address = drawn
            parts.append(_outside_clouds(kept, *_new_24(kept, book, address, history, rng), 5, networks))

    return Negatives(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]).astype(np.uint64),
        np.concatenate([p[3] for p in parts]).astype(np.uint64),
        np.concatenate([np.full(len(p[0]), p[4], np.int8) for p in parts]),
    )
