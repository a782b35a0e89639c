"""Reading W&B's ``.wandb`` transaction log ourselves, without wandb-core.

An offline W&B run keeps everything it logged in ``run-<id>.wandb``
(TRACKERS.md §1b). Its blocks and chunks are split into records by
:mod:`tbx.converters.wandb_framing`; every record is a serialized
``wandb_internal.Record``, decoded here with the protobuf classes of the
installed wandb SDK (imported only when needed). History and summary records
of the common shape skip protobuf and go through the fast path of
:mod:`tbx.converters.wandb_fastpath`; the rest, and every other kind of
record, go through protobuf. Damage is counted in :class:`LogStats`, or
raised with ``lenient=False`` (see :mod:`tbx.converters.wandb_framing`).

A record's kind is found by its field number wherever the oneof sits, so a
record whose leading fields come first (wandb-core writes ``_info`` before
the oneof of the records the Python side sends, e.g. ``run.summary[k] = v``
while another run is open in the process) is decoded like any other.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from tbx.converters.wandb_fastpath import (
    FIELD_HISTORY, FIELD_SUMMARY, NEST, fast_rows, joined_field, record_fields,
)
from tbx.converters.wandb_framing import (
    HEADER, MAGIC, LogFormatError, LogStats, PathLike, Records, frame, in_order, load, read_file,
)
from tbx.errors import DataLossError

# Record kinds read_log never needs: console output, system metrics, telemetry.
_SKIPPED_FIELDS = frozenset({4, 7, 11, 13})

__all__ = [
    "HEADER", "MAGIC", "LogFormatError", "LogStats", "RunLog", "iter_records", "read_history", "read_log",
    "read_run_record", "proto",
]


def proto() -> Any:
    """The installed wandb SDK's ``wandb_internal_pb2`` (records are its ``Record``)."""
    try:
        from wandb.proto import wandb_internal_pb2
    except ImportError as exc:
        raise ImportError(
            "reading .wandb files needs the wandb SDK's protobuf classes: pip install wandb") from exc
    return wandb_internal_pb2


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


class _FlatRow(dict):  # type: ignore[type-arg]
    """A fast-path row whose nested keys are still joined by :data:`NEST`."""


def _nest(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        set_path(out, key.split(NEST), value)
    return out


def _decode_kind(pb: Any, path: str, recs: Records, fields: tuple[np.ndarray, np.ndarray], field: int,
                 whole: bool, lenient: bool, stats: LogStats) -> list[Any]:
    """Every record of one kind, in file order.

    A fast-path record gives a dict of its items; another gives
    ``(offset, Record)``, parsed with protobuf.
    """
    tag_pos, kinds = fields
    idx = np.flatnonzero(kinds == field)
    rows, nested, slow = fast_rows(recs, idx, tag_pos[idx], whole)
    if any(nested):
        wrap = _nest if field == FIELD_HISTORY else _FlatRow
        rows = [wrap(r) if deep else r for r, deep in zip(rows, nested)]
    view = memoryview(recs.data)
    others = [(int(recs.offsets[i]), view[int(recs.starts[i]):int(recs.ends[i])]) for i in idx[slow].tolist()]
    others += [(o, payload) for o, payload in recs.joined if joined_field(payload) == field]
    if not others:
        return rows
    parsed = sorted((o, r) for o, r in ((o, _parse(pb, path, o, p, lenient, stats)) for o, p in others)
                    if r is not None)
    # Merge by offset: the parsed records go between runs of fast rows.
    at = np.searchsorted(recs.offsets[idx[~slow]], [o for o, _ in parsed]).tolist()
    out: list[Any] = []
    done = 0
    for i, record in zip(at, parsed):
        out.extend(rows[done:i])
        out.append(record)
        done = i
    out.extend(rows[done:])
    return out


def _history_rows(pb: Any, path: str, recs: Records, fields: Any, lenient: bool,
                  stats: LogStats) -> list[dict[str, Any]]:
    rows = _decode_kind(pb, path, recs, fields, FIELD_HISTORY, False, lenient, stats)
    for i, row in enumerate(rows):
        if isinstance(row, tuple):
            offset, record = row
            rows[i] = _items_dict(record.history.item, path, offset, stats)
    return rows


def read_history(path: PathLike, lenient: bool = True, stats: LogStats | None = None) -> list[dict[str, Any]]:
    """Every history row of a ``.wandb`` file, in file order.

    A row is the dict the run logged, with W&B's own keys (``_step``,
    ``_runtime``, ``_timestamp``): nested keys become nested dicts, so a
    logged image is ``{"img": {"_type": "image-file", "path": ...}}``.
    ``NaN`` and ``±Infinity`` come back as floats. Arguments and errors as in
    :func:`iter_records`.
    """
    pb = proto()
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
        history: the history rows (see :func:`read_history`).
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
    metrics: list[Any] = dataclasses.field(default_factory=list)
    files: list[str] = dataclasses.field(default_factory=list)
    exit: Any = None
    stats: LogStats = dataclasses.field(default_factory=LogStats)


def read_log(path: PathLike, lenient: bool = True, stats: LogStats | None = None) -> RunLog:
    """Read a ``.wandb`` file into a :class:`RunLog`.

    Console output, system metrics and telemetry records are skipped without
    being decoded (their chunks are still checksummed). Arguments and errors
    as in :func:`iter_records`.
    """
    pb = proto()
    path, recs, stats = load(path, lenient, stats)
    log = RunLog(path=path, stats=stats)
    fields = record_fields(recs)
    log.history = _history_rows(pb, path, recs, fields, lenient, stats)
    for r in _decode_kind(pb, path, recs, fields, FIELD_SUMMARY, True, lenient, stats):
        if isinstance(r, _FlatRow):
            for key, value in r.items():
                set_path(log.summary, key.split(NEST), value)
        elif isinstance(r, dict):
            log.summary.update(r)
        else:
            offset, record = r
            for item in record.summary.update:
                try:
                    set_path(log.summary, item_path(item), item_value(item))
                except ValueError:
                    stats.problems.append(DataLossError(path, offset, "value json"))
            for item in record.summary.remove:
                remove_path(log.summary, item_path(item))
    not_other = _SKIPPED_FIELDS | {FIELD_HISTORY, FIELD_SUMMARY}
    other = ~np.isin(fields[1], list(not_other))
    joined = [(o, p) for o, p in recs.joined if joined_field(p) not in not_other]
    for offset, payload in in_order(Records(recs.data, recs.offsets, recs.starts, recs.ends, joined), other):
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
    """The RunRecord of a ``.wandb`` file, reading at most ``limit`` bytes (None if absent there).

    Used to list runs cheaply: wandb-core writes the run record right after
    the header record.
    """
    pb = proto()
    path = os.fspath(path)
    recs = frame(read_file(path, limit), path, True, LogStats())
    for offset, payload in in_order(recs):
        r = _parse(pb, path, offset, payload, True, LogStats())
        if r is not None and r.WhichOneof("record_type") == "run":
            return r.run
    return None
