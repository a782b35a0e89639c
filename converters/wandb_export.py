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

Several runs may be written at once from worker threads: each uses its own
``wandb.init(reinit="create_new")`` run object, never the module globals.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from typing import Any, Iterator

import numpy as np

from tbx.converters.base import ConnectError, Destination, DestRun, SyncError
from tbx.converters.engine import WALL_TOLERANCE
from tbx.converters.model import File, Histogram, Media, RawValue, RunData, Text, flatten
from tbx.converters.report import RunReport
from tbx.proto import summary_pb2, tensor_pb2

STEP_KEY = "global_step"
#: hidden config key holding what W&B has no field for (tags, times, status).
META_KEY = "_tbx"
#: written into a fragment directory once its run has finished.
MARKER = "tbx-sync.json"
MAX_BINS = 512
MAX_IMAGES = 108
MAX_LABEL = 64
IMAGE_FORMATS = {"png": "png", "jpeg": "jpg", "jpg": "jpg", "gif": "gif", "bmp": "bmp"}
VIDEO_FORMATS = ("gif", "mp4", "webm", "ogg")
#: files W&B writes into ``files/`` itself.
RESERVED_FILES = ("config.yaml", "wandb-summary.json", "wandb-metadata.json", "output.log",
                  "requirements.txt", "diff.patch")
RESERVED_DIRS = ("media/", "code/", "artifact/")
#: where files with those paths go instead.
MOVED_FILES = "tbx-files"
EXIT_CODES = {"FAILED": 1, "KILLED": 255}
#: quiet, fast runs: no console capture, system stats, git, code or requirements.
SETTINGS = dict(console="off", silent=True, x_disable_stats=True, x_disable_meta=True,
                x_disable_machine_info=True, disable_git=True, save_code=False, disable_code=True,
                x_save_requirements=False, disable_job_creation=True, allow_media_symlink=False)
PR_COLUMNS = ("recall", "precision")
RENAMED = "renamed tb/<tag>: the tag is a key W&B reserves"
HPARAMS = "hparams experiment: the params are the W&B config, its value domains are not kept"
REBINNED = "re-binned to at most 512 bins (W&B's limit), adjacent bins summed"


def wandb_module() -> Any:
    try:
        import wandb
    except ImportError as exc:
        raise SyncError("writing W&B runs needs the wandb SDK: pip install wandb") from exc
    return wandb


def run_id(project: str | None, key: str) -> str:
    """The W&B run id of a source run: 16 hex digits of a hash, the same for every sync."""
    return hashlib.sha256(f"{project or ''}\0{key}".encode()).hexdigest()[:16]


def history_key(tag: str) -> str:
    return f"tb/{tag}" if tag == STEP_KEY or tag.startswith("_") else tag


def rebin(h: Histogram) -> Histogram:
    """At most :data:`MAX_BINS` bins, summing groups of ``ceil(k/512)`` adjacent bins."""
    k = len(h.counts)
    if k <= MAX_BINS:
        return h
    starts = np.arange(0, k, -(-k // MAX_BINS))
    return Histogram(h.step, h.wall_time, np.append(h.edges[starts], h.edges[-1]),
                     np.add.reduceat(h.counts, starts))


def media_groups(items: list[Media]) -> list[list[Media]]:
    """Items logged together (one TensorBoard event: same step, ``index`` counting up)."""
    groups: list[list[Media]] = []
    for m in items:
        if groups and m.index > 0 and groups[-1][-1].step == m.step and groups[-1][-1].index < m.index:
            groups[-1].append(m)
        else:
            groups.append([m])
    return groups


def pr_table_rows(raw: RawValue) -> list[list[float]]:
    """``[recall, precision]`` per threshold of a pr_curves value (rows 5 and 4 of its tensor)."""
    t = summary_pb2.Summary.Value.FromString(raw.value).tensor
    dtype = {tensor_pb2.DT_FLOAT: "<f4", tensor_pb2.DT_DOUBLE: "<f8"}.get(t.dtype)
    if dtype is None:
        raise ValueError(f"pr_curves tensor of dtype {t.dtype}, expected float")
    if t.tensor_content:
        arr = np.frombuffer(t.tensor_content, dtype=dtype)
    else:
        arr = np.asarray(t.float_val if t.dtype == tensor_pb2.DT_FLOAT else t.double_val, dtype=dtype)
    arr = arr.astype(np.float64).reshape([d.size for d in t.tensor_shape.dim])
    return [[float(r), float(p)] for r, p in zip(arr[5], arr[4])]


@dataclasses.dataclass
class TableText(Text):
    """A PR curve as W&B holds it: a table written with ``rows``, read back as markdown text."""

    rows: list[list[float]] = dataclasses.field(default_factory=list)


def pr_text(raw: RawValue) -> TableText:
    from tbx.converters.wandb_local import _markdown_table  # the reader's rendering of a W&B table

    rows = pr_table_rows(raw)
    return TableText(raw.step, raw.wall_time, _markdown_table(list(PR_COLUMNS), rows), rows=rows)


# --- history rows ---------------------------------------------------------------

@dataclasses.dataclass
class _Value:
    key: str
    step: int
    wall: float
    kind: str
    payload: Any


def _positions(steps: list[int]) -> list[tuple[int, int, int]]:
    """``(round, step, repeat)`` per item: sorting by it keeps each tag's own order.

    ``round`` counts the times the tag's step went back, ``repeat`` the
    earlier items of the tag at the same step.
    """
    out = []
    rnd = rep = 0
    prev: int | None = None
    for s in steps:
        if prev is not None:
            if s < prev:
                rnd, rep = rnd + 1, 0
            else:
                rep = rep + 1 if s == prev else 0
        out.append((rnd, s, rep))
        prev = s
    return out


def history_rows(values: list[list[_Value]]) -> Iterator[tuple[int, float, dict[str, _Value]]]:
    """``(step, wall time, {key: value})`` rows from per-tag sequences (each in source order)."""
    groups: dict[tuple[int, int, int], list[_Value]] = {}
    for seq in values:
        for pos, v in zip(_positions([v.step for v in seq]), seq):
            groups.setdefault(pos, []).append(v)
    for pos in sorted(groups):
        members = sorted(groups[pos], key=lambda v: v.wall)
        i = 0
        while i < len(members):
            start = members[i].wall
            rows: list[dict[str, _Value]] = []
            while i < len(members) and members[i].wall - start <= WALL_TOLERANCE:
                v = members[i]
                row = next((r for r in rows if v.key not in r), None)
                if row is None:
                    rows.append(row := {})
                row[v.key] = v
                i += 1
            for row in rows:
                yield pos[1], start, row


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
        # W&B's readers (ours included) list nested config keys flattened with "."
        exp = RunData(run.key, run.name, self.project, flatten(self._config), dict(run.tags),
                      _labels(run.labels, report), run.notes, run.group, run.job_type, run.start_time,
                      run.end_time, run.status, dict(run.summary))
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
        if not self.state["fragments"]:
            return RunData(self.id, self.id)
        # A view holding only this run's committed fragments (each a directory of links to the
        # real log and files), so reading one run does not scan every run of the directory.
        with tempfile.TemporaryDirectory(prefix="tbx-wandb-read-") as view:
            for rel in self.state["fragments"]:
                real = os.path.join(self.dest.root, rel)
                if not os.path.isdir(real):
                    continue  # deleted by hand: verification reports what is missing
                link = os.path.join(view, os.path.basename(rel))
                os.mkdir(link)
                for name in os.listdir(real):
                    if name.endswith(".wandb") or name == "files":
                        os.symlink(os.path.join(real, name), os.path.join(link, name))
            src = WandbOfflineSource(view)
            refs = [r for r in src.list_runs() if r.key == self.id]
            back = src.read_run(refs[0], RunReport(self.key, self.key)) if refs else RunData(self.id, self.id)
        return self._normalize(back)

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # writing one fragment
    def _fragment(self) -> None:
        wandb = wandb_module()
        exp = self._exp
        assert exp is not None, "write_meta() comes before commit()"
        values = [self._values(kind, tag, items) for (kind, tag), items in self._pending.items()]
        run = self._init(wandb, exp)
        code = EXIT_CODES.get(exp.status or "", 0)
        try:
            run.define_metric(STEP_KEY)
            run.define_metric("*", step_metric=STEP_KEY)
            step = max(int(self.state["next_step"]), int(getattr(run, "starting_step", 0) or 0))
            for tb_step, wall, row in history_rows(values):
                data = {STEP_KEY: tb_step, "_timestamp": wall}
                data.update({k: self._wandb_value(wandb, v) for k, v in row.items()})
                run.log(data, step=step, commit=True)
                step += 1
            for f in self._files:
                path = os.path.join(run.dir, *f.path.split("/"))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as out:
                    out.write(f.data)
                run.save(path, base_path=run.dir, policy="now")
            summary = {k: v for k, v in exp.summary.items()
                       if not k.startswith("_") and not (isinstance(v, dict) and "_type" in v)}
            if summary:
                run.summary.update(summary)
        except BaseException:
            run.finish(exit_code=1)  # an unfinished fragment: the next sync deletes it
            self.close()
            raise
        run.finish(exit_code=code)
        self.close()  # the media files handed to the SDK (copied into the run by now)
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

    def _values(self, kind: str, tag: str, items: list[Any]) -> list[_Value]:
        key = history_key(tag)
        if kind == "scalars":
            out = []
            for s in items:
                out += [_Value(key, st, w, kind, v)
                        for st, w, v in zip(s.steps.tolist(), s.wall_times.tolist(), s.values.tolist())]
            return out
        if kind in ("images", "audio", "video"):
            return [_Value(key, g[0].step, g[0].wall_time, kind, g) for g in media_groups(items)]
        return [_Value(key, it.step, it.wall_time, kind, it) for it in items]

    def _media_file(self, m: Media) -> str:
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="tbx-wandb-")
        ext = IMAGE_FORMATS.get(m.fmt, m.fmt)
        path = os.path.join(self._tmp, f"{hashlib.sha256(m.data).hexdigest()[:32]}.{ext}")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(m.data)
        return path

    def _wandb_value(self, wandb: Any, v: _Value) -> Any:
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

    # reading back
    def _normalize(self, back: RunData) -> RunData:
        """Undo what the destination adds: the ``_tbx`` config key (read back flattened)."""
        meta = {k[len(META_KEY) + 1:]: back.params.pop(k) for k in list(back.params)
                if k.startswith(META_KEY + ".")}
        if meta:
            back.tags = {k[len("tags."):]: str(v) for k, v in meta.items() if k.startswith("tags.")}
            back.start_time = meta.get("start_time", back.start_time)
            back.end_time = meta.get("end_time", back.end_time)
            back.status = meta.get("status") or back.status
        return back

    def _read_back_cloud(self) -> RunData:
        from tbx.converters.wandb_cloud import WandbCloudSource
        src = WandbCloudSource(self.dest.entity, self.project, filters={"name": self.id})  # name: the run id
        refs = [r for r in src.list_runs() if r.key == self.id]
        if not refs:
            return RunData(self.id, self.id)
        return self._normalize(src.read_run(refs[0], RunReport(self.key, self.key)))


def _project_name(name: str | None) -> str:
    clean = "".join("-" if c in '/\\#?%:' else c for c in (name or "").strip())[:128]
    return clean or "tbx-sync"


def _config(params: dict[str, Any], report: RunReport) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        key = str(k).strip("-")
        if not key or key in ("_wandb", META_KEY) or key.startswith(META_KEY + ".") or key in out:
            report.dropped("params", "key empty, reserved by W&B or tbx, or the same once W&B strips '-'")
            continue
        if key != k:
            report.transformed("params", "leading/trailing '-' removed from the key (W&B does)")
        out[key] = v
    return out


def _pr_texts(raws: list[RawValue], tag_taken: bool, report: RunReport) -> list[TableText]:
    if tag_taken:
        report.dropped("tensors", "PR curve tag already holds text", len(raws))
        return []
    out = []
    for r in raws:
        try:
            out.append(pr_text(r))
        except (ValueError, IndexError) as exc:
            report.dropped("tensors", f"malformed PR curve: {exc}")
    report.transformed("tensors", "PR curve carried as a W&B table (recall, precision), "
                                  "read back as a markdown table", len(out))
    return out


def _labels(labels: list[str], report: RunReport) -> list[str]:
    ok = [t for t in dict.fromkeys(labels) if 1 <= len(t) <= MAX_LABEL]
    report.dropped("tags", "W&B tag (label) empty or longer than 64 characters", len(set(labels)) - len(ok))
    return ok


def _safe_path(path: str) -> bool:
    return bool(path) and "\\" not in path and all(p not in ("", ".", "..") for p in path.split("/"))


def _expected_items(kind: str, items: Any, report: RunReport) -> Any:
    """The items of one tag as W&B will hold them (None: the kind is not carried)."""
    if kind in ("scalars", "text"):
        return items
    if kind == "histograms":
        out = [rebin(h) for h in items]
        report.transformed(kind, REBINNED, sum(a is not b for a, b in zip(out, items)))
        return out
    if kind == "tensors":
        for r in items:
            if r.plugin == "hparams":
                report.transformed(kind, HPARAMS)
            elif r.plugin != "pr_curves":
                report.dropped(kind, f"{r.plugin} has no W&B equivalent")
        return [r for r in items if r.plugin == "pr_curves"]
    if kind not in ("images", "audio", "video"):
        report.dropped(kind, f"unknown kind {kind!r}", len(items))
        return None
    out = []
    for group in media_groups(items):
        if kind == "images":
            ok = [m for m in group if m.fmt in IMAGE_FORMATS]
            report.dropped(kind, "not a png, jpeg, gif or bmp image", len(group) - len(ok))
            report.dropped(kind, "more than 108 images in one log (W&B keeps 108)", max(0, len(ok) - MAX_IMAGES))
            ok = ok[:MAX_IMAGES]
        elif kind == "video":
            ok = [m for m in group if m.fmt in VIDEO_FORMATS]
            report.dropped(kind, "not a gif, mp4, webm or ogg video", len(group) - len(ok))
        else:
            ok = group
        out += [m if m.index == i else dataclasses.replace(m, index=i) for i, m in enumerate(ok)]
    return out


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
