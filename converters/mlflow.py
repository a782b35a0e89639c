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

The backend's parts: :mod:`~tbx.converters.mlflow_names` (key rules,
artifact paths, tbx's tag names), :mod:`~tbx.converters.mlflow_client` (URI
checks, the shared client, retries), :mod:`~tbx.converters.mlflow_read`
(reading a run) and :mod:`~tbx.converters.mlflow_write` (writing one); this
module holds the source and destination.
"""

from __future__ import annotations

import os
import threading
import urllib.parse
from typing import Any

from tbx.converters.base import Destination, DestRun, RunRef, Source, SyncError, UsageError
from tbx.converters.mlflow_client import MlflowError, _sqlite_path, _Tracker
from tbx.converters.mlflow_names import assign_keys, mlflow_key, safe_path
from tbx.converters.mlflow_read import _RunReader
from tbx.converters.mlflow_write import MlflowRun
from tbx.converters.model import RunData
from tbx.converters.report import RunReport

#: seconds a destination's or source's check() waits for the server before it fails.
CHECK_BUDGET_S = 5.0

__all__ = ["MlflowDestination", "MlflowError", "MlflowRun", "MlflowSource", "assign_keys", "mlflow_key",
           "safe_path"]


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
        self.tracker.check(CHECK_BUDGET_S)
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
        self.tracker.check(CHECK_BUDGET_S)
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
