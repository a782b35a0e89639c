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
from tbx.converters.wandb_file import HistoryColumns, RunLog
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


_SHIFTED = "step of a resumed fragment shifted to follow the previous fragment"


def _take(steps: Any, rows: np.ndarray) -> np.ndarray:
    """``steps[rows]`` as int64, from an array or from a list of Python ints (which may not fit)."""
    if isinstance(steps, np.ndarray):
        return steps[rows]
    return np.array([steps[r] for r in rows.tolist()], np.int64)


def _merge(chunk: tuple[np.ndarray, np.ndarray, np.ndarray] | None, rows: np.ndarray | None,
           pending: list[tuple[int, int, float, float]] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A column chunk: numbers at ``rows`` and the ``(row, step, wall, value)`` added one by one, by row."""
    if not pending:
        assert chunk is not None
        return chunk
    more = (np.array([p[1] for p in pending], np.int64), np.array([p[2] for p in pending], np.float64),
            np.array([p[3] for p in pending], np.float64))
    if chunk is None or rows is None:
        return more
    order = np.argsort(np.concatenate([rows, [p[0] for p in pending]]), kind="stable")
    steps, walls, values = (np.concatenate([a, b])[order] for a, b in zip(chunk, more))
    return steps, walls, values


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
        self.columns: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}  # chunks per W&B key
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
        self._pending: dict[str, list[tuple[int, int, float, float]]] = {}  # (row, step, wall, value) per key
        self._row = 0

    # --- metadata ----------------------------------------------------------------
    def add_meta(self, log: RunLog) -> None:
        data, run = self.data, log.run
        for metric in log.metrics:
            self.rules.add(metric)
        if ("global_step" in log.columns.index if log.columns is not None
                else any("global_step" in row for row in log.history)):
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
        for key, chunks in self.columns.items():
            data.scalars[self.tags[key]] = Scalars(*(np.concatenate(part) for part in zip(*chunks)))
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
        """Carry the fragment's history (``log.columns``, else ``log.history``), as the module docstring says.

        The rows are taken as columns (:class:`HistoryColumns`): steps, wall times
        and numbers are computed with numpy for all rows at once; the other
        values (text, typed values, nested dicts, booleans, nulls) go one by
        one through :meth:`_add_value`, in row order, and their scalars are
        merged into the columns by row. Tags are named, columns created and
        report reasons first counted in the order a row-by-row pass meets
        them (the parts of a nested dict count where the dict is).
        """
        items = log.columns if log.columns is not None else HistoryColumns.from_rows(log.history)
        n = items.rows
        wall0 = self.last_wall if self.last_wall is not None else (self.last_start or 0.0)
        if not n:
            self.last_wall = wall0
            return
        row_step, shift = self._row_steps(items)
        walls = self._walls(items, wall0)
        self.last_step = int(row_step[-1])
        self.last_wall = float(walls[-1])
        keys, code, row, values = items.keys, items.code, items.row, items.values
        hidden = [k in HIDDEN_KEYS or k.startswith("_wandb") for k in keys]
        step_keys = [None if h else self.rules.step_key(k) for k, h in zip(keys, hidden)]
        active = ~np.array(hidden, bool)[code]
        odd = np.flatnonzero(active & ~items.numeric).tolist()
        parts, users = self._flatten(items, odd)
        # The items of each key, in row order; its numbers become one column chunk.
        groups: dict[int, np.ndarray] = {}
        for c, g in items.groups.items():
            if hidden[c]:
                continue
            users.setdefault(step_keys[c], []).append(g)
            numeric = items.numeric[g]
            if not numeric.all():
                g = g[numeric]
            if len(g):
                groups[c] = g
        # Reports counted with numpy: (item, phase, kind, reason, n), made where a row-by-row pass makes them.
        later: list[tuple[int, int, str, str, int]] = []
        steps: dict[str, Any] = {}
        for key, used in users.items():
            if key == "_step":
                steps[key] = row_step
                continue
            if any(items.dense(u) for u in used):  # a key in every row: every row uses the step key
                mask = np.ones(n, bool)
            else:
                mask = np.zeros(n, bool)
                mask[row[np.concatenate(used)]] = True
            used = np.concatenate(used)
            steps[key], rounded = self._metric_steps(items, key, np.flatnonzero(mask), row_step)
            if len(rounded):
                first = int(used[row[used] == rounded[0]].min())
                later.append((first, 0, "scalars", f"non-integer step metric {key} rounded down", len(rounded)))
        if shift:
            moved = [g for c, g in groups.items() if step_keys[c] == "_step"]
            if moved:
                later.append((min(int(g[0]) for g in moved), 1, "scalars", _SHIFTED, sum(map(len, moved))))
        big = sorted(i for g in groups.values() for i in g[np.abs(items.number[g]) >= _MAX_FLOAT_INT].tolist()
                     if type(values[i]) is int and abs(values[i]) > _MAX_FLOAT_INT)
        if big:
            later.append((big[0], 3, "scalars", "integer beyond float64 precision rounded", len(big)))
        # In item order: reports, odd values, and each key's first number (its tag and column).
        events = sorted([(i, phase, j) for j, (i, phase, *_) in enumerate(later)]
                        + [(i, 1, -1) for i in odd] + [(int(g[0]), 2, -1) for g in groups.values()])
        files_dir = os.path.join(run_dir, "files")
        report = self.report
        self._pending = {}
        for i, phase, j in events:
            if j >= 0:
                _, _, kind, reason, count = later[j]
                report.transformed(kind, reason, count)
                continue
            tag = keys[code[i]]
            if phase == 2:
                if tag not in self.columns:
                    self.columns[tag] = []
                    self._tag(tag)
                continue
            value, r = values[i], int(row[i])
            key = step_keys[code[i]]
            wall = float(walls[r])
            self._row = r  # where _scalar puts what _add_value gives it
            if shift and key == "_step":
                report.transformed(kind_of(value), _SHIFTED)
            if i not in parts:
                self._add_value(tag, value, int(steps[key][r]), wall, files_dir)
                continue
            for sub, item, sub_key in parts[i]:
                if sub_key is None:
                    report.dropped(kind_of(item), "key repeated in a row after flattening nested dicts")
                    continue
                if shift and sub_key == "_step":
                    report.transformed(kind_of(item), _SHIFTED)
                self._add_value(sub, item, int(steps[sub_key][r]), wall, files_dir)
        walls = np.asarray(walls, np.float64)
        for c, g in groups.items():
            r = row[g]
            key_steps = steps[step_keys[c]]
            if items.dense(g) and isinstance(key_steps, np.ndarray):  # every row, in order: no gathers
                chunk = (key_steps, walls, items.number[g])
            else:
                chunk = (_take(key_steps, r), walls[r], items.number[g])
            self.columns[keys[c]].append(_merge(chunk, r, self._pending.pop(keys[c], None)))
        for tag, pending in self._pending.items():
            self.columns[tag].append(_merge(None, None, pending))

    def _flatten(self, items: HistoryColumns, odd: list[int]) -> tuple[dict[int, list[Any]], dict[str, list[Any]]]:
        """The parts of the nested dicts among items ``odd``: ``{item: [(tag, value, step key)]}``.

        A part whose tag the row already has gets step key None (it is
        dropped). Also returns, per step key, the items that need it.
        """
        parts: dict[int, list[tuple[str, Any, str | None]]] = {}
        users: dict[str, list[Any]] = {}
        taken: dict[int, set[str]] = {}
        keys, code, row = items.keys, items.code, items.row
        for i in odd:
            value = items.values[i]
            if not _is_plain_dict(value):
                continue
            r = int(row[i])
            seen = taken.get(r)
            if seen is None:
                lo, hi = np.searchsorted(row, [r, r + 1]).tolist()
                seen = taken[r] = {keys[c] for c in code[lo:hi].tolist()}
            out = parts[i] = []
            for sub, item in _flat_items(value, keys[code[i]] + "."):
                if sub in seen:
                    out.append((sub, item, None))
                    continue
                seen.add(sub)
                key = self.rules.step_key(sub)
                out.append((sub, item, key))
                users.setdefault(key, []).append(np.array([i]))
        return parts, users

    def _row_steps(self, items: HistoryColumns) -> tuple[Any, int]:
        """Each row's step (``_step``, else its index, plus the shift) and the shift."""
        n = items.rows
        col = items.numbers("_step")
        if col is not None:
            present, value = col
            valid = present & np.isfinite(value)
            if not (np.abs(value[valid]) < _MAX_FLOAT_INT).all():
                col = None
        if col is None:  # odd _step values: as a row-by-row pass computes them
            found = [_as_int_step(v) for v in items.column("_step")]
            first = found[0]
            shift = self._shift(first)
            return [(i if s is None else s) + shift for i, s in enumerate(found)], shift
        step = np.floor(np.where(valid, value, 0)).astype(np.int64)
        shift = self._shift(int(step[0]) if valid[0] else None)
        return np.where(valid, step, np.arange(n)) + shift, shift

    def _shift(self, first: int | None) -> int:
        """How far a resumed fragment's steps move to follow the previous fragment's."""
        if first is not None and self.last_step is not None and first <= self.last_step:
            return self.last_step + 1 - first
        return 0

    def _walls(self, items: HistoryColumns, wall: float) -> Any:
        """Each row's wall time: ``_timestamp``, else start + ``_runtime``, else the previous row's."""
        ts, rt = items.numbers("_timestamp"), items.numbers("_runtime")
        if ts is None or rt is None:  # odd values: as a row-by-row pass computes them
            out = []
            for t, r in zip(items.column("_timestamp"), items.column("_runtime")):
                if (type(t) is float or type(t) is int) and math.isfinite(t):
                    wall = float(t)
                elif isinstance(r, (int, float)) and self.last_start is not None:
                    wall = self.last_start + float(r)
                out.append(wall)
            return out
        ok_ts = ts[0] & np.isfinite(ts[1])
        defined = ok_ts | (rt[0] if self.last_start is not None else False)
        value = np.where(ok_ts, ts[1], (self.last_start or 0.0) + rt[1])
        at = np.maximum.accumulate(np.where(defined, np.arange(items.rows), -1))
        return np.where(at >= 0, value[np.maximum(at, 0)], wall)

    def _metric_steps(self, items: HistoryColumns, key: str, rows: np.ndarray, row_step: Any) -> tuple[Any, Any]:
        """Steps of the metrics whose step metric is ``key``, at ``rows`` (the rows that use it).

        A row without a usable value takes the last one of an earlier such
        row (W&B's step_sync), else its own step. Also returns the rows whose
        value was rounded down.
        """
        col = items.numbers(key) if isinstance(row_step, np.ndarray) else None
        if col is not None:
            out = np.zeros(items.rows, np.int64)
            present, value = col
            value = value[rows]
            valid = present[rows] & np.isfinite(value)
            if (np.abs(value[valid]) < _MAX_FLOAT_INT).all():
                floor = np.floor(np.where(valid, value, 0))
                at = np.maximum.accumulate(np.where(valid, np.arange(len(rows)), -1))
                own = row_step[rows]
                out[rows] = np.where(at >= 0, floor.astype(np.int64)[np.maximum(at, 0)], own)
                return out, rows[valid & (floor != value)]
        out = [0] * items.rows  # Python ints: a step beyond int64 fails only where a scalar uses it
        carried = None
        rounded = []
        column = items.column(key)
        for r in rows.tolist():
            value = column[r]
            step = _as_int_step(value)
            if step is None:
                step = row_step[r] if carried is None else carried
            else:
                if step != value:
                    rounded.append(r)
                carried = step
            out[r] = step
        return out, rounded

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
        if tag not in self.columns:
            self.columns[tag] = []
            self._tag(tag)
        self._pending.setdefault(tag, []).append((self._row, step, wall, value))

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
