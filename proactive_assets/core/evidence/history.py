"""What the evidence of a day's pairs is looked up in: the training window indexed (``History``,
``build_history``, ``extend_history``) and the judged day's own counts (``Day``, ``build_day``).

The window is rows of (identity, address, day), coded against an address book (``keys.py``); its
index is sorted 64-bit hash keys of (identity, network) pairs and of networks with how many
identities used each, plus per-identity tallies (active days, churn, owners' shares), so that a
pair's evidence (``features.py``) is a handful of lookups.
"""

import functools
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from proactive_assets.core.evidence.compiled import kernels, on_free_core
from proactive_assets.core.evidence.keys import AddressBook, pair_key
from proactive_assets.core.evidence.networks import AWS
from proactive_assets.core.sorting import distinct_keys, sort_keys

ACTION_TAG = np.uint64(0xA5A5A5A5A5A5A5A5)
AGENT_TAG = np.uint64(0x5A5A5A5A5A5A5A5A)


def distinct_sorted(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a sorted array and how often each occurs.

    ``np.unique`` takes a hash-table path in numpy 2 that is ~80x slower than sorting on a million
    random 64-bit keys (4.6 s against 0.06 s on the 2-core machine): the keys here are hashes.
    """
    if len(sorted_values) == 0:
        return sorted_values, np.zeros(0, np.int64)
    start = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    return sorted_values[start], np.diff(np.r_[start, len(sorted_values)])


def runs(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices ``starts[i] .. starts[i] + lengths[i] - 1`` of every run, concatenated in order."""
    ends = np.cumsum(lengths)
    return np.repeat(np.asarray(starts) - (ends - lengths), lengths) + np.arange(int(ends[-1]) if len(ends) else 0)


def _slots(sorted_keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Where each query would sit in ``sorted_keys`` (clipped to its last slot).

    Hash keys are looked up by the compiled ``kernels.slots`` (each search starts where an evenly
    spread key would be). Without it, the queries are searched in sorted order: a million random
    64-bit keys against two million take about a quarter of the time of searching them as they
    come (each search starts where the last ended, so the table is read in order, not at random).
    """
    if kernels is not None and sorted_keys.dtype == np.uint64 and queries.dtype == np.uint64:
        slot = np.empty(len(queries), np.int64)
        kernels.slots(np.ascontiguousarray(sorted_keys), np.ascontiguousarray(queries), slot)
        return slot
    order = np.argsort(queries)
    slot = np.empty(len(queries), np.int64)
    slot[order] = np.searchsorted(sorted_keys, queries[order])
    return np.minimum(slot, len(sorted_keys) - 1)


def member(sorted_keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """True where ``queries`` are in the sorted unique array ``sorted_keys``."""
    if len(sorted_keys) == 0:
        return np.zeros(len(queries), dtype=bool)
    return sorted_keys[_slots(sorted_keys, queries)] == queries


def pair_member(sorted_keys: np.ndarray, entity: np.ndarray, keys: np.ndarray, address: np.ndarray) -> np.ndarray:
    """``member`` of the pairs' keys (``pair_key`` of each identity and its address's key
    ``keys[address]``): by the compiled ``kernels.pair_members``, which makes each key as it
    searches for it, where it was built."""
    if kernels is None or len(sorted_keys) == 0 or sorted_keys.dtype != np.uint64:
        return member(sorted_keys, pair_key(entity, keys[address]))
    out = np.empty(len(entity), bool)
    kernels.pair_members(
        np.ascontiguousarray(sorted_keys),
        np.ascontiguousarray(entity, np.int64),
        np.ascontiguousarray(keys, np.uint64),
        np.ascontiguousarray(address, np.int64),
        out,
    )
    return out


def pair_member_sites(
    sorted_keys: np.ndarray, entity: np.ndarray, keys: np.ndarray, address: np.ndarray, site_keys: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``pair_member``, with the member pairs' keys of their identity and ``site_keys[address]`` (in
    pair order) and how many member pairs each of ``n`` identities has: one compiled pass where it was
    built (numpy took three gathers, the keys' hashing and a bincount after the lookups)."""
    if kernels is None or len(sorted_keys) == 0 or sorted_keys.dtype != np.uint64:
        known = pair_member(sorted_keys, entity, keys, address)
        return known, pair_key(entity[known], site_keys[address[known]]), np.bincount(entity[known], minlength=n)
    known, sites, counts = np.empty(len(entity), bool), np.empty(len(entity), np.uint64), np.zeros(n, np.int64)
    written = kernels.pair_members(
        np.ascontiguousarray(sorted_keys),
        np.ascontiguousarray(entity, np.int64),
        np.ascontiguousarray(keys, np.uint64),
        np.ascontiguousarray(address, np.int64),
        known,
        np.ascontiguousarray(site_keys, np.uint64),
        sites,
        counts,
    )
    return known, sites[:written], counts


def lookup_count(sorted_keys: np.ndarray, counts: np.ndarray, queries: np.ndarray) -> np.ndarray:
    if len(sorted_keys) == 0:
        return np.zeros(len(queries), np.int64)
    slot = _slots(sorted_keys, queries)
    return np.where(sorted_keys[slot] == queries, counts[slot], 0)


@dataclass
class History:
    """What the window says, indexed for lookups: built once per window (``build_history``)."""

    seen: list[np.ndarray]  # per level: sorted keys of (identity, level key) pairs
    org_keys: list[np.ndarray]  # per level: sorted level keys ...
    org_counts: list[np.ndarray]  # ... and how many distinct identities used each
    known: np.ndarray  # per identity code: has history
    days: np.ndarray
    churn_24: np.ndarray
    churn_16: np.ndarray
    networks_16: np.ndarray
    aws_share: np.ndarray
    cloud_share: np.ndarray
    families: np.ndarray  # bit 1: IPv4 seen, bit 2: IPv6 seen
    providers: np.ndarray  # sorted keys of (identity, provider category)
    aws_regions: np.ndarray  # sorted keys of (identity, AWS region code)
    actions: np.ndarray  # sorted keys of (identity, API call)
    agents: np.ndarray  # sorted keys of (identity, user agent)
    has_agents: np.ndarray  # per identity: its history records user agents at all
    tallies: "Tallies | None" = None  # while training: what ``extend_history`` needs (never stored)


@dataclass
class Tallies:
    """The integer counts behind a history's shares, kept while training so that the history of the
    window before validation day d+1 is the one before d plus day d's rows (``extend_history``)."""

    addresses: np.ndarray  # per identity: distinct addresses ...
    aws: np.ndarray  # ... of them AWS's ...
    cloud: np.ndarray  # ... and any cloud's
    new_24_days: np.ndarray  # per identity: active days after its first with a /24 (/64) new to it
    new_16_days: np.ndarray  # ... and with a new /16 (/48)
    last_day: int


@dataclass
class Behaviour:
    """What pairs did, flattened: (pair index, code) of each API call and user agent, and event counts."""

    action_pair: np.ndarray
    action_code: np.ndarray
    agent_pair: np.ndarray
    agent_code: np.ndarray
    events: np.ndarray

    @classmethod
    def empty(cls, n: int) -> "Behaviour":
        """``n`` pairs with one event each and nothing recorded of what they did."""
        none = np.zeros(0, np.int64)
        return cls(none, none, none, none, np.ones(n))

    def take(self, rows: np.ndarray) -> "Behaviour":
        """The behaviour of ``rows`` (pair indices), as pairs 0..len(rows)-1."""

        def pick(code: np.ndarray, offsets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
            if offsets is None:  # nothing recorded
                return np.zeros(0, np.int64), code
            start = offsets[rows]
            lengths = offsets[rows + 1] - start
            return np.repeat(np.arange(len(rows)), lengths), code[runs(start, lengths)]

        (actions, action_offsets), (agents, agent_offsets) = self._by_pair
        action_pair, action_code = pick(actions, action_offsets)
        agent_pair, agent_code = pick(agents, agent_offsets)
        return Behaviour(action_pair, action_code, agent_pair, agent_code, self.events[rows])

    @functools.cached_property
    def _by_pair(self) -> tuple[tuple[np.ndarray, np.ndarray | None], ...]:
        """The API calls' and the user agents' codes in pair order, and where each pair's begin (None
        when there are none): worked out once for the several ``take`` of a window's behaviour (each
        validation day's fold takes it three times)."""

        def grouped(pair: np.ndarray, code: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
            if not len(pair):
                return code, None
            if (pair[1:] < pair[:-1]).any():  # (as list columns flatten, pairs usually come in order)
                code = code[np.argsort(pair, kind="stable")]
            offsets = np.zeros(len(self.events) + 1, np.int64)
            np.cumsum(np.bincount(pair, minlength=len(self.events)), out=offsets[1:])
            return code, offsets

        return grouped(self.action_pair, self.action_code), grouped(self.agent_pair, self.agent_code)

    @staticmethod
    def concat(parts: list["Behaviour"]) -> "Behaviour":
        offsets = np.cumsum([0] + [len(p.events) for p in parts[:-1]])
        return Behaviour(
            np.concatenate([p.action_pair + o for p, o in zip(parts, offsets, strict=True)]),
            np.concatenate([p.action_code for p in parts]),
            np.concatenate([p.agent_pair + o for p, o in zip(parts, offsets, strict=True)]),
            np.concatenate([p.agent_code for p in parts]),
            np.concatenate([p.events for p in parts]),
        )


def provider_category(book: AddressBook) -> np.ndarray:
    """0 private, 1 no provider (residential, business...), 2 + provider code for clouds."""
    category = np.where(book.owner.provider >= 0, book.owner.provider.astype(np.int64) + 2, 1)
    return np.where(book.owner.private, 0, category)


def _days_per_identity(entity: np.ndarray, day: np.ndarray, n: int) -> np.ndarray:
    """How many distinct days each of ``n`` identities has among the (identity, day) rows."""
    if len(day) == 0:
        return np.zeros(n, np.int64)
    low = int(day.min())
    span = np.int64(int(day.max()) - low + 1)
    distinct = np.unique(entity.astype(np.int64) * span + (day - low))
    return np.bincount(distinct // span, minlength=n)


def _churn(
    pair_entity: np.ndarray, pair_first_day: np.ndarray, start: np.ndarray, active: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Share of an identity's active days after its first (``start``) on which it used a network
    new to it, and the number of those days; from each distinct (identity, network) pair's identity
    and first day, and each identity's ``active`` days."""
    new = pair_first_day > start[pair_entity]
    counts = _days_per_identity(pair_entity[new], pair_first_day[new], len(active))
    return _churn_rate(counts, active), counts


def _churn_rate(new_days: np.ndarray, active_days: np.ndarray) -> np.ndarray:
    out = np.full(len(new_days), 0.5)  # unknown, or one day: neither stable nor churning
    later = active_days > 1
    out[later] = new_days[later] / (active_days[later] - 1)
    return out


@dataclass
class _Level:
    """A level's (identity, key) pairs: their sorted distinct keys, a row of each, and the sorted
    distinct keys with how many distinct identities used each; with days, each pair's first day."""

    seen: np.ndarray
    first: np.ndarray
    org_keys: np.ndarray
    org_counts: np.ndarray
    first_day: np.ndarray | None = None


def _level_index(entity: np.ndarray, keys: np.ndarray, day: np.ndarray | None = None) -> _Level:
    pairs = pair_key(entity, keys)
    order = np.argsort(pairs)
    ordered = pairs[order]
    start = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(pairs) else np.zeros(0, np.int64)
    org_keys, org_counts = distinct_sorted(sort_keys(keys[order[start]]))
    first_day = None
    if day is not None:
        first_day = np.minimum.reduceat(day[order], start) if len(start) else np.zeros(0, day.dtype)
    return _Level(ordered[start], order[start], org_keys, org_counts, first_day)


def build_history(
    entity: np.ndarray, address: np.ndarray, day: np.ndarray, book: AddressBook, n: int, behaviour: Behaviour
) -> History:
    """Index the window's rows: ``entity`` and ``address`` are codes (into ``n`` identities and ``book``);
    ``behaviour`` is what each row did (its pair index = the row)."""
    keys = [level[address] for level in book.level_keys]
    levels = [_level_index(entity, k, day) for k in keys]
    known = np.zeros(n, bool)
    known[entity] = True
    active = _days_per_identity(entity, day, n)
    days = active.astype(np.float64)
    networks = np.bincount(entity[levels[2].first], minlength=n).astype(np.float64)
    # each identity's distinct addresses (addresses are canonical text: one key, one code)
    d_entity, d_address = entity[levels[0].first], address[levels[0].first]
    category = provider_category(book)[d_address]
    per_entity = np.bincount(d_entity, minlength=n).astype(float)
    share = np.maximum(per_entity, 1)
    aws = np.bincount(d_entity, weights=(category == AWS + 2), minlength=n)
    cloud = np.bincount(d_entity, weights=(category >= 2), minlength=n)
    families = np.zeros(n, np.int64)
    np.bitwise_or.at(families, d_entity, np.where(book.is6[d_address], 2, 1))
    is_aws = category == AWS + 2
    start = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(start, d_entity, levels[0].first_day)  # each identity's first day
    churn_24, new_24 = _churn(entity[levels[1].first], levels[1].first_day, start, active)
    churn_16, new_16 = _churn(entity[levels[2].first], levels[2].first_day, start, active)
    last = int(day.max()) if len(day) else np.iinfo(np.int64).min
    return History(
        seen=[level.seen for level in levels],
        org_keys=[level.org_keys for level in levels],
        org_counts=[level.org_counts for level in levels],
        known=known,
        days=days,
        churn_24=churn_24,
        churn_16=churn_16,
        networks_16=networks,
        aws_share=aws / share,
        cloud_share=cloud / share,
        families=families,
        providers=distinct_keys(pair_key(d_entity, category.astype(np.uint64))),
        aws_regions=distinct_keys(pair_key(d_entity[is_aws], book.owner.region[d_address][is_aws].astype(np.uint64))),
        actions=distinct_keys(
            pair_key(entity[behaviour.action_pair], behaviour.action_code.astype(np.uint64) ^ ACTION_TAG)
        ),
        agents=distinct_keys(
            pair_key(entity[behaviour.agent_pair], behaviour.agent_code.astype(np.uint64) ^ AGENT_TAG)
        ),
        has_agents=np.bincount(entity[behaviour.agent_pair], minlength=n) > 0,
        tallies=Tallies(per_entity, aws, cloud, new_24, new_16, last),
    )


def _union(sorted_keys: np.ndarray, more: np.ndarray) -> np.ndarray:
    """The sorted distinct keys of both (``sorted_keys`` sorted and distinct)."""
    more = distinct_keys(more)
    more = more[~member(sorted_keys, more)]
    return np.insert(sorted_keys, np.searchsorted(sorted_keys, more), more)


def _add_counts(
    keys: np.ndarray, counts: np.ndarray, more: np.ndarray, more_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct ``keys`` with ``counts``, plus sorted distinct ``more`` with ``more_counts``."""
    present = member(keys, more)
    counts = counts.copy()
    if present.any():
        counts[np.searchsorted(keys, more[present])] += more_counts[present]
    at = np.searchsorted(keys, more[~present])
    return np.insert(keys, at, more[~present]), np.insert(counts, at, more_counts[~present])


def extend_history(
    history: History, entity: np.ndarray, address: np.ndarray, day: int, book: AddressBook, behaviour: Behaviour
) -> History:
    """``history`` (``build_history`` of a window's rows, coded alike) with the rows of one later ``day``
    added: equal to ``build_history`` of all the rows, at the cost of the day's rows alone."""
    t = history.tallies
    if t is None or day <= t.last_day:
        raise ValueError(f"a history extends only by a later day than its last ({None if t is None else t.last_day})")
    n = len(history.known)
    keys = [level[address] for level in book.level_keys]
    seen, org_keys, org_counts, fresh = [], [], [], []  # fresh: rows of pairs new at each level
    for level, k in enumerate(keys):
        index = _level_index(entity, k)
        pairs, first = index.seen, index.first
        new = ~member(history.seen[level], pairs)
        added, added_counts = distinct_sorted(sort_keys(k[first[new]]))
        seen.append(_union(history.seen[level], pairs[new]))
        merged = _add_counts(history.org_keys[level], history.org_counts[level], added, added_counts)
        org_keys.append(merged[0])
        org_counts.append(merged[1])
        fresh.append(first[new])
    active = np.zeros(n, bool)
    active[entity] = True
    days = history.days + active
    e0, a0 = entity[fresh[0]], address[fresh[0]]  # the identities' new addresses
    category = provider_category(book)[a0]
    addresses = t.addresses + np.bincount(e0, minlength=n)
    aws = t.aws + np.bincount(e0, weights=(category == AWS + 2), minlength=n)
    cloud = t.cloud + np.bincount(e0, weights=(category >= 2), minlength=n)
    share = np.maximum(addresses, 1)
    families = history.families.copy()
    np.bitwise_or.at(families, e0, np.where(book.is6[a0], 2, 1))

    def new_days(before: np.ndarray, level: int) -> np.ndarray:
        hit = np.zeros(n, bool)
        hit[entity[fresh[level]]] = True
        return before + (hit & history.known)  # a network new on a later day than the identity's first

    new_24, new_16 = new_days(t.new_24_days, 1), new_days(t.new_16_days, 2)
    is_aws = category == AWS + 2
    return History(
        seen=seen,
        org_keys=org_keys,
        org_counts=org_counts,
        known=history.known | active,
        days=days,
        churn_24=_churn_rate(new_24, days),
        churn_16=_churn_rate(new_16, days),
        networks_16=history.networks_16 + np.bincount(entity[fresh[2]], minlength=n),
        aws_share=aws / share,
        cloud_share=cloud / share,
        families=families,
        providers=_union(history.providers, pair_key(e0, category.astype(np.uint64))),
        aws_regions=_union(history.aws_regions, pair_key(e0[is_aws], book.owner.region[a0][is_aws].astype(np.uint64))),
        actions=_union(
            history.actions,
            pair_key(entity[behaviour.action_pair], behaviour.action_code.astype(np.uint64) ^ ACTION_TAG),
        ),
        agents=_union(
            history.agents, pair_key(entity[behaviour.agent_pair], behaviour.agent_code.astype(np.uint64) ^ AGENT_TAG)
        ),
        has_agents=history.has_agents | (np.bincount(entity[behaviour.agent_pair], minlength=n) > 0),
        tallies=Tallies(addresses, aws, cloud, new_24, new_16, day),
    )


@dataclass
class Day:
    """The judged day's real pairs, for the counts of other identities today and 'known network today'."""

    org_keys: list[np.ndarray]  # levels 0 and 1
    org_counts: list[np.ndarray]
    known_pairs: np.ndarray  # per identity code: how many of its pairs today are on a known /24 (/64)
    sibling_keys: np.ndarray  # sorted (identity, /16) keys of today's pairs on a known /24 ...
    sibling_counts: np.ndarray  # ... and how many such pairs
    #: per pair counted, in order: is its /24 (/64) known to its identity (judging the same pairs
    #: reads it instead of looking it up again)
    seen_24: np.ndarray
    #: per address of the book: how many identities used it and its /24 (/64) today, where they
    #: were counted so (``build_day``; ``org_keys`` then hold nothing)
    counted: tuple[np.ndarray, np.ndarray] | None = None


def _identities_per_code(entity: np.ndarray, code: np.ndarray, rows: np.ndarray, codes: int) -> np.ndarray:
    """How many distinct identities the pairs ``rows`` have for each dense ``code`` (below ``codes``)."""
    combined = distinct_keys((code[rows] << np.int64(32)) | entity[rows])  # identity < 2**32
    return np.bincount(combined >> np.int64(32), minlength=codes)


def _identities_per_key(entity: np.ndarray, keys: np.ndarray, only_shared: bool) -> tuple[np.ndarray, np.ndarray]:
    """The pairs' distinct keys, sorted, and how many distinct identities used each; with
    ``only_shared``, only the keys two or more identities used.

    A key on one pair has one identity: only the pairs of keys on several (on a day, few addresses
    and a minority of /24s) are paired with their identity and sorted again."""
    distinct, pairs = distinct_sorted(sort_keys(keys))
    counts = np.ones(len(distinct), np.int64)
    several = pairs > 1
    if several.any():
        shared = distinct[several]
        slot = _slots(shared, keys)
        counts[several] = _identities_per_code(entity, slot, np.flatnonzero(shared[slot] == keys), len(shared))
    if only_shared:
        keep = counts > 1
        return distinct[keep], counts[keep]
    return distinct, counts


def _identities_by_code(entity: np.ndarray, code: np.ndarray, codes: int, identities: int) -> np.ndarray:
    """How many distinct identities the pairs (identity codes below ``identities``) have for each
    dense ``code`` (below ``codes``): in one compiled pass when the pairs come grouped by identity (a
    learning set's do), else the pairs per code are a count, and only the pairs of codes on several
    are paired with their identity and sorted; no sort of every pair's key."""
    if kernels is not None:
        counts = np.empty(codes, np.int64)
        if kernels.identities_by_code(
            np.ascontiguousarray(entity, np.int64), np.ascontiguousarray(code, np.int64), identities, counts
        ):
            return counts
    pairs = np.bincount(code, minlength=codes)
    on_several = _identities_per_code(entity, code, np.flatnonzero(pairs[code] > 1), codes)
    return np.where(pairs > 1, on_several, pairs)


def _per_address_today(
    entity: np.ndarray, address: np.ndarray, book: AddressBook, identities: int
) -> tuple[np.ndarray, np.ndarray]:
    """The identities today on each of ``book``'s addresses and on each one's /24 (/64), by the book's
    dense codes (``AddressBook.networks``)."""
    networks = book.networks
    per_24 = _identities_by_code(entity, networks[address], int(networks.max(initial=-1)) + 1, identities)
    return _identities_by_code(entity, address, len(book), identities), per_24[networks]


def build_day(
    entity: np.ndarray,
    address: np.ndarray,
    book: AddressBook,
    history: History,
    n: int,
    pool: Executor | None = None,
    only_real: bool = False,
) -> Day:
    """The day's counts; the addresses' are counted on ``pool`` (another core) when one is given and
    it gets to them first.

    ``only_real``: only the day's own pairs will be judged against it, none synthetic. They are then
    counted per address of the book and per /24 where the book has the /24s' codes (``Day.counted``,
    read with each pair's address, not looked up); otherwise, as for synthetic pairs, per network
    key (``Day.org_keys``), and with ``only_real`` only the networks two or more identities used
    (a pair does not count itself among the day's, so one its own identity alone used counts 0
    either way)."""
    entity, address = np.asarray(entity, np.int64), np.asarray(address, np.int64)
    coded = only_real and book.networks is not None
    if coded:
        counted = on_free_core(pool, _per_address_today, entity, address, book, n)
    else:
        addresses = on_free_core(pool, _identities_per_key, entity, book.level_keys[0][address], only_real)
        networks = _identities_per_key(entity, book.level_keys[1][address], only_real)
    known_24, site, known_pairs = pair_member_sites(
        history.seen[1], entity, book.level_keys[1], address, book.level_keys[2], n
    )
    sibling_keys, sibling_counts = distinct_sorted(sort_keys(site, in_place=True))
    none = (np.zeros(0, np.uint64), np.zeros(0, np.int64))
    org = [none, none] if coded else [addresses(), networks]
    return Day(
        [level_keys for level_keys, _ in org],
        [counts for _, counts in org],
        known_pairs.astype(np.float64),
        sibling_keys,
        sibling_counts,
        known_24,
        counted() if coded else None,
    )
