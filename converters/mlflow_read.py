"""Reading one MLflow run (params, tags, metric histories, artifacts) into the neutral model.

Also the JSON form of the series items (histograms, text, tensors) that
:mod:`tbx.converters.mlflow_write` stores and this module reads back.
"""

from __future__ import annotations

import base64
import io
import json
import os
import posixpath
import re
import shutil
import sys
import tempfile
from collections import Counter
from typing import Any

import numpy as np

from tbx.converters.mlflow_client import _Tracker
from tbx.converters.mlflow_names import (GROUP_TAG, JOB_TYPE_TAG, LABEL_PREFIX, MANIFEST, MANIFEST_FORMAT,
                                         NOTE_TAG, RESERVED_TAG_PREFIXES, SOURCE_KEY_TAG)
from tbx.converters.model import File, Histogram, Media, RawValue, RunData, Scalars, Text
from tbx.converters.report import RunReport

DBL_MAX = sys.float_info.max

IMAGE_EXTS = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "gif": "gif"}
# images/<key>+step+<step>+timestamp+<ms>+<uuid>[+compressed].<ext>; older MLflow used %.
LOG_IMAGE_PATH = re.compile(r"images/(?P<key>[^/]+?)[+%]step[+%](?P<step>-?\d+)[+%]timestamp[+%](?P<ms>\d+)"
                            r"[+%](?P<uuid>[0-9A-Za-z-]+)(?P<preview>[+%]compressed)?\.(?P<ext>\w+)")


def _canonical_order(ms: np.ndarray, steps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Indices in MLflow's history order: timestamp, step, stored value (NaN as 0), NaN last; stable."""
    isnan = np.isnan(values)
    stored = np.where(isnan, 0.0, np.clip(values, -DBL_MAX, DBL_MAX))
    return np.lexsort((isnan, stored, steps, ms))


def _read_history(metrics: list[Any], restore_inf: bool) -> Scalars:
    ms = np.array([m.timestamp for m in metrics], dtype=np.int64)
    steps = np.array([m.step for m in metrics], dtype=np.int64)
    values = np.array([m.value for m in metrics], dtype=np.float64)
    if restore_inf:
        at_max = np.abs(values) == DBL_MAX
        values[at_max] = np.copysign(np.inf, values[at_max])
    order = _canonical_order(ms, steps, values)
    return Scalars(steps[order], ms[order] / 1000.0, values[order])


def _restore_long(stored: dict[str, str], full: dict[str, str]) -> dict[str, str]:
    """Cut values back to their full text, unless they were changed since tbx wrote them."""
    return {k: full[k] if k in full and full[k].startswith(v) else v for k, v in stored.items()}


def _media_from_bytes(data: bytes, step: int, wall_time: float, fmt: str, index: int) -> Media:
    width = height = None
    try:
        from PIL import Image
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except Exception:  # a broken image is still carried as bytes
        pass
    return Media(step=step, wall_time=wall_time, data=data, fmt=fmt, index=index, width=width, height=height)


class _RunReader:
    """Reads one MLflow run (params, tags, histories, artifacts) into a RunData."""

    def __init__(self, tracker: _Tracker, run: Any, report: RunReport | None) -> None:
        self.tracker = tracker
        self.run = run
        self.run_id = run.info.run_id
        self.report = report
        self.by_tbx = SOURCE_KEY_TAG in run.data.tags

    def read(self, key: str, project: str | None) -> RunData:
        info, data = self.run.info, self.run.data
        tmp = tempfile.mkdtemp(prefix="tbx-mlflow-read-")
        try:
            tops = self._download_tops(tmp)
            path = os.path.join(tmp, *MANIFEST.split("/"))
            manifest = _load_manifest(path) if self.by_tbx and os.path.exists(path) else {}
            keys = manifest.get("keys", {})
            long = manifest.get("long", {})
            params = _restore_long(dict(data.params), long.get("params", {}))
            tags = _restore_long(dict(data.tags), long.get("tags", {}))
            pnames = {v: k for k, v in keys.get("params", {}).items()}
            tnames = {v: k for k, v in keys.get("tags", {}).items()}
            mnames = {v: k for k, v in keys.get("scalars", {}).items()}
            out = RunData(
                key=key, name=info.run_name or self.run_id, project=project,
                params={pnames.get(k, k): v for k, v in params.items()},
                tags={tnames.get(k, k): v for k, v in tags.items() if not k.startswith(RESERVED_TAG_PREFIXES)},
                labels=[tags[k] for k in sorted(tags) if k.startswith(LABEL_PREFIX)],
                notes=tags.get(NOTE_TAG), group=tags.get(GROUP_TAG), job_type=tags.get(JOB_TYPE_TAG),
                start_time=None if info.start_time is None else info.start_time / 1000.0,
                end_time=None if info.end_time is None else info.end_time / 1000.0,
                status=info.status)
            self._read_metrics(out, mnames)
            # the W&B-style summary: as written by tbx, else MLflow's latest value of each metric
            out.summary = (dict(manifest["summary"]) if isinstance(manifest.get("summary"), dict)
                           else {mnames.get(k, k): v for k, v in data.metrics.items()})
            if manifest:
                self._read_manifest_items(out, manifest, tmp)
            self._read_other_artifacts(out, tops, manifest, tmp)
            return out
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _download_tops(self, tmp: str) -> list[str]:
        """Download every top-level artifact entry into ``tmp``; their names."""
        client = self.tracker.client
        tops = [f.path for f in self.tracker.call(f"listing artifacts of run {self.run_id}",
                                                  client.list_artifacts, self.run_id)]
        for top in tops:
            self.tracker.call(f"downloading artifact {top!r} of run {self.run_id}",
                              client.download_artifacts, self.run_id, top, tmp)
        return tops

    def _read_metrics(self, out: RunData, names: dict[str, str]) -> None:
        client = self.tracker.client
        at_max = 0
        for mkey in sorted(self.run.data.metrics):
            history = self.tracker.call(f"history of metric {mkey!r} of run {self.run_id}",
                                        client.get_metric_history, self.run_id, mkey)
            s = _read_history(history, restore_inf=self.by_tbx)
            at_max += int((np.abs(s.values) == DBL_MAX).sum())
            tag = names.get(mkey, mkey)
            out.scalars[tag] = s
        if at_max and self.report is not None:
            self.report.problem(f"{at_max} metric points are ±1.797e308, which is how MLflow stores ±inf; "
                                "kept as stored")

    @staticmethod
    def _read_manifest_items(out: RunData, manifest: dict[str, Any], tmp: str) -> None:
        def load(path: str) -> bytes:
            return _read(tmp, path)

        for kind, per_tag in manifest.get("media", {}).items():
            for tag, entries in per_tag.items():
                out.series.setdefault(kind, {})[tag] = [
                    Media(step=e["step"], wall_time=e["wall_time"], data=load(e["path"]), fmt=e["fmt"],
                          index=e["index"], width=e.get("width"), height=e.get("height"),
                          sample_rate=e.get("sample_rate"), caption=e.get("caption"))
                    for e in entries]
        for kind, per_tag in manifest.get("series", {}).items():
            for tag, where in per_tag.items():
                items = json.loads(load(where["path"]))[:where["count"]]
                out.series.setdefault(kind, {})[tag] = [_decode_item(kind, d) for d in items]
        for path, artifact in sorted(manifest.get("files", {}).items()):
            out.files.append(File(path, load(artifact)))

    def _read_other_artifacts(self, out: RunData, tops: list[str], manifest: dict[str, Any], tmp: str) -> None:
        """Artifacts outside tbx's layout: images logged by MLflow, other images, files."""
        skip_tops = {"tbx"} if self.by_tbx else set()
        known = set(manifest.get("files", {}).values())
        logged: dict[str, list[tuple[int, int, str, str, str]]] = {}  # key -> (ms, step, uuid, path, ext)
        previews = 0
        for top in sorted(tops):
            if top in skip_tops:
                continue
            for path in _walk(tmp, top):
                if path in known:
                    continue
                found = LOG_IMAGE_PATH.fullmatch(path)
                ext = posixpath.splitext(path)[1][1:].lower()
                if found and found.group("preview"):
                    previews += 1
                elif found:
                    key = found.group("key").replace("~", "/").replace("#", "/")
                    logged.setdefault(key, []).append((int(found.group("ms")), int(found.group("step")),
                                                       found.group("uuid"), path, ext))
                elif ext in IMAGE_EXTS:
                    tag = posixpath.splitext(path)[0]
                    index = len(out.series["images"].get(tag, []))
                    out.add("images", tag, _media_from_bytes(_read(tmp, path), 0, out.start_time or 0.0,
                                                             IMAGE_EXTS[ext], index))
                else:
                    out.files.append(File(path, _read(tmp, path)))
        for key in sorted(logged):
            per_step: Counter = Counter()
            for ms, step, _uuid, path, ext in sorted(logged[key]):
                out.add("images", key, _media_from_bytes(_read(tmp, path), step, ms / 1000.0,
                                                         IMAGE_EXTS.get(ext, ext), per_step[step]))
                per_step[step] += 1
        if previews and self.report is not None:
            self.report.transformed("images", "MLflow's compressed preview not imported (the full image is)",
                                    previews)


def _read(root: str, path: str) -> bytes:
    with open(os.path.join(root, *path.split("/")), "rb") as f:
        return f.read()


def _load_manifest(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    return manifest if manifest.get("format") == MANIFEST_FORMAT else {}


def _walk(root: str, top: str) -> list[str]:
    """Artifact paths (``/``-separated) of the files under ``root/top``."""
    base = os.path.join(root, top)
    if os.path.isfile(base):
        return [top]
    found = []
    for dirpath, _dirs, files in os.walk(base):
        for name in files:
            found.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return sorted(found)


def _encode_item(kind: str, item: Any) -> dict[str, Any]:
    if kind == "histograms":
        return {"step": item.step, "wall_time": item.wall_time, "edges": item.edges.tolist(),
                "counts": item.counts.tolist()}
    if kind == "text":
        return {"step": item.step, "wall_time": item.wall_time, "text": item.text}
    return {"step": item.step, "wall_time": item.wall_time, "plugin": item.plugin,
            "value": base64.b64encode(item.value).decode("ascii")}


def _decode_item(kind: str, d: dict[str, Any]) -> Any:
    if kind == "histograms":
        return Histogram(d["step"], d["wall_time"], np.array(d["edges"], dtype=np.float64),
                         np.array(d["counts"], dtype=np.float64))
    if kind == "text":
        return Text(d["step"], d["wall_time"], d["text"])
    return RawValue(d["step"], d["wall_time"], d["plugin"], base64.b64decode(d["value"]))
