"""tbx sync against W&B offline runs, side by side with what users do without it.

Measures in one process run, the import first (every W&B directory, cache
and setting lives in a temporary directory; ``WANDB_MODE=offline``, nothing
goes to the network except the optional ``pip download`` below):

export (tfevents → W&B offline), default 100 runs × 10 tags × 1000 steps = 1M points
  * the logdir is written with ``tbx.SummaryWriter``; the 10 tags of a step
    are logged 10 µs apart (``--tag-gap``), as a training loop does, so
    they share a W&B history row. ``--tag-gap 0.001`` spreads them over more
    than tbx's 0.5 ms wall-time tolerance: every point becomes its own row
    (the worst case for tbx; the baseline does not care);
  * ``tbx sync LOGDIR wandb:OUT --workers 2``: a subprocess; the time
    includes interpreter start, reading the logdir, writing through the
    wandb SDK (wandb-core writes the ``.wandb`` files) and reading every run
    back to verify it (the default);
  * the baseline, a straightforward user script: per run one
    ``wandb.init(mode="offline", reinit="create_new")``, then for every
    event in file order ``run.log({tag: value}, step=step)`` — W&B's
    documented way to log at a given step; it merges the tags of a step into
    one row, so it writes the same rows as tbx (it keeps no wall times and
    verifies nothing), then ``run.finish()``. It runs in this process with
    the same quiet settings as tbx (no console capture, no system stats),
    wandb warmed up by one tiny untimed run, and the events read beforehand
    (untimed), all of which favour the baseline. ``--baseline-runs N`` times
    it on the first N runs only and extrapolates (printed as such). Its rows
    are counted afterwards (untimed) to show it wrote every point.

import (W&B offline → tfevents), default 100,000 history rows × 10 metrics
  * the ``.wandb`` file is made (untimed) by exporting a one-run logdir of
    ``--import-rows`` steps × 10 tags with tbx into W&B offline; wandb-core
    writes it, as for any offline run (one history and two summary records
    per row);
  * wandb's own Python reader, ``wandb/sdk/internal/datastore.py``, gone
    from wandb 0.31 (the installed SDK): the benchmark fetches the wandb
    0.22.0 wheel with ``pip download wandb==0.22.0 --no-deps`` into
    ``--wheel-cache`` (kept for later runs; nothing is installed) and loads
    that one file from it as a standalone module (its only use of the
    ``wandb`` package, an internal-process assertion, is shimmed). Timed:
    ``DataStore.open_for_scan`` + ``scan_data`` over the file, every record
    parsed with the installed SDK's ``wandb_internal_pb2.Record``, every
    history value decoded with ``json.loads``; nothing written; in this
    process, best of ``--repeat`` (3). If the wheel cannot be fetched, this
    row says why and is skipped;
  * tbx, in this process like the reader above, best of ``--repeat``:
    ``tbx.converters.sync(WandbOfflineSource(RUN_DIR), TfeventsDestination(OUT))``,
    what ``tbx sync wandb:RUN_DIR OUT`` runs: reading the ``.wandb`` file,
    writing every point to tfevents, committing to the ledger and (by
    default) reading the tfevents back to verify them; and the same with
    ``verify=False`` (``--no-verify``). A new OUT and ledger each time,
    after ``os.sync()`` (untimed) so that the export phase's files being
    written back to disk do not slow the fsync tbx does when it closes a file;
  * for information: the command itself (``tbx sync wandb:RUN_DIR OUT`` in a
    subprocess: a new interpreter's start and imports included); wandb
    0.31's own reader, wandb-core's Go decoder (``python -m wandb leet
    inspect --json FILE``, a subprocess, plus ``json.loads`` of each output
    line); and tbx's reader alone (``WandbOfflineSource.read_run``): the
    same work as the datastore row.

Ratios are baseline time / tbx time (how many times faster tbx is); floors:
export ≥ 5× the per-event script, import ≥ 10× wandb's reader (which only
reads, where tbx also writes and verifies). Nothing is asserted; pytest
never runs this.

Usage::

    python benchmarks/sync_wandb.py                  # full: ~6 min on 2 cores, mostly the baseline
    python benchmarks/sync_wandb.py --quick          # 10 runs, 10,000 import rows
    python benchmarks/sync_wandb.py --only import    # or: --only export
    python benchmarks/sync_wandb.py --baseline-runs 20 --json out.json
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DATASTORE_VERSION = "0.22.0"
DATASTORE_PATH = "wandb/sdk/internal/datastore.py"
EXPORT_FLOOR = 5.0
IMPORT_FLOOR = 10.0


def wandb_env(tmp: str) -> None:
    """Every W&B directory inside ``tmp``, offline, quiet; tbx's ledgers too."""
    os.environ.update(
        WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=os.path.join(tmp, "wdir"),
        WANDB_DATA_DIR=os.path.join(tmp, "wdata"), WANDB_CACHE_DIR=os.path.join(tmp, "wcache"),
        WANDB_CONFIG_DIR=os.path.join(tmp, "wconfig"), WANDB_ARTIFACT_DIR=os.path.join(tmp, "wartifacts"),
        TBX_STATE_DIR=os.path.join(tmp, "state"), TBX_DISABLE_PROGRESS_BARS="1")


def make_logdir(path: str, runs: int, tags: int, steps: int, tag_gap: float) -> None:
    import numpy as np

    import tbx

    rng = np.random.default_rng(0)
    for r in range(runs):
        with tbx.SummaryWriter(os.path.join(path, f"run{r:03d}")) as w:
            vals = rng.standard_normal((steps, tags))
            for s in range(steps):
                for t in range(tags):
                    w.add_scalar(f"metric/{t}", float(vals[s, t]), s, walltime=1.7e9 + s * 0.5 + t * tag_gap)


def tbx_sync(src: str, dst: str, tmp: str, name: str, *extra: str) -> tuple[float, dict]:
    report = os.path.join(tmp, f"{name}.report.json")
    cmd = [sys.executable, "-m", "tbx", "sync", src, dst, "--ledger", os.path.join(tmp, f"{name}.sqlite"),
           "--report", report, "-q", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode not in (0, 1):  # 1: the report names what was dropped or differs
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    with open(report) as f:
        rep = json.load(f)
    rep["exit_code"] = proc.returncode
    problems = [f"{r['run']}: {r['status']} {r['error'] or ''} {r['mismatch'][:2]}" for r in rep["runs"]
                if r["error"] or r["mismatch"]]
    if proc.returncode or problems:
        print(f"  tbx sync exited {proc.returncode}; {len(problems)} runs with problems: {problems[:3]}", flush=True)
    return dt, rep


# --- export -------------------------------------------------------------------------

def baseline_export(logdir: str, out: str, runs: list[str]) -> tuple[float, int, int]:
    """The per-event user script over ``runs``; returns (seconds, events logged, rows W&B holds)."""
    import wandb

    from tbx import read_scalars
    from tbx.converters.wandb_export import SETTINGS
    from tbx.converters.wandb_file import read_history

    settings = wandb.Settings(**SETTINGS)
    warm = wandb.init(mode="offline", dir=os.path.join(out, "warmup"), project="warmup", reinit="create_new",
                      settings=settings)
    warm.log({"x": 1.0}, step=0)
    warm.finish()
    events = {}
    for name in runs:
        cols = read_scalars(os.path.join(logdir, name), as_frame=False)
        events[name] = list(zip([str(t) for t in cols["tag"]], cols["step"].tolist(), cols["value"].tolist()))
    os.makedirs(out, exist_ok=True)
    n = 0
    t0 = time.perf_counter()
    for name in runs:
        run = wandb.init(mode="offline", dir=out, project="baseline", name=name, reinit="create_new",
                         settings=settings)
        for tag, step, value in events[name]:
            run.log({tag: value}, step=step)
        run.finish()
        n += len(events[name])
    dt = time.perf_counter() - t0
    rows = 0
    for path in glob.glob(os.path.join(out, "wandb", "offline-run-*", "*.wandb")):
        rows += len(read_history(path))
    return dt, n, rows


def export(args: argparse.Namespace, tmp: str, results: dict) -> list[tuple[str, float, float, str]]:
    logdir = os.path.join(tmp, "logdir")
    t0 = time.perf_counter()
    make_logdir(logdir, args.runs, args.tags, args.steps, args.tag_gap)
    total = args.runs * args.tags * args.steps
    print(f"export workload: {args.runs} runs × {args.tags} tags × {args.steps} steps = {total:,} points, "
          f"tags {args.tag_gap * 1e3:g} ms apart (logdir written in {time.perf_counter() - t0:.1f} s)", flush=True)

    t_tbx, rep = tbx_sync(logdir, f"wandb:{os.path.join(tmp, 'tbx-out')}", tmp, "export",
                          "--workers", str(args.workers))
    sc = rep["totals"]["scalars"]
    frags = glob.glob(os.path.join(tmp, "tbx-out", "wandb", "offline-run-*"))
    print(f"tbx sync LOGDIR wandb:OUT --workers {args.workers}: {t_tbx:.1f} s = {total / t_tbx:,.0f} points/s "
          f"(written {sc['written']:,}, verified {sc['verified']:,}; {len(frags)} offline runs; "
          f"exit code {rep.get('exit_code', '?')})", flush=True)

    names = sorted(os.listdir(logdir))[:args.baseline_runs or None]
    t_base, n_base, rows = baseline_export(logdir, os.path.join(tmp, "baseline-out"), names)
    rate = n_base / t_base
    extrapolated = len(names) < args.runs
    t_base_all = total / rate
    print(f"baseline run.log per event: {n_base:,} events of {len(names)} runs in {t_base:.1f} s = "
          f"{rate:,.0f} events/s ({rows:,} history rows written)"
          + (f"; all {total:,} points would take {t_base_all:.0f} s (extrapolated)" if extrapolated else ""),
          flush=True)
    results["export"] = {"points": total, "tag_gap_s": args.tag_gap, "tbx_s": t_tbx, "tbx_written": sc["written"],
                         "tbx_verified": sc["verified"], "baseline_runs": len(names), "baseline_s": t_base,
                         "baseline_events": n_base, "baseline_rows": rows, "baseline_extrapolated": extrapolated,
                         "baseline_all_s": t_base_all}
    note = f"baseline extrapolated from {len(names)} runs" if extrapolated else ""
    return [("export: per-event run.log script / tbx sync", t_base_all / t_tbx, EXPORT_FLOOR, note)]


# --- import -------------------------------------------------------------------------

def datastore_module(cache: str) -> tuple[types.ModuleType | None, str]:
    """wandb 0.22.0's ``datastore.py``, loaded from its wheel as a standalone module (or why not)."""
    os.makedirs(cache, exist_ok=True)
    wheels = glob.glob(os.path.join(cache, f"wandb-{DATASTORE_VERSION}-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", f"wandb=={DATASTORE_VERSION}", "--no-deps",
               "--only-binary=:all:", "-d", cache, "-q"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"pip download failed: {exc}"
        wheels = glob.glob(os.path.join(cache, f"wandb-{DATASTORE_VERSION}-*.whl"))
        if done.returncode != 0 or not wheels:
            return None, f"pip download wandb=={DATASTORE_VERSION} failed: {done.stderr.strip()[-300:]}"
    source = os.path.join(cache, f"wandb-{DATASTORE_VERSION}-datastore.py")
    if not os.path.exists(source):
        with zipfile.ZipFile(wheels[0]) as z, open(source, "wb") as f:
            f.write(z.read(DATASTORE_PATH))
    spec = importlib.util.spec_from_file_location("wandb_datastore_0_22", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # DataStore() asserts wandb._assert_is_internal_process, which wandb 0.31 no longer has
    module.wandb = types.SimpleNamespace(_assert_is_internal_process=True)  # type: ignore[attr-defined]
    return module, wheels[0]


def read_with_datastore(module: types.ModuleType, path: str) -> tuple[float, int, int]:
    """(seconds, history rows, values): wandb's Python reader, protobuf, json.loads per value."""
    from wandb.proto import wandb_internal_pb2 as pb

    t0 = time.perf_counter()
    ds = module.DataStore()
    ds.open_for_scan(path)
    rows = values = 0
    while True:
        data = ds.scan_data()
        if data is None:
            break
        rec = pb.Record()
        rec.ParseFromString(data)
        if rec.WhichOneof("record_type") == "history":
            row = {item.key or ".".join(item.nested_key): json.loads(item.value_json) for item in rec.history.item}
            rows += 1
            values += len(row)
    ds.close()
    return time.perf_counter() - t0, rows, values


def read_with_leet(path: str) -> tuple[float, int, int]:
    """(seconds, history rows, values): ``wandb leet inspect --json`` and json.loads per line."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", path],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"wandb leet inspect exited {done.returncode}: {done.stderr[-1000:]}")
    rows = values = 0
    for line in done.stdout.splitlines():
        if line.strip():
            rec = json.loads(line)
            if rec.get("type") == "history":
                rows += 1
                values += len(rec["history"]["item"])
    return time.perf_counter() - t0, rows, values


def read_with_tbx(run_dir: str) -> tuple[float, int]:
    """(seconds, points): tbx's reader alone, in this process (what the two readers above do)."""
    from tbx.converters.report import RunReport
    from tbx.converters.wandb_local import WandbOfflineSource

    t0 = time.perf_counter()
    src = WandbOfflineSource(run_dir)
    (ref,) = src.list_runs()
    data = src.read_run(ref, RunReport(ref.name, ref.key))
    return time.perf_counter() - t0, data.count("scalars")


def settle() -> None:
    """Let the disk finish what earlier phases wrote (untimed): tbx fsyncs what it writes, and
    an export phase leaves gigabytes of W&B files being written back."""
    if hasattr(os, "sync"):
        os.sync()


def sync_in_process(run_dir: str, tmp: str, name: str, verify: bool) -> tuple[float, dict]:
    """(seconds, scalar counts): ``tbx.converters.sync`` of the run into a new logdir, in this process."""
    from tbx.converters.engine import sync
    from tbx.converters.tfevents import TfeventsDestination
    from tbx.converters.wandb_local import WandbOfflineSource

    out, ledger = os.path.join(tmp, f"{name}-out"), os.path.join(tmp, f"{name}.sqlite")
    shutil.rmtree(out, ignore_errors=True)
    if os.path.exists(ledger):
        os.remove(ledger)
    settle()
    t0 = time.perf_counter()
    report = sync(WandbOfflineSource(run_dir), TfeventsDestination(out), ledger=ledger, verify=verify)
    dt = time.perf_counter() - t0
    rep = report.as_dict()
    if report.exit_code() != 0:
        raise RuntimeError(f"tbx sync {run_dir} failed: {rep['runs']}")
    return dt, rep["totals"]["scalars"]


def import_(args: argparse.Namespace, tmp: str, results: dict) -> list[tuple[str, float, float, str]]:
    from tbx.converters.engine import sync
    from tbx.converters.tfevents import TfeventsSource
    from tbx.converters.wandb_export import WandbDestination
    from tbx.converters.wandb_framing import KERNEL

    logdir = os.path.join(tmp, "import-logdir")
    t0 = time.perf_counter()
    make_logdir(logdir, 1, args.tags, args.import_rows, 1e-5)
    report = sync(TfeventsSource(logdir), WandbDestination(directory=os.path.join(tmp, "import-src")),
                  ledger=os.path.join(tmp, "import-src.sqlite"))
    if report.exit_code() != 0:
        raise RuntimeError(f"making the .wandb file failed: {report.as_dict()['runs']}")
    (path,) = glob.glob(os.path.join(tmp, "import-src", "wandb", "offline-run-*", "*.wandb"))
    run_dir = os.path.dirname(path)
    print(f"\nimport workload: {os.path.basename(path)}, {args.import_rows:,} history rows × {args.tags} metrics, "
          f"{os.path.getsize(path) / 2**20:.1f} MiB (made in {time.perf_counter() - t0:.1f} s); "
          f"tbx .wandb kernel: {KERNEL}", flush=True)
    res: dict = {"rows": args.import_rows, "file_bytes": os.path.getsize(path), "kernel": KERNEL}
    out = []
    module, where = datastore_module(args.wheel_cache)
    if module is None:
        print(f"wandb {DATASTORE_VERSION} datastore.py: unavailable ({where})", flush=True)
        res["datastore"] = where
    else:
        settle()
        t_ds, rows, values = min(read_with_datastore(module, path) for _ in range(args.repeat))
        print(f"wandb {DATASTORE_VERSION} datastore.py + protobuf + json.loads (best of {args.repeat}): {t_ds:.2f} s "
              f"({rows:,} rows, {values:,} values; from {os.path.basename(where)})", flush=True)
        res.update(datastore_s=t_ds, datastore_rows=rows)
    # tbx in this process, as the datastore reader runs: read, write tfevents, read them back to verify.
    for verify in (True, False):
        name = "verify" if verify else "no_verify"
        runs = [sync_in_process(run_dir, tmp, f"import-{name}", verify) for _ in range(args.repeat)]
        t, sc = min(runs, key=lambda r: r[0])
        print(f"tbx sync wandb:RUN_DIR OUT{'' if verify else ' --no-verify'} (in process, best of {args.repeat}): "
              f"{t:.3f} s (written {sc['written']:,}, verified {sc['verified']:,})", flush=True)
        res[f"tbx_{name}_s"] = t
        res[f"tbx_{name}_written"] = sc["written"]
        if "datastore_s" in res:
            what = "sync" if verify else "sync --no-verify"
            note = ("reads only; tbx also writes tfevents and reads them back to verify" if verify
                    else "reads only; tbx also writes tfevents")
            out.append((f"import: wandb {DATASTORE_VERSION} datastore + json.loads / tbx {what}",
                        res["datastore_s"] / t, IMPORT_FLOOR, note))
    if module is None:
        out.append((f"import: wandb {DATASTORE_VERSION} datastore + json.loads / tbx sync", float("nan"),
                    IMPORT_FLOOR, f"unavailable: {where}"))
    t_cli, rep = tbx_sync(f"wandb:{run_dir}", os.path.join(tmp, "import-out"), tmp, "import")
    print(f"tbx sync wandb:RUN_DIR OUT as a command: {t_cli:.2f} s (interpreter start and imports included; "
          f"written {rep['totals']['scalars']['written']:,})", flush=True)
    res["tbx_cli_s"] = t_cli
    if "datastore_s" in res:
        out.append((f"import: wandb {DATASTORE_VERSION} datastore + json.loads / `tbx sync` command",
                    res["datastore_s"] / t_cli, float("nan"), "information: the command, a new interpreter"))
    t_leet, rows, values = read_with_leet(path)
    print(f"wandb leet inspect --json + json.loads: {t_leet:.2f} s ({rows:,} rows, {values:,} values)", flush=True)
    res.update(leet_s=t_leet, leet_rows=rows)
    out.append(("import: wandb leet inspect --json + json.loads / tbx sync", t_leet / res["tbx_verify_s"],
                float("nan"), "information: wandb 0.31's own reader, a subprocess"))
    t_read, points = min(read_with_tbx(run_dir) for _ in range(args.repeat))
    print(f"tbx WandbOfflineSource.read_run alone (in process, best of {args.repeat}): {t_read:.3f} s "
          f"({points:,} points)", flush=True)
    res.update(tbx_read_s=t_read)
    if "datastore_s" in res:
        out.append((f"import, reading only: wandb {DATASTORE_VERSION} datastore / tbx reader",
                    res["datastore_s"] / t_read, float("nan"), "information: the same work on both sides"))
    results["import"] = res
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--tags", type=int, default=10)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--tag-gap", type=float, default=1e-5,
                    help="seconds between the tags of a step (default 10 µs; over 0.0005, one row per point)")
    ap.add_argument("--workers", type=int, default=2, help="tbx sync --workers for the export")
    ap.add_argument("--baseline-runs", type=int, default=0,
                    help="time the per-event baseline on this many runs and extrapolate (default: all)")
    ap.add_argument("--import-rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3, help="import timings in this process: best of N (default 3)")
    ap.add_argument("--wheel-cache", default=os.path.join(os.path.expanduser("~"), ".cache", "tbx-bench"),
                    help=f"where the wandb {DATASTORE_VERSION} wheel is kept")
    ap.add_argument("--only", choices=("export", "import"))
    ap.add_argument("--quick", action="store_true", help="10 runs, 10,000 import rows")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.import_rows = 10, 10_000
    tmp = tempfile.mkdtemp(prefix="tbx-bench-wandb-")
    wandb_env(tmp)
    import wandb

    from tbx.converters.wandb_export import FAST_HISTORY

    print(f"python {sys.version.split()[0]}, wandb {wandb.__version__}, {os.cpu_count()} CPUs, "
          f"tbx fast history path: {FAST_HISTORY}", flush=True)
    results: dict = {"wandb": wandb.__version__, "cpus": os.cpu_count()}
    rows = []
    try:
        # The import first: its timings are a fraction of a second, which the export baseline's
        # leftovers (100 W&B runs' worth of objects and threads in this process) would blur.
        if args.only != "export":
            rows += import_(args, tmp, results)
        if args.only != "import":
            rows += export(args, tmp, results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n| comparison | ratio | floor | verdict | note |\n|---|---:|---:|---|---|")
    for name, ratio, floor, note in rows:
        verdict = "n/a" if ratio != ratio or floor != floor else ("meets" if ratio >= floor else "MISSES")
        print(f"| {name} | {ratio:.2f}× | {'-' if floor != floor else f'{floor:g}×'} | {verdict} | {note} |")
    results["ratios"] = {name: ratio for name, ratio, _, _ in rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
