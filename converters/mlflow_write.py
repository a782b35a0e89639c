"""Writing one run to MLflow (:class:`MlflowRun`); the layout is in :mod:`tbx.converters.mlflow`'s doc."""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import tempfile
from typing import TYPE_CHECKING, Any

import numpy as np

from tbx.converters.base import DestRun
from tbx.converters.mlflow_client import MlflowError
from tbx.converters.mlflow_names import (GROUP_TAG, JOB_TYPE_TAG, KEY_MAX, LABEL_PREFIX, MANIFEST, MANIFEST_FORMAT,
                                         NOTE_TAG, RESERVED_TAG_PREFIXES, SOURCE_KEY_TAG, SOURCE_TAG, _media_paths,
                                         _series_path, assign_keys, mlflow_key, safe_path)
from tbx.converters.mlflow_read import DBL_MAX, _canonical_order, _encode_item, _load_manifest, _RunReader
from tbx.converters.model import MEDIA_KINDS, RunData, Scalars, flatten, param_text, same_float
from tbx.converters.report import RunReport

if TYPE_CHECKING:
    from tbx.converters.mlflow import MlflowDestination

PARAM_MAX = 6000
TAG_MAX = 5000  # MLflow documents 5000 (8000 measured)
METRICS_PER_BATCH = 1000
PARAMS_TAGS_PER_BATCH = 100
BATCH_BYTES = 900_000  # MLflow refuses log-batch requests over 1 MB of JSON
AGGREGATE_KINDS = ("histograms", "text", "tensors")


def _expected_scalars(s: Scalars, report: RunReport) -> Scalars:
    """One tag's points as MLflow will hand them back (see :mod:`tbx.converters.mlflow`)."""
    values = s.values.copy()
    genuine = np.abs(values) == DBL_MAX
    values[genuine] = np.copysign(np.inf, values[genuine])
    report.transformed("scalars", "±DBL_MAX reads back as ±inf (MLflow stores ±inf as ±DBL_MAX)",
                       int(genuine.sum()))
    report.transformed("scalars", "±inf stored as ±DBL_MAX, restored on import",
                       int(np.isinf(s.values).sum()))
    bad_time = ~np.isfinite(s.wall_times) | (s.wall_times < 0)
    ms = np.where(bad_time, 0.0, np.round(np.where(bad_time, 0.0, s.wall_times) * 1000)).astype(np.int64)
    report.transformed("scalars", "wall time negative or not finite: stored as 0", int(bad_time.sum()))
    order = _canonical_order(ms, s.steps, values)
    if len(order) > 1:
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        late = rank[1:] < np.maximum.accumulate(rank)[:-1]  # sorts before a point logged earlier
        report.transformed("scalars", "logged out of time order: MLflow keeps it at its time",
                           int(late.sum()))
    ms, steps, values = ms[order], s.steps[order], values[order]
    dup = np.zeros(len(ms), dtype=bool)
    if len(ms) > 1:
        dup[1:] = (ms[1:] == ms[:-1]) & (steps[1:] == steps[:-1]) & same_float(values[1:], values[:-1])
    report.transformed("scalars", "exact repeat of a point (same step, ms and value): stored once",
                       int(dup.sum()))
    keep = ~dup
    return Scalars(steps[keep], ms[keep] / 1000.0, values[keep])


def _to_ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(round(seconds * 1000))


class MlflowRun(DestRun):
    """One run being written; the layout is in :mod:`tbx.converters.mlflow`'s doc."""

    def __init__(self, dest: MlflowDestination, run: RunData, state: dict[str, Any] | None) -> None:
        self.dest = dest
        self.tracker = dest.tracker
        self.client = dest.tracker.client
        self.key = run.key
        self.run_id = self._open(run, state)
        self.ident = self.run_id
        self.state = {"run_id": self.run_id}
        self._manifest = self._load_manifest() if self.existing or state else {}
        self._uploaded_manifest = json.dumps(self._manifest, sort_keys=True) if self._manifest else ""
        self._keys: dict[str, dict[str, str]] = {}
        self._long: dict[str, dict[str, str]] = {"params": {}, "tags": {}}
        self._exp: RunData | None = None
        self._paths: dict[tuple[str, str], list[str]] = {}
        self._present: dict[tuple[str, str], int] = {}
        for kind, per_tag in self._manifest.get("media", {}).items():
            for tag, entries in per_tag.items():
                self._present[(kind, tag)] = len(entries)
        for kind, per_tag in self._manifest.get("series", {}).items():
            for tag, where in per_tag.items():
                self._present[(kind, tag)] = where["count"]
        self._files: dict[str, str] = dict(self._manifest.get("files", {}))
        self._dirty: set[tuple[str, str]] = set()
        self._metrics: list[Any] = []
        self._metric_bytes = 0
        self._staging: str | None = None

    # -- opening -----------------------------------------------------------------------------
    def _open(self, run: RunData, state: dict[str, Any] | None) -> str:
        if state and state.get("run_id"):
            found = self.tracker.call(f"run {state['run_id']}", self._get_run, state["run_id"])
            if found is None or found.info.lifecycle_stage == "deleted":
                raise MlflowError(f"MLflow run {state['run_id']} that an earlier sync wrote for {run.key!r} is "
                                  f"gone from {self.tracker.uri}; remove the run's entry from the sync ledger "
                                  "(or use a new ledger) to write it again")
            return state["run_id"]
        exp_id = self.dest.experiment_id()

        def find_or_create() -> str:
            found = self._find(exp_id)
            if found is not None:
                self.existing = True
                return found
            tags = {SOURCE_KEY_TAG: run.key}
            if self.dest.source_spec:
                tags[SOURCE_TAG] = self.dest.source_spec
            created = self.client.create_run(exp_id, start_time=_to_ms(run.start_time), tags=tags,
                                             run_name=run.name or None)
            return created.info.run_id

        # Searching first on every try keeps a retried create from making a second run.
        return self.tracker.call(f"creating the run for {run.key!r}", find_or_create)

    def _get_run(self, run_id: str) -> Any:
        from mlflow.exceptions import RestException

        try:
            return self.client.get_run(run_id)
        except RestException as exc:
            if exc.get_http_status_code() == 404:
                return None
            raise

    def _find(self, exp_id: str) -> str | None:
        # MLflow's filter strings cannot escape quotes: LIKE with _ for ' finds a superset.
        op = "LIKE" if "'" in self.key else "="
        query = f"tags.`{SOURCE_KEY_TAG}` {op} '{self.key.replace(chr(39), '_')}'"
        token = None
        while True:
            page = self.client.search_runs([exp_id], filter_string=query, max_results=1000, page_token=token)
            for r in page:
                tags = r.data.tags
                if tags.get(SOURCE_KEY_TAG) == self.key and tags.get(SOURCE_TAG, "") == self.dest.source_spec:
                    return r.info.run_id
            token = page.token
            if not token:
                return None

    def _load_manifest(self) -> dict[str, Any]:
        tmp = tempfile.mkdtemp(prefix="tbx-mlflow-manifest-")
        try:
            listed = self.tracker.call(f"listing artifacts of run {self.run_id}", self.client.list_artifacts,
                                       self.run_id, "tbx")
            if not any(f.path == MANIFEST for f in listed):
                return {}
            local = self.tracker.call(f"downloading {MANIFEST} of run {self.run_id}",
                                      self.client.download_artifacts, self.run_id, MANIFEST, tmp)
            return _load_manifest(local)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- what the destination will hold -----------------------------------------------------------
    def expected(self, run: RunData, report: RunReport) -> RunData:
        old = self._manifest.get("keys", {})
        exp = RunData(key=run.key, name=run.name, project=self.dest.experiment, notes=run.notes,
                      group=run.group, job_type=run.job_type,
                      start_time=None if run.start_time is None else _to_ms(run.start_time) / 1000.0,
                      end_time=None if run.end_time is None else _to_ms(run.end_time) / 1000.0,
                      status=run.status or "FINISHED")

        self._keys["scalars"] = assign_keys([t for t, s in run.scalars.items() if len(s)], old.get("scalars"))
        for tag, s in run.scalars.items():
            if not len(s):
                continue
            exp.scalars[tag] = _expected_scalars(s, report)
            if self._keys["scalars"][tag] != tag:
                report.transformed("scalars", "key changed to fit MLflow's rules", len(exp.scalars[tag]))

        flat = flatten(run.params)
        report.transformed("params", "nested config flattened to dotted keys (a.b)",
                           sum(1 for k in flat if k not in run.params))
        exp.params = {k: param_text(v) for k, v in flat.items()}
        exp.summary = dict(run.summary)
        self._keys["params"] = assign_keys(list(exp.params), old.get("params"))
        report.transformed("params", "key changed to fit MLflow's rules",
                           sum(k != v for k, v in self._keys["params"].items()))
        report.transformed("params", f"value over {PARAM_MAX} characters: cut in MLflow, full text in {MANIFEST}",
                           sum(len(v) > PARAM_MAX for v in exp.params.values()))

        for k, v in run.tags.items():
            if k.startswith(RESERVED_TAG_PREFIXES) or mlflow_key(k).startswith(RESERVED_TAG_PREFIXES):
                report.dropped("tags", "name reserved for MLflow's and tbx's own tags (mlflow.*, tbx.*)")
            else:
                exp.tags[k] = str(v)
        self._keys["tags"] = assign_keys(list(exp.tags), old.get("tags"))
        report.transformed("tags", "key changed to fit MLflow's rules",
                           sum(k != v for k, v in self._keys["tags"].items()))
        label_keys = assign_keys(sorted(set(run.labels)), limit=KEY_MAX - len(LABEL_PREFIX))
        self._keys["labels"] = {label: LABEL_PREFIX + key for label, key in label_keys.items()}
        exp.labels = [label for label, _ in sorted(self._keys["labels"].items(), key=lambda kv: kv[1])]
        report.transformed("tags", f"value over {TAG_MAX} characters: cut in MLflow, full text in {MANIFEST}",
                           sum(len(v) > TAG_MAX for v in self._mlflow_tags(exp).values()))

        for kind in ("histograms", *MEDIA_KINDS, "text", "tensors"):
            for tag, items in run.series.get(kind, {}).items():
                if items:
                    exp.series[kind][tag] = list(items)
        exp.files = list(run.files)
        return exp

    def _mlflow_tags(self, exp: RunData) -> dict[str, str]:
        """Every tag this run sets in MLflow, by MLflow key, full values."""
        tags = {self._keys["tags"][k]: v for k, v in exp.tags.items()}
        tags.update({key: label for label, key in self._keys["labels"].items()})
        for name, value in ((NOTE_TAG, exp.notes), (GROUP_TAG, exp.group), (JOB_TYPE_TAG, exp.job_type)):
            if value is not None:
                tags[name] = value
        return tags

    # -- writing ------------------------------------------------------------------------------------
    def write_meta(self, run: RunData) -> None:
        self._exp = run
        params = {self._keys["params"][k]: v for k, v in run.params.items()}
        tags = self._mlflow_tags(run)
        self._long = {"params": {k: v for k, v in params.items() if len(v) > PARAM_MAX},
                      "tags": {k: v for k, v in tags.items() if len(v) > TAG_MAX}}
        self._log_params_tags(params, tags)
        for kind in MEDIA_KINDS:
            for tag, items in run.series.get(kind, {}).items():
                self._paths[(kind, tag)] = _media_paths(kind, tag, items)

    def _log_params_tags(self, params: dict[str, str], tags: dict[str, str]) -> None:
        from mlflow.entities import Param, RunTag

        entries = [Param(k, v[:PARAM_MAX]) for k, v in sorted(params.items())]
        entries += [RunTag(k, v[:TAG_MAX]) for k, v in sorted(tags.items())]
        batch: list[Any] = []
        size = 0
        for entry in entries:
            entry_size = len(json.dumps(entry.key)) + len(json.dumps(entry.value)) + 32
            if batch and (len(batch) == PARAMS_TAGS_PER_BATCH or size + entry_size > BATCH_BYTES
                          or type(entry) is not type(batch[0])):
                self._send_batch(batch)
                batch, size = [], 0
            batch.append(entry)
            size += entry_size
        if batch:
            self._send_batch(batch)

    def _send_batch(self, entries: list[Any]) -> None:
        from mlflow.entities import Metric, Param

        metrics = [e for e in entries if isinstance(e, Metric)]
        params = [e for e in entries if isinstance(e, Param)]
        tags = [e for e in entries if not isinstance(e, (Metric, Param))]
        self.tracker.call(f"logging to run {self.run_id}", self.client.log_batch, self.run_id,
                          metrics=metrics, params=params, tags=tags)

    def write(self, kind: str, tag: str, items: Any) -> None:
        if kind == "scalars":
            self._write_scalars(tag, items)
        elif kind == "files":
            for f in items:
                artifact = self._files.get(f.path) or "files/" + safe_path(f.path, keep_ext=True)
                self._stage(artifact, f.data)
                self._files[f.path] = artifact
        elif len(items):
            start, end = self._span(kind, tag, items)
            if kind in MEDIA_KINDS:
                paths = self._paths[(kind, tag)]
                for path, item in zip(paths[start:end], items):
                    self._stage(path, item.data)
            self._present[(kind, tag)] = max(self._present.get((kind, tag), 0), end)
            self._dirty.add((kind, tag))

    def _write_scalars(self, tag: str, s: Scalars) -> None:
        from mlflow.entities import Metric

        key = self._keys["scalars"][tag]
        ms = np.round(s.wall_times * 1000).astype(np.int64)
        entry_size = len(json.dumps(key)) + 100
        for step, t, value in zip(s.steps.tolist(), ms.tolist(), s.values.tolist()):
            if len(self._metrics) == METRICS_PER_BATCH or self._metric_bytes + entry_size > BATCH_BYTES:
                self._flush_metrics()
            self._metrics.append(Metric(key, value, t, step))
            self._metric_bytes += entry_size

    def _flush_metrics(self) -> None:
        if self._metrics:
            self._send_batch(self._metrics)
        self._metrics, self._metric_bytes = [], 0

    def _span(self, kind: str, tag: str, items: list[Any]) -> tuple[int, int]:
        """Where ``items`` (a slice of the run given to write_meta) sit in their tag."""
        assert self._exp is not None, "write_meta() comes before write()"
        full = self._exp.series[kind][tag]
        start = self._present.get((kind, tag), 0)
        if not (start < len(full) and full[start] is items[0]):
            positions = {id(item): i for i, item in reversed(list(enumerate(full)))}
            start = positions.get(id(items[0]), start)
        return start, start + len(items)

    def _stage(self, path: str, data: bytes) -> None:
        if self._staging is None:
            self._staging = tempfile.mkdtemp(prefix="tbx-mlflow-")
        local = os.path.join(self._staging, *path.split("/"))
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "wb") as f:
            f.write(data)

    def commit(self) -> None:
        self._flush_metrics()
        if self._exp is None:
            return
        for kind, tag in sorted(self._dirty):
            if kind in AGGREGATE_KINDS:
                items = self._exp.series[kind][tag][:self._present[(kind, tag)]]
                data = json.dumps([_encode_item(kind, item) for item in items]).encode("utf-8")
                self._stage(_series_path(kind, tag), data)
        if self._staging is not None:
            self.tracker.call(f"uploading artifacts of run {self.run_id}", self.client.log_artifacts,
                              self.run_id, self._staging)
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
        self._dirty.clear()
        manifest = self._build_manifest()
        text = json.dumps(manifest, sort_keys=True, default=str)
        if text != self._uploaded_manifest:
            # Last, so that everything the manifest names is already there.
            folder = tempfile.mkdtemp(prefix="tbx-mlflow-manifest-")
            try:
                local = os.path.join(folder, posixpath.basename(MANIFEST))
                with open(local, "w", encoding="utf-8") as f:
                    f.write(text)
                self.tracker.call(f"uploading {MANIFEST} of run {self.run_id}", self.client.log_artifact,
                                  self.run_id, local, posixpath.dirname(MANIFEST))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            self._uploaded_manifest = text

    def _build_manifest(self) -> dict[str, Any]:
        assert self._exp is not None
        media: dict[str, dict[str, list[dict[str, Any]]]] = {}
        series: dict[str, dict[str, dict[str, Any]]] = {}
        for (kind, tag), count in sorted(self._present.items()):
            items = self._exp.series.get(kind, {}).get(tag, [])[:count]
            if not items:
                continue
            if kind in MEDIA_KINDS:
                media.setdefault(kind, {})[tag] = [
                    {"step": m.step, "wall_time": m.wall_time, "index": m.index, "fmt": m.fmt, "width": m.width,
                     "height": m.height, "sample_rate": m.sample_rate, "caption": m.caption, "path": path}
                    for m, path in zip(items, self._paths[(kind, tag)])]
            else:
                series.setdefault(kind, {})[tag] = {"path": _series_path(kind, tag), "count": len(items)}
        keys = {kind: {name: key for name, key in self._keys.get(kind, {}).items() if name != key}
                for kind in ("scalars", "params", "tags")}
        return {"format": MANIFEST_FORMAT, "keys": keys, "long": self._long, "media": media,
                "series": series, "files": self._files, "summary": self._exp.summary}

    def finish(self, run: RunData) -> None:
        status = run.status or "FINISHED"
        end = _to_ms(run.end_time)
        if end is None or status == "RUNNING":
            self.tracker.call(f"status of run {self.run_id}", self.client.update_run, self.run_id, status=status)
        else:
            self.tracker.call(f"status of run {self.run_id}", self.client.set_terminated, self.run_id,
                              status=status, end_time=end)

    def read_back(self) -> RunData:
        run = self.tracker.call(f"run {self.run_id}", self.client.get_run, self.run_id)
        return _RunReader(self.tracker, run, None).read(self.key, self.dest.experiment)

    def close(self) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
