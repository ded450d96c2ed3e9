"""Settings flow one way: environment -> Settings -> the resource and the definitions built from them."""

from pathlib import Path

import pytest
from dagster import AssetKey, TimeWindowPartitionMapping

from proactive_assets.config import Settings
from proactive_assets.defs.definitions import build_definitions


def test_settings_read_every_variable_once_and_name_bad_values(tmp_path: Path) -> None:
    env = {
        "PROACTIVE_HOME": str(tmp_path),
        "PROACTIVE_ACCOUNTS": "111122223333, 444455556666",
        "PROACTIVE_TRAINING_DAYS": "7",
        "PROACTIVE_MODEL_BACKEND": "SageMaker",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "INSIGHT_THRESHOLD": "",  # empty counts as unset
    }
    settings = Settings.from_env(env)
    assert settings.accounts == ["111122223333", "444455556666"] and settings.training_days == 7
    assert settings.model_backend == "sagemaker" and settings.aws_region == "eu-west-1"
    assert settings.insight_threshold is None and settings.alert_budget == 1.0
    assert settings.warehouse == str(tmp_path / "warehouse") and settings.cloudtrail_uri == str(tmp_path / "sample")
    assert Settings.from_env({**env, "AWS_REGION": "us-west-2"}).aws_region == "us-west-2"
    for name, value in [
        ("PROACTIVE_TRAINING_DAYS", "two"),
        ("PROACTIVE_TRAINING_DAYS", "0"),
        ("INSIGHT_THRESHOLD", "1.5"),
        ("PROACTIVE_MODEL_BACKEND", "tensorflow"),
        ("PROACTIVE_START_DATE", "2024-13-01"),
    ]:
        with pytest.raises(ValueError, match=f"^{name}: .*got '{value}'$"):
            Settings.from_env({name: value})


def test_relative_home_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({"PROACTIVE_HOME": "state", "PROACTIVE_WAREHOUSE": "s3://bucket/wh"})
    assert settings.home == str(tmp_path / "state") and settings.warehouse == "s3://bucket/wh"


def test_two_definitions_with_different_settings_in_one_process(tmp_path: Path) -> None:
    early = build_definitions(Settings(home=str(tmp_path / "a"), start_date="2023-05-01", training_days=14))
    late = build_definitions(Settings(home=str(tmp_path / "b"), start_date="2024-02-01", training_days=5))
    for defs, start, window, home in ((early, "2023-05-01", 14, "a"), (late, "2024-02-01", 5, "b")):
        graph = defs.get_repository_def().asset_graph
        partitions = graph.get(AssetKey("learning_set")).partitions_def
        assert partitions.get_first_partition_key() == start
        mapping = graph.get_partition_mapping(AssetKey("training_set"), AssetKey("learning_set"))
        assert isinstance(mapping, TimeWindowPartitionMapping)
        assert (mapping.start_offset, mapping.end_offset) == (-window, -1)
        assert defs.resources["proactive"].settings.home == str(tmp_path / home)
        schedule = defs.get_repository_def().get_schedule_def("daily_schedule")
        assert schedule.job_name == "proactive_daily_job"


def test_ingest_job_is_what_a_training_window_needs(tmp_path: Path) -> None:
    """proactive_ingest_job (the CLI's history pass, a UI backfill of a window) makes learning sets, no model."""
    defs = build_definitions(Settings(home=str(tmp_path)))
    job = defs.resolve_job_def("proactive_ingest_job")
    selected = {key.to_user_string() for key in job.asset_layer.selected_asset_keys}
    assert selected == {"raw_cloudtrail", "cloudtrail_events", "security_lake_activity", "learning_set"}
    assert job.partitions_def is not None and job.partitions_def.get_first_partition_key() == "2024-01-01"
