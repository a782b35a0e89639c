"""W&B offline run directories as a sync source (no wandb-core, no network).

``WandbOfflineSource(path)`` reads what ``wandb.init(mode="offline")`` left on
disk. ``path`` is a ``.wandb`` file, a run directory (``offline-run-*`` or
``run-*``, holding ``run-<id>.wandb`` and ``files/``), a ``wandb/`` directory
holding run directories, or the directory above one (``WANDB_DIR``). The
``.wandb`` transaction log is the authority (wandb-core does not write
``config.yaml`` or ``wandb-summary.json`` offline); it is read with
:mod:`tbx.converters.wandb_file`.

A run is a W&B run id. A run resumed offline has one run directory per
process (each a *fragment*); they are read in start-time order as one run.
An offline resume cannot know the step the run had reached, so a fragment
whose ``_step`` starts again at or below the previous fragment's last one is
shifted to follow it (counted in the report).

Mapping (W&B → model):

- RunRecord: run id → key, display name → name, project, notes, tags →
  labels, group, job type, start time; the exit record's code → status
  (0 FINISHED, else FAILED; no exit record: None) and ``start + runtime``
  (W&B's whole seconds) or the last row's ``_timestamp``, the later → end time.
- config (RunRecord and ConfigRecords, in order): ``_wandb`` dropped,
  ``{"value": v, "desc": ...}`` unwrapped, nested dicts flattened with ``.``
  → params. Summary updates, in order, ``_wandb`` dropped → summary.
- History rows. A metric's TensorBoard step is the row's value of its
  ``define_metric`` step metric; without one, ``global_step`` when the run
  logs it (tbx's W&B export and W&B's TensorBoard sync write it), else
  ``_step``. A step metric missing from a row takes its last value seen
  (what W&B's step_sync does). The wall time is ``_timestamp``. ``_step``,
  ``_runtime``, ``_timestamp`` and ``global_step`` are not series. Nested
  dicts without ``_type`` become ``parent.child`` tags. Values:

  ==================================  ========================================
  int, float, NaN, ±Infinity          scalars (booleans as 0/1, counted)
  string                              text
  ``histogram``                       histograms (``bins``/``values``, or
                                      ``packedBins``)
  ``image-file``, ``images/separated``  images (one item per image, ``index``)
  ``audio-file``, ``audio``           audio (WAV sample rate from the file)
  ``video-file``, ``videos``          video
  ``table-file``                      text: the table as a markdown table
                                      (TensorBoard's text dashboard renders
                                      it); the table JSON is also carried as
                                      a file
  null, lists, other ``_type``\\ s     dropped, counted with the reason
  ==================================  ========================================

  A media file that is missing is dropped with its path as the reason; the
  rest of the run goes on.
- Files under ``files/`` that no series item consumed and that are not
  wandb's own (``config.yaml``, ``wandb-summary.json``,
  ``wandb-metadata.json``, ``requirements.txt``) → files; ``output.log`` of
  the fragments is joined. Symlinks (W&B's links to TensorBoard event files)
  are not followed; each is listed in the report's problems.
- Damage to a ``.wandb`` file: bad chunks lose the rest of their block and are
  counted as dropped ``records``; a cut-off end (a run still being written) is
  listed in the problems. ``strict=True`` makes damage fail the run instead.
"""

from __future__ import annotations

import datetime
import fnmatch
import glob
import io
import json
import math
import os
import re
import wave
from collections.abc import Iterator
from typing import Any

import numpy as np

from tbx.converters.base import RunRef, Source, SyncError
from tbx.converters.model import File, Histogram, Media, RunData, Scalars, Text, flatten
from tbx.converters.report import RunReport
from tbx.converters.wandb_file import (
    HEADER, MAGIC, LogFormatError, LogStats, RunLog, read_log, read_run_record,
)

#: Files W&B writes about the run itself; their content is in the model already.
WANDB_OWN_FILES = frozenset({"config.yaml", "wandb-summary.json", "wandb-metadata.json", "requirements.txt"})
#: History keys that are W&B's bookkeeping, not series.
HIDDEN_KEYS = frozenset({"_step", "_runtime", "_timestamp", "global_step"})

_RUN_DIR = re.compile(r"^(?:offline-)?run-(\d{8}_\d{6})-(.+)$")
_MAX_FLOAT_INT = 2 ** 53


class _Fragment:
    """One ``.wandb`` file and its run directory."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.run_dir = os.path.dirname(path)
        name = os.path.basename(path)
        self.run_id = name[len("run-"):-len(".wandb")] if name.startswith("run-") else name[:-len(".wandb")]
        m = _RUN_DIR.match(os.path.basename(self.run_dir))
        self.start = 0.0
        if m:
            self.start = _dir_time(m.group(1))
        self.display_name = ""
        try:
            run = read_run_record(path)
        except LogFormatError:
            run = None  # listed anyway: read_run reports the error for this run alone
        if run is not None:
            self.run_id = run.run_id or self.run_id
            self.display_name = run.display_name
            if run.HasField("start_time"):
                self.start = run.start_time.seconds + run.start_time.nanos / 1e9


def _dir_time(stamp: str) -> float:
    try:
        return datetime.datetime.strptime(stamp, "%Y%m%d_%H%M%S").timestamp()
    except ValueError:
        return 0.0


def _has_header(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def find_logs(path: str) -> list[str]:
    """The ``.wandb`` files under ``path`` (a file, a run dir, a wandb dir or the dir above it)."""
    if os.path.isfile(path):
        if not _has_header(path):
            raise SyncError(f"{path} is not a W&B transaction log: expected a .wandb file starting with "
                            f"{HEADER[:4]!r} (or a run directory or wandb/ directory holding such files)")
        return [path]
    if not os.path.isdir(path):
        raise SyncError(f"{path} does not exist: expected a W&B offline run directory, a wandb/ directory "
                        "or a .wandb file")
    esc = glob.escape(path)
    for pattern in ("*.wandb", "*/*.wandb", "wandb/*/*.wandb", ".wandb/*/*.wandb"):
        found = sorted(glob.glob(os.path.join(esc, pattern)))
        if pattern != "*.wandb":  # run directories only, once each (latest-run is a link to one)
            found = [f for f in found if _RUN_DIR.match(os.path.basename(os.path.dirname(f)))
                     and not os.path.islink(os.path.dirname(f))]
        if found:
            return found
    raise SyncError(f"{path} is not a W&B directory: expected a .wandb file, a run directory "
                    "(offline-run-*/ or run-*/) holding run-<id>.wandb, or a wandb/ directory holding "
                    "such run directories")


class WandbOfflineSource(Source):
    """Reads W&B offline runs from disk (see the module docstring for the mapping).

    Args:
        path: a ``.wandb`` file, a run directory, a ``wandb/`` directory or
            the directory above one.
        strict: fail a run whose ``.wandb`` file is damaged instead of
            carrying what can be read.
    """

    def __init__(self, path: Any, strict: bool = False) -> None:
        self.path = os.fspath(path)
        self.strict = strict
        self.spec = f"wandb:{self.path}"

    def check(self) -> None:
        find_logs(self.path)

    def list_runs(self) -> list[RunRef]:
        runs: dict[str, list[_Fragment]] = {}
        for log in find_logs(self.path):
            frag = _Fragment(log)
            runs.setdefault(frag.run_id, []).append(frag)
        refs = []
        for run_id, frags in runs.items():
            frags.sort(key=lambda f: (f.start, f.path))
            names = [f.display_name for f in frags if f.display_name]
            refs.append(RunRef(key=run_id, name=names[-1] if names else run_id, extra=frags))
        refs.sort(key=lambda r: (r.extra[0].start, r.key))
        return refs

    def read_run(self, ref: RunRef, report: RunReport) -> RunData:
        frags = ref.extra if ref.extra else [f for f in map(_Fragment, find_logs(self.path))
                                             if f.run_id == ref.key]
        if not frags:
            raise SyncError(f"run {ref.key} is not in {self.path}")
        data = RunData(key=ref.key, name=ref.name)
        builder = _RunBuilder(data, report)
        config: dict[str, Any] = {}
        for frag in frags:
            log = read_log(frag.path, lenient=not self.strict)
            _report_damage(os.path.basename(frag.path), log.stats, report)
            builder.add_meta(log)
            _deep_update(config, log.config)
            _deep_update(data.summary, log.summary)
            builder.add_history(log, frag.run_dir)
            builder.add_files(frag.run_dir)
        data.summary.pop("_wandb", None)
        config.pop("_wandb", None)
        data.params = flatten({k: _unwrap(v) for k, v in config.items()})
        builder.finish()
        return data


def _report_damage(name: str, stats: LogStats, report: RunReport) -> None:
    if stats.bad_chunks:
        report.dropped("records", f"damaged chunks in {name} (the rest of each one's 32 KiB block is lost)",
                       stats.bad_chunks)
    undecodable = [p for p in stats.problems if p.reason in ("record proto", "value json")]
    for reason in ("record proto", "value json"):
        n = sum(p.reason == reason for p in undecodable)
        what = "undecodable record" if reason == "record proto" else "undecodable value"
        report.dropped("records", f"{what} in {name}", n)
    for p in stats.problems[:5]:
        report.problem(str(p))
    if stats.truncated_bytes:
        report.problem(f"{name}: cut-off end of {stats.truncated_bytes} bytes (a record being written "
                       "when the file was read or the run stopped)")


def _deep_update(target: dict[str, Any], update: dict[str, Any]) -> None:
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(target.get(k), dict) and "_type" not in v:
            _deep_update(target[k], v)
        else:
            target[k] = v


def _unwrap(value: Any) -> Any:
    """W&B stores config entries as ``{"value": v, "desc": d}`` in config.yaml-shaped data."""
    if isinstance(value, dict):
        if "value" in value and set(value) <= {"value", "desc"}:
            return _unwrap(value["value"])
        return {k: _unwrap(v) for k, v in value.items()}
    return value


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


class _RunBuilder:
    """Accumulates fragments into a RunData."""

    def __init__(self, data: RunData, report: RunReport) -> None:
        self.data = data
        self.report = report
        self.rules = _StepRules()
        self.columns: dict[str, tuple[list[int], list[float], list[float]]] = {}
        self.files: dict[str, bytes] = {}
        self.consumed: set[str] = set()
        self.last_step: int | None = None  # last _step of the previous fragments
        self.last_wall: float | None = None
        self.exit: Any = None
        self.last_start: float | None = None
        self.resumed_runtime = 0

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
        for tag, (steps, walls, values) in self.columns.items():
            data.scalars[tag] = Scalars(np.array(steps, np.int64), np.array(walls), np.array(values))
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
                if not tag:
                    report.dropped(_kind_of(value), "empty key")
                    continue
                step = self._step(tag, row, row_step, shift, carried, steps, value)
                if type(value) is float or type(value) is int:  # the common case, kept short
                    col = columns.get(tag)
                    if col is None:
                        col = columns[tag] = ([], [], [])
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
                            report.dropped(_kind_of(item), "key repeated in a row after flattening nested dicts")
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
            self.report.transformed(_kind_of(value), "step of a resumed fragment shifted to follow "
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
            self.data.add("text", tag, Text(step, wall, value))
        elif value is None:
            report.dropped("scalars", "null value")
        elif isinstance(value, dict):
            self._typed(tag, value, step, wall, files_dir)
        else:
            report.dropped("tensors", f"{type(value).__name__} value (no TensorBoard kind)")

    def _scalar(self, tag: str, step: int, wall: float, value: float) -> None:
        col = self.columns.get(tag)
        if col is None:
            col = self.columns[tag] = ([], [], [])
        col[0].append(step)
        col[1].append(wall)
        col[2].append(value)

    def _typed(self, tag: str, value: dict[str, Any], step: int, wall: float, files_dir: str) -> None:
        kind = value.get("_type")
        report = self.report
        if kind == "histogram":
            hist = _histogram(value, step, wall)
            if hist is None:
                report.dropped("histograms", "malformed W&B histogram")
            else:
                self.data.add("histograms", tag, hist)
        elif kind == "image-file":
            self._media("images", tag, [value], [value.get("caption")], value, step, wall, files_dir)
        elif kind == "images/separated":
            files = [{"path": p} for p in value.get("filenames") or []]
            self._media("images", tag, files, value.get("captions") or [], value, step, wall, files_dir)
        elif kind == "audio-file":
            self._media("audio", tag, [value], [value.get("caption")], value, step, wall, files_dir)
        elif kind == "audio":
            self._media("audio", tag, value.get("audio") or [], value.get("captions") or [], {}, step, wall,
                        files_dir)
        elif kind == "video-file":
            self._media("video", tag, [value], [value.get("caption")], value, step, wall, files_dir)
        elif kind == "videos":
            self._media("video", tag, value.get("videos") or [], value.get("captions") or [], {}, step, wall,
                        files_dir)
        elif kind == "table-file":
            self._table(tag, value, step, wall, files_dir)
        else:
            report.dropped("tensors", f"W&B value type {kind!r} has no TensorBoard kind")

    def _read_media(self, kind: str, files_dir: str, rel: Any) -> bytes | None:
        if not isinstance(rel, str) or not rel:
            self.report.dropped(kind, "media value without a file path")
            return None
        full = os.path.join(files_dir, *rel.split("/"))
        try:
            with open(full, "rb") as f:
                return f.read()
        except OSError:
            self.report.dropped(kind, f"missing media file {rel}")
            return None

    def _media(self, kind: str, tag: str, entries: list[Any], captions: list[Any], common: dict[str, Any],
               step: int, wall: float, files_dir: str) -> None:
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                self.report.dropped(kind, "malformed W&B media value")
                continue
            rel = entry.get("path")
            data = self._read_media(kind, files_dir, rel)
            if data is None:
                continue
            self.consumed.add(rel)
            fmt = entry.get("format") or common.get("format") or os.path.splitext(rel)[1][1:].lower()
            caption = captions[index] if index < len(captions) and isinstance(captions[index], str) else None
            caption = caption or None
            item = Media(step, wall, data, fmt, index=index, caption=caption,
                         width=_int_or_none(entry.get("width", common.get("width"))),
                         height=_int_or_none(entry.get("height", common.get("height"))))
            if kind == "audio" and fmt == "wav":
                item.sample_rate = _wav_rate(data)
            self.data.add(kind, tag, item)

    def _table(self, tag: str, value: dict[str, Any], step: int, wall: float, files_dir: str) -> None:
        raw = self._read_media("text", files_dir, value.get("path"))
        if raw is None:
            return
        try:
            table = json.loads(raw)
            text = _markdown_table(table["columns"], table["data"])
        except (ValueError, KeyError, TypeError):
            self.report.dropped("text", f"unreadable W&B table {value.get('path')}")
            return
        self.report.transformed("text", "W&B table rendered as a markdown table (its JSON carried as a file)")
        self.data.add("text", tag, Text(step, wall, text))

    # --- files ---------------------------------------------------------------------
    def add_files(self, run_dir: str) -> None:
        files_dir = os.path.join(run_dir, "files")
        for root, dirs, names in os.walk(files_dir):
            dirs.sort()
            for name in sorted(names):
                full = os.path.join(root, name)
                rel = os.path.relpath(full, files_dir).replace(os.sep, "/")
                if rel in WANDB_OWN_FILES or rel in self.consumed:
                    continue
                if os.path.islink(full):
                    self.report.problem(f"files/{rel} is a symlink to {os.readlink(full)}; not copied")
                    continue
                with open(full, "rb") as f:
                    content = f.read()
                if rel == "output.log" and rel in self.files:
                    content = self.files[rel] + content
                self.files[rel] = content


def _kind_of(value: Any) -> str:
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return {"histogram": "histograms", "image-file": "images", "images/separated": "images",
                "audio-file": "audio", "audio": "audio", "video-file": "video", "videos": "video",
                "table-file": "text"}.get(value.get("_type"), "tensors")
    return "scalars"


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _histogram(value: dict[str, Any], step: int, wall: float) -> Histogram | None:
    counts = value.get("values")
    bins = value.get("bins")
    packed = value.get("packedBins")
    try:
        if bins is None and isinstance(packed, dict):
            bins = packed["min"] + packed["size"] * np.arange(int(packed["count"]) + 1)
        return Histogram(step, wall, np.asarray(bins, np.float64), np.asarray(counts, np.float64))
    except (TypeError, ValueError, KeyError):
        return None


def _wav_rate(data: bytes) -> float | None:
    try:
        with wave.open(io.BytesIO(data)) as w:
            return float(w.getframerate())
    except (wave.Error, EOFError):
        return None


def _cell(value: Any) -> str:
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        text = repr(value)
    else:
        text = json.dumps(value, sort_keys=True)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", "<br>").replace("\n", "<br>")


def _markdown_table(columns: list[Any], rows: list[list[Any]]) -> str:
    """A W&B table as a GitHub-style markdown table (TensorBoard's text plugin renders these)."""
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
