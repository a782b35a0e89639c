"""Decoding a W&B run (metadata, config, history rows, files) into the neutral model.

Shared by the offline source (:mod:`tbx.converters.wandb_local`, rows from
the ``.wandb`` file) and the cloud source (:mod:`tbx.converters.wandb_cloud`,
rows from ``scan_history``), so that both map a run the same way.
:class:`RunBuilder` takes one fragment (a :class:`~tbx.converters.wandb_file.RunLog`
and its run directory) at a time; :func:`apply_config` sets the params.

Mapping (W&B → model):

- RunRecord: project, notes, tags → labels, group, job type, start time; the
  exit record's code → status (0 FINISHED, else FAILED; no exit record:
  None) and ``start + runtime`` (W&B's whole seconds) or the last row's
  ``_timestamp``, the later → end time.
- Config → params, nesting kept as nested dict values (destinations that
  need flat keys flatten them: MLflow and the HParams dashboard use
  ``a.b``); ``_wandb`` dropped. The hidden key ``_tbx`` that tbx's W&B
  export writes (:data:`tbx.converters.wandb_export.META_KEY`: the source
  run's key/value tags, start and end time and status, which W&B has no
  field for) is restored into those fields and is not a param.
- History rows. A metric's TensorBoard step is the row's value of its
  ``define_metric`` step metric; without one, ``global_step`` when the run
  logs it (tbx's W&B export and W&B's TensorBoard sync write it), else
  ``_step``. A step metric missing from a row takes its last value seen
  (what W&B's step_sync does). The wall time is ``_timestamp``. ``_step``,
  ``_runtime``, ``_timestamp`` and ``global_step`` are not series. Nested
  dicts without ``_type`` become ``parent.child`` tags. A key that is not a
  valid TensorBoard tag is renamed, each item counted as transformed with
  the new name: NUL characters become ``\\0``, the empty key ``(empty)``, a
  key of only ``/`` (TensorBoard would show neither a group nor a name)
  ``(/)``; should the new name be taken already, `` (2)``, `` (3)``… is
  appended (keys keep the tag they got when first seen, so the tags stay
  the same as the run grows). Values: int, float, NaN and ±Infinity →
  scalars (booleans as 0/1, counted), strings → text, typed values
  (histograms, media files, tables) as :mod:`tbx.converters.wandb_values`
  says; null and lists are dropped, counted with the reason.
- Files under ``files/`` that no series item consumed and that are not
  wandb's own (``config.yaml``, ``wandb-summary.json``,
  ``wandb-metadata.json``, ``requirements.txt``) → files; ``output.log`` of
  the fragments is joined. Symlinks (W&B's links to TensorBoard event files)
  are not followed; each is listed in the report's problems.
"""

from __future__ import annotations

import fnmatch
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from tbx.converters.model import File, RunData, Scalars, Text
from tbx.converters.report import RunReport
from tbx.converters.wandb_export import META_KEY
from tbx.converters.wandb_file import RunLog
from tbx.converters.wandb_values import TypedValues, kind_of

#: Files W&B writes about the run itself; their content is in the model already.
WANDB_OWN_FILES = frozenset({"config.yaml", "wandb-summary.json", "wandb-metadata.json", "requirements.txt"})
#: History keys that are W&B's bookkeeping, not series.
HIDDEN_KEYS = frozenset({"_step", "_runtime", "_timestamp", "global_step"})

_MAX_FLOAT_INT = 2 ** 53


def apply_config(data: RunData, config: dict[str, Any], report: RunReport) -> None:
    """Set ``data.params`` from a W&B config (top-level keys, values as W&B holds them).

    Nesting is kept. W&B's own ``_wandb`` is dropped. tbx's ``_tbx`` (what
    its W&B export keeps of the source run) is restored into the run's key/value
    tags, start and end time and status, each as stored, None included: it
    is the original, while W&B's start time and exit are those of the export.
    Call it after :meth:`RunBuilder.finish`, which sets W&B's times and status.
    """
    params = {k: v for k, v in config.items() if k != "_wandb"}
    meta = params.get(META_KEY)
    if isinstance(meta, dict):
        del params[META_KEY]
        _restore_meta(data, meta, report)
    elif meta is not None:
        report.problem(f"config key {META_KEY!r} is {meta!r}, not the object tbx's W&B export writes; "
                       "kept as a param")
    data.params = params


def _restore_meta(data: RunData, meta: dict[str, Any], report: RunReport) -> None:
    if "tags" in meta:
        tags = meta["tags"]
        if isinstance(tags, dict):
            data.tags = {str(k): str(v) for k, v in tags.items()}
        elif tags is not None:
            report.problem(f"{META_KEY}.tags is {tags!r}, expected an object of key/value tags; not restored")
    for field in ("start_time", "end_time"):
        if field in meta:
            value = meta[field]
            if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                 and math.isfinite(value)):
                setattr(data, field, None if value is None else float(value))
            else:
                report.problem(f"{META_KEY}.{field} is {value!r}, expected seconds since the epoch; not restored")
    if "status" in meta:
        status = meta["status"]
        if status is None or isinstance(status, str):
            data.status = status or None
        else:
            report.problem(f"{META_KEY}.status is {status!r}, expected a string; not restored")


def tb_tag(key: str) -> str:
    """``key`` as a valid TensorBoard tag: NUL → ``\\0``, empty → ``(empty)``, only ``/`` → ``(/)``."""
    tag = key.replace("\0", "\\0")
    if not tag:
        return "(empty)"
    if not tag.strip("/"):
        return f"({tag})"
    return tag


def _is_plain_dict(value: Any) -> bool:
    """A nested dict the user logged (flattened to ``parent.child`` tags), not a W&B typed value."""
    return isinstance(value, dict) and "_type" not in value


def _flat_items(row: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in row.items():
        tag = prefix + key
        if _is_plain_dict(value):
            yield from _flat_items(value, tag + ".")
        else:
            yield tag, value


def _as_int_step(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return int(math.floor(value))
    return int(value)


class _StepRules:
    """Which history key gives each metric its TensorBoard step (``define_metric``)."""

    def __init__(self) -> None:
        self.exact: dict[str, str] = {}
        self.globs: list[tuple[str, str]] = []
        self.default = "_step"
        self._cache: dict[str, str] = {}

    def set_default(self, key: str) -> None:
        self.default = key
        self._cache.clear()

    def add(self, metric: Any) -> None:
        if not metric.step_metric:
            return
        if metric.name:
            self.exact[metric.name] = metric.step_metric
        elif metric.glob_name:
            self.globs.append((metric.glob_name, metric.step_metric))
        self._cache.clear()

    def step_key(self, tag: str) -> str:
        key = self._cache.get(tag)
        if key is None:
            key = self.exact.get(tag)
            if key is None:
                for pattern, metric in reversed(self.globs):
                    if fnmatch.fnmatchcase(tag, pattern):
                        key = metric
                        break
            key = self._cache[tag] = key or self.default
        return key


class RunBuilder:
    """Builds a RunData from a run's fragments: ``add_meta``, ``add_history`` and ``add_files``
    for each fragment, in order, then ``finish``."""

    def __init__(self, data: RunData, report: RunReport) -> None:
        self.data = data
        self.report = report
        self.rules = _StepRules()
        self.columns: dict[str, tuple[list[int], list[float], list[float]]] = {}
        self.files: dict[str, bytes] = {}
        self.values = TypedValues(report)
        self.last_step: int | None = None  # last _step of the previous fragments
        self.last_wall: float | None = None
        self.exit: Any = None
        self.last_start: float | None = None
        self.resumed_runtime = 0
        self.tags: dict[str, str] = {}  # W&B key -> TensorBoard tag, for every key seen
        self.used: set[str] = set()  # the values of self.tags
        self.renamed: dict[str, tuple[str, str]] = {}  # tag -> (W&B key, why), for keys not kept as they are

    # --- metadata ----------------------------------------------------------------
    def add_meta(self, log: RunLog) -> None:
        data, run = self.data, log.run
        for metric in log.metrics:
            self.rules.add(metric)
        if any("global_step" in row for row in log.history):
            self.rules.set_default("global_step")
        if run is not None:
            start = run.start_time.seconds + run.start_time.nanos / 1e9 if run.HasField("start_time") else None
            if data.start_time is None:
                data.start_time = start
            self.last_start = start
            self.resumed_runtime = run.runtime  # seconds the run had run before this fragment
            data.project = run.project or data.project
            data.notes = run.notes or data.notes
            data.group = run.run_group or data.group
            data.job_type = run.job_type or data.job_type
            if run.tags:
                data.labels = list(run.tags)
        self.exit = log.exit  # the last fragment's: a resumed run that crashed has none

    def finish(self) -> None:
        data = self.data
        for key, (steps, walls, values) in self.columns.items():
            data.scalars[self.tags[key]] = Scalars(np.array(steps, np.int64), np.array(walls), np.array(values))
        for tag, (key, why) in self.renamed.items():
            for kind, per_tag in data.series.items():
                if tag in per_tag:
                    self.report.transformed(kind, f"W&B key {key!r} {why}: renamed {tag!r}", len(per_tag[tag]))
        data.files = [File(path, self.files[path]) for path in sorted(self.files)]
        if self.exit is not None:
            data.status = "FINISHED" if self.exit.exit_code == 0 else "FAILED"
            # W&B's runtime is whole seconds; the last row's time is a lower bound too.
            start = self.last_start if self.last_start is not None else data.start_time
            ends = [t for t in (self.last_wall, start) if t is not None]
            if start is not None:
                ends.append(start + max(self.exit.runtime - self.resumed_runtime, 0))
            data.end_time = max(ends) if ends else None

    # --- history -------------------------------------------------------------------
    def add_history(self, log: RunLog, run_dir: str) -> None:
        rows = log.history
        shift = 0
        if rows and self.last_step is not None:
            first = _as_int_step(rows[0].get("_step"))
            if first is not None and first <= self.last_step:
                shift = self.last_step + 1 - first
        carried: dict[str, int] = {}  # last value of each step metric
        wall = self.last_wall if self.last_wall is not None else (self.last_start or 0.0)
        files_dir = os.path.join(run_dir, "files")
        columns = self.columns
        report = self.report
        for index, row in enumerate(rows):
            row_step = _as_int_step(row.get("_step"))
            row_step = (index if row_step is None else row_step) + shift
            self.last_step = row_step
            ts = row.get("_timestamp")
            if (type(ts) is float or type(ts) is int) and math.isfinite(ts):
                wall = float(ts)
            elif isinstance(row.get("_runtime"), (int, float)) and self.last_start is not None:
                wall = self.last_start + float(row["_runtime"])
            steps: dict[str, int] = {}  # this row's step for each step metric
            taken: set[str] | None = None  # tags of this row, once a nested dict is flattened
            for tag, value in row.items():
                if tag in HIDDEN_KEYS or tag.startswith("_wandb"):
                    continue
                step = self._step(tag, row, row_step, shift, carried, steps, value)
                if type(value) is float or type(value) is int:  # the common case, kept short
                    col = columns.get(tag)
                    if col is None:
                        col = columns[tag] = ([], [], [])
                        self._tag(tag)
                    col[0].append(step)
                    col[1].append(wall)
                    col[2].append(float(value))
                    if type(value) is int and abs(value) > _MAX_FLOAT_INT:
                        report.transformed("scalars", "integer beyond float64 precision rounded")
                elif _is_plain_dict(value):
                    if taken is None:
                        taken = set(row)
                    for sub, item in _flat_items(value, tag + "."):
                        if sub in taken:
                            report.dropped(kind_of(item), "key repeated in a row after flattening nested dicts")
                            continue
                        taken.add(sub)
                        step = self._step(sub, row, row_step, shift, carried, steps, item)
                        self._add_value(sub, item, step, wall, files_dir)
                else:
                    self._add_value(tag, value, step, wall, files_dir)
        self.last_wall = wall

    def _step(self, tag: str, row: dict[str, Any], row_step: int, shift: int, carried: dict[str, int],
              steps: dict[str, int], value: Any) -> int:
        """The step of metric ``tag`` in ``row``."""
        key = self.rules.step_key(tag)
        step = steps.get(key)
        if step is None:
            step = steps[key] = self._step_of(key, row, row_step, carried)
        if shift and key == "_step":
            self.report.transformed(kind_of(value), "step of a resumed fragment shifted to follow "
                                    "the previous fragment")
        return step

    def _step_of(self, key: str, row: dict[str, Any], row_step: int, carried: dict[str, int]) -> int:
        """The step, in ``row``, of the metrics whose step metric is ``key``."""
        if key == "_step":
            return row_step
        value = row.get(key)
        step = _as_int_step(value)
        if step is None:  # not in this row: its last value (W&B's step_sync)
            return carried.get(key, row_step)
        if step != value:
            self.report.transformed("scalars", f"non-integer step metric {key} rounded down")
        carried[key] = step
        return step

    def _tag(self, key: str) -> str:
        """The TensorBoard tag of W&B key ``key``, fixed when the key is first seen."""
        tag = self.tags.get(key)
        if tag is None:
            tag = base = tb_tag(key)
            n = 1
            while tag in self.used:
                n += 1
                tag = f"{base} ({n})"
            self.used.add(tag)
            self.tags[key] = tag
            if tag != key:
                why = "is not a valid TensorBoard tag" if base != key else "names a tag taken by a renamed key"
                self.renamed[tag] = (key, why)
        return tag

    def _add_value(self, tag: str, value: Any, step: int, wall: float, files_dir: str) -> None:
        report = self.report
        if isinstance(value, bool):
            report.transformed("scalars", "boolean logged as 0/1")
            self._scalar(tag, step, wall, float(value))
        elif isinstance(value, (int, float)):
            if isinstance(value, int) and abs(value) > _MAX_FLOAT_INT:
                report.transformed("scalars", "integer beyond float64 precision rounded")
            self._scalar(tag, step, wall, float(value))
        elif isinstance(value, str):
            self.data.add("text", self._tag(tag), Text(step, wall, value))
        elif value is None:
            report.dropped("scalars", "null value")
        elif isinstance(value, dict):
            kind, items = self.values.items(value, step, wall, files_dir)
            if items:
                tag = self._tag(tag)
                for item in items:
                    self.data.add(kind, tag, item)
        else:
            report.dropped("tensors", f"{type(value).__name__} value (no TensorBoard kind)")

    def _scalar(self, tag: str, step: int, wall: float, value: float) -> None:
        col = self.columns.get(tag)
        if col is None:
            col = self.columns[tag] = ([], [], [])
            self._tag(tag)
        col[0].append(step)
        col[1].append(wall)
        col[2].append(value)

    # --- files ---------------------------------------------------------------------
    def add_files(self, run_dir: str) -> None:
        files_dir = os.path.join(run_dir, "files")
        for root, dirs, names in os.walk(files_dir):
            dirs.sort()
            for name in sorted(names):
                full = os.path.join(root, name)
                rel = os.path.relpath(full, files_dir).replace(os.sep, "/")
                if rel in WANDB_OWN_FILES or rel in self.values.consumed:
                    continue
                if os.path.islink(full):
                    self.report.problem(f"files/{rel} is a symlink to {os.readlink(full)}; not copied")
                    continue
                with open(full, "rb") as f:
                    content = f.read()
                if rel == "output.log" and rel in self.files:
                    content = self.files[rel] + content
                self.files[rel] = content
