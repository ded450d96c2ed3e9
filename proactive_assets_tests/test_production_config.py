"""The production tests' instance is deploy/dagster.yaml with exactly three local changes (fast, no server)."""

import copy
from pathlib import Path

import pytest
import yaml

from proactive_assets_tests.production import postgres
from proactive_assets_tests.production.stack import DEPLOY_INSTANCE_YAML, max_overlap, production_instance_config


def test_derived_instance_changes_only_the_launcher_port_and_sslmode() -> None:
    deployed = yaml.safe_load(DEPLOY_INSTANCE_YAML.read_text())
    derived = production_instance_config(DEPLOY_INSTANCE_YAML, pg_port=54321)

    assert derived["run_launcher"] == {"module": "dagster", "class": "DefaultRunLauncher"}
    database = derived["storage"]["postgres"]["postgres_db"]
    assert database["port"] == 54321 and database["params"]["sslmode"] == "disable"
    expected = copy.deepcopy(deployed)
    expected["run_launcher"] = derived["run_launcher"]
    expected["storage"]["postgres"]["postgres_db"].update(port=54321, params={**database["params"]})
    assert derived == expected  # storage (env-sourced credentials, driver), coordinator, limits, retries: as deployed


def test_an_instance_file_without_postgres_storage_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "dagster.yaml"
    source.write_text("run_coordinator:\n  module: dagster.core.run_coordinator\n  class: QueuedRunCoordinator\n")
    with pytest.raises(ValueError, match=r"no storage\.postgres\.postgres_db section"):
        production_instance_config(source, pg_port=5432)


def test_missing_server_binaries_name_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(postgres, "DEBIAN_ROOT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(postgres.PostgresUnavailable, match="apt-get install postgresql"):
        postgres.find_bindir()


@pytest.mark.parametrize(
    ("spans", "peak"),
    [
        ([], 0),
        ([(0, 10), (10, 20), (20, 30)], 1),  # back to back: a slot is handed over, never shared
        ([(0, 10), (5, 15), (10, 20)], 2),
        ([(0, 10), (1, 2), (1.5, 3)], 3),
    ],
)
def test_max_overlap(spans: list[tuple[float, float]], peak: int) -> None:
    assert max_overlap(spans) == peak
