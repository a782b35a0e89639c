"""``tbx sync SRC DST``: the command line of the sync engine.

Exit status: 0 everything carried (or already there), 1 some items were
dropped, a run failed or did not verify (each listed in the report), 2 usage
or connection error.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

EXAMPLES = """\
endpoints (SRC and DST):
  runs/                       a TensorBoard logdir (a dir of W&B runs is read as W&B)
  tb:PATH                     a TensorBoard logdir, whatever it holds
  http://127.0.0.1:5000       an MLflow tracking server (experiment: --experiment or URI#NAME)
  sqlite:///mlflow.db         a local MLflow store, no server needed
  mlflow                      $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
  wandb:DIR                   W&B offline runs (read: a wandb/ dir, a run dir or a .wandb file;
                              write: DIR receives wandb/offline-run-*, upload later with `wandb sync`)
  wandb://ENTITY/PROJECT      the W&B cloud (needs network and WANDB_API_KEY)

examples:
  tbx sync runs/ mlflow --experiment resnet         TensorBoard -> local MLflow store
  tbx sync runs/ http://127.0.0.1:5000#resnet --workers 4
  tbx sync http://127.0.0.1:5000 back/ --experiment resnet --filter "metrics.acc > 0.9"
  tbx sync runs/ wandb:offline/ --project resnet    TensorBoard -> W&B offline (then: wandb sync offline/wandb)
  tbx sync wandb:wandb/ tb_runs/                    W&B offline runs -> TensorBoard
  tbx sync runs/ mlflow --shard 0/4                 machine 1 of 4 in a split migration
  tbx sync runs/ mlflow --dry-run                   show what would be carried
  tbx sync runs/ mlflow --report sync.json          also write the fidelity report as JSON

Run it again at any time: only what is new is carried (a ledger remembers what
was), and a sync that was killed resumes without duplicating anything.
"""


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes I/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= I < N")
    return i, n


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workers takes a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"--workers must be at least 1, got {n}")
    return n


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sync", help="carry runs between TensorBoard, MLflow and W&B (incremental, verified)",
        description="Carry every run of SRC to DST: scalars, histograms, media, text, config and tags.\n"
                    "Each run is read back from DST and compared; the report says per run and kind\n"
                    "what was read, written, verified, transformed and dropped.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src", metavar="SRC", help="where the runs are (see endpoints below)")
    p.add_argument("dst", metavar="DST", help="where they go")
    p.add_argument("--runs", metavar="PATTERN", help="only runs whose name (or id) matches this shell glob")
    p.add_argument("--workers", type=_workers, default=1, metavar="N", help="runs carried in parallel (default 1)")
    p.add_argument("--shard", type=_shard, metavar="I/N",
                   help="carry only shard I of N (runs split by a hash of their id; 0 <= I < N)")
    p.add_argument("--dry-run", action="store_true", help="read and plan, write nothing")
    p.add_argument("--report", metavar="FILE", help="write the fidelity report as JSON to FILE")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no report table")
    p.add_argument("--ledger", metavar="FILE",
                   help="the ledger of what was carried (default: one per SRC/DST pair under "
                        "$TBX_STATE_DIR or ~/.local/state/tbx/sync)")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first corrupt record (default: skip it, carry the rest, report it)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip reading each run back from DST after writing it")
    g = p.add_argument_group("MLflow")
    g.add_argument("--experiment", "--experiment-name", dest="experiment", metavar="NAME",
                   help="the MLflow experiment (created when exporting; default: the logdir's name)")
    g.add_argument("--experiment-id", metavar="ID", help="the MLflow experiment by id (when importing)")
    g.add_argument("--filter", metavar="EXPR",
                   help="only MLflow runs matching this search filter (e.g. \"params.lr = '0.1'\"), "
                        "or W&B runs matching this JSON filter (cloud)")
    g = p.add_argument_group("W&B")
    g.add_argument("--project", metavar="NAME", help="the W&B project of exported runs (default: the source's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tbx.converters.base import SyncError
    from tbx.converters.endpoints import make_destination, make_source
    from tbx.converters.engine import sync

    opts = {"experiment": args.experiment, "experiment_id": args.experiment_id, "filter": args.filter,
            "project": args.project, "strict": args.strict}
    try:
        source = make_source(args.src, opts)
        destination = make_destination(args.dst, opts, source)
        report = sync(source, destination, runs=args.runs, workers=args.workers, shard=args.shard,
                      dry_run=args.dry_run, ledger=args.ledger, strict=args.strict,
                      progress=not args.quiet, verify=args.verify)
    except SyncError as exc:
        if os.environ.get("TBX_DEBUG", "") not in ("", "0"):
            raise
        print(f"tbx sync: error: {exc}", file=sys.stderr)
        return 2
    if args.report:
        report.write_json(args.report)
    if not args.quiet:
        report.write_table(sys.stdout)
        sys.stdout.flush()
    code = report.exit_code()
    if report.aborted:
        print(f"tbx sync: stopped: {report.aborted}", file=sys.stderr)
    failed = [r for r in report.runs if r.error]
    for r in failed[:20]:
        print(f"tbx sync: run {r.name}: {r.error}", file=sys.stderr)
    if not report.runs and not report.aborted:
        print("tbx sync: no runs selected" + (f" ({report.skipped_runs} not selected)" if report.skipped_runs else ""),
              file=sys.stderr)
    elif code == 0 and not any(r.status == "carried" for r in report.runs) and not args.dry_run:
        print("tbx sync: nothing new to carry; every run is up to date", file=sys.stderr)
    return code
