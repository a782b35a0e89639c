"""Runs of a W&B cloud project (``wandb://ENTITY/PROJECT``) as a sync source.

Everything is read through W&B's public API, ``wandb.Api()`` (wandb 0.31;
the SDK is imported only when a sync uses it):

- **Listing**: ``api.runs("ENTITY/PROJECT", filters=...)``, where
  ``filters`` is the documented MongoDB-style query (``--filter`` as JSON).
  A run's key is its W&B id, its name the display name.
- **Metadata**: the config (nested dicts stay nested in ``params``; W&B's
  ``_wandb`` removed, tbx's ``_tbx`` restored into the run's key/value tags,
  times and status: see :func:`tbx.converters.wandb_decode.apply_config`),
  the summary (``_wandb`` removed), tags (→ ``labels``), notes, group, job
  type, state (finished → FINISHED, failed and crashed → FAILED, killed and
  preempted → KILLED, running → RUNNING), created at / last heartbeat (→
  start / end time).
- **History**: every row, through ``run.scan_history()``. Never
  ``run.history()``, which samples 500 rows. In wandb 0.31 the scan is the
  parquet-export path itself: wandb-core downloads the run's exported
  parquet files and asks the server only for rows not yet exported, so a
  separate ``download_history_exports`` read would fetch the same rows again
  and need a parquet reader of our own.
- **Rows → model**: the run's files are downloaded into a scratch run
  directory and the rows decoded by the offline W&B source's decoder
  (:mod:`tbx.converters.wandb_decode`), so a cloud run and an offline run
  map the same way: ``global_step`` is the x axis when the run logs it (else
  ``_step``), ``_timestamp`` the wall time, numbers scalars, ``histogram``
  histograms, image/audio/video files media, ``table-file`` markdown text;
  what has no TensorBoard kind is counted as dropped. Before decoding, the
  nulls of the history exports (keys a row does not hold) are removed and
  their ``"NaN"``/``"Infinity"`` strings read as floats.
- **Files**: ``run.files()``, except what W&B writes for itself (config,
  summary, metadata, requirements, its old history/event logs) and the media
  files the rows use; ``output.log`` (the console) is kept. System metrics
  are not carried.

Transient failures (timeouts, an unreachable server, HTTP 429 and 5xx) are
retried with exponential backoff (a server's ``RateLimit-Reset`` or
``Retry-After`` is honoured) for up to ``retry_s`` seconds per call; a read
of the history that fails part-way resumes after the last step it received.
Then, and on refused credentials, :class:`~tbx.converters.base.ConnectError`
stops the sync.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

from tbx.converters.base import ConnectError, RunRef, Source, SyncError, UsageError
from tbx.converters.model import RunData
from tbx.converters.report import RunReport
from tbx.converters.wandb_decode import RunBuilder, apply_config  # shared with the offline W&B source
from tbx.converters.wandb_file import RunLog

#: W&B run state → the model's status.
STATUS = {"finished": "FINISHED", "failed": "FAILED", "crashed": "FAILED", "killed": "KILLED",
          "preempted": "KILLED", "running": "RUNNING", "preempting": "RUNNING"}
#: files W&B writes into a run itself, not downloaded (output.log, the console, is kept).
OWN_FILES = frozenset({"config.yaml", "wandb-summary.json", "wandb-metadata.json", "requirements.txt",
                       "wandb-history.jsonl", "wandb-events.jsonl"})
#: how W&B's JSON and parquet exports spell the non-finite floats.
NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
TRANSIENT_STATUS = frozenset({408, 425, 429})
#: how wandb-core reports an HTTP error it did not retry (without a status field)
_CORE_STATUS = re.compile(r"returned error (\d{3})\b")


# --- history rows ------------------------------------------------------------------

def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return NONFINITE.get(value)
    return None


def clean_row(row: dict[str, Any]) -> dict[str, Any]:
    """A scanned row as the offline decoder expects a logged row.

    A null is a key the row does not hold (history exports are columns, so a
    row's missing keys come back as nulls), and ``"NaN"``/``"Infinity"`` are
    the exports' spelling of the non-finite floats.
    """
    out: dict[str, Any] = {}
    for key, value in row.items():
        if value is None:
            continue
        if isinstance(value, str) and value in NONFINITE:
            value = NONFINITE[value]
        elif isinstance(value, dict) and "_type" not in value:
            value = clean_row(value)
        out[key] = value
    return out


# --- errors and retries ----------------------------------------------------------

def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the errors behind it (wandb's ``CommError.exc``, causes, contexts)."""
    out: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo:
        e = todo.pop(0)
        if isinstance(e, BaseException) and not any(e is o for o in out):
            out.append(e)
            todo += [getattr(e, "exc", None), e.__cause__, e.__context__]
    return out


def _is(exc: BaseException, *names: str) -> bool:
    """``isinstance`` by class name, so wandb and requests need not be imported."""
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def _wait_hint(headers: Any) -> float | None:
    for name in ("RateLimit-Reset", "Retry-After"):
        try:
            return max(0.0, float(headers.get(name)))
        except (TypeError, ValueError, AttributeError):
            continue
    return None


def classify(exc: BaseException) -> tuple[str, str, float | None] | None:
    """``(verdict, message, wait)`` for a failure to talk to W&B; None for any other error.

    ``verdict`` is ``"transient"`` (retry: timeouts, no answer, 408/425/429,
    5xx), ``"auth"`` (no or refused credentials) or ``"error"`` (any other
    answer: retrying would get the same); ``wait`` is the server's hint.
    """
    status: int | None = None
    message: str | None = None
    wait: float | None = None
    talking = False
    for e in _chain(exc):
        response = getattr(e, "response", None)
        if _is(e, "WandbApiFailedError"):  # wandb-core's answer: its own message and the HTTP status
            talking = True
            message = message or (getattr(response, "message", "") or str(e))
            found = _CORE_STATUS.search(message)
            status = (status or getattr(response, "http_status", 0) or (int(found.group(1)) if found else None)
                      or None)
        elif _is(e, "HTTPError") and response is not None:  # requests, in older SDK paths
            talking = True
            status = status or getattr(response, "status_code", None)
            wait = _wait_hint(getattr(response, "headers", None))
            message = message or str(e)
        elif _is(e, "ConnectionError", "Timeout", "TimeoutError"):
            talking = True
            message = message or str(e)
        elif _is(e, "UsageError") and "API key" in str(e):
            return "auth", "no W&B API key is configured: run `wandb login` or set WANDB_API_KEY", None
    if not talking:
        return None
    text = f"HTTP {status}: {message}" if status else str(message)
    if status in (401, 403):
        return "auth", f"W&B refused the API key ({text}); run `wandb login` or set WANDB_API_KEY", None
    if status is None or status in TRANSIENT_STATUS or status >= 500:
        return "transient", text, wait
    return "error", text, wait


def retry(fn: Callable[[], Any], what: str, budget_s: float, progress: Callable[[], Any] | None = None,
          sleep: Callable[[float], None] = time.sleep) -> Any:
    """``fn()``, retried with exponential backoff while W&B fails transiently.

    Gives up with :class:`ConnectError` ``budget_s`` seconds after the first
    failure (the clock restarts when ``progress()`` changes between failures)
    or at once when the credentials are refused. Other failures from W&B
    raise :class:`SyncError`; errors that are not W&B's propagate unchanged.
    """
    first: float | None = None
    mark = progress() if progress else None
    delay, tries = 0.5, 0
    while True:
        try:
            return fn()
        except SyncError:
            raise
        except Exception as exc:
            verdict = classify(exc)
            if verdict is None:
                raise
            kind, message, wait = verdict
            if kind == "auth":
                raise ConnectError(f"{what}: {message}") from exc
            if kind == "error":
                raise SyncError(f"{what}: W&B answered {message}") from exc
            now = time.monotonic()
            if progress is not None and progress() != mark:
                mark, first, delay = progress(), None, 0.5
            first = now if first is None else first
            tries += 1
            if now - first >= budget_s:
                raise ConnectError(f"{what}: W&B failed {tries} times over {now - first:.0f} s, giving up "
                                   f"(last error: {message})") from exc
            sleep(min(wait if wait is not None else delay, max(0.05, budget_s - (now - first))))
            delay = min(delay * 2, 8.0)


# --- the source --------------------------------------------------------------------

def parse_filters(filters: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """``--filter`` for W&B: a JSON object in W&B's MongoDB-style run query language."""
    if filters is None or filters == "":
        return None
    if isinstance(filters, str):
        try:
            filters = json.loads(filters)
        except ValueError as exc:
            raise UsageError(f"W&B filter {filters!r} is not valid JSON ({exc}); expected a JSON object such as "
                             '\'{"state": "finished", "config.lr": 0.1}\'') from exc
    if not isinstance(filters, dict):
        raise UsageError(f"W&B filter {filters!r} must be a JSON object (a MongoDB-style run query), "
                         f"got {type(filters).__name__}")
    return filters


def _time(value: Any) -> float | None:
    """W&B's ISO times (UTC, with or without a zone) as seconds since the epoch."""
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


class WandbCloudSource(Source):
    """The runs of one W&B project, read through ``wandb.Api()``.

    Args:
        entity, project: the W&B project.
        filters: a MongoDB-style run query (JSON text or a dict), passed to
            ``Api.runs`` unchanged.
        api: the ``wandb.Api`` (or an object with its methods) to use;
            default: ``wandb.Api(timeout=timeout)`` made on first use.
        timeout: seconds one API request may take.
        retry_s: how long transient failures of one call are retried.
        per_page: runs and files fetched per request.
        page_size: history steps fetched per request.
    """

    def __init__(self, entity: str, project: str, filters: str | dict[str, Any] | None = None, *,
                 api: Any = None, timeout: int = 30, retry_s: float = 60.0, per_page: int = 100,
                 page_size: int = 1_000) -> None:
        for what, value in (("entity", entity), ("project", project)):
            if not value or "/" in value:
                raise UsageError(f"W&B {what} {value!r} must be a non-empty name without '/' "
                                 "(the endpoint is wandb://ENTITY/PROJECT)")
        self.entity = entity
        self.project = project
        self.filters = parse_filters(filters)
        self.timeout = timeout
        self.retry_s = retry_s
        self.per_page = per_page
        self.page_size = page_size
        self.spec = f"wandb://{entity}/{project}"
        self._api = api
        self._lock = threading.Lock()

    def _call(self, fn: Callable[[], Any], what: str, progress: Callable[[], Any] | None = None) -> Any:
        return retry(fn, what, self.retry_s, progress)

    def client(self) -> Any:
        """The API object, made (and the credentials checked) on first use."""
        with self._lock:
            if self._api is None:
                self._api = self._call(self._connect, f"connecting to W&B for {self.spec}")
            return self._api

    def _connect(self) -> Any:
        try:
            import wandb
        except ImportError as exc:
            raise SyncError("reading from the W&B cloud needs the wandb SDK: pip install wandb "
                            "(or pip install 'tbx-board[wandb]')") from exc
        return wandb.Api(timeout=self.timeout)

    def check(self) -> None:
        api = self.client()
        try:
            self._call(lambda: api.project(self.project, entity=self.entity).id, f"looking up {self.spec}")
        except ValueError as exc:
            raise SyncError(f"{self.spec}: no such W&B project, or this API key cannot see it ({exc})") from exc

    def list_runs(self) -> list[RunRef]:
        api = self.client()

        def fetch() -> list[Any]:
            flush = getattr(api, "flush", None)
            if flush is not None:
                flush()  # Api caches listings; a sync must see the runs as they are now
            return list(api.runs(f"{self.entity}/{self.project}", filters=self.filters, per_page=self.per_page))

        try:
            runs = self._call(fetch, f"listing the runs of {self.spec}")
        except ValueError as exc:
            raise SyncError(f"{self.spec}: cannot list runs ({exc})") from exc
        return [RunRef(str(r.id), str(r.name or r.id), r) for r in runs]

    def read_run(self, ref: RunRef, report: RunReport) -> RunData:
        api = self.client()
        path = f"{self.entity}/{self.project}/{ref.key}"
        run = ref.extra if ref.extra is not None else self._call(lambda: api.run(path), f"looking up run {path}")
        self._call(run.load_full_data, f"reading run {path}")
        data = RunData(key=str(run.id), name=str(run.name or run.id), project=self.project)
        data.summary = {k: v for k, v in dict(run.summary_metrics).items() if k != "_wandb"}
        data.labels = [str(t) for t in (getattr(run, "tags", None) or [])]
        data.notes = getattr(run, "notes", None) or None
        data.group = getattr(run, "group", None) or None
        data.job_type = getattr(run, "job_type", None) or None
        state = str(getattr(run, "state", "") or "")
        data.status = STATUS.get(state.lower())
        if state and data.status is None and state.lower() != "pending":
            report.problem(f"W&B run state {state!r} has no status equivalent; status left empty")
        data.start_time = _time(getattr(run, "created_at", None))
        if data.status not in (None, "RUNNING"):
            data.end_time = _time(getattr(run, "heartbeat_at", None))
        log = RunLog(path=f"{self.spec}/{ref.key}", history=self._scan(run, path))
        with tempfile.TemporaryDirectory(prefix="tbx-wandb-cloud-") as run_dir:
            files = self._call(lambda: list(run.files(per_page=self.per_page)), f"listing the files of {path}")
            for file in files:
                if file.name not in OWN_FILES:  # media included: the decoder reads them from files/
                    self._call(lambda f=file: f.download(root=os.path.join(run_dir, "files"), replace=True).close(),
                               f"downloading {file.name} of {path}")
            builder = RunBuilder(data, report)
            builder.add_meta(log)
            builder.add_history(log, run_dir)
            builder.add_files(run_dir)
            builder.finish()
        apply_config(data, dict(run.config), report)
        return data

    def _scan(self, run: Any, run_path: str) -> list[dict[str, Any]]:
        """Every history row, resuming after the last step received when a page fails."""
        rows: list[dict[str, Any]] = []
        next_step = 0

        def scan() -> None:
            nonlocal next_step
            for row in run.scan_history(page_size=self.page_size, min_step=next_step, use_cache=False):
                rows.append(clean_row(row))
                step = _number(row.get("_step"))
                if step is not None and math.isfinite(step):
                    next_step = max(next_step, int(step) + 1)

        self._call(scan, f"reading the history of {run_path}", progress=lambda: next_step)
        return rows
