"""The Dagster UI in a real browser: lineage graph, an alert's partition metadata, the insight plot.

A small history (five days, one never-seen-network event on the fourth) is materialised through the
CLI's Dagster path into a temporary instance; ``dagster-webserver`` serves that instance and the
project's ``workspace.yaml``; headless Chromium (Debian's package, driven by Playwright) opens the
asset graph, the ``alerts`` and ``daily_insights`` partitions of the attack day, and checks what a
person auditing an alert would read there against the warehouse tables. Screenshots go to
``test-artifacts/`` at the repo root so a person can look at them.

Skips only when Chromium or the ``playwright`` package cannot be found (``.ci/run`` installs both).
"""

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import date, timedelta
from pathlib import Path

import pytest

from proactive_assets import runner
from proactive_assets.config import Settings
from proactive_assets.core.storage import LocalStore, open_store
from proactive_assets.core.warehouse import Warehouse
from proactive_assets.defs.model_store import load_model_metadata
from proactive_assets_tests.cloudtrail_fixtures import log_key, put_log, record, write_history

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
START = date(2024, 3, 1)
DAYS = [START + timedelta(days=i) for i in range(5)]
ATTACK_DAY = DAYS[3]  # the first day with 3 days of history; the day after it is the latest partition
ATTACK_IP = "185.220.101.4"
# Low enough that the injected pair alerts whatever the model's exact calibration: this test is about the UI.
THRESHOLD = "0.5"
LINEAGE = [
    "raw_cloudtrail",
    "cloudtrail_events",
    "learning_set",
    "training_set",
    "ip_insights_model",
    "daily_insights",
    "alerts",
]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_SECONDS = 90
UI_TIMEOUT_MS = 30_000
GRAPH_VIEWPORT = {"width": 2560, "height": 1000}
PAGE_VIEWPORT = {"width": 1600, "height": 1200}


def _chromium_or_skip() -> str:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip("Chromium not found (/usr/bin/chromium or on PATH): install Debian's `chromium` package")


def _playwright_or_skip():
    try:
        from playwright.sync_api import TimeoutError, sync_playwright
    except ImportError:
        pytest.skip("the `playwright` Python package is not installed (pip install -e '.[test]')")
    return sync_playwright, TimeoutError


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


@contextmanager
def _webserver(env: dict[str, str], log_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """``dagster-webserver`` on a free loopback port, in its own process group; SIGTERM on exit."""
    port = _free_port()
    command = [sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(port)]
    command += ["-w", str(REPO / "workspace.yaml")]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM, a bounded wait, then SIGKILL; the same for what is left of its process group (code server)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)  # anyone left in the group this test started?
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _wait_ready(proc: subprocess.Popen, base: str, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster-webserver exited with {proc.returncode}:\n{_log_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{base}/server_info", timeout=2) as response:
                if response.status == 200 and "dagster_webserver_version" in json.loads(response.read()):
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.5)
    pytest.fail(f"dagster-webserver did not answer within {SERVER_START_SECONDS}s:\n{_log_tail(log_path)}")


def _defined_assets(settings: Settings) -> set[str]:
    """Every asset of the definitions (security_lake_activity and whatever joins the lineage later)."""
    from proactive_assets.defs.definitions import build_definitions

    return {key.to_user_string() for key in build_definitions(settings).resolve_all_asset_keys()}


def _metadata(page) -> dict[str, str]:
    """The partition's metadata table as {key: shown text}."""
    rows = page.eval_on_selector_all(
        "tr",
        "rows => rows.filter(r => r.cells.length >= 2)"
        ".map(r => [r.cells[0].innerText.trim(), r.cells[1].innerText.trim()])",
    )
    return {key: value for key, value in rows}


def _open_partition(page, base: str, asset: str, day: date) -> dict[str, str]:
    page.goto(f"{base}/assets/{asset}?view=partitions&partition={day}", wait_until="domcontentloaded")
    page.get_by_text("Materialized", exact=True).first.wait_for()
    page.get_by_text("model_version", exact=True).first.wait_for()
    return _metadata(page)


def _markdown(page, key: str):
    """A Markdown metadata entry as rendered: inline in its row, or in the dialog behind ``[Show Markdown]``.

    Returns (locator, close): ``close()`` dismisses the dialog when there is one.
    """
    row = page.locator("tr").filter(has=page.get_by_text(key, exact=True)).first
    link = row.get_by_text("[Show Markdown]")
    if link.count() == 0:
        row.scroll_into_view_if_needed()
        return row.locator("td").nth(1), lambda: None
    link.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text(key, exact=True).first.wait_for()

    def close() -> None:
        dialog.get_by_role("button", name="Close").click()
        dialog.wait_for(state="hidden")

    return dialog, close


def _in_place(page, key: str) -> bool:
    """True when the entry renders in its row (no "[Show Markdown]" to click)."""
    row = page.locator("tr").filter(has=page.get_by_text(key, exact=True)).first
    return row.get_by_text("[Show Markdown]").count() == 0


@pytest.fixture
def ui_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_env: None) -> Settings:
    """A small materialised history in tmp dirs and a Dagster instance with telemetry and the NUX off."""
    store = LocalStore(tmp_path / "bucket")
    arns = write_history(store, START, days=len(DAYS))
    put_log(
        store,
        log_key(ATTACK_DAY, minute=45, uid="Attack0000000000"),
        [record(arn=arns[0], ip=ATTACK_IP, name="CreateAccessKey", time=f"{ATTACK_DAY}T12:00:00Z")],
    )
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    for name in list(os.environ):
        if name.startswith("PROACTIVE_") or name in ("INSIGHT_THRESHOLD", "SNS_TOPIC_ARN"):
            monkeypatch.delenv(name)
    env = {
        "PROACTIVE_HOME": str(tmp_path / "home"),
        "PROACTIVE_CLOUDTRAIL_URI": str(tmp_path / "bucket"),
        "PROACTIVE_MIN_TRAINING_DAYS": "3",
        "INSIGHT_THRESHOLD": THRESHOLD,
        "DAGSTER_HOME": str(dagster_home),
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env()


def test_ui_shows_lineage_and_alert_partition_metadata(ui_env: Settings, tmp_path: Path) -> None:
    chromium = _chromium_or_skip()
    sync_playwright, PlaywrightTimeout = _playwright_or_skip()
    from dagster import DagsterInstance

    settings = ui_env
    DagsterInstance.get().dispose()  # create the instance's storage before two processes share it
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = tmp_path / "webserver.log"
    # The webserver starts (loads the definitions) while the days are materialised.
    with _webserver(dict(os.environ), log_path) as (proc, base):
        out = io.StringIO()
        assert runner.run_days(settings, DAYS, out=out), out.getvalue()
        warehouse = Warehouse(open_store(settings.warehouse))
        alerts = warehouse.read_table("alerts", ATTACK_DAY).to_pylist()
        assert any(a["source_ip"] == ATTACK_IP for a in alerts), out.getvalue()
        insights = warehouse.read_table("daily_insights", ATTACK_DAY)
        model_version = load_model_metadata(warehouse, ATTACK_DAY)["version"]
        expected_assets = set(LINEAGE) | _defined_assets(settings)
        _wait_ready(proc, base, log_path)

        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),  # a fresh user data dir
                executable_path=chromium,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport=PAGE_VIEWPORT,
            )
            try:
                page = context.pages[0] if context.pages else context.new_page()
                page.set_default_timeout(UI_TIMEOUT_MS)
                page.set_default_navigation_timeout(UI_TIMEOUT_MS)

                # 1. The global lineage graph: side panels closed, every group expanded (Alt+E), then
                #    zoomed in if need be until the nodes show their full names (minimal nodes cut them at 18 chars).
                page.set_viewport_size(GRAPH_VIEWPORT)
                page.goto(f"{base}/asset-groups", wait_until="domcontentloaded")
                page.get_by_text("Global asset lineage").wait_for()
                zoom_in = page.locator("button:has([aria-label=zoom_in])")
                zoom_in.wait_for()
                panel_toggles = page.locator("button:has([aria-label=panel_show_right])")
                panel_toggles.filter(has_not_text="navigation").first.click()  # the asset tree beside the graph
                page.get_by_text("Hide navigation").click()
                names = page.locator("[class*=assetName]")
                raw = names.filter(has_text="raw_cloudtrail").first
                for _ in range(10):  # Alt+E toggles: press only while the groups are still collapsed
                    if raw.is_visible():
                        break
                    page.keyboard.press("Alt+e")
                    with suppress(PlaywrightTimeout):
                        raw.wait_for(timeout=2000)
                raw.wait_for()
                for _ in range(6):
                    shown = {n.strip() for n in names.all_inner_texts()}
                    if expected_assets <= shown:
                        break
                    zoom_in.click()
                    page.wait_for_timeout(400)
                assert expected_assets <= shown, f"asset graph shows {sorted(shown)}"
                with suppress(PlaywrightTimeout):  # the nodes' live statuses, for the person reading the shot
                    page.wait_for_function("() => !document.body.innerText.includes('Loading')", timeout=15_000)
                page.screenshot(path=ARTIFACTS / "ui-asset-graph.png")
                page.keyboard.press("Alt+b")  # the navigation back, for the screenshots of the pages
                page.set_viewport_size(PAGE_VIEWPORT)

                # 2. alerts, partition of the attack day (not the latest one): metadata = warehouse.
                meta = _open_partition(page, base, "alerts", ATTACK_DAY)
                page.screenshot(path=ARTIFACTS / f"ui-alerts-{ATTACK_DAY}.png")
                assert int(meta["alerts"]) == len(alerts)
                assert float(meta["threshold"]) == settings.insight_threshold == float(THRESHOLD)
                assert min(a["insight"] for a in alerts) >= settings.insight_threshold
                assert meta["model_version"] == model_version
                assert {a["model_version"] for a in alerts} == {model_version}
                assert json.loads(meta["alert_ids"]) == [a["alert_id"] for a in alerts]
                assert meta["table"] == warehouse.uri_for("alerts", ATTACK_DAY)
                preview, close = _markdown(page, "preview")
                assert _in_place(page, "preview"), "the alert preview should show without a click"
                assert ATTACK_IP in preview.inner_text() and alerts[0]["alert_id"] in preview.inner_text()
                page.screenshot(path=ARTIFACTS / f"ui-alerts-{ATTACK_DAY}-preview.png")
                close()

                # 3. daily_insights, same partition: the counts, and the distribution plot as an image.
                meta = _open_partition(page, base, "daily_insights", ATTACK_DAY)
                page.screenshot(path=ARTIFACTS / f"ui-daily_insights-{ATTACK_DAY}.png")
                assert int(meta["pairs_scored"]) == insights.num_rows
                assert int(meta["at_or_above_threshold"]) == len(alerts)
                assert meta["model_version"] == model_version
                plot, close = _markdown(page, "insight_distribution")
                assert _in_place(page, "insight_distribution"), "the plot should show without a click"
                image = plot.locator("img[src^='data:image/svg+xml']")
                image.wait_for()
                loaded = image.evaluate("img => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0")
                page.screenshot(path=ARTIFACTS / f"ui-daily_insights-{ATTACK_DAY}-insight_distribution.png")
                assert loaded, "the insight_distribution SVG (data URI) did not render as an image"
                close()
            finally:
                context.close()
