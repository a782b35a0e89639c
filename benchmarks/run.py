#!/usr/bin/env python
"""Side-by-side performance of tbx against tensorboardX and torch.utils.tensorboard.

    python benchmarks/run.py [--quick] [--only NAME ...] [--json FILE]

Every workload runs each implementation in this one process, one after the
other, each into its own fresh temporary logdir, with gc.collect() between.
The table reports total seconds, per-op time, caller-thread time (wall time of
the add loop alone) and the ratio peer/tbx; the last lines say PASS or MISS
for each floor of DESIGN.md "Performance targets". See benchmarks/README.md.
Never run by pytest; it asserts nothing, it reports.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
# Benchmark the checkout this script lives in (tbx/ next to benchmarks/).
if REPO not in sys.path:
    sys.path.insert(0, REPO)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from _bench_common import (  # noqa: E402
    PEERS,
    TBX,
    Row,
    load_writers,
    loop_overhead_per_iter,
    platform_info,
)
from _workloads import FULL, QUICK, WORKLOADS  # noqa: E402

CRC_PEER = "crc32c (pkg, unmasked)"
READ_PEER = "EventAccumulator"


# --------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------


def fmt_time(s: Optional[float]) -> str:
    if s is None:
        return "-"
    if s < 1e-6:
        return f"{s * 1e9:.0f} ns"
    if s < 1e-3:
        return f"{s * 1e6:.2f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def fmt_secs(s: Optional[float]) -> str:
    return "-" if s is None else f"{s:.3f}"


def fmt_rate(r: Optional[float], unit: str) -> str:
    if r is None:
        return "-"
    if unit == "GB/s":
        return f"{r:.2f} GB/s"
    if r >= 1e6:
        return f"{r / 1e6:.2f} M{unit}"
    if r >= 1e3:
        return f"{r / 1e3:.1f} k{unit}"
    return f"{r:.1f} {unit}"


def fmt_bytes(n: Optional[int]) -> str:
    if n is None:
        return "-"
    if n >= 2**20:
        return f"{n / 2**20:.1f} MiB"
    return f"{n / 2**10:.0f} KiB"


def fmt_ratio(x: Optional[float]) -> str:
    return "-" if x is None else (f"{x:.1f}×" if x >= 10 else f"{x:.2f}×")


def _div(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def tbx_row(rows: List[Row], workload: str) -> Optional[Row]:
    for r in rows:
        if r.workload == workload and r.impl == TBX and r.unavailable is None:
            return r
    return None


def peer_rows(rows: List[Row], workload: str) -> List[Row]:
    return [r for r in rows if r.workload == workload and r.impl != TBX]


def print_table(rows: List[Row]) -> None:
    headers = [
        "workload", "impl", "ops", "total s", "per op", "caller s", "caller/op",
        "rate", "peer/tbx total", "peer/tbx caller", "written", "file", "notes",
    ]
    table = []
    for r in rows:
        t = tbx_row(rows, r.workload)
        if r.unavailable is not None:
            table.append([r.workload, r.impl, f"{r.ops:,}", "unavailable", "", "", "", "",
                          "", "", "", "", r.unavailable[:90]])
            continue
        is_peer = r.impl != TBX
        total_ratio = _div(r.total_s, t.total_s) if (is_peer and t) else None
        caller_ratio = _div(r.caller_s, t.caller_s) if (is_peer and t) else None
        written = "-" if r.records is None else (
            f"{r.records:,}" + ("" if r.records == r.expected_records else " !!")
        )
        table.append([
            r.workload, r.impl, f"{r.ops:,}", fmt_secs(r.total_s), fmt_time(r.per_op_s),
            fmt_secs(r.caller_s), fmt_time(r.caller_per_op_s), fmt_rate(r.rate, r.rate_unit),
            fmt_ratio(total_ratio), fmt_ratio(caller_ratio), written, fmt_bytes(r.disk_bytes),
            r.note,
        ])
    widths = [max(len(str(x[i])) for x in table + [headers]) for i in range(len(headers))]
    right = {2, 3, 4, 5, 6, 7, 8, 9, 10, 11}

    def line(cells):
        out = []
        for i, c in enumerate(cells):
            c = str(c)
            out.append(c.rjust(widths[i]) if i in right else c.ljust(widths[i]))
        return "  ".join(out).rstrip()

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    last = None
    for cells in table:
        if last is not None and cells[0] != last:
            print()
        last = cells[0]
        print(line(cells))


# --------------------------------------------------------------------------
# Floors
# --------------------------------------------------------------------------


def _speedup_check(rows, workload, attr, floor, label, peers=PEERS):
    """tbx must be ``floor`` times faster (by ``attr`` seconds) than every peer."""
    t = tbx_row(rows, workload)
    candidates = [r for r in peer_rows(rows, workload) if r.impl in peers]
    ps = [r for r in candidates if r.unavailable is None]
    if not any(r.workload == workload for r in rows):
        return ("SKIP", "")
    # A peer that cannot run the workload (a missing optional package) is left
    # out of the comparison and named, so the verdict says what it covers.
    absent = "; ".join(f"{r.impl} unavailable: {r.unavailable}" for r in candidates if r.unavailable)
    if t is None or not ps:
        why = "tbx unavailable" if t is None else "no peer can run it"
        return ("N/A", f"{workload}: {label} ({why}{'; ' + absent if absent else ''})")
    ratios = {r.impl: _div(getattr(r, attr), getattr(t, attr)) for r in ps}
    ok = all(x is not None and x >= floor for x in ratios.values())
    detail = ", ".join(f"{fmt_ratio(x)} vs {k}" for k, x in ratios.items())
    if absent:
        detail += f" (only; {absent})"
    return ("PASS" if ok else "MISS", f"{workload}: {label}: {detail} (floor {floor:g}×)")


def floors(rows: List[Row]) -> List[tuple]:
    out = []
    out.append(_speedup_check(rows, "scalars", "total_s", 50, "total through close()"))
    t = tbx_row(rows, "scalars")
    if not any(r.workload == "scalars" for r in rows):
        pass
    elif t is None:
        out.append(("N/A", "scalars: caller ≤ 1.5 µs per add_scalar (tbx unavailable or not run)"))
    else:
        per = t.caller_per_op_s
        out.append(("PASS" if per <= 1.5e-6 else "MISS",
                    f"scalars: caller {fmt_time(per)} per add_scalar (floor ≤ 1.50 µs)"))
    out.append(_speedup_check(rows, "histograms", "total_s", 10, "total through close()"))
    out.append(_speedup_check(rows, "images", "caller_s", 20, "caller time of the add loop"))
    out.append(_speedup_check(rows, "images", "total_s", 1.5, "end to end through close()"))
    out.append(_speedup_check(rows, "training_loop", "total_s", 20, "events/s through close()"))
    # Issue 3: tbx not slower than either peer on any media/plugin workload;
    # media encodings run off the caller's thread, so its caller time is far lower.
    for workload in ("audio", "video"):
        out.append(_speedup_check(rows, workload, "caller_s", 10, "caller time of the add loop [issue 3]"))
        out.append(_speedup_check(rows, workload, "total_s", 1, "total through close() [issue 3]"))
    out.append(_speedup_check(rows, "pr_curve", "total_s", 1, "total through close() [issue 3]"))
    out.append(_speedup_check(rows, "embedding", "total_s", 1, "total through close(), synchronous [issue 3]"))
    out.append(_speedup_check(rows, "read", "total_s", 30, "scalar events/s read",
                              peers=(READ_PEER,)))
    for workload, floor in (("crc_1MiB", 1.2), ("crc_50B", 1.0)):
        t = tbx_row(rows, workload)
        p = [r for r in rows if r.workload == workload and r.impl == CRC_PEER]
        if not p:
            continue
        if t is None:
            out.append(("N/A", f"{workload}: tbx time ≤ {floor:g}× crc32c (not run or unavailable)"))
            continue
        x = t.total_s / p[0].total_s
        out.append(("PASS" if x <= floor else "MISS",
                    f"{workload}: tbx takes {x:.2f}× the crc32c package's time "
                    f"(floor ≤ {floor:g}×; {fmt_time(t.per_op_s)} vs {fmt_time(p[0].per_op_s)})"))
    # Not a speed floor, but a fast writer that loses data must not pass.
    bad = [r for r in rows if r.impl == TBX and r.records is not None
           and r.expected_records is not None and r.records != r.expected_records]
    tbx_written = [r for r in rows if r.impl == TBX and r.records is not None]
    if tbx_written:
        out.append(("MISS" if bad else "PASS",
                    "data: tbx wrote/read every expected value"
                    + ("" if not bad else ": " + "; ".join(f"{r.workload} {r.records}/{r.expected_records}" for r in bad))))
    return [v for v in out if v[0] != "SKIP"]


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (about 1/10)")
    ap.add_argument("--only", nargs="+", choices=list(WORKLOADS), metavar="NAME",
                    help=f"run only these workloads: {', '.join(WORKLOADS)}")
    ap.add_argument("--json", metavar="FILE", help="also write all results as JSON")
    args = ap.parse_args(argv)

    sizes = QUICK if args.quick else FULL
    impls = load_writers()
    info = platform_info(impls)
    print("== platform")
    for k, v in info.items():
        print(f"  {k:28s} {v}")
    for name, impl in impls.items():
        if not impl.ok:
            print(f"  {name:28s} UNAVAILABLE: {impl.unavailable}")
    if not str(info.get("tbx.record.IMPLEMENTATION")).startswith(("native", "unavailable")):
        print("  !! tbx runs its pure-Python twin; build the C kernel with:\n"
              "     python setup.py build_ext --inplace -q")
    overhead = loop_overhead_per_iter()
    info["empty_loop_overhead_s"] = overhead
    print(f"  {'empty add-loop overhead':28s} {fmt_time(overhead)} per iteration "
          "(included in every caller time)")
    print(f"  {'mode':28s} {'quick' if args.quick else 'full'}")
    print(flush=True)

    rows: List[Row] = []
    started = time.perf_counter()
    for name in (args.only or list(WORKLOADS)):
        t0 = time.perf_counter()
        print(f"== {name} ...", flush=True)
        new = WORKLOADS[name](impls, sizes)
        rows.extend(new)
        for r in new:
            state = r.unavailable or (
                f"total {fmt_secs(r.total_s)} s"
                + (f", caller {fmt_secs(r.caller_s)} s" if r.caller_s is not None else "")
            )
            print(f"   {r.workload:15s} {r.impl:24s} {state}", flush=True)
        print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)
    elapsed = time.perf_counter() - started

    print()
    print(f"== results ({'quick' if args.quick else 'full'} mode, {elapsed:.0f} s)")
    print_table(rows)
    print()
    print("== floors (DESIGN.md, Performance targets; [issue 3]: the issue's floors, not yet in DESIGN.md)")
    verdicts = floors(rows)
    for status, text in verdicts:
        print(f"{status:4s}  {text}")

    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "mode": "quick" if args.quick else "full",
                    "platform": info,
                    "rows": [r.to_json() for r in rows],
                    "floors": [{"status": s, "text": t} for s, t in verdicts],
                    "elapsed_s": elapsed,
                },
                fh,
                indent=2,
                default=str,
            )
        print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
