"""A throwaway PostgreSQL server for the production tests, from Debian's ``postgresql`` package.

``initdb`` + ``pg_ctl`` on a data directory under a fresh temp folder, listening on a free port
of 127.0.0.1 only, with password (SCRAM) authentication like a managed database. ``initdb``
refuses to run as root, so as root every server command runs as the ``postgres`` user that the
Debian package creates (``runuser``); as anyone else it runs as that user.

Durability is switched off (``fsync``, ``synchronous_commit``): the data dies with the test
session, and the tests are about Dagster's behaviour on PostgreSQL, not about crash safety of
PostgreSQL itself.
"""

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

USER = "dagster"
SERVICE_USER = "postgres"  # created by Debian's postgresql package; runs the server when we are root
INSTALL_HINT = "apt-get install postgresql (bash .ci/run does it when run as root)"
DEBIAN_ROOT = Path("/usr/lib/postgresql")  # Debian's versioned server folders: <version>/bin


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here (the message says how to get them)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _version(path: Path) -> tuple[int, ...]:
    match = re.search(r"/postgresql/([\d.]+)/", str(path))
    return tuple(int(p) for p in match.group(1).split(".")) if match else (0,)


def find_bindir() -> Path:
    """The newest PostgreSQL server ``bin`` folder (Debian's layout first, then ``PATH``)."""
    candidates = sorted(DEBIAN_ROOT.glob("*/bin/pg_ctl"), key=_version, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve())
    for pg_ctl in candidates:
        if (pg_ctl.parent / "initdb").exists() and (pg_ctl.parent / "postgres").exists():
            return pg_ctl.parent
    raise PostgresUnavailable(f"no PostgreSQL server binaries (initdb, pg_ctl) found: {INSTALL_HINT}")


def _service_account() -> pwd.struct_passwd | None:
    """The account the server runs as: ``postgres`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root and there is no '{SERVICE_USER}' user to run initdb as: {INSTALL_HINT}"
        ) from None


@dataclass
class PostgresServer:
    """A running server; ``stop()`` ends it and deletes its data."""

    bindir: Path
    root: Path
    port: int
    password: str
    account: pwd.struct_passwd | None
    host: str = "127.0.0.1"
    user: str = USER

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "postgres.log"

    def _run(self, args: Sequence[str], timeout: float = 120, env: dict[str, str] | None = None) -> str:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.account is not None:
            command = ["runuser", "-u", self.account.pw_name, "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env, cwd=self.root, check=False
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): " + " | ".join(tail))
        return done.stdout

    def client_env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10"}

    def psql(self, database: str, sql: str) -> str:
        """Run ``sql`` through ``psql`` over TCP as the Dagster user; tab-separated rows, no header."""
        return self._run(
            ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
             "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database, "-c", sql],
            env=self.client_env(),
        )  # fmt: skip

    def create_database(self, name: str) -> str:
        self.psql("postgres", f'CREATE DATABASE "{name}"')
        return name

    def start(self) -> None:
        options = (
            f"-c listen_addresses={self.host} -c port={self.port} -c unix_socket_directories={self.root}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run(
            ["pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-o", options, "-w", "-t", "60", "start"]
        )

    def stop(self) -> None:
        """Stop the server (immediately: nothing needs to survive) and delete the temp folder."""
        try:
            if (self.datadir / "postmaster.pid").exists():
                self._run(["pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "-t", "30", "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """initdb a temp data directory and start a server on a free port of 127.0.0.1."""
    bindir = find_bindir()
    account = _service_account()
    # Not under pytest's tmp_path: its parents are private to our user, and the server may run as another.
    root = Path(tempfile.mkdtemp(prefix="proactive-postgres-"))
    server = PostgresServer(bindir=bindir, root=root, port=free_port(), password=secrets.token_hex(16), account=account)
    try:
        pwfile = root / "pwfile"
        pwfile.write_text(server.password + "\n")
        if account is not None:
            for path in (root, pwfile):
                os.chown(path, account.pw_uid, account.pw_gid)
        server._run(
            ["initdb", "-D", str(server.datadir), "-U", USER, f"--pwfile={pwfile}", "--auth-local=trust",
             "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync"],
        )  # fmt: skip
        pwfile.unlink()
        server.start()
    except BaseException:
        log = server.logfile.read_text(errors="replace")[-2000:] if server.logfile.exists() else ""
        server.stop()
        if log:
            print(f"PostgreSQL log:\n{log}")
        raise
    return server
