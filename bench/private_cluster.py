"""A throw-away PostgreSQL cluster of the bench's own, for figures that need autovacuum.

The shared server of this machine runs with ``autovacuum = off`` (its CI configuration keeps
other measurements steady), and autovacuum cannot be turned on for one table when it is off
for the server. Retention at volume is about what autovacuum does, so ``bench.retention``
starts a cluster of its own: ``initdb`` into a temporary directory, the server's defaults
(autovacuum on) plus what the caller gives, on a free port of 127.0.0.1, stopped and deleted
at the end. The bench's processes find it through ``TASKMILL_BENCH_PGPORT``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Cluster:
    bindir: Path
    datadir: Path
    port: int
    run_as: list[str]  # a prefix that runs a command as the cluster's owner

    @property
    def log(self) -> Path:
        return self.datadir / "server.log"

    def pg_ctl(self, *args: str) -> None:
        cmd = [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        try:
            self.pg_ctl("-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.datadir, ignore_errors=True)


def find_bindir() -> Path:
    """Where initdb and pg_ctl are: beside pg_config on PATH, else Debian's newest."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
        bindir = Path(out.stdout.strip())
        if (bindir / "initdb").exists():
            return bindir
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    if not found:
        raise SystemExit("bench: no initdb found (install PostgreSQL's server package)")
    return Path(found[-1]).parent


def _major(path: str) -> int:
    try:
        return int(Path(path).parent.parent.name)
    except ValueError:
        return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(settings: dict[str, str]) -> Cluster:
    """initdb and start a cluster with ``settings`` (name -> value) on top of the defaults;
    point this process's environment (and its children's) at it."""
    bindir = find_bindir()
    datadir = Path(tempfile.mkdtemp(prefix="taskmill-bench-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: as its own system user
        owner = pwd.getpwnam("postgres")
        os.chown(datadir, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    initdb = [*run_as, str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres"]
    initdb += ["--auth=trust", "-E", "UTF8", "--no-instructions"]
    subprocess.run(initdb, check=True, stdout=subprocess.DEVNULL)
    cluster = Cluster(bindir=bindir, datadir=datadir, port=free_port(), run_as=run_as)
    options = {
        "port": str(cluster.port),
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(datadir),
        **settings,
    }
    flags = " ".join(f"-c {name}={value}" for name, value in options.items())
    try:
        cluster.pg_ctl("-o", flags, "-l", str(cluster.log), "-w", "start")
    except subprocess.CalledProcessError:
        print(cluster.log.read_text() if cluster.log.exists() else "(no server log)")
        shutil.rmtree(datadir, ignore_errors=True)
        raise
    os.environ["TASKMILL_BENCH_PGHOST"] = "127.0.0.1"
    os.environ["TASKMILL_BENCH_PGPORT"] = str(cluster.port)
    return cluster
