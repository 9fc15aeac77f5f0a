"""Fixtures: a real coordinator (``quorum-server``) and real workers
(``quorum-worker``), the debug binaries ``cargo build --workspace --bins``
makes, started as the Rust end-to-end harness (``tests/harness/``) starts
them: port 0 and the address read from the server's first stdout line, the
admin token from ``DB.admin-token``, logs in the test's temporary folder,
every process killed at the end.

The binaries are looked for in ``$QUORUM_BIN_DIR``, else
``$CARGO_TARGET_DIR/debug``, else the repository's ``target/debug``.
"""

from __future__ import annotations

import json
import os
import pathlib
import queue
import subprocess
import threading
from typing import Iterator, List, Sequence

import pytest

import quorum

REPO = pathlib.Path(__file__).resolve().parents[2]
#: How long the server may take to print its address (a hang guard).
STARTUP_TIMEOUT = 30
LISTENING_PREFIX = "quorum-server listening on "


def binary(name: str) -> pathlib.Path:
    candidates = []
    if os.environ.get("QUORUM_BIN_DIR"):
        candidates.append(pathlib.Path(os.environ["QUORUM_BIN_DIR"]))
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(pathlib.Path(os.environ["CARGO_TARGET_DIR"]) / "debug")
    candidates.append(REPO / "target" / "debug")
    for folder in candidates:
        if (folder / name).is_file():
            return folder / name
    pytest.fail(f"{name} not found in {[str(c) for c in candidates]}: run `cargo build --workspace --bins` first")


class Server:
    """A running quorum-server with its URL and admin token."""

    def __init__(self, folder: pathlib.Path, extra: Sequence[str] = (), scheme: str = "http") -> None:
        self.folder = folder
        self.db = folder / "quorum.db"
        self.log = open(folder / "quorum-server.log", "wb")
        self.process = subprocess.Popen(
            [str(binary("quorum-server")), "--listen", "127.0.0.1:0", "--db", str(self.db), *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        lines: "queue.Queue[bytes]" = queue.Queue()
        assert self.process.stdout is not None
        stdout = self.process.stdout
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=STARTUP_TIMEOUT).decode()
        except queue.Empty:
            self.stop()
            pytest.fail(f"quorum-server printed no line within {STARTUP_TIMEOUT} s")
        if not line.startswith(LISTENING_PREFIX):
            self.stop()
            pytest.fail(f"quorum-server's first line should be `{LISTENING_PREFIX}ADDR`, got {line!r}")
        self.address = line[len(LISTENING_PREFIX) :].strip()
        self.url = f"{scheme}://{self.address}"
        self.token_file = pathlib.Path(f"{self.db}.admin-token")
        self.admin_token = self.token_file.read_text().strip()

    def client(self) -> quorum.Client:
        return quorum.Client(self.url, token=self.admin_token)

    def cli(self, *args: str) -> str:
        """Runs the `quorum` CLI against this server as admin; its stdout."""
        done = subprocess.run(
            [str(binary("quorum")), "--server", self.url, "--token", self.admin_token, *args],
            capture_output=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.log.close()


class Worker:
    """A running quorum-worker attached to a server."""

    def __init__(self, server: Server, name: str) -> None:
        state = server.folder / name
        self.log = open(server.folder / f"{name}.log", "wb")
        env = dict(os.environ, QUORUM_POWER_SUPPLY_DIR=str(server.folder / f"{name}.no-power-supply"))
        self.process = subprocess.Popen(
            [str(binary("quorum-worker")), "--server", server.url, "--state-dir", str(state),
             "--cpus", "1", "--name", name, "--max-backoff-ms", "300"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env,
        )  # fmt: skip

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.log.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A coordinator shared by the tests (each uses its own project names)."""
    running = Server(tmp_path_factory.mktemp("quorum"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def workers(server: Server) -> Iterator[List[Worker]]:
    """Two volunteer workers (two hosts, so quorum 2 can validate)."""
    running = [Worker(server, f"worker-{n}") for n in (1, 2)]
    yield running
    for worker in running:
        worker.stop()


@pytest.fixture(scope="session")
def client(server: Server) -> quorum.Client:
    return server.client()


@pytest.fixture(scope="session")
def primes_app() -> bytes:
    """The primes example (prints the count of primes in START..END)."""
    import wasmtime

    return bytes(wasmtime.wat2wasm((REPO / "examples" / "primes" / "primes.wat").read_text()))


def count_primes(start: int, end: int) -> int:
    """Primes p with start <= p < end, by trial division: independent of the app."""

    def is_prime(n: int) -> bool:
        if n < 2:
            return False
        divisor = 2
        while divisor * divisor <= n:
            if n % divisor == 0:
                return False
            divisor += 1
        return True

    return sum(1 for n in range(start, end) if is_prime(n))


def parse_jsonl(text: str) -> list:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
