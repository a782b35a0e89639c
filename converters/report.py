"""The fidelity report: what a sync read, wrote, verified, changed and lost.

Counts describe each run *as it stands in the destination after the sync*:

- ``read``: items of the kind in the source run (after a lenient read).
- ``already``: of those, carried by an earlier sync (from the ledger).
- ``written``: carried by this sync.
- ``verified``: items read back from the destination that equal what was
  meant to be there (after the documented transformations). Verification
  reads the destination; it never trusts the write.
- ``transformed``: ``{reason: n}`` items carried in a changed form.
- ``dropped``: ``{reason: n}`` items not carried, and why.

A run whose read-back differs from what was meant to be there gets a
``mismatch`` entry; a run that failed has ``error``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from typing import Any, TextIO

from tbx.converters.model import KINDS


@dataclasses.dataclass
class KindCount:
    read: int = 0
    already: int = 0
    written: int = 0
    verified: int = 0
    transformed: Counter = dataclasses.field(default_factory=Counter)
    dropped: Counter = dataclasses.field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"read": self.read, "already": self.already, "written": self.written,
                "verified": self.verified, "transformed": dict(self.transformed),
                "dropped": dict(self.dropped)}


@dataclasses.dataclass
class RunReport:
    """The report of one run (filled by one worker; not shared between threads)."""

    name: str
    key: str
    destination: str | None = None
    status: str = "pending"  # carried | up-to-date | failed | would-carry
    error: str | None = None
    kinds: dict[str, KindCount] = dataclasses.field(default_factory=dict)
    mismatch: list[str] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def kind(self, kind: str) -> KindCount:
        k = self.kinds.get(kind)
        if k is None:
            k = self.kinds[kind] = KindCount()
        return k

    def transformed(self, kind: str, reason: str, n: int = 1) -> None:
        if n:
            self.kind(kind).transformed[reason] += n

    def dropped(self, kind: str, reason: str, n: int = 1) -> None:
        if n:
            self.kind(kind).dropped[reason] += n

    def problem(self, text: str) -> None:
        self.problems.append(text)

    @property
    def lossy(self) -> bool:
        return bool(self.error or self.mismatch or any(k.dropped for k in self.kinds.values()))

    def as_dict(self) -> dict[str, Any]:
        order = [k for k in KINDS if k in self.kinds] + sorted(set(self.kinds) - set(KINDS))
        return {"run": self.name, "key": self.key, "destination": self.destination,
                "status": self.status, "error": self.error, "seconds": round(self.seconds, 3),
                "mismatch": list(self.mismatch), "problems": list(self.problems),
                "kinds": {k: self.kinds[k].as_dict() for k in order}}


class SyncReport:
    """Every run's report plus totals; ``exit_code`` follows ``tbx sync``'s contract."""

    def __init__(self, source: str, destination: str, dry_run: bool = False) -> None:
        self.source = source
        self.destination = destination
        self.dry_run = dry_run
        self.runs: list[RunReport] = []
        self.started = time.time()
        self.seconds = 0.0
        self.skipped_runs = 0  # not in this shard / filtered out
        self.aborted: str | None = None
        #: the connection error that stopped the sync (exit status 2), if any
        self.fatal: BaseException | None = None

    def totals(self) -> dict[str, KindCount]:
        out: dict[str, KindCount] = {}
        for run in self.runs:
            for kind, c in run.kinds.items():
                t = out.setdefault(kind, KindCount())
                t.read += c.read
                t.already += c.already
                t.written += c.written
                t.verified += c.verified
                t.transformed.update(c.transformed)
                t.dropped.update(c.dropped)
        return out

    def exit_code(self) -> int:
        """0: everything carried; 1: something was dropped, failed or did not verify;
        2: a tracker could not be reached (the sync stopped)."""
        if self.fatal is not None:
            return 2
        if self.aborted or any(r.lossy for r in self.runs):
            return 1
        return 0

    def as_dict(self) -> dict[str, Any]:
        totals = self.totals()
        return {
            "source": self.source, "destination": self.destination, "dry_run": self.dry_run,
            "started": self.started, "seconds": round(self.seconds, 3),
            "aborted": self.aborted,
            "runs": [r.as_dict() for r in self.runs],
            "totals": {k: totals[k].as_dict() for k in KINDS if k in totals}
            | {k: totals[k].as_dict() for k in sorted(set(totals) - set(KINDS))},
            "counts": {
                "runs": len(self.runs),
                "carried": sum(r.status == "carried" for r in self.runs),
                "would_carry": sum(r.status == "would-carry" for r in self.runs),
                "up_to_date": sum(r.status == "up-to-date" for r in self.runs),
                "failed": sum(r.status == "failed" for r in self.runs),
                "skipped": self.skipped_runs,
            },
            "exit_code": self.exit_code(),
        }

    def write_json(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.as_dict(), f, indent=2, sort_keys=False)
            f.write("\n")

    def write_table(self, out: TextIO) -> None:
        """The human report: one line per run and kind, then totals and every loss."""
        d = self.as_dict()
        c = d["counts"]
        verb = "would carry" if self.dry_run else "carried"
        done = c["would_carry"] if self.dry_run else c["carried"]
        out.write(f"{self.source} -> {self.destination}: {c['runs']} runs "
                  f"({done} {verb}, {c['up_to_date']} up to date, {c['failed']} failed"
                  + (f", {c['skipped']} not selected" if c["skipped"] else "") + f") in {self.seconds:.1f} s\n")
        header = f"{'run':<32} {'kind':<10} {'read':>9} {'already':>9} {'written':>9} {'verified':>9}  notes\n"
        out.write(header)
        for run in self.runs:
            name = run.name if len(run.name) <= 32 else "…" + run.name[-31:]
            if run.error:
                out.write(f"{name:<32} FAILED: {run.error}\n")
            for kind, k in run.kinds.items():
                notes = [f"{n} {r}" for r, n in k.transformed.items()]
                notes += [f"DROPPED {n}: {r}" for r, n in k.dropped.items()]
                out.write(f"{name:<32} {kind:<10} {k.read:>9} {k.already:>9} {k.written:>9} "
                          f"{k.verified:>9}  {'; '.join(notes)}\n")
                name = ""
            for m in run.mismatch:
                out.write(f"{'':<32} MISMATCH: {m}\n")
            for p in run.problems:
                out.write(f"{'':<32} problem: {p}\n")
        totals = d["totals"]
        if len(self.runs) > 1 and totals:
            for kind, k in totals.items():
                out.write(f"{'TOTAL':<32} {kind:<10} {k['read']:>9} {k['already']:>9} {k['written']:>9} "
                          f"{k['verified']:>9}\n")
        if self.aborted:
            out.write(f"stopped: {self.aborted}\n")
