"""Reading event files and logdirs.

A *logdir* is a directory tree; every directory that holds at least one event
file (a file whose basename contains ``tfevents`` and does not end with
``.profile-empty``) is a *run*, named by its path relative to the logdir with
``/`` separators; the logdir itself is run ``"."``. The files of a run are read
in lexicographic order, which for TensorBoard-style names is time order.

Defects (FORMATS.md §1.2):

- A cut-off last record is the normal end of a file that is still being
  written: reading stops there without an error (the cut-off bytes are counted
  in ``ReadStats.truncated_bytes``).
- A bad checksum raises :class:`tbx.errors.DataLossError` with the file and the
  absolute byte offset of the record. With ``lenient=True`` a record whose
  payload checksum is bad is skipped (its length is trusted, since the length
  checksum was good) and reading goes on; a bad length checksum ends that file,
  since nothing after it can be located. Both are counted.

Files are read in chunks of ``_CHUNK_SIZE`` bytes (a record larger than a chunk
is read whole), so memory stays bounded whatever the file size.

The functions here are generators or return fresh objects and share no state;
they are safe to call from several threads at once.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import struct
from collections.abc import Callable, Generator, Iterator
from typing import Any, Union

import numpy as np

from tbx import record
from tbx.errors import DataLossError
from tbx.proto import event_pb2

PathLike = Union[str, "os.PathLike[str]"]

_CHUNK_SIZE = 16 << 20  # bytes read per system call; tests shrink it
_HEADER = 12  # uint64 length + uint32 masked crc
_OVERHEAD = 16  # header + uint32 masked crc of the payload
_unpack_len = struct.Struct("<Q").unpack_from

__all__ = [
    "ReadStats", "iter_event_files", "read_records", "read_events",
    "read_scalars", "summarize",
]


@dataclasses.dataclass
class ReadStats:
    """Counts gathered while reading; pass one as ``stats=`` to fill it in.

    A plain dict works too: the same keys are incremented (lists appended).

    Attributes:
        files: event files opened.
        records: records read with good checksums (read_records/read_events;
            read_scalars counts points instead).
        points: scalar points decoded (read_scalars, before the plugin filter).
        bad_records: records skipped (lenient) or that ended a file (bad
            length checksum, lenient) — each also listed in ``problems``.
        truncated_bytes: bytes of cut-off records at the ends of files.
        problems: the DataLossError each bad record would have raised.
        truncations: ``(path, offset, nbytes)`` of each cut-off end of file.
    """

    files: int = 0
    records: int = 0
    points: int = 0
    bad_records: int = 0
    truncated_bytes: int = 0
    problems: list[DataLossError] = dataclasses.field(default_factory=list)
    truncations: list[tuple[str, int, int]] = dataclasses.field(default_factory=list)


def _add(stats: Any, name: str, n: int = 1) -> None:
    if stats is None:
        return
    if isinstance(stats, dict):
        stats[name] = stats.get(name, 0) + n
    else:
        setattr(stats, name, getattr(stats, name) + n)


def _append(stats: Any, name: str, item: Any) -> None:
    if stats is None:
        return
    if isinstance(stats, dict):
        stats.setdefault(name, []).append(item)
    else:
        getattr(stats, name).append(item)


# --- finding files -----------------------------------------------------------

def _is_event_file(name: str) -> bool:
    return "tfevents" in name and not name.endswith(".profile-empty")


def iter_event_files(logdir: PathLike) -> Iterator[tuple[str, str]]:
    """Yield ``(run, path)`` for every event file under ``logdir``.

    Runs come sorted by name, the files of a run in lexicographic order.
    Symbolic links to directories are followed (once each).

    Raises:
        FileNotFoundError: ``logdir`` does not exist.
        NotADirectoryError: ``logdir`` is not a directory.
    """
    root = os.fspath(logdir)
    if not os.path.exists(root):
        raise FileNotFoundError(f"no such logdir: {root}")
    if not os.path.isdir(root):
        raise NotADirectoryError(f"not a directory: {root} (give the logdir, or read the file directly)")

    def fail(err: OSError) -> None:
        raise err

    runs: dict[str, list[str]] = {}
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, onerror=fail, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link cycle, or two links to one directory
            dirnames[:] = []
            continue
        seen.add(real)
        names = sorted(n for n in filenames if _is_event_file(n))
        if names:
            rel = os.path.relpath(dirpath, root)
            run = "." if rel == os.curdir else rel.replace(os.sep, "/")
            runs[run] = [os.path.join(dirpath, n) for n in names]
    for run in sorted(runs):
        for path in runs[run]:
            yield run, path


def _sources(path: PathLike) -> Iterator[tuple[str, str]]:
    """``(run, file)`` pairs for a logdir, or ``(".", path)`` for one file."""
    p = os.fspath(path)
    if os.path.isfile(p):
        yield ".", p
    else:
        yield from iter_event_files(p)


# --- the chunk loop ----------------------------------------------------------

def _scan(
    path: str,
    kernel: Callable[[bytes, int], tuple[Any, ...]],
    lenient: bool,
    stats: Any,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """Run ``kernel(buf, pos)`` over the whole file (or bytes ``start:stop``), chunk by chunk.

    ``kernel`` is split_records or decode_scalars wrapped to return
    ``(end, status, *rest)``. Yields ``(absolute offset of pos, result)`` for
    every call; handles records across chunk boundaries, records larger than a
    chunk, a cut-off end, and the checksum statuses. ``start`` and ``stop``
    must be record boundaries (see :func:`tbx.record.seek_record`).
    """
    _add(stats, "files")
    with open(path, "rb", buffering=0) as f, _Mapped(f, start, stop) as mapped:
        buf: Any = b""
        pos = 0  # next unread record in buf
        base = start  # file offset of buf[0]
        if start:
            f.seek(start)
        want = _CHUNK_SIZE
        while True:
            if mapped.view is not None:  # the whole range at once, then the end
                data, mapped.view = mapped.view, None
                yield from _scan_buffer(path, kernel, lenient, stats, data, base)
                return
            if want > _CHUNK_SIZE:  # a big record: never ask past the end of file
                left = os.fstat(f.fileno()).st_size - f.tell()
                want = max(min(want, left), _CHUNK_SIZE)
            if stop is not None:
                want = min(want, stop - f.tell())
            data = f.read(want) if want > 0 else b""
            if not data:
                break
            base += pos
            buf = buf[pos:] + data if pos < len(buf) else data
            pos = yield from _run_kernel(path, kernel, lenient, stats, buf, base)
            if pos is None:
                return  # a bad length: nothing after it can be located
            rest = len(buf) - pos
            want = _CHUNK_SIZE
            if rest >= _HEADER:  # a partial record: read at least all of it
                want = max(want, _OVERHEAD + _unpack_len(buf, pos)[0] - rest)
        rest = len(buf) - pos
        if rest:
            _add(stats, "truncated_bytes", rest)
            _append(stats, "truncations", (path, base + pos, rest))


#: Files (or ranges) at least this big are mapped rather than read in chunks: no copy of the
#: data in the process's own memory, which costs a page fault per 4 KiB on first touch.
_MAP_MIN = 4 << 20


class _Mapped:
    """A read-only map of ``f``'s bytes ``start:stop`` as ``view`` (None if small or not mappable)."""

    def __init__(self, f: Any, start: int, stop: int | None) -> None:
        self.map: mmap.mmap | None = None
        self.view: memoryview | None = None
        size = os.fstat(f.fileno()).st_size
        end = size if stop is None else min(stop, size)
        if end - start < max(_MAP_MIN, _CHUNK_SIZE):
            return
        try:
            self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # not mappable (a pipe, a special file): read it instead
            return
        self.view = memoryview(self.map)[start:end]

    def __enter__(self) -> _Mapped:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.view is not None:
            self.view.release()
            self.view = None
        if self.map is not None:
            self.map.close()


def _run_kernel(path: str, kernel: Callable[[Any, int], tuple[Any, ...]], lenient: bool, stats: Any,
                buf: Any, base: int) -> Generator[tuple[int, tuple[Any, ...]], None, int | None]:
    """Run ``kernel`` over ``buf`` (file offset ``base``) until it stops at a complete or partial record.

    Yields ``(absolute offset, result)`` per call; skips (lenient) or raises on
    a bad payload checksum. Returns where it stopped, or None at a bad length
    checksum.
    """
    pos = 0
    while True:
        result = kernel(buf, pos)
        yield base + pos, result
        pos, status = result[0], result[1]
        if status == record.STATUS_OK:
            return pos
        reason = "length crc" if status == record.STATUS_BAD_LENGTH_CRC else "data crc"
        err = DataLossError(path, base + pos, reason)
        if not lenient:
            raise err
        _add(stats, "bad_records")
        _append(stats, "problems", err)
        if status == record.STATUS_BAD_LENGTH_CRC:
            return None
        pos += _OVERHEAD + _unpack_len(buf, pos)[0]


def _scan_buffer(path: str, kernel: Callable[[Any, int], tuple[Any, ...]], lenient: bool, stats: Any,
                 buf: memoryview, base: int) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """:func:`_scan` over one buffer holding the whole range (file offset ``base``)."""
    try:
        pos = yield from _run_kernel(path, kernel, lenient, stats, buf, base)
        if pos is None:
            return  # a bad length: nothing after it can be located
        rest = len(buf) - pos
        if rest:
            _add(stats, "truncated_bytes", rest)
            _append(stats, "truncations", (path, base + pos, rest))
    finally:
        buf.release()


def _split(buf: bytes, pos: int) -> tuple[Any, ...]:
    payloads, end, status = record.split_records(buf, pos, True)
    return end, status, payloads


def _records_at(path: str, lenient: bool, stats: Any) -> Iterator[tuple[int, bytes]]:
    """``(offset, payload)`` of every good record of one file."""
    for offset, (_, _, payloads) in _scan(path, _split, lenient, stats):
        _add(stats, "records", len(payloads))
        for payload in payloads:
            yield offset, payload
            offset += _OVERHEAD + len(payload)


def read_records(path: PathLike, lenient: bool = False, stats: Any = None) -> Iterator[bytes]:
    """Yield the payload (a serialized Event) of every record of one file.

    Args:
        path: an event file.
        lenient: skip records with a bad payload checksum, and stop the file
            at a bad length checksum, instead of raising.
        stats: a :class:`ReadStats` (or dict) to count records and defects in.

    Raises:
        DataLossError: a checksum failed (not with ``lenient``).
        OSError: the file cannot be read.
    """
    for _, payload in _records_at(os.fspath(path), lenient, stats):
        yield payload


def _unparsable(path: str, offset: int, exc: Exception) -> DataLossError:
    return DataLossError(
        path, offset, "event proto",
        f"record in {path} at byte {offset} has good checksums but is not an Event ({exc})",
    )


def read_events(
    path: PathLike, lenient: bool = False, stats: Any = None
) -> Iterator[tuple[str, event_pb2.Event]]:
    """Yield ``(run, event)`` for every event of a file or of a logdir.

    For a single file the run is ``"."``. ``event`` is a
    :class:`tbx.proto.event_pb2.Event`.

    Raises:
        DataLossError: a checksum failed, or a record is not an Event (not
            with ``lenient``, which skips and counts such records).
    """
    parse = event_pb2.Event.FromString
    for run, file in _sources(path):
        for offset, payload in _records_at(file, lenient, stats):
            try:
                event = parse(payload)
            except Exception as exc:  # protobuf's DecodeError, or worse
                err = _unparsable(file, offset, exc)
                if not lenient:
                    raise err from exc
                _add(stats, "bad_records")
                _append(stats, "problems", err)
                continue
            yield run, event


# --- scalars -----------------------------------------------------------------

def _decode(buf: bytes, pos: int) -> tuple[Any, ...]:
    return record.decode_scalars(buf, pos, True)


def _import_pandas(required: bool) -> Any:
    try:
        import pandas
    except ImportError as exc:
        if required:
            raise ImportError(
                "read_scalars(as_frame=True) needs pandas: pip install pandas "
                "(or pass as_frame=False for a dict of numpy arrays)"
            ) from exc
        return None
    return pandas


def read_scalars(path: PathLike, lenient: bool = False, as_frame: bool | None = None,
                 stats: Any = None) -> Any:
    """Read every scalar point of a logdir (or of one event file) as columns.

    Points are those of tags whose plugin is ``scalars`` (the tensor form with
    scalars metadata, or legacy ``simple_value``), in file order: runs sorted,
    files of a run in order, records in order. A tag's plugin is taken from
    the first metadata seen for it in its run, as TensorBoard does.

    Args:
        path: a logdir, or one event file (run ``"."``).
        lenient: skip and count bad records instead of raising.
        as_frame: True for a pandas DataFrame (ImportError without pandas),
            False for a dict of numpy arrays, None (default) for a DataFrame
            when pandas is importable.
        stats: a :class:`ReadStats` (or dict) to count points and defects in.

    Returns:
        Columns ``run``, ``tag``, ``step`` (int64), ``wall_time`` (float64)
        and ``value`` (float64). In a DataFrame ``run`` and ``tag`` are
        categorical; in the dict they are numpy object arrays of str.

    Raises:
        DataLossError: a checksum failed (not with ``lenient``).
        FileNotFoundError: ``path`` does not exist.
    """
    pandas = _import_pandas(as_frame is True) if as_frame is not False else None
    points = _ScalarPoints()
    for run, file in _sources(path):
        points.start_run(run)
        for _, (_, _, tags, index, steps, walls, values, _) in _scan(file, _decode, lenient, stats):
            _add(stats, "points", points.add_chunk(tags, index, steps, walls, values))
    run, tag, cols = points.columns()
    if pandas is not None:
        frame = {
            "run": pandas.Categorical.from_codes(run[0], categories=run[1]),
            "tag": pandas.Categorical.from_codes(tag[0], categories=tag[1]),
            **cols,
        }
        return pandas.DataFrame(frame, copy=False)
    return {
        "run": np.take(np.array(run[1], dtype=object), run[0]),
        "tag": np.take(np.array(tag[1], dtype=object), tag[0]),
        **cols,
    }


def _concat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    if not parts:
        return np.empty(0, dtype)
    return np.concatenate(parts).astype(dtype, copy=False)  # native byte order


class _ScalarPoints:
    """The decoded chunks of read_scalars, and their assembly into columns.

    Every (run, tag) pair gets a global id; points carry it until the end,
    when the pairs whose plugin is "scalars" are kept. No per-point Python.
    """

    def __init__(self) -> None:
        self.pair_run: list[int] = []  # global id -> index in run_names
        self.pair_tag: list[str] = []  # global id -> tag
        self.plugins: list[str | None] = []  # global id -> first plugin name seen
        self.run_names: list[str] = []
        self.run_tags: dict[str, int] = {}  # tag -> global id, in the current run
        self.parts: tuple[list[np.ndarray], ...] = ([], [], [], [])  # ids, steps, walls, values

    def start_run(self, run: str) -> None:
        if not self.run_names or run != self.run_names[-1]:
            self.run_names.append(run)
            self.run_tags = {}

    def add_chunk(self, tags: list[tuple[str, str | None]], index: bytes, steps: bytes,
                  walls: bytes, values: bytes) -> int:
        """Take one decode_scalars result; returns its number of points."""
        if not tags:
            return 0
        local = np.empty(len(tags), dtype=np.int32)
        run_tags, plugins = self.run_tags, self.plugins
        for i, (tag, plugin) in enumerate(tags):  # once per tag per chunk
            j = run_tags.get(tag)
            if j is None:
                j = run_tags[tag] = len(plugins)
                self.pair_run.append(len(self.run_names) - 1)
                self.pair_tag.append(tag)
                plugins.append(plugin)
            elif plugins[j] is None:
                plugins[j] = plugin
            local[i] = j
        ti = np.frombuffer(index, dtype="<i4")
        if len(ti):
            ids, st, wt, va = self.parts
            ids.append(local[ti])
            st.append(np.frombuffer(steps, dtype="<i8"))
            wt.append(np.frombuffer(walls, dtype="<f8"))
            va.append(np.frombuffer(values, dtype="<f8"))
        return len(ti)

    def columns(self) -> tuple[tuple[np.ndarray, list[str]], tuple[np.ndarray, list[str]], dict[str, np.ndarray]]:
        """``((run codes, run names), (tag codes, tag names), numeric columns)``."""
        ids, st, wt, va = self.parts
        gid = _concat(ids, np.int32)
        scalar = np.fromiter((p == "scalars" for p in self.plugins), dtype=bool, count=len(self.plugins))
        mask = scalar[gid]
        kept = bool(mask.all())
        if not kept:
            gid = gid[mask]
        cols = {}
        for name, parts, dtype in (("step", st, np.int64), ("wall_time", wt, np.float64),
                                   ("value", va, np.float64)):
            col = _concat(parts, dtype)
            cols[name] = col if kept else col[mask]
        # Tag categories: distinct tags that have points, first seen first.
        used = np.zeros(len(self.plugins), dtype=bool)
        used[gid] = True
        tag_names: dict[str, int] = {}
        pair_code = np.full(len(self.plugins), -1, dtype=np.int32)
        for j in np.flatnonzero(used).tolist():
            pair_code[j] = tag_names.setdefault(self.pair_tag[j], len(tag_names))
        # Run categories: runs that have points, in order.
        pair_run = np.asarray(self.pair_run, dtype=np.int32)
        run_used = np.zeros(len(self.run_names), dtype=bool)
        run_used[pair_run[used]] = True
        run_code = (np.cumsum(run_used, dtype=np.int32) - 1)[pair_run[gid]]
        runs = [r for r, u in zip(self.run_names, run_used.tolist()) if u]
        return (run_code, runs), (pair_code[gid], list(tag_names)), cols


# --- summaries for `tbx ls` --------------------------------------------------

_PLUGIN_KINDS = {
    "graph_run_metadata": "graph", "graph_run_metadata_graph": "graph",
    "graph_keras_model": "graph", "graph_tagged_run_metadata": "graph",
}
_LEGACY_KINDS = {
    "simple_value": "scalars", "image": "images", "histo": "histograms",
    "obsolete_old_style_histogram": "histograms", "audio": "audio", "tensor": "tensor",
}
_EVENT_KINDS = {"graph_def": "graph", "meta_graph_def": "graph"}


def summarize(path: PathLike, lenient: bool = False) -> list[dict[str, Any]]:
    """What a logdir (or event file) holds, per run and tag, for ``tbx ls``.

    A tag's kind is its plugin name from the first metadata seen for it
    (``graph_*`` plugins become ``graph``), else the form of its first value:
    ``simple_value`` → scalars, ``image`` → images, ``histo`` → histograms,
    ``audio`` → audio, a tensor without plugin → tensor. Events holding a
    ``graph_def`` or ``meta_graph_def`` are listed under those names with
    kind ``graph``; ``tagged_run_metadata`` under its tag with kind
    ``run_metadata``.

    Returns:
        One dict per run, runs sorted: ``{"run", "files": [basenames],
        "tags": [{"tag", "kind", "count", "min_step", "max_step"}]}``,
        tags sorted by name.
    """
    files: dict[str, list[str]] = {}
    for run, file in _sources(path):
        files.setdefault(run, []).append(os.path.basename(file))
    # run -> tag -> [plugin kind or None, kind of the first value's form, count, min step, max step]
    seen: dict[str, dict[str, list[Any]]] = {run: {} for run in files}

    def entry(tags: dict[str, list[Any]], tag: str, form: str, step: int) -> list[Any]:
        e = tags.get(tag)
        if e is None:
            e = tags[tag] = [None, form, 0, step, step]
        e[2] += 1
        if step < e[3]:
            e[3] = step
        elif step > e[4]:
            e[4] = step
        return e

    for run, event in read_events(path, lenient=lenient):
        tags = seen[run]
        step = event.step
        what = event.WhichOneof("what")
        if what == "summary":
            for value in event.summary.value:  # the hot loop: keep it lean
                tag = value.tag or value.node_name
                e = tags.get(tag)
                if e is None:
                    e = entry(tags, tag, _LEGACY_KINDS.get(value.WhichOneof("value") or "", "empty"), step)
                else:
                    e[2] += 1
                    if step < e[3]:
                        e[3] = step
                    elif step > e[4]:
                        e[4] = step
                if e[0] is None and value.HasField("metadata"):
                    name = value.metadata.plugin_data.plugin_name
                    if name:
                        e[0] = _PLUGIN_KINDS.get(name, name)
        elif what in _EVENT_KINDS:
            entry(tags, what, _EVENT_KINDS[what], step)
        elif what == "tagged_run_metadata":
            entry(tags, event.tagged_run_metadata.tag, "run_metadata", step)
    return [
        {"run": run, "files": files[run], "tags": [
            {"tag": tag, "kind": e[0] or e[1], "count": e[2], "min_step": e[3], "max_step": e[4]}
            for tag, e in sorted(seen[run].items())
        ]}
        for run in sorted(files)
    ]
