"""The window index kept with a model: the day's evidence from it equals the evidence from the window's rows."""

import io
from dataclasses import fields
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from proactive_assets.core import ipnet
from proactive_assets.core.backends import TrainedModel
from proactive_assets.core.evidence.detector import PRIOR, day_evidence, score_day, window_index
from proactive_assets.core.evidence.features import FEATURES, pair_features
from proactive_assets.core.evidence.frame import Frame
from proactive_assets.core.evidence.history import Behaviour, History, build_day, build_history, lookup_count
from proactive_assets.core.evidence.keys import address_book
from proactive_assets.core.evidence.persons import person_codes
from proactive_assets.core.evidence.window import WindowIndex
from proactive_assets.core.model import ScoreResult
from proactive_assets_tests.test_evidence import NETWORKS

START = date(2024, 3, 1)
ACCOUNT = "arn:aws:iam::111122223333:"


def _rows(rows: list[tuple[str, str, int, list[str], list[str | None]]], with_day: bool = True) -> pa.Table:
    entity, ip, day, names, agents = zip(*rows, strict=True)
    columns = {
        "entity": [ACCOUNT + e for e in entity],
        "source_ip": list(ip),
        "event_count": [len(n) + 1 for n in names],
        "event_names": pa.array(list(names), pa.list_(pa.string())),
        "user_agents": pa.array(list(agents), pa.list_(pa.string())),
    }
    if with_day:
        columns["day"] = pa.array([START + timedelta(days=d) for d in day], pa.date32())
    return pa.table(columns)


WINDOW = _rows(
    [
        ("user/alice", "198.51.100.10", 0, ["GetObject", "ListBuckets"], ["aws-cli/2.15"]),
        ("user/alice", "198.51.100.10", 1, ["GetObject"], ["aws-cli/2.15"]),
        ("user/alice", "2001:db8:1:2::5", 2, ["PutObject"], []),
        ("user/bob", "203.0.113.5", 0, [], ["Boto3/1.34"]),
        ("user/bob", "203.0.114.5", 1, ["DescribeInstances"], ["Boto3/1.34", None]),
        ("role/lambda", "3.80.1.2", 0, ["GetSecretValue"], []),
        ("role/lambda", "3.80.9.9", 2, ["GetSecretValue"], []),
    ]
)
TODAY = _rows(
    [
        ("user/alice", "198.51.100.10", 3, ["GetObject"], ["aws-cli/2.15"]),  # as usual
        ("user/alice", "185.220.101.4", 3, ["CreateAccessKey", "GetObject"], ["python-requests/2.31"]),
        ("user/bob", "203.0.115.5", 3, ["DescribeInstances"], ["Boto3/1.34"]),
        ("user/dave", "198.51.100.10", 3, ["GetObject"], []),  # new identity on a known address
        ("role/lambda", "3.81.4.4", 3, [], []),
        ("role/lambda", "2600:1f18::1", 3, ["GetSecretValue"], [None]),
        # alice's new Identity Center role, on her address: the same person, known from her IAM user
        ("assumed-role/AWSReservedSSO_Dev_0a1b2c3d4e5f6a7b/alice@example.com", "198.51.100.10", 3, [], []),
    ],
    with_day=False,
)


def _reference(window: pa.Table, today: pa.Table, ip_insights: float) -> np.ndarray:
    """The evidence with window and day coded together (what scoring did before the index was kept)."""
    entities = pd.Index(pd.unique(np.r_[window["entity"].to_numpy(), today["entity"].to_numpy()]))
    addresses = pd.Index(pd.unique(np.r_[window["source_ip"].to_numpy(), today["source_ip"].to_numpy()]))
    book = address_book(addresses.tolist(), NETWORKS)

    def behaviour(table: pa.Table, vocab: dict[str, pd.Index]) -> Behaviour:
        parts = []
        for name in ("event_names", "user_agents"):
            rows = [(i, v) for i, items in enumerate(table[name].to_pylist()) for v in items if v is not None]
            parts += [np.array([r for r, _ in rows], np.int64), vocab[name].get_indexer([v for _, v in rows])]
        return Behaviour(*parts, table["event_count"].to_numpy().astype(float))

    vocab = {}
    for name in ("event_names", "user_agents"):
        values = [v for t in (window, today) for items in t[name].to_pylist() for v in items if v is not None]
        vocab[name] = pd.Index(pd.unique(np.array(values, dtype=object)))
    e = entities.get_indexer(window["entity"].to_numpy())
    a = addresses.get_indexer(window["source_ip"].to_numpy())
    d = window["day"].cast(pa.int32()).to_numpy()
    history = build_history(e, a, d, book, len(entities), behaviour(window, vocab))
    te, ta = entities.get_indexer(today["entity"].to_numpy()), addresses.get_indexer(today["source_ip"].to_numpy())
    day = build_day(te, ta, book, history, len(entities))
    ipi = np.full(len(te), ip_insights)
    return pair_features(
        te, ta, ipi, np.ones(len(te), bool), book, history, day, behaviour(today, vocab), person_codes(entities)
    )


def _scorer(entity: pa.Array, source_ip: pa.Array) -> ScoreResult:
    n = len(entity)
    return ScoreResult(np.zeros(n), np.full(n, 0.25), np.ones(n, bool))


def test_the_stored_index_gives_the_evidence_of_the_window_rows() -> None:
    index = Frame.build(WINDOW, NETWORKS).index()
    stored = WindowIndex.from_bytes(index.to_bytes())
    model = TrainedModel({"version": "v"}, None, stored.to_bytes())
    found = day_evidence(_scorer, window_index(model, lambda: WINDOW, NETWORKS), TODAY, NETWORKS)
    x = pair_features(*found.pair_args())
    expected = _reference(WINDOW, TODAY, 0.25)
    np.testing.assert_allclose(x, expected)
    scores = score_day(model, _scorer, window_index(model, lambda: WINDOW, NETWORKS), TODAY, NETWORKS)
    np.testing.assert_allclose(scores.insight, PRIOR.insight(expected), rtol=1e-13)
    # the index read by the call given, once IP Insights has started (as daily_insights gives it)
    read = []
    lazily = score_day(
        model, _scorer, lambda: read.append(1) or window_index(model, lambda: WINDOW, NETWORKS), TODAY, NETWORKS
    )
    assert read == [1] and np.array_equal(lazily.insight, scores.insight)
    assert lazily.evidence_columns() == scores.evidence_columns()
    # what only the window's text vocabularies and identities can tell, row by row
    column = {name: x[:, FEATURES.index(name)] for name in FEATURES}
    assert column["new_identity"].tolist() == [0, 0, 0, 1, 0, 0, 1]  # dave, alice's new role
    assert column["new_actions"][:3].tolist() == [0.0, 0.5, 0.0]  # CreateAccessKey is new to alice
    assert column["new_user_agent"][:3].tolist() == [0.0, 1.0, 0.0]
    assert column["family_new"].tolist() == [0, 0, 0, 0, 0, 1, 0]  # the Lambda role's first IPv6 address
    assert column["person_address"].tolist() == [0, 0, 0, 0, 0, 0, 1]  # alice's, not dave's


def test_a_model_stored_without_an_index_is_indexed_from_its_training_set() -> None:
    read = []

    def training_set() -> pa.Table:
        read.append(True)
        return WINDOW

    legacy = TrainedModel({"version": "v"}, None, None)
    from_rows = day_evidence(_scorer, window_index(legacy, training_set, NETWORKS), TODAY, NETWORKS)
    assert read == [True]
    np.testing.assert_allclose(pair_features(*from_rows.pair_args()), _reference(WINDOW, TODAY, 0.25))


def test_an_index_of_another_format_asks_for_a_retrain() -> None:
    data = Frame.build(WINDOW, NETWORKS).index().to_bytes()
    with np.load(io.BytesIO(data)) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["format"] = np.array([99])
    out = io.BytesIO()
    np.savez(out, **arrays)
    with pytest.raises(ValueError, match="retrain the model"):
        WindowIndex.from_bytes(out.getvalue())


def test_an_index_keeps_its_identities_persons_and_one_kept_before_them_gets_them_from_the_names() -> None:
    index = Frame.build(WINDOW, NETWORKS).index()
    expected = person_codes(index.entities)
    assert (expected != 0).any() and np.array_equal(index.persons, expected)
    data = index.to_bytes()
    assert np.array_equal(WindowIndex.from_bytes(data).persons, expected)
    with np.load(io.BytesIO(data)) as z:
        older = {k: z[k] for k in z.files if k != "persons"}
    out = io.BytesIO()
    np.savez(out, **older)
    assert np.array_equal(WindowIndex.from_bytes(out.getvalue()).persons, expected)


def test_a_days_addresses_are_counted_from_the_windows_ipv4_networks_as_looked_up() -> None:
    """The index keeps the window's IPv4 networks with their identities: a day's IPv4 addresses, in
    order, are merged with them (``address_counts``), the rest left to the kernel's lookups (-1);
    the day is judged the same as by the lookups alone, as with an index kept before them."""
    index = Frame.build(WINDOW, NETWORKS).index()
    data = index.to_bytes()
    stored = WindowIndex.from_bytes(data)
    assert [len(k) for k, _ in stored.ipv4] == [5, 5, 3, 3]  # 198.51.100.10, 203.0.113/114.5, 3.80.1.2/9.9
    for (keys, counts), (stored_keys, stored_counts) in zip(index.ipv4, stored.ipv4, strict=True):
        assert np.array_equal(keys, stored_keys) and np.array_equal(counts, stored_counts)
    coded = stored.code_day(TODAY)
    book = coded.book
    assert not book.is6[:4].any() and book.is6[4:].all()  # 3.81.4.4, 185.220.101.4, 198.51.100.10, 203.0.115.5
    assert np.array_equal(book.lo[book.ascending_v4], np.sort(book.lo[:4]))  # coded as met, merged ascending
    counted = stored.address_counts(book)
    for level, column in enumerate(counted):
        looked_up = lookup_count(
            stored.history.org_keys[level], stored.history.org_counts[level], book.level_keys[level]
        )
        assert np.array_equal(column[:4], looked_up[:4]) and (column[4:] == -1).all()
    assert [c[book.ascending_v4].tolist() for c in counted] == [[0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 1, 1], [1, 0, 1, 1]]
    some = stored.address_counts(book, (2, 0))  # (some levels: scoring a day counts them on two cores)
    assert [c.tolist() for c in some] == [counted[2].tolist(), counted[0].tolist()]
    with np.load(io.BytesIO(data)) as z:
        older = {k: z[k] for k in z.files if not k.startswith("ipv4_")}
    out = io.BytesIO()
    np.savez(out, **older)
    kept_before = WindowIndex.from_bytes(out.getvalue())
    assert kept_before.ipv4 is None and kept_before.address_counts(book) is None
    model = TrainedModel({"version": "v"}, None, data)
    merged = score_day(model, _scorer, stored, TODAY, NETWORKS)
    looked = score_day(model, _scorer, kept_before, TODAY, NETWORKS)
    np.testing.assert_array_equal(merged.insight, looked.insight)
    assert merged.evidence_columns() == looked.evidence_columns()


def _assert_same_history(a: History, b: History) -> None:
    for f in fields(History):
        if f.name == "tallies":
            continue
        left, right = getattr(a, f.name), getattr(b, f.name)
        for x, y in zip(left, right, strict=True) if isinstance(left, list) else [(left, right)]:
            assert np.array_equal(x, y), f.name


def test_a_history_extended_day_by_day_equals_the_history_built_at_once() -> None:
    """Training indexes the window once: validation day d+1's history is day d's plus day d's rows."""
    today = TODAY.append_column("day", pa.array([START + timedelta(days=3)] * TODAY.num_rows, pa.date32()))
    rows = pa.concat_tables([WINDOW, today.select(WINDOW.column_names)])
    many = _rows_of_churning_users(9)
    for table in (rows, many):
        frame = Frame.build(table, NETWORKS)
        days = sorted(set(frame.day.tolist()))
        history = frame.history(days[1])
        for day in days[1:]:
            _assert_same_history(history, frame.history(day))
            history = frame.extended(history, day)
        _assert_same_history(history, frame.history(days[-1] + 1))
        with pytest.raises(ValueError, match="later day"):
            frame.extended(history, days[-1])


def _rows_of_churning_users(days: int, users: int = 60) -> pa.Table:
    """Users on home and work /24s with new hosts daily, some on AWS and IPv6 addresses, joining late."""
    rng = np.random.default_rng(4)
    out = []
    for d in range(days):
        for u in range(users):
            if u % 7 == 0 and d < u % 5:  # joins on a later day
                continue
            for _ in range(int(rng.integers(1, 4))):
                kind = rng.integers(0, 4)
                if kind == 0:
                    ip = f"198.{51 + u % 3}.{u}.{rng.integers(1, 30)}"
                elif kind == 1:
                    ip = f"203.0.{rng.integers(0, 256)}.{rng.integers(1, 250)}"  # a churning carrier
                elif kind == 2:
                    ip = f"3.80.{rng.integers(0, 4)}.{rng.integers(1, 250)}"  # AWS
                else:
                    ip = f"2001:db8:{u}:{rng.integers(0, 3)}::{rng.integers(1, 9999):x}"
                names = [f"Call{rng.integers(0, 12)}"]
                agents = [f"agent/{rng.integers(0, 4)}"] if rng.random() < 0.7 else []
                out.append((f"user/u{u}", ip, d, names, agents))
    return _rows(out)


def test_a_scored_day_parses_its_addresses_once_for_ip_insights_and_the_evidence(monkeypatch) -> None:
    parsed = []
    parse = ipnet._parse_ipv4_arrow
    monkeypatch.setattr(ipnet, "_parse_ipv4_arrow", lambda values: parsed.append(len(values)) or parse(values))

    def parsing_scorer(entity: pa.Array, source_ip: pa.ChunkedArray) -> ScoreResult:
        is6, _, lo = ipnet.parse_ips(source_ip)  # as the local model's scoring does, on its own core
        return ScoreResult(np.zeros(len(lo)), np.where(is6, 0.5, 0.25), np.ones(len(lo), bool))

    index = Frame.build(WINDOW, NETWORKS).index()
    parsed.clear()
    ips = TODAY.column("source_ip")
    in_two_chunks = TODAY.set_column(1, "source_ip", pa.chunked_array([ips.slice(0, 3), ips.slice(3)]))
    found = day_evidence(parsing_scorer, index, in_two_chunks, NETWORKS)
    assert parsed == [TODAY.num_rows, 1]  # once, for both cores (then the evidence's one IPv6 address)
    assert found.ip_insights.tolist() == [0.25, 0.25, 0.25, 0.25, 0.25, 0.5, 0.25]
    expected = day_evidence(_scorer, index, TODAY, NETWORKS)
    np.testing.assert_array_equal(found.coded.address, expected.coded.address)
