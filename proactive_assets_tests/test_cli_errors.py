"""Every CLI error is two lines, the cause and the fix, found before any work starts; --verbose adds the trace."""

import os
import subprocess
import sys
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proactive_assets import cli
from proactive_assets.config import SAGEMAKER_SDK_NOTE, Settings, SettingsProblem, preflight
from proactive_assets.core.storage import LocalStore
from proactive_assets.defs.definitions import build_definitions
from proactive_assets_tests.cloudtrail_fixtures import log_key, put_log, record

DAY = "2024-03-05"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A clean environment: a home and a small bucket in ``tmp_path``, no other setting."""
    for name in list(os.environ):
        if name.startswith(("PROACTIVE_", "SAGEMAKER_")) or name in (
            "INSIGHT_THRESHOLD",
            "SNS_TOPIC_ARN",
            "DAGSTER_HOME",
        ):
            monkeypatch.delenv(name)
    put_log(LocalStore(tmp_path / "bucket"), log_key(datetime(2024, 3, 4).date()), [record()])
    values = {"PROACTIVE_HOME": str(tmp_path / "home"), "PROACTIVE_CLOUDTRAIL_URI": str(tmp_path / "bucket")}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def errors(capsys: pytest.CaptureFixture, *argv: str, code: int = 2) -> list[str]:
    """Run the CLI; the lines it printed on stderr (after checking the exit code)."""
    capsys.readouterr()
    assert cli.main(list(argv)) == code
    return capsys.readouterr().err.splitlines()


def run(capsys: pytest.CaptureFixture, *extra: str) -> list[str]:
    return errors(capsys, "run", "--start", DAY, "--end", DAY, *extra)


def test_a_day_before_the_start_date_names_the_setting_and_the_value_that_fits(
    env: dict, capsys: pytest.CaptureFixture
) -> None:
    assert errors(capsys, "run", "--start", "2023-09-15", "--end", "2023-09-16") == [
        "error: 2023-09-15 is before the first day partition 2024-01-01 (PROACTIVE_START_DATE)",
        "fix: set PROACTIVE_START_DATE=2023-09-01 (the first day of its training window) or earlier, and run again",
    ]
    assert errors(capsys, "run", "--start", "2023-09-15", "--end", "2023-09-16", "--no-history") == [
        "error: 2023-09-15 is before the first day partition 2024-01-01 (PROACTIVE_START_DATE)",
        "fix: set PROACTIVE_START_DATE=2023-09-15 or earlier, and run again",
    ]
    assert errors(capsys, "insights", "--day", "2023-09-15", code=1) == [
        "2023-09-15 is before the first day partition 2024-01-01 (PROACTIVE_START_DATE): it is never scored",
        "fix: set PROACTIVE_START_DATE=2023-09-01 or earlier, then `proactive-assets run --start 2023-09-15 "
        "--end 2023-09-15`",
    ]


def test_days_out_of_order_or_in_the_future(env: dict, capsys: pytest.CaptureFixture) -> None:
    assert errors(capsys, "run", "--start", "2024-03-05", "--end", "2024-03-01") == [
        "error: --end 2024-03-01 is before --start 2024-03-05",
        "fix: give the earlier day to --start",
    ]
    today = datetime.now(UTC).date()
    tomorrow = (today + timedelta(days=1)).isoformat()
    assert errors(capsys, "run", "--start", DAY, "--end", tomorrow) == [
        f"error: {tomorrow} is in the future: the last day partition is today, {today} (UTC)",
        "fix: choose an earlier --end",
    ]


def test_missing_folder_is_reported_before_any_work(
    env: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROACTIVE_CLOUDTRAIL_URI", str(tmp_path / "nowhere"))
    assert run(capsys) == [
        f"error: PROACTIVE_CLOUDTRAIL_URI: folder {tmp_path / 'nowhere'} does not exist",
        "fix: set PROACTIVE_CLOUDTRAIL_URI to an existing folder (laid out like the bucket) or to s3://bucket[/prefix]",
    ]
    assert not (tmp_path / "home").exists()  # no run, no warehouse, no Dagster instance


def test_folder_without_awslogs_is_a_note_not_an_error(env: dict, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    settings = Settings.from_env({**env, "PROACTIVE_CLOUDTRAIL_URI": str(tmp_path / "empty")})
    assert preflight(settings) == [
        f"no AWSLogs/ under {tmp_path / 'empty'}: PROACTIVE_CLOUDTRAIL_URI should be the bucket (or the trail's "
        "S3 key prefix) that holds AWSLogs/; every day will be empty"
    ]
    assert preflight(Settings.from_env(env)) == []


def test_missing_bucket(
    env: dict, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("PROACTIVE_CLOUDTRAIL_URI", "s3://no-such-bucket/trail")
    assert run(capsys) == [
        "error: PROACTIVE_CLOUDTRAIL_URI: bucket no-such-bucket does not exist",
        "fix: check the bucket name in PROACTIVE_CLOUDTRAIL_URI=s3://no-such-bucket/trail",
    ]


def test_warehouse_bucket_is_checked_too(
    env: dict, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("PROACTIVE_WAREHOUSE", "s3://no-warehouse-bucket/tables")
    assert run(capsys)[0] == "error: PROACTIVE_WAREHOUSE: bucket no-warehouse-bucket does not exist"


def test_no_aws_credentials_for_an_s3_location(
    env: dict, monkeypatch: pytest.MonkeyPatch, no_aws_credentials: None, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("PROACTIVE_CLOUDTRAIL_URI", "s3://my-trail-bucket")
    assert run(capsys) == [
        "error: no AWS credentials to read s3://my-trail-bucket (PROACTIVE_CLOUDTRAIL_URI)",
        "fix: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; or point PROACTIVE_CLOUDTRAIL_URI at "
        "a local folder",
    ]


def test_sagemaker_backend_is_checked_before_any_work(
    env: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROACTIVE_MODEL_BACKEND", "sagemaker")
    assert run(capsys) == [
        "error: PROACTIVE_MODEL_BACKEND=sagemaker needs SAGEMAKER_ROLE_ARN (the IAM role SageMaker's jobs run as)",
        "fix: set SAGEMAKER_ROLE_ARN=arn:aws:iam::<account>:role/<role>, or set PROACTIVE_MODEL_BACKEND=local",
    ]
    monkeypatch.setenv("SAGEMAKER_ROLE_ARN", "arn:aws:iam::111122223333:role/sm")
    monkeypatch.setenv("PROACTIVE_SAGEMAKER_ARTIFACTS_URI", "/tmp/artifacts")
    assert run(capsys) == [
        "error: PROACTIVE_MODEL_BACKEND=sagemaker needs PROACTIVE_SAGEMAKER_ARTIFACTS_URI, an s3:// prefix for "
        "training data and model artifacts (got '/tmp/artifacts')",
        "fix: set PROACTIVE_SAGEMAKER_ARTIFACTS_URI=s3://<bucket>/<prefix>, or set PROACTIVE_MODEL_BACKEND=local",
    ]
    assert not (tmp_path / "home").exists()


def test_sagemaker_without_the_sdk_uses_the_builtin_table_and_says_so(
    env: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    sagemaker = {
        "PROACTIVE_MODEL_BACKEND": "sagemaker",
        "SAGEMAKER_ROLE_ARN": "arn:aws:iam::111122223333:role/sm",
        "PROACTIVE_SAGEMAKER_ARTIFACTS_URI": "s3://artifacts/ipinsights",
        "AWS_REGION": "eu-west-1",
    }
    assert preflight(Settings.from_env({**env, **sagemaker})) == []  # the test extra installs the SDK
    monkeypatch.setitem(sys.modules, "sagemaker", None)  # as on a default install: import fails
    assert preflight(Settings.from_env({**env, **sagemaker})) == [SAGEMAKER_SDK_NOTE]
    with pytest.raises(SettingsProblem) as problem:
        preflight(Settings.from_env({**env, **sagemaker, "AWS_REGION": "xx-nowhere-9"}))
    assert (problem.value.cause, problem.value.fix) == (
        "the built-in table has no ipinsights image for region xx-nowhere-9 and the SageMaker SDK is not installed",
        "pip install 'proactive_assets[sagemaker]' (the SDK knows every region), or choose another AWS_REGION",
    )


def test_unreadable_setting(env: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("PROACTIVE_TRAINING_DAYS", "two")
    expected = [
        "error: unreadable setting: PROACTIVE_TRAINING_DAYS: Input should be a valid integer, unable to parse "
        "string as an integer, got 'two'",
        "fix: correct the variable or unset it for its default (the README's Configuration table lists each one)",
    ]
    assert run(capsys) == expected
    assert errors(capsys, "alerts", "--day", DAY) == expected


def test_a_path_that_cannot_be_written(env: dict, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    assert errors(capsys, "sample", str(tmp_path / "a-file" / "out"), "--days", "1") == [
        f"error: Not a directory: {tmp_path / 'a-file' / 'out'}",
        "fix: check that path, its folders and permissions",
    ]


def test_unexpected_errors_are_two_lines_and_verbose_adds_the_trace(
    env: dict, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    argv = ["sample", str(tmp_path / "out"), "--scenario", "classic", "--start", "9999-12-30", "--days", "5"]
    assert errors(capsys, *argv) == [
        "error: ValueError: year 10000 is out of range",
        "fix: run again with --verbose for the full trace",
    ]
    capsys.readouterr()
    assert cli.main([*argv, "--verbose"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "Traceback (most recent call last):"
    assert err[-2:] == [
        "error: ValueError: year 10000 is out of range",
        "fix: the trace above shows where; report it if it looks like a bug",
    ]


def test_bad_arguments_are_argparse_usage_errors(env: dict, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "--start", "2024-3-5", "--end", DAY])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "proactive-assets run: error: argument --start: expected a day as YYYY-MM-DD, got '2024-3-5'"
    )


def test_help_describes_every_command_and_option(capsys: pytest.CaptureFixture) -> None:
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert set(commands) == {"sample", "run", "insights", "alerts", "demo"}
    for name, sub in [("proactive-assets", parser), *commands.items()]:
        assert sub.description, name
        for action in sub._actions:
            assert action.help and action.help.strip(), f"{name} {action.option_strings or action.dest}"
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for name in commands:
        assert f"    {name} " in text
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    assert "--no-history" in capsys.readouterr().out


def test_building_the_definitions_emits_no_preview_warning(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_definitions(Settings(home=str(tmp_path)))
    assert not [w for w in caught if w.category.__name__ == "PreviewWarning"]


def test_console_script_prints_two_lines_and_no_traceback(env: dict, tmp_path: Path) -> None:
    """The installed ``proactive-assets`` itself, as a person runs it."""
    script = Path(sys.executable).with_name("proactive-assets")
    child_env = {**os.environ, "PROACTIVE_CLOUDTRAIL_URI": str(tmp_path / "nowhere")}
    done = subprocess.run(
        [str(script), "run", "--start", DAY, "--end", DAY], env=child_env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"error: PROACTIVE_CLOUDTRAIL_URI: folder {tmp_path / 'nowhere'} does not exist",
        "fix: set PROACTIVE_CLOUDTRAIL_URI to an existing folder (laid out like the bucket) or to s3://bucket[/prefix]",
    ]


def test_no_source_configured_on_a_fresh_home(
    env: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.delenv("PROACTIVE_CLOUDTRAIL_URI")
    sample = tmp_path / "home" / "sample"
    assert run(capsys) == [
        f"error: PROACTIVE_CLOUDTRAIL_URI is not set and the default sample folder {sample} does not exist",
        "fix: set PROACTIVE_CLOUDTRAIL_URI=s3://<bucket>[/prefix] (or a local copy laid out like the bucket), "
        f"or write sample logs there first: proactive-assets sample {sample}",
    ]


def test_no_aws_credentials_for_an_s3_warehouse_when_reading_a_day(
    env: dict, monkeypatch: pytest.MonkeyPatch, no_aws_credentials: None, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("PROACTIVE_WAREHOUSE", "s3://my-warehouse/tables")
    assert errors(capsys, "insights", "--day", DAY) == [
        "error: no AWS credentials to read s3://my-warehouse: set AWS_PROFILE or "
        "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or use a local folder)",
        "fix: check the location's setting and the AWS credentials",
    ]
