"""MLflow backend: runs of an MLflow experiment ⇄ the neutral run model.

The tracking URI is ``http(s)://HOST:PORT`` (a tracking server),
``sqlite:///PATH`` (a local MLflow database, no server; a new experiment
keeps its artifacts in ``mlartifacts/<experiment>`` beside the database) or
any other URI the MLflow client takes. Only the official client
``mlflow.tracking.MlflowClient`` is used (``pip install "tbx-board[mlflow]"``).

Mapping (tbx → MLflow; import reverses it)
==========================================

============== ==============================================================
run            one MLflow run in the experiment, found again by its tag
               ``tbx.source_key`` (the source's run key) and created with the
               run's name and start time (ms) otherwise; ``tbx.source`` holds
               the source spec when the engine provides one
scalars        metric histories: one point per (step, timestamp in ms, value)
params         params, as text (``model.param_text``)
tags           tags; ``notes`` → ``mlflow.note.content``; each W&B label →
               ``tbx.label.<label as a key>`` = the label; group / job_type →
               ``tbx.group`` / ``tbx.job_type``
status, times  run status and end time, set when the sync finishes
histograms     ``tbx/histograms/<tag>.json``: every step of the tag
text           ``tbx/text/<tag>.json``
tensors        ``tbx/tensors/<tag>.json``: the serialized summary value in
               base64, with plugin, step and wall time
images, audio, ``tbx/<kind>/<tag>/<step>_<index>[_<n>].<fmt>``: one file per
video          item (``_<n>`` numbers repeats of a step and index)
files          ``files/<path>``
(all)          ``tbx/manifest.json``: every media item (kind, tag, step, wall
               time, index, fmt, width, height, sample rate, caption, path),
               the series files with their item counts, the original names
               of renamed keys and the full text of cut params and tags, so
               an import restores the run exactly
============== ==============================================================

What MLflow cannot hold, and what happens instead (counted in the report):

- Metric, param and tag keys may only hold letters, digits and ``_ - . :
  / space``, must not start or end with ``/``, hold ``//`` or ``.``/``..``
  path parts, and are at most 250 characters. Other characters become
  ``_``; a key that then collides with another gets ``_`` and 8 hex digits
  of a hash of its original name. Media tags and file paths in artifact
  paths are made safe the same way (ASCII only). The manifest keeps the
  original names.
- Metric timestamps are whole milliseconds; wall times are rounded to ms
  (negative or non-finite ones become 0). MLflow keeps a metric's history in
  (timestamp, step, value) order, so the points of a tag are stored in that
  order; points equal in step, ms and value are one point to MLflow and are
  sent once. (A point that only appears in a later sync with a time before
  points already carried lands in the middle of the history; that sync
  reports the tag as a mismatch.)
- ±inf is stored as ±1.7976931348623157e308 (±DBL_MAX). Runs written by tbx
  read it back as ±inf (a genuine ±DBL_MAX in the source therefore comes
  back as ±inf). Runs written by others keep ±DBL_MAX as stored, and the
  import notes it as a problem, since it may be a cut infinity.
- Params over 6000 characters and tags over 5000 are stored cut to that
  length; the manifest holds the full text.
- Tags named ``mlflow.*`` or ``tbx.*`` are MLflow's and tbx's own; a
  source tag with such a name is not carried.

Import of runs not written by tbx: params, tags (without MLflow's system
tags ``mlflow.*``), notes, status and times, and every metric's full
history (never sampled). Images logged with ``log_image(key=, step=)``
(``images/<key>+step+<step>+timestamp+<ms>+<uuid>.png``; ``%`` separators in
older versions) become images of tag ``<key>`` at their step; their
``+compressed.webp`` previews are skipped. Any other png/jpeg/gif artifact is
an image at step 0 named by its path without the extension; every other
artifact is a file. Artifacts are read into memory.

Every request that fails in a way that can pass (connection refused or
reset, timeouts, HTTP 408, 429, 500 and 502-504, a locked SQLite database)
is retried with exponential backoff for up to 60 s, then
:class:`ConnectError` names the URI. MLflow's own HTTP retries are turned
off for this process (unless ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` is set), so
that this backoff decides, and so are its artifact progress bars and the run
links it prints on stdout (``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR``,
``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import posixpath
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from typing import Any, Callable

import numpy as np

from tbx.converters.base import ConnectError, Destination, DestRun, RunRef, Source, SyncError, UsageError
from tbx.converters.model import (MEDIA_KINDS, File, Histogram, Media, RawValue, RunData, Scalars, Text,
                                  flatten, param_text, same_float)
from tbx.converters.report import RunReport
from tbx.errors import TbxError

DBL_MAX = sys.float_info.max
KEY_MAX = 250
PARAM_MAX = 6000
TAG_MAX = 5000  # MLflow documents 5000 (8000 measured)
METRICS_PER_BATCH = 1000
PARAMS_TAGS_PER_BATCH = 100
BATCH_BYTES = 900_000  # MLflow refuses log-batch requests over 1 MB of JSON
RETRY_BUDGET_S = 60.0
CHECK_BUDGET_S = 5.0
TRANSIENT_HTTP = (408, 429, 500, 502, 503, 504)

SOURCE_KEY_TAG = "tbx.source_key"
SOURCE_TAG = "tbx.source"
NOTE_TAG = "mlflow.note.content"
LABEL_PREFIX = "tbx.label."
GROUP_TAG = "tbx.group"
JOB_TYPE_TAG = "tbx.job_type"
RESERVED_TAG_PREFIXES = ("mlflow.", "tbx.")
MANIFEST = "tbx/manifest.json"
MANIFEST_FORMAT = "tbx-mlflow/1"
AGGREGATE_KINDS = ("histograms", "text", "tensors")
IMAGE_EXTS = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "gif": "gif"}
# images/<key>+step+<step>+timestamp+<ms>+<uuid>[+compressed].<ext>; older MLflow used %.
LOG_IMAGE_PATH = re.compile(r"images/(?P<key>[^/]+?)[+%]step[+%](?P<step>-?\d+)[+%]timestamp[+%](?P<ms>\d+)"
                            r"[+%](?P<uuid>[0-9A-Za-z-]+)(?P<preview>[+%]compressed)?\.(?P<ext>\w+)")

INSTALL_HINT = 'MLflow support needs the mlflow package: pip install "tbx-board[mlflow]"'


class MlflowError(TbxError):
    """MLflow refused a request for one run (a changed param, a bad value); other runs go on."""


# --- the connection --------------------------------------------------------------------------

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

    def check(self) -> None:
        """A cheap request, failing fast with a clear message."""
        try:
            self.call("listing experiments", self.client.search_experiments, max_results=1,
                      budget=CHECK_BUDGET_S)
        except MlflowError as exc:
            if self.uri.startswith("http"):
                raise SyncError(f"{self.uri} does not answer like an MLflow tracking server: "
                                f"{exc.__cause__}") from exc
            raise SyncError(str(exc)) from exc


# --- names and paths ---------------------------------------------------------------------------

_KEY_BAD = re.compile(r"[^\w\-. :/]")
_PATH_BAD = re.compile(r"[^A-Za-z0-9_\-. ]")


def _hash8(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def mlflow_key(name: str, limit: int = KEY_MAX) -> str:
    """``name`` changed as little as possible to pass MLflow's key rules (see the module doc)."""
    parts = [p for p in _KEY_BAD.sub("_", name).split("/") if p]
    parts = ["_" * len(p) if p in (".", "..") else p for p in parts]
    if parts and parts[0].startswith(".."):
        parts[0] = "_" + parts[0][1:]
    key = "/".join(parts) or "_"
    if len(key) > limit:
        key = key[:limit - 9].rstrip("/") + "_" + _hash8(name)
    return key


def assign_keys(names: list[str], fixed: dict[str, str] | None = None, limit: int = KEY_MAX) -> dict[str, str]:
    """``{name: MLflow key}``, unique and deterministic.

    Keys already given to names (``fixed``, from the run's manifest) stay;
    then valid names keep themselves; then renamed names take their
    sanitized form, or that plus a hash of the name when it is taken.
    """
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in sorted(names):
        if fixed and name in fixed and fixed[name] not in used:
            out[name] = fixed[name]
            used.add(out[name])
    for name in sorted(names):
        if name not in out and name not in used and mlflow_key(name, limit) == name:
            out[name] = name
            used.add(name)
    for name in sorted(names):
        if name not in out:
            key = mlflow_key(name, limit)
            if key in used:
                key = key[:limit - 9].rstrip("/") + "_" + _hash8(name)
            out[name] = key
            used.add(key)
    return out


def safe_path(name: str, keep_ext: bool = False) -> str:
    """An artifact path for ``name`` (ASCII, no empty or dot parts); a hash keeps changed names apart."""
    parts = [_PATH_BAD.sub("_", p) for p in name.split("/") if p]
    parts = ["_" * len(p) if p in (".", "..") else p for p in parts] or ["_"]
    if "/".join(parts) != name:
        stem, ext = posixpath.splitext(parts[-1]) if keep_ext else (parts[-1], "")
        parts[-1] = f"{stem}_{_hash8(name)}{ext}"
    return "/".join(parts)


# --- metrics -----------------------------------------------------------------------------------

def _canonical_order(ms: np.ndarray, steps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Indices in MLflow's history order: timestamp, step, stored value (NaN as 0), NaN last; stable."""
    isnan = np.isnan(values)
    stored = np.where(isnan, 0.0, np.clip(values, -DBL_MAX, DBL_MAX))
    return np.lexsort((isnan, stored, steps, ms))


def _expected_scalars(s: Scalars, report: RunReport) -> Scalars:
    """One tag's points as MLflow will hand them back (see the module doc)."""
    values = s.values.copy()
    genuine = np.abs(values) == DBL_MAX
    values[genuine] = np.copysign(np.inf, values[genuine])
    report.transformed("scalars", "±DBL_MAX reads back as ±inf (MLflow stores ±inf as ±DBL_MAX)",
                       int(genuine.sum()))
    report.transformed("scalars", "±inf stored as ±DBL_MAX, restored on import",
                       int(np.isinf(s.values).sum()))
    bad_time = ~np.isfinite(s.wall_times) | (s.wall_times < 0)
    ms = np.where(bad_time, 0.0, np.round(np.where(bad_time, 0.0, s.wall_times) * 1000)).astype(np.int64)
    report.transformed("scalars", "wall time negative or not finite: stored as 0", int(bad_time.sum()))
    order = _canonical_order(ms, s.steps, values)
    if len(order) > 1:
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        late = rank[1:] < np.maximum.accumulate(rank)[:-1]  # sorts before a point logged earlier
        report.transformed("scalars", "logged out of time order: MLflow keeps it at its time",
                           int(late.sum()))
    ms, steps, values = ms[order], s.steps[order], values[order]
    dup = np.zeros(len(ms), dtype=bool)
    if len(ms) > 1:
        dup[1:] = (ms[1:] == ms[:-1]) & (steps[1:] == steps[:-1]) & same_float(values[1:], values[:-1])
    report.transformed("scalars", "exact repeat of a point (same step, ms and value): stored once",
                       int(dup.sum()))
    keep = ~dup
    return Scalars(steps[keep], ms[keep] / 1000.0, values[keep])


def _read_history(metrics: list[Any], restore_inf: bool) -> Scalars:
    ms = np.array([m.timestamp for m in metrics], dtype=np.int64)
    steps = np.array([m.step for m in metrics], dtype=np.int64)
    values = np.array([m.value for m in metrics], dtype=np.float64)
    if restore_inf:
        at_max = np.abs(values) == DBL_MAX
        values[at_max] = np.copysign(np.inf, values[at_max])
    order = _canonical_order(ms, steps, values)
    return Scalars(steps[order], ms[order] / 1000.0, values[order])


def _to_ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(round(seconds * 1000))


# --- reading a run ------------------------------------------------------------------------------

def _restore_long(stored: dict[str, str], full: dict[str, str]) -> dict[str, str]:
    """Cut values back to their full text, unless they were changed since tbx wrote them."""
    return {k: full[k] if k in full and full[k].startswith(v) else v for k, v in stored.items()}


def _media_from_bytes(data: bytes, step: int, wall_time: float, fmt: str, index: int) -> Media:
    width = height = None
    try:
        from PIL import Image
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except Exception:  # a broken image is still carried as bytes
        pass
    return Media(step=step, wall_time=wall_time, data=data, fmt=fmt, index=index, width=width, height=height)


class _RunReader:
    """Reads one MLflow run (params, tags, histories, artifacts) into a RunData."""

    def __init__(self, tracker: _Tracker, run: Any, report: RunReport | None) -> None:
        self.tracker = tracker
        self.run = run
        self.run_id = run.info.run_id
        self.report = report
        self.by_tbx = SOURCE_KEY_TAG in run.data.tags

    def read(self, key: str, project: str | None) -> RunData:
        info, data = self.run.info, self.run.data
        tmp = tempfile.mkdtemp(prefix="tbx-mlflow-read-")
        try:
            tops = self._download_tops(tmp)
            path = os.path.join(tmp, *MANIFEST.split("/"))
            manifest = _load_manifest(path) if self.by_tbx and os.path.exists(path) else {}
            keys = manifest.get("keys", {})
            long = manifest.get("long", {})
            params = _restore_long(dict(data.params), long.get("params", {}))
            tags = _restore_long(dict(data.tags), long.get("tags", {}))
            pnames = {v: k for k, v in keys.get("params", {}).items()}
            tnames = {v: k for k, v in keys.get("tags", {}).items()}
            mnames = {v: k for k, v in keys.get("scalars", {}).items()}
            out = RunData(
                key=key, name=info.run_name or self.run_id, project=project,
                params={pnames.get(k, k): v for k, v in params.items()},
                tags={tnames.get(k, k): v for k, v in tags.items() if not k.startswith(RESERVED_TAG_PREFIXES)},
                labels=[tags[k] for k in sorted(tags) if k.startswith(LABEL_PREFIX)],
                notes=tags.get(NOTE_TAG), group=tags.get(GROUP_TAG), job_type=tags.get(JOB_TYPE_TAG),
                start_time=None if info.start_time is None else info.start_time / 1000.0,
                end_time=None if info.end_time is None else info.end_time / 1000.0,
                status=info.status)
            self._read_metrics(out, mnames)
            # the W&B-style summary: as written by tbx, else MLflow's latest value of each metric
            out.summary = (dict(manifest["summary"]) if isinstance(manifest.get("summary"), dict)
                           else {mnames.get(k, k): v for k, v in data.metrics.items()})
            if manifest:
                self._read_manifest_items(out, manifest, tmp)
            self._read_other_artifacts(out, tops, manifest, tmp)
            return out
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _download_tops(self, tmp: str) -> list[str]:
        """Download every top-level artifact entry into ``tmp``; their names."""
        client = self.tracker.client
        tops = [f.path for f in self.tracker.call(f"listing artifacts of run {self.run_id}",
                                                  client.list_artifacts, self.run_id)]
        for top in tops:
            self.tracker.call(f"downloading artifact {top!r} of run {self.run_id}",
                              client.download_artifacts, self.run_id, top, tmp)
        return tops

    def _read_metrics(self, out: RunData, names: dict[str, str]) -> None:
        client = self.tracker.client
        at_max = 0
        for mkey in sorted(self.run.data.metrics):
            history = self.tracker.call(f"history of metric {mkey!r} of run {self.run_id}",
                                        client.get_metric_history, self.run_id, mkey)
            s = _read_history(history, restore_inf=self.by_tbx)
            at_max += int((np.abs(s.values) == DBL_MAX).sum())
            tag = names.get(mkey, mkey)
            out.scalars[tag] = s
        if at_max and self.report is not None:
            self.report.problem(f"{at_max} metric points are ±1.797e308, which is how MLflow stores ±inf; "
                                "kept as stored")

    @staticmethod
    def _read_manifest_items(out: RunData, manifest: dict[str, Any], tmp: str) -> None:
        def load(path: str) -> bytes:
            return _read(tmp, path)

        for kind, per_tag in manifest.get("media", {}).items():
            for tag, entries in per_tag.items():
                out.series.setdefault(kind, {})[tag] = [
                    Media(step=e["step"], wall_time=e["wall_time"], data=load(e["path"]), fmt=e["fmt"],
                          index=e["index"], width=e.get("width"), height=e.get("height"),
                          sample_rate=e.get("sample_rate"), caption=e.get("caption"))
                    for e in entries]
        for kind, per_tag in manifest.get("series", {}).items():
            for tag, where in per_tag.items():
                items = json.loads(load(where["path"]))[:where["count"]]
                out.series.setdefault(kind, {})[tag] = [_decode_item(kind, d) for d in items]
        for path, artifact in sorted(manifest.get("files", {}).items()):
            out.files.append(File(path, load(artifact)))

    def _read_other_artifacts(self, out: RunData, tops: list[str], manifest: dict[str, Any], tmp: str) -> None:
        """Artifacts outside tbx's layout: images logged by MLflow, other images, files."""
        skip_tops = {"tbx"} if self.by_tbx else set()
        known = set(manifest.get("files", {}).values())
        logged: dict[str, list[tuple[int, int, str, str, str]]] = {}  # key -> (ms, step, uuid, path, ext)
        previews = 0
        for top in sorted(tops):
            if top in skip_tops:
                continue
            for path in _walk(tmp, top):
                if path in known:
                    continue
                found = LOG_IMAGE_PATH.fullmatch(path)
                ext = posixpath.splitext(path)[1][1:].lower()
                if found and found.group("preview"):
                    previews += 1
                elif found:
                    key = found.group("key").replace("~", "/").replace("#", "/")
                    logged.setdefault(key, []).append((int(found.group("ms")), int(found.group("step")),
                                                       found.group("uuid"), path, ext))
                elif ext in IMAGE_EXTS:
                    tag = posixpath.splitext(path)[0]
                    index = len(out.series["images"].get(tag, []))
                    out.add("images", tag, _media_from_bytes(_read(tmp, path), 0, out.start_time or 0.0,
                                                             IMAGE_EXTS[ext], index))
                else:
                    out.files.append(File(path, _read(tmp, path)))
        for key in sorted(logged):
            per_step: Counter = Counter()
            for ms, step, _uuid, path, ext in sorted(logged[key]):
                out.add("images", key, _media_from_bytes(_read(tmp, path), step, ms / 1000.0,
                                                         IMAGE_EXTS.get(ext, ext), per_step[step]))
                per_step[step] += 1
        if previews and self.report is not None:
            self.report.transformed("images", "MLflow's compressed preview not imported (the full image is)",
                                    previews)


def _read(root: str, path: str) -> bytes:
    with open(os.path.join(root, *path.split("/")), "rb") as f:
        return f.read()


def _load_manifest(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    return manifest if manifest.get("format") == MANIFEST_FORMAT else {}


def _walk(root: str, top: str) -> list[str]:
    """Artifact paths (``/``-separated) of the files under ``root/top``."""
    base = os.path.join(root, top)
    if os.path.isfile(base):
        return [top]
    found = []
    for dirpath, _dirs, files in os.walk(base):
        for name in files:
            found.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return sorted(found)


def _encode_item(kind: str, item: Any) -> dict[str, Any]:
    if kind == "histograms":
        return {"step": item.step, "wall_time": item.wall_time, "edges": item.edges.tolist(),
                "counts": item.counts.tolist()}
    if kind == "text":
        return {"step": item.step, "wall_time": item.wall_time, "text": item.text}
    return {"step": item.step, "wall_time": item.wall_time, "plugin": item.plugin,
            "value": base64.b64encode(item.value).decode("ascii")}


def _decode_item(kind: str, d: dict[str, Any]) -> Any:
    if kind == "histograms":
        return Histogram(d["step"], d["wall_time"], np.array(d["edges"], dtype=np.float64),
                         np.array(d["counts"], dtype=np.float64))
    if kind == "text":
        return Text(d["step"], d["wall_time"], d["text"])
    return RawValue(d["step"], d["wall_time"], d["plugin"], base64.b64decode(d["value"]))


# --- source --------------------------------------------------------------------------------------

class MlflowSource(Source):
    """The runs of one MLflow experiment (by name or id), optionally filtered by ``filter_string``."""

    def __init__(self, tracking_uri: str, experiment: str | None = None, experiment_id: str | None = None,
                 filter_string: str | None = None) -> None:
        if experiment is None and experiment_id is None:
            raise UsageError("give the MLflow experiment to read, by name or by id")
        self.tracker = _Tracker(tracking_uri)
        self.experiment = experiment
        self.experiment_id = experiment_id
        self.filter_string = filter_string or ""
        which = experiment if experiment is not None else f"id={experiment_id}"
        self.spec = f"mlflow:{self.tracker.uri}#{which}"
        self._resolved: Any = None

    def check(self) -> None:
        path = _sqlite_path(self.tracker.uri)
        if path is not None and not os.path.exists(path):
            raise SyncError(f"no MLflow database at {path} (from {self.tracker.uri})")
        self.tracker.check()
        self._experiment()

    def _experiment(self) -> Any:
        if self._resolved is not None:
            return self._resolved
        client = self.tracker.client
        if self.experiment is not None:
            exp = self.tracker.call(f"experiment {self.experiment!r}", client.get_experiment_by_name,
                                    self.experiment)
        else:
            try:
                exp = self.tracker.call(f"experiment id {self.experiment_id!r}", client.get_experiment,
                                        self.experiment_id)
            except MlflowError:
                exp = None
        if exp is None or exp.lifecycle_stage == "deleted":
            names = [e.name for e in self.tracker.call("listing experiments", client.search_experiments,
                                                       max_results=10)]
            what = (f"experiment {self.experiment!r}" if self.experiment is not None
                    else f"experiment id {self.experiment_id!r}")
            state = "is deleted" if exp is not None else "not found"
            raise SyncError(f"MLflow {what} {state} at {self.tracker.uri}; experiments there include: "
                            + (", ".join(repr(n) for n in names) or "(none)"))
        if self.experiment_id is not None and exp.experiment_id != str(self.experiment_id):
            raise UsageError(f"MLflow experiment {exp.name!r} has id {exp.experiment_id}, not "
                             f"{self.experiment_id}; give the name or the id")
        self._resolved = exp
        return exp

    def list_runs(self) -> list[RunRef]:
        exp_id = self._experiment().experiment_id
        client = self.tracker.client
        refs: list[RunRef] = []
        token = None
        while True:
            page = self.tracker.call(f"listing runs of experiment {exp_id}", client.search_runs, [exp_id],
                                     filter_string=self.filter_string, max_results=1000,
                                     order_by=["attributes.start_time ASC"], page_token=token)
            refs += [RunRef(r.info.run_id, r.info.run_name or r.info.run_id) for r in page]
            token = page.token
            if not token:
                return refs

    def read_run(self, ref: RunRef, report: RunReport) -> RunData:
        run = self.tracker.call(f"run {ref.key}", self.tracker.client.get_run, ref.key)
        return _RunReader(self.tracker, run, report).read(ref.key, self._experiment().name)


# --- destination ----------------------------------------------------------------------------------

class MlflowDestination(Destination):
    """Runs of the MLflow experiment ``experiment`` (created when missing).

    ``source_spec``, when the engine sets it, goes into each run's
    ``tbx.source`` tag and into the search for an existing run, so runs of
    two sources with equal keys stay apart.
    """

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        if not experiment:
            raise UsageError("give the name of the MLflow experiment to write to")
        self.tracker = _Tracker(tracking_uri)
        self.experiment = experiment
        self.spec = f"mlflow:{self.tracker.uri}#{experiment}"
        self.source_spec = ""
        self._experiment_id: str | None = None
        self._lock = threading.Lock()

    def check(self) -> None:
        path = _sqlite_path(self.tracker.uri)
        if path is not None and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise SyncError(f"the folder of the MLflow database {path} does not exist")
        self.tracker.check()
        exp = self.tracker.call(f"experiment {self.experiment!r}", self.tracker.client.get_experiment_by_name,
                                self.experiment)
        if exp is not None and exp.lifecycle_stage == "deleted":
            raise SyncError(_deleted(self.experiment, self.tracker.uri))

    def experiment_id(self) -> str:
        """The experiment's id, creating it on first use."""
        with self._lock:
            if self._experiment_id is None:
                self._experiment_id = self.tracker.call(f"experiment {self.experiment!r}", self._get_or_create)
            return self._experiment_id

    def _get_or_create(self) -> str:
        from mlflow.exceptions import MlflowException

        client = self.tracker.client
        exp = client.get_experiment_by_name(self.experiment)
        if exp is None:
            location = None
            path = _sqlite_path(self.tracker.uri)
            if path is not None:
                # Without a server MLflow would put artifacts in ./mlruns of whatever folder we run in.
                folder = os.path.join(os.path.dirname(os.path.abspath(path)), "mlartifacts",
                                      safe_path(self.experiment))
                location = "file://" + urllib.parse.quote(folder)
            try:
                return client.create_experiment(self.experiment, artifact_location=location)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                exp = client.get_experiment_by_name(self.experiment)  # a parallel sync (a shard) made it
                if exp is None:
                    raise
        if exp.lifecycle_stage == "deleted":
            raise SyncError(_deleted(self.experiment, self.tracker.uri))
        return exp.experiment_id

    def open_run(self, run: RunData, state: dict[str, Any] | None) -> DestRun:
        return MlflowRun(self, run, state)


def _deleted(experiment: str, uri: str) -> str:
    return (f"MLflow experiment {experiment!r} at {uri} is deleted; restore it (mlflow experiments restore) "
            "or write to another experiment")


class MlflowRun(DestRun):
    """One run being written; see the module doc for the layout."""

    def __init__(self, dest: MlflowDestination, run: RunData, state: dict[str, Any] | None) -> None:
        self.dest = dest
        self.tracker = dest.tracker
        self.client = dest.tracker.client
        self.key = run.key
        self.run_id = self._open(run, state)
        self.ident = self.run_id
        self.state = {"run_id": self.run_id}
        self._manifest = self._load_manifest() if self.existing or state else {}
        self._uploaded_manifest = json.dumps(self._manifest, sort_keys=True) if self._manifest else ""
        self._keys: dict[str, dict[str, str]] = {}
        self._long: dict[str, dict[str, str]] = {"params": {}, "tags": {}}
        self._exp: RunData | None = None
        self._paths: dict[tuple[str, str], list[str]] = {}
        self._present: dict[tuple[str, str], int] = {}
        for kind, per_tag in self._manifest.get("media", {}).items():
            for tag, entries in per_tag.items():
                self._present[(kind, tag)] = len(entries)
        for kind, per_tag in self._manifest.get("series", {}).items():
            for tag, where in per_tag.items():
                self._present[(kind, tag)] = where["count"]
        self._files: dict[str, str] = dict(self._manifest.get("files", {}))
        self._dirty: set[tuple[str, str]] = set()
        self._metrics: list[Any] = []
        self._metric_bytes = 0
        self._staging: str | None = None

    # -- opening -----------------------------------------------------------------------------
    def _open(self, run: RunData, state: dict[str, Any] | None) -> str:
        if state and state.get("run_id"):
            found = self.tracker.call(f"run {state['run_id']}", self._get_run, state["run_id"])
            if found is None or found.info.lifecycle_stage == "deleted":
                raise MlflowError(f"MLflow run {state['run_id']} that an earlier sync wrote for {run.key!r} is "
                                  f"gone from {self.tracker.uri}; remove the run's entry from the sync ledger "
                                  "(or use a new ledger) to write it again")
            return state["run_id"]
        exp_id = self.dest.experiment_id()

        def find_or_create() -> str:
            found = self._find(exp_id)
            if found is not None:
                self.existing = True
                return found
            tags = {SOURCE_KEY_TAG: run.key}
            if self.dest.source_spec:
                tags[SOURCE_TAG] = self.dest.source_spec
            created = self.client.create_run(exp_id, start_time=_to_ms(run.start_time), tags=tags,
                                             run_name=run.name or None)
            return created.info.run_id

        # Searching first on every try keeps a retried create from making a second run.
        return self.tracker.call(f"creating the run for {run.key!r}", find_or_create)

    def _get_run(self, run_id: str) -> Any:
        from mlflow.exceptions import RestException

        try:
            return self.client.get_run(run_id)
        except RestException as exc:
            if exc.get_http_status_code() == 404:
                return None
            raise

    def _find(self, exp_id: str) -> str | None:
        # MLflow's filter strings cannot escape quotes: LIKE with _ for ' finds a superset.
        op = "LIKE" if "'" in self.key else "="
        query = f"tags.`{SOURCE_KEY_TAG}` {op} '{self.key.replace(chr(39), '_')}'"
        token = None
        while True:
            page = self.client.search_runs([exp_id], filter_string=query, max_results=1000, page_token=token)
            for r in page:
                tags = r.data.tags
                if tags.get(SOURCE_KEY_TAG) == self.key and tags.get(SOURCE_TAG, "") == self.dest.source_spec:
                    return r.info.run_id
            token = page.token
            if not token:
                return None

    def _load_manifest(self) -> dict[str, Any]:
        tmp = tempfile.mkdtemp(prefix="tbx-mlflow-manifest-")
        try:
            listed = self.tracker.call(f"listing artifacts of run {self.run_id}", self.client.list_artifacts,
                                       self.run_id, "tbx")
            if not any(f.path == MANIFEST for f in listed):
                return {}
            local = self.tracker.call(f"downloading {MANIFEST} of run {self.run_id}",
                                      self.client.download_artifacts, self.run_id, MANIFEST, tmp)
            return _load_manifest(local)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- what the destination will hold -----------------------------------------------------------
    def expected(self, run: RunData, report: RunReport) -> RunData:
        old = self._manifest.get("keys", {})
        exp = RunData(key=run.key, name=run.name, project=self.dest.experiment, notes=run.notes,
                      group=run.group, job_type=run.job_type,
                      start_time=None if run.start_time is None else _to_ms(run.start_time) / 1000.0,
                      end_time=None if run.end_time is None else _to_ms(run.end_time) / 1000.0,
                      status=run.status or "FINISHED")

        self._keys["scalars"] = assign_keys([t for t, s in run.scalars.items() if len(s)], old.get("scalars"))
        for tag, s in run.scalars.items():
            if not len(s):
                continue
            exp.scalars[tag] = _expected_scalars(s, report)
            if self._keys["scalars"][tag] != tag:
                report.transformed("scalars", "key changed to fit MLflow's rules", len(exp.scalars[tag]))

        flat = flatten(run.params)
        report.transformed("params", "nested config flattened to dotted keys (a.b)",
                           sum(1 for k in flat if k not in run.params))
        exp.params = {k: param_text(v) for k, v in flat.items()}
        exp.summary = dict(run.summary)
        self._keys["params"] = assign_keys(list(exp.params), old.get("params"))
        report.transformed("params", "key changed to fit MLflow's rules",
                           sum(k != v for k, v in self._keys["params"].items()))
        report.transformed("params", f"value over {PARAM_MAX} characters: cut in MLflow, full text in {MANIFEST}",
                           sum(len(v) > PARAM_MAX for v in exp.params.values()))

        for k, v in run.tags.items():
            if k.startswith(RESERVED_TAG_PREFIXES) or mlflow_key(k).startswith(RESERVED_TAG_PREFIXES):
                report.dropped("tags", "name reserved for MLflow's and tbx's own tags (mlflow.*, tbx.*)")
            else:
                exp.tags[k] = str(v)
        self._keys["tags"] = assign_keys(list(exp.tags), old.get("tags"))
        report.transformed("tags", "key changed to fit MLflow's rules",
                           sum(k != v for k, v in self._keys["tags"].items()))
        label_keys = assign_keys(sorted(set(run.labels)), limit=KEY_MAX - len(LABEL_PREFIX))
        self._keys["labels"] = {label: LABEL_PREFIX + key for label, key in label_keys.items()}
        exp.labels = [label for label, _ in sorted(self._keys["labels"].items(), key=lambda kv: kv[1])]
        report.transformed("tags", f"value over {TAG_MAX} characters: cut in MLflow, full text in {MANIFEST}",
                           sum(len(v) > TAG_MAX for v in self._mlflow_tags(exp).values()))

        for kind in ("histograms", *MEDIA_KINDS, "text", "tensors"):
            for tag, items in run.series.get(kind, {}).items():
                if items:
                    exp.series[kind][tag] = list(items)
        exp.files = list(run.files)
        return exp

    def _mlflow_tags(self, exp: RunData) -> dict[str, str]:
        """Every tag this run sets in MLflow, by MLflow key, full values."""
        tags = {self._keys["tags"][k]: v for k, v in exp.tags.items()}
        tags.update({key: label for label, key in self._keys["labels"].items()})
        for name, value in ((NOTE_TAG, exp.notes), (GROUP_TAG, exp.group), (JOB_TYPE_TAG, exp.job_type)):
            if value is not None:
                tags[name] = value
        return tags

    # -- writing ------------------------------------------------------------------------------------
    def write_meta(self, run: RunData) -> None:
        self._exp = run
        params = {self._keys["params"][k]: v for k, v in run.params.items()}
        tags = self._mlflow_tags(run)
        self._long = {"params": {k: v for k, v in params.items() if len(v) > PARAM_MAX},
                      "tags": {k: v for k, v in tags.items() if len(v) > TAG_MAX}}
        self._log_params_tags(params, tags)
        for kind in MEDIA_KINDS:
            for tag, items in run.series.get(kind, {}).items():
                self._paths[(kind, tag)] = _media_paths(kind, tag, items)

    def _log_params_tags(self, params: dict[str, str], tags: dict[str, str]) -> None:
        from mlflow.entities import Param, RunTag

        entries = [Param(k, v[:PARAM_MAX]) for k, v in sorted(params.items())]
        entries += [RunTag(k, v[:TAG_MAX]) for k, v in sorted(tags.items())]
        batch: list[Any] = []
        size = 0
        for entry in entries:
            entry_size = len(json.dumps(entry.key)) + len(json.dumps(entry.value)) + 32
            if batch and (len(batch) == PARAMS_TAGS_PER_BATCH or size + entry_size > BATCH_BYTES
                          or type(entry) is not type(batch[0])):
                self._send_batch(batch)
                batch, size = [], 0
            batch.append(entry)
            size += entry_size
        if batch:
            self._send_batch(batch)

    def _send_batch(self, entries: list[Any]) -> None:
        from mlflow.entities import Metric, Param

        metrics = [e for e in entries if isinstance(e, Metric)]
        params = [e for e in entries if isinstance(e, Param)]
        tags = [e for e in entries if not isinstance(e, (Metric, Param))]
        self.tracker.call(f"logging to run {self.run_id}", self.client.log_batch, self.run_id,
                          metrics=metrics, params=params, tags=tags)

    def write(self, kind: str, tag: str, items: Any) -> None:
        if kind == "scalars":
            self._write_scalars(tag, items)
        elif kind == "files":
            for f in items:
                artifact = self._files.get(f.path) or "files/" + safe_path(f.path, keep_ext=True)
                self._stage(artifact, f.data)
                self._files[f.path] = artifact
        elif len(items):
            start, end = self._span(kind, tag, items)
            if kind in MEDIA_KINDS:
                paths = self._paths[(kind, tag)]
                for path, item in zip(paths[start:end], items):
                    self._stage(path, item.data)
            self._present[(kind, tag)] = max(self._present.get((kind, tag), 0), end)
            self._dirty.add((kind, tag))

    def _write_scalars(self, tag: str, s: Scalars) -> None:
        from mlflow.entities import Metric

        key = self._keys["scalars"][tag]
        ms = np.round(s.wall_times * 1000).astype(np.int64)
        entry_size = len(json.dumps(key)) + 100
        for step, t, value in zip(s.steps.tolist(), ms.tolist(), s.values.tolist()):
            if len(self._metrics) == METRICS_PER_BATCH or self._metric_bytes + entry_size > BATCH_BYTES:
                self._flush_metrics()
            self._metrics.append(Metric(key, value, t, step))
            self._metric_bytes += entry_size

    def _flush_metrics(self) -> None:
        if self._metrics:
            self._send_batch(self._metrics)
        self._metrics, self._metric_bytes = [], 0

    def _span(self, kind: str, tag: str, items: list[Any]) -> tuple[int, int]:
        """Where ``items`` (a slice of the run given to write_meta) sit in their tag."""
        assert self._exp is not None, "write_meta() comes before write()"
        full = self._exp.series[kind][tag]
        start = self._present.get((kind, tag), 0)
        if not (start < len(full) and full[start] is items[0]):
            positions = {id(item): i for i, item in reversed(list(enumerate(full)))}
            start = positions.get(id(items[0]), start)
        return start, start + len(items)

    def _stage(self, path: str, data: bytes) -> None:
        if self._staging is None:
            self._staging = tempfile.mkdtemp(prefix="tbx-mlflow-")
        local = os.path.join(self._staging, *path.split("/"))
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "wb") as f:
            f.write(data)

    def commit(self) -> None:
        self._flush_metrics()
        if self._exp is None:
            return
        for kind, tag in sorted(self._dirty):
            if kind in AGGREGATE_KINDS:
                items = self._exp.series[kind][tag][:self._present[(kind, tag)]]
                data = json.dumps([_encode_item(kind, item) for item in items]).encode("utf-8")
                self._stage(_series_path(kind, tag), data)
        if self._staging is not None:
            self.tracker.call(f"uploading artifacts of run {self.run_id}", self.client.log_artifacts,
                              self.run_id, self._staging)
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
        self._dirty.clear()
        manifest = self._build_manifest()
        text = json.dumps(manifest, sort_keys=True, default=str)
        if text != self._uploaded_manifest:
            # Last, so that everything the manifest names is already there.
            folder = tempfile.mkdtemp(prefix="tbx-mlflow-manifest-")
            try:
                local = os.path.join(folder, posixpath.basename(MANIFEST))
                with open(local, "w", encoding="utf-8") as f:
                    f.write(text)
                self.tracker.call(f"uploading {MANIFEST} of run {self.run_id}", self.client.log_artifact,
                                  self.run_id, local, posixpath.dirname(MANIFEST))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            self._uploaded_manifest = text

    def _build_manifest(self) -> dict[str, Any]:
        assert self._exp is not None
        media: dict[str, dict[str, list[dict[str, Any]]]] = {}
        series: dict[str, dict[str, dict[str, Any]]] = {}
        for (kind, tag), count in sorted(self._present.items()):
            items = self._exp.series.get(kind, {}).get(tag, [])[:count]
            if not items:
                continue
            if kind in MEDIA_KINDS:
                media.setdefault(kind, {})[tag] = [
                    {"step": m.step, "wall_time": m.wall_time, "index": m.index, "fmt": m.fmt, "width": m.width,
                     "height": m.height, "sample_rate": m.sample_rate, "caption": m.caption, "path": path}
                    for m, path in zip(items, self._paths[(kind, tag)])]
            else:
                series.setdefault(kind, {})[tag] = {"path": _series_path(kind, tag), "count": len(items)}
        keys = {kind: {name: key for name, key in self._keys.get(kind, {}).items() if name != key}
                for kind in ("scalars", "params", "tags")}
        return {"format": MANIFEST_FORMAT, "keys": keys, "long": self._long, "media": media,
                "series": series, "files": self._files, "summary": self._exp.summary}

    def finish(self, run: RunData) -> None:
        status = run.status or "FINISHED"
        end = _to_ms(run.end_time)
        if end is None or status == "RUNNING":
            self.tracker.call(f"status of run {self.run_id}", self.client.update_run, self.run_id, status=status)
        else:
            self.tracker.call(f"status of run {self.run_id}", self.client.set_terminated, self.run_id,
                              status=status, end_time=end)

    def read_back(self) -> RunData:
        run = self.tracker.call(f"run {self.run_id}", self.client.get_run, self.run_id)
        return _RunReader(self.tracker, run, None).read(self.key, self.dest.experiment)

    def close(self) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None


def _series_path(kind: str, tag: str) -> str:
    return f"tbx/{kind}/{safe_path(tag)}.json"


def _media_paths(kind: str, tag: str, items: list[Media]) -> list[str]:
    """Artifact paths of a tag's media items, stable as the tag grows."""
    folder = f"tbx/{kind}/{safe_path(tag)}"
    seen: Counter = Counter()
    paths = []
    for m in items:
        fmt = re.sub(r"[^A-Za-z0-9]", "", m.fmt) or "bin"
        repeat = seen[(m.step, m.index)]
        seen[(m.step, m.index)] += 1
        paths.append(f"{folder}/{m.step}_{m.index}{f'_{repeat}' if repeat else ''}.{fmt}")
    return paths
