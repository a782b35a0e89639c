"""The neutral run model every backend reads into and writes from.

A :class:`RunData` is one run of any tracker: its identity and metadata, and
its logged items by kind. Items of each kind are kept per tag in *source
order*, the order in which the source recorded them; the sync engine's ledger
counts how many items of each (kind, tag) were already carried, so a source
must only ever append to a tag (tfevents files, MLflow histories ordered by
timestamp and W&B histories all do).

Kinds (the names used by the ledger and the fidelity report):

========== ===================================================================
scalars    :class:`Scalars` columns per tag: step, wall time (s), value
histograms :class:`Histogram` per tag: bin edges and counts at a step
images     :class:`Media` with encoded bytes (png, jpeg, gif)
audio      :class:`Media` (wav)
video      :class:`Media` (gif, mp4, webm)
text       :class:`Text` (markdown)
tensors    :class:`RawValue`: a TensorBoard summary value of another plugin
           (pr_curves, mesh, custom_scalars, graphs, ...), kept as bytes so a
           tfevents destination can write it back unchanged
files      :class:`File`: other files of the run (projector config, tables)
params     the run's config/hyperparameters (a flat ``{key: value}``)
tags       free-form ``{key: str}`` tags (MLflow tags; W&B tags go to ``labels``)
summary    W&B's run summary ``{key: JSON value}`` (final or best values)
========== ===================================================================
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator

import numpy as np

KINDS = ("scalars", "histograms", "images", "audio", "video", "text", "tensors", "files",
         "params", "tags", "summary")
#: Kinds whose items are sequences per tag (the ledger keeps a count per tag).
SERIES_KINDS = ("scalars", "histograms", "images", "audio", "video", "text", "tensors")
MEDIA_KINDS = ("images", "audio", "video")


@dataclasses.dataclass
class Scalars:
    """One tag's scalar series as columns (same length)."""

    steps: np.ndarray  # int64
    wall_times: np.ndarray  # float64 seconds since the epoch
    values: np.ndarray  # float64

    def __post_init__(self) -> None:
        self.steps = np.ascontiguousarray(self.steps, dtype=np.int64)
        self.wall_times = np.ascontiguousarray(self.wall_times, dtype=np.float64)
        self.values = np.ascontiguousarray(self.values, dtype=np.float64)
        n = len(self.steps)
        if len(self.wall_times) != n or len(self.values) != n:
            raise ValueError(
                f"Scalars columns differ in length: steps {n}, wall_times "
                f"{len(self.wall_times)}, values {len(self.values)}")

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, sl: slice) -> Scalars:
        return Scalars(self.steps[sl], self.wall_times[sl], self.values[sl])

    @classmethod
    def empty(cls) -> Scalars:
        return cls(np.empty(0, np.int64), np.empty(0), np.empty(0))

    @classmethod
    def concat(cls, parts: list[Scalars]) -> Scalars:
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(np.concatenate([p.steps for p in parts]),
                   np.concatenate([p.wall_times for p in parts]),
                   np.concatenate([p.values for p in parts]))


@dataclasses.dataclass
class Histogram:
    """A histogram at one step: ``len(edges) == len(counts) + 1``."""

    step: int
    wall_time: float
    edges: np.ndarray  # float64, non-decreasing
    counts: np.ndarray  # float64

    def __post_init__(self) -> None:
        self.edges = np.asarray(self.edges, dtype=np.float64)
        self.counts = np.asarray(self.counts, dtype=np.float64)
        if len(self.edges) != len(self.counts) + 1:
            raise ValueError(f"histogram has {len(self.counts)} counts but {len(self.edges)} edges "
                             f"(expected {len(self.counts) + 1})")

    def same(self, other: Histogram) -> bool:
        return (self.step == other.step and len(self.counts) == len(other.counts)
                and bool(np.array_equal(self.counts, other.counts))
                and bool(np.allclose(self.edges, other.edges, rtol=1e-6, atol=0)))


@dataclasses.dataclass
class Media:
    """An encoded image, audio clip or video at one step.

    ``index`` numbers several items logged under one tag at one step (an
    image batch), from 0. ``fmt`` is the file extension without the dot.
    """

    step: int
    wall_time: float
    data: bytes
    fmt: str
    index: int = 0
    width: int | None = None
    height: int | None = None
    sample_rate: float | None = None
    caption: str | None = None

    def same(self, other: Media) -> bool:
        return self.step == other.step and self.data == other.data and self.index == other.index


@dataclasses.dataclass
class Text:
    """Markdown text at one step; ``shape`` is TensorBoard's tensor shape, ``()`` or ``(1,)``."""

    step: int
    wall_time: float
    text: str
    shape: tuple = ()

    def same(self, other: Text) -> bool:
        return self.step == other.step and self.text == other.text


@dataclasses.dataclass
class RawValue:
    """A TensorBoard Summary.Value (or graph) the model has no kind for.

    ``value`` is the serialized ``Summary.Value`` with its metadata filled in
    (or, for ``plugin == "graph"``, a serialized GraphDef); ``plugin`` is the
    plugin name.
    """

    step: int
    wall_time: float
    plugin: str
    value: bytes

    def same(self, other: RawValue) -> bool:
        return self.step == other.step and self.value == other.value


@dataclasses.dataclass
class File:
    """A file of the run: ``path`` is relative with ``/`` separators."""

    path: str
    data: bytes

    def same(self, other: File) -> bool:
        return self.path == other.path and self.data == other.data


@dataclasses.dataclass
class RunData:
    """One run, as read from a source or read back from a destination.

    Attributes:
        key: the source's stable identity of the run (a run path, an MLflow
            run id, a W&B run id); the ledger is keyed by it.
        name: display name; for tfevents the run path relative to the logdir.
        project: experiment / project name, where the source has one.
        params: config / hyperparameters ``{key: value}``; values may be
            nested dicts (W&B config), which destinations that need flat
            keys (MLflow, the HParams dashboard) flatten to ``a.b``.
        tags: free-form string tags ``{key: value}``.
        labels: W&B-style tag list.
        notes, group, job_type: as in W&B.
        start_time, end_time: seconds since the epoch, or None.
        status: ``"FINISHED"``, ``"FAILED"``, ``"KILLED"``, ``"RUNNING"`` or None.
        summary: final values ``{key: value}`` (W&B summary; for MLflow the
            last value of each metric).
        series: kind → tag → items (``Scalars`` for scalars, a list otherwise).
        files: other files of the run.
    """

    key: str
    name: str
    project: str | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    labels: list[str] = dataclasses.field(default_factory=list)
    notes: str | None = None
    group: str | None = None
    job_type: str | None = None
    start_time: float | None = None
    end_time: float | None = None
    status: str | None = None
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    series: dict[str, dict[str, Any]] = dataclasses.field(
        default_factory=lambda: {k: {} for k in SERIES_KINDS})
    files: list[File] = dataclasses.field(default_factory=list)

    # --- building -------------------------------------------------------------
    @property
    def scalars(self) -> dict[str, Scalars]:
        return self.series["scalars"]

    def add(self, kind: str, tag: str, item: Any) -> None:
        """Append one non-scalar item to ``kind``/``tag``."""
        self.series.setdefault(kind, {}).setdefault(tag, []).append(item)

    def count(self, kind: str) -> int:
        if kind == "files":
            return len(self.files)
        if kind == "params":
            return len(flatten(self.params))
        if kind == "tags":
            return len(self.tags)
        if kind == "summary":
            return len(self.summary)
        return sum(len(v) for v in self.series.get(kind, {}).values())

    def items(self, kind: str) -> Iterator[tuple[str, Any]]:
        """``(tag, items)`` of a series kind, tags sorted."""
        per_tag = self.series.get(kind, {})
        for tag in sorted(per_tag):
            yield tag, per_tag[tag]


def flatten(config: Any, prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; W&B's ``{"k": {"value": v}}`` is unwrapped by callers."""
    out: dict[str, Any] = {}
    if isinstance(config, dict) and config:
        for k, v in config.items():
            key = f"{prefix}{sep}{k}" if prefix else str(k)
            if isinstance(v, dict) and v:
                out.update(flatten(v, key, sep))
            else:
                out[key] = v
    elif prefix:
        out[prefix] = config
    return out


def same_float(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise equality where NaN equals NaN."""
    return (a == b) | (np.isnan(a) & np.isnan(b))


def same_value(a: Any, b: Any) -> bool:
    """JSON-style equality of summary values: NaN equals NaN, ints equal floats of the same value."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def param_text(value: Any) -> str:
    """A param value as the string trackers store (MLflow keeps strings)."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and math.isfinite(value) and value == int(value) and abs(value) < 1e16:
        return repr(value)
    if isinstance(value, (list, dict)):
        import json
        return json.dumps(value, sort_keys=True)
    return str(value)
