"""The project as production runs it, as separate processes on one machine.

``ProductionStack`` starts the three long-running processes of ``deploy/``: the code location
as a gRPC code server (``dagster api grpc -m proactive_assets.defs.definitions``), the daemon
(``dagster-daemon run``) and the webserver (``dagster-webserver``), all on a Dagster instance
derived from ``deploy/dagster.yaml`` (``production_instance_config``). Every process is started
in its own process group, so stopping or killing a service takes its children (run workers)
with it; ``close()`` ends all of them, whatever state the test left them in.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from proactive_assets_tests.production.postgres import PostgresServer, free_port

REPO = Path(__file__).resolve().parents[2]
DEPLOY_INSTANCE_YAML = REPO / "deploy" / "dagster.yaml"
MODULE = "proactive_assets.defs.definitions"
LOCATION = "proactive_assets"
REPOSITORY = "__repository__"  # the name Dagster gives the repository of a Definitions object
BIN = Path(sys.executable).parent

T = TypeVar("T")

#: Variables of the developer's shell that must not leak into the stack (it would read their AWS or data).
_LEAKY_PREFIXES = ("AWS_", "PROACTIVE_", "DAGSTER_", "SAGEMAKER_", "SNS_", "INSIGHT_")


def production_instance_config(source: Path, pg_port: int) -> dict[str, Any]:
    """``deploy/dagster.yaml`` made runnable here, with as few changes as possible.

    Kept as they are: storage on PostgreSQL (its connection settings still come from the
    ``DAGSTER_PG_*`` variables), the queued run coordinator and its ``concurrency`` limits,
    run monitoring, run retries, sensor and schedule threads, telemetry. Changed: the port (the
    file says 5432; the test server listens on a free one), ``sslmode`` (the test server has no
    certificate), and the ECS run launcher, replaced by Dagster's default launcher, which asks
    the code server to start each run in a subprocess (there is no ECS here).
    """
    config = yaml.safe_load(source.read_text())
    try:
        database = config["storage"]["postgres"]["postgres_db"]
    except (KeyError, TypeError):
        raise ValueError(
            f"{source} has no storage.postgres.postgres_db section; the production set-up needs one"
        ) from None
    database["port"] = pg_port
    database["params"] = {**(database.get("params") or {}), "sslmode": "disable"}
    config["run_launcher"] = {"module": "dagster", "class": "DefaultRunLauncher"}
    return config


def wait_for(
    condition: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.5,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = on_timeout() if on_timeout else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}\n{detail}".rstrip())
        time.sleep(interval)


def clean_environment() -> dict[str, str]:
    """This process's environment without AWS, Dagster and project settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY_PREFIXES)}


@contextmanager
def environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block (Dagster resolves ``env:`` config on load)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class Service:
    """One long-running process, in its own process group, with its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    popen: subprocess.Popen | None = None
    started_at: float = 0.0

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        with self.log.open("ab") as out:
            out.write(f"\n===== {' '.join(self.argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.argv, env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.started_at = time.time()

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def _signal_group(self, sig: int) -> bool:
        if self.popen is None:
            return False
        try:
            os.killpg(self.popen.pid, sig)  # the group id is the leader's pid (start_new_session)
            return True
        except ProcessLookupError:
            return False

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash or an OOM kill would."""
        self._signal_group(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(timeout=30)

    def terminate(self) -> None:
        """Ask the whole group to stop (SIGTERM); ``finish`` makes sure it did."""
        self._signal_group(signal.SIGTERM)

    def finish(self, deadline: float) -> None:
        """Wait for the group until ``deadline`` (``time.monotonic()``), then SIGKILL whatever is left."""
        if self.popen is None:
            return
        with suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        self._signal_group(signal.SIGKILL)  # stragglers of the group too, even when the leader exited
        with suppress(subprocess.TimeoutExpired):  # a process that survives SIGKILL: nothing more to do
            self.popen.wait(timeout=30)

    def stop(self, grace: float = 10) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after ``grace`` seconds."""
        self.terminate()
        self.finish(time.monotonic() + grace)

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return f"--- {self.name}: no log"
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.name} ({self.log}):\n" + "\n".join(text)


@dataclass
class ProductionStack:
    """Code server + daemon + webserver on a PostgreSQL-backed instance from ``deploy/dagster.yaml``."""

    root: Path
    postgres: PostgresServer
    database: str
    code_env: dict[str, str]
    instance_source: Path = DEPLOY_INSTANCE_YAML
    services: dict[str, Service] = field(default_factory=dict)
    _instance: Any = None

    def __post_init__(self) -> None:
        self.home = self.root / "dagster_home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.grpc_port = free_port()
        self.web_port = free_port()
        self.instance_config = production_instance_config(self.instance_source, self.postgres.port)
        (self.home / "dagster.yaml").write_text(yaml.safe_dump(self.instance_config, sort_keys=False))
        workspace = {
            "load_from": [{"grpc_server": {"host": "127.0.0.1", "port": self.grpc_port, "location_name": LOCATION}}]
        }
        (self.home / "workspace.yaml").write_text(yaml.safe_dump(workspace))
        self.pg_env = {
            "DAGSTER_PG_HOST": self.postgres.host,
            "DAGSTER_PG_USER": self.postgres.user,
            "DAGSTER_PG_PASSWORD": self.postgres.password,
            "DAGSTER_PG_DB": self.database,
        }
        dagster_env = {
            **clean_environment(),
            **self.pg_env,
            "DAGSTER_HOME": str(self.home),
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "PYTHONUNBUFFERED": "1",
        }
        workspace_file = str(self.home / "workspace.yaml")
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        self.services = {
            "code": Service(
                "code server",
                [
                    str(BIN / "dagster"),
                    "api",
                    "grpc",
                    "-m",
                    MODULE,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.grpc_port),
                ],
                {**dagster_env, **self.code_env},
                self.root,
                logs / "code-server.log",
            ),
            "webserver": Service(
                "webserver",
                [str(BIN / "dagster-webserver"), "-w", workspace_file, "-h", "127.0.0.1", "-p", str(self.web_port)],
                dagster_env,
                self.root,
                logs / "webserver.log",
            ),
            "daemon": Service(
                "daemon",
                [str(BIN / "dagster-daemon"), "run", "-w", workspace_file],
                dagster_env,
                self.root,
                logs / "daemon.log",
            ),
        }

    # ------------------------------------------------------------------------------ processes

    @property
    def code(self) -> Service:
        return self.services["code"]

    @property
    def daemon(self) -> Service:
        return self.services["daemon"]

    @property
    def webserver(self) -> Service:
        return self.services["webserver"]

    def logs(self, lines: int = 40) -> str:
        return "\n".join(service.tail(lines) for service in self.services.values())

    def _port_open(self, port: int) -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    def _alive(self, service: Service) -> bool:
        if not service.running:
            code = service.popen.returncode if service.popen else "?"
            raise RuntimeError(f"{service.name} exited with code {code}\n{service.tail()}")
        return True

    def start(self, timeout: float = 120) -> None:
        """Start the code server, then the webserver and daemon; return when all three are serving."""
        self.code.start()
        wait_for(
            lambda: self._alive(self.code) and self._port_open(self.grpc_port),
            timeout,
            "the code server",
            on_timeout=self.logs,
        )
        self.webserver.start()
        self.daemon.start()
        wait_for(
            lambda: self._alive(self.webserver) and self.location_loaded(),
            timeout,
            "the webserver to load the code location",
            on_timeout=self.logs,
        )
        self.wait_daemon_healthy(timeout)

    def restart_daemon(self, timeout: float = 120) -> None:
        self.daemon.start()
        self.wait_daemon_healthy(timeout)

    def wait_daemon_healthy(self, timeout: float = 120) -> None:
        """Until every required daemon has sent a heartbeat since the daemon process started."""
        since = self.daemon.started_at

        def healthy() -> bool:
            self._alive(self.daemon)
            data = self.graphql(
                "{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy lastHeartbeatTime } } } }"
            )
            statuses = [s for s in data["instance"]["daemonHealth"]["allDaemonStatuses"] if s["required"]]
            return bool(statuses) and all(s["healthy"] and (s["lastHeartbeatTime"] or 0) >= since for s in statuses)

        wait_for(healthy, timeout, "every required daemon to send a heartbeat", interval=1, on_timeout=self.logs)

    def close(self, grace: float = 10) -> None:
        """Stop every process (all at once: each may take seconds to wind down) and the instance."""
        services = [self.services[name] for name in ("daemon", "webserver", "code")]
        for service in services:
            service.terminate()
        deadline = time.monotonic() + grace
        for service in services:
            service.finish(deadline)
        if self._instance is not None:
            self._instance.dispose()
            self._instance = None

    # -------------------------------------------------------------------------------- clients

    @property
    def instance(self) -> Any:
        """A ``DagsterInstance`` on the same ``dagster.yaml`` and database, for assertions."""
        if self._instance is None:
            from dagster import DagsterInstance

            with environ(self.pg_env):
                self._instance = DagsterInstance.from_config(str(self.home))
        return self._instance

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None, timeout: float = 60) -> dict[str, Any]:
        """POST to the webserver's GraphQL API; the ``data`` of the answer (errors raise)."""
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.web_port}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
        if answer.get("errors"):
            raise RuntimeError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def location_loaded(self) -> bool:
        try:
            data = self.graphql(
                "{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus "
                "locationOrLoadError { __typename ... on PythonError { message } } } } } }",
                timeout=10,
            )
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False
        entries = data["workspaceOrError"].get("locationEntries", [])
        for entry in entries:
            error = entry.get("locationOrLoadError") or {}
            if error.get("__typename") == "PythonError":
                raise RuntimeError(f"code location {entry['name']} failed to load: {error.get('message')}")
        return any(e["name"] == LOCATION and e["loadStatus"] == "LOADED" and e["locationOrLoadError"] for e in entries)

    @property
    def repository_selector(self) -> dict[str, str]:
        return {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}

    def start_sensor(self, name: str) -> None:
        data = self.graphql(
            "mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename "
            "... on Sensor { sensorState { status } } ... on PythonError { message } } }",
            {"s": {**self.repository_selector, "sensorName": name}},
        )
        result = data["startSensor"]
        if result["__typename"] != "Sensor" or result["sensorState"]["status"] != "RUNNING":
            raise RuntimeError(f"could not start sensor {name}: {result}")


def start_moto_server(root: Path, timeout: float = 60) -> tuple[Service, str]:
    """moto's standalone server as its own process on a free port of 127.0.0.1: (service, endpoint URL).

    A process rather than the in-pytest thread of ``conftest.moto_server``: the code server, every
    run worker and the test all call it at once, and in-process it would share the test's GIL.
    """
    port = free_port()
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    service = Service(
        "moto server", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], clean_environment(), root,
        logs / "moto.log",
    )  # fmt: skip
    service.start()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if not service.running:
            raise RuntimeError(f"moto server exited\n{service.tail()}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    try:
        wait_for(ready, timeout, "moto's server", on_timeout=service.tail)
    except BaseException:
        service.stop()
        raise
    return service, url


# ------------------------------------------------------------------------------------- sensors


def sensor_state(instance: Any, name: str) -> Any:
    """The stored ``InstigatorState`` of the sensor called ``name`` (it exists once started)."""
    from dagster._core.definitions.run_request import InstigatorType

    states = [s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR) if s.name == name]
    if len(states) != 1:
        raise LookupError(f"expected one stored state for sensor {name}, found {len(states)}")
    return states[0]


def sensor_ticks(instance: Any, name: str) -> list[Any]:
    """Every tick of the sensor, newest first."""
    state = sensor_state(instance, name)
    return list(instance.get_ticks(state.instigator_origin_id, state.selector_id))


def wait_for_tick(stack: "ProductionStack", name: str, after: int, timeout: float = 120) -> Any:
    """The first finished tick of ``name`` beyond the ``after`` ticks already recorded."""
    from dagster._core.scheduler.instigation import TickStatus

    def finished() -> Any:
        ticks = sensor_ticks(stack.instance, name)
        if len(ticks) <= after:
            return None
        tick = ticks[len(ticks) - after - 1]  # oldest new tick
        if tick.status == TickStatus.FAILURE:
            raise AssertionError(f"tick of {name} failed: {tick.error}")
        return tick if tick.status in (TickStatus.SUCCESS, TickStatus.SKIPPED) else None

    return wait_for(finished, timeout, f"a new tick of {name}", on_timeout=stack.logs)


def fast_forward_sensor(instance: Any, name: str) -> None:
    """Make the sensor due now instead of after its ``minimum_interval_seconds`` (300 s here).

    The daemon ticks a sensor when the time since its last tick, as stored in the instance,
    reaches the interval; moving the stored times back by the interval is what five minutes of
    waiting would do, without touching the cursor. Call it only between ticks.
    """
    from dagster._core.scheduler.instigation import TickStatus

    ticks = sensor_ticks(instance, name)
    if ticks and ticks[0].status == TickStatus.STARTED:
        raise RuntimeError(f"sensor {name} is in the middle of a tick")
    state = sensor_state(instance, name)
    data = state.instigator_data
    interval = float(data.min_interval or 0)
    shifted = data._replace(
        last_tick_timestamp=(data.last_tick_timestamp or 0) - interval,
        last_tick_start_timestamp=(data.last_tick_start_timestamp or 0) - interval,
    )
    instance.update_instigator_state(state.with_data(shifted))


# ----------------------------------------------------------------------------------------- runs


def wait_for_runs(stack: "ProductionStack", run_ids: list[str], timeout: float = 240) -> list[Any]:
    """The runs, once every one of them has finished (success or not)."""

    def finished() -> list[Any] | None:
        runs = [stack.instance.get_run_by_id(run_id) for run_id in run_ids]
        return runs if all(r is not None and r.is_finished for r in runs) else None

    def describe() -> str:
        states = [
            (r.tags.get("dagster/partition"), r.status.value)
            for r in (stack.instance.get_run_by_id(i) for i in run_ids)
            if r
        ]
        return f"runs: {states}\n{stack.logs()}"

    return wait_for(finished, timeout, f"{len(run_ids)} run(s) to finish", interval=1, on_timeout=describe)


def run_failure_details(instance: Any, run_id: str) -> str:
    """The error messages of a failed run's events, for assertion messages."""
    from dagster import DagsterEventType

    lines = []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type in (DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE):
            error = getattr(event.event_specific_data, "error", None)
            lines.append(
                f"{event.event_type_value} {event.step_key or ''}: {error.message.strip() if error else record.message}"
            )
    return "\n".join(lines) or "(no failure events)"


def timeline(instance: Any) -> str:
    """One line per run: partition, status, seconds from creation to start and from start to end."""
    records = sorted(instance.get_run_records(), key=lambda r: r.create_timestamp)
    if not records:
        return "no runs"
    origin = records[0].create_timestamp.timestamp()
    lines = []
    for record in records:
        run = record.dagster_run
        created = record.create_timestamp.timestamp() - origin
        started = f"{record.start_time - origin:6.1f}" if record.start_time else "     -"
        ended = f"{record.end_time - origin:6.1f}" if record.end_time else "     -"
        lines.append(
            f"{run.run_id[:8]} {run.tags.get('dagster/partition', '-'):10} {run.status.value:10} "
            f"created {created:6.1f} started {started} ended {ended} {run.tags.get('dagster/backfill', '')}"
            f"{' retry of ' + run.parent_run_id[:8] if run.parent_run_id else ''}"
        )
    return "\n".join(lines)


def worker_pid(instance: Any, run_id: str) -> int | None:
    """The pid of the process executing the run's steps (the in-process executor logs it), once known."""
    from dagster import DagsterEventType

    for record in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        metadata = record.dagster_event.engine_event_data.metadata if record.dagster_event else {}
        if "pid" in metadata and "step_keys" in metadata:
            return int(metadata["pid"].value)
    return None


def launch_job_backfill(stack: "ProductionStack", job: str, partitions: list[str]) -> str:
    """Launch a backfill of ``job`` over ``partitions`` through the webserver's GraphQL API; its id."""
    data = stack.graphql(
        "mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) { __typename "
        "... on LaunchBackfillSuccess { backfillId } ... on Error { message } } }",
        {
            "p": {
                "selector": {
                    "partitionSetName": f"{job}_partition_set",
                    "repositorySelector": stack.repository_selector,
                },
                "partitionNames": partitions,
            }
        },
    )
    result = data["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"backfill not launched: {result}")
    return result["backfillId"]


def occupancy(instance: Any, run_ids: list[str]) -> list[tuple[float, float]]:
    """(launched, ended) of each finished run, from its RUN_STARTING and final events in the event log.

    RUN_STARTING is written when the coordinator hands the run to the launcher, i.e. when the
    run takes one of the coordinator's slots; the success or failure event is when it gives it back.
    """
    from dagster import DagsterEventType

    spans = []
    for run_id in run_ids:
        starting = instance.all_logs(run_id, of_type=DagsterEventType.RUN_STARTING)
        ended = instance.all_logs(run_id, of_type={DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE})
        if len(starting) != 1 or len(ended) != 1:
            raise AssertionError(f"run {run_id}: {len(starting)} RUN_STARTING and {len(ended)} end events")
        spans.append((starting[0].timestamp, ended[0].timestamp))
    return spans


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The largest number of spans open at the same moment."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    open_now = peak = 0
    for _, change in events:  # an end sorts before a start at the same instant
        open_now += change
        peak = max(peak, open_now)
    return peak
