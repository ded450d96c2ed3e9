"""The SageMaker backend through remote_model and the model assets, against moto on 127.0.0.1.

Moto runs training jobs and endpoints as bookkeeping only and answers ``invoke_endpoint`` from a
queue of canned results (one per distinct request body), so these tests compute what each
request will carry (the split is deterministic), queue dot products they chose, and check that
validation, calibration and insights are derived from exactly those numbers.
"""

import io
import json
import math
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pyarrow as pa
import pytest
import requests
from dagster import DagsterInstance, materialize

from proactive_assets.config import Settings
from proactive_assets.core.backends import TrainedModel
from proactive_assets.core.backends.local import LocalBackend
from proactive_assets.core.backends.sagemaker import SageMakerBackend, training_data
from proactive_assets.core.backends.sagemaker import remote as remote_model
from proactive_assets.core.backends.sagemaker.client import SageMakerIPInsights
from proactive_assets.core.backends.sagemaker.invoke import SageMakerScores
from proactive_assets.core.model import IPInsightsParams, fit_platt, roc_auc, roc_points
from proactive_assets.core.storage import LocalStore, open_store
from proactive_assets.core.warehouse import Warehouse
from proactive_assets.defs.model_store import load_model, load_model_metadata, save_model
from proactive_assets.defs.resources import ProactiveResource
from proactive_assets_tests.cloudtrail_fixtures import log_key, put_log, record, write_history
from proactive_assets_tests.conftest import project_assets

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
BUCKET = "proactive-artifacts"
ARTIFACTS = f"s3://{BUCKET}/ipinsights"
IMAGE = "382416733822.dkr.ecr.us-east-1.amazonaws.com/ipinsights:1"
PARAMS = IPInsightsParams(validation_fraction=0.3, seed=11, vector_dim=16, epochs=2)


# ---------------------------------------------------------------------------------------------
# helpers


def post_results(url: str, bodies: list[dict[str, Any]]) -> None:
    """Queue canned InvokeEndpoint responses, consumed one per distinct request body."""
    results = [{"Body": json.dumps(b), "ContentType": "application/json"} for b in bodies]
    response = requests.post(f"{url}/moto-api/static/sagemaker/endpoint-results", json={"results": results}, timeout=10)
    response.raise_for_status()


def predictions(values: Any) -> dict[str, Any]:
    return {"predictions": [{"dot_product": float(v)} for v in values]}


def sent_lines(entities: list[Any], ips: list[Any]) -> list[str]:
    """The distinct CSV lines a scoring call sends, in order (what score_pairs deduplicates to)."""
    return list(dict.fromkeys(training_data.prepare_pairs(entities, ips).lines))


def chunks(values: list[float], size: int) -> list[list[float]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def read_s3_text(uri: str) -> str:
    bucket, key = training_data.parse_s3_uri(uri)
    return boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def training_table(days: int = 3) -> pa.Table:
    """Six identities, each from four hosts of its own 10.x.y.0/24, plus IPv6 and a comma in a name."""
    rows: list[dict[str, Any]] = []
    start = date(2024, 3, 1)
    entities = [f"arn:aws:iam::111122223333:user/u{u}" for u in range(5)] + [
        "arn:aws:sts::111122223333:assumed-role/a,b/s"
    ]
    for d in range(days):
        for u, entity in enumerate(entities):
            for host in range(1, 5):
                rows.append(
                    {
                        "entity": entity,
                        "source_ip": f"10.{u}.{u + 7}.{host}",
                        "event_count": 1 + (u * host + d) % 9,
                        "sources": ["cloudtrail"],
                        "day": start + timedelta(days=d),
                    }
                )
        rows.append(
            {
                "entity": entities[0],
                "source_ip": "2001:db8::1",
                "event_count": 3,
                "sources": ["cloudtrail"],
                "day": start + timedelta(days=d),
            }
        )
    return pa.Table.from_pylist(rows)


def make_backend(**kwargs: Any) -> SageMakerIPInsights:
    """A backend whose clients come from the environment (AWS_ENDPOINT_URL = moto)."""
    return SageMakerIPInsights(
        role_arn=ROLE, artifacts_uri=ARTIFACTS, region=REGION, image_uri=IMAGE, sleep=lambda _: None, **kwargs
    )


@pytest.fixture
def moto(moto_endpoint: str) -> str:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    return moto_endpoint


# ---------------------------------------------------------------------------------------------
# deterministic inputs (no AWS)


def test_split_and_version_are_deterministic_and_order_independent() -> None:
    table = training_table()
    shuffled = table.take(np.random.default_rng(5).permutation(table.num_rows))
    a, b = remote_model.split_validation(table, PARAMS), remote_model.split_validation(shuffled, PARAMS)
    assert (a.entities, a.ips, a.random_ips) == (b.entities, b.ips, b.random_ips)
    assert 0 < len(a) < 6 * 4
    assert remote_model.model_version(table, PARAMS) == remote_model.model_version(shuffled, PARAMS)
    assert remote_model.model_version(table, PARAMS).startswith("sm-")
    other = IPInsightsParams(validation_fraction=0.3, seed=12, vector_dim=16, epochs=2)
    assert remote_model.model_version(table, other) != remote_model.model_version(table, PARAMS)

    held = set(zip(a.entities, a.ips, strict=True))
    rows = table.to_pylist()
    for row, kept in zip(rows, a.train_rows.tolist(), strict=True):
        assert kept == ((row["entity"], row["source_ip"]) not in held)  # every day of a held pair goes
    assert all(":" not in ip for ip in a.ips)  # the algorithm cannot score IPv6: never held out
    for entity in {r["entity"] for r in rows}:  # nobody loses all their pairs to validation
        assert any(k for r, k in zip(rows, a.train_rows.tolist(), strict=True) if r["entity"] == entity)
    assert len(a.random_ips) == len(a) and not held & set(zip(a.entities, a.random_ips, strict=True))
    assert remote_model.known_entities(table) == {r["entity"] for r in rows}
    assert remote_model.repeat_counts([1, 2, 4, 10_000], 0.5).tolist() == [1, 1, 2, 100]


# ---------------------------------------------------------------------------------------------
# train_remote and RemoteScorer on the moto server


def test_train_remote_validates_and_calibrates_through_the_endpoint(moto: str) -> None:
    table = training_table()
    split = remote_model.split_validation(table, PARAMS)
    n = len(split)
    lines = sent_lines(split.entities * 2, split.ips + split.random_ips)
    assert len(lines) == 2 * n
    # Held-out pairs mostly look normal, random networks mostly do not, with some overlap.
    pos = list(np.linspace(0.5, 3.0, n))
    neg = list(np.linspace(-2.5, 1.0, n))
    post_results(moto, [predictions(c) for c in chunks(pos + neg, 4)])  # 4 rows per request
    backend = make_backend(max_rows_per_request=4)

    meta = remote_model.train_remote(backend, table, PARAMS, date(2024, 3, 4))

    assert json.loads(json.dumps(meta, allow_nan=False)) == meta  # JSON-serialisable as is
    assert meta["backend"] == "sagemaker" and meta["version"] == remote_model.model_version(table, PARAMS)
    assert meta["endpoint_name"] == "proactive-ipinsights" and meta["scoring_mode"] == "endpoint"
    assert meta["model_artifact_uri"] == f"{ARTIFACTS}/models/{meta['training_job_name']}/output/model.tar.gz"
    assert meta["hyperparameters"] == PARAMS.to_sagemaker_hyperparameters()
    assert meta["training_rows"] == table.num_rows and meta["skipped_ipv6"] == 3
    assert meta["validation_pairs"] == n
    assert meta["validation_auc"] == pytest.approx(roc_auc(pos, neg))
    assert meta["roc"] == roc_points(np.array(pos), np.array(neg))
    slope, intercept = fit_platt(np.r_[pos, neg], np.r_[np.zeros(n, bool), np.ones(n, bool)])
    assert meta["calibration"]["method"] == "platt" and meta["calibration"]["slope"] < 0
    assert (meta["calibration"]["slope"], meta["calibration"]["intercept"]) == (slope, intercept)

    # The training CSV leaves the held-out pairs out (and IPv6), repeating rows by sqrt(count).
    train_rows = read_s3_text(meta["training_data_uri"]).splitlines()
    held = {f"{training_data.encode_entity(e)},{ip}" for e, ip in zip(split.entities, split.ips, strict=True)}
    assert not held & set(train_rows) and not any(":" in r.split(",")[-1] for r in train_rows)
    kept = table.filter(pa.array(split.train_rows))
    expected_rows = remote_model.repeat_counts(kept.column("event_count").to_numpy(), 0.5)
    ipv4 = np.array([":" not in ip for ip in kept.column("source_ip").to_pylist()])
    assert len(train_rows) == meta["training_csv_rows"] == int(expected_rows[ipv4].sum())
    assert any(r.startswith("arn:aws:sts::111122223333:assumed-role/a%2Cb/s,") for r in train_rows)
    assert set(read_s3_text(meta["validation_data_uri"]).splitlines()) == held

    # Scoring: dot products from the endpoint, insight from the calibration, IPv6 NaN and counted.
    scorer = remote_model.RemoteScorer(backend, meta, remote_model.known_entities(table))
    entities = [split.entities[0], "arn:aws:iam::111122223333:user/new", split.entities[0], split.entities[0]]
    ips = [split.ips[0], "203.0.113.9", "2001:db8::9", split.ips[0]]
    post_results(moto, [predictions([2.5, -4.0])])
    result = scorer(pa.array(entities), pa.chunked_array([ips[:2], ips[2:]]))  # columns, as daily_insights passes
    np.testing.assert_array_equal(result.dot_product, [2.5, -4.0, np.nan, 2.5])
    assert result.insight[0] == pytest.approx(sigmoid(slope * 2.5 + intercept))
    assert result.insight[1] == pytest.approx(sigmoid(slope * -4.0 + intercept))
    assert result.insight[1] > 0.9 > result.insight[0]
    assert math.isnan(result.insight[2])
    assert result.entity_known.tolist() == [True, False, True, True]
    assert scorer.skipped_ipv6 == 1


class TransformWritesOutput:
    """Moto accepts transform jobs but writes nothing: write the algorithm's JSON Lines output.

    Addresses in 10.0.0.0/8 (every training network) get a high dot product, others a low one.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.s3 = boto3.client("s3", region_name=REGION)
        self.jobs: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def create_transform_job(self, **kwargs: Any) -> Any:
        self.jobs.append(kwargs)
        response = self.inner.create_transform_job(**kwargs)
        lines = read_s3_text(kwargs["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]).splitlines()
        dots = [2.0 if line.split(",")[1].startswith("10.") else -2.0 for line in lines]
        out = "".join(json.dumps({"dot_product": dot}) + "\n" for dot in dots)
        bucket, key = training_data.parse_s3_uri(
            training_data.join_s3_uri(kwargs["TransformOutput"]["S3OutputPath"], "pairs.csv.out")
        )
        self.s3.put_object(Bucket=bucket, Key=key, Body=out.encode())
        return response


def test_train_remote_in_batch_mode_deploys_nothing(moto: str) -> None:
    sagemaker = TransformWritesOutput(boto3.client("sagemaker", region_name=REGION))
    backend = make_backend(scoring_mode="batch", sagemaker_client=sagemaker)
    meta = remote_model.train_remote(backend, training_table(), PARAMS, "2024-03-04")
    assert meta["endpoint_name"] is None and meta["scoring_mode"] == "batch"
    assert sagemaker.list_endpoints()["Endpoints"] == []
    assert [job["ModelName"] for job in sagemaker.jobs] == [meta["model_name"]]
    assert meta["validation_auc"] > 0.95 and meta["calibration"]["slope"] < 0

    scorer = remote_model.RemoteScorer(backend, meta, ["a"])
    result = scorer(["a", "b", "a"], ["10.1.2.3", "198.51.100.1", "::1"])
    assert result.dot_product[:2].tolist() == [2.0, -2.0] and math.isnan(result.dot_product[2])
    assert result.insight[1] > 0.5 > result.insight[0] and scorer.skipped_ipv6 == 1


# ---------------------------------------------------------------------------------------------
# warehouse: model.json only, load_scorer for either backend


class FakeBackend:
    def __init__(self) -> None:
        self.calls: list[str | None] = []

    def score(self, entities: list[Any], ips: list[Any], *, model_name: str | None = None) -> SageMakerScores:
        assert isinstance(entities, list) and isinstance(ips, list)  # what the SageMaker client sends as CSV
        self.calls.append(model_name)
        return SageMakerScores(np.array([1.0 if ":" not in ip else np.nan for ip in ips]), skipped_ipv6=0)


def test_remote_model_partition_and_scorer(tmp_path: Path) -> None:
    warehouse = Warehouse(open_store(str(tmp_path / "wh")))
    day = date(2024, 3, 4)
    warehouse.write_tables("training_set", day, {"training_set": training_table()})
    meta = {
        "version": "sm-0123",
        "backend": "sagemaker",
        "model_name": "m1",
        "validation_auc": 0.97,
        "calibration": {"method": "platt", "slope": -2.0, "intercept": 0.5},
        "window_start": "2024-02-19",
    }
    locations = save_model(warehouse, day, TrainedModel(meta))
    assert set(locations) == {"model_json"} and locations["model_json"].endswith("model.json")
    assert not warehouse.store.exists(warehouse.key("ip_insights_model", day, "model.npz"))
    loaded = load_model(warehouse, day)
    assert loaded.metadata == meta and loaded.artifact is None and loaded.backend == "sagemaker"

    def window() -> pa.Table:
        return warehouse.read_table("training_set", day)

    with pytest.raises(ValueError, match="no artifact"):
        LocalBackend().scorer(loaded, window)

    seen: list[dict | None] = []
    backend = FakeBackend()
    sagemaker = SageMakerBackend(ROLE, ARTIFACTS, REGION)
    sagemaker.client = lambda metadata=None: seen.append(metadata) or backend  # type: ignore[method-assign]
    score = sagemaker.scorer(loaded, window)
    assert seen == [meta]
    result = score(["arn:aws:iam::111122223333:user/u1", "stranger"], ["10.1.8.1", "10.9.9.9"])
    assert backend.calls == ["m1"]
    assert result.insight.tolist() == pytest.approx([sigmoid(-2.0 + 0.5)] * 2)
    assert result.entity_known.tolist() == [True, False]
    # the learning set's Arrow columns (plain or dictionary-encoded, any chunks) score the same
    columns = pa.table({"entity": ["arn:aws:iam::111122223333:user/u1", "stranger"], "source_ip": ["10.1.8.1", "::1"]})
    from_arrow = score(columns.column("entity").dictionary_encode(), columns.column("source_ip"))
    assert backend.calls == ["m1", "m1"]
    assert from_arrow.insight[0] == result.insight[0] and math.isnan(from_arrow.insight[1])
    assert from_arrow.entity_known.tolist() == [True, False]
    with pytest.raises(ValueError, match="2 entities but 1 addresses"):
        score(columns.column("entity"), pa.array(["10.1.8.1"]))


# ---------------------------------------------------------------------------------------------
# The assets with model_backend="sagemaker"

START = date(2024, 3, 1)
ATTACK_IP = "185.220.101.4"


class Endpoint:
    """An IP Insights endpoint that answers from what it is sent (``invoke_endpoint`` only)."""

    def __init__(self, own: set[str], day_dots: dict[str, float]) -> None:
        self.own, self.day_dots = own, day_dots
        self.calibration: tuple[list[float], list[float]] | None = None

    def invoke_endpoint(self, **request: Any) -> dict[str, Any]:
        lines = (
            request["Body"].decode().splitlines()
            if isinstance(request["Body"], bytes)
            else request["Body"].splitlines()
        )
        if self.calibration is None:  # held-out pairs, then the same identities on random addresses
            half = len(lines) // 2
            self.calibration = (list(np.linspace(1.0, 3.0, half)), list(np.linspace(-3.0, 1.5, half)))
            dots = self.calibration[0] + self.calibration[1]
        else:
            dots = [self.day_dots.get(line, 2.0 if line in self.own else -2.0) for line in lines]
        body = json.dumps(predictions(dots)).encode()
        return {"Body": io.BytesIO(body), "ContentType": "application/json"}


def test_assets_train_and_score_on_sagemaker(moto: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path / "bucket")
    arns = write_history(store, START, days=6)
    day = START + timedelta(days=5)
    put_log(
        store,
        log_key(START + timedelta(days=1), minute=50, uid="Ipv6History00000"),  # before the validation days
        [record(arn=arns[3], ip="2001:db8::3", time=f"{START + timedelta(days=1)}T09:00:00Z")],
    )
    put_log(
        store,
        log_key(day, minute=30, uid="Today00000000000"),
        [
            record(arn=arns[0], ip=ATTACK_IP, name="CreateAccessKey", time=f"{day}T12:00:00Z"),
            record(arn=arns[1], ip="2001:db8::7", time=f"{day}T12:05:00Z"),
        ],
    )
    settings = Settings.from_env(
        {
            "PROACTIVE_HOME": str(tmp_path / "home"),
            "PROACTIVE_CLOUDTRAIL_URI": str(tmp_path / "bucket"),
            "PROACTIVE_MODEL_BACKEND": "sagemaker",
            "SAGEMAKER_ROLE_ARN": ROLE,
            "PROACTIVE_SAGEMAKER_ARTIFACTS_URI": ARTIFACTS,
        }
    )
    res = ProactiveResource.from_settings(settings)
    resources = {"proactive": res}
    instance = DagsterInstance.ephemeral()
    for d in range(6):
        materialize(
            project_assets(res, "raw_cloudtrail", "cloudtrail_events", "learning_set"),
            partition_key=(START + timedelta(days=d)).isoformat(),
            resources=resources,
            instance=instance,
        )

    # The endpoint answers by what it is sent: the calibration request first (held-out pairs, then
    # the same identities on random addresses), then the detector's validation pairs (the
    # organisation's own pairs look normal, synthetic ones do not), then the day's pairs.
    warehouse = Warehouse(open_store(settings.warehouse))
    pairs = warehouse.read_table("learning_set", day)
    day_lines = sent_lines(pairs.column("entity").to_pylist(), pairs.column("source_ip").to_pylist())
    day_dots = {line: (-3.0 if line.endswith(ATTACK_IP) else 2.0 + i / 100) for i, line in enumerate(day_lines)}
    own = set()
    for d in range(5):
        table = warehouse.read_table("learning_set", START + timedelta(days=d))
        own |= set(sent_lines(table.column("entity").to_pylist(), table.column("source_ip").to_pylist()))
    endpoint = Endpoint(own, day_dots)
    make_client = SageMakerBackend.client

    def client(self: SageMakerBackend, metadata: dict | None = None) -> Any:
        sagemaker = make_client(self, metadata)
        sagemaker.runtime = endpoint
        return sagemaker

    monkeypatch.setattr(SageMakerBackend, "client", client)

    result = materialize(
        project_assets(res, "training_set", "ip_insights_model", "daily_insights", "alerts"),
        partition_key=day.isoformat(),
        resources=resources,
        instance=instance,
    )
    assert result.success

    def metadata(asset: str) -> dict:
        (mat,) = result.asset_materializations_for_node(asset)
        return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}

    meta = load_model_metadata(warehouse, day)
    model_md = metadata("ip_insights_model")
    pos, neg = endpoint.calibration
    assert model_md["backend"] == "sagemaker" and model_md["version"] == meta["version"]
    assert model_md["validation_auc"] == pytest.approx(roc_auc(pos, neg)) and roc_auc(pos, neg) > 0.8
    assert model_md["endpoint"] == "proactive-ipinsights" and model_md["artifact"] == meta["model_artifact_uri"]
    assert model_md["artifact"].startswith(f"{ARTIFACTS}/models/") and model_md["skipped_ipv6"] == 1
    assert model_md["calibration"] == meta["calibration"]
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
    assert not warehouse.store.exists(warehouse.key("ip_insights_model", day, "model.npz"))

    slope, intercept = meta["calibration"]["slope"], meta["calibration"]["intercept"]
    rows = warehouse.read_table("daily_insights", day).to_pylist()
    assert {r["model_version"] for r in rows} == {meta["version"]}
    for row in rows:
        assert 0.0 <= row["insight"] <= 1.0  # the evidence judges every pair, IPv6 included
        if ":" in row["source_ip"]:  # the built-in algorithm takes IPv4 only
            assert math.isnan(row["dot_product"]) and math.isnan(row["ip_insights"])
            continue
        dot = day_dots[f"{row['entity']},{row['source_ip']}"]
        assert row["dot_product"] == dot
        assert row["ip_insights"] == pytest.approx(sigmoid(slope * dot + intercept))
    top = rows[0]
    assert top["source_ip"] == ATTACK_IP and top["insight"] >= meta["threshold"]
    insights_md = metadata("daily_insights")
    assert insights_md["skipped_ipv6"] == 1 and insights_md["unscored_pairs"] == 1
    assert insights_md["model_backend"] == "sagemaker" and insights_md["model_version"] == meta["version"]

    # Alerts read the model's metadata only. The IPv6 pair the endpoint cannot score is judged by
    # the evidence alone: a never-seen network, and the identity's first IPv6 address.
    alerted = warehouse.read_table("alerts", day).to_pylist()
    assert [a["source_ip"] for a in alerted] == [ATTACK_IP, "2001:db8::7"]
    assert metadata("alerts")["model_version"] == meta["version"]
