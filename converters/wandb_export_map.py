"""What a W&B run holds of a neutral run: keys, limits, and the per-kind rules.

The rules are listed in :mod:`tbx.converters.wandb_export`'s module doc;
:meth:`~tbx.converters.wandb_export.WandbRun.expected` applies them through
the functions here, which count every change in the run's report.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tbx.converters.model import Histogram, Media, RawValue, Text
from tbx.converters.report import RunReport
from tbx.converters.tfevents import tensor_array
from tbx.proto import summary_pb2

STEP_KEY = "global_step"
#: hidden config key holding what W&B has no field for (tags, times, status).
META_KEY = "_tbx"
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
PR_COLUMNS = ("recall", "precision")
RENAMED = "renamed tb/<tag>: the tag is a key W&B reserves"
HPARAMS = "hparams experiment: the params are the W&B config, its value domains are not kept"
REBINNED = "re-binned to at most 512 bins (W&B's limit), adjacent bins summed"


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
    arr = tensor_array(summary_pb2.Summary.Value.FromString(raw.value).tensor, "pr_curves")
    return [[float(r), float(p)] for r, p in zip(arr[5], arr[4])]


@dataclasses.dataclass
class TableText(Text):
    """A PR curve as W&B holds it: a table written with ``rows``, read back as markdown text."""

    rows: list[list[float]] = dataclasses.field(default_factory=list)


def pr_text(raw: RawValue) -> TableText:
    from tbx.converters.wandb_values import markdown_table as _markdown_table  # the reader's rendering of a W&B table

    rows = pr_table_rows(raw)
    return TableText(raw.step, raw.wall_time, _markdown_table(list(PR_COLUMNS), rows), rows=rows)


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
