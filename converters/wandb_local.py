"""W&B offline run directories as a sync source (no wandb-core, no network).

``WandbOfflineSource(path)`` reads what ``wandb.init(mode="offline")`` left on
disk. ``path`` is a ``.wandb`` file, a run directory (``offline-run-*`` or
``run-*``, holding ``run-<id>.wandb`` and ``files/``), a ``wandb/`` directory
holding run directories, the directory above one (``WANDB_DIR``), or a list
of any of these. The ``.wandb`` transaction log is the authority (wandb-core
does not write ``config.yaml`` or ``wandb-summary.json`` offline); it is read
with :mod:`tbx.converters.wandb_file`, and decoded into the model as
:mod:`tbx.converters.wandb_decode` describes.

A run is a W&B run id. A run resumed offline has one run directory per
process (each a *fragment*); they are read in start-time order as one run:
the config is merged by top-level key, a later fragment's value winning (as
W&B replaces a config key's whole value), the summary by path. An offline
resume cannot know the step the run had reached, so a fragment whose
``_step`` starts again at or below the previous fragment's last one is
shifted to follow it (counted in the report).

Damage to a ``.wandb`` file: bad chunks lose the rest of their block and are
counted as dropped ``records``; a cut-off end (a run still being written) is
listed in the problems. ``strict=True`` makes damage fail the run instead.
"""

from __future__ import annotations

import datetime
import glob
import os
import re
from collections.abc import Sequence
from typing import Any

from tbx.converters.base import RunRef, Source, SyncError
from tbx.converters.model import RunData
from tbx.converters.report import RunReport
from tbx.converters.wandb_decode import RunBuilder, apply_config
from tbx.converters.wandb_file import HEADER, MAGIC, LogFormatError, LogStats, read_log, read_run_record
from tbx.converters.wandb_framing import PathLike

_RUN_DIR = re.compile(r"^(?:offline-)?run-(\d{8}_\d{6})-(.+)$")


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
    """Reads W&B offline runs from disk (see the module docstring).

    Args:
        path: a ``.wandb`` file, a run directory, a ``wandb/`` directory or
            the directory above one; or a list of these, read as one
            source (a log found through two of them is read once).
        strict: fail a run whose ``.wandb`` file is damaged instead of
            carrying what can be read.
    """

    def __init__(self, path: PathLike | Sequence[PathLike], strict: bool = False) -> None:
        if isinstance(path, (str, os.PathLike)):
            self.paths = [os.fspath(path)]
        else:
            self.paths = [os.fspath(p) for p in path]
            if not self.paths:
                raise SyncError("a W&B offline source needs at least one path (a .wandb file, a run "
                                "directory or a wandb/ directory); got an empty list")
        self.strict = strict
        self.spec = "wandb:" + (self.paths[0] if len(self.paths) == 1 else "[" + ", ".join(self.paths) + "]")

    def _logs(self) -> list[str]:
        seen: set[str] = set()
        logs = []
        for path in self.paths:
            for log in find_logs(path):
                real = os.path.realpath(log)
                if real not in seen:
                    seen.add(real)
                    logs.append(log)
        return logs

    def check(self) -> None:
        self._logs()

    def list_runs(self) -> list[RunRef]:
        runs: dict[str, list[_Fragment]] = {}
        for log in self._logs():
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
        frags = ref.extra if ref.extra else [f for f in map(_Fragment, self._logs()) if f.run_id == ref.key]
        if not frags:
            raise SyncError(f"run {ref.key} is not in {self.spec[len('wandb:'):]}")
        data = RunData(key=ref.key, name=ref.name)
        builder = RunBuilder(data, report)
        config: dict[str, Any] = {}
        for frag in frags:
            log = read_log(frag.path, lenient=not self.strict, columns=True)
            _report_damage(os.path.basename(frag.path), log.stats, report)
            builder.add_meta(log)
            config.update(log.config)
            _deep_update(data.summary, log.summary)
            builder.add_history(log, frag.run_dir)
            builder.add_files(frag.run_dir)
        data.summary.pop("_wandb", None)
        builder.finish()
        apply_config(data, config, report)
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

