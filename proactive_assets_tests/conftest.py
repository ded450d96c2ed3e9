"""Shared fixtures: hermetic AWS settings, moto's standalone server on 127.0.0.1, sample paths."""

import os
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from proactive_assets.defs.resources import ProactiveResource

os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

#: Test data shipped with the suite (cloudtrail/, cloudtrail_edge/, ocsf/, securitylake_workshop/):
#: see data/PROVENANCE.md. Tests read samples from here only, so a fresh clone runs them all.
SAMPLES = Path(__file__).resolve().parent / "data"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and a region, so nothing can reach a real account."""
    for name in ["AWS_PROFILE", "AWS_SESSION_TOKEN", *(n for n in os.environ if n.startswith("AWS_ENDPOINT_URL"))]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it caches credentials resolved by earlier tests
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's standalone server on 127.0.0.1; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_endpoint(moto_server: str, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point every boto3 client of the test at the moto server, and reset it afterwards."""
    import urllib.request

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    yield moto_server
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")).read()


def project_resource(home: Path | str, **settings: Any) -> "ProactiveResource":
    """The resource ``build_definitions`` gives for ``Settings(home=home, **settings)``."""
    from proactive_assets.config import Settings
    from proactive_assets.defs.resources import ProactiveResource

    return ProactiveResource.from_settings(Settings(home=str(home), **settings))


def project_assets(res: "ProactiveResource", *names: str) -> list:
    """The assets called ``names``, built for the resource's settings (its partitions and window)."""
    from proactive_assets.defs.definitions import build_definitions

    by_name = {key.to_user_string(): a for a in build_definitions(res.settings).assets for key in a.keys}
    return [by_name[name] for name in names]


def peak_allocated(fn: Callable[[], Any]) -> tuple[Any, int]:
    """fn()'s result and the most bytes Python (and the scanner) held at once while it ran."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        return result, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "production: the production path in separate processes (PostgreSQL, code server, daemon, webserver); "
        "select with -m production",
    )
