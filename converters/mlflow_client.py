"""The MLflow connection: tracking URI checks, one shared client, retried calls, error kinds.

Failures that may pass (see :func:`_transient`) are retried with
exponential backoff for up to :data:`RETRY_BUDGET_S` seconds, then
:class:`~tbx.converters.base.ConnectError` names the URI; a request MLflow
refuses becomes :class:`MlflowError` for its run.
"""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.parse
from typing import Any, Callable

from tbx.converters.base import ConnectError, SyncError, UsageError
from tbx.errors import TbxError

RETRY_BUDGET_S = 60.0
TRANSIENT_HTTP = (408, 429, 500, 502, 503, 504)

INSTALL_HINT = 'MLflow support needs the mlflow package: pip install "tbx-board[mlflow]"'


class MlflowError(TbxError):
    """MLflow refused a request for one run (a changed param, a bad value); other runs go on."""


def _check_uri(uri: str) -> str:
    """``uri`` if the MLflow client can take it: a server URL, ``sqlite:///PATH`` or another store URI."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme in ("http", "https"):
        if parts.netloc:
            return uri.rstrip("/")
    elif parts.scheme == "sqlite":
        if uri.startswith("sqlite:///") and len(uri) > len("sqlite:///"):
            return uri
    elif len(parts.scheme) > 1:  # postgresql://, mysql://, file://, databricks, ... (not C:\\)
        return uri
    raise UsageError(f"MLflow tracking URI {uri!r} is not supported: expected http(s)://HOST:PORT "
                     "(a tracking server), sqlite:///PATH (a local MLflow database) or another URI the "
                     "MLflow client takes (postgresql://..., file:///...)")


def _sqlite_path(uri: str) -> str | None:
    return uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else None


def _transient(exc: BaseException) -> bool:
    """True for failures that may pass: the server is down, restarting, overloaded or locked."""
    import requests
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, requests.HTTPError):
        return exc.response is not None and exc.response.status_code in TRANSIENT_HTTP
    if isinstance(exc, RestException):
        return exc.get_http_status_code() in TRANSIENT_HTTP
    if isinstance(exc, MlflowException):
        text = str(exc)
        # MLflow's HTTP layer wraps connection errors and non-JSON error answers in these phrases.
        code = re.search(r"failed with error code (\d+)", text)
        return ("failed with exception" in text or "failed with timeout exception" in text
                or (code is not None and int(code.group(1)) in TRANSIENT_HTTP)
                or "database is locked" in text)
    return False


def _reason(exc: BaseException) -> str:
    """The useful part of an error message (MLflow's wrap the cause deep inside)."""
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    if found:
        return found.group(0)
    return text if len(text) <= 300 else text[:300] + "…"


class _Tracker:
    """One tracking URI: a lazily made client shared by threads, and retried calls."""

    def __init__(self, uri: str) -> None:
        self.uri = _check_uri(uri)
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    from mlflow.tracking import MlflowClient
                except ImportError as exc:
                    raise SyncError(INSTALL_HINT) from exc
                # Read by MLflow at request time; only set when the user has not.
                os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
                os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
                # tbx reports progress itself: no progress bar per artifact download, and no
                # "View run" links on stdout (where `tbx sync` writes its report).
                os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
                os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
                self._client = MlflowClient(tracking_uri=self.uri)
            return self._client

    def call(self, what: str, fn: Callable[..., Any], *args: Any, budget: float = RETRY_BUDGET_S,
             **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, retried with backoff while it fails transiently."""
        from mlflow.exceptions import MlflowException

        start = time.monotonic()
        delay = 0.25
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not _transient(exc):
                    if isinstance(exc, MlflowException):
                        raise MlflowError(f"MLflow at {self.uri} refused {what}: {exc}") from exc
                    raise
                if time.monotonic() - start + delay > budget:
                    raise ConnectError(f"MLflow at {self.uri} could not be reached for {what} "
                                       f"(tried for {time.monotonic() - start:.0f} s): {_reason(exc)}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 4.0)

    def check(self, budget: float) -> None:
        """A cheap request, retried for at most ``budget`` seconds, failing with a clear message."""
        try:
            self.call("listing experiments", self.client.search_experiments, max_results=1,
                      budget=budget)
        except MlflowError as exc:
            if self.uri.startswith("http"):
                raise SyncError(f"{self.uri} does not answer like an MLflow tracking server: "
                                f"{exc.__cause__}") from exc
            raise SyncError(str(exc)) from exc
