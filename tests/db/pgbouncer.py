"""A private PgBouncer in transaction mode, in front of the test's PostgreSQL: Debian's
``pgbouncer``, started on a free port for the tests that need a real pooler (the suite's
PgBouncer leg runs everything through one started by scripts/test)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(directory: Path, upstream_host: str, upstream_port: int) -> tuple[subprocess.Popen, int]:
    """PgBouncer on a free port, every database forwarded to the upstream server."""
    port = free_port()
    user = connection.settings_dict["USER"] or "postgres"
    (directory / "users.txt").write_text(f'"{user}" ""\n')
    (directory / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={upstream_host} port={upstream_port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {directory / 'users.txt'}\n"
        "pool_mode = transaction\nmax_client_conn = 200\ndefault_pool_size = 20\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
    )
    command = [BINARY, str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        shutil.chown(directory, "postgres")
        for path in directory.iterdir():
            shutil.chown(path, "postgres")
        command = ["runuser", "-u", "postgres", "--", *command]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process, port
        if process.poll() is not None:
            break
        time.sleep(0.05)  # a poll with a deadline, for the port to open
    process.kill()
    output = process.stdout.read().decode() if process.stdout else ""
    raise AssertionError(f"pgbouncer did not start on port {port}: {output}")


def direct_port() -> int:
    """The port of PostgreSQL itself: in the suite that runs through a PgBouncer
    (scripts/test), the connection's own port is that pooler's."""
    return int(
        os.environ.get("TASKMILL_PG_DIRECT_PORT") or connection.settings_dict["PORT"] or 5432
    )


@pytest.fixture
def pgbouncer() -> Iterator[int]:
    """The port of a private PgBouncer in transaction mode before the test's PostgreSQL."""
    if connection.vendor != "postgresql":
        pytest.skip("PgBouncer pools PostgreSQL connections")
    if not Path(BINARY).exists():
        pytest.skip("pgbouncer not installed (apt-get install pgbouncer; scripts/test does it)")
    settings = connection.settings_dict
    # Not under pytest's tmp_path: its parents are private to this user, and PgBouncer runs
    # as postgres when the tests run as root.
    directory = Path(tempfile.mkdtemp(prefix="taskmill-pgbouncer-"))
    directory.chmod(0o755)
    try:
        process, port = start(directory, settings["HOST"] or "127.0.0.1", direct_port())
        yield port
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
