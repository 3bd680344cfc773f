"""A throwaway PostgreSQL cluster for tests and benchmarks: initdb in a temp folder, start, stop.

Uses the server binaries Debian installs (/usr/lib/postgresql/<version>/bin). As root, the cluster
runs as the `postgres` user (PostgreSQL refuses to run as root). Durability is switched off: it is
a test database, and fsync would only make the suite slower.
Set UPGRADE_CHAT_TEST_PG_URL to use an existing server instead (an admin URL that may create
databases).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


class Unavailable(Exception):
    """No PostgreSQL server binaries here, or the cluster would not start."""


def find_bin_dir() -> Path:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    for d in reversed(dirs):
        if Path(d, "initdb").exists():
            return Path(d)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise Unavailable("PostgreSQL server binaries (initdb) not found; install the 'postgresql' "
                      "Debian package (scripts/test does this)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One throwaway cluster on 127.0.0.1:<free port>, trust auth, superuser `postgres`."""

    def __init__(self) -> None:
        self.bin = find_bin_dir()
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="upgrade-chat-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.log = self.root / "server.log"
        if self.as_root:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root needs a 'postgres' user to run the server "
                                  "(the Debian postgresql package creates it)") from None
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-sync", "--locale=C")

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise Unavailable(f"{tool} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")

    def start(self) -> None:
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.root} -c fsync=off "
                f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w",
                  "-t", "60", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self, pause: float = 0.0) -> None:
        """Stop (fast: open transactions are rolled back, clients disconnected), wait `pause`
        seconds, start again on the same data folder and port: every URL stays valid."""
        self.stop()
        if pause > 0:
            time.sleep(pause)
        self.start()

    def destroy(self) -> None:
        try:
            self.stop()
        except Unavailable:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"


def create_database(admin_url: str, name: str) -> str:
    """(Re)create database `name` on the server of `admin_url`; return its URL."""
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def server_version(url: str) -> str:
    """The server's version, e.g. "15.14" (SHOW server_version, without the distribution's
    suffix)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.scalar(text("SHOW server_version"))).split()[0]
    finally:
        engine.dispose()


def start_server() -> tuple[str, Cluster | None]:
    """An admin URL: UPGRADE_CHAT_TEST_PG_URL if set, else a new throwaway cluster (returned too)."""
    url = os.environ.get("UPGRADE_CHAT_TEST_PG_URL")
    if url:
        return url, None
    cluster = Cluster()
    cluster.start()
    return cluster.admin_url, cluster
