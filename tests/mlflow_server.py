"""A real MLflow tracking server on 127.0.0.1 for tests (test helper).

``MlflowServer(tmpdir)`` runs ``mlflow server`` from the test's own
interpreter environment with a SQLite backend store and proxied artifacts
under ``tmpdir``, one uvicorn worker (several workers stall every
kept-alive request by ~40 ms) and no job runner (fewer processes, less
memory). ``restart()`` brings it back on the same port and store, which is
how tests cut a sync off mid-flight.

Starting one takes ~10 s, so a test module shares one (a module-scoped
fixture) and gives each test its own experiment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class MlflowServerError(AssertionError):
    """The server did not come up (its log is in the message)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mlflow_executable() -> str:
    """``mlflow`` next to the running interpreter (the venv's), else the one on PATH."""
    candidate = os.path.join(os.path.dirname(sys.executable), "mlflow")
    return candidate if os.path.exists(candidate) else "mlflow"


class MlflowServer:
    """``mlflow server`` with its store in ``tmpdir``; a context manager."""

    def __init__(self, tmpdir: str | os.PathLike) -> None:
        self.dir = os.path.abspath(os.fspath(tmpdir))
        os.makedirs(self.dir, exist_ok=True)
        self.db = os.path.join(self.dir, "mlflow.db")
        self.artifacts = os.path.join(self.dir, "artifacts")
        self.log_path = os.path.join(self.dir, "server.log")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MlflowServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def command(self) -> list[str]:
        return [mlflow_executable(), "server",
                "--backend-store-uri", f"sqlite:///{self.db}",
                "--artifacts-destination", self.artifacts,
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]

    def start(self) -> None:
        if self.proc is not None:
            raise MlflowServerError(f"MLflow server on {self.uri} is already running")
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", PYTHONUNBUFFERED="1")
        with open(self.log_path, "ab") as log:
            # A new session, so stop() can signal uvicorn and its children together.
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=self.dir,
                                         start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        assert self.proc is not None
        while True:
            if self.proc.poll() is not None:
                raise MlflowServerError(f"mlflow server exited with {self.proc.returncode} before "
                                        f"answering on {self.uri}; log:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise MlflowServerError(f"mlflow server on {self.uri} did not answer /health within "
                                        f"{READY_TIMEOUT_S:.0f} s; log:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM the server's process group, then SIGKILL what is left after a grace period."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        # Workers may outlive the parent briefly; the group dies with SIGKILL either way.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def restart(self) -> None:
        """Stop, then start again on the same port with the same store."""
        self.stop()
        self.start()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-chars:]
        except OSError:
            return "(no log)"

