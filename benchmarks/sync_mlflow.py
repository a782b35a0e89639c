"""tbx sync against MLflow, side by side with what users do without it.

Starts a local ``mlflow server`` (sqlite store, local artifacts, 127.0.0.1,
MLflow's default worker count unless ``--server-workers``), builds a logdir
of RUNS runs × TAGS tags × STEPS steps with tbx, then measures in one
process run:

export (tfevents → MLflow)
  * ``tbx sync LOGDIR URI#exp --workers 2`` (a subprocess; the time includes
    reading the logdir, the writes, and reading every run back to verify it);
  * a straightforward user script: ``MlflowClient.log_metric`` once per
    point. At MLflow's per-request cost this would take hours for 1M points,
    so it runs on the first ``--per-point`` points and the rate is
    extrapolated (printed as such);
  * the server's ceiling: ``log_batch`` calls of 1,000 pre-built metrics in
    a tight loop over every point (runs created first, not timed).

import (MLflow → tfevents)
  * ``tbx sync URI#exp OUTDIR --workers 2``;
  * fetching the raw histories alone: ``get_metric_history`` for every run
    and key, nothing written.

Usage::

    python benchmarks/sync_mlflow.py                 # 100 × 10 × 1000 = 1M points (~15 min)
    python benchmarks/sync_mlflow.py --quick         # 10 × 10 × 1000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, root: str, workers: int | None) -> None:
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
        cmd = [mlflow, "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
               "--artifacts-destination", f"{root}/artifacts", "--host", "127.0.0.1", "--port", str(self.port)]
        if workers:
            cmd += ["--workers", str(workers)]
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        self.log = open(os.path.join(root, "server.log"), "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server did not start; see {root}/server.log")

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def make_logdir(path: str, runs: int, tags: int, steps: int) -> None:
    """The same logdir as the W&B benchmark's, a step's tags 1 ms apart."""
    from sync_wandb import make_logdir as write_logdir

    write_logdir(path, runs, tags, steps, 0.001)


def tbx_sync(src: str, dst: str, ledger: str, workers: int) -> tuple[float, dict]:
    report = ledger + ".report.json"
    cmd = [sys.executable, "-m", "tbx", "sync", src, dst, "--workers", str(workers), "--ledger", ledger,
           "--report", report, "-q"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    with open(report) as f:
        return dt, json.load(f)


def per_point(uri: str, logdir: str, limit: int) -> tuple[float, int]:
    from mlflow.tracking import MlflowClient

    from tbx import read_scalars

    client = MlflowClient(uri)
    exp = client.create_experiment(f"per-point-{time.time()}")
    cols = read_scalars(os.path.join(logdir, "run000"), as_frame=False)
    run = client.create_run(exp, run_name="run000")
    n = min(limit, len(cols["step"]))
    t0 = time.perf_counter()
    for i in range(n):
        client.log_metric(run.info.run_id, str(cols["tag"][i]), float(cols["value"][i]),
                          timestamp=int(cols["wall_time"][i] * 1000), step=int(cols["step"][i]))
    return time.perf_counter() - t0, n


def ceiling(uri: str, logdir: str) -> tuple[float, int]:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from tbx import read_scalars

    client = MlflowClient(uri)
    exp = client.create_experiment(f"ceiling-{time.time()}")
    batches = []
    for run in sorted(os.listdir(logdir)):
        cols = read_scalars(os.path.join(logdir, run), as_frame=False)
        run_id = client.create_run(exp, run_name=run).info.run_id
        metrics = [Metric(str(t), float(v), int(w * 1000), int(s))
                   for t, v, w, s in zip(cols["tag"], cols["value"], cols["wall_time"], cols["step"])]
        batches += [(run_id, metrics[i:i + 1000]) for i in range(0, len(metrics), 1000)]
    points = sum(len(b) for _, b in batches)
    t0 = time.perf_counter()
    for run_id, metrics in batches:
        client.log_batch(run_id, metrics=metrics)
    return time.perf_counter() - t0, points


def raw_fetch(uri: str, experiment: str) -> tuple[float, int]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    t0 = time.perf_counter()
    runs, token = [], None
    while True:
        page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
        runs += page
        token = page.token
        if not token:
            break
    points = 0
    for run in runs:
        for key in run.data.metrics:
            points += len(client.get_metric_history(run.info.run_id, key))
    return time.perf_counter() - t0, points


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--tags", type=int, default=10)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="10 runs instead of 100")
    ap.add_argument("--per-point", type=int, default=500, help="points the per-point script logs (rate extrapolated)")
    ap.add_argument("--workers", type=int, default=2, help="tbx sync --workers")
    ap.add_argument("--server-workers", type=int, default=None, help="mlflow server --workers (default: MLflow's)")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    if args.quick:
        args.runs = 10
    tmp = tempfile.mkdtemp(prefix="tbx-bench-mlflow-")
    os.environ["TBX_STATE_DIR"] = os.path.join(tmp, "state")
    results: dict = {"runs": args.runs, "tags": args.tags, "steps": args.steps}
    server = Server(tmp, args.server_workers)
    try:
        logdir = os.path.join(tmp, "logdir")
        make_logdir(logdir, args.runs, args.tags, args.steps)
        total = args.runs * args.tags * args.steps
        print(f"workload: {args.runs} runs × {args.tags} tags × {args.steps} steps = {total:,} points; "
              f"server {server.uri} (workers: {args.server_workers or 'default'})", flush=True)

        t_pp, n_pp = per_point(server.uri, logdir, args.per_point)
        pp_rate = n_pp / t_pp
        print(f"per-point script: {n_pp} points in {t_pp:.1f} s = {pp_rate:,.0f} pts/s "
              f"(1M points would take {total / pp_rate / 3600:.1f} h)", flush=True)

        t_ceil, n_ceil = ceiling(server.uri, logdir)
        print(f"ceiling (log_batch 1000, tight loop): {n_ceil:,} points in {t_ceil:.1f} s = "
              f"{n_ceil / t_ceil:,.0f} pts/s", flush=True)

        t_exp, rep = tbx_sync(logdir, f"{server.uri}#bench-tbx", os.path.join(tmp, "l1.sqlite"), args.workers)
        sc = rep["totals"]["scalars"]
        print(f"tbx sync export --workers {args.workers}: {total:,} points in {t_exp:.1f} s = {total / t_exp:,.0f} pts/s "
              f"(written {sc['written']:,}, verified {sc['verified']:,})", flush=True)

        t_fetch, n_fetch = raw_fetch(server.uri, "bench-tbx")
        print(f"raw history fetch: {n_fetch:,} points in {t_fetch:.1f} s", flush=True)
        out = os.path.join(tmp, "imported")
        t_imp, rep2 = tbx_sync(f"{server.uri}#bench-tbx", out, os.path.join(tmp, "l2.sqlite"), args.workers)
        sc2 = rep2["totals"]["scalars"]
        print(f"tbx sync import --workers {args.workers}: {sc2['written']:,} points in {t_imp:.1f} s "
              f"(verified {sc2['verified']:,})", flush=True)

        rows = [
            ("export: tbx sync vs per-point log_metric script", (total / t_exp) / pp_rate, 20.0),
            ("export: tbx sync vs log_batch ceiling", (total / t_exp) / (n_ceil / t_ceil), 0.5),
            ("import: raw fetch time / tbx sync time", t_fetch / t_imp, 0.5),
        ]
        print("\n| comparison | ratio | floor | verdict |\n|---|---:|---:|---|")
        for name, ratio, floor in rows:
            print(f"| {name} | {ratio:.2f}× | {floor}× | {'meets' if ratio >= floor else 'MISSES'} |")
        results.update(per_point_pts_s=pp_rate, ceiling_pts_s=n_ceil / t_ceil, export_s=t_exp,
                       export_pts_s=total / t_exp, fetch_s=t_fetch, import_s=t_imp,
                       ratios={name: ratio for name, ratio, _ in rows})
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
