"""History rows of a W&B run: planned by :func:`history_rows`, sent by :class:`_HistoryWriter`.

How items become rows is described in :mod:`tbx.converters.wandb_export`'s
module doc; why rows of plain floats skip ``run.log`` is in
:class:`_HistoryWriter`'s doc.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import numpy as np

from tbx.converters.engine import WALL_TOLERANCE
from tbx.converters.wandb_export_map import STEP_KEY


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
    them. Without the SDK internals this needs (another SDK version), or
    with ``fast`` False, every row goes through ``run.log``.
    """

    BATCH = 1000

    def __init__(self, wandb: Any, run: Any, convert: Any, fast: bool) -> None:
        self.run = run
        self.convert = convert
        self._iface = getattr(run, "_interface", None)
        self._server_pb = _server_pb()
        self._dumps = getattr(getattr(wandb, "util", None), "json_dumps_safer_history", None)
        self.fast = (fast and self._server_pb is not None and self._dumps is not None
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


def _server_pb() -> Any:
    try:
        from wandb.proto import wandb_server_pb2
    except ImportError:
        return None
    return wandb_server_pb2
