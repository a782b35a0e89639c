"""W&B's typed history values (``{"_type": ...}``) as items of the neutral model.

Used by :class:`tbx.converters.wandb_decode.RunBuilder` for every dict value
of a history row that carries a ``_type``. Media values name files under the
run's ``files/`` directory; their bytes are carried unchanged.

==================================  ========================================
``histogram``                       histograms (``bins``/``values``, or
                                    ``packedBins``)
``image-file``, ``images/separated``  images (one item per image, ``index``)
``audio-file``, ``audio``           audio (WAV sample rate from the file)
``video-file``, ``videos``          video
``table-file``                      text: the table as a markdown table
                                    (TensorBoard's text dashboard renders
                                    it); the table JSON is also carried as
                                    a file
other ``_type``\\ s                  dropped, counted with the reason
==================================  ========================================

A media file that is missing is dropped with its path as the reason; the
rest of the run goes on.
"""

from __future__ import annotations

import io
import json
import os
import wave
from typing import Any

import numpy as np

from tbx.converters.model import Histogram, Media, Text
from tbx.converters.report import RunReport

#: The model kind of each W&B value type.
KINDS = {"histogram": "histograms", "image-file": "images", "images/separated": "images", "audio-file": "audio",
         "audio": "audio", "video-file": "video", "videos": "video", "table-file": "text"}


def kind_of(value: Any) -> str:
    """The model kind a history value would go to (for counting what is dropped)."""
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return KINDS.get(value.get("_type"), "tensors")
    return "scalars"


class TypedValues:
    """Turns typed values into items; ``consumed`` collects the media files used (relative to ``files/``)."""

    def __init__(self, report: RunReport) -> None:
        self.report = report
        self.consumed: set[str] = set()

    def items(self, value: dict[str, Any], step: int, wall: float, files_dir: str) -> tuple[str, list[Any]]:
        """``(kind, items)`` of one value; what cannot be carried is counted as dropped."""
        kind = value.get("_type")
        if kind == "histogram":
            hist = _histogram(value, step, wall)
            if hist is None:
                self.report.dropped("histograms", "malformed W&B histogram")
                return "histograms", []
            return "histograms", [hist]
        if kind in ("image-file", "audio-file", "video-file"):
            return self._media(KINDS[kind], [value], [value.get("caption")], value, step, wall, files_dir)
        if kind == "images/separated":
            files = [{"path": p} for p in value.get("filenames") or []]
            return self._media("images", files, value.get("captions") or [], value, step, wall, files_dir)
        if kind in ("audio", "videos"):
            entries = value.get(kind) or []
            return self._media(KINDS[kind], entries, value.get("captions") or [], {}, step, wall, files_dir)
        if kind == "table-file":
            return "text", self._table(value, step, wall, files_dir)
        self.report.dropped("tensors", f"W&B value type {kind!r} has no TensorBoard kind")
        return "tensors", []

    def _read_media(self, kind: str, files_dir: str, rel: Any) -> bytes | None:
        if not isinstance(rel, str) or not rel:
            self.report.dropped(kind, "media value without a file path")
            return None
        full = os.path.join(files_dir, *rel.split("/"))
        try:
            with open(full, "rb") as f:
                return f.read()
        except OSError:
            self.report.dropped(kind, f"missing media file {rel}")
            return None

    def _media(self, kind: str, entries: list[Any], captions: list[Any], common: dict[str, Any],
               step: int, wall: float, files_dir: str) -> tuple[str, list[Any]]:
        out = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                self.report.dropped(kind, "malformed W&B media value")
                continue
            rel = entry.get("path")
            data = self._read_media(kind, files_dir, rel)
            if data is None:
                continue
            self.consumed.add(rel)
            fmt = entry.get("format") or common.get("format") or os.path.splitext(rel)[1][1:].lower()
            caption = captions[index] if index < len(captions) and isinstance(captions[index], str) else None
            caption = caption or None
            item = Media(step, wall, data, fmt, index=index, caption=caption,
                         width=_int_or_none(entry.get("width", common.get("width"))),
                         height=_int_or_none(entry.get("height", common.get("height"))))
            if kind == "audio" and fmt == "wav":
                item.sample_rate = _wav_rate(data)
            out.append(item)
        return kind, out

    def _table(self, value: dict[str, Any], step: int, wall: float, files_dir: str) -> list[Text]:
        raw = self._read_media("text", files_dir, value.get("path"))
        if raw is None:
            return []
        try:
            table = json.loads(raw)
            text = markdown_table(table["columns"], table["data"])
        except (ValueError, KeyError, TypeError):
            self.report.dropped("text", f"unreadable W&B table {value.get('path')}")
            return []
        self.report.transformed("text", "W&B table rendered as a markdown table (its JSON carried as a file)")
        return [Text(step, wall, text)]


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _histogram(value: dict[str, Any], step: int, wall: float) -> Histogram | None:
    counts = value.get("values")
    bins = value.get("bins")
    packed = value.get("packedBins")
    try:
        if bins is None and isinstance(packed, dict):
            bins = packed["min"] + packed["size"] * np.arange(int(packed["count"]) + 1)
        return Histogram(step, wall, np.asarray(bins, np.float64), np.asarray(counts, np.float64))
    except (TypeError, ValueError, KeyError):
        return None


def _wav_rate(data: bytes) -> float | None:
    try:
        with wave.open(io.BytesIO(data)) as w:
            return float(w.getframerate())
    except (wave.Error, EOFError):
        return None


def _cell(value: Any) -> str:
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        text = repr(value)
    else:
        text = json.dumps(value, sort_keys=True)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", "<br>").replace("\n", "<br>")


def markdown_table(columns: list[Any], rows: list[list[Any]]) -> str:
    """A W&B table as a GitHub-style markdown table (TensorBoard's text plugin renders these)."""
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
