"""Throwaway PostgreSQL and Redis servers on loopback, for the tests and the benchmarks.

    python -m tests.servers -- COMMAND ...

starts a fresh PostgreSQL cluster and Redis server in a temporary directory, runs COMMAND
with TEST_DATABASE_URL and TEST_REDIS_URL pointing at them (tests/settings.py reads only
those, never DATABASE_URL or HUEY_REDIS_URL, so the tests cannot touch a production
database or queue), then stops both by PID and deletes the directory. Its exit code is the
command's.

PostgreSQL comes from Debian's packages (/usr/lib/postgresql/<version>/bin); `initdb`
refuses to run as root, so as root the cluster belongs to the `postgres` user.
"""

import argparse
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(port: int, what: str, process=None, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:g} s")
        time.sleep(0.05)


def postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    return Path(found[-1]).parent


def as_owner(command: list[str], owner) -> list[str]:
    """Run as the cluster's owner when we are root (initdb and postgres refuse root)."""
    if owner is None:
        return command
    return ["runuser", "-u", owner, "--", *command]


class Postgres:
    def __init__(self, base: Path):
        self.dir = base / "pg"
        self.socket_dir = base / "pg-socket"
        self.port = free_port()
        self.owner = "postgres" if os.geteuid() == 0 else None
        self.process = None

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/mlops"

    def start(self):
        bin_dir = postgres_bin()
        for path in (self.dir, self.socket_dir):
            path.mkdir(mode=0o700)
            if self.owner:
                record = pwd.getpwnam(self.owner)
                os.chown(path, record.pw_uid, record.pw_gid)
        subprocess.run(
            as_owner([str(bin_dir / "initdb"), "-D", str(self.dir), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                      "--no-sync"], self.owner),
            check=True, stdout=subprocess.DEVNULL,
        )
        # Tuned for a throwaway cluster: no fsync (a crash loses nothing we keep), enough
        # connections for three workers of four threads, a web server and the tests.
        options = [
            "-p", str(self.port), "-k", str(self.socket_dir), "-c", "listen_addresses=127.0.0.1",
            "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200",
        ]
        log = open(self.dir.parent / "postgres.log", "ab")
        self.process = subprocess.Popen(
            as_owner([str(bin_dir / "postgres"), "-D", str(self.dir), *options], self.owner),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_listening(self.port, "PostgreSQL", self.process)
        deadline = time.monotonic() + 30
        while True:  # listening is not yet accepting: wait for createdb to work
            done = subprocess.run(
                [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "mlops"],
                capture_output=True,
            )
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"createdb failed: {done.stderr.decode()}")
            time.sleep(0.1)

    def stop(self):
        # The postmaster itself, by the PID it wrote: as root it runs under runuser, which
        # does not always pass the signal on, and a cluster left running outlives the run.
        try:
            postmaster = int((self.dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            postmaster = None
        stop_process(self.process, signal.SIGINT)  # PostgreSQL's "fast" shutdown
        if postmaster is not None:
            stop_pid(postmaster, signal.SIGINT)


class Redis:
    def __init__(self, base: Path):
        self.dir = base / "redis"
        self.port = free_port()
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.dir.mkdir()
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_listening(self.port, "Redis", self.process)

    def stop(self):
        stop_process(self.process, signal.SIGTERM)


def stop_process(process, sig):
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_pid(pid: int, sig):
    """Signal a process that is not our child, and wait (polling) until it is gone; SIGKILL
    after 20 s."""
    deadline = time.monotonic() + 20
    try:
        os.kill(pid, sig)
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@contextlib.contextmanager
def servers():
    """Start PostgreSQL and Redis; yields the environment that points the tests at them."""
    base = Path(tempfile.mkdtemp(prefix="mlops-servers-"))
    os.chmod(base, 0o755)  # the postgres user must reach its directories
    postgres, redis = Postgres(base), Redis(base)
    try:
        postgres.start()
        redis.start()
        yield {"TEST_DATABASE_URL": postgres.url, "TEST_REDIS_URL": redis.url}
    finally:
        redis.stop()
        postgres.stop()
        shutil.rmtree(base, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run (after --)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command to run after --")
    with servers() as env:
        print(f"PostgreSQL at {env['TEST_DATABASE_URL']}, Redis at {env['TEST_REDIS_URL']}", flush=True)
        child = subprocess.Popen(command, env={**os.environ, **env})
        try:
            return child.wait()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)
            return child.wait()


if __name__ == "__main__":
    sys.exit(main())
