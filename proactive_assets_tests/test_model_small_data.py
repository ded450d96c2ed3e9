"""The model on a small organisation's two weeks: enough steps, cross-validation, unseen prefixes."""

import numpy as np
import pytest

from proactive_assets.core.model import IPInsightsParams, train_ip_insights
from proactive_assets.core.model.training import _schedule


def _small_org(seed: int, days: int = 14) -> tuple[list, list, list, list, list]:
    """A demo-sized company: 20 people (some with IPv6 homes) with 1-3 roles each, 3 shared offices.

    About 370 (entity, ip, day) rows over two weeks, as in the pipeline's training window for a
    small organisation: far fewer than one default mini-batch.
    """
    rng = np.random.default_rng(seed)

    def net() -> str:
        return ".".join(str(int(x)) for x in (rng.integers(11, 200), *rng.integers(0, 256, 2)))

    offices = [[f"{net()}.{h}" for h in rng.choice(np.arange(2, 250), 4, replace=False)] for _ in range(3)]
    people = []
    for p in range(20):
        home = net()
        homes = [f"{home}.{h}" for h in rng.choice(np.arange(2, 250), 2, replace=False)]
        v6 = None
        if p % 5 == 0:
            v6 = "2a02:" + ":".join(f"{int(x):x}" for x in rng.integers(1, 0xFFFF, 3))
        roles = [f"arn:aws:sts::111122223333:assumed-role/{r}/person{p}" for r in ("ReadOnly", "Power", "Admin")]
        people.append((p % 3, homes, v6, roles[: 1 + p % 3]))
    entities, ips, counts = [], [], []
    for day in range(days):
        for office, homes, v6, roles in people:
            for role in rng.choice(roles, size=min(len(roles), 1 + int(rng.integers(0, 2))), replace=False):
                if day % 7 < 5 and rng.random() < 0.7:
                    ip = str(rng.choice(offices[office]))
                elif v6 is not None and rng.random() < 0.8:  # a new privacy address every time
                    ip = f"{v6}:" + ":".join(f"{int(x):x}" for x in rng.integers(1, 0xFFFF, 4))
                else:
                    ip = str(rng.choice(homes))
                entities.append(str(role))
                ips.append(ip)
                counts.append(int(rng.integers(1, 60)))
    return entities, ips, counts, offices, people


@pytest.fixture(scope="module")
def small_org():
    return _small_org(1)


@pytest.fixture(scope="module")
def small_model(small_org):
    entities, ips, counts, _, _ = small_org
    return train_ip_insights(entities, ips, counts, IPInsightsParams())


def _roles(people: list) -> list[str]:
    return [role for _, _, _, roles in people for role in roles]


def _strangers(n: int, seed: int) -> list[str]:
    """Public IPv4 addresses in /8s the small organisation never uses."""
    rng = np.random.default_rng(seed)
    return [".".join(str(int(x)) for x in (rng.integers(200, 224), *rng.integers(0, 256, 3))) for _ in range(n)]


def test_small_training_set_is_trained_and_validated_well(small_model):
    """A few hundred rows: enough optimizer steps, every pair validated once, validation AUC >= 0.85."""
    meta = small_model.metadata
    assert 300 <= meta["training_rows"] <= 600
    assert meta["optimizer_steps"] >= IPInsightsParams().min_steps
    assert meta["validation"] == "5-fold cross-validation"
    assert meta["training_pairs"] >= meta["validation_pairs"] >= 0.8 * meta["training_pairs"]
    assert meta["validation_auc"] >= 0.85
    assert meta["calibration"]["negative_weight"] < 1  # several random negatives per held-out pair


def test_never_seen_network_is_clearly_suspicious_on_small_data(small_org, small_model):
    """Unseen prefixes have learnt vectors: a never-seen network scores high for everyone, above
    a colleague's office (the entity's vector may point away from it, but people here use it),
    while a new host in the identity's own office stays normal."""
    entities, ips, counts, offices, people = small_org
    roles = _roles(people)
    strangers = _strangers(len(roles), seed=5)
    own_office_new_host = [offices[o][0].rsplit(".", 1)[0] + ".251" for o, _, _, rs in people for _ in rs]
    colleagues_office = [offices[(o + 1) % 3][0] for o, _, _, rs in people for _ in rs]
    stranger = small_model.score(roles, strangers)
    colleague = small_model.score(roles, colleagues_office)
    new_host = small_model.score(roles, own_office_new_host)
    assert np.median(stranger.insight) > 0.9 and np.median(stranger.dot_product) < -3
    assert (stranger.insight > colleague.insight).mean() >= 0.85
    assert (new_host.insight < stranger.insight).all() and np.median(new_host.insight) < 0.2
    # every never-seen address gets the same (learnt, non-zero) vector: the unseen vectors' sum
    vectors = small_model.ip_vectors(strangers[:3])
    np.testing.assert_array_equal(vectors[0], vectors[1])
    assert np.abs(vectors[0]).sum() > 0
    # with zero vectors for unseen prefixes (the older design) a never-seen network sits at dot
    # product 0, no more suspicious than a colleague's office
    zero = train_ip_insights(entities, ips, counts, IPInsightsParams(unseen_prefix_vectors=False))
    assert not zero.ip_vectors(strangers[:3]).any()
    assert (zero.score(roles, strangers).insight > zero.score(roles, colleagues_office).insight).mean() < 0.5


def test_ipv4_only_identity_on_an_unknown_ipv6_network_is_suspicious(small_org, small_model):
    """Random negatives are sometimes of the other IP version, so IPv4-only identities learn it too."""
    _, _, _, _, people = small_org
    v4_only = [role for _, _, v6, roles in people if v6 is None for role in roles]
    rng = np.random.default_rng(3)
    unknown_v6 = ["2c0f:" + ":".join(f"{int(x):x}" for x in rng.integers(1, 0xFFFF, 3)) + "::1" for _ in v4_only]
    result = small_model.score(v4_only, unknown_v6)
    assert result.entity_known.all()
    assert (result.insight > 0.8).mean() >= 0.9


def test_training_schedule_gives_small_data_enough_steps():
    params = IPInsightsParams()
    assert params.min_steps >= 100
    for rows in (1, 50, 367, 600, 5_000, 20_000):
        batch, passes = _schedule(params, rows)
        assert params.epochs * -(-rows * passes // batch) >= params.min_steps
        assert batch >= min(rows, 128)
    # data with enough steps of their own are trained exactly as configured
    assert _schedule(params, 2_500_000) == (params.mini_batch_size, 1)
    assert _schedule(IPInsightsParams(min_steps=0), 600) == (600, 1)
