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
(:func:`wait_for_log`).

Several runs may be written at once from worker threads: each uses its own
``wandb.init(reinit="create_new")`` run object, never the module globals.

Speed. ``run.log`` costs about 0.4 ms a row whatever the row holds, most of
it one hand-over to the SDK's event-loop thread per call: 1M points logged
one ``run.log`` per point take about four minutes. Here the rows are
planned with numpy (:func:`history_rows`) and rows of plain floats go to
wandb-core in batches of the same requests ``run.log`` sends
(:class:`_HistoryWriter`), so 1M points in 100,000 rows take about 20 s
including the read-back (``benchmarks/sync_wandb.py``).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import re
import shutil
import struct
import tempfile
import time
from typing import Any, Iterator

import numpy as np

from tbx.converters.base import ConnectError, Destination, DestRun, SyncError
from tbx.converters.engine import WALL_TOLERANCE
from tbx.converters.model import File, Histogram, Media, RawValue, RunData, Text
from tbx.converters.report import RunReport
from tbx.proto import summary_pb2, tensor_pb2

STEP_KEY = "global_step"
#: hidden config key holding what W&B has no field for (tags, times, status).
META_KEY = "_tbx"
#: written into a fragment directory once its run has finished.
MARKER = "tbx-sync.json"
MAX_BINS = 512
#: seconds to wait for wandb-core to write the end of a finished run's log.
FINISH_WAIT = 120.0
_BLOCK, _CHUNK_HEADER, _LOG_HEADER = 32 * 1024, 7, 7  # the .wandb log's framing
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
    from tbx.converters.wandb_values import markdown_table as _markdown_table  # the reader's rendering of a W&B table

    rows = pr_table_rows(raw)
    return TableText(raw.step, raw.wall_time, _markdown_table(list(PR_COLUMNS), rows), rows=rows)


# --- history rows ---------------------------------------------------------------

@dataclasses.dataclass
class _Item:
    """A value the SDK turns into W&B's form (histogram, media list, table or text)."""

    kind: str
    payload: Any


@dataclasses.dataclass
class _Series:
    """One tag's pending values in source order.

    ``values`` holds Python floats for scalars and :class:`_Item` objects
    otherwise; ``steps`` and ``walls`` are arrays of the same length.
    """

    key: str
    steps: np.ndarray
    walls: np.ndarray
    values: list[Any]


def _positions(steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(round, repeat)`` per item: sorting by ``(round, step, repeat)`` keeps each tag's own order.

    ``round`` counts the times the tag's step went back, ``repeat`` the
    earlier items of the tag at the same step (since the step last changed).
    """
    n = len(steps)
    went_back = np.zeros(n, dtype=bool)
    changed = np.ones(n, dtype=bool)
    if n > 1:
        went_back[1:] = steps[1:] < steps[:-1]
        changed[1:] = steps[1:] != steps[:-1]
    index = np.arange(n)
    run_start = np.maximum.accumulate(np.where(changed, index, 0))
    return np.cumsum(went_back), index - run_start


def _split_group(walls: list[float], keys: list[int]) -> tuple[list[int], list[float]]:
    """Rows of one ``(round, step, repeat)`` group that a single row cannot hold.

    Members (sorted by wall time) join the chunk opened by the first member
    not yet placed while they are within :data:`WALL_TOLERANCE` of it; in a
    chunk, a key already taken opens another row. Returns each member's row
    (counted from 0) and each row's wall time (its chunk's first).
    """
    rows_of: list[int] = []
    row_walls: list[float] = []
    i = 0
    while i < len(walls):
        start = walls[i]
        base = len(row_walls)
        chunk: list[set[int]] = []
        while i < len(walls) and walls[i] - start <= WALL_TOLERANCE:
            j = next((j for j, taken in enumerate(chunk) if keys[i] not in taken), len(chunk))
            if j == len(chunk):
                chunk.append(set())
                row_walls.append(start)
            chunk[j].add(keys[i])
            rows_of.append(base + j)
            i += 1
    return rows_of, row_walls


@dataclasses.dataclass
class HistoryRows:
    """Planned history rows; row ``r`` holds ``keys[bounds[r]:bounds[r+1]]`` (and the same values)."""

    steps: list[int]
    walls: list[float]
    bounds: list[int]
    keys: list[str]
    values: list[Any]

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[tuple[int, float, list[str], list[Any]]]:
        b = self.bounds
        for r, (step, wall) in enumerate(zip(self.steps, self.walls)):
            yield step, wall, self.keys[b[r]:b[r + 1]], self.values[b[r]:b[r + 1]]


def history_rows(series: list[_Series]) -> HistoryRows:
    """History rows from per-tag series (each in source order).

    Items go into one row when they share ``(round, step, repeat)`` (see
    :func:`_positions`), lie within :data:`WALL_TOLERANCE` of the row's
    first wall time and have different keys; rows are ordered by that
    triple, then by wall time. Vectorized: only groups that need more than
    one row (a spread of wall times, a key twice) are split in Python.
    """
    sizes = [len(s.values) for s in series]
    n = sum(sizes)
    if n == 0:
        return HistoryRows([], [], [0], [], [])
    key_ids = {k: i for i, k in enumerate(dict.fromkeys(s.key for s in series))}
    kid = np.repeat(np.array([key_ids[s.key] for s in series], dtype=np.int64), sizes)
    steps = np.concatenate([np.asarray(s.steps, dtype=np.int64) for s in series])
    walls = np.concatenate([np.asarray(s.walls, dtype=np.float64) for s in series])
    pos = [_positions(np.asarray(s.steps, dtype=np.int64)) for s in series]
    rnd = np.concatenate([p[0] for p in pos])
    rep = np.concatenate([p[1] for p in pos])
    # the entry index last: ties keep the series order (stable whatever the sort)
    order = np.lexsort((np.arange(n), walls, rep, steps, rnd))
    s_, w_, r_, p_, k_ = steps[order], walls[order], rnd[order], rep[order], kid[order]
    new = np.ones(n, dtype=bool)
    new[1:] = (s_[1:] != s_[:-1]) | (r_[1:] != r_[:-1]) | (p_[1:] != p_[:-1])
    gstart = np.flatnonzero(new)
    gend = np.append(gstart[1:], n)
    gid = np.cumsum(new) - 1
    simple = (w_[gend - 1] - w_[gstart]) <= WALL_TOLERANCE
    by_key = np.lexsort((k_, gid))
    twice = (gid[by_key][1:] == gid[by_key][:-1]) & (k_[by_key][1:] == k_[by_key][:-1])
    simple[gid[by_key][1:][twice]] = False
    row_steps = s_[gstart].tolist()
    row_walls = w_[gstart].tolist()
    if simple.all():
        members = order
        bounds = np.append(gstart, n)
    else:
        per_group = np.ones(len(gstart), dtype=np.int64)
        local = np.zeros(n, dtype=np.int64)
        split: dict[int, list[float]] = {}
        for g in np.flatnonzero(~simple).tolist():
            a, b = gstart[g], gend[g]
            rows_of, split[g] = _split_group(w_[a:b].tolist(), k_[a:b].tolist())
            local[a:b] = rows_of
            per_group[g] = len(split[g])
        base = np.cumsum(per_group) - per_group
        row_of = base[gid] + local
        steps_out = np.repeat(s_[gstart], per_group).tolist()
        walls_out = np.repeat(w_[gstart], per_group).tolist()
        for g, ws in split.items():
            walls_out[base[g]:base[g] + len(ws)] = ws
        row_steps, row_walls = steps_out, walls_out
        perm = np.argsort(row_of, kind="stable")
        members = order[perm]
        bounds = np.searchsorted(row_of[perm], np.arange(len(row_steps) + 1))
    entry_keys: list[str] = []
    entry_values: list[Any] = []
    for s, size in zip(series, sizes):
        entry_keys += [s.key] * size
        entry_values += s.values
    m = members.tolist()
    return HistoryRows(row_steps, row_walls, bounds.tolist(), list(map(entry_keys.__getitem__, m)),
                       list(map(entry_values.__getitem__, m)))


class _HistoryWriter:
    """Sends a fragment's history rows to wandb-core, keeping ``run.log``'s records.

    ``run.log`` costs about 0.4 ms a row, most of it one hand-over to the
    SDK's event-loop thread per call. A row of plain floats needs none of
    ``run.log``'s conversions, so it is built here as the very request
    ``run.log(data, step=N, commit=True)`` sends (a partial-history request
    with ``value_json`` items encoded by the SDK's own JSON encoder, the step
    and flush set, never persisted itself), and rows go to the run's socket
    client in batches, one hand-over per batch. wandb-core then handles
    them exactly as logged rows: the history and summary records in the
    ``.wandb`` file are the same. Rows holding anything else (histograms,
    media, tables, text) go through ``run.log``, after the batch before
    them. Without the SDK internals this needs (another SDK version), every
    row goes through ``run.log``.
    """

    BATCH = 1000

    def __init__(self, wandb: Any, run: Any, convert: Any) -> None:
        self.run = run
        self.convert = convert
        self._iface = getattr(run, "_interface", None)
        self._server_pb = _server_pb()
        self._dumps = getattr(getattr(wandb, "util", None), "json_dumps_safer_history", None)
        self.fast = (FAST_HISTORY and self._server_pb is not None and self._dumps is not None
                     and all(hasattr(self._iface, a) for a in ("_asyncer", "_client", "_stream_id")))
        self._batch: list[Any] = []

    def row(self, step: int, tb_step: int, wall: float, keys: list[str], values: list[Any]) -> None:
        """Log one row at W&B step ``step`` (``tb_step`` is its ``global_step``)."""
        if self.fast and all(type(v) is float for v in values):
            encoded = self._encode([wall, *values])
            if encoded is not None:
                self._batch.append(self._request(step, tb_step, keys, encoded))
                if len(self._batch) >= self.BATCH:
                    self.flush()
                return
        self.flush()
        data: dict[str, Any] = {STEP_KEY: tb_step, "_timestamp": wall}
        data.update(zip(keys, [v if type(v) is float else self.convert(v) for v in values]))
        self.run.log(data, step=step, commit=True)

    def _encode(self, values: list[float]) -> list[str] | None:
        """Each float as the SDK's history encoder writes it, from one encoder call for the row."""
        parts = self._dumps(values)[1:-1].replace(" ", "").split(",")  # no float's JSON has "," or " "
        return parts if len(parts) == len(values) else None

    def _request(self, step: int, tb_step: int, keys: list[str], encoded: list[str]) -> Any:
        req = self._server_pb.ServerRequest()
        rec = req.record_publish
        hist = rec.request.partial_history
        add = hist.item.add
        add(key=STEP_KEY, value_json=str(tb_step))
        add(key="_timestamp", value_json=encoded[0])
        for k, j in zip(keys, encoded[1:]):
            add(key=k, value_json=j)
        hist.step.num = step
        hist.action.flush = True
        rec.control.local = True  # a request: wandb-core persists the history it makes, not this
        rec._info.stream_id = self._iface._stream_id
        return req

    def flush(self) -> None:
        """Send the batched rows (one hand-over to the SDK's event loop, which writes them in order)."""
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        client = self._iface._client

        async def send() -> None:
            for req in batch:
                await client.publish(req)

        self._iface._asyncer.run(send)


#: False makes every row go through ``run.log`` (the tests compare both paths).
FAST_HISTORY = True


def _server_pb() -> Any:
    try:
        from wandb.proto import wandb_server_pb2
    except ImportError:
        return None
    return wandb_server_pb2


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
            history = _HistoryWriter(wandb, run, lambda item: self._wandb_value(wandb, item))
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


def log_finished(path: str) -> bool:
    """Whether the run's ``.wandb`` log holds its exit record, so every record before it too.

    wandb-core writes the log a 32 KiB block at a time and the last, partial
    block only when it closes the run's stream, which ``run.finish()`` does
    not wait for. The exit record comes after every history row, so it is
    looked for in the last two blocks only (chunk headers:
    ``crc32 | length | type``, TRACKERS.md §1b; checksums are not needed to
    find a record).
    """
    from wandb.proto import wandb_internal_pb2 as pb

    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            start = max(0, (max(size, 1) - 1) // _BLOCK * _BLOCK - _BLOCK)
            f.seek(start)
            data = f.read()
    except OSError:
        return False
    p = _LOG_HEADER if start == 0 else 0
    parts: list[bytes] | None = None  # a record split over chunks
    while True:
        left = _BLOCK - (start + p) % _BLOCK
        if left < _CHUNK_HEADER:  # zero padding at the end of a block
            p += left
        if p + _CHUNK_HEADER > len(data):
            return False
        length, kind = struct.unpack_from("<HB", data, p + 4)
        payload = data[p + _CHUNK_HEADER:p + _CHUNK_HEADER + length]
        if kind == 0 or len(payload) < length:
            return False  # the written part ends here
        p += _CHUNK_HEADER + length
        if kind == 2:  # FIRST
            parts = [payload]
            continue
        if kind in (3, 4) and parts is not None:  # MIDDLE, LAST
            parts.append(payload)
            if kind == 3:
                continue
            payload = b"".join(parts)
        elif kind != 1:  # FULL
            continue
        parts = None
        try:
            if pb.Record.FromString(payload).WhichOneof("record_type") == "exit":
                return True
        except Exception:  # a damaged record is not the exit record
            pass


def wait_for_log(path: str, timeout: float | None = None) -> None:
    """Wait until wandb-core has written the whole log of a finished run (see :func:`log_finished`)."""
    limit = FINISH_WAIT if timeout is None else timeout
    deadline = time.monotonic() + limit
    delay = 0.001
    while not log_finished(path):
        if time.monotonic() > deadline:
            raise SyncError(f"wandb-core has not written the end of {path} {limit:g} s after the run "
                            "finished (expected its exit record); the next sync writes this part again")
        time.sleep(delay)
        delay = min(2 * delay, 0.05)


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


def _summary(summary: dict[str, Any], report: RunReport) -> dict[str, Any]:
    """The summary keys this destination sets: W&B fills its own ``_…`` keys and media references."""
    out = {}
    for k, v in summary.items():
        if k.startswith("_"):
            report.transformed("summary", "W&B's own key (_runtime, _step, ...): W&B sets its value")
        elif isinstance(v, dict) and "_type" in v:
            report.transformed("summary", "media reference: W&B points it at its copy of the last logged value")
        else:
            out[k] = v
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
