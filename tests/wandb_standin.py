"""A STAND-IN for the W&B cloud: a local HTTP server, not W&B (test helper).

No real W&B server runs here and the cloud cannot be reached, so the tests
of :mod:`tbx.converters.wandb_cloud` point the *real* ``wandb.Api()`` of
wandb 0.31.0 at this fake. The SDK's public API sends its GraphQL through
the wandb-core sidecar, so the whole real client path runs: the Python
``Api``/``Runs``/``Run``/``File``/``HistoryScan`` classes, wandb-core's
GraphQL client and retries, its parquet history reader and its file
downloads. Only the server is fake.

The fake answers the few operations those calls make, with the response
shapes recorded from the queries wandb 0.31.0 sends (the ``Runs``,
``Run``, ``RunFiles`` and ``RunHistoryKeys`` queries of
``wandb/apis/public``; ``Viewer``, ``GetDefaultEntity``,
``RunParquetHistory`` and ``HistoryPage`` of wandb-core) and W&B's
documented field meanings:

- ``Runs``: paging by cursor, ``runCount``, the documented MongoDB-style
  ``filters`` (equality, ``$eq $ne $in $nin $regex $exists``, ``$and``,
  ``$or``) on ``state displayName name group jobType tags``,
  ``config.KEY`` and ``summary_metrics.KEY``; the lazy listing leaves out
  config and summary as the real server does for ``LightweightRunFragment``;
- history: the first ``exported`` rows of a run are served as a parquet
  export file (``parquetUrls``), the rest as live rows (``liveData`` holds
  their ``_step``; ``history(minStep, maxStep)`` returns them as JSON
  strings, NaN/Infinity written as JSON literals as W&B's history does);
- files: ``RunFiles`` with names, paging and ``sizeBytes``/``md5``, and the
  file bytes on ``GET /files/...``;
- authentication: every GraphQL request must carry ``api:<key>`` basic
  auth, else HTTP 401 as the real server answers;
- faults: :meth:`StandInWandbServer.fail` makes the next requests of an
  operation answer an HTTP error (429 with ``RateLimit-Reset``, 5xx, ...),
  or stall, to exercise retries.

An operation the fake does not know is answered with a GraphQL error naming
it, so a client change shows up as a test failure, not as silent data.
"""

from __future__ import annotations

import base64
import dataclasses
import glob
import hashlib
import io
import json
import os
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "0123456789abcdef0123456789abcdef01234567"  # a well-formed, fake 40-hex W&B key


@dataclasses.dataclass
class StandInRun:
    """One run held by the stand-in; ``rows`` are history rows as wandb logs them."""

    id: str
    name: str
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: how many leading rows are in the parquet export (the rest are live)
    exported: int = 0
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)
    tags: list[str] = dataclasses.field(default_factory=list)
    notes: str | None = None
    group: str | None = None
    job_type: str | None = None
    state: str = "finished"
    created_at: str = "2024-05-01T10:00:00"
    heartbeat_at: str = "2024-05-01T10:30:00"

    def node(self, project_id: str, full: bool) -> dict[str, Any]:
        """The run as a GraphQL ``Run`` node (``full``: the ``RunFragment`` fields too)."""
        out: dict[str, Any] = {
            "projectId": project_id,
            "id": base64.b64encode(f"Run:v1:{self.id}".encode()).decode(),
            "name": self.id, "displayName": self.name, "tags": list(self.tags), "sweepName": None,
            "state": self.state, "group": self.group, "jobType": self.job_type, "commit": None,
            "readOnly": False, "createdAt": self.created_at, "heartbeatAt": self.heartbeat_at,
            "description": self.notes, "notes": self.notes, "historyLineCount": len(self.rows),
            "user": {"name": "stand-in", "username": "stand-in"},
        }
        if full:
            config = {k: {"value": v, "desc": None} for k, v in self.config.items()}
            config["_wandb"] = {"value": {"cli_version": "0.31.0", "t": {"1": [1]}}, "desc": None}
            out.update(config=json.dumps(config), systemMetrics="{}",
                       summaryMetrics=json.dumps(dict(self.summary, _wandb={"runtime": 12})),
                       historyKeys=self.history_keys())
        return out

    def history_keys(self) -> dict[str, Any]:
        keys = sorted({k for r in self.rows for k in r})
        return {"lastStep": max((r["_step"] for r in self.rows), default=-1),
                "keys": {k: {"typeCounts": [{"type": "number", "count": 1}]} for k in keys}}

    def live_rows(self) -> list[dict[str, Any]]:
        return self.rows[self.exported:]


# --- filters (the documented subset of the MongoDB query language) ------------

_FIELDS = {"state": "state", "displayName": "name", "display_name": "name", "name": "id",
           "group": "group", "jobType": "job_type", "tags": "tags"}


def _field(run: StandInRun, key: str) -> tuple[bool, Any]:
    if key.startswith("config."):
        sub = key[len("config."):].removesuffix(".value")
        return sub in run.config, run.config.get(sub)
    if key.startswith("summary_metrics."):
        sub = key[len("summary_metrics."):]
        return sub in run.summary, run.summary.get(sub)
    if key in _FIELDS:
        value = getattr(run, _FIELDS[key])
        return value is not None, value
    raise ValueError(f"the stand-in cannot filter on {key!r}")


def _test(value: Any, present: bool, cond: Any) -> bool:
    if not isinstance(cond, dict):
        cond = {"$eq": cond}
    for op, arg in cond.items():
        values = value if isinstance(value, list) else [value]
        if op == "$eq":
            ok = any(v == arg for v in values)
        elif op == "$ne":
            ok = all(v != arg for v in values)
        elif op == "$in":
            ok = any(v in arg for v in values)
        elif op == "$nin":
            ok = all(v not in arg for v in values)
        elif op == "$regex":
            ok = any(isinstance(v, str) and re.search(arg, v) for v in values)
        elif op == "$exists":
            ok = present == bool(arg)
        else:
            raise ValueError(f"the stand-in does not implement the filter operator {op!r}")
        if not ok:
            return False
    return True


def matches(run: StandInRun, filters: dict[str, Any]) -> bool:
    for key, cond in filters.items():
        if key == "$and":
            ok = all(matches(run, f) for f in cond)
        elif key == "$or":
            ok = any(matches(run, f) for f in cond)
        else:
            present, value = _field(run, key)
            ok = _test(value, present, cond)
        if not ok:
            return False
    return True


def _parquet(rows: list[dict[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


@dataclasses.dataclass
class _Fault:
    operation: str
    status: int
    times: int
    headers: dict[str, str]
    stall_s: float
    skip: int


class StandInWandbServer:
    """The stand-in W&B server on 127.0.0.1 (a free port); a context manager.

    ``requests`` records ``(operation, variables)`` of every GraphQL request.
    """

    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.entity = f"standin-{uuid.uuid4().hex[:8]}"
        self.projects: dict[str, list[StandInRun]] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.downloads: list[str] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="wandb-standin",
                                        daemon=True)
        self._thread.start()

    # --- the test-facing side ------------------------------------------------
    def add_run(self, project: str, run: StandInRun) -> StandInRun:
        self.projects.setdefault(project, []).append(run)
        return run

    def fail(self, operation: str, status: int = 503, times: int = 1, headers: dict[str, str] | None = None,
             stall_s: float = 0.0, skip: int = 0) -> None:
        """After ``skip`` more requests of ``operation``, the next ``times`` answer HTTP ``status``
        (after stalling ``stall_s`` seconds)."""
        with self._lock:
            self._faults.append(_Fault(operation, status, times, dict(headers or {}), stall_s, skip))

    def operations(self) -> list[str]:
        return [op for op, _ in self.requests]

    def api(self, timeout: int = 15, api_key: str | None = None) -> Any:
        """A real ``wandb.Api`` talking to this server."""
        import wandb

        return wandb.Api(overrides={"base_url": self.url}, api_key=api_key or self.api_key, timeout=timeout)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        # wandb-core keeps downloaded history exports in its cache, named by entity
        roots = [os.environ.get("WANDB_CACHE_DIR"),
                 os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                              "wandb", "runhistory")]
        for root in filter(None, roots):
            for path in glob.glob(os.path.join(glob.escape(root), f"{self.entity}_*.runhistory.parquet")):
                os.remove(path)

    def __enter__(self) -> StandInWandbServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- the W&B-facing side ---------------------------------------------------
    def _fault(self, operation: str) -> _Fault | None:
        with self._lock:
            for f in self._faults:
                if f.operation == operation and f.times > 0:
                    if f.skip > 0:
                        f.skip -= 1
                        return None
                    f.times -= 1
                    return f
        return None

    def _run(self, project: str, run_id: str) -> StandInRun | None:
        return next((r for r in self.projects.get(project, []) if r.id == run_id), None)

    def _file_url(self, project: str, run: StandInRun, name: str) -> str:
        return f"{self.url}/files/{self.entity}/{project}/{run.id}/{name}"

    def answer(self, operation: str, query: str, v: dict[str, Any]) -> dict[str, Any]:
        """The ``data`` of a GraphQL response (raises ValueError for a GraphQL error)."""
        if operation in ("Viewer", "GetDefaultEntity"):
            return {"viewer": {"id": "VXNlcjox", "entity": self.entity, "username": "stand-in", "email": None,
                               "flags": None, "teams": {"edges": []}}}
        if v.get("entity") not in (None, self.entity):
            return {"project": None}
        project = v.get("name") if operation == "GetProject" else v.get("project")
        if operation == "GetProject":
            if project not in self.projects:
                return {"project": None}
            return {"project": {"__typename": "Project", "id": "UHJvamVjdDox", "name": project,
                                "entityName": self.entity, "createdAt": "2024-05-01T09:00:00",
                                "isBenchmark": False, "user": None}}
        if project not in self.projects:
            return {"project": None}
        runs = self.projects[project]
        if operation == "Runs":
            chosen = [r for r in runs if matches(r, json.loads(v.get("filters") or "{}"))]
            order = v.get("order") or "+created_at"
            chosen.sort(key=lambda r: r.created_at, reverse=order.startswith("-"))
            start = int(v.get("cursor") or 0)
            page = chosen[start:start + int(v.get("perPage") or 50)]
            full = "LightweightRunFragment" not in query
            edges = [{"node": r.node("1", full), "cursor": str(start + i + 1)} for i, r in enumerate(page)]
            info = {"endCursor": edges[-1]["cursor"] if edges else None,
                    "hasNextPage": start + len(page) < len(chosen)}
            return {"project": {"internalId": "1", "runCount": len(chosen), "readOnly": False,
                                "runs": {"edges": edges, "pageInfo": info}}}
        run = self._run(project, v.get("name") or v.get("runName") or v.get("run") or "")
        if run is None:
            return {"project": {"run": None}}
        if operation == "Run":
            return {"project": {"run": run.node("1", "LightweightRunFragment" not in query)}}
        if operation == "RunHistoryKeys":
            return {"project": {"run": {"historyKeys": run.history_keys()}}}
        if operation == "RunParquetHistory":
            urls = [f"{self.url}/parquet/{self.entity}/{project}/{run.id}/0.parquet"] if run.exported else []
            return {"project": {"run": {"parquetHistory": {
                "parquetUrls": urls, "liveData": [{"_step": r["_step"]} for r in run.live_rows()]}}}}
        if operation == "HistoryPage":
            rows = [json.dumps(r) for r in run.live_rows() if v["minStep"] <= r["_step"] < v["maxStep"]]
            return {"project": {"run": {"history": rows[:v["pageSize"]]}}}
        if operation == "RunFiles":
            names = v.get("fileNames") or []
            files = [n for n in sorted(run.files) if not names or n in names]
            start = int(v.get("fileCursor") or 0)
            page = files[start:start + int(v.get("fileLimit") or 50)]
            edges = [{"node": {"id": f"file-{start + i}", "name": n, "url": self._file_url(project, run, n),
                               "directUrl": self._file_url(project, run, n), "sizeBytes": len(run.files[n]),
                               "mimetype": "application/octet-stream", "updatedAt": run.heartbeat_at,
                               "md5": base64.b64encode(hashlib.md5(run.files[n]).digest()).decode()},
                      "cursor": str(start + i + 1)} for i, n in enumerate(page)]
            return {"project": {"internalId": "1", "run": {
                "fileCount": len(files), "files": {"edges": edges, "pageInfo": {
                    "endCursor": edges[-1]["cursor"] if edges else None,
                    "hasNextPage": start + len(page) < len(files)}}}}}
        raise ValueError(f"the W&B stand-in does not implement the GraphQL operation {operation!r}")

    def _get(self, path: str) -> bytes | None:
        parts = path.split("/", 5)  # "", kind, entity, project, run, rest
        if len(parts) < 6 or parts[2] != self.entity:
            return None
        run = self._run(parts[3], parts[4])
        if run is None:
            return None
        if parts[1] == "parquet":
            return _parquet(run.rows[:run.exported])
        if parts[1] == "files":
            return run.files.get(parts[5])
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, val in (headers or {}).items():
                    self.send_header(k, val)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
                self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                fault = server._fault("GET")
                if fault:
                    time.sleep(fault.stall_s)
                    self._send(fault.status, b"stand-in fault", fault.headers)
                    return
                body = server._get(self.path.split("?", 1)[0])
                server.downloads.append(self.path)
                if body is None:
                    self._send(404, b"not found")
                else:
                    self._send(200, body, {"Content-Type": "application/octet-stream"})

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/sdk/otel/"):  # wandb-core's own telemetry
                    self._send(200, b"")
                    return
                if self.path != "/graphql":
                    self._send(404, b"not found")
                    return
                req = json.loads(body or b"{}")
                query = req.get("query", "")
                m = re.search(r"\b(?:query|mutation)\s+(\w+)", query)
                operation = req.get("operationName") or (m.group(1) if m else "")
                variables = req.get("variables") or {}
                server.requests.append((operation, variables))
                expected = "Basic " + base64.b64encode(f"api:{server.api_key}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self._json(401, {"errors": [{"message": "user is not logged in"}]})
                    return
                fault = server._fault(operation)
                if fault:
                    time.sleep(fault.stall_s)
                    self._json(fault.status, {"errors": [{"message": f"stand-in fault {fault.status}"}]},
                               fault.headers)
                    return
                try:
                    data = server.answer(operation, query, variables)
                except ValueError as exc:
                    self._json(200, {"data": None, "errors": [{"message": str(exc)}]})
                    return
                self._json(200, {"data": data})

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
