"""Reading W&B's ``.wandb`` transaction log ourselves, without wandb-core.

An offline W&B run keeps everything it logged in ``run-<id>.wandb``
(TRACKERS.md §1b). Its blocks and chunks are split into records by
:mod:`tbx.converters.wandb_framing`; every record is a serialized
``wandb_internal.Record``. History and summary records of the common shape
skip protobuf and go through the fast path of
:mod:`tbx.converters.wandb_fastpath`; the rest go through protobuf. Damage is
counted in :class:`LogStats`, or raised with ``lenient=False`` (see
:mod:`tbx.converters.wandb_framing`).

:func:`iter_records` gives every record as the installed wandb SDK's
``Record``. The readers of runs (:func:`read_log`, :func:`read_history`,
:func:`read_run_record`) decode with message classes of their own instead
(:func:`schema`): the part of ``wandb_internal.proto`` they read, with W&B's
field numbers, so that reading a run does not import the wandb SDK (most of
a second) and works without it.

A record's kind is found by its field number wherever the oneof sits, so a
record whose leading fields come first (wandb-core writes ``_info`` before
the oneof of the records the Python side sends, e.g. ``run.summary[k] = v``
while another run is open in the process) is decoded like any other.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import types
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import Any

import numpy as np

from tbx.converters.wandb_fastpath import (
    FIELD_HISTORY, FIELD_SUMMARY, NEST, OTHER, Values, decode_values, fast_items, fast_rows, record_fields,
)
from tbx.converters.wandb_framing import (
    HEADER, MAGIC, LogFormatError, LogStats, PathLike, Records, frame, in_order, load, read_file,
)
from tbx.errors import DataLossError

# Record kinds read_log never needs: console output, system metrics, telemetry.
_SKIPPED_FIELDS = frozenset({4, 7, 11, 13})

__all__ = [
    "HEADER", "MAGIC", "HistoryColumns", "LogFormatError", "LogStats", "RunLog", "iter_records", "read_history",
    "read_log", "read_run_record", "proto", "schema",
]


def proto() -> Any:
    """The installed wandb SDK's ``wandb_internal_pb2`` (records are its ``Record``)."""
    try:
        from wandb.proto import wandb_internal_pb2
    except ImportError as exc:
        raise ImportError(
            "reading .wandb files needs the wandb SDK's protobuf classes: pip install wandb") from exc
    return wandb_internal_pb2


# The messages schema() declares: name -> fields (name, number, type, label or oneof, message or enum type).
_STRING, _BOOL, _INT32, _INT64, _SINT64, _DOUBLE, _MESSAGE, _ENUM = "string", "bool", "int32", "int64", "sint64", \
    "double", "message", "enum"
_MESSAGES: dict[str, list[tuple[str, int, str, str, str]]] = {
    "Timestamp": [("seconds", 1, _INT64, "", ""), ("nanos", 2, _INT32, "", "")],
    "HistoryStep": [("num", 1, _INT64, "", "")],
    "HistoryItem": [
        ("key", 1, _STRING, "", ""), ("nested_key", 2, _STRING, "repeated", ""),
        ("none", 3, _ENUM, "value", "NullValue"), ("boolean", 4, _BOOL, "value", ""),
        ("integer", 5, _SINT64, "value", ""), ("number", 6, _DOUBLE, "value", ""),
        ("text", 7, _STRING, "value", ""), ("json", 8, _STRING, "value", ""), ("value_json", 16, _STRING, "", "")],
    "HistoryRecord": [("item", 1, _MESSAGE, "repeated", "HistoryItem"), ("step", 2, _MESSAGE, "", "HistoryStep")],
    "SummaryItem": [("key", 1, _STRING, "", ""), ("nested_key", 2, _STRING, "repeated", ""),
                    ("value_json", 16, _STRING, "", "")],
    "SummaryRecord": [("update", 1, _MESSAGE, "repeated", "SummaryItem"),
                      ("remove", 2, _MESSAGE, "repeated", "SummaryItem")],
    "ConfigItem": [("key", 1, _STRING, "", ""), ("nested_key", 2, _STRING, "repeated", ""),
                   ("value_json", 16, _STRING, "", "")],
    "ConfigRecord": [("update", 1, _MESSAGE, "repeated", "ConfigItem"),
                     ("remove", 2, _MESSAGE, "repeated", "ConfigItem")],
    "FilesItem": [("path", 1, _STRING, "", "")],
    "FilesRecord": [("files", 1, _MESSAGE, "repeated", "FilesItem")],
    "MetricRecord": [("name", 1, _STRING, "", ""), ("glob_name", 2, _STRING, "", ""),
                     ("step_metric", 4, _STRING, "", "")],
    "RunExitRecord": [("exit_code", 1, _INT32, "", ""), ("runtime", 2, _INT32, "", "")],
    "RunRecord": [
        ("run_id", 1, _STRING, "", ""), ("entity", 2, _STRING, "", ""), ("project", 3, _STRING, "", ""),
        ("config", 4, _MESSAGE, "", "ConfigRecord"), ("run_group", 6, _STRING, "", ""),
        ("job_type", 7, _STRING, "", ""), ("display_name", 8, _STRING, "", ""), ("notes", 9, _STRING, "", ""),
        ("tags", 10, _STRING, "repeated", ""), ("start_time", 17, _MESSAGE, "", "Timestamp"),
        ("runtime", 20, _INT32, "", "")],
    "Record": [
        ("num", 1, _INT64, "", ""), ("history", 2, _MESSAGE, "record_type", "HistoryRecord"),
        ("summary", 3, _MESSAGE, "record_type", "SummaryRecord"),
        ("config", 5, _MESSAGE, "record_type", "ConfigRecord"), ("files", 6, _MESSAGE, "record_type", "FilesRecord"),
        ("metric", 12, _MESSAGE, "record_type", "MetricRecord"), ("run", 17, _MESSAGE, "record_type", "RunRecord"),
        ("exit", 18, _MESSAGE, "record_type", "RunExitRecord")],
}


@functools.cache
def schema() -> Any:
    """Message classes for the records that :func:`read_log` decodes (``schema().Record`` etc.).

    A proto3 subset of ``wandb_internal.proto`` built with protobuf (which
    tbx uses anyway): the same field numbers and types, so records parse as
    they do with the SDK's classes (strings checked as UTF-8); the fields
    and record kinds left out are skipped as unknown fields (a Record of
    another kind has no ``record_type``).
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="tbx_wandb_records.proto", package="tbx_wandb", syntax="proto3")
    file.enum_type.add(name="NullValue").value.add(name="NULL_VALUE", number=0)
    for name, fields in _MESSAGES.items():
        msg = file.message_type.add(name=name)
        oneofs: list[str] = []
        for field, number, kind, label, type_name in fields:
            f = msg.field.add(name=field, number=number, type=getattr(fdp, "TYPE_" + kind.upper()),
                              label=fdp.LABEL_REPEATED if label == "repeated" else fdp.LABEL_OPTIONAL)
            if type_name:
                f.type_name = ".tbx_wandb." + type_name
            if label not in ("", "repeated"):
                if label not in oneofs:
                    oneofs.append(label)
                    msg.oneof_decl.add(name=label)
                f.oneof_index = oneofs.index(label)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(file.SerializeToString())
    return types.SimpleNamespace(**{name: message_factory.GetMessageClass(pool.FindMessageTypeByName(
        "tbx_wandb." + name)) for name in _MESSAGES})


def _parse(pb: Any, path: str, offset: int, payload: Any, lenient: bool, stats: LogStats) -> Any:
    record = pb.Record()
    try:
        record.ParseFromString(payload)
    except Exception as exc:  # protobuf's DecodeError, or anything the C parser raises
        err = DataLossError(path, offset, "record proto", f"undecodable record in {path} at byte {offset}: {exc}")
        if not lenient:
            raise err from exc
        stats.problems.append(err)
        return None
    return record


def iter_records(path: PathLike, lenient: bool = True, stats: LogStats | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(offset, Record)`` for every record of a ``.wandb`` file, in file order.

    Args:
        path: a ``run-<id>.wandb`` file.
        lenient: skip damaged chunks (and the rest of their block) and
            undecodable records instead of raising.
        stats: a :class:`LogStats` to count records and damage in.

    Raises:
        LogFormatError: not a W&B log, or an unsupported format version.
        DataLossError: damage found (only with ``lenient=False``).
        ImportError: the wandb SDK is not installed.
    """
    pb = proto()
    path, recs, stats = load(path, lenient, stats)
    for offset, payload in in_order(recs):
        record = _parse(pb, path, offset, payload, lenient, stats)
        if record is not None:
            yield offset, record


# --- decoding values -------------------------------------------------------------


def item_value(item: Any) -> Any:
    """The value of a History/Summary/ConfigItem: ``value_json``, else the typed field.

    wandb 0.31 can also write history values typed (``x_history_value_encoding``);
    it still writes ``value_json`` beside them.
    """
    if item.value_json:
        return json.loads(item.value_json)
    if "value" not in item.DESCRIPTOR.oneofs_by_name:
        return None
    which = item.WhichOneof("value")
    if which is None or which == "none":
        return None
    if which == "json":
        return json.loads(item.json)
    return getattr(item, which)


def item_path(item: Any) -> list[str]:
    return list(item.nested_key) if item.nested_key else [item.key]


def set_path(target: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        child = target.get(key)
        if not isinstance(child, dict):
            child = target[key] = {}
        target = child
    target[path[-1]] = value


def remove_path(target: dict[str, Any], path: list[str]) -> None:
    for key in path[:-1]:
        target = target.get(key)
        if not isinstance(target, dict):
            return
    target.pop(path[-1], None)


def _items_dict(items: Any, path: str, offset: int, stats: LogStats) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        try:
            value = item_value(item)
        except ValueError as exc:
            stats.problems.append(DataLossError(
                path, offset, "value json", f"undecodable value of {item_path(item)} in {path} "
                f"at byte {offset}: {exc}"))
            continue
        set_path(out, item_path(item), value)
    return out


def _nest(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        set_path(out, key.split(NEST), value)
    return out


def _history_rows(pb: Any, path: str, recs: Records, fields: tuple[np.ndarray, np.ndarray], lenient: bool,
                  stats: LogStats) -> list[dict[str, Any]]:
    """Every history row in file order: fast-path rows, and protobuf's where the fast path declines."""
    tag_pos, kinds = fields
    idx = np.flatnonzero(kinds == FIELD_HISTORY)
    rows, nested, slow = fast_rows(recs, idx, tag_pos[idx], False)
    if any(nested):
        rows = [_nest(r) if deep else r for r, deep in zip(rows, nested)]
    if not slow.any():
        return rows
    fast_before = (np.cumsum(~slow) - ~slow).tolist()
    view = memoryview(recs.data)
    out: list[dict[str, Any]] = []
    done = 0
    for j in np.flatnonzero(slow).tolist():
        out.extend(rows[done:fast_before[j]])
        done = fast_before[j]
        i = int(idx[j])
        offset = int(recs.offsets[i])
        record = _parse(pb, path, offset, view[int(recs.starts[i]):int(recs.ends[i])], lenient, stats)
        if record is not None:
            out.append(_items_dict(record.history.item, path, offset, stats))
    out.extend(rows[done:])
    return out


_NUMBER = frozenset({float, int})


class HistoryColumns:
    """History rows as columns: every ``(row, key, value)`` item, in row order.

    What :class:`RunLog` holds as ``columns`` (``read_log(..., columns=True)``):
    the same rows as ``history``, without a dict per row. ``keys[code]`` is
    an item's top-level key (a nested key's value is the nested dict, as in
    the row), ``index`` maps keys to codes; ``values[i]`` is item i's value
    (a :class:`~tbx.converters.wandb_fastpath.Values`); ``numeric`` marks int
    and float values (not booleans), ``number`` holds them as float64.
    """

    def __init__(self, rows: int, keys: list[str], row: np.ndarray, code: np.ndarray, values: Values) -> None:
        self.rows, self.keys, self.row, self.code, self.values = rows, keys, row, code, values
        self.index = {k: i for i, k in enumerate(keys)}
        self.numeric = values.kind != OTHER
        self.number = values.number.copy()
        for i, v in values.other.items():
            if type(v) in _NUMBER:
                try:
                    self.number[i] = v
                    self.numeric[i] = True
                except OverflowError:  # an int beyond float64: not a number here (converting it fails later)
                    pass

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]]) -> HistoryColumns:
        lens = np.fromiter(map(len, rows), np.int64, len(rows))
        names = list(chain.from_iterable(rows))
        codes = dict.fromkeys(names, 0)
        for i, key in enumerate(codes):
            codes[key] = i
        values = list(chain.from_iterable(map(dict.values, rows)))
        return cls(len(rows), list(codes), np.repeat(np.arange(len(rows)), lens),
                   np.fromiter(map(codes.__getitem__, names), np.int64, len(names)), Values.of_list(values))

    def column(self, key: str) -> list[Any]:
        """Each row's value of ``key`` (None where absent), as ``row.get(key)``."""
        out: list[Any] = [None] * self.rows
        c = self.index.get(key)
        if c is not None and c in self.groups:
            at = self.groups[c]
            for r, i in zip(self.row[at].tolist(), at.tolist()):
                out[r] = self.values[i]
        return out

    @functools.cached_property
    def groups(self) -> dict[int, np.ndarray]:
        """The items of each code, in row order: ``{code: item indices}`` (codes with items, ascending)."""
        small = np.int16 if len(self.keys) < 2 ** 15 else np.int64
        order = np.argsort(self.code.astype(small), kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(self.code, minlength=len(self.keys)))]).tolist()
        return {c: order[lo:hi] for c, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])) if hi > lo}

    def dense(self, at: np.ndarray) -> bool:
        """Whether the items ``at`` (of one code, in row order) are one per row, every row: their rows are 0 .. rows-1."""
        return len(at) == self.rows

    def numbers(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(present, value)`` per row for ``key``, or None if one of its values is not a number."""
        c = self.index.get(key)
        at = self.groups.get(c) if c is not None else None
        if at is None:
            return np.zeros(self.rows, bool), np.zeros(self.rows)
        if not self.numeric[at].all():
            return None
        if self.dense(at):
            return np.ones(self.rows, bool), self.number[at]
        present = np.zeros(self.rows, bool)
        value = np.zeros(self.rows)
        present[self.row[at]] = True
        value[self.row[at]] = self.number[at]
        return present, value


def _history_columns(pb: Any, path: str, recs: Records, fields: tuple[np.ndarray, np.ndarray], lenient: bool,
                     stats: LogStats) -> HistoryColumns:
    """The rows of :func:`_history_rows` as columns, made without a dict per row.

    The fast path's records of flat, distinct keys give their items as they
    are; a record with a nested key or a key twice becomes its row dict
    first, as does a record that protobuf decodes.
    """
    tag_pos, kinds = fields
    idx = np.flatnonzero(kinds == FIELD_HISTORY)
    slow = None
    while True:  # a record with a value that is not JSON goes to protobuf, which reports it
        items = fast_items(recs, idx, tag_pos[idx], False, slow, numbers=True)
        slow = items.slow
        values, bad = decode_values(recs, items)
        if not bad:
            break
        slow[items.rec[bad]] = True
    codes: dict[str, int] = {}
    tops = [codes.setdefault(p[0], len(codes)) for p in items.paths]
    deep = np.array([len(p) > 1 for p in items.paths], bool)
    rec = items.rec
    code = items.pid if tops == list(range(len(tops))) else np.array(tops, np.int64)[items.pid]
    built = np.zeros(len(idx), bool)  # fast records whose row is made as a dict
    if deep.any():
        built[rec[deep[items.pid]]] = True
    built |= _repeats_a_key(rec, code, len(idx))
    # The rows made as dicts, by record; a record protobuf cannot decode has none.
    made: dict[int, dict[str, Any]] = {}
    redo = np.flatnonzero(items.slow | built).tolist()
    bounds = np.searchsorted(rec, np.arange(len(idx) + 1)).tolist() if built.any() else []
    view = memoryview(recs.data)
    for j in redo:
        if built[j]:
            made[j] = {}
            for i in range(bounds[j], bounds[j + 1]):
                set_path(made[j], list(items.paths[items.pid[i]]), values[i])
            continue
        i = int(idx[j])
        offset = int(recs.offsets[i])
        record = _parse(pb, path, offset, view[int(recs.starts[i]):int(recs.ends[i])], lenient, stats)
        if record is not None:
            made[j] = _items_dict(record.history.item, path, offset, stats)
    has_row = ~items.slow
    has_row[list(made)] = True
    if not made and has_row.all():  # every record fast: rows are records
        return HistoryColumns(len(idx), list(codes), rec, code, values)
    row_of = np.cumsum(has_row) - 1
    if not made:
        return HistoryColumns(int(has_row.sum()), list(codes), row_of[rec], code, values)
    keep = np.flatnonzero(~built[rec])
    more = [(int(row_of[j]), codes.setdefault(k, len(codes)), v) for j, row in made.items() for k, v in row.items()]
    row = np.concatenate([row_of[rec[keep]], np.array([m[0] for m in more], np.int64)])
    order = np.argsort(row, kind="stable")
    return HistoryColumns(
        int(has_row.sum()), list(codes), row[order],
        np.concatenate([code[keep], np.array([m[1] for m in more], np.int64)])[order],
        values.take(keep).concat(Values.of_list([m[2] for m in more])).take(order))


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def _repeats_a_key(rec: np.ndarray, code: np.ndarray, records: int) -> np.ndarray:
    """Which records (0 .. records-1) hold a key code twice, for items ``rec``, ``code`` in record order."""
    out = np.zeros(records, bool)
    if not len(rec):
        return out
    if int(code.max()) >= 64:
        width = int(code.max()) + 1
        key = np.sort(rec * width + code)
        out[key[1:][key[1:] == key[:-1]] // width] = True
        return out
    # The keys of each record as a 64-bit set: fewer keys in it than items, a key repeats.
    starts = np.flatnonzero(np.concatenate([[True], rec[1:] != rec[:-1]]))
    counts = np.diff(np.append(starts, len(rec)))
    sets = np.bitwise_or.reduceat(np.left_shift(np.uint64(1), code.astype(np.uint64)), starts)
    distinct = _POPCOUNT[sets.view(np.uint8).reshape(-1, 8)].sum(axis=1)
    out[rec[starts[distinct != counts]]] = True
    return out


def read_history(path: PathLike, lenient: bool = True, stats: LogStats | None = None) -> list[dict[str, Any]]:
    """Every history row of a ``.wandb`` file, in file order.

    A row is the dict the run logged, with W&B's own keys (``_step``,
    ``_runtime``, ``_timestamp``): nested keys become nested dicts, so a
    logged image is ``{"img": {"_type": "image-file", "path": ...}}``.
    ``NaN`` and ``±Infinity`` come back as floats. Arguments and errors as in
    :func:`iter_records`, without the need for the wandb SDK.
    """
    pb = schema()
    path, recs, stats = load(path, lenient, stats)
    return _history_rows(pb, path, recs, record_fields(recs), lenient, stats)


@dataclasses.dataclass
class RunLog:
    """What one ``.wandb`` file says about its run (see :func:`read_log`).

    Attributes:
        path: the file.
        run: the first RunRecord, or None.
        config: the config after every update and removal (nested dicts).
        summary: the summary after every update and removal (nested dicts).
        history: the history rows (see :func:`read_history`); empty if read as ``columns``.
        columns: the history rows as :class:`HistoryColumns` (``read_log(..., columns=True)``), or None.
        metrics: MetricRecords (``define_metric``), in order.
        files: paths (relative to the run's ``files/``) named by FilesRecords.
        exit: the RunExitRecord, or None while the run has not ended.
        stats: counts and damage found.
    """

    path: str
    run: Any = None
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    columns: HistoryColumns | None = None
    metrics: list[Any] = dataclasses.field(default_factory=list)
    files: list[str] = dataclasses.field(default_factory=list)
    exit: Any = None
    stats: LogStats = dataclasses.field(default_factory=LogStats)


def read_log(path: PathLike, lenient: bool = True, stats: LogStats | None = None,
             columns: bool = False) -> RunLog:
    """Read a ``.wandb`` file into a :class:`RunLog`.

    Console output, system metrics and telemetry records are skipped without
    being decoded (their chunks are still checksummed). ``run``, ``metrics``
    and ``exit`` are messages of :func:`schema`. With ``columns`` the history
    comes as :class:`HistoryColumns` (``log.columns``, faster) instead of row
    dicts. Arguments and errors as in :func:`iter_records`, without the need
    for the wandb SDK.
    """
    pb = schema()
    path, recs, stats = load(path, lenient, stats)
    log = RunLog(path=path, stats=stats)
    fields = record_fields(recs)
    # The summary is read on a second thread while the history is (their kernels release the GIL);
    # its damage is counted after the history's, as a single thread would.
    summary_stats = LogStats()
    with ThreadPoolExecutor(max_workers=1) as pool:
        summary = pool.submit(_read_summary, pb, path, recs, fields, lenient, summary_stats, log.summary)
        if columns:
            log.columns = _history_columns(pb, path, recs, fields, lenient, stats)
        else:
            log.history = _history_rows(pb, path, recs, fields, lenient, stats)
        summary.result()
    stats.records += summary_stats.records
    stats.bad_chunks += summary_stats.bad_chunks
    stats.problems.extend(summary_stats.problems)
    other = ~np.isin(fields[1], list(_SKIPPED_FIELDS | {FIELD_HISTORY, FIELD_SUMMARY}))
    for offset, payload in in_order(recs, other):
        r = _parse(pb, path, offset, payload, lenient, stats)
        if r is None:
            continue
        kind = r.WhichOneof("record_type")
        if kind == "run":
            if log.run is None:
                log.run = r.run
            _apply_config(log.config, r.run.config.update, (), path, offset, stats)
        elif kind == "config":
            _apply_config(log.config, r.config.update, r.config.remove, path, offset, stats)
        elif kind == "metric":
            log.metrics.append(r.metric)
        elif kind == "files":
            log.files.extend(f.path for f in r.files.files if f.path not in log.files)
        elif kind == "exit":
            log.exit = r.exit
    return log


def _read_summary(pb: Any, path: str, recs: Records, fields: tuple[np.ndarray, np.ndarray], lenient: bool,
                  stats: LogStats, summary: dict[str, Any]) -> None:
    """Apply every SummaryRecord to ``summary``, in file order, decoding few values.

    A summary record sets keys (and, rarely, removes some); a run writes
    one or two per history row, each repeating most keys, so only the last
    value of each key matters. The fast path's records (see
    :func:`~tbx.converters.wandb_fastpath.fast_items`) come in *segments* between
    the records left to protobuf. Within a segment whose key paths are
    prefix-free (no key is a parent of another: the usual case), setting each
    path once, in the order paths first appear, to its last value gives
    the same dict as every update in turn, key order included; only those
    values are decoded, so an undecodable value that a later one replaces
    goes unnoticed. Other segments are applied item by item.
    """
    tag_pos, kinds = fields
    idx = np.flatnonzero(kinds == FIELD_SUMMARY)
    data = recs.data
    slow = None
    every = False  # whether the kernel must give every item, not only each key's last of a segment
    while True:  # until every value to decode is JSON (a record whose value is not goes to protobuf)
        items = fast_items(recs, idx, tag_pos[idx], True, slow, last=not every)
        slow, rec, pid, path_of = items.slow, items.rec, items.pid, items.paths
        # Segment of each item: how many records left to protobuf come before its record.
        seg = np.cumsum(slow)[rec]
        bounds = np.searchsorted(seg, np.arange(int(slow.sum()) + 2)).tolist()
        plan: list[list[tuple[tuple[str, ...], int]]] = []  # per segment: (path, item) to set, in order
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            if every:
                plan.append(_segment_plan(pid[lo:hi], path_of, lo))
                continue
            # The kernel's last items are per key bytes: two spellings of one path, or a path
            # that is a parent of another, need every item.
            used = [path_of[p] for p in pid[lo:hi].tolist()]
            if len(set(used)) < len(used) or not {p[:k] for p in used for k in range(1, len(p))}.isdisjoint(used):
                every = True
                break
            plan.append(list(zip(used, range(lo, hi))))
        if every and len(plan) < len(bounds) - 1:
            continue
        value_start, value_end = items.value_start, items.value_end
        values: dict[int, Any] = {}
        undecodable = []
        for ops in plan:
            for _, i in ops:
                try:
                    values[i] = json.loads(data[value_start[i]:value_end[i]])
                except ValueError:
                    undecodable.append(i)
        if undecodable:
            slow[rec[undecodable]] = True
            continue
        break
    view = memoryview(data)
    for segment, ops in enumerate(plan):
        if segment:
            i = int(idx[np.flatnonzero(slow)[segment - 1]])
            offset = int(recs.offsets[i])
            record = _parse(pb, path, offset, view[int(recs.starts[i]):int(recs.ends[i])], lenient, stats)
            if record is not None:
                for item in record.summary.update:
                    try:
                        set_path(summary, item_path(item), item_value(item))
                    except ValueError:
                        stats.problems.append(DataLossError(path, offset, "value json"))
                for item in record.summary.remove:
                    remove_path(summary, item_path(item))
        for key, i in ops:
            set_path(summary, list(key), values[i])


def _segment_plan(pid: np.ndarray, path_of: list[tuple[str, ...]], base: int) -> list[tuple[tuple[str, ...], int]]:
    """``(path, item)`` to set for one segment of items with path ids ``pid`` (item = base + index)."""
    if not len(pid):
        return []
    order = np.argsort(pid.astype(np.int16) if len(path_of) < 2 ** 15 else pid, kind="stable")
    sorted_ids = pid[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_ids[1:] != sorted_ids[:-1]]))
    ends = np.append(starts[1:], len(pid))
    firsts, lasts = order[starts], order[ends - 1]
    used = [path_of[p] for p in sorted_ids[starts].tolist()]
    parents = {p[:k] for p in used for k in range(1, len(p))}
    if parents.isdisjoint(used):
        by_first = np.argsort(firsts)
        return [(used[j], base + int(lasts[j])) for j in by_first.tolist()]
    return [(path_of[p], base + i) for i, p in enumerate(pid.tolist())]


def _apply_config(config: dict[str, Any], updates: Any, removes: Any, path: str, offset: int,
                  stats: LogStats) -> None:
    for item in updates:
        try:
            set_path(config, item_path(item), item_value(item))
        except ValueError:
            stats.problems.append(DataLossError(path, offset, "value json"))
    for item in removes:
        remove_path(config, item_path(item))


def read_run_record(path: PathLike, limit: int = 1 << 20) -> Any:
    """The RunRecord (of :func:`schema`) of a ``.wandb`` file, reading at most ``limit`` bytes (None if absent there).

    Used to list runs cheaply: wandb-core writes the run record right after
    the header record.
    """
    pb = schema()
    path = os.fspath(path)
    recs = frame(read_file(path, limit), path, True, LogStats())
    for offset, payload in in_order(recs):
        r = _parse(pb, path, offset, payload, True, LogStats())
        if r is not None and r.WhichOneof("record_type") == "run":
            return r.run
    return None
