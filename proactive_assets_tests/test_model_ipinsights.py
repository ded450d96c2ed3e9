"""The local IP Insights model: it learns, is deterministic, calibrated, and round-trips."""

import base64
import io
import ipaddress
import zipfile
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from proactive_assets.core import scoring
from proactive_assets.core.ipnet import parse_ips
from proactive_assets.core.model import (
    IPInsightsModel,
    IPInsightsParams,
    calibrated_insight,
    fit_platt,
    roc_auc,
    train_ip_insights,
)
from proactive_assets.core.model.ipinsights import entity_hash64
from proactive_assets.core.model.prefixes import PrefixLayout

PARAMS = IPInsightsParams(epochs=8, mini_batch_size=512, vector_dim=32, seed=3)


def _home_work_logins(users: int, seed: int, ipv6_users: int = 0) -> tuple[list, list, list, dict]:
    """Users with a home and a work /24 (or /64 for IPv6 users); rows are (entity, ip, count)."""
    rng = np.random.default_rng(seed)
    entities, ips, counts, nets = [], [], [], {}
    for u in range(users):
        name = f"arn:aws:iam::111122223333:user/u{u}"
        if u < ipv6_users:
            home = f"2001:db8:{u:x}:1::"
            work = f"2a00:1450:{u:x}:2::"
            nets[name] = ("v6", home, work)
        else:
            home = ".".join(str(x) for x in rng.integers(1, 224, 3))
            work = ".".join(str(x) for x in rng.integers(1, 224, 3))
            nets[name] = ("v4", home, work)
        for _ in range(int(rng.integers(15, 40))):
            net = home if rng.random() < 0.6 else work
            host = int(rng.integers(1, 200))
            ip = f"{net}{host:x}" if u < ipv6_users else f"{net}.{host}"
            entities.append(name)
            ips.append(ip)
            counts.append(int(rng.integers(1, 20)))
    return entities, ips, counts, nets


@pytest.fixture(scope="module")
def data():
    return _home_work_logins(160, seed=11, ipv6_users=20)


@pytest.fixture(scope="module")
def model(data):
    entities, ips, counts, _ = data
    return train_ip_insights(entities, ips, counts, PARAMS)


def _random_v4(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [".".join(str(x) for x in row) for row in rng.integers(1, 224, (n, 4))]


def test_learns_held_out_pairs(model):
    meta = model.metadata
    assert meta["validation_pairs"] > 100
    assert meta["validation_auc"] > 0.95
    assert meta["validation_shuffled_auc"] > 0.8
    assert meta["epoch_losses"][-1] < meta["epoch_losses"][0]
    roc = meta["roc"]
    assert roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0
    assert len(roc["fpr"]) == len(roc["tpr"]) <= 60


def test_new_host_in_known_slash24_is_less_suspicious_than_a_never_seen_network(model, data):
    _, _, _, nets = data
    v4 = [(name, home) for name, (kind, home, _) in nets.items() if kind == "v4"]
    names = [name for name, _ in v4]
    new_host = [f"{home}.250" for _, home in v4]  # hosts 1..199 were used in training
    stranger = _random_v4(len(v4), seed=5)
    inside = model.score(names, new_host)
    outside = model.score(names, stranger)
    assert inside.entity_known.all() and outside.entity_known.all()
    assert (inside.insight < outside.insight).mean() > 0.95
    assert np.median(inside.insight) < 0.3 < 0.7 < np.median(outside.insight)
    assert roc_auc(inside.dot_product, outside.dot_product) > 0.97


def test_ipv6_pairs_train_and_score(model, data):
    _, _, _, nets = data
    v6 = [(name, home) for name, (kind, home, _) in nets.items() if kind == "v6"]
    names = [name for name, _ in v6]
    new_host = [f"{home}fff" for _, home in v6]
    rng = np.random.default_rng(8)
    stranger = [str(ipaddress.IPv6Address(int(x) << 64 | 5)) for x in rng.integers(1 << 61, 1 << 62, len(v6))]
    inside = model.score(names, new_host)
    outside = model.score(names, stranger)
    assert np.isfinite(inside.dot_product).all() and np.isfinite(outside.dot_product).all()
    assert (inside.insight < outside.insight).mean() > 0.9
    mixed = model.score([names[0], names[0]], [new_host[0], "10.1.2.3"])
    assert mixed.dot_product.shape == (2,)


def test_unknown_entities_score_and_are_flagged(model, data):
    entities, ips, _, _ = data
    result = model.score(["arn:aws:iam::999999999999:user/nobody", entities[0], "x"], [ips[0], ips[0], "8.8.8.8"])
    assert result.entity_known.tolist() == [False, True, False]
    assert np.isfinite(result.dot_product).all()
    assert ((result.insight >= 0) & (result.insight <= 1)).all()
    assert model.entity_known([entities[0], "nobody"]).tolist() == [True, False]


def test_unknown_entities_get_a_population_prior():
    """A new identity on the network everybody uses looks normal; on a random network it does not."""
    entities, ips, counts, _ = _home_work_logins(60, seed=6)
    rng = np.random.default_rng(1)
    for u in range(60):
        for _ in range(5):
            entities.append(f"arn:aws:iam::111122223333:user/u{u}")
            ips.append(f"198.51.100.{int(rng.integers(1, 250))}")
            counts.append(3)
    model = train_ip_insights(entities, ips, counts, IPInsightsParams(epochs=5, mini_batch_size=256, vector_dim=16))
    new_people = [f"arn:aws:iam::111122223333:user/new{i}" for i in range(50)]
    vpn = model.score(new_people, [f"198.51.100.{i}" for i in range(200, 250)])
    elsewhere = model.score(new_people, _random_v4(50, seed=2))
    assert not vpn.entity_known.any()
    assert np.median(vpn.insight) < np.median(elsewhere.insight)
    assert (vpn.insight < elsewhere.insight).mean() > 0.9


def test_deterministic_for_a_seed_and_independent_of_row_order():
    entities, ips, counts, _ = _home_work_logins(40, seed=2)
    params = IPInsightsParams(epochs=3, mini_batch_size=256, vector_dim=16, seed=9)
    first = train_ip_insights(entities, ips, counts, params)
    order = np.random.default_rng(0).permutation(len(entities))
    second = train_ip_insights(
        np.array(entities, dtype=object)[order], np.array(ips, dtype=object)[order], np.array(counts)[order], params
    )
    assert first.version == second.version
    probe = _random_v4(50, seed=1) + ips[:50]
    who = entities[:100]
    np.testing.assert_array_equal(first.dot_product(who, probe), second.dot_product(who, probe))
    other = train_ip_insights(entities, ips, counts, IPInsightsParams(epochs=3, mini_batch_size=256, vector_dim=16))
    assert other.version != first.version


def test_artifact_round_trip(model, data):
    entities, ips, _, _ = data
    blob = model.to_bytes()
    loaded = IPInsightsModel.from_bytes(blob)
    assert loaded.version == model.version and loaded.version.startswith("ipi-")
    assert loaded.metadata == model.metadata
    assert loaded.params == model.params
    probe_ips = ips[:200] + _random_v4(200, seed=4)
    probe_entities = entities[:200] + ["unknown"] * 200
    a, b = model.score(probe_entities, probe_ips), loaded.score(probe_entities, probe_ips)
    np.testing.assert_array_equal(a.dot_product, b.dot_product)
    np.testing.assert_array_equal(a.insight, b.insight)
    np.testing.assert_array_equal(a.entity_known, b.entity_known)
    assert loaded.to_bytes() == blob
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:  # no wall-clock timestamps: reproducible bytes
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    meta = model.metadata
    for key in ("version", "backend", "hyperparameters", "training_rows", "training_seconds", "validation_auc", "roc"):
        assert key in meta
    assert meta["backend"] == "local"
    assert meta["calibration"]["slope"] < 0
    with pytest.raises(ValueError):
        tampered = IPInsightsModel(
            params=model.params,
            entity_hashes=model.entity_hashes,
            entity_buckets=model.entity_buckets,
            entity_emb=model.entity_emb * 2,
            ip_buckets=model.ip_buckets,
            ip_emb=model.ip_emb,
            enc_w=model.enc_w,
            enc_b=model.enc_b,
            calibration=model.calibration,
            metadata=model.metadata,
        )
        IPInsightsModel.from_bytes(_with_metadata_version(tampered, model.version))


def test_an_artifact_is_read_in_place_and_one_written_unaligned_reads_the_same(model, data):
    """Arrays are views of the artifact's bytes (no copy each scored day); an artifact written before
    its members were aligned (zip64 headers, data at any offset) loads to the same model."""
    blob = model.to_bytes()
    loaded = IPInsightsModel.from_bytes(blob)
    assert not loaded.ip_emb.flags.owndata and not loaded.ip_emb.flags.writeable
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        arrays = {info.filename: archive.read(info) for info in archive.infolist()}
    unaligned = io.BytesIO()
    with zipfile.ZipFile(unaligned, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, body in arrays.items():
            with archive.open(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), "w", force_zip64=True) as fh:
                fh.write(body)
    old = IPInsightsModel.from_bytes(unaligned.getvalue())
    assert old.version == loaded.version and old.metadata == loaded.metadata
    entities, ips, _, _ = data
    np.testing.assert_array_equal(
        old.score(entities[:50], ips[:50]).insight, loaded.score(entities[:50], ips[:50]).insight
    )
    with pytest.raises(ValueError, match="not an IP Insights artifact"):
        IPInsightsModel.from_bytes(b"not a zip archive")


def _with_metadata_version(model: IPInsightsModel, version: str) -> bytes:
    model.metadata["version"] = version
    return model.to_bytes()


def test_calibration_is_in_unit_interval_and_decreasing(model):
    dots = np.linspace(-60, 60, 2001)
    insight = model.insight(dots)
    assert insight.dtype == np.float32
    assert ((insight >= 0) & (insight <= 1)).all()
    assert (np.diff(insight.astype(np.float64)) <= 0).all()
    assert insight[0] > 0.99 and insight[-1] < 0.01
    # the SageMaker backend's calibration function gives the same values
    np.testing.assert_array_equal(calibrated_insight(dots, *model.calibration).astype(np.float32), insight)
    assert np.isnan(calibrated_insight([np.nan], *model.calibration)).all()
    slope, _ = fit_platt(np.r_[np.full(50, 5.0), np.full(50, -5.0)], np.r_[np.zeros(50, bool), np.ones(50, bool)])
    assert slope < 0
    slope, intercept = fit_platt(np.zeros(10), np.r_[np.zeros(5, bool), np.ones(5, bool)])  # no signal
    assert slope < 0 and abs(intercept) < 1e-9


def test_scores_are_in_input_order_and_accept_pandas(model, data):
    entities, ips, _, _ = data
    idx = np.arange(300)[::-1]
    plain = model.dot_product([entities[i] for i in idx], [ips[i] for i in idx])
    as_series = model.dot_product(pd.Series(entities).iloc[idx], pd.Series(ips).iloc[idx])
    as_categories = model.dot_product(pd.Categorical([entities[i] for i in idx]), pd.Categorical([ips[i] for i in idx]))
    one_by_one = np.array([model.dot_product([entities[i]], [ips[i]])[0] for i in idx[:20]])
    np.testing.assert_array_equal(plain, as_series)
    np.testing.assert_array_equal(plain, as_categories)
    np.testing.assert_array_equal(plain[:20], one_by_one)
    as_arrow = model.dot_product(
        pa.array([entities[i] for i in idx]).dictionary_encode(), pa.array([ips[i] for i in idx])
    )
    np.testing.assert_array_equal(plain, as_arrow)
    assert model.score([], []).dot_product.shape == (0,)


def test_roc_auc_ranks_and_ties():
    assert roc_auc([3, 4], [1, 2]) == 1.0
    assert roc_auc([1, 2], [3, 4]) == 0.0
    assert roc_auc([1, 1], [1, 1]) == 0.5
    assert roc_auc([2, 1], [1, 0]) == pytest.approx(0.875)
    assert np.isnan(roc_auc([], [1.0]))
    rng = np.random.default_rng(3)  # every pair compared, ties included (scores rounded to a few values)
    for _ in range(50):
        pos, neg = (np.round(rng.normal(shift, 1, rng.integers(1, 60)), 1) for shift in (0.5, 0.0))
        pairs = pos[:, None] - neg[None, :]
        assert roc_auc(pos, neg) == pytest.approx(((pairs > 0) + 0.5 * (pairs == 0)).mean(), abs=1e-12)


def test_params_validation_and_sagemaker_hyperparameters():
    hp = IPInsightsParams().to_sagemaker_hyperparameters()
    assert set(hp) == {
        "num_entity_vectors",
        "vector_dim",
        "epochs",
        "learning_rate",
        "mini_batch_size",
        "num_ip_encoder_layers",
        "random_negative_sampling_rate",
        "shuffled_negative_sampling_rate",
        "weight_decay",
    }
    assert all(isinstance(v, str) for v in hp.values())
    assert float(hp["learning_rate"]) == IPInsightsParams().learning_rate
    assert IPInsightsParams.from_dict(IPInsightsParams().to_dict()) == IPInsightsParams()
    with pytest.raises(ValueError):
        IPInsightsParams(random_negative_sampling_rate=0, shuffled_negative_sampling_rate=0)
    with pytest.raises(ValueError):
        IPInsightsParams(ipv4_prefixes=(24, 16))
    with pytest.raises(ValueError):
        train_ip_insights([], [])
    with pytest.raises(ValueError):
        train_ip_insights(["a"], ["not-an-ip"])


def test_encoder_layers_and_no_validation_train():
    entities, ips, counts, _ = _home_work_logins(30, seed=4)
    params = IPInsightsParams(epochs=4, mini_batch_size=256, vector_dim=16, num_ip_encoder_layers=2)
    model = train_ip_insights(entities, ips, counts, params)
    assert model.enc_w.shape == (2, 16, 16)
    assert model.metadata["validation_auc"] > 0.8
    loaded = IPInsightsModel.from_bytes(model.to_bytes())
    np.testing.assert_array_equal(
        model.dot_product(entities[:50], ips[:50]), loaded.dot_product(entities[:50], ips[:50])
    )
    bare = train_ip_insights(entities, ips, params=IPInsightsParams(epochs=1, vector_dim=8, validation_fraction=0.0))
    assert bare.metadata["validation_auc"] is None
    assert bare.calibration == (-1.0, 0.0)


def test_hashes_are_stable_across_processes_and_versions():
    """Golden values: a change here silently re-maps every stored model's entities and prefixes."""
    assert entity_hash64(["arn:aws:iam::111122223333:user/alice"]).tolist() == [15303366876413608817]
    layout = PrefixLayout(IPInsightsParams())
    buckets = layout.buckets(*parse_ips(np.array(["203.0.113.7", "2001:db8::1"], dtype=object)))
    assert buckets.tolist() == [
        [203, 598273],
        [52224, 739275],
        [186627, 1070662],
        [572748, 1244853],
        [-1, 1508261],
    ]


# An artifact written before unseen-prefix vectors, prefix dropout, min_steps and cross-validation
# existed (vector_dim 2, four users): it must keep loading, matching its version, and scoring the same.
_LEGACY_ARTIFACT = (
    "UEsDBC0AAAAIAAAAIQC6AL4P//////////8RABQAbWV0YWRhdGFfanNvbi5ucHkBABAA+AMAAAAAAAAAAgAAAAAAAJ1TwY7aMBDd"
    "XvsVVi6AFFASIJvlA3pr1UsPVbWyjD0hVh3bsg0spXxFf7hjBwTZQw/NJZk3b2beGzt/vnz7/PX7h6fD03kiwHM32ZDJ7305ycmk"
    "NS44pqlxAiL+iSkPiPuOWcB42jRNPsvJhfz38/Gccabk1rEgjc425Me8XBQ5KRbFa04yVNCzgHCJQQ+BCRYYhudsy/hP0AK/M2Ww"
    "RYaEcadz1soQQNAUZdpoIFNtyAFZIpFI7DbbEC93vZFiOhcmzGIjqQM4DjZOLqKcOLszaZpVLIRI8spYQCQKvmAM1vCOKuM9+Gik"
    "WNQvy3L1HH10JwvOMsewDzif1CW+v3qT9rCi1kEr34bqJidlnZNqlZNl9Tow6hEjppdVTlZIrZFWVk3kKWBOS72juAgY9KflsTd6"
    "d04tk0lGVcQn5qWWdMsCWvDyVyxcDwm97ynoIMOJHoAHk8ri7JSRFpPc4P2gip0Ga8U9964CL5MwPdWwQxUHoJ71Vj1ojUI9gLg2"
    "8d2+bRWe4D8LHly1jvHr6Q/HNsynQvbRKwJHkLsuUAGcnWI9zIv1HbbmCC4Vry9p5RT6LQiRJppj8oGbzvCvkGnHaTEynccIlzZx"
    "q0fstvIxems7Aj1wo4UfbCSBDybZnmNC75Ua47f+g2/nhz2gCTnfNqu2rquXkuP7uSyyy+UvUEsDBC0AAAAIAAAAIQABBmel////"
    "//////8RABQAZW50aXR5X2hhc2hlcy5ucHkBABAAoAAAAAAAAABmAAAAAAAAAJvsF+obEMnIUMZQrZ6SWpxcpG6loG5TaqGuo6Ce"
    "ll9UUpSYF59flJIKEndLzClOBYoXZyQWpAL5GiY6mjoKtQoUAK4vtg3taRvadJqSf+vHrvnpWDt97YH22y/3z9e88f3cikfPAVBL"
    "AwQtAAAACAAAACEA20d52P//////////EgAUAGVudGl0eV9idWNrZXRzLm5weQEAEACgAAAAAAAAAFAAAAAAAAAAm+wX6hsQychQ"
    "xlCtnpJanFykbqWgbpNpoa6joJ6WX1RSlJgXn1+UkgoSd0vMKU4FihdnJBakAvkaJjqaOgq1ChQALiYGCGCB0rxQmh9KAwBQSwME"
    "LQAAAAgAAAAhAGntaiH//////////w4AFABlbnRpdHlfZW1iLm5weQEAEACgAAAAAAAAAGgAAAAAAAAAm+wX6hsQychQxlCtnpJa"
    "nFykbqWgbpNmoq6joJ6WX1RSlJgXn1+UkgoSd0vMKU4FihdnJBakAvkaJjoKRpo6CrUKZAOuaRoX9xfbi+wT+RW3/95/xv2L3u/f"
    "d+VK1L6KN/120zSs7AFQSwMELQAAAAgAAAAhAIWERon//////////w4AFABpcF9idWNrZXRzLm5weQEAEADwAAAAAAAAAG0AAAAA"
    "AAAAm+wX6hsQychQxlCtnpJanFykbqWgbpNpoa6joJ6WX1RSlJgXn1+UkgoSd0vMKU4FihdnJBakAvkahiY6mjoKtQrkA65jDBBg"
    "fBzKYGQEUxxQmgdK80FpASgtBKVFoLQolBaD0hJQWgpKy0BpAFBLAwQtAAAACAAAACEAWUXmDf//////////CgAUAGlwX2VtYi5u"
    "cHkBABAA+AAAAAAAAACKAAAAAAAAAJvsF+obEMnIUMZQrZ6SWpxcpG6loG6TZqKuo6Cell9UUpSYF59flJIKEndLzClOBYoXZyQW"
    "pAL5GoamOgpGmjoKtQrkAi4GKJBzf7lTPTzeCkZzXle2YQdiDiC+eQ3M3sMGxCD6D5QPpPf8A7IZgWqYgJgBKMYKpEH4N1DuAxDD"
    "aJg8kG8D5NsAAFBLAwQtAAAACAAAACEAY3PfZP//////////CQAUAGVuY193Lm5weQEAEACAAAAAAAAAAEgAAAAAAAAAm+wX6hsQ"
    "ychQxlCtnpJanFykbqWgbpNmoq6joJ6WX1RSlJgXn1+UkgoSd0vMKU4FihdnJBakAvkaBjoKRkCkqaNQq0Ae4AIAUEsDBC0AAAAI"
    "AAAAIQA2RWf4//////////8JABQAZW5jX2IubnB5AQAQAIAAAAAAAAAARgAAAAAAAACb7BfqGxDJyFDGUK2eklqcXKRupaBuk2ai"
    "rqOgnpZfVFKUmBefX5SSChJ3S8wpTgWKF2ckFqQC+RoGOgpGmjoKtQpkAy4AUEsBAi0DLQAAAAgAAAAhALoAvg8AAgAA+AMAABEA"
    "AAAAAAAAAAAAAIABAAAAAG1ldGFkYXRhX2pzb24ubnB5UEsBAi0DLQAAAAgAAAAhAAEGZ6VmAAAAoAAAABEAAAAAAAAAAAAAAIAB"
    "QwIAAGVudGl0eV9oYXNoZXMubnB5UEsBAi0DLQAAAAgAAAAhANtHedhQAAAAoAAAABIAAAAAAAAAAAAAAIAB7AIAAGVudGl0eV9i"
    "dWNrZXRzLm5weVBLAQItAy0AAAAIAAAAIQBp7WohaAAAAKAAAAAOAAAAAAAAAAAAAACAAYADAABlbnRpdHlfZW1iLm5weVBLAQIt"
    "Ay0AAAAIAAAAIQCFhEaJbQAAAPAAAAAOAAAAAAAAAAAAAACAASgEAABpcF9idWNrZXRzLm5weVBLAQItAy0AAAAIAAAAIQBZReYN"
    "igAAAPgAAAAKAAAAAAAAAAAAAACAAdUEAABpcF9lbWIubnB5UEsBAi0DLQAAAAgAAAAhAGNz32RIAAAAgAAAAAkAAAAAAAAAAAAA"
    "AIABmwUAAGVuY193Lm5weVBLAQItAy0AAAAIAAAAIQA2RWf4RgAAAIAAAAAJAAAAAAAAAAAAAACAAR4GAABlbmNfYi5ucHlQSwUG"
    "AAAAAAgACADcAQAAnwYAAAAA"
)


def test_artifact_from_before_the_small_data_settings_loads_and_scores_the_same():
    model = IPInsightsModel.from_bytes(base64.b64decode(_LEGACY_ARTIFACT))
    assert model.version == "ipi-b84f66291c4f6710"
    params = model.params
    assert not params.unseen_prefix_vectors and params.min_steps == 0 and params.cv_folds == 0
    result = model.score(["u0", "u1", "nobody"], ["198.51.0.9", "203.0.113.5", "198.51.1.1"])
    np.testing.assert_allclose(
        result.dot_product, [0.01610020361840725, -0.013788113370537758, 0.014208560809493065], rtol=1e-5
    )
    np.testing.assert_allclose(result.insight, [0.4959750473499298, 0.5034469962120056, 0.49644792079925537], rtol=1e-5)
    assert result.entity_known.tolist() == [True, True, False]
    assert IPInsightsModel.from_bytes(model.to_bytes()).version == model.version


def test_arrow_input_is_checked_like_python_input(model):
    with pytest.raises(ValueError, match="missing values"):
        model.score(pa.array(["a", None]), pa.array(["1.2.3.4", "1.2.3.5"]))
    with pytest.raises(ValueError, match="not IP addresses"):
        model.score(pa.array(["a", "b"]), pa.array(["1.2.3.4", None]))
    with pytest.raises(ValueError, match="not IP addresses"):
        model.score(pa.array(["a", "b"]), pa.array(["1.2.3.4", "ec2.amazonaws.com"]).dictionary_encode())
    with pytest.raises(ValueError, match="2 entities but 1 addresses"):
        model.score(pa.array(["a", "b"]), pa.chunked_array([["1.2.3.4"]]))
    empty = model.score(pa.chunked_array([], pa.string()), pa.array([], pa.string()))
    assert empty.dot_product.shape == empty.insight.shape == (0,)


def test_score_learning_set_scores_the_arrow_columns(model, data):
    """``daily_insights`` hands the learning set's columns to the scorer as they are read."""
    entities, ips, _, _ = data
    buffer = io.BytesIO()
    learning_set = pa.table({"entity": entities, "source_ip": ips, "event_count": np.ones(len(ips), np.int64)})
    pq.write_table(learning_set, buffer, row_group_size=500)
    learning_set = pq.read_table(io.BytesIO(buffer.getvalue()))
    for column in ("event_names", "first_seen", "last_seen", "accounts", "regions", "sources", "source_files"):
        learning_set = learning_set.append_column(column, pa.nulls(learning_set.num_rows))
    seen = []

    def scorer(entity_column: scoring.Column, ip_column: scoring.Column):
        seen.append((type(entity_column), type(ip_column)))
        return model.score(entity_column, ip_column)

    table = scoring.score_learning_set(learning_set, scorer, model.version, date(2024, 6, 1))
    assert seen == [(pa.ChunkedArray, pa.ChunkedArray)]
    expected = model.score(entities, ips)
    assert table.column("entity").to_pylist() == list(entities)  # the learning set's rows, in its order
    assert table.column("source_ip").to_pylist() == list(ips)
    np.testing.assert_array_equal(table.column("dot_product").to_numpy(), expected.dot_product.astype(np.float64))
    np.testing.assert_array_equal(table.column("insight").to_numpy(), expected.insight.astype(np.float64))
    assert table.column("model_version").unique().to_pylist() == [model.version]
    assert table.column("day").type == pa.date32() and table.column("day").unique().to_pylist() == [date(2024, 6, 1)]
    ranked = scoring.riskiest_first(table)
    assert (np.diff(ranked.column("insight").to_numpy()) <= 0).all()
    assert scoring.riskiest_first(table, 10).equals(ranked.slice(0, 10))


def test_a_few_addresses_are_scored_with_the_head_rows_they_use_exactly_as_with_the_whole_table(data) -> None:
    """Scoring a few pairs sums only the head rows they use; the dot products are bit-for-bit those
    of the whole head table, IPv4 and IPv6 alike."""
    entities, ips, counts, _ = data
    model = train_ip_insights(entities, ips, counts, PARAMS)  # its own: the whole table not yet built
    pick = np.random.default_rng(3).choice(len(ips), 300, replace=False)
    few_entities = [entities[i] for i in pick] + ["arn:aws:iam::1:user/nobody"]
    few_ips = [ips[i] for i in pick] + ["2001:db8:ffff::1"]
    assert any(":" in ip for ip in few_ips) and any("." in ip for ip in few_ips)
    few = model.score(few_entities, few_ips)
    vectors = model.ip_vectors(few_ips)
    assert "_head_table" not in model.__dict__
    whole = model._head_table  # built now: what many addresses use
    assert len(whole) == 2 * 65_536
    assert np.array_equal(model.score(few_entities, few_ips).dot_product, few.dot_product)
    assert np.array_equal(model.ip_vectors(few_ips), vectors)
