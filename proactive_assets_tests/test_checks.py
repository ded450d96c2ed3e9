"""Data-quality checks: the pure rules, and the checks run in the same Dagster run as their assets."""

import gzip
from datetime import date, timedelta
from pathlib import Path

from proactive_assets import runner
from proactive_assets.config import Settings
from proactive_assets.core import quality
from proactive_assets.core.storage import LocalStore
from proactive_assets_tests.cloudtrail_fixtures import log_key, write_history

START = date(2024, 3, 1)


def test_parse_ratio_and_quarantine_rules() -> None:
    assert quality.parse_ratio(0, 0)[1].passed
    ratio, verdict = quality.parse_ratio(10, 1)
    assert ratio == 0.9 and not verdict.passed and "9 of 10" in verdict.description
    assert quality.quarantine_count(0, 3).passed and not quality.quarantine_count(1, 0).passed


def test_alert_volume_against_recent_norm() -> None:
    assert quality.alert_volume(40, [])[1].passed  # no history yet
    bound, verdict = quality.alert_volume(40, [2, 3, 4])
    assert bound == 3 * 3 + 5 and not verdict.passed
    assert quality.alert_volume(10, [2, 3, 4])[1].passed


def test_checks_run_with_their_assets(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "bucket")
    write_history(store, START, days=4)
    last = START + timedelta(days=3)
    store.put(log_key(last, minute=50, uid="Broken0000000000"), gzip.compress(b'{"Records": [')[:-4])
    settings = Settings.from_env(
        {"PROACTIVE_HOME": str(tmp_path / "home"), "PROACTIVE_CLOUDTRAIL_URI": str(tmp_path / "bucket")}
    )
    assert runner.run_days(settings, [START + timedelta(days=i) for i in range(4)])
    from dagster import AssetCheckKey, AssetKey

    instance = runner.instance(settings)

    def latest(asset: str, check: str):
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [AssetCheckKey(AssetKey(asset), check)]
        )[AssetCheckKey(AssetKey(asset), check)]
        return record.event.dagster_event.event_specific_data

    quarantine = latest("cloudtrail_events", "cloudtrail_quarantine")
    assert quarantine.passed is False and quarantine.metadata["quarantined_objects"].value == 1
    assert latest("learning_set", "learning_set_not_empty").passed is True
    assert latest("alerts", "alert_volume").passed is True
