"""The scoring fast path (pyarrow columns parsed on their bytes, folded head levels, chunked
gathers) against the straightforward computation, one pair at a time."""

import io
import ipaddress
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from proactive_assets.core.ipnet import parse_ips
from proactive_assets.core.model import IPInsightsModel, IPInsightsParams, ipinsights, prefixes
from proactive_assets.core.model.ipinsights import _SCORE_CHUNK, entity_hash64, factorize, pair_dots
from proactive_assets.core.model.prefixes import PrefixLayout
from proactive_assets_tests.sanitized import run_sanitized


def _random_model(params: IPInsightsParams, entities: list[str], ips: list[str], seed: int) -> IPInsightsModel:
    """A model with random weights, trained (as far as it knows) on these entities and addresses."""
    rng = np.random.default_rng(seed)
    layout = PrefixLayout(params)
    hashes = np.unique(entity_hash64(entities))
    entity_buckets = np.unique((hashes % np.uint64(params.num_entity_vectors)).astype(np.int64))
    buckets = layout.buckets(*parse_ips(ips))
    ip_buckets = np.unique(buckets[buckets >= 0])
    first_trained_row = 1 + (layout.n_sections if params.unseen_prefix_vectors else 0)
    dim, layers = params.vector_dim, params.num_ip_encoder_layers
    ip_emb = rng.standard_normal((first_trained_row + len(ip_buckets), dim)).astype(np.float32)
    ip_emb[0] = 0  # the padding row
    return IPInsightsModel(
        params=params,
        entity_hashes=hashes,
        entity_buckets=entity_buckets,
        entity_emb=rng.standard_normal((len(entity_buckets), dim)).astype(np.float32),
        ip_buckets=ip_buckets,
        ip_emb=ip_emb,
        enc_w=(rng.standard_normal((layers, dim, dim)) * 0.3).astype(np.float32),
        enc_b=(rng.standard_normal((layers, dim)) * 0.1).astype(np.float32),
        calibration=(-0.7, 0.2),
    )


def _reference_pair(model: IPInsightsModel, entity: str, ip: str) -> tuple[float, bool]:
    """(dot product, entity known) of one pair the plain way: ``ipaddress``, one bucket per prefix
    level, the level vectors summed in float64, the entity looked up by its hash."""
    text = ip if ":" in ip else ".".join(str(int(part)) for part in ip.split("."))  # leading zeros: decimal
    value = int(ipaddress.ip_address(text))
    bits = (np.array([":" in ip]), np.array([value >> 64], np.uint64), np.array([value & (1 << 64) - 1], np.uint64))
    rows = [model._bucket_to_row[b] for b in PrefixLayout(model.params).buckets(*bits)[:, 0] if b >= 0]
    v = model.ip_emb[rows].astype(np.float64).sum(axis=0)
    for w, b in zip(model.enc_w.astype(np.float64), model.enc_b.astype(np.float64), strict=True):
        v = v + np.tanh(v @ w + b)
    h = entity_hash64([entity])[0]
    known = h in set(model.entity_hashes.tolist())
    if known:
        u = model.entity_emb[np.searchsorted(model.entity_buckets, int(h % np.uint64(model.params.num_entity_vectors)))]
    else:
        u = model.entity_mean
    return float(u.astype(np.float64) @ v), known


def _scoring_probes(seed: int) -> tuple[list[str], list[str], list[str], list[str]]:
    """(training entities, training addresses, probe entities, probe addresses): the probes mix
    trained pairs, new hosts of trained /24s and /64s, never-seen IPv4 and IPv6 networks (long,
    short and compressed IPv6 forms, the shortest and longest IPv4 texts, leading zeros) and
    unknown entities; more probes than one scoring chunk."""
    rng = np.random.default_rng(seed)
    users = [f"arn:aws:iam::111122223333:user/u{u}" for u in range(60)] + ["arn:aws:sts::1:assumed-role/é/ß"]
    nets = [".".join(str(int(x)) for x in rng.integers(1, 224, 3)) for _ in range(40)]
    nets6 = [f"2001:db8:{int(x):x}:{int(y):x}" for x, y in rng.integers(1, 0xFFFF, (15, 2))]
    train_e, train_ip = [], []
    for user in users:
        for _ in range(12):
            train_e.append(user)
            if rng.random() < 0.8:
                train_ip.append(f"{nets[int(rng.integers(len(nets)))]}.{int(rng.integers(1, 200))}")
            else:
                train_ip.append(f"{nets6[int(rng.integers(len(nets6)))]}::{int(rng.integers(1, 0xFFFF)):x}")
    strangers = ["nobody", "arn:aws:iam::999999999999:user/new", ""]
    probe_e, probe_ip = [], []
    while len(probe_e) < _SCORE_CHUNK + 1500:
        kind = int(rng.integers(7))
        i = int(rng.integers(len(train_e)))
        entity = str(rng.choice(strangers)) if rng.random() < 0.1 else train_e[i]
        if kind == 0:
            ip = train_ip[i]
        elif kind == 1:
            ip = f"{nets[int(rng.integers(len(nets)))]}.{int(rng.integers(200, 256))}"
        elif kind == 2:
            ip = ".".join(str(int(x)) for x in rng.integers(0, 256, 4))
        elif kind == 3:
            ip = f"{nets6[int(rng.integers(len(nets6)))]}:{int(rng.integers(1, 0xFFFF)):x}::1"
        elif kind == 4:
            ip = str(ipaddress.IPv6Address(int(rng.integers(1 << 61, 1 << 62)) << 64 | int(rng.integers(1, 1 << 62))))
        elif kind == 5:
            ip = str(rng.choice(["0.0.0.0", "255.255.255.255", "1.2.3.4", "010.001.002.003", "::1", "::", "1::"]))
        else:
            ip = ipaddress.IPv6Address(int(rng.integers(1, 1 << 62)) << 66).exploded
        probe_e.append(entity)
        probe_ip.append(ip)
    return train_e, train_ip, probe_e, probe_ip


def _input_forms(entities: list[str], ips: list[str]) -> dict[str, tuple[Any, Any]]:
    """The same pairs as every kind of input ``score`` takes."""
    n = len(entities)
    buffer = io.BytesIO()
    pq.write_table(pa.table({"entity": entities, "source_ip": ips}), buffer, row_group_size=1000)
    as_parquet = pq.read_table(io.BytesIO(buffer.getvalue()))
    as_parquet_dictionary = pq.read_table(io.BytesIO(buffer.getvalue()), read_dictionary=["entity", "source_ip"])
    assert as_parquet.column("entity").num_chunks > 1

    def split(values: list[str], at: int, encode: bool = False) -> pa.ChunkedArray:
        chunks = [pa.array(values[:at]), pa.array(values[at:])]
        return pa.chunked_array([c.dictionary_encode() for c in chunks] if encode else chunks)

    return {
        "python lists": (entities, ips),
        "numpy object arrays": (np.array(entities, dtype=object), np.array(ips, dtype=object)),
        "pandas Categoricals": (pd.Categorical(entities), pd.Categorical(ips)),
        "arrow string": (pa.array(entities), pa.array(ips)),
        "arrow large_string": (pa.array(entities, pa.large_string()), pa.array(ips, pa.large_string())),
        "arrow string_view": (pa.array(entities, pa.string_view()), pa.array(ips, pa.string_view())),
        "arrow sliced": (pa.array(["x", *entities]).slice(1), pa.array(["::1", *ips, "x"]).slice(1, n)),
        "arrow chunks (different per column)": (split(entities, 1000), split(ips, n - 7)),
        "arrow dictionary": (pa.array(entities).dictionary_encode(), pa.array(ips).dictionary_encode()),
        "arrow chunked dictionaries": (split(entities, 700, True), split(ips, 3000, True)),
        "parquet columns": (as_parquet.column("entity"), as_parquet.column("source_ip")),
        "parquet dictionary columns": (
            as_parquet_dictionary.column("entity"),
            as_parquet_dictionary.column("source_ip"),
        ),
    }


@pytest.mark.parametrize(
    "params",
    [
        IPInsightsParams(vector_dim=8, num_entity_vectors=64, num_ip_vectors=512),  # bucket collisions
        IPInsightsParams(vector_dim=8, num_ip_encoder_layers=1, unseen_prefix_vectors=False),  # legacy unseen rows
        IPInsightsParams(vector_dim=8, ipv4_prefixes=(12, 20, 32), ipv6_prefixes=(32, 64, 128)),  # IPv6: no exact level
        IPInsightsParams(vector_dim=8, ipv4_prefixes=(4, 8, 16), ipv6_prefixes=(8, 16, 64)),  # IPv4: exact levels only
    ],
    ids=["default-prefixes", "encoder-legacy", "ipv4-12-20-32", "ipv4-4-8-16"],
)
def test_fast_scoring_matches_the_pair_by_pair_computation_for_every_input_form(params):
    train_e, train_ip, probe_e, probe_ip = _scoring_probes(seed=4)
    model = _random_model(params, train_e, train_ip, seed=9)
    reference = [_reference_pair(model, e, ip) for e, ip in zip(probe_e, probe_ip, strict=True)]
    ref_dot = np.array([d for d, _ in reference])
    ref_known = np.array([k for _, k in reference])
    assert 0.5 < ref_known.mean() < 1  # known and unknown entities
    slope, intercept = model.calibration
    results = {name: model.score(*given) for name, given in _input_forms(probe_e, probe_ip).items()}
    plain = results.pop("python lists")
    np.testing.assert_allclose(plain.dot_product, ref_dot, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(plain.insight, 1 / (1 + np.exp(-(slope * ref_dot + intercept))), atol=1e-6)
    assert plain.entity_known.tolist() == ref_known.tolist()
    for name, result in results.items():  # bit-for-bit the same whatever the input
        np.testing.assert_array_equal(result.dot_product, plain.dot_product, err_msg=name)
        np.testing.assert_array_equal(result.insight, plain.insight, err_msg=name)
        np.testing.assert_array_equal(result.entity_known, plain.entity_known, err_msg=name)
    # the folded head levels add up in the same order as summing every level's row: same bits
    codes, uniques = factorize(probe_e)
    etable, _ = model._entity_table(uniques)
    levels = model._layout.rows(*parse_ips(probe_ip), model._bucket_to_row)
    level_by_level = pair_dots(etable, codes, model.ip_emb, levels, model.enc_w, model.enc_b)
    np.testing.assert_array_equal(plain.dot_product, level_by_level)
    np.testing.assert_array_equal(model.ip_vectors(pa.array(probe_ip[:50])), model.ip_vectors(probe_ip[:50]))


@pytest.mark.parametrize("seed", [0, 1])
def test_the_compiled_gather_of_embedding_rows_gives_numpys_bits(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``_embedding_rows.gather_sum`` sums each address's rows in numpy's order: the same floats,
    with and without the folded head table, over chunk boundaries and int32 or int64 rows."""
    rng = np.random.default_rng(seed)
    params = IPInsightsParams(vector_dim=24)
    entities = [f"arn:aws:iam::1:user/u{i}" for i in range(40)]
    ips = [str(ipaddress.IPv4Address(int(v))) for v in rng.integers(1 << 24, 1 << 32, 300)]
    ips += [str(ipaddress.IPv6Address(int(v) << 64)) for v in rng.integers(1, 1 << 62, 50)]
    model = _random_model(params, entities, ips, seed)
    n = _SCORE_CHUNK + 300  # more than a chunk
    probe_e = [entities[i] for i in rng.integers(0, len(entities), n)]
    probe_ip = [ips[i] for i in rng.integers(0, len(ips), n)]
    codes, uniques = factorize(probe_e)
    etable, _ = model._entity_table(uniques)
    levels = model._layout.rows(*parse_ips(probe_ip), model._bucket_to_row)
    compiled = [model.score(probe_e, probe_ip).dot_product]
    compiled += [
        pair_dots(etable, codes, model.ip_emb, levels.astype(t), model.enc_w, model.enc_b) for t in (np.int32, np.int64)
    ]
    compiled.append(model.ip_vectors(probe_ip))
    assert ipinsights._embedding_rows is not None
    monkeypatch.setattr(ipinsights, "_embedding_rows", None)
    expected = [
        model.score(probe_e, probe_ip).dot_product,
        pair_dots(etable, codes, model.ip_emb, levels, model.enc_w, model.enc_b),
    ]
    expected.append(model.ip_vectors(probe_ip))
    for got, want in zip(compiled, [expected[0], expected[1], expected[1], expected[2]], strict=True):
        np.testing.assert_array_equal(got, want)


#: Layouts of IPv4's levels for ``ipv4_rows``.
ROW_PARAMS = [
    IPInsightsParams(),  # /8 and /16 folded into the head, /24 and /32 hashed
    IPInsightsParams(ipv4_prefixes=(12, 20, 32), num_ip_vectors=1000),  # a head of /12; a bucket count not 2**k
    IPInsightsParams(ipv4_prefixes=(24, 28), num_ip_vectors=4096),  # no exact level: no head
    IPInsightsParams(ipv4_prefixes=(8, 16), unseen_prefix_vectors=False),  # all in the head (legacy rows)
]


@pytest.mark.parametrize("params", ROW_PARAMS)
def test_the_compiled_ipv4_rows_are_numpys(params: IPInsightsParams, monkeypatch: pytest.MonkeyPatch) -> None:
    """``_embedding_rows.ipv4_rows`` gives an IPv4 address the head row and embedding rows numpy gives it,
    for trained and untrained prefixes and both ends of the address space."""
    rng = np.random.default_rng(7)
    ips = [str(ipaddress.IPv4Address(int(v))) for v in rng.integers(0, 1 << 32, 400)]
    model = _random_model(params, [f"user/u{i}" for i in range(5)], ips[:200], 7)  # half of them trained
    is6, hi, lo = parse_ips([*ips, "0.0.0.0", "255.255.255.255", "10.0.0.1"])
    compiled_rows = prefixes._embedding_rows
    assert compiled_rows is not None
    compiled = model._layout.head_rows(is6, hi, lo, model._bucket_to_row)
    monkeypatch.setattr(prefixes, "_embedding_rows", None)
    expected = model._layout.head_rows(is6, hi, lo, model._bucket_to_row)
    for got, want in zip(compiled, expected, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    level = (np.array([24]), np.array([10]), np.array([100]), np.zeros(1, np.uint64))  # bits, offset, size, salt
    outputs = (np.empty(len(lo), np.int64), np.empty((1, len(lo)), np.int32))
    with pytest.raises(ValueError, match="mismatched"):  # the level's buckets pass the map's end
        compiled_rows.ipv4_rows(lo, 16, *level, np.zeros(50, np.int32), *outputs)
    compiled_rows.ipv4_rows(lo, 16, *level, np.zeros(110, np.int32), *outputs)  # (they fit)


def test_the_compiled_gather_refuses_rows_out_of_range_and_mismatched_buffers() -> None:
    gather = ipinsights._embedding_rows.gather_sum
    emb = np.ones((10, 4), np.float32)
    out = np.zeros((3, 4), np.float32)
    head = np.ones((5, 4), np.float32)
    gather(out, head, np.array([0, 4, 2]), emb, np.array([[1, 9, 2]], np.int32), 0)
    assert out.tolist() == [[2.0] * 4] * 3
    with pytest.raises(ValueError, match="address 1 has a row out of range"):
        gather(out, head, np.array([0, 5, 2]), emb, np.array([[1, 9, 2]]), 0)
    with pytest.raises(ValueError, match="address 2 has a row out of range"):
        gather(out, None, np.zeros(3, np.int64), emb, np.array([[1, 9, 2, 3], [0, 0, 10, 0]]), 0)
    with pytest.raises(ValueError, match="mismatched"):
        gather(out, None, np.zeros(3, np.int64), emb, np.array([[1, 9, 2]]), 1)  # past the rows
    with pytest.raises(ValueError, match="mismatched"):
        gather(out, None, np.zeros(3, np.int64), emb, np.array([[1, 9, 2]], np.float64), 0)

    entities = np.ones((4, 4), np.float32)
    dots = np.zeros(3, np.float32)
    gather(out, head, np.array([0, 4, 2]), emb, np.array([[1, 9, 2]]), 0, entities, np.array([0, 3, 1]), dots)
    assert dots.tolist() == [8.0] * 3  # rows of 2s dotted with rows of 1s
    with pytest.raises(ValueError, match="pair 1 has an entity row out of range"):
        gather(out, head, np.array([0, 4, 2]), emb, np.array([[1, 9, 2]]), 0, entities, np.array([0, 4, 1]), dots)
    with pytest.raises(ValueError, match="mismatched"):
        gather(out, head, np.array([0, 4, 2]), emb, np.array([[1, 9, 2]]), 0, entities, np.array([0, 1]), dots)


def _lane_dot_by_hand(u: np.ndarray, v: np.ndarray) -> np.float32:
    acc = [np.float32(0.0)] * 8
    for j in range(len(u)):
        acc[j % 8] = np.float32(acc[j % 8] + np.float32(u[j] * v[j]))
    return np.float32(
        np.float32(np.float32(acc[0] + acc[4]) + np.float32(acc[2] + acc[6]))
        + np.float32(np.float32(acc[1] + acc[5]) + np.float32(acc[3] + acc[7]))
    )


@pytest.mark.parametrize("dim", [1, 5, 8, 13, 32])
def test_dot_products_are_summed_in_their_documented_order_compiled_or_not(dim: int) -> None:
    """``lane_dots`` and the compiled gather's dots: eight running sums folded pairwise, float32."""
    rng = np.random.default_rng(dim)
    u = rng.standard_normal((50, dim)).astype(np.float32)
    v = rng.standard_normal((50, dim)).astype(np.float32) * np.float32(1e3)  # (magnitudes apart: order shows)
    expected = np.array([_lane_dot_by_hand(a, b) for a, b in zip(u, v, strict=True)], np.float32)
    by_numpy = np.empty(50, np.float32)
    ipinsights.lane_dots(u, v, by_numpy)
    assert by_numpy.tobytes() == expected.tobytes()
    compiled = np.empty(50, np.float32)
    summed = np.empty_like(v)
    ipinsights._embedding_rows.gather_sum(
        summed, None, np.zeros(50, np.int64), v, np.arange(50)[None, :], 0, u, np.arange(50), compiled
    )
    assert summed.tobytes() == v.tobytes() and compiled.tobytes() == expected.tobytes()


SANITIZED_RUN = """
import sys
from proactive_assets.core.model import ipinsights, prefixes
from proactive_assets_tests import test_model_scoring as t
from proactive_assets_tests.sanitized import load_extension
sanitized = load_extension("_embedding_rows", sys.argv[1])
class Patch:
    def setattr(self, target, name, value):
        setattr(target, name, value)
for seed in (0, 1):
    ipinsights._embedding_rows = sanitized
    t.test_the_compiled_gather_of_embedding_rows_gives_numpys_bits(seed, Patch())
ipinsights._embedding_rows = sanitized
t.test_the_compiled_gather_refuses_rows_out_of_range_and_mismatched_buffers()
for dim in (1, 5, 8, 13, 32):
    t.test_dot_products_are_summed_in_their_documented_order_compiled_or_not(dim)
for params in t.ROW_PARAMS:
    prefixes._embedding_rows = sanitized
    t.test_the_compiled_ipv4_rows_are_numpys(params, Patch())
print("clean")
"""


def test_the_embedding_gather_is_clean_under_address_and_undefined_behaviour_sanitizers(tmp_path: Path) -> None:
    source = Path(ipinsights.__file__).with_name("_embedding_rows.c")
    assert run_sanitized(source, "_embedding_rows", SANITIZED_RUN, tmp_path).startswith("clean")
