"""The ``tbx`` command line.

Subcommands::

    tbx ls LOGDIR [--json]     runs, tags, kinds, counts and step ranges
    tbx verify LOGDIR          check every record of every event file
    tbx demo [--logdir DIR]    train a small model and log it (a run to view in TensorBoard)
    tbx sync SRC DST           carry runs between TensorBoard, MLflow and W&B

Exit status: 0 success, 1 handled error (one line on stderr; ``TBX_DEBUG=1``
adds the traceback), 2 usage error (argparse's default). With no arguments the
help is printed and the status is 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, Callable

from tbx.errors import TbxError

PROG = "tbx"

_LS_EXAMPLES = """\
examples:
  tbx ls runs/                 table of every run and tag under runs/
  tbx ls runs/ --json          the same as JSON, for scripts
  tbx ls runs/exp1/events.out.tfevents.1700000000.host.42.0
"""

_VERIFY_EXAMPLES = """\
examples:
  tbx verify runs/             check both checksums and the Event of every record
  tbx verify runs/ || echo "corrupt event files"
"""

_MAIN_EXAMPLES = """\
examples:
  tbx ls runs/
  tbx verify runs/
  tbx sync runs/ mlflow --experiment resnet
  tbx ls -h

Set TBX_DEBUG=1 to see the traceback of an error.
"""


class CLIError(TbxError):
    """A handled failure: printed as one line, exit status 1."""


# --- ls ----------------------------------------------------------------------

def _add_ls(sub: Any) -> None:
    p = sub.add_parser(
        "ls", help="list runs, tags, kinds, counts and step ranges",
        description="List what a logdir holds: per run and tag, the kind (scalars,\n"
                    "histograms, images, ...), the number of values and the step range.",
        epilog=_LS_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("logdir", metavar="LOGDIR", help="a logdir, a run directory or one event file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_ls)


def _no_event_files(path: str) -> CLIError:
    return CLIError(f"no event files under {path} (looked for file names containing 'tfevents')")


def _cmd_ls(args: argparse.Namespace) -> int:
    from tbx import reader

    runs = reader.summarize(args.logdir)
    if not runs:
        raise _no_event_files(args.logdir)
    if args.json:
        json.dump({"logdir": args.logdir, "runs": runs}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    header = ("RUN", "TAG", "KIND", "COUNT", "MIN STEP", "MAX STEP")
    rows = []
    for run in runs:
        if not run["tags"]:
            rows.append((run["run"], "(no tags)", "", "0", "", ""))
        for t in run["tags"]:
            rows.append((run["run"], t["tag"], t["kind"], str(t["count"]),
                         str(t["min_step"]), str(t["max_step"])))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {3, 4, 5}  # numbers align right
    for r in [header, *rows]:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        print("  ".join(cells).rstrip())
    files = sum(len(r["files"]) for r in runs)
    tags = sum(len(r["tags"]) for r in runs)
    print(f"\n{len(runs)} run{'s' * (len(runs) != 1)}, {tags} tag{'s' * (tags != 1)}, "
          f"{files} event file{'s' * (files != 1)}")
    return 0


# --- verify ------------------------------------------------------------------

def _add_verify(sub: Any) -> None:
    p = sub.add_parser(
        "verify", help="check every record of every event file",
        description="Check the length and payload checksums of every record, and that every\n"
                    "payload parses as an Event. Prints one line per file. A cut-off last\n"
                    "record (a file still being written) is noted but is not an error.\n"
                    "Exit status 1 if any file is corrupt.",
        epilog=_VERIFY_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("logdir", metavar="LOGDIR", help="a logdir, a run directory or one event file")
    p.set_defaults(func=_cmd_verify)


def _verify_file(path: str) -> tuple[bool, str]:
    from tbx import reader

    stats = reader.ReadStats()
    try:
        for _ in reader.read_events(path, lenient=True, stats=stats):
            pass
    except OSError as exc:
        return False, f"ERROR   {path}: cannot read ({_message(exc)})"
    records = f"{stats.records} record{'s' * (stats.records != 1)}"
    if stats.problems:
        shown = "; ".join(f"byte {e.offset}: {e.reason}" for e in stats.problems[:3])
        more = len(stats.problems) - 3
        if more > 0:
            shown += f"; and {more} more"
        return False, f"CORRUPT {path}: {shown} ({records} readable)"
    note = ""
    for _, offset, nbytes in stats.truncations:
        note = f" (note: cut-off last record at byte {offset}, {nbytes} bytes; normal while a writer is running)"
    return True, f"OK      {path}: {records}{note}"


def _cmd_verify(args: argparse.Namespace) -> int:
    from tbx import reader

    path = args.logdir
    files = [path] if os.path.isfile(path) else [p for _, p in reader.iter_event_files(path)]
    if not files:
        raise _no_event_files(path)
    bad = 0
    for file in files:
        ok, line = _verify_file(file)
        bad += not ok
        print(line, flush=True)
    n = len(files)
    print(f"\n{n} file{'s' * (n != 1)} checked: {n - bad} OK, {bad} corrupt")
    return 1 if bad else 0


# --- demo ----------------------------------------------------------------------

def _add_demo(sub: Any) -> None:
    """Register `tbx demo` (tbx/demo.py fills in its arguments and runs it)."""
    from tbx import demo

    p = sub.add_parser("demo", help="train a small model and log it: a run to open in TensorBoard",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_arguments(p)
    p.set_defaults(func=demo.main)


# --- entry point -------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Inspect and check TensorBoard event files; carry runs between trackers.",
        epilog=_MAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_ls(sub)
    _add_verify(sub)
    _add_demo(sub)
    from tbx.converters import cli as sync_cli

    sync_cli.add_parser(sub)
    return parser


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: {exc.filename}"
    return str(exc) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tbx`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `tbx ls runs | head`
        try:  # keep the interpreter's final flush of stdout from failing again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except (TbxError, OSError) as exc:
        if os.environ.get("TBX_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        print(f"{PROG}: error: {_message(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
