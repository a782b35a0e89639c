"""W&B as a sync destination: runs written through the real ``wandb`` SDK.

``wandb:DIR`` writes offline run directories under ``DIR/wandb/`` that
``wandb sync`` uploads later; ``wandb://ENTITY/PROJECT`` writes online runs.
The SDK is imported only when a sync uses it.

Mapping (what :meth:`WandbRun.expected` promises, counted in the report):

- **History rows.** Every item of every kind becomes a value in a history
  row. Items with the same TensorBoard step go into one row, the step as
  ``global_step`` (``define_metric("*", step_metric="global_step")`` makes
  it the charts' x axis) and the wall time as ``_timestamp``. W&B's own
  ``_step`` only counts rows: it must increase, so a tag whose steps go back
  (a restarted job) opens a new round of rows after the others; its
  ``global_step`` keeps the TensorBoard value. A row holds one wall time, so
  items of a step logged more than half a millisecond apart (the engine's
  wall-time tolerance) go to separate rows with the same ``global_step``, as
  does a tag logged twice at one step.
- **Tags** named like W&B's reserved keys (``global_step``, ``_…``) are
  renamed ``tb/<tag>``.
- **Histograms** keep their edges and counts exactly (float64 JSON); more
  than 512 bins (W&B's limit) are re-binned by summing groups of
  ``ceil(k/512)`` adjacent bins, so every count survives.
- **Images, audio, video** keep their encoded bytes: the SDK is handed a
  file holding them and copies it unchanged into ``files/media``. The items
  of one TensorBoard event (an image batch) become a list; W&B keeps at most
  108 images per list, the rest are dropped.
- **Text** becomes a string value in the row (W&B shows strings in tables
  and the run page; a wandb.Html would rewrite the markdown).
- **PR curves** become a ``wandb.Table`` with columns ``recall, precision``
  (what W&B's own TensorBoard import makes; the SDK also stages the table for
  its ``run_table`` artifact under ``$WANDB_DATA_DIR``, by default
  ``~/.local/share/wandb``). W&B readers give a table back as a markdown
  table in the text kind, so that is what is verified. The HParams experiment is
  not needed (the params are the config; its value domains are not kept);
  other raw TensorBoard values
  (graphs, meshes, custom scalar layouts, text tables) have no W&B
  equivalent and are dropped, each counted.
- **Files** are copied into the run's ``files/`` and saved (``run.save``),
  so ``wandb sync`` uploads them; a path W&B writes itself (``media/…``,
  ``output.log``, ``config.yaml``, …) goes under ``tbx-files/``.
- **Params** become the config as given (nested dicts stay nested; W&B
  strips leading and trailing ``-`` from keys). Key/value tags, the source's
  start and end time and status go to the hidden config key ``_tbx``: W&B
  tags are plain labels (1 to 64 characters) and W&B sets its own start
  time. The summary is set after the history (W&B's own ``_…`` keys and
  references to the source's media files are left to W&B). FAILED finishes
  with exit code 1, KILLED with 255.

Incremental syncs and crash safety: W&B's offline writer completes a run
directory only at ``run.finish()``, so one commit is one *fragment*, an
offline run directory with the run's id (``resume="allow"``), created,
filled and finished inside :meth:`WandbRun.commit`; its ``_step`` goes on
from the previous fragment's. A finished fragment gets a marker file; the
ledger state lists the fragments of committed work and the next ``_step``.
A sync that starts from a state deletes the run's fragment directories the
state does not list (left by a killed sync), so resent items appear once;
without a state (a lost ledger), finished fragments count as already there.
The id is a hash of the source project and run key, so every sync of a
source run resumes the same W&B run.

``run.finish()`` returns before wandb-core has written the end of the
run's ``.wandb`` log (it writes 32 KiB blocks and the last one when it
closes the run's stream), so an offline fragment counts as finished, and
gets its marker, only once its log holds the exit record
(:func:`~tbx.converters.wandb_export_finish.wait_for_log`).

Several runs may be written at once from worker threads: each uses its own
``wandb.init(reinit="create_new")`` run object, never the module globals.

Speed. ``run.log`` costs about 0.4 ms a row whatever the row holds, most of
it one hand-over to the SDK's event-loop thread per call: 1M points logged
one ``run.log`` per point take about four minutes. Here the rows are
planned with numpy (:func:`~tbx.converters.wandb_rows.history_rows`) and
rows of plain floats go to wandb-core in batches of the same requests
``run.log`` sends (:class:`~tbx.converters.wandb_rows._HistoryWriter`), so
1M points in 100,000 rows take about 20 s including the read-back
(``benchmarks/sync_wandb.py``).

The destination's parts: :mod:`~tbx.converters.wandb_export_map` (the
mapping rules above, applied by :meth:`WandbRun.expected`),
:mod:`~tbx.converters.wandb_rows` (history rows, planned and sent) and
:mod:`~tbx.converters.wandb_export_finish` (waiting for the end of a
fragment's log); this module holds the destination and its runs.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from typing import Any

import numpy as np

from tbx.converters.base import ConnectError, Destination, DestRun, SyncError
from tbx.converters.model import File, Media, RunData
from tbx.converters.report import RunReport
from tbx.converters.wandb_export_finish import log_finished, wait_for_log
from tbx.converters.wandb_export_map import (IMAGE_FORMATS, META_KEY, MOVED_FILES, PR_COLUMNS, RENAMED,
                                             RESERVED_DIRS, RESERVED_FILES, STEP_KEY, TableText, _config,
                                             _expected_items, _labels, _pr_texts, _project_name, _safe_path,
                                             _summary, history_key, media_groups, rebin)
from tbx.converters.wandb_rows import _HistoryWriter, _Item, _Series, history_rows

#: written into a fragment directory once its run has finished.
MARKER = "tbx-sync.json"
EXIT_CODES = {"FAILED": 1, "KILLED": 255}
#: quiet, fast runs: no console capture, system stats, git, code or requirements.
SETTINGS = dict(console="off", silent=True, x_disable_stats=True, x_disable_meta=True,
                x_disable_machine_info=True, disable_git=True, save_code=False, disable_code=True,
                x_save_requirements=False, disable_job_creation=True, allow_media_symlink=False)
#: False makes every row go through ``run.log`` (the tests compare both paths).
FAST_HISTORY = True

__all__ = [
    "FAST_HISTORY", "MARKER", "META_KEY", "SETTINGS", "STEP_KEY", "WandbDestination", "WandbRun", "history_rows",
    "log_finished", "media_groups", "rebin", "run_id", "wait_for_log", "wandb_module",
]


def wandb_module() -> Any:
    try:
        import wandb
    except ImportError as exc:
        raise SyncError("writing W&B runs needs the wandb SDK: pip install wandb") from exc
    return wandb


def run_id(project: str | None, key: str) -> str:
    """The W&B run id of a source run: 16 hex digits of a hash, the same for every sync."""
    return hashlib.sha256(f"{project or ''}\0{key}".encode()).hexdigest()[:16]


# --- the destination ---------------------------------------------------------------

class WandbRun(DestRun):
    #: items per commit this destination asks for: each commit is one fragment (a wandb.init), and
    #: a step's items only share a history row within one fragment.
    commit_every = 1_000_000

    def __init__(self, dest: WandbDestination, run: RunData, state: dict[str, Any] | None) -> None:
        self.dest = dest
        self.key = run.key
        self.project = dest.project or _project_name(run.project)
        self.state = dict(state) if state else {
            "id": run_id(run.project, run.key), "project": self.project, "fragments": [], "next_step": 0}
        self.id = self.state["id"]
        self.project = self.state["project"]
        self.ident = (f"{os.path.join(dest.root, 'wandb')}/offline-run-*-{self.id}" if dest.mode == "offline"
                      else f"wandb://{dest.entity}/{self.project}/{self.id}")
        self._pending: dict[tuple[str, str], list[Any]] = {}
        self._files: list[File] = []
        self._exp: RunData | None = None
        self._config: dict[str, Any] = {}
        self._written = False
        self._tmp: str | None = None
        if state is None and dest.mode == "offline":
            done = [(d, m) for d, m in self._fragment_dirs() if m is not None and m.get("key") == run.key]
            if done:
                self.existing = True
                self.state["fragments"] = [os.path.relpath(d, dest.root) for d, _ in done]
                self.state["next_step"] = max(int(m.get("next_step", 0)) for _, m in done)

    # where the fragments are
    def _fragment_dirs(self) -> list[tuple[str, dict[str, Any] | None]]:
        """This run's offline directories, oldest first, with their markers (None: unfinished)."""
        # wandb names them offline-run-<time>-<id>, adding -1, -2, ... within one second
        name = re.compile(rf"^offline-run-(\d{{8}}_\d{{6}})-{self.id}(?:-(\d+))?$")
        found = []
        for sub in ("wandb", ".wandb"):
            for d in glob.glob(os.path.join(glob.escape(self.dest.root), sub, f"offline-run-*-{self.id}*")):
                m = name.match(os.path.basename(d))
                if m:
                    found.append(((m.group(1), int(m.group(2) or -1)), d))
        out = []
        for _, d in sorted(found):
            try:
                with open(os.path.join(d, MARKER), encoding="utf-8") as f:
                    out.append((d, json.load(f)))
            except (OSError, ValueError):
                out.append((d, None))
        return out

    def _drop_uncommitted(self) -> None:
        keep = {os.path.normpath(p) for p in self.state["fragments"]}
        for d, _ in self._fragment_dirs():
            if os.path.normpath(os.path.relpath(d, self.dest.root)) not in keep:
                shutil.rmtree(d)

    # the contract
    def expected(self, run: RunData, report: RunReport) -> RunData:
        self._config = _config(run.params, report)
        # nested config stays nested, as W&B's readers (ours included) give it back
        exp = RunData(run.key, run.name, self.project, dict(self._config), dict(run.tags),
                      _labels(run.labels, report), run.notes, run.group, run.job_type, run.start_time,
                      run.end_time, run.status, _summary(run.summary, report))
        report.transformed("tags", "kept in the hidden config key _tbx.tags (W&B tags are labels)", len(run.tags))
        for kind, per_tag in run.series.items():
            for tag, items in per_tag.items():
                key = history_key(tag)
                kept = _expected_items(kind, items, report)
                if key != tag and kept is not None:
                    report.transformed(kind, RENAMED, len(kept))
                if kind == "tensors" and kept:  # PR curves: tables, which W&B readers show as text
                    texts = _pr_texts(kept, key in exp.series["text"] or key in run.series["text"], report)
                    if texts:
                        exp.series["text"][key] = texts
                elif kept is not None and len(kept):
                    exp.series.setdefault(kind, {})[key] = kept
        exp.files = []
        for f in run.files:
            if not _safe_path(f.path):
                report.dropped("files", "path not relative to the run")
            elif f.path in RESERVED_FILES or f.path.startswith(RESERVED_DIRS):
                report.transformed("files", f"path W&B writes itself: stored under {MOVED_FILES}/")
                exp.files.append(File(f"{MOVED_FILES}/{f.path}", f.data))
            else:
                exp.files.append(f)
        return exp

    def write_meta(self, run: RunData) -> None:
        self._exp = run
        if self.dest.mode == "offline":
            os.makedirs(self.dest.root, exist_ok=True)
            self._drop_uncommitted()

    def write(self, kind: str, tag: str, items: Any) -> None:
        if kind == "files":
            self._files.extend(items)
        elif kind == "scalars":
            self._pending.setdefault((kind, tag), []).append(items)
        else:
            self._pending.setdefault((kind, tag), []).extend(items)

    def commit(self) -> None:
        if self._pending or self._files:
            self._fragment()

    def finish(self, run: RunData) -> None:
        self._exp = run
        if not self._written:  # new metadata only: a fragment without history
            self._fragment()

    def read_back(self) -> RunData:
        if self.dest.mode != "offline":
            return self._read_back_cloud()
        from tbx.converters.wandb_local import WandbOfflineSource
        # Only this run's committed fragments, so reading one run does not scan every run of the
        # directory; one deleted by hand is left out (verification reports what is missing).
        fragments = [os.path.join(self.dest.root, rel) for rel in self.state["fragments"]]
        fragments = [d for d in fragments if os.path.isdir(d)]
        if not fragments:
            return RunData(self.id, self.id)
        src = WandbOfflineSource(fragments)
        refs = [r for r in src.list_runs() if r.key == self.id]
        return src.read_run(refs[0], RunReport(self.key, self.key)) if refs else RunData(self.id, self.id)

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # writing one fragment
    def _fragment(self) -> None:
        wandb = wandb_module()
        exp = self._exp
        assert exp is not None, "write_meta() comes before commit()"
        rows = history_rows([self._series(kind, tag, items) for (kind, tag), items in self._pending.items()])
        run = self._init(wandb, exp)
        code = EXIT_CODES.get(exp.status or "", 0)
        try:
            run.define_metric(STEP_KEY)
            run.define_metric("*", step_metric=STEP_KEY)
            step = max(int(self.state["next_step"]), int(getattr(run, "starting_step", 0) or 0))
            history = _HistoryWriter(wandb, run, lambda item: self._wandb_value(wandb, item), FAST_HISTORY)
            for tb_step, wall, keys, values in rows:
                history.row(step, tb_step, wall, keys, values)
                step += 1
            history.flush()
            for f in self._files:
                path = os.path.join(run.dir, *f.path.split("/"))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as out:
                    out.write(f.data)
                run.save(path, base_path=run.dir, policy="now")
            if exp.summary:
                run.summary.update(exp.summary)
        except BaseException:
            run.finish(exit_code=1)  # an unfinished fragment: the next sync deletes it
            self.close()
            raise
        run.finish(exit_code=code)
        self.close()  # the media files handed to the SDK (copied into the run by now)
        if self.dest.mode == "offline":
            wait_for_log(run.settings.sync_file)
        self._pending.clear()
        self._files.clear()
        self._written = True
        self.state["next_step"] = step
        if self.dest.mode == "offline":
            sync_dir = run.settings.sync_dir
            tmp = os.path.join(sync_dir, MARKER + ".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"key": self.key, "id": self.id, "next_step": step}, f)
            os.replace(tmp, os.path.join(sync_dir, MARKER))
            self.state["fragments"] = [*self.state["fragments"], os.path.relpath(sync_dir, self.dest.root)]

    def _init(self, wandb: Any, exp: RunData) -> Any:
        config = dict(self._config)
        config[META_KEY] = {"key": exp.key, "tags": exp.tags, "start_time": exp.start_time,
                            "end_time": exp.end_time, "status": exp.status}
        try:
            return wandb.init(
                mode=self.dest.mode, dir=self.dest.root, entity=self.dest.entity, project=self.project,
                id=self.id, name=exp.name, group=exp.group, job_type=exp.job_type, tags=list(exp.labels),
                notes=exp.notes, config=config, resume="allow", reinit="create_new",
                settings=wandb.Settings(**SETTINGS))
        except Exception as exc:
            if self.dest.mode == "online":
                raise ConnectError(f"W&B ({self.dest.entity}/{self.project}) refused run {self.id}: {exc}") from exc
            raise

    def _series(self, kind: str, tag: str, items: list[Any]) -> _Series:
        key = history_key(tag)
        if kind == "scalars":  # a list of Scalars slices
            return _Series(key, np.concatenate([s.steps for s in items]),
                           np.concatenate([s.wall_times for s in items]),
                           np.concatenate([s.values for s in items]).astype(np.float64).tolist())
        # a media list (one TensorBoard event) is one value, at its first item's step and time
        payloads = media_groups(items) if kind in ("images", "audio", "video") else items
        firsts = [p[0] if isinstance(p, list) else p for p in payloads]
        return _Series(key, np.array([it.step for it in firsts], dtype=np.int64),
                       np.array([it.wall_time for it in firsts], dtype=np.float64),
                       [_Item(kind, p) for p in payloads])

    def _media_file(self, m: Media) -> str:
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="tbx-wandb-")
        ext = IMAGE_FORMATS.get(m.fmt, m.fmt)
        path = os.path.join(self._tmp, f"{hashlib.sha256(m.data).hexdigest()[:32]}.{ext}")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(m.data)
        return path

    def _wandb_value(self, wandb: Any, v: _Item) -> Any:
        p = v.payload
        if v.kind == "scalars":
            return p
        if v.kind == "histograms":
            return wandb.Histogram(np_histogram=(p.counts.tolist(), p.edges.tolist()))
        if v.kind == "text":
            return wandb.Table(columns=list(PR_COLUMNS), data=p.rows) if isinstance(p, TableText) else p.text
        if v.kind == "images":
            made = [wandb.Image(self._media_file(m), caption=m.caption) for m in p]
        elif v.kind == "audio":
            made = [wandb.Audio(self._media_file(m), sample_rate=m.sample_rate, caption=m.caption) for m in p]
        else:
            made = [wandb.Video(self._media_file(m), caption=m.caption, format=m.fmt) for m in p]
        return made[0] if len(made) == 1 else made

    # reading back (both readers restore the _tbx config key into tags, times and status)
    def _read_back_cloud(self) -> RunData:
        from tbx.converters.wandb_cloud import WandbCloudSource
        src = WandbCloudSource(self.dest.entity, self.project, filters={"name": self.id})  # name: the run id
        refs = [r for r in src.list_runs() if r.key == self.id]
        if not refs:
            return RunData(self.id, self.id)
        return src.read_run(refs[0], RunReport(self.key, self.key))


class WandbDestination(Destination):
    """W&B runs: offline directories under ``directory`` or the cloud (``entity``/``project``)."""

    def __init__(self, directory: str | None = None, project: str | None = None, entity: str | None = None,
                 mode: str = "offline") -> None:
        if mode not in ("offline", "online"):
            raise SyncError(f"W&B mode must be 'offline' or 'online', got {mode!r}")
        if mode == "offline" and not directory:
            raise SyncError("an offline W&B destination needs a directory (wandb:DIR)")
        self.mode = mode
        self.directory = directory
        self.project = _project_name(project) if project else None
        self.entity = entity
        self._online_dir: str | None = None
        self.spec = (f"wandb:{os.path.abspath(directory)}" if mode == "offline"
                     else f"wandb://{entity}/{project}")

    @property
    def root(self) -> str:
        """Where ``wandb/`` goes (a private temporary directory for online runs)."""
        if self.mode == "offline":
            return os.path.abspath(self.directory or ".")
        if self._online_dir is None:
            self._online_dir = tempfile.mkdtemp(prefix="tbx-wandb-online-")
        return self._online_dir

    def check(self) -> None:
        wandb_module()
        if self.mode == "offline" and os.path.exists(self.root) and not os.path.isdir(self.root):
            raise SyncError(f"{self.root} exists and is not a directory (expected a directory for "
                            "W&B offline runs)")

    def open_run(self, run: RunData, state: dict[str, Any] | None) -> DestRun:
        return WandbRun(self, run, state)
