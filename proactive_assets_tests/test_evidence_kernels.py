"""The compiled hot loops (``_evidence_kernels.c``) give the numpy code's answers."""

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from threadpoolctl import threadpool_info

from proactive_assets.core.evidence import compiled as evidence_compiled
from proactive_assets.core.evidence import features, history, judgement
from proactive_assets.core.evidence import keys as address_keys
from proactive_assets.core.evidence import window as window_module
from proactive_assets.core.evidence.features import FEATURES, judged_pairs, pair_features
from proactive_assets.core.evidence.history import Behaviour, build_day, build_history
from proactive_assets.core.evidence.judgement import SHOWN, Judge
from proactive_assets.core.evidence.keys import address_book
from proactive_assets.core.hashing import mix64
from proactive_assets_tests.sanitized import run_sanitized
from proactive_assets_tests.test_evidence import NETWORKS

kernels = pytest.importorskip("proactive_assets.core.evidence._evidence_kernels")


def _numpy_slots(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(keys, queries), len(keys) - 1)


@pytest.mark.parametrize("n", [1, 2, 7, 9, 1000, 70_000])
def test_hash_keys_and_skewed_keys_sit_where_searchsorted_puts_them(n: int) -> None:
    rng = np.random.default_rng(n)
    top = np.uint64(2**64 - 1)
    spread = np.sort(mix64(rng.integers(0, 1 << 62, n)))
    skewed = np.sort(rng.integers(0, 50, n).astype(np.uint64))  # all in the first bucket, with repeats
    for keys in (spread, skewed, np.unique(skewed)):
        queries = np.concatenate([keys, keys + np.uint64(1), keys - np.uint64(1), mix64(rng.integers(0, 1 << 62, 500))])
        queries = np.concatenate([queries, np.array([0, 1, top, top - np.uint64(1)], np.uint64)])
        assert np.array_equal(history._slots(keys, queries), _numpy_slots(keys, queries))
        assert np.array_equal(history.member(keys, queries), np.isin(queries, keys))


@pytest.mark.parametrize("n", [1, 9, 5000])
def test_pairs_are_members_as_their_keys_made_first_are(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pair_member``: the compiled search that makes each pair's key as it goes (more pairs than
    one of its chunks) answers as ``member`` of ``pair_key``'s keys, numpy's path too."""
    rng = np.random.default_rng(n)
    network = mix64(rng.integers(0, 1 << 62, 300))
    entity, address = rng.integers(0, 40, 9000), rng.integers(0, 300, 9000)
    seen = np.unique(address_keys.pair_key(entity[:n], network[address[:n]]))  # some pairs', and others'
    seen = np.unique(np.r_[seen, mix64(rng.integers(0, 1 << 62, n))])
    expected = history.member(seen, address_keys.pair_key(entity, network[address]))
    assert expected[:n].all() and not expected.all()
    assert np.array_equal(history.pair_member(seen, entity, network, address), expected)
    with pytest.raises(ValueError, match="pair 3 has an address code out of range"):
        kernels.pair_members(seen, entity[:5], network, np.array([0, 1, 2, 300, 4]), np.empty(5, bool))
    # with the member pairs' site keys (their identity's and the address's /16's, say) and counts
    site = mix64(rng.integers(0, 1 << 62, 300))
    known, sites, counts = history.pair_member_sites(seen, entity, network, address, site, 45)
    assert np.array_equal(known, expected) and len(sites) == expected.sum()
    assert np.array_equal(sites, address_keys.pair_key(entity[expected], site[address[expected]]))
    assert counts.tolist() == np.bincount(entity[expected], minlength=45).tolist()
    with pytest.raises(ValueError, match="pair 2 has an identity code out of range"):
        out = (np.empty(5, bool), site, np.empty(5, np.uint64), np.zeros(3, np.int64))
        kernels.pair_members(seen, np.array([0, 1, 3, 0, 2]), network, address[:5], *out)
    with pytest.raises(ValueError, match="site keys as many"):
        kernels.pair_members(seen, entity[:5], network, address[:5], np.empty(5, bool), site[:-1], *out[2:])
    monkeypatch.setattr(history, "kernels", None)
    assert np.array_equal(history.pair_member(seen, entity, network, address), expected)
    by_numpy = history.pair_member_sites(seen, entity, network, address, site, 45)
    for a, b in zip(by_numpy, (known, sites, counts), strict=True):
        assert np.array_equal(a, b)


def test_level_keys_are_numpys(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    n = 5000
    is6 = rng.random(n) < 0.4
    hi = np.where(is6, rng.integers(0, 1 << 63, n, dtype=np.uint64) * np.uint64(2) + np.uint64(1), 0).astype(np.uint64)
    lo = np.where(is6, rng.integers(0, 1 << 63, n, dtype=np.uint64), rng.integers(0, 1 << 32, n)).astype(np.uint64)
    compiled = address_keys.level_keys(is6, hi, lo)
    monkeypatch.setattr(address_keys, "kernels", None)
    expected = address_keys.level_keys(is6, hi, lo)
    assert all(np.array_equal(c, e) for c, e in zip(compiled, expected, strict=True))
    assert len({int(k) for k in compiled[3]}) < len({int(k) for k in compiled[0]})  # /12s are shared
    with pytest.raises(ValueError, match="prefix lengths"):
        kernels.level_keys(is6, hi, lo, np.array([24, 64, 16, 48, 12, 0]), np.empty((4, n), np.uint64))


def test_the_lookup_refuses_what_it_cannot_search() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        kernels.slots(np.zeros(0, np.uint64), np.zeros(3, np.uint64), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="as long"):
        kernels.slots(np.ones(4, np.uint64), np.zeros(3, np.uint64), np.zeros(2, np.int64))


def test_each_rows_strongest_evidence_is_named_as_numpy_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    n = 2000
    x = np.asfortranarray(np.round(rng.normal(0, 1, (n, len(FEATURES))), 1))  # rounded: many ties
    x[:50] = 0.0  # rows that name nothing
    weights = np.round(rng.normal(0, 1.5, len(FEATURES)), 1)
    weights[[3, 7]] = 0.0
    judge = Judge(weights, 0.0)
    compiled = [a.to_pylist() for a in judge.of_matrix(x).named()]
    monkeypatch.setattr(judgement, "kernels", None)
    assert compiled == [a.to_pylist() for a in judge.of_matrix(x).named()]
    assert any(len(v) == 4 for v in compiled[0]) and any(v == [] for v in compiled[1])
    empty = judge.of_matrix(x[:0]).named()
    assert [a.to_pylist() for a in empty] == [[], []]


def test_top_contributions_refuses_mismatched_buffers() -> None:
    x = np.zeros((len(FEATURES), 10))
    with pytest.raises(ValueError, match="mismatched"):
        kernels.top_contributions(x, np.zeros(len(FEATURES)), 0.5, *_outputs(9, 4), *_outputs(10, 3))


def _outputs(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((n, k), np.int8), np.zeros(n, np.uint8)


def _world(seed: int, identities: int = 60, window_rows: int = 3000, pairs: int = 2000, fresh: float = 0.0) -> tuple:
    """A window and a day of random pairs over offices, AWS, Azure, private and IPv6 addresses (so
    every feature takes several values), with API calls, user agents and people of two identities;
    a ``fresh`` share of the day's pairs from networks the window never saw."""
    rng = np.random.default_rng(seed)
    pools = [
        [f"198.51.{i % 3}.{i}" for i in range(40)],
        [f"3.80.{i % 5}.{i}" for i in range(30)] + [f"54.72.1.{i}" for i in range(10)],  # AWS, two regions
        [f"20.42.7.{i}" for i in range(20)] + [f"10.0.{i % 2}.{i}" for i in range(10)],  # Azure, private
        [f"2001:db8:{i % 4}::{i}" for i in range(30)] + [f"2600:1f18::{i}" for i in range(10)],
    ]
    unseen = [f"203.0.{i % 3}.{i}" for i in range(20)] + [f"2001:db8:99:{i % 2}::{i}" for i in range(20)]
    addresses = [a for pool in pools for a in pool] + unseen
    book = address_book(addresses, NETWORKS)
    home = rng.integers(0, len(pools), identities)  # each identity mostly uses one pool
    offset = np.cumsum([0] + [len(p) for p in pools])

    def draw(entity: np.ndarray) -> np.ndarray:
        pool = np.where(rng.random(len(entity)) < 0.8, home[entity], rng.integers(0, len(pools), len(entity)))
        return offset[pool] + rng.integers(0, 1 << 20, len(entity)) % (offset[pool + 1] - offset[pool])

    def behaviour(n: int, vocabulary: int) -> Behaviour:  # the day's vocabulary larger: calls never made
        actions, agents = rng.integers(0, n, 3 * n), rng.integers(0, n, n)
        return Behaviour(
            actions,
            rng.integers(0, vocabulary, 3 * n),
            agents,
            rng.integers(0, vocabulary, n),
            rng.integers(1, 500, n) * 1.0,
        )

    known = identities - 8  # the last identities have no history
    entity = rng.integers(0, known, window_rows)
    history = build_history(
        entity, draw(entity), rng.integers(0, 7, window_rows), book, identities, behaviour(window_rows, 12)
    )
    today_entity = rng.integers(0, identities, pairs)
    today_address = draw(today_entity)
    if fresh:  # drawn apart, so the other draws are the same with or without them
        other = np.random.default_rng(seed + 1000)
        new = other.random(pairs) < fresh
        today_address[new] = offset[-1] + other.integers(0, len(unseen), int(new.sum()))
    real = rng.random(pairs) < 0.7
    day = build_day(today_entity[real], today_address[real], book, history, identities)
    ipi = rng.random(pairs)
    ipi[:20] = [np.nan, np.inf, -np.inf, 0.0, 1.0] * 4
    persons = np.where(np.arange(identities) % 3 == 0, 0, np.arange(identities) // 2 + 1)
    return today_entity, today_address, ipi, real, book, history, day, behaviour(pairs, 30), persons


#: Seeds, and the share of a day's pairs on networks the window never saw (lookups the kernel skips).
WORLDS = [(0, 0.0), (1, 0.0), (2, 0.0), (2, 0.4)]


@pytest.mark.parametrize(("seed", "fresh"), WORLDS)
def test_the_compiled_feature_matrix_is_numpys(seed: int, fresh: float, monkeypatch: pytest.MonkeyPatch) -> None:
    assert features._COMPILED, "the kernel's PAIR_FEATURES are not FEATURES"
    args = _world(seed, fresh=fresh)
    compiled = pair_features(*args)
    monkeypatch.setattr(evidence_compiled, "SPLIT_PAIRS", 500)  # the two-thread split gives the same rows
    assert np.array_equal(pair_features(*args), compiled)
    monkeypatch.setattr(features, "_COMPILED", False)
    expected = pair_features(*args)
    np.testing.assert_allclose(compiled, expected, rtol=1e-14, atol=1e-15)  # libm's log against numpy's, to an ulp
    for name in FEATURES if not fresh else ():  # every feature takes more than one value, so none is simply unset
        assert len(np.unique(expected[:, FEATURES.index(name)])) > 1, name
    if fresh:  # the address, /24 and /16 never seen in the window: their lookups are skipped
        assert (expected[:, FEATURES.index("novel_network")] == 1).mean() > fresh / 2


def _judge(seed: int) -> Judge:
    rng = np.random.default_rng(seed)
    return Judge(np.round(rng.normal(0, 1.5, len(FEATURES)), 1), -1.5)


def _assert_same_judgements(got: judgement.Judged, expected: judgement.Judged, every_grade: bool = True) -> None:
    np.testing.assert_allclose(got.insight, expected.insight, rtol=1e-13, atol=1e-15)
    for side in (0, 1):
        assert np.array_equal(got.counts[side], expected.counts[side])
        assert np.array_equal(got.codes[side], expected.codes[side])
    assert list(got.shown) == list(SHOWN)
    for name, dtype in SHOWN.items():
        assert got.shown[name].dtype == expected.shown[name].dtype == dtype
        np.testing.assert_allclose(got.shown[name], expected.shown[name], rtol=1e-14, atol=1e-15)
    if every_grade:  # the worlds' days
        assert set(got.shown["novelty"].tolist()) == {0, 1, 2, 3, 4, 5}  # every grade of novelty
        assert got.shown["others_address_window"].max() > 1 and got.shown["known_network_today"].any()


@pytest.mark.parametrize(("seed", "fresh"), WORLDS)
def test_pairs_judged_as_their_rows_are_built_are_judged_as_the_matrix(
    seed: int, fresh: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel's judgements, made as each row is built, are those of the matrix's rows."""
    args, judge = _world(seed, fresh=fresh), _judge(seed)
    compiled = judged_pairs(*args, judge=judge)
    assert (compiled.counts[0] > 0).any() and (compiled.counts[1] > 0).any()
    _assert_same_judgements(compiled, judge.of_matrix(pair_features(*args)))
    monkeypatch.setattr(evidence_compiled, "SPLIT_PAIRS", 500)  # the two-thread split gives the same
    _assert_same_judgements(judged_pairs(*args, judge=judge), compiled)
    monkeypatch.setattr(features, "_COMPILED", False)
    monkeypatch.setattr(judgement, "kernels", None)
    _assert_same_judgements(compiled, judged_pairs(*args, judge=judge))  # numpy from end to end


#: The features the judging kernel knows the size of (its F_BOUND): its flags, and IP Insights'
#: log-odds of a clipped insight, over 5.
FLAGS = ("novel_24", "novel_16", "novel_12", "novel_network", "new_identity", "known_network_today")
FLAGS += ("sibling_known_today", "person_address", "person_24", "aws_address", "cloud_address", "private_address")
FLAGS += ("provider_new", "aws_region_new", "family_new", "ip_insights_missing", "novel_x_known_today")
BOUNDED = {**dict.fromkeys((*FLAGS, "novel_x_provider_new"), 1.0)}
BOUNDED |= dict.fromkeys(("ip_insights", "novel_x_ip_insights"), np.log(9999) / 5)


def test_evidence_that_can_reach_the_bar_is_named_however_its_size_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel leaves out of naming the features whose weight times their largest size is under
    the bar: one exactly at it, or whose largest size (a clipped insight) just reaches it, is named."""
    args, bar = _world(1), judgement.NAMED_EVIDENCE
    weights, misses = np.zeros(len(FEATURES)), set(FLAGS[::3]) | {"novel_x_ip_insights"}
    for k, (name, size) in enumerate(BOUNDED.items()):
        if size == 1:  # a flag: exactly at the bar, or the float just under it
            weight = np.nextafter(bar, 0) if name in misses else bar
        else:  # the log-odds: at its largest, a hair over the bar or under it
            weight = bar / size * (1 - 1e-6 if name in misses else 1 + 1e-6)
        weights[FEATURES.index(name)] = weight * (-1) ** k  # (both sides)
    judge = Judge(weights, 0.3)
    compiled = judged_pairs(*args, judge=judge)
    named = {
        FEATURES[c]
        for side in (0, 1)
        for row, n in zip(compiled.codes[side], compiled.counts[side], strict=True)
        for c in row[:n]
    }
    x = np.abs(pair_features(*args))
    reaching = {
        name
        for name, size in BOUNDED.items()
        if name not in misses and x[:, FEATURES.index(name)].max() >= size * (1 - 1e-9)
    }
    assert "ip_insights" in reaching and len(reaching) >= 8 and named == reaching
    monkeypatch.setattr(features, "_COMPILED", False)
    monkeypatch.setattr(judgement, "kernels", None)
    _assert_same_judgements(compiled, judged_pairs(*args, judge=judge), every_grade=False)


@pytest.mark.parametrize(("seed", "fresh"), WORLDS)
def test_a_days_own_pairs_judged_with_their_known_24s_are_judged_as_when_looked_up(
    seed: int, fresh: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scoring a day hands the kernel whether each pair's /24 (/64) is known to its identity
    (``build_day`` looked it up): the same judgements as the kernel's own lookups and numpy's."""
    entity, address, ipi, _, book, history, _, behaviour, persons = _world(seed, fresh=fresh)
    real = np.ones(len(entity), bool)
    day = build_day(entity, address, book, history, len(history.known), only_real=True)
    args, judge = (entity, address, ipi, real, book, history, day, behaviour, persons), _judge(seed)
    given = judged_pairs(*args, judge=judge, day_pairs=True)
    _assert_same_judgements(given, judged_pairs(*args, judge=judge))
    monkeypatch.setattr(evidence_compiled, "SPLIT_PAIRS", 500)  # each half reads its own part
    _assert_same_judgements(judged_pairs(*args, judge=judge, day_pairs=True), given)
    day.seen_24 = ~day.seen_24  # they are read, not looked up again
    assert not np.array_equal(judged_pairs(*args, judge=judge, day_pairs=True).insight, given.insight)
    day.seen_24 = ~day.seen_24
    context = features.pair_context(entity, address, book, history, behaviour, persons)  # scoring has it
    _assert_same_judgements(judged_pairs(*args, judge=judge, day_pairs=True, context=context), given)
    new_actions = np.where(context[2] > 0, 0.0, 1.0)  # it is used, not computed again
    altered = judged_pairs(*args, judge=judge, day_pairs=True, context=(*context[:2], new_actions, *context[3:]))
    assert not np.array_equal(altered.insight, given.insight)
    monkeypatch.setattr(features, "_COMPILED", False)
    _assert_same_judgements(given, judged_pairs(*args, judge=judge, day_pairs=True))


def test_the_judging_kernel_refuses_mismatched_buffers() -> None:
    entity, address, ipi, real, book, history, day, behaviour, persons = _world(5)
    judge = _judge(5)
    bad = Judge(judge.weights[:-1], judge.intercept)  # a coefficient short
    with pytest.raises(ValueError, match="judge buffers of mismatched sizes"):
        judged_pairs(entity, address, ipi, real, book, history, day, behaviour, persons, judge=bad)
    with pytest.raises(ValueError, match="buffers of mismatched sizes"):  # the day was built from some of them
        judged_pairs(entity, address, ipi, real, book, history, day, behaviour, persons, judge, day_pairs=True)
    none = np.zeros(0, np.int64)
    empty = judged_pairs(
        none, none, np.zeros(0), np.zeros(0, bool), book, history, day, Behaviour.empty(0), persons, judge
    )
    assert len(empty.insight) == 0 and [a.to_pylist() for a in empty.named()] == [[], []]


def test_a_scored_days_counts_by_address_and_network_codes_are_the_counts_by_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``coded_addresses`` gives its book a dense /24 (/64) code per address; a scored day's counts
    (``only_real``) made by those codes, per address of the book (``Day.counted``), are the distinct
    identities on each address and /24, and judge the day's pairs as the counts by key do."""
    rng = np.random.default_rng(11)
    texts = [f"198.51.{rng.integers(0, 4)}.{rng.integers(0, 6)}" for _ in range(400)]
    texts += [f"2001:db8:{rng.integers(0, 3)}::{rng.integers(0, 5)}" for _ in range(150)]
    texts += [f"203.0.{i}.9" for i in range(40)]  # /24s of one identity each
    texts += ["192.0.2.77", "192.0.2.77", "192.0.3.1", "192.0.3.2"]  # two pairs, two identities each
    entity = rng.integers(0, 30, len(texts))
    entity[-44:-4] = 29
    entity[-4:] = [1, 2, 3, 4]
    code, book = address_keys.coded_addresses(pa.array(texts))
    book = book.with_owners(NETWORKS)
    assert book.networks is not None and len(np.unique(book.networks)) == 4 + 3 + 40 + 2
    e, a = np.r_[entity, entity[:25]], np.r_[code, code[:25]]  # a pair twice counts its identity once
    window = rng.integers(0, len(e), 300)
    history = build_history(e[window], a[window], window % 3, book, 30, Behaviour.empty(len(window)))
    by_code = build_day(e, a, book, history, 30, only_real=True)
    by_key = build_day(e, a, dataclasses.replace(book, networks=None), history, 30, only_real=True)
    assert by_key.counted is None and len(by_code.org_keys[0]) == 0 and len(by_code.counted[0]) == len(book)
    for level in (0, 1):
        users: dict[int, set[int]] = {}
        for identity, key in zip(e.tolist(), book.level_keys[level][a].tolist(), strict=True):
            users.setdefault(key, set()).add(identity)
        expected = [len(users.get(key, ())) for key in book.level_keys[level].tolist()]
        assert by_code.counted[level].tolist() == expected
        assert {n for n in expected} >= {1, 2}
    args = [e, a, rng.random(len(e)), np.ones(len(e), bool), book, history]
    rest = (Behaviour.empty(len(e)), np.arange(30))
    judge = _judge(11)
    with_codes = judged_pairs(*args, by_code, *rest, judge=judge, day_pairs=True)
    np.testing.assert_array_equal(with_codes.insight, judged_pairs(*args, by_key, *rest, judge=judge).insight)
    assert with_codes.shown["others_address_today"].max() > 0  # the day's counts are used
    # and the window's counts merged for the IPv4 addresses (``WindowIndex.address_counts``)
    index = window_module.WindowIndex(pd.Index([]), pd.Index([]), pd.Index([]), history, np.arange(30))
    index.ipv4 = window_module.ipv4_networks(book, history)
    merged = index.address_counts(book)
    assert (merged[0] > 0).any() and (merged[0] == -1).sum() == len(book) - len(book.ascending_v4)  # the IPv6 ones
    v4 = len(book.ascending_v4)
    for level, column in enumerate(merged):  # (the /16s and /12s read from a table of every prefix)
        keys, counts = index.ipv4[level]
        shift = 32 - window_module._IPV4_BITS[level]
        assert column[:v4].tolist() == window_module.sorted_counts(keys, counts, book.lo[:v4], shift).tolist()
        assert (column[:v4] > 0).any(), level
    given = judged_pairs(*args, by_code, *rest, judge=judge, day_pairs=True, window_counts=merged)
    _assert_same_judgements(given, with_codes, every_grade=False)
    altered = (merged[0] + (merged[0] >= 0), *merged[1:])  # they are read, not looked up again
    changed = judged_pairs(*args, by_code, *rest, judge=judge, day_pairs=True, window_counts=altered)
    assert not np.array_equal(changed.shown["others_address_window"], given.shown["others_address_window"])
    monkeypatch.setattr(features, "_COMPILED", False)
    np.testing.assert_allclose(judged_pairs(*args, by_code, *rest, judge=judge).insight, with_codes.insight, rtol=1e-13)
    # an address coded from text other than canonical IPv4 that is IPv4 after all: no codes
    mixed = np.array([True, False])
    assert address_keys._network_codes(np.zeros(2, np.uint64), np.arange(2), mixed, np.zeros(2, np.uint64)) is None


@pytest.mark.parametrize("keys", [0, 1, 17, 5000])
def test_counts_merged_by_prefix_are_the_counts_searched(keys: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sorted_counts`` merges ascending values with sorted keys (values out of order are searched
    afresh): each value's prefix's count, 0 where absent, as numpy's search gives it (and numpy's
    path where the kernel was not built)."""
    rng = np.random.default_rng(keys)
    sorted_keys = np.unique(rng.integers(0, 1 << 12, keys)).astype(np.uint32)
    counts = rng.integers(1, 9, len(sorted_keys)).astype(np.int32)
    values = np.sort(np.r_[rng.integers(0, 1 << 32, 3000), sorted_keys.astype(np.int64) << 20]).astype(np.uint64)
    for ordered in (values, rng.permutation(values), values[::-1].copy()):
        for shift in (20, 24, 0):
            prefix = ordered >> np.uint64(shift)
            slot = np.minimum(np.searchsorted(sorted_keys, prefix), max(len(sorted_keys) - 1, 0))
            expected = np.where(sorted_keys[slot] == prefix, counts[slot], 0) if keys else np.zeros(len(ordered))
            got = window_module.sorted_counts(sorted_keys, counts, ordered, shift)
            assert got.tolist() == expected.tolist()
            if shift == 20:  # each key's own value at least
                assert (got > 0).sum() >= len(sorted_keys)
    with pytest.raises(ValueError, match="sorted_counts"):
        kernels.sorted_counts(sorted_keys, counts, values, 20, np.empty(len(values) - 1, np.int64))
    # each count put in its place: values merged ascending, counted where a shuffle had them
    places = rng.permutation(len(values) + 5)[: len(values)]
    with pytest.raises(ValueError, match=r"position \d+ is out of range"):
        kernels.sorted_counts(sorted_keys, counts, values, 20, np.empty(len(values), np.int64), places)
    compiled = window_module.sorted_counts(sorted_keys, counts, values, 20)
    placed = np.full(len(values) + 5, -1, np.int64)
    window_module.sorted_counts(sorted_keys, counts, values, 20, placed, places)
    assert placed[places].tolist() == compiled.tolist() and (np.delete(placed, places) == -1).all()
    monkeypatch.setattr(window_module, "kernels", None)
    assert window_module.sorted_counts(sorted_keys, counts, values, 20).tolist() == compiled.tolist()
    placed_by_numpy = np.full(len(values) + 5, -1, np.int64)
    window_module.sorted_counts(sorted_keys, counts, values, 20, placed_by_numpy, places)
    assert placed_by_numpy.tolist() == placed.tolist()


def test_named_evidence_lists_are_numpys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each pair's named evidence, a list of feature names dictionary-encoded (one byte a name), the
    same from the compiled pass as from numpy; bad codes and counts are refused."""
    rng = np.random.default_rng(8)
    codes = tuple(rng.integers(0, len(FEATURES), (500, k)).astype(np.int8) for k in (4, 3))
    counts = tuple(rng.integers(0, k + 1, 500).astype(np.uint8) for k in (4, 3))
    judged = judgement.Judged(np.zeros(500), codes, counts, {})
    compiled = judged.named()
    for lists in compiled:
        lists.validate(full=True)
        assert lists.type == pa.list_(pa.dictionary(pa.int8(), pa.string()))
    monkeypatch.setattr(judgement, "kernels", None)
    assert [a.to_pylist() for a in compiled] == [a.to_pylist() for a in judged.named()]
    assert compiled[0].to_pylist()[0] == [FEATURES[c] for c in codes[0][0, : counts[0][0]]]
    assert [a.to_pylist() for a in judgement.Judged.empty(0).named()] == [[], []]
    for bad in ([[3, 0], [0, 0]], [[-1, 0], [0, 0]]):
        with pytest.raises(ValueError, match="has code"):
            evidence_compiled.kernels.named_codes(np.array(bad, np.int8), np.array([1, 0], np.uint8), 3)
    with pytest.raises(ValueError, match="names 3 of at most 2"):
        evidence_compiled.kernels.named_codes(np.zeros((2, 2), np.int8), np.array([3, 0], np.uint8), 3)


def test_the_feature_kernel_takes_no_pairs_and_an_empty_window(monkeypatch: pytest.MonkeyPatch) -> None:
    entity, address, ipi, real, book, history, day, behaviour, persons = _world(4)
    none = np.zeros(0, np.int64)
    empty = pair_features(none, none, np.zeros(0), np.zeros(0, bool), book, history, day, Behaviour.empty(0), persons)
    assert empty.shape == (0, len(FEATURES))
    blank = build_history(none, none, none, book, len(persons), Behaviour.empty(0))  # a window with no rows
    quiet = build_day(none, none, book, blank, len(persons))
    compiled = pair_features(entity, address, ipi, real, book, blank, quiet, behaviour, persons)
    monkeypatch.setattr(features, "_COMPILED", False)
    expected = pair_features(entity, address, ipi, real, book, blank, quiet, behaviour, persons)
    np.testing.assert_allclose(compiled, expected, rtol=1e-14, atol=1e-15)
    assert (compiled[:, FEATURES.index("new_identity")] == 1).all()


def test_code_running_its_own_threads_keeps_blas_to_one() -> None:
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    if not blas:
        pytest.skip("numpy links no BLAS that threadpoolctl can see")
    before = [pool["num_threads"] for pool in blas]
    with evidence_compiled.one_blas_thread():
        assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")
    assert [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"] == before


def test_the_days_counts_built_on_two_threads_are_the_same() -> None:
    entity, address, _, real, book, history, _, _, persons = _world(6)
    alone = build_day(entity[real], address[real], book, history, len(persons))
    with ThreadPoolExecutor(1) as pool:
        beside = build_day(entity[real], address[real], book, history, len(persons), pool)
    for field in fields(alone):
        a, b = getattr(alone, field.name), getattr(beside, field.name)
        assert (
            all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
            if isinstance(a, list)
            else np.array_equal(a, b)
        )


def test_the_days_counts_are_distinct_identities_per_network_and_judge_real_pairs_alike_without_singles() -> None:
    entity, address, ipi, real, book, history, _, behaviour, persons = _world(7)
    real[120:] = False  # a quiet day: some networks had one identity, some several
    e, a = entity[real], address[real]
    e, a = np.r_[e, e[:30]], np.r_[a, a[:30]]  # a pair twice counts its identity once
    full = build_day(e, a, book, history, len(persons))
    shared = build_day(e, a, book, history, len(persons), only_real=True)
    for level in (0, 1):
        users: dict[int, set[int]] = {}
        for identity, key in zip(e.tolist(), book.level_keys[level][a].tolist(), strict=True):
            users.setdefault(key, set()).add(identity)
        expected = sorted((key, len(ids)) for key, ids in users.items())
        assert list(zip(full.org_keys[level].tolist(), full.org_counts[level].tolist(), strict=True)) == expected
        assert {n == 1 for _, n in expected} == {True, False}
        kept = [(key, n) for key, n in expected if n > 1]
        assert list(zip(shared.org_keys[level].tolist(), shared.org_counts[level].tolist(), strict=True)) == kept
    mine = (entity[real], address[real], ipi[real], real[real], book, history)
    rest = (behaviour.take(np.flatnonzero(real)), persons)
    np.testing.assert_array_equal(pair_features(*mine, shared, *rest), pair_features(*mine, full, *rest))


@pytest.mark.parametrize("pairs", [0, 1, 2, 5000])
def test_identities_per_code_of_pairs_grouped_by_identity_are_counted_in_one_pass(pairs: int) -> None:
    """The compiled count of identities per code takes pairs grouped by identity (a learning set's
    order) and refuses others, which the numpy count then counts: the same counts either way."""
    rng = np.random.default_rng(pairs)
    entity, code = np.sort(rng.integers(0, 40, pairs)), rng.integers(0, 300, pairs)
    expected = [len(set(entity[code == c].tolist())) for c in range(300)]
    counts = np.full(300, -7, np.int64)
    assert kernels.identities_by_code(entity, code, 40, counts) and counts.tolist() == expected
    shuffled = rng.permutation(pairs)
    if pairs > 2:  # an identity back after another's run: left to numpy
        assert not kernels.identities_by_code(entity[shuffled], code[shuffled], 40, counts)
    assert history._identities_by_code(entity[shuffled], code[shuffled], 300, 40).tolist() == expected
    assert history._identities_by_code(entity, code, 300, 40).tolist() == expected
    if pairs:
        with pytest.raises(ValueError, match="out of range"):
            kernels.identities_by_code(entity, code, int(entity.max()), counts)
        with pytest.raises(ValueError, match="out of range"):
            kernels.identities_by_code(entity, code, 40, counts[: int(code.max())])


def test_a_learning_sets_day_grouped_by_identity_is_counted_as_numpy_counts_it(monkeypatch: pytest.MonkeyPatch) -> None:
    entity, address, _, _, book, history_, *_ = _world(4)
    order = np.argsort(entity, kind="stable")  # as a learning set comes: by identity
    e, a = entity[order], address[order]
    book = dataclasses.replace(book, networks=np.unique(book.level_keys[1], return_inverse=True)[1])
    compiled = build_day(e, a, book, history_, int(e.max()) + 1, only_real=True)
    monkeypatch.setattr(history, "kernels", None)
    expected = build_day(e, a, book, history_, int(e.max()) + 1, only_real=True)
    for got, want in zip(compiled.counted, expected.counted, strict=True):
        np.testing.assert_array_equal(got, want)
    assert compiled.counted[1].max() > 1


def test_calls_sharing_a_chunk_counter_each_judge_the_chunks_they_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two threads split the pairs by claiming 4,096-pair chunks from one counter: a call judges
    the chunks from the counter's value on, and together they give the rows one call gives."""
    args = _world(4, pairs=10_000)  # three chunks
    whole = pair_features(*args)
    inputs = features._kernel_inputs(args)
    chunk = 4096

    def rows_from(claimed: int) -> np.ndarray:
        matrix = np.full_like(whole, np.nan)
        evidence_compiled.kernels.pair_features(*inputs.args(), matrix, None, np.array([claimed], np.int64))
        return matrix

    assert np.isnan(rows_from(len(whole))).all()  # every chunk already claimed: nothing written
    later = rows_from(chunk)
    assert np.isnan(later[:chunk]).all() and np.array_equal(later[chunk:], whole[chunk:])
    monkeypatch.setattr(evidence_compiled, "SPLIT_PAIRS", 500)
    assert np.array_equal(pair_features(*args), whole)
    judge = _judge(4)
    _assert_same_judgements(judged_pairs(*args, judge=judge), judge.of_matrix(whole))
    with pytest.raises(ValueError, match="claim must be one aligned int64"):
        evidence_compiled.kernels.pair_features(*inputs.args(), np.empty_like(whole), None, np.zeros(2, np.int64))


def test_work_queued_behind_a_busy_pool_is_done_here_and_gives_the_same_day() -> None:
    """``build_day`` counts the addresses on the pool, or itself when the pool is still busy (with IP
    Insights, when scoring a day): the same counts either way, and the pool's task is cancelled."""
    entity, address, _, _, book, history, _, _, persons = _world(5)
    busy, release = threading.Event(), threading.Event()
    with ThreadPoolExecutor(1) as pool:
        blocker = pool.submit(lambda: busy.set() or release.wait(5))
        busy.wait(5)
        here = build_day(entity, address, book, history, len(persons), pool, only_real=True)
        assert not blocker.done()  # it did not wait for the pool
        release.set()
        blocker.result()
        threads: list[str] = []
        queued = evidence_compiled.on_free_core(pool, lambda: threads.append(threading.current_thread().name) or 1)
        pool.submit(lambda: None).result()  # one worker, in order: the queued call has run there
        assert queued() == 1 and threads and threads != [threading.current_thread().name]
        on_pool = build_day(entity, address, book, history, len(persons), pool, only_real=True)
    alone = build_day(entity, address, book, history, len(persons), only_real=True)
    for day in (here, on_pool):
        for level in (0, 1):
            assert np.array_equal(day.org_keys[level], alone.org_keys[level])
            assert np.array_equal(day.org_counts[level], alone.org_counts[level])
    assert len(alone.org_keys[0]) > 0


def test_the_feature_kernel_refuses_codes_out_of_range() -> None:
    entity, address, ipi, real, book, history, day, behaviour, persons = _world(3)
    address = address.copy()
    address[5] = len(book)
    with pytest.raises(ValueError, match="pair 5 has an identity or address code out of range"):
        pair_features(entity, address, ipi, real, book, history, day, behaviour, persons)
    with pytest.raises(ValueError, match="mismatched"):
        pair_features(entity, address[:-1], ipi, real, book, history, day, behaviour, persons)


SANITIZED_RUN = """
import sys
import numpy as np
from proactive_assets.core.evidence import compiled, features, history, judgement, keys, window
from proactive_assets_tests import test_evidence_kernels as t
from proactive_assets_tests.sanitized import load_extension
sanitized = load_extension("_evidence_kernels", sys.argv[1])
compiled.kernels = features.kernels = history.kernels = judgement.kernels = keys.kernels = sanitized
for n in (1, 2, 7, 9, 1000, 70_000):
    t.test_hash_keys_and_skewed_keys_sit_where_searchsorted_puts_them(n)
class Patch:
    def setattr(self, target, name, value):
        setattr(target, name, value)
t.test_each_rows_strongest_evidence_is_named_as_numpy_names_it(Patch())
t.test_level_keys_are_numpys(Patch())
for n in (1, 5000):
    history.kernels = sanitized
    t.test_pairs_are_members_as_their_keys_made_first_are(n, Patch())
history.kernels = sanitized
keys.kernels = sanitized
features._COMPILED = True
for seed, fresh in t.WORLDS:
    t.test_the_compiled_feature_matrix_is_numpys(seed, fresh, Patch())
    features._COMPILED = True
t.test_the_feature_kernel_takes_no_pairs_and_an_empty_window(Patch())
for seed, fresh in (t.WORLDS[0], t.WORLDS[-1]):
    t.test_pairs_judged_as_their_rows_are_built_are_judged_as_the_matrix(seed, fresh, Patch())
    features._COMPILED = True
    judgement.kernels = sanitized
    t.test_a_days_own_pairs_judged_with_their_known_24s_are_judged_as_when_looked_up(seed, fresh, Patch())
    features._COMPILED = True
t.test_the_judging_kernel_refuses_mismatched_buffers()
t.test_calls_sharing_a_chunk_counter_each_judge_the_chunks_they_claim(Patch())
compiled.kernels = judgement.kernels = sanitized
t.test_named_evidence_lists_are_numpys(Patch())
window.kernels = sanitized
for n in (0, 17, 5000):
    t.test_counts_merged_by_prefix_are_the_counts_searched(n, Patch())
    window.kernels = sanitized
t.test_a_scored_days_counts_by_address_and_network_codes_are_the_counts_by_key(Patch())
t.test_evidence_that_can_reach_the_bar_is_named_however_its_size_is_bounded(Patch())
history.kernels = sanitized
for n in (0, 1, 2, 5000):
    t.test_identities_per_code_of_pairs_grouped_by_identity_are_counted_in_one_pass(n)
from proactive_assets.core.evidence import networks
from proactive_assets_tests import test_evidence
networks.kernels = sanitized
test_evidence.test_the_compiled_search_of_ipv4_intervals_is_numpys_at_every_boundary(Patch())
print("clean")
"""


def test_the_kernels_are_clean_under_address_and_undefined_behaviour_sanitizers(tmp_path: Path) -> None:
    source = Path(features.__file__).with_name("_evidence_kernels.c")
    assert run_sanitized(source, "_evidence_kernels", SANITIZED_RUN, tmp_path).startswith("clean")
