"""The detector's evidence: address owners, per-pair features, synthetic attacks, the combiner and the budget."""

import ipaddress
import json
from dataclasses import fields
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from proactive_assets.core.backends.local import LocalBackend
from proactive_assets.core.evidence import combiner as combiner_module
from proactive_assets.core.evidence import fitting
from proactive_assets.core.evidence import networks as networks_module
from proactive_assets.core.evidence.combiner import (
    AVERAGED_MODELS,
    MIN_THRESHOLD,
    PRIOR_STRENGTH,
    DayRates,
    budget_threshold,
    fit_combiner,
    fit_logistic,
)
from proactive_assets.core.evidence.detector import (
    COPIED_USER_AGENT,
    EVAL_DAYS,
    _intruder_behaviour,
    _validation_day,
    score_day,
    threshold_for,
    train_detector,
    window_index,
)
from proactive_assets.core.evidence.features import FEATURES, pair_features
from proactive_assets.core.evidence.fitting import fit_folds
from proactive_assets.core.evidence.folds import Fold
from proactive_assets.core.evidence.frame import Frame
from proactive_assets.core.evidence.history import Behaviour, build_day, build_history
from proactive_assets.core.evidence.judgement import NAMED_EVIDENCE, Judge
from proactive_assets.core.evidence.keys import address_book, coded_addresses, level_keys, pair_key
from proactive_assets.core.evidence.negatives import KINDS, Negatives, draw_negatives
from proactive_assets.core.evidence.networks import _PRIVATE, AWS, PROVIDERS, Networks, Prefix, load_networks
from proactive_assets.core.evidence.persons import person_codes, person_name
from proactive_assets.core.ipnet import parse_ips
from proactive_assets.core.model import IPInsightsParams

NETWORKS = Networks(
    [
        Prefix("3.80.0.0/12", "aws", "us-east-1", "AMAZON"),
        Prefix("3.80.0.0/12", "aws", "us-east-1", "EC2"),
        Prefix("3.80.64.0/18", "aws", "us-east-1", "S3"),
        Prefix("54.72.0.0/15", "aws", "eu-west-1", "EC2"),
        Prefix("20.42.0.0/16", "azure", "eastus"),
        Prefix("2600:1f18::/32", "aws", "us-east-1", "EC2"),
    ],
    "test",
    "2026-01-01",
)


def owner_of(networks: Networks, address: str) -> tuple[str, str, str, bool]:
    is6, hi, lo = parse_ips([address])
    owner = networks.lookup(is6, hi, lo)
    provider = PROVIDERS[owner.provider[0]] if owner.provider[0] >= 0 else ""
    return provider, networks.names[owner.region[0]], networks.names[owner.service[0]], bool(owner.private[0])


def test_the_most_specific_prefix_owns_an_address() -> None:
    assert owner_of(NETWORKS, "3.80.1.2") == ("aws", "us-east-1", "EC2", False)  # EC2 beats the AMAZON catch-all
    assert owner_of(NETWORKS, "3.80.70.1") == ("aws", "us-east-1", "S3", False)  # the nested /18
    assert owner_of(NETWORKS, "3.95.255.255") == ("aws", "us-east-1", "EC2", False)  # last address of the /12
    assert owner_of(NETWORKS, "3.96.0.0") == ("", "", "", False)
    assert owner_of(NETWORKS, "54.73.9.9") == ("aws", "eu-west-1", "EC2", False)
    assert owner_of(NETWORKS, "20.42.5.5") == ("azure", "eastus", "", False)
    assert owner_of(NETWORKS, "2600:1f18:aa::1") == ("aws", "us-east-1", "EC2", False)
    for private in ("10.1.2.3", "172.16.5.5", "192.168.0.1", "100.64.1.1", "fd00::1"):
        assert owner_of(NETWORKS, private)[3], private
    assert not owner_of(NETWORKS, "198.51.100.7")[3]
    # a database that announces no IPv6 range (or nothing) still answers for IPv6 (and for anything)
    only_v4 = Networks([Prefix("3.80.0.0/12", "aws", "us-east-1", "EC2")], "test", "2026-11-26")
    assert owner_of(only_v4, "2600:1f18:aa::1") == ("", "", "", False) and owner_of(only_v4, "fd00::1")[3]
    assert owner_of(Networks([], "test", "2026-11-26"), "3.80.1.2") == ("", "", "", False)


def test_the_compiled_search_of_ipv4_intervals_is_numpys_at_every_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bundled ranges' owners by the compiled lookup equal numpy's, on each interval's first and
    last address and those either side, each private range's, the ends of the address space and
    random addresses; alone and among IPv6 addresses."""
    networks = load_networks()
    starts, ends = networks._tables[4].starts, networks._tables[4].ends
    rng = np.random.default_rng(0)
    private = [network + np.array([0, (1 << (32 - bits)) - 1]) for version, network, bits in _PRIVATE if version == 4]
    edges = np.r_[starts, ends, np.ravel(private), 1 << 24].astype(np.uint64)
    values = np.r_[edges, edges - np.uint64(1), edges + np.uint64(1), rng.integers(0, 1 << 32, 5000)]
    values = np.r_[np.uint64(0), np.uint64((1 << 32) - 1), values.astype(np.uint64)]
    values = values[values < np.uint64(1 << 32)]  # (a start of 0 less 1 wraps)
    is6 = rng.random(len(values)) < 0.1
    hi = np.where(is6, rng.integers(0, 1 << 63, len(values)).astype(np.uint64) << np.uint64(1), np.uint64(0))
    calls = ((np.zeros(len(values), bool), np.zeros(len(values), np.uint64), values), (is6, hi, values))
    owners = [networks.lookup(*args) for args in calls]
    compiled_kernels = networks_module.kernels
    monkeypatch.setattr(networks_module, "kernels", None)
    for compiled, args in zip(owners, calls, strict=True):
        expected = networks.lookup(*args)
        for field in ("provider", "region", "service", "private"):
            assert np.array_equal(getattr(compiled, field), getattr(expected, field)), field
        assert 0.3 < (expected.provider >= 0).mean() < 1 and 30 < expected.private.sum() < len(values) // 2
    with pytest.raises(ValueError, match="slot 5 of 3 intervals"):
        compiled_kernels.owner_fields(
            np.array([0, 5]), np.array([1, 2], np.uint64), np.array([9, 9, 9], np.uint64),
            np.zeros(4, np.int16), np.zeros(4, np.int32), np.zeros(4, np.int32), *networks_module._PRIVATE_V4,
            np.zeros(2, np.int16), np.zeros(2, np.int32), np.zeros(2, np.int32), np.zeros(2, bool),
        )  # fmt: skip


def test_bundled_ranges_are_dated_and_know_aws_and_other_clouds() -> None:
    networks = load_networks()
    assert networks.date >= "2026-01-01" and networks.source
    assert owner_of(networks, "3.80.1.2")[:2] == ("aws", "us-east-1")
    assert owner_of(networks, "54.72.3.4")[:2] == ("aws", "eu-west-1")
    assert owner_of(networks, "20.42.1.1")[0] == "azure"
    assert owner_of(networks, "192.0.2.1")[0] == ""


def test_aws_ip_ranges_file_replaces_the_aws_part_only(tmp_path: Path) -> None:
    """PROACTIVE_AWS_IP_RANGES: AWS's own file for AWS (fresher than the package), the package for the rest."""
    ranges = tmp_path / "ip-ranges.json"
    ranges.write_text(
        json.dumps(
            {
                "createDate": "2026-11-20-01-02-03",
                "prefixes": [{"ip_prefix": "192.0.2.0/24", "region": "eu-south-2", "service": "EC2"}],
                "ipv6_prefixes": [{"ipv6_prefix": "2001:db8::/32", "region": "eu-south-2", "service": "EC2"}],
            }
        )
    )
    networks = load_networks(str(ranges))
    assert networks.date == "2026-11-20-01-02-03" and str(ranges) in networks.source
    assert owner_of(networks, "192.0.2.9")[:3] == ("aws", "eu-south-2", "EC2")
    assert owner_of(networks, "2001:db8:1::1")[:2] == ("aws", "eu-south-2")
    assert owner_of(networks, "3.80.1.2")[0] == ""  # not in this file: not AWS
    assert owner_of(networks, "20.42.1.1")[0] == "azure"


HISTORY = [  # (entity, address, day)
    ("alice", "198.51.100.10", 1),
    ("alice", "198.51.100.10", 2),
    ("alice", "198.51.100.10", 3),
    ("bob", "198.51.100.20", 1),
    ("bob", "198.51.100.20", 3),
    ("carol", "203.0.113.5", 1),  # carol's carrier hands out a new /24 every day
    ("carol", "203.0.114.5", 2),
    ("carol", "203.0.115.5", 3),
    ("lambda", "3.80.1.2", 1),
    ("lambda", "3.80.9.9", 2),
    ("lambda", "3.81.4.4", 3),
]


def features_for(
    today: list[tuple[str, str]],
    ip_insights: float = 0.5,
    history_rows: list[tuple[str, str, int]] = HISTORY,
    link_persons: bool = False,
) -> dict[tuple[str, str], dict[str, float]]:
    addresses = sorted({a for _, a, _ in history_rows} | {a for _, a in today})
    entities = sorted({e for e, _, _ in history_rows} | {e for e, _ in today})
    book = address_book(addresses, NETWORKS)
    e = np.array([entities.index(x) for x, _, _ in history_rows])
    a = np.array([addresses.index(x) for _, x, _ in history_rows])
    d = np.array([x for _, _, x in history_rows])
    history = build_history(e, a, d, book, len(entities), Behaviour.empty(len(e)))
    te = np.array([entities.index(x) for x, _ in today])
    ta = np.array([addresses.index(x) for _, x in today])
    day = build_day(te, ta, book, history, len(entities))
    ipi = np.full(len(te), ip_insights)
    persons = person_codes(entities) if link_persons else None
    x = pair_features(te, ta, ipi, np.ones(len(te), bool), book, history, day, Behaviour.empty(len(te)), persons)
    return {pair: dict(zip(FEATURES, row, strict=True)) for pair, row in zip(today, x, strict=True)}


def test_graded_novelty_other_identities_churn_and_ownership() -> None:
    today = [
        ("alice", "198.51.100.10"),  # seen
        ("alice", "198.51.100.99"),  # new host of a known /24
        ("alice", "198.51.7.1"),  # new /24 of a known /16
        ("alice", "192.0.2.44"),  # never-seen network, while alice also works from home
        ("bob", "198.51.100.10"),  # alice's address: a colleague's
        ("carol", "203.0.116.5"),  # a churning identity's usual kind of novelty
        ("lambda", "54.72.1.1"),  # AWS, but another region
        ("lambda", "198.51.100.20"),  # a machine role outside AWS, on bob's address
        ("dave", "198.51.100.10"),  # an identity with no history
    ]
    f = features_for(today)
    assert f[("alice", "198.51.100.10")]["novel_24"] == 0 and f[("alice", "198.51.100.10")]["novel_network"] == 0
    assert f[("alice", "198.51.100.99")]["novel_24"] == 1
    assert f[("alice", "198.51.7.1")]["novel_16"] == 1
    assert f[("alice", "192.0.2.44")]["novel_network"] == 1
    assert f[("alice", "192.0.2.44")]["known_network_today"] == 1  # her usual /24 is active today too
    assert f[("alice", "198.51.100.10")]["others_address_window"] == 0  # nobody else used it before today
    assert f[("bob", "198.51.100.10")]["others_address_window"] == pytest.approx(np.log1p(1))
    assert f[("bob", "198.51.100.10")]["others_address_today"] == pytest.approx(np.log1p(2))  # alice and dave
    assert f[("carol", "203.0.116.5")]["churn_24"] == 1.0 and f[("alice", "192.0.2.44")]["churn_24"] == 0.0
    assert f[("lambda", "54.72.1.1")]["aws_region_new"] == 1 and f[("lambda", "54.72.1.1")]["provider_new"] == 0
    assert f[("lambda", "198.51.100.20")]["provider_new"] == 1 and f[("lambda", "198.51.100.20")]["aws_share"] == 1
    assert f[("dave", "198.51.100.10")]["new_identity"] == 1 and f[("dave", "198.51.100.10")]["novel_network"] == 0


def test_synthetic_attacks_are_of_every_kind_and_never_the_identitys_own() -> None:
    addresses = sorted({a for _, a, _ in HISTORY})
    entities = sorted({e for e, _, _ in HISTORY})
    book = address_book(addresses, NETWORKS)
    e = np.array([entities.index(x) for x, _, _ in HISTORY])
    a = np.array([addresses.index(x) for _, x, _ in HISTORY])
    history = build_history(e, a, np.array([x for _, _, x in HISTORY]), book, len(entities), Behaviour.empty(len(e)))
    active = np.arange(len(entities))
    none = np.zeros(0, np.int64)
    negatives = draw_negatives(active, e, a, none, none, book, history, NETWORKS, np.random.default_rng(3))
    kinds = {KINDS[k] for k in negatives.kind.tolist()}
    assert kinds == set(KINDS) - {"random_ipv6"}  # the organisation uses no IPv6
    own = set(zip(e.tolist(), a.tolist(), strict=True))
    texts = negatives.texts().to_pylist()
    for entity, text in zip(negatives.entity.tolist(), texts, strict=True):
        assert (entity, addresses.index(text) if text in addresses else -1) not in own
    keys24 = level_keys(negatives.is6, negatives.hi, negatives.lo)[1]
    same_isp = negatives.kind == KINDS.index("same_isp_new_24")
    assert not np.isin(pair_key(negatives.entity[same_isp], keys24[same_isp]), history.seen[1]).any()
    cloud = negatives.kind == KINDS.index("cloud_address")
    lam = entities.index("lambda")
    owner = NETWORKS.lookup(negatives.is6, negatives.hi, negatives.lo)
    lambda_cloud = cloud & (negatives.entity == lam)
    assert (owner.provider[lambda_cloud] == AWS).all()
    assert all(NETWORKS.names[r] != "us-east-1" for r in owner.region[lambda_cloud])  # another region
    # a colleague's network: a /16 another identity used, a /24 of it this identity never used
    colleague = negatives.kind == KINDS.index("colleague_network")
    keys16 = level_keys(negatives.is6, negatives.hi, negatives.lo)[2]
    assert not np.isin(pair_key(negatives.entity[colleague], keys24[colleague]), history.seen[1]).any()
    used_16 = {(int(x), int(k)) for x, k in zip(e, book.level_keys[2][a], strict=True)}
    for entity, key in zip(negatives.entity[colleague].tolist(), keys16[colleague].tolist(), strict=True):
        assert any(k == key and x != entity for x, k in used_16)
    # no 'new /24 next to' draw lands in a cloud's ranges (the Lambda role's next AWS address is its own)
    assert (owner.provider[same_isp | colleague] < 0).all()
    assert lam not in negatives.entity[same_isp].tolist()


def test_a_short_window_stays_near_the_prior_and_a_long_one_follows_its_data() -> None:
    """The prior pull is worth a fixed number of pairs: it decides a handful, thousands outweigh it."""
    rng = np.random.default_rng(1)

    def fit(n: int) -> float:
        x = np.vstack([rng.normal(0, 1, (n, 1)), rng.normal(1, 1, (n, 1))])  # the data say about +1
        y = np.r_[np.zeros(n), np.ones(n)]
        return fit_logistic(x, y, np.ones(2 * n), prior=np.array([5.0]), prior_strength=PRIOR_STRENGTH)[1]

    assert fit(10) > 3.5 and fit(10_000) < 1.3


def test_a_window_that_has_not_filled_yet_leans_on_the_prior() -> None:
    """A new deployment's first models fit a day or two of validation: the prior weighs as much as
    the share of the window still without data; once the window has EVAL_DAYS validation days the
    data decide alone, however short the window."""
    rng = np.random.default_rng(3)
    column = FEATURES.index("others_16_window")  # the prior gives it no weight

    def folds(count: int) -> list:
        out = []
        for day in range(count):
            x = np.zeros((600, len(FEATURES)), np.float32)
            suspicious = np.r_[np.zeros(300, bool), np.ones(300, bool)]
            x[:, column] = rng.normal(np.where(suspicious, 1.5, 0.0), 0.5)  # this day says: suspicious
            out.append(Fold(day, x, suspicious, np.where(suspicious, 0, -1), 100))
        return out

    def weight(count: int, lacking: float) -> float:
        return fit_folds(folds(count), 1.0, [str(d) for d in range(count)], lacking=lacking)[0].coefficients[
            "others_16_window"
        ]

    free, held = weight(1, 0.0), weight(1, 11 / 14)  # 3 of 14 days with data
    assert free > 1 and 0 < held < free / 3
    assert weight(2, 10 / 14) < weight(2, 0.0) / 3
    assert weight(EVAL_DAYS, 0.5) == pytest.approx(weight(EVAL_DAYS, 0.0), rel=0.2)  # no prior: the data alone


def test_the_logistic_fit_ends_at_the_optimum_from_a_far_start() -> None:
    """Model D-1's combiner is where Newton's method starts; from a start far off, plain Newton
    steps overshot and diverged (intercepts of 1e11). The fit is convex: it must end where a fit
    from zero does."""
    rng = np.random.default_rng(2)
    x = np.vstack([rng.normal(0, 1, (300, 2)), rng.normal(1.5, 1, (300, 2))])
    y = np.r_[np.zeros(300), np.ones(300)]
    reference = fit_logistic(x, y, np.ones(600))
    for start in ([-20.0, 15.0, -15.0], [10.0, -10.0, 10.0], [40.0, 40.0, -40.0]):
        assert fit_logistic(x, y, np.ones(600), start=np.array(start)) == pytest.approx(reference, abs=1e-6)


def _folds_with_intruders(intruded: range) -> list[Fold]:
    """Validation days of real pairs against synthetic attacks told apart by ``others_16_window``,
    with six real pairs as extreme as the attacks (intruders) on each day of ``intruded``."""
    rng = np.random.default_rng(5)
    column = FEATURES.index("others_16_window")
    folds = []
    for day in range(EVAL_DAYS):
        x = np.zeros((806, len(FEATURES)), np.float32)
        suspicious = np.r_[np.zeros(406, bool), np.ones(400, bool)]
        x[:, column] = rng.normal(np.where(suspicious, 2.0, 0.0), 0.7)
        if day in intruded:
            x[400:406, column] = 3.5
        folds.append(Fold(day, x, suspicious, np.where(suspicious, 0, -1), 1000))
    return folds


def test_real_pairs_the_first_fit_would_alert_on_are_left_out_of_the_second() -> None:
    """Validation days can hold real attacks: real pairs as extreme as the synthetic attacks. Fitted
    as an identity's own, they flatten the combiner; the trimmed fit leaves out the real pairs its
    first fit puts at or above the threshold, so such a pair scores higher, and they are counted."""
    folds = _folds_with_intruders(range(EVAL_DAYS))
    combiner, budget, _ = fit_folds(folds, 1.0, [str(d) for d in range(EVAL_DAYS)])
    x = np.vstack([f.x for f in folds])
    suspicious = np.concatenate([f.suspicious for f in folds])
    untrimmed = fit_combiner(x, suspicious)
    assert combiner.fitted_on["real_pairs_trimmed"] >= 6 * EVAL_DAYS
    assert combiner.coefficients["others_16_window"] > 1.2 * untrimmed.coefficients["others_16_window"]
    like_an_attack = folds[0].x[400:401]
    assert combiner.insight(like_an_attack)[0] > untrimmed.insight(like_an_attack)[0]
    assert budget.threshold <= combiner.insight(like_an_attack)[0]  # they are still counted, and alerted


def test_a_warm_day_trims_the_real_pairs_model_d_minus_1s_combiner_would_alert_on(monkeypatch) -> None:
    """On a warm day model D-1's combiner, fitted the same way on the days before, ranks the real
    pairs to trim (no first fit): the newest day's intruders, which it never learnt as benign. Then
    one fit, from it."""
    folds = _folds_with_intruders(range(EVAL_DAYS - 1, EVAL_DAYS))  # intruders on the newest day only
    before = folds[:-1]
    start = fit_combiner(np.vstack([f.x for f in before]), np.concatenate([f.suspicious for f in before]))
    fits = []
    monkeypatch.setattr(fitting, "fit_combiner", lambda *a, **k: fits.append(a[4]) or fit_combiner(*a, **k))
    combiner, _, _ = fit_folds(folds, 1.0, [str(d) for d in range(EVAL_DAYS)], start=start)
    assert fits == [start]  # one fit, from model D-1's combiner
    scores = np.concatenate([start.insight(f.x) for f in folds])
    real = [start.insight(f.x)[~f.suspicious] for f in folds]
    threshold = budget_threshold(real, [f.identities for f in folds], scores, 1.0).threshold
    trimmed = fitting._trimmed(scores, folds, threshold, 1.0)
    assert combiner.fitted_on["real_pairs_trimmed"] == trimmed.sum()
    assert trimmed[-806:][400:406].all()  # the newest day's intruders are among them
    fits.clear()
    fit_folds(folds, 1.0, [str(d) for d in range(EVAL_DAYS)])
    assert len(fits) == 2 and fits[0] is None  # a full retrain: a first fit ranks, from zero


def test_logistic_fit_separates_and_the_budget_sets_the_threshold() -> None:
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, (400, 1)), rng.normal(3, 1, (400, 1))])
    y = np.r_[np.zeros(400), np.ones(400)]
    beta = fit_logistic(x, y, np.ones(800))
    assert beta[1] > 1.5  # the feature raises the odds of the second class
    # a warm day starts from model D-1's fit: the same optimum (the fit is convex), in fewer steps
    nearby = beta + np.array([0.3, -0.2])
    np.testing.assert_allclose(fit_logistic(x, y, np.ones(800), start=nearby), beta, atol=1e-7)
    assert not np.allclose(fit_logistic(x, y, np.ones(800), start=nearby, steps=1), beta, atol=1e-7)
    full = np.zeros((10, len(FEATURES)))
    combiner = fit_combiner(np.vstack([full, full + 1]), np.r_[np.zeros(10, bool), np.ones(10, bool)])
    assert combiner.insight(full + 1).min() > 0.9 > 0.1 > combiner.insight(full).max()
    real = np.linspace(0, 0.99, 100)  # 100 real pairs of a day with 10 identities
    budget = budget_threshold([real], [10], np.full(50, 0.995), per_100=20)
    assert budget.threshold > real[-3] and (real >= budget.threshold).sum() == 2  # 20 per 100 of 10 = 2 alerts
    assert budget.expected_false_alerts_per_100 == pytest.approx(20.0) and budget.expected_recall == 1.0
    assert budget_threshold([np.zeros(5)], [1000], np.ones(5), 1.0).threshold == MIN_THRESHOLD
    # the days' expected false alerts add up: 20 per 100 of 30 identity-days = 6, all on the busy day
    # (days of 30 pairs: too few for a tail of their own, so counted)
    calm, busy = np.linspace(0, 0.6, 30), np.linspace(0, 0.99, 30)
    pooled = budget_threshold([calm, calm, busy], [10, 10, 10], np.ones(5), 20)
    assert (busy >= pooled.threshold).sum() == 6 and (calm >= pooled.threshold).sum() == 0
    # a few real attacks on top of a large day do not lift the threshold to above them
    rng = np.random.default_rng(1)
    day = 1 / (1 + np.exp(-rng.normal(-4, 1, 2000)))
    with_attacks = np.r_[day, np.full(8, 0.999)]
    assert budget_threshold([with_attacks], [400], np.ones(1), 1.0).threshold < 0.99
    # nor does 1% of a day's pairs saturated at 1 stretch the tail (they are censored)
    assert budget_threshold([np.r_[day, np.ones(20)]], [400], np.ones(1), 1.0).threshold < 0.99
    # days too small for a tail of their own (60 pairs) are modelled as one: two attacks a day
    # in the validation days do not lift the threshold above every attack like them
    small = [np.r_[1 / (1 + np.exp(-rng.normal(-4, 1, 60))), np.full(2, 0.999)] for _ in range(5)]
    assert budget_threshold(small, [150] * 5, np.ones(1), 1.0).threshold < 0.99
    assert budget_threshold(small[:1], [150], np.ones(1), 1.0).threshold > 0.99  # one day: counted as it is
    assert threshold_for({"threshold": 0.7}, None) == 0.7 and threshold_for({"threshold": 0.7}, 0.9) == 0.9


def test_the_tail_quantiles_are_numpys_to_the_last_bit() -> None:
    """The false-alert model takes its tail's quantiles of sorted log-odds without np.quantile's
    partition and overhead: the same floats, at every size (one value, two, a tail's hundreds)."""
    rng = np.random.default_rng(8)
    for n in [*range(1, 40), 999, 10_001]:
        values = np.sort(rng.normal(0, 3, n))
        for q in (0.0, 0.1, 0.5, 0.8, 0.9, 0.999, 1.0):
            assert combiner_module._sorted_quantile(values, q) == float(np.quantile(values, q))


def test_the_threshold_averages_the_false_alerts_expected_by_the_last_models() -> None:
    rng = np.random.default_rng(2)
    calm, busy = (1 / (1 + np.exp(-rng.normal(mean, 1.5, 3000))) for mean in (-6, -3))
    worlds = [("calm", calm), ("busy", busy)]
    day = date(2024, 3, 10)  # the model's day
    alone = {name: budget_threshold([real], [500], np.ones(1), 1.0, day) for name, real in worlds}
    assert alone["calm"].threshold < alone["busy"].threshold
    # what a later model needs of an estimate at thresholds of at least 0.5: the same expected rates
    loud = 1 / (1 + np.exp(-rng.normal(0, 1.5, 3000)))  # a tenth of it above 0.5 and more: its tail starts there
    for name, real in [*worlds, ("loud", loud), ("counted", busy[:50])]:
        rates = DayRates.of([real], [500])
        again = DayRates.from_summary(json.loads(json.dumps(rates.summary())))
        for t in (0.0, 0.5, 1.0, 2.0, 4.0):
            assert again.rate(t) == pytest.approx(rates.rate(t), rel=1e-5), (name, t)
    assert len(json.dumps(DayRates.of([busy], [500]).summary())) < 200  # its tail: no pair listed
    # a busy model after two calm ones: its threshold keeps their average within the budget
    calm_days = {
        d.isoformat(): budget_threshold([calm], [500], np.ones(1), 1.0, d).estimates[d.isoformat()]
        for d in (date(2024, 3, 8), date(2024, 3, 9))
    }
    averaged = budget_threshold([busy], [500], np.ones(1), 1.0, day, calm_days)
    assert alone["calm"].threshold < averaged.threshold < alone["busy"].threshold
    assert averaged.own_threshold == alone["busy"].threshold
    assert averaged.expected_false_alerts_per_100 == pytest.approx(1.0, rel=1e-3)
    assert averaged.to_dict()["averaged_models"] == ["2024-03-08", "2024-03-09", "2024-03-10"]
    # estimates of models more than AVERAGED_MODELS - 1 days before, or of later days, are not used
    late = {"2024-03-07": calm_days["2024-03-08"], "2024-03-11": calm_days["2024-03-09"]}
    assert budget_threshold([busy], [500], np.ones(1), 1.0, day, late).threshold == alone["busy"].threshold
    # an estimate of another format is left out, not the model
    garbled = {**calm_days, "2024-03-09": {"days": "?"}}
    kept = budget_threshold([busy], [500], np.ones(1), 1.0, day, garbled)
    assert kept.to_dict()["averaged_models"] == ["2024-03-08", "2024-03-10"]
    assert AVERAGED_MODELS == 3


def _org(days: int, start: date) -> pa.Table:
    """40 people, each on a home /24 (a new host some days) and an office address; learning-set rows."""
    rows = []
    for d in range(days):
        for person in range(40):
            arn = f"arn:aws:iam::111122223333:user/p{person}"
            rows.append((arn, f"198.51.{person}.{10 + (d % 3 if person % 4 == 0 else 0)}", start + timedelta(days=d)))
            if d % 7 < 5:
                rows.append((arn, "203.0.113.7", start + timedelta(days=d)))
    entity, ip, day = zip(*rows, strict=True)
    return pa.table(
        {
            "entity": list(entity),
            "source_ip": list(ip),
            "event_count": [3] * len(rows),
            "sources": [["cloudtrail"]] * len(rows),
            "day": pa.array(day, pa.date32()),
        }
    )


def test_the_detector_ranks_an_attack_above_benign_novelty_and_never_sees_the_scored_day() -> None:
    start = date(2024, 3, 1)
    window = _org(14, start)
    scored = start + timedelta(days=14)
    params = IPInsightsParams(vector_dim=16, epochs=2, seed=5)
    backend = LocalBackend()
    model = train_detector(window, backend, params, scored, NETWORKS, alert_budget=1.0)
    evidence = model.metadata["evidence"]
    assert evidence["validation_days"] == [(scored - timedelta(days=i)).isoformat() for i in range(EVAL_DAYS, 0, -1)]
    # a short window validates at most its second half: IP Insights keeps the first to learn from
    short = window.filter(pc.greater_equal(window.column("day"), pa.scalar(scored - timedelta(days=7))))
    half = train_detector(short, backend, params, scored, NETWORKS, alert_budget=1.0).metadata["evidence"]
    assert half["validation_days"] == [(scored - timedelta(days=i)).isoformat() for i in (3, 2, 1)]
    assert 0.5 <= model.metadata["threshold"] <= 1.0 and evidence["evidence_auc"] > 0.8
    assert model.version.startswith(model.metadata["ip_insights_version"] + "+")
    today = pa.table(
        {
            "entity": [
                "arn:aws:iam::111122223333:user/p1",
                "arn:aws:iam::111122223333:user/p1",
                "arn:aws:iam::111122223333:user/p2",
            ],
            "source_ip": ["198.51.1.10", "185.220.101.4", "198.51.2.77"],  # usual, attacker, new home host
        }
    )
    scorer = backend.scorer(model, lambda: window)
    scores = score_day(model, scorer, window_index(model, lambda: window, NETWORKS), today, NETWORKS)
    usual, attack, new_host = scores.insight
    assert attack > model.metadata["threshold"] > max(usual, new_host)
    columns = scores.evidence_columns()
    assert columns["novelty"].to_pylist() == ["seen address", "never-seen network", "new address in a known /24"]
    assert columns["evidence_for"][1].as_py() and not columns["evidence_for"][0].as_py()


def test_only_names_of_people_link_identities() -> None:
    sso = "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Admin_0a1b2c3d4e5f6a7b/Jo.Doe@example.com"
    assert person_name(sso) == "jo.doe"
    assert person_name("arn:aws:iam::444455556666:user/ops/jo.doe") == "jo.doe"
    for unlinked in (
        # names the caller picks could be an intruder's pick of a colleague: they link nothing
        "arn:aws:sts::111122223333:federated-user/jo.doe",
        "arn:aws:sts::111122223333:assumed-role/okta-admins/jo.doe@example.com",
        "arn:aws:sts::111122223333:assumed-role/gha-deploy/GitHubActions",
        "arn:aws:sts::111122223333:assumed-role/web-instance/i-0123456789abcdef0",
        "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Admin_0a1b",  # no session name
        "arn:aws:iam::111122223333:root",
        "arn:aws:iam::111122223333:role/deploy",
        "i-0123456789abcdef0",
        "",
    ):
        assert person_name(unlinked) == "", unlinked
    codes = person_codes([sso, "arn:aws:iam::444455556666:user/jo.doe", "arn:aws:iam::1:user/kim", "i-0abc"])
    assert codes[0] == codes[1] != 0 and codes[2] not in (0, codes[0]) and codes[3] == 0


JO_SSO = "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Dev_0a1b2c3d4e5f6a7b/jo@example.com"
JO_USER = "arn:aws:iam::111122223333:user/jo"
CI = "arn:aws:sts::111122223333:assumed-role/gha-deploy/GitHubActions"


def test_the_same_persons_other_identity_vouches_for_its_network() -> None:
    history_rows = [(JO_SSO, "198.51.100.10", 1), (JO_SSO, "198.51.100.10", 2), (JO_USER, "203.0.113.5", 2)]
    today = [
        (JO_USER, "198.51.100.10"),  # the address of jo's SSO role
        (JO_USER, "198.51.100.77"),  # a new host of its /24
        (CI, "198.51.100.10"),  # another identity altogether on it: no person vouches
        (JO_SSO, "192.0.2.44"),  # new to both of jo's identities, both on it today: only the past vouches
        (JO_USER, "192.0.2.44"),  # (a stolen laptop's credentials all used from the intruder's address)
    ]
    f = features_for(today, history_rows=history_rows, link_persons=True)
    assert [(f[p]["person_address"], f[p]["person_24"]) for p in today] == [(1, 1), (0, 1), (0, 0), (0, 0), (0, 0)]
    alone = features_for(today[:1], history_rows=history_rows)  # without person codes nothing links
    assert alone[today[0]]["person_address"] == 0


def test_no_synthetic_attack_sits_on_a_network_of_the_victims_other_identity() -> None:
    """An intruder is not on the networks of the victim's other identities: such a draw is dropped."""
    start = date(2024, 3, 1)
    rows = []
    for d in range(10):
        for p in range(3):  # each person's SSO role at home (and once at .30), its IAM user at .20 until day 9
            sso = f"arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Dev_0a1b2c3d4e5f6a7b/p{p}@example.com"
            rows.append((sso, f"198.51.{p}.{30 if d == 5 else 10}", start + timedelta(days=d)))
            rows.append(
                (
                    f"arn:aws:iam::111122223333:user/p{p}",
                    f"198.51.{p}.{30 if d == 9 else 20}",
                    start + timedelta(days=d),
                )
            )
    entity, ip, day = zip(*rows, strict=True)
    window = pa.table(
        {
            "entity": list(entity),
            "source_ip": list(ip),
            "event_count": [1] * len(rows),
            "day": pa.array(day, pa.date32()),
        }
    )
    frame = Frame.build(window, NETWORKS)
    model = LocalBackend().train(window, IPInsightsParams(vector_dim=8, epochs=1), start + timedelta(days=10))
    scorer = LocalBackend().scorer(model, lambda: window)
    columns = [FEATURES.index("person_address"), FEATURES.index("person_24")]
    ordinal = pa.scalar(start + timedelta(days=9), pa.date32()).cast(pa.int32()).as_py()
    fold = _validation_day(frame, NETWORKS, scorer, ordinal, 0, frame.history(ordinal))
    assert fold is not None and fold.suspicious.any()
    assert (fold.x[fold.suspicious][:, columns] == 0).all()
    assert (fold.x[~fold.suspicious][:, columns[0]] > 0).sum() == 3  # each IAM user on its SSO role's address


def test_a_synthetic_intruder_does_what_another_identity_did_and_sometimes_copies_the_victims_user_agent() -> None:
    """API calls and volume from another identity's pair of the day; the user agent from that pair
    or, for about half, from one of the victim's own pairs (a header a careful intruder copies)."""
    identities, per_identity = 40, 3
    day_entity = np.repeat(np.arange(identities), per_identity)  # pair k: identity k // 3
    pairs = np.arange(len(day_entity))
    on = pairs + 1000  # the day's rows in the window
    rows = 1000 + len(pairs)
    # each pair one API call and one user agent, both coded by the pair's identity; events by the pair
    owner = np.full(rows, -1)
    owner[on] = day_entity
    behaviour = Behaviour(on, 100 + day_entity, on, 500 + day_entity, np.arange(rows, dtype=float))
    victims = np.repeat(np.arange(identities), 50)
    out = _intruder_behaviour(behaviour, on, day_entity, victims, np.random.default_rng(7))
    assert (out.action_pair == np.arange(len(victims))).all() and (out.agent_pair == out.action_pair).all()
    donor = out.action_code - 100
    assert (donor != victims).all()  # someone else's calls
    assert (owner[out.events.astype(np.int64)] == donor).all()  # and that same pair's volume
    agent = out.agent_code - 500
    copied = agent == victims
    assert ((agent == donor) | copied).all()
    assert abs(copied.mean() - COPIED_USER_AGENT) < 0.05


def test_behaviour_take_gives_each_picked_pairs_calls_and_agents_in_order() -> None:
    """``Behaviour.take``: the picked pairs' API calls and user agents, renumbered 0..k-1, each pair's
    in their recorded order, whether the items come grouped by pair or not, rows picked twice or not
    at all, and the same behaviour taken from again (its grouping is kept)."""
    rng = np.random.default_rng(3)
    pairs = 60
    action_pair = np.sort(rng.integers(0, pairs, 200))  # as list columns flatten: grouped by pair
    agent_pair = rng.integers(0, pairs, 90)  # not grouped
    behaviour = Behaviour(action_pair, np.arange(200) + 1000, agent_pair, np.arange(90) + 5000, rng.random(pairs))

    def plain(pair: np.ndarray, code: np.ndarray, rows: np.ndarray) -> list[tuple[int, int]]:
        return [(k, int(c)) for k, row in enumerate(rows) for p, c in zip(pair, code, strict=True) if p == row]

    for rows in (rng.integers(0, pairs, 80), np.arange(pairs)[::-1], np.zeros(0, np.int64)):
        out = behaviour.take(rows)
        assert list(zip(out.action_pair.tolist(), out.action_code.tolist(), strict=True)) == plain(
            action_pair, behaviour.action_code, rows
        )
        assert list(zip(out.agent_pair.tolist(), out.agent_code.tolist(), strict=True)) == plain(
            agent_pair, behaviour.agent_code, rows
        )
        assert (out.events == behaviour.events[rows]).all()
    empty = Behaviour.empty(5).take(np.array([4, 0, 4]))
    assert len(empty.action_pair) == len(empty.agent_code) == 0 and (empty.events == 1).all()


def test_named_evidence_is_each_rows_strongest() -> None:
    """The lists ``daily_insights`` keeps: per row, the contributions past the bar, largest first
    (ties: the earlier feature)."""
    rng = np.random.default_rng(0)
    x = np.asfortranarray(np.round(rng.normal(0, 1, (300, len(FEATURES))), 1))  # rounded: many ties
    weights = np.round(rng.normal(0, 1, len(FEATURES)), 1)
    weights[3] = 0.0

    def strongest(row: np.ndarray, k: int) -> list[str]:
        ranked = [i for i in np.argsort(-row, kind="stable") if row[i] >= NAMED_EVIDENCE][:k]
        return [FEATURES[i] for i in ranked]

    support, against = Judge(weights, 0.0).of_matrix(x).named()
    assert support.to_pylist() == [strongest(row * weights, 4) for row in x]
    assert against.to_pylist() == [strongest(-(row * weights), 3) for row in x]
    assert any(len(v) == 4 for v in support.to_pylist()) and any(len(v) == 3 for v in against.to_pylist())


def test_a_days_addresses_are_coded_by_what_they_parse_to() -> None:
    """``coded_addresses``: one book entry per distinct address, IPv4 and IPv6 mixed, each row's
    code pointing at its own address, as the addresses' text dictionary gives them."""
    texts = ["198.51.100.7", "2001:db8::1", "3.80.1.2", "198.51.100.7", "2001:db8::1", "10.0.0.1", "2001:db8::2"]
    column = pa.chunked_array([pa.array(texts[:3]), pa.array(texts[3:])])
    code, book = coded_addresses(column)
    assert book.owner is None  # (looked up apart: the day's owners, on the other core)
    book = book.with_owners(NETWORKS)
    assert len(book) == 5 and code[0] == code[3] and code[1] == code[4]
    reference = address_book(texts, NETWORKS)
    for row in range(len(texts)):
        for got, expected in ((book.is6, reference.is6), (book.hi, reference.hi), (book.lo, reference.lo)):
            assert got[code[row]] == expected[row]
        assert all(k[code[row]] == r[row] for k, r in zip(book.level_keys, reference.level_keys, strict=True))
        for field in fields(book.owner):
            assert getattr(book.owner, field.name)[code[row]] == getattr(reference.owner, field.name)[row], field.name
    empty_code, empty = coded_addresses(pa.array([], pa.string()))
    assert len(empty_code) == 0 and len(empty) == 0
    with pytest.raises(ValueError, match="not IP addresses"):
        coded_addresses(pa.array(["198.51.100.7", "not-an-address"]))
    with pytest.raises(ValueError, match="1 rows have no address"):
        coded_addresses(pa.array(["198.51.100.7", None]))


def test_synthetic_addresses_read_back_as_themselves() -> None:
    """The texts IP Insights scores the synthetic pairs by: IPv4 as ``ipaddress`` writes it, IPv6
    text that parses back to the same address."""
    rng = np.random.default_rng(5)
    n = 2000
    is6 = rng.random(n) < 0.3
    hi = np.where(is6, rng.integers(0, 1 << 63, n, dtype=np.uint64) * np.uint64(2), 0).astype(np.uint64)
    lo = np.where(is6, rng.integers(0, 1 << 63, n, dtype=np.uint64), rng.integers(0, 1 << 32, n)).astype(np.uint64)
    lo[:3], hi[:3], is6[:3] = [0, 1, 2**32 - 1], 0, False  # 0.0.0.0, 0.0.0.1, 255.255.255.255
    negatives = Negatives(np.zeros(n, np.int64), is6, hi, lo, np.zeros(n, np.int64))
    texts = negatives.texts().to_pylist()
    parsed = parse_ips(texts)
    assert np.array_equal(parsed[0], is6) and np.array_equal(parsed[1], hi) and np.array_equal(parsed[2], lo)
    assert [t for t, v6 in zip(texts, is6, strict=True) if not v6][:3] == ["0.0.0.0", "0.0.0.1", "255.255.255.255"]
    assert all(t == str(ipaddress.IPv4Address(int(v))) for t, v, v6 in zip(texts, lo, is6, strict=True) if not v6)
