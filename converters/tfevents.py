"""TensorBoard logdirs as a sync source and destination.

Reading (:class:`TfeventsSource`): every directory holding event files is a
run (as TensorBoard sees it); its key is the path relative to the logdir
(``"."`` for the logdir itself). Per run:

- scalars (tensor form and legacy ``simple_value``) through tbx's C decoder;
- histograms (``[k,3]`` tensors and legacy HistogramProto), images (a GIF
  under the images plugin is a video, as tensorboardX and tbx write videos),
  audio, single-string text;
- hparams: the session's hyperparameters become params;
- anything else (PR curves, meshes, custom scalar layouts, text tables,
  graphs) is kept as a raw summary value, written back unchanged by a
  tfevents destination and carried as a file elsewhere;
- other files of the run directory (projector config, embedding tensors);
- a tbx W&B-style run directory's ``config.yaml``, ``summary.json`` and
  ``metadata.json`` give the config, summary, notes, W&B tags, group, job
  type, start/end time and exit status.

A corrupt record stops the read with its file and offset, or with
``strict=False`` is skipped and reported (the rest of the run is carried).

Writing (:class:`TfeventsDestination`): one run directory per source run,
named by the run's name (a path); a name already used by another source run
gets ``-<8 hex of its key>`` appended. A marker file ``.tbx-source`` holds
the key. Scalars are written as float32 (TensorBoard's scalar type; any
value that changes is counted), wall times and steps exactly, media bytes
unchanged. Params go to ``config.yaml`` (exact, W&B's ``{k: {value: v}}``)
and to the HParams dashboard; tags, notes and times to ``metadata.json``
(and the tags, as a table, to the text dashboard under ``run/tags``).

Crash safety: the ledger state lists the event files of the run with their
committed sizes. When a sync resumes after a kill, files are truncated back
to those sizes and files written after the last commit are removed, so the
items sent again appear once.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from tbx import record
from tbx.converters.base import DestRun, Destination, RunRef, Source, SyncError
from tbx.converters.model import (
    File, Histogram, Media, RawValue, RunData, Scalars, Text, flatten, param_text,
)
from tbx.converters.report import RunReport
from tbx.event_file import EventFileWriter
from tbx.reader import ReadStats, _decode, _scan, _ScalarPoints, iter_event_files, read_events
from tbx.summary import audio as audio_summary
from tbx.summary import histogram as histogram_summary
from tbx.summary import hparams as hparams_summary
from tbx.summary import image as image_summary
from tbx.summary import scalar as scalar_summary
from tbx.summary import text as text_summary
from tbx.summary._metadata import string_tensor_record
from tbx.proto import event_pb2, hparams_pb2, summary_pb2, tensor_pb2

MARKER = ".tbx-source"
SIDECARS = ("config.yaml", "summary.json", "metadata.json", MARKER)
TAGS_TEXT = "run/tags"
_GIF = (b"GIF87a", b"GIF89a")


def _spec(path: str) -> str:
    return "tfevents:" + os.path.abspath(path)


# --- reading -----------------------------------------------------------------

def _wav_rate(data: bytes) -> float | None:
    if len(data) >= 28 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return float(struct.unpack_from("<I", data, 24)[0])
    return None


def _image_fmt(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:6] in _GIF:
        return "gif"
    return "bin"


def _rows_to_histogram(step: int, wall: float, rows: np.ndarray) -> Histogram:
    if rows.shape[0] == 0:
        return Histogram(step, wall, np.zeros(1), np.zeros(0))
    edges = np.concatenate([rows[:1, 0], rows[:, 1]])
    return Histogram(step, wall, edges, rows[:, 2])


def tensor_array(t: tensor_pb2.TensorProto, what: str = "histogram") -> np.ndarray:
    """A float or double TensorProto as a float64 array of its shape."""
    dtype = {tensor_pb2.DT_DOUBLE: "<f8", tensor_pb2.DT_FLOAT: "<f4"}.get(t.dtype)
    shape = [d.size for d in t.tensor_shape.dim]
    if dtype is None:
        raise ValueError(f"{what} tensor of dtype {t.dtype}, expected float or double")
    if t.tensor_content:
        arr = np.frombuffer(t.tensor_content, dtype=dtype)
    else:
        arr = np.asarray(t.double_val if t.dtype == tensor_pb2.DT_DOUBLE else t.float_val, dtype=dtype)
    return arr.astype(np.float64).reshape(shape)


def _hparam_value(v: Any) -> Any:
    kind = v.WhichOneof("kind")
    if kind == "number_value":
        x = v.number_value
        return int(x) if x == int(x) and abs(x) < 2 ** 53 else x
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    return None


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None


def _sidecars(run_dir: str, data: RunData, report: RunReport | None) -> bool:
    """Fill ``data`` from a tbx run directory's config.yaml/summary.json/metadata.json."""
    found = False
    config = _read_json(os.path.join(run_dir, "config.yaml"))
    if isinstance(config, dict):
        found = True
        data.params = {k: (v.get("value") if isinstance(v, dict) and "value" in v else v)
                       for k, v in config.items() if k != "_wandb"}
    elif os.path.exists(os.path.join(run_dir, "config.yaml")) and report is not None:
        report.problem("config.yaml is not the JSON-compatible YAML tbx writes; hparams from the event files used")
    summary = _read_json(os.path.join(run_dir, "summary.json"))
    if isinstance(summary, dict):
        found = True
        data.summary = summary
    meta = _read_json(os.path.join(run_dir, "metadata.json"))
    if isinstance(meta, dict):
        found = True
        data.labels = list(meta.get("tags") or [])
        data.notes = meta.get("notes")
        data.group = meta.get("group")
        data.job_type = meta.get("job_type")
        data.project = meta.get("project") or data.project
        data.start_time = meta.get("start_wall_time") or data.start_time
        data.end_time = meta.get("end_wall_time")
        code = meta.get("exit_code")
        state = meta.get("status")
        if state:
            data.status = state
        elif code is not None:
            data.status = "FINISHED" if code == 0 else "FAILED"
        elif meta.get("state") == "running":
            data.status = "RUNNING"
        if isinstance(meta.get("kv_tags"), dict):
            data.tags = {str(k): str(v) for k, v in meta["kv_tags"].items()}
        if meta.get("name"):
            data.name = str(meta["name"])
    return found


def _other_files(run_dir: str) -> list[str]:
    """Relative paths of the run's non-event files (not in sub-runs, not sidecars)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(run_dir):
        if dirpath != run_dir and any("tfevents" in n for n in filenames):
            dirnames[:] = []  # a nested run: its files are its own
            continue
        dirnames.sort()
        for n in sorted(filenames):
            if "tfevents" in n:
                continue
            rel = os.path.relpath(os.path.join(dirpath, n), run_dir).replace(os.sep, "/")
            if rel in SIDECARS:
                continue
            out.append(rel)
    return out


#: Event files at least this big are decoded in two halves on two threads.
SPLIT_MIN = 8 << 20


def _scalar_columns(path: str, lenient: bool, stats: ReadStats
                    ) -> tuple[np.ndarray, list[str], dict[str, np.ndarray], int]:
    """The scalar points of one event file: tag codes, tags, step/wall_time/value columns, and its record count.

    What ``read_scalars(path, lenient, as_frame=False)`` reads, with the tags
    kept as codes (grouping a million points by an object array of tags
    costs more than reading them); records and damage are counted in ``stats``.
    A big file is decoded in two halves at once (the kernel releases the GIL),
    split at the first record boundary after its middle.
    """
    points = _ScalarPoints()
    points.start_run(".")
    records = 0
    for chunks in _halves(path, lenient, stats):
        for _, (_, _, tags, index, steps, walls, values, n) in chunks:
            points.add_chunk(tags, index, steps, walls, values)
            records += n
    stats.records += records
    _, (codes, tags), cols = points.columns()
    return codes, tags, cols, records


def _halves(path: str, lenient: bool, stats: ReadStats) -> list[Any]:
    """The decoded chunks of ``path``: one list, or two (its halves, decoded at once)."""
    size = os.path.getsize(path)
    mid = -1
    if size >= SPLIT_MIN and (os.cpu_count() or 1) >= 2:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            mid = record.seek_record(mm, 0, size // 2)
    if mid <= 0 or mid >= size:  # small, or a bad length before the middle: one pass reports it
        return [list(_scan(path, _decode, lenient, stats))]
    second = ReadStats()
    with ThreadPoolExecutor(max_workers=1) as pool:
        later = pool.submit(lambda: list(_scan(path, _decode, lenient, second, mid)))
        first = list(_scan(path, _decode, lenient, stats, 0, mid))
        rest = later.result()
    stats.files -= 1  # one file, scanned in two parts
    _merge_stats(stats, second)
    return [first, rest]


def _scalar_files(files: list[str], lenient: bool) -> Iterator[tuple[str, Any, ReadStats]]:
    """``(path, _scalar_columns(path), its stats)`` of each file, in order.

    Files are decoded on up to two threads (the kernel releases the GIL while
    it decodes), which matters when a run has several big files.
    """
    def one(path: str) -> tuple[str, Any, ReadStats]:
        st = ReadStats()
        return path, _scalar_columns(path, lenient, st), st

    if len(files) < 2 or (os.cpu_count() or 1) < 2:
        yield from map(one, files)
        return
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield from pool.map(one, files)


def _merge_stats(into: ReadStats, more: ReadStats) -> None:
    for name in ("files", "records", "points", "bad_records", "truncated_bytes"):
        setattr(into, name, getattr(into, name) + getattr(more, name))
    into.problems.extend(more.problems)
    into.truncations.extend(more.truncations)


def read_run_dir(run_dir: str, files: list[str], key: str, name: str, strict: bool,
                 report: RunReport | None) -> RunData:
    """A run directory (its event ``files``, in order) as a :class:`RunData`."""
    data = RunData(key=key, name=name)
    stats = ReadStats()
    scalar_parts: dict[str, list[Scalars]] = {}
    npoints = []
    first_wall = None
    nrecords = []
    for path, (codes, tags, cols, records), file_stats in _scalar_files(files, not strict):
        _merge_stats(stats, file_stats)
        npoints.append(len(codes))
        nrecords.append(records)
        if len(codes):
            w0 = float(cols["wall_time"].min())
            first_wall = w0 if first_wall is None else min(first_wall, w0)
            # group by tag keeping file order (tags in sorted order, as TensorBoard lists them)
            order = np.argsort(codes.astype(np.int16 if len(tags) < 2 ** 15 else np.int32), kind="stable")
            bounds = np.searchsorted(codes[order], np.arange(len(tags) + 1)).tolist()
            for i in sorted(range(len(tags)), key=tags.__getitem__):
                sel = order[bounds[i]:bounds[i + 1]]
                scalar_parts.setdefault(tags[i], []).append(
                    Scalars(cols["step"][sel], cols["wall_time"][sel], cols["value"][sel]))
    for tag, parts in scalar_parts.items():
        data.scalars[tag] = Scalars.concat(parts)

    plugins: dict[str, str] = {}
    metadata: dict[str, summary_pb2.SummaryMetadata] = {}
    hparams: dict[str, Any] = {}
    for path, points, records in zip(files, npoints, nrecords):
        # Parsing every Event in Python costs ~3 µs; a file whose records are
        # all scalar points (plus its file_version record) needs no parse.
        if records <= points + 1:
            continue
        for _, event in read_events(path, lenient=True):
            what = event.WhichOneof("what")
            if what == "graph_def":
                data.add("tensors", "__graph__", RawValue(event.step, event.wall_time, "graph", event.graph_def))
                continue
            if what == "tagged_run_metadata":
                data.add("tensors", event.tagged_run_metadata.tag, RawValue(
                    event.step, event.wall_time, "run_metadata", event.tagged_run_metadata.SerializeToString()))
                continue
            if what != "summary":
                continue
            for v in event.summary.value:
                _read_value(data, event, v, plugins, metadata, hparams, report)
    for err in stats.problems:
        if report is not None and getattr(err, "reason", None) == "length crc":
            rest = os.path.getsize(err.path) - err.offset
            report.dropped("records", f"unreadable from byte {err.offset} to the end of {err.path} "
                                      f"({rest} bytes): a record length is corrupt")
            report.problem(str(err))
        elif report is not None:
            report.dropped("records", f"corrupt record in {err.path} at byte {err.offset}")
            report.problem(str(err))
    if hparams:
        data.params = hparams
    data.start_time = first_wall
    _sidecars(run_dir, data, report)
    for rel in _other_files(run_dir):
        try:
            with open(os.path.join(run_dir, rel), "rb") as f:
                data.files.append(File(rel, f.read()))
        except OSError as exc:
            if report is not None:
                report.dropped("files", f"unreadable: {exc}")
    # the tags table tbx writes for key/value tags is generated from metadata.json
    data.series["text"].pop(TAGS_TEXT, None)
    data.series["tensors"].pop(TAGS_TEXT, None)
    return data


def _read_value(data: RunData, event: Any, v: Any, plugins: dict[str, str],
                metadata: dict[str, Any], hparams: dict[str, Any], report: RunReport | None) -> None:
    tag = v.tag
    if v.HasField("metadata") and v.metadata.plugin_data.plugin_name:
        if tag not in plugins:
            plugins[tag] = v.metadata.plugin_data.plugin_name
            metadata[tag] = v.metadata
    field = v.WhichOneof("value")
    step, wall = event.step, event.wall_time
    if field == "simple_value":
        return  # read by read_scalars
    if field == "histo":
        h = v.histo
        limits = np.asarray(h.bucket_limit, dtype=np.float64)
        rows = histogram_summary.raw_rows(h.min, h.max, limits, h.bucket)
        data.add("histograms", tag, _rows_to_histogram(step, wall, rows))
        return
    if field == "image":
        img = v.image
        fmt = _image_fmt(img.encoded_image_string)
        kind = "video" if fmt == "gif" else "images"
        data.add(kind, tag, Media(step, wall, img.encoded_image_string, fmt, 0, img.width or None, img.height or None))
        return
    if field == "audio":
        a = v.audio
        data.add("audio", tag, Media(step, wall, a.encoded_audio_string, "wav", 0,
                                     sample_rate=a.sample_rate or _wav_rate(a.encoded_audio_string)))
        return
    plugin = plugins.get(tag, "")
    if plugin == "hparams":  # torch and tensorboardX write these with no value at all
        content = hparams_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
        if content.WhichOneof("data") == "session_start_info":
            for name, hv in content.session_start_info.hparams.items():
                hparams[name] = _hparam_value(hv)
        elif content.WhichOneof("data") == "experiment":  # its metric columns and domains: kept as they are
            data.add("tensors", tag, RawValue(step, wall, "hparams", v.SerializeToString(deterministic=True)))
        return
    if field != "tensor":
        if report is not None:
            report.dropped("tensors", f"summary value of kind {field!r} (tag {tag!r}) is not supported")
        return
    t = v.tensor
    if plugin == "scalars":
        return  # read by read_scalars
    if plugin == "histograms":
        data.add("histograms", tag, _rows_to_histogram(step, wall, tensor_array(t).reshape(-1, 3)))
        return
    if plugin == "images" and t.dtype == tensor_pb2.DT_STRING and len(t.string_val) >= 3:
        w, h = int(t.string_val[0] or 0), int(t.string_val[1] or 0)
        for i, blob in enumerate(t.string_val[2:]):
            fmt = _image_fmt(blob)
            data.add("video" if fmt == "gif" else "images", tag, Media(step, wall, blob, fmt, i, w or None, h or None))
        return
    if plugin == "audio" and t.dtype == tensor_pb2.DT_STRING:
        blobs = list(t.string_val)
        dims = [d.size for d in t.tensor_shape.dim]
        clips = blobs[0::2] if len(dims) == 2 and dims[1] == 2 else blobs
        labels = blobs[1::2] if len(dims) == 2 and dims[1] == 2 else [b""] * len(clips)
        for i, (clip, label) in enumerate(zip(clips, labels)):
            data.add("audio", tag, Media(step, wall, clip, "wav", i, sample_rate=_wav_rate(clip),
                                         caption=label.decode("utf-8", "replace") or None))
        return
    dims = tuple(d.size for d in t.tensor_shape.dim)
    if plugin == "text" and t.dtype == tensor_pb2.DT_STRING and dims in ((), (1,)) and len(t.string_val) == 1:
        # torch and tensorboardX write text as shape [1], tbx as a scalar string
        data.add("text", tag, Text(step, wall, t.string_val[0].decode("utf-8", "replace"), dims))
        return
    raw = summary_pb2.Summary.Value()
    raw.CopyFrom(v)
    if not raw.HasField("metadata") and tag in metadata:
        raw.metadata.CopyFrom(metadata[tag])
    data.add("tensors", tag, RawValue(step, wall, plugin or "tensor", raw.SerializeToString(deterministic=True)))


class TfeventsSource(Source):
    """Runs of a TensorBoard logdir."""

    def __init__(self, logdir: str, strict: bool = False) -> None:
        self.logdir = os.fspath(logdir)
        self.strict = strict
        self.spec = _spec(self.logdir)

    def check(self) -> None:
        if not os.path.exists(self.logdir):
            raise SyncError(f"no such logdir: {self.logdir}")
        if not os.path.isdir(self.logdir):
            raise SyncError(f"{self.logdir} is not a directory (expected a TensorBoard logdir)")

    def list_runs(self) -> list[RunRef]:
        runs: dict[str, list[str]] = {}
        for run, path in iter_event_files(self.logdir):
            runs.setdefault(run, []).append(path)
        if not runs:
            raise SyncError(f"{self.logdir} holds no TensorBoard event files (files named "
                            "*tfevents*); expected a logdir written by TensorBoard, tensorboardX, torch or tbx")
        base = os.path.basename(os.path.abspath(self.logdir)) or "."
        refs = []
        for run, files in runs.items():
            run_dir = os.path.join(self.logdir, run) if run != "." else self.logdir
            refs.append(RunRef(run, run if run != "." else base, (run_dir, tuple(files))))
        return refs

    def read_run(self, ref: RunRef, report: RunReport) -> RunData:
        run_dir, files = ref.extra
        data = read_run_dir(run_dir, list(files), ref.key, ref.name, self.strict, report)
        if data.project is None:
            data.project = os.path.basename(os.path.abspath(self.logdir))
        return data


# --- writing -----------------------------------------------------------------

def _safe_name(name: str) -> str:
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    return "/".join(p.replace("\x00", "_") for p in parts) or "."


def _write_json(path: str, value: Any) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, allow_nan=True, default=str)
        f.write("\n")
    os.replace(tmp, path)


def _hparam_ok(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str)) and not isinstance(value, np.generic)


class TfeventsRun(DestRun):
    def __init__(self, dest: TfeventsDestination, run: RunData, state: dict[str, Any] | None) -> None:
        self.dest = dest
        self.key = run.key
        self.writer: EventFileWriter | None = None
        self._seen: set[tuple[str, str]] = set()
        if state:
            self.state = state
            self.run_dir = os.path.join(dest.logdir, state["dir"])
            self._rollback()
        else:
            rel = self._choose_dir(run)
            self.run_dir = os.path.join(dest.logdir, rel) if rel != "." else dest.logdir
            self.existing = self._marker() == run.key and any(
                "tfevents" in n for n in os.listdir(self.run_dir))
            self.state = {"dir": rel, "files": {}}
            if self.existing:
                self.state["files"] = {n: os.path.getsize(os.path.join(self.run_dir, n))
                                       for n in sorted(os.listdir(self.run_dir)) if "tfevents" in n}
        self.ident = self.run_dir

    # where the run goes
    def _marker(self, run_dir: str | None = None) -> str | None:
        try:
            with open(os.path.join(run_dir or self.run_dir, MARKER), encoding="utf-8") as f:
                return f.read().strip()
        except OSError:
            return None

    def _choose_dir(self, run: RunData) -> str:
        rel = _safe_name(run.name)
        path = os.path.join(self.dest.logdir, rel) if rel != "." else self.dest.logdir
        owner = self._marker(path) if os.path.isdir(path) else None
        busy = os.path.isdir(path) and any("tfevents" in n for n in os.listdir(path))
        if owner == run.key or (owner is None and not busy):
            return rel
        suffix = hashlib.sha256(run.key.encode()).hexdigest()[:8]
        return f"{rel}-{suffix}" if rel != "." else suffix

    def _rollback(self) -> None:
        """Cut event files back to their committed sizes; remove uncommitted ones."""
        committed = self.state.get("files", {})
        if not os.path.isdir(self.run_dir):
            self.state["files"] = {}
            return
        for n in os.listdir(self.run_dir):
            if "tfevents" not in n:
                continue
            path = os.path.join(self.run_dir, n)
            if n not in committed:
                os.remove(path)
            elif os.path.getsize(path) > committed[n]:
                os.truncate(path, committed[n])

    # the contract
    def expected(self, run: RunData, report: RunReport) -> RunData:
        exp = RunData(run.key, run.name, run.project, dict(run.params), dict(run.tags), list(run.labels),
                      run.notes, run.group, run.job_type, run.start_time, run.end_time, run.status,
                      dict(run.summary))
        for kind, per_tag in run.series.items():
            exp.series[kind] = dict(per_tag)
        for tag, s in run.scalars.items():
            as32 = s.values.astype(np.float32).astype(np.float64)
            changed = int(np.count_nonzero(~((as32 == s.values) | np.isnan(s.values))))
            report.transformed("scalars", "value rounded to float32 (TensorBoard's scalar type)", changed)
            exp.scalars[tag] = Scalars(s.steps, s.wall_times, as32) if changed else s
        exp.files = [f for f in run.files if _safe_name(f.path) == f.path and f.path not in SIDECARS]
        report.dropped("files", "path not relative or reserved", len(run.files) - len(exp.files))
        return exp

    def write_meta(self, run: RunData) -> None:
        os.makedirs(self.run_dir, exist_ok=True)
        with open(os.path.join(self.run_dir, MARKER), "w", encoding="utf-8") as f:
            f.write(run.key + "\n")

    def _writer(self) -> EventFileWriter:
        if self.writer is None:
            self.writer = EventFileWriter(self.run_dir, flush_secs=120)
        return self.writer

    def _first(self, kind: str, tag: str) -> bool:
        if (kind, tag) in self._seen:
            return False
        self._seen.add((kind, tag))
        return True

    def write(self, kind: str, tag: str, items: Any) -> None:
        if kind == "files":
            for f in items:
                path = os.path.join(self.run_dir, *f.path.split("/"))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as out:
                    out.write(f.data)
            return
        w = self._writer()
        if kind == "scalars":
            self._scalars(w, tag, items)
        elif kind == "histograms":
            w.write(b"".join(histogram_summary.histogram_record(
                tag, np.stack([h.edges[:-1], h.edges[1:], h.counts], axis=1) if len(h.counts) else np.zeros((0, 3)),
                h.step, h.wall_time, self._first(kind, tag)) for h in items))
        elif kind in ("images", "video"):
            for group in _by_step(items):
                m = group[0]
                strings = [str(m.width or 0).encode(), str(m.height or 0).encode(), *[g.data for g in group]]
                md = image_summary.METADATA_BYTES if self._first(kind, tag) else None
                w.write(string_tensor_record(tag, m.step, m.wall_time, (len(strings),), strings, md))
        elif kind == "audio":
            for group in _by_step(items):
                md = audio_summary.METADATA_BYTES if self._first(kind, tag) else None
                strings = []
                for m in group:
                    strings += [m.data, (m.caption or "").encode()]
                w.write(string_tensor_record(tag, group[0].step, group[0].wall_time, (len(group), 2), strings, md))
        elif kind == "text":
            w.write(b"".join(text_summary.text_record(tag, [t.text] if t.shape else t.text, t.step, t.wall_time,
                                                      self._first(kind, tag), shape=tuple(t.shape))
                             for t in items))
        elif kind == "tensors":
            out = []
            for r in items:
                event = event_pb2.Event(wall_time=r.wall_time, step=r.step)
                if r.plugin == "graph":
                    event.graph_def = r.value
                elif r.plugin == "run_metadata":
                    event.tagged_run_metadata.MergeFromString(r.value)
                else:
                    event.summary.value.add().MergeFromString(r.value)
                out.append(record.frame(event.SerializeToString()))
            w.write(b"".join(out))
        else:
            raise ValueError(f"unknown kind {kind!r}")

    def _scalars(self, w: EventFileWriter, tag: str, s: Scalars) -> None:
        md = scalar_summary.METADATA_BYTES if self._first("scalars", tag) else None
        w.write(record.encode_scalars(tag, s.values, s.steps, s.wall_times, md, False))

    def commit(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            name = os.path.basename(self.writer.path)
            self.state["files"][name] = os.path.getsize(self.writer.path)

    def finish(self, run: RunData) -> None:
        os.makedirs(self.run_dir, exist_ok=True)
        _write_json(os.path.join(self.run_dir, "config.yaml"), {k: {"value": v} for k, v in run.params.items()})
        if run.summary:
            _write_json(os.path.join(self.run_dir, "summary.json"), run.summary)
        meta = {
            "id": run.key, "name": run.name, "project": run.project, "tags": list(run.labels),
            "notes": run.notes, "group": run.group, "job_type": run.job_type,
            "start_wall_time": run.start_time, "end_wall_time": run.end_time, "status": run.status,
            "kv_tags": run.tags, "converted_by": "tbx sync", "converted_at": time.time(),
        }
        _write_json(os.path.join(self.run_dir, "metadata.json"), meta)
        w = self._writer()
        wall = run.end_time or run.start_time or time.time()
        flat = {k: (v if _hparam_ok(v) else param_text(v)) for k, v in flatten(run.params).items()
                if v is not None}
        digest = hashlib.sha256(json.dumps([flat, run.tags], sort_keys=True, default=str).encode()).hexdigest()
        if self.state.get("records") != digest:  # written once, not again on every incremental sync
            if flat:
                checked = hparams_summary.check(flat, {})
                if hparams_summary.EXPERIMENT_TAG in run.series["tensors"]:  # the source's experiment, carried raw
                    w.write(hparams_summary.hparams_record(hparams_summary.SESSION_START_INFO_TAG,
                                                           hparams_summary.session_start_pb(checked, wall), 0, wall))
                    w.write(hparams_summary.hparams_record(hparams_summary.SESSION_END_INFO_TAG,
                                                           hparams_summary.session_end_pb(end_time_secs=wall), 0, wall))
                else:
                    w.write(hparams_summary.session_records(checked, wall))
            if run.tags:
                cells = ["tag", "value"] + [c for k, v in sorted(run.tags.items()) for c in (k, v)]
                w.write(text_summary.text_record(TAGS_TEXT, cells, 0, wall, True, shape=(len(cells) // 2, 2)))
            self.state["records"] = digest
        self.commit()

    def read_back(self) -> RunData:
        files = sorted(os.path.join(self.run_dir, n) for n in os.listdir(self.run_dir) if "tfevents" in n)
        return read_run_dir(self.run_dir, files, self.key, self.run_dir, True, None)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _by_step(items: list[Media]) -> list[list[Media]]:
    groups: list[list[Media]] = []
    for m in items:
        if groups and groups[-1][0].step == m.step and m.index > 0:
            groups[-1].append(m)
        else:
            groups.append([m])
    return groups


class TfeventsDestination(Destination):
    """A TensorBoard logdir that receives runs."""

    def __init__(self, logdir: str) -> None:
        self.logdir = os.fspath(logdir)
        self.spec = _spec(self.logdir)

    def check(self) -> None:
        if os.path.exists(self.logdir) and not os.path.isdir(self.logdir):
            raise SyncError(f"{self.logdir} exists and is not a directory (expected a logdir to write runs into)")

    def open_run(self, run: RunData, state: dict[str, Any] | None) -> DestRun:
        return TfeventsRun(self, run, state)

