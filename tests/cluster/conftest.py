"""A real Dask cluster for the tests in this folder: ``dask scheduler`` and two ``dask worker``
processes on 127.0.0.1, each started as its own process (group), as an administrator would.

The workers get an environment of their own: an empty workspace and a key-file path that does
not exist, so a test can check that heavy steps never need the encryption key, the registry or
the workspace on a worker (the README promises that). Everything started here is killed at
teardown, also when a test fails; the logs are under the fixture's folder and are printed in
failure messages.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent
DASK = BIN / "dask"
MEDIMG = BIN / "medimg"
WORKERS = ("w1", "w2")
PSEUDONYM_KEY = secrets.token_hex(32)
"""One pseudonymisation key for every command here, so that stored case IDs compare equal
across workspaces."""
STARTUP_TIMEOUT = 120.0
"""Seconds to wait for a scheduler or worker to come up (a failure guard, not a measurement)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal ``proc``'s whole process group (a worker's nanny and its worker process)."""
    if proc.poll() is None or sig == signal.SIGKILL:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``medimg`` command in these tests: its own workspace, the test
    session's key file (set by tests/conftest.py), no database URL and no scheduler unless
    given with ``--scheduler``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIMG_", "DASK_"))}
    env.update(
        {
            "MEDIMG_HOME": str(home),
            "MEDIMG_KEY_FILE": os.environ["MEDIMG_KEY_FILE"],
            "MEDIMG_PSEUDONYM_KEY": PSEUDONYM_KEY,
            **extra,
        }
    )
    return env


def medimg(
    args: Sequence[str], home: Path, *, scheduler: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``medimg`` command line as a separate process (the cluster's client) and check
    that it succeeded; ``scheduler`` adds ``--scheduler ADDRESS``."""
    command = [str(MEDIMG), *(["--scheduler", scheduler] if scheduler else []), *args]
    home.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        command, capture_output=True, text=True, env=cli_env(home), check=False, cwd=home.parent
    )
    assert done.returncode == 0, (
        f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr}\n{done.stdout}"
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


@dataclass
class DaskCluster:
    """A scheduler and named workers, each a process group started by this fixture."""

    address: str
    root: Path
    worker_env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    client: Any = None

    @property
    def worker_home(self) -> Path:
        return Path(self.worker_env["MEDIMG_HOME"])

    @property
    def worker_key_file(self) -> Path:
        return Path(self.worker_env["MEDIMG_KEY_FILE"])

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        try:
            proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.worker_env,
                cwd=self.root,
                start_new_session=True,  # its own process group: killed as one
            )
        finally:
            log.close()
        self.processes[name] = proc
        return proc

    def start_scheduler(self) -> None:
        host, port = self.address.removeprefix("tcp://").split(":")
        self._spawn(
            "scheduler",
            [str(DASK), "scheduler", "--host", host, "--port", port, "--no-dashboard"],
        )

    def start_worker(self, name: str) -> None:
        self._spawn(
            name,
            [
                *(str(DASK), "worker", self.address),
                *("--nworkers", "1", "--nthreads", "1", "--no-dashboard", "--name", name),
            ],
        )

    def connect(self) -> None:
        from distributed import Client

        deadline = time.monotonic() + STARTUP_TIMEOUT
        while self.client is None:
            if self.processes["scheduler"].poll() is not None:
                raise RuntimeError(f"dask scheduler exited early:\n{self.logs()}")
            try:
                self.client = Client(self.address, timeout="5s", set_as_default=False)
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def wait_for_workers(self, names: Sequence[str] = WORKERS) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while set(self.worker_names()) != set(names):
            dead = [n for n in names if self.processes[n].poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(
                    f"workers {sorted(names)} did not all join (dead: {dead}):\n{self.logs()}"
                )
            time.sleep(0.2)

    def worker_names(self) -> dict[str, str]:
        """Worker name -> address, as the scheduler sees them now."""
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        return {str(w["name"]): address for address, w in info.items()}

    def executed(self) -> dict[str, int]:
        """Tasks each live worker has run since it started, by worker name."""
        counts = self.client.run(lambda dask_worker: dask_worker.state.executed_count)
        names = {a: n for n, a in self.worker_names().items()}
        return {names.get(address, address): int(n) for address, n in counts.items()}

    def processing_on(self, name: str) -> list[str]:
        """Keys of the tasks the scheduler has assigned to worker ``name`` right now."""
        address = self.worker_names().get(name)
        if address is None:
            return []
        return [str(k) for k in self.client.processing([address]).get(address, ())]

    def kill(self, name: str) -> None:
        """SIGKILL worker ``name`` (its nanny and worker process): a machine lost mid-run."""
        proc = self.processes[name]
        _stop(proc, signal.SIGKILL)
        proc.wait()

    def restore(self) -> None:
        """Start again any worker that is no longer running, and wait for all to join."""
        for name in WORKERS:
            if self.processes[name].poll() is not None:
                self.start_worker(name)
        self.wait_for_workers()

    def logs(self) -> str:
        parts = []
        for log in sorted(self.root.glob("*.log")):
            text = log.read_text(encoding="utf-8", errors="replace")
            parts.append(f"--- {log.name} (last 3000 characters)\n{text[-3000:]}")
        return "\n".join(parts)

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close(timeout=10)
        procs = list(self.processes.values())
        for proc in procs:
            _stop(proc)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _stop(proc, signal.SIGKILL)
                proc.wait()
            # The nanny's worker process shares the group: make sure nothing is left behind.
            _stop(proc, signal.SIGKILL)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """``dask scheduler`` and workers ``w1`` and ``w2`` (one process, one thread each) on
    127.0.0.1, as separate process groups; the address is ``cluster.address``."""
    root = tmp_path_factory.mktemp("dask-cluster")
    worker_env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIMG_", "DASK_"))}
    worker_env.update(
        {
            # The workers' own, empty workspace and no key: they must need neither.
            "MEDIMG_HOME": str(root / "worker-workspace"),
            "MEDIMG_KEY_FILE": str(root / "no-key" / "key"),
        }
    )
    cluster = DaskCluster(f"tcp://127.0.0.1:{_free_port()}", root, worker_env)
    try:
        cluster.start_scheduler()
        cluster.connect()
        for name in WORKERS:
            cluster.start_worker(name)
        cluster.wait_for_workers()
        yield cluster
    finally:
        cluster.close()
