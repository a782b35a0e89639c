"""The sync engine: carry runs from a source to a destination, once.

For each selected run (``runs`` glob, ``shard``), one worker thread:

1. reads the whole run from the source into the neutral model;
2. asks the destination for the form it will store (``expected``), which
   counts every transformation and loss in the run's report;
3. looks the run up in the ledger and slices off, per (kind, tag), the items
   already carried — only new items are written, so a second sync with
   nothing new writes nothing and a grown source sends only its new points;
4. writes, committing every ``commit_every`` items and recording each commit
   in the ledger, so a sync killed mid-way resumes where the destination's
   durable state ends;
5. reads the run back from the destination and compares it with what was
   meant to be there, item by item (the ``verified`` column).

A run that fails is reported and the others go on; a connection failure
that outlasts the backends' retries, or a corrupt source in ``strict`` mode,
stops the whole sync (runs already done stay done and recorded).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

import numpy as np

from tbx.converters.base import ConnectError, Destination, DestRun, RunRef, Source, SyncError
from tbx.converters.ledger import Entry, Ledger, default_path
from tbx.converters.model import SERIES_KINDS, RunData, flatten, param_text, same_float, same_value
from tbx.converters.report import RunReport, SyncReport
from tbx.errors import DataLossError

#: wall times agree when they are within half a millisecond (MLflow keeps ms).
WALL_TOLERANCE = 0.0005


class Progress:
    """A one-line progress display on stderr (runs and points), only on a terminal."""

    def __init__(self, total_runs: int, enabled: bool, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.enabled = (enabled and getattr(self.out, "isatty", lambda: False)()
                        and os.environ.get("TBX_DISABLE_PROGRESS_BARS", "") in ("", "0"))
        self.total = total_runs
        self.done = 0
        self.points = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._last = 0.0

    def add(self, points: int = 0, runs: int = 0) -> None:
        if not self.enabled:
            return
        with self._lock:
            self.points += points
            self.done += runs
            now = time.monotonic()
            if now - self._last < 0.2 and runs == 0:
                return
            self._last = now
            rate = self.points / max(now - self.started, 1e-9)
            self.out.write(f"\rtbx sync: runs {self.done}/{self.total} · items {self.points:,} "
                           f"· {rate:,.0f}/s   ")
            self.out.flush()

    def close(self) -> None:
        if self.enabled:
            self.out.write("\n")
            self.out.flush()


def select(refs: list[RunRef], runs: str | None, shard: tuple[int, int] | None) -> tuple[list[RunRef], int]:
    """The runs this sync carries, and how many were left out.

    ``runs`` is a shell glob matched against the run name (or key). A shard
    takes the runs whose key hashes (CRC-32) to ``i`` modulo ``n``: stable as
    the source grows, so each machine of a split migration keeps its runs.
    """
    chosen = []
    for ref in refs:
        if runs and not (fnmatch.fnmatchcase(ref.name, runs) or fnmatch.fnmatchcase(ref.key, runs)):
            continue
        if shard and zlib.crc32(ref.key.encode()) % shard[1] != shard[0]:
            continue
        chosen.append(ref)
    return chosen, len(refs) - len(chosen)


def _meta_digest(run: RunData) -> str:
    meta = {
        "params": {k: param_text(v) for k, v in run.params.items()}, "tags": run.tags,
        "labels": run.labels, "notes": run.notes, "group": run.group, "job_type": run.job_type,
        "start": run.start_time, "end": run.end_time, "status": run.status, "project": run.project,
        "summary": {k: repr(v) for k, v in run.summary.items()},
    }
    return hashlib.sha256(json.dumps(meta, sort_keys=True, default=repr).encode()).hexdigest()


def _file_mark(data: bytes) -> int:
    return zlib.crc32(data) + 1  # never 0, so "carried" differs from "absent"


class _Plan:
    """What a run still needs: per (kind, tag) the slice not yet carried."""

    def __init__(self, exp: RunData, counts: dict[str, dict[str, int]], report: RunReport) -> None:
        self.slices: list[tuple[str, str, Any, int]] = []  # kind, tag, new items, new count
        self.counts = {k: dict(v) for k, v in counts.items()}
        for kind in SERIES_KINDS:
            kc = report.kind(kind) if exp.series.get(kind) else None
            for tag, items in exp.items(kind):
                done = self.counts.get(kind, {}).get(tag, 0)
                if done > len(items):
                    report.problem(f"{kind} {tag!r}: the source now has {len(items)} items but "
                                   f"{done} were carried before (was the source rewritten?); not re-sent")
                    done = len(items)
                kc.already += done
                if done < len(items):
                    self.slices.append((kind, tag, items[done:], done))
        self.files = []
        carried = self.counts.get("files", {})
        for f in exp.files:
            if carried.get(f.path) == _file_mark(f.data):
                report.kind("files").already += 1
            else:
                self.files.append(f)

    @property
    def items(self) -> int:
        return sum(len(s[2]) for s in self.slices) + len(self.files)


def _prefix_counts(exp: RunData, back: RunData) -> dict[str, dict[str, int]]:
    """Per (kind, tag), how many leading items of ``exp`` the destination already holds."""
    counts: dict[str, dict[str, int]] = {}
    for kind in SERIES_KINDS:
        for tag, items in exp.items(kind):
            have = back.series.get(kind, {}).get(tag)
            if have is None:
                continue
            n = min(len(items), len(have))
            if kind == "scalars":
                ok = (items.steps[:n] == have.steps[:n]) & same_float(items.values[:n], have.values[:n])
                bad = np.flatnonzero(~ok)
                n = int(bad[0]) if len(bad) else n
            else:
                n = next((i for i in range(n) if not items[i].same(have[i])), n)
            counts.setdefault(kind, {})[tag] = n
    have_files = {f.path: f.data for f in back.files}
    for f in exp.files:
        if have_files.get(f.path) == f.data:
            counts.setdefault("files", {})[f.path] = _file_mark(f.data)
    return counts


def verify(exp: RunData, back: RunData, report: RunReport) -> None:
    """Compare what the destination holds with what was meant to be there."""
    for kind in SERIES_KINDS:
        for tag, items in exp.items(kind):
            kc = report.kind(kind)
            have = back.series.get(kind, {}).get(tag)
            if have is None:
                report.mismatch.append(f"{kind} {tag!r}: missing in the destination ({len(items)} expected)")
                continue
            if len(have) != len(items):
                report.mismatch.append(f"{kind} {tag!r}: {len(have)} items in the destination, {len(items)} expected")
            n = min(len(have), len(items))
            if kind == "scalars":
                ok = ((items.steps[:n] == have.steps[:n]) & same_float(items.values[:n], have.values[:n])
                      & (np.abs(items.wall_times[:n] - have.wall_times[:n]) <= WALL_TOLERANCE))
                kc.verified += int(ok.sum())
                bad = np.flatnonzero(~ok)
                if len(bad):
                    i = int(bad[0])
                    report.mismatch.append(
                        f"scalars {tag!r}: {len(bad)} points differ; first at index {i}: expected "
                        f"(step {items.steps[i]}, {items.values[i]!r}, t={items.wall_times[i]:.3f}), found "
                        f"(step {have.steps[i]}, {have.values[i]!r}, t={have.wall_times[i]:.3f})")
            else:
                ok_items = [items[i].same(have[i]) for i in range(n)]
                kc.verified += sum(ok_items)
                if not all(ok_items):
                    i = ok_items.index(False)
                    report.mismatch.append(f"{kind} {tag!r}: item {i} (step {items[i].step}) differs in the destination")
    if exp.params:
        kc = report.kind("params")
        back_params = flatten(back.params)
        for k, v in flatten(exp.params).items():
            if k in back_params and param_text(back_params[k]) == param_text(v):
                kc.verified += 1
            else:
                report.mismatch.append(f"param {k!r}: expected {param_text(v)[:80]!r}, found "
                                       f"{param_text(back_params.get(k, '<missing>'))[:80]!r}")
    if exp.tags:
        kc = report.kind("tags")
        for k, v in exp.tags.items():
            if back.tags.get(k) == v:
                kc.verified += 1
            else:
                report.mismatch.append(f"tag {k!r}: expected {v[:80]!r}, found {str(back.tags.get(k))[:80]!r}")
    if exp.summary:
        kc = report.kind("summary")
        for k, v in exp.summary.items():
            if k in back.summary and same_value(back.summary[k], v):
                kc.verified += 1
            else:
                report.mismatch.append(f"summary {k!r}: expected {str(v)[:80]!r}, found "
                                       f"{str(back.summary.get(k, '<missing>'))[:80]!r}")
    if exp.files:
        kc = report.kind("files")
        have_files = {f.path: f.data for f in back.files}
        for f in exp.files:
            if have_files.get(f.path) == f.data:
                kc.verified += 1
            else:
                report.mismatch.append(f"file {f.path!r}: " + ("missing" if f.path not in have_files else "differs")
                                       + " in the destination")


class _Abort(Exception):
    pass


class Engine:
    """One sync of ``source`` to ``destination`` (see :func:`sync`)."""

    def __init__(self, source: Source, destination: Destination, *, runs: str | None = None,
                 workers: int = 1, shard: tuple[int, int] | None = None, dry_run: bool = False,
                 ledger: str | None = None, strict: bool = False, progress: bool = False,
                 commit_every: int | None = None, verify: bool = True) -> None:
        if workers < 1:
            raise SyncError(f"workers must be at least 1, got {workers}")
        if shard is not None and not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
            raise SyncError(f"shard must be I/N with 0 <= I < N, got {shard[0]}/{shard[1]}")
        self.source = source
        self.destination = destination
        self.runs = runs
        self.workers = workers
        self.shard = shard
        self.dry_run = dry_run
        self.ledger_path = ledger or default_path(source.spec, destination.spec)
        self.strict = strict
        self.progress_on = progress
        self.commit_every = commit_every
        self.verify = verify
        self._stop: str | None = None
        self._fatal: BaseException | None = None

    def run(self) -> SyncReport:
        report = SyncReport(self.source.spec, self.destination.spec, self.dry_run)
        t0 = time.monotonic()
        self.source.check()
        self.destination.source_spec = self.source.spec
        self.destination.check()
        refs, report.skipped_runs = select(self.source.list_runs(), self.runs, self.shard)
        try:
            ledger = Ledger(self.ledger_path, self.source.spec, self.destination.spec)
        except (OSError, ValueError) as exc:
            raise SyncError(f"cannot open the ledger {self.ledger_path}: {exc}") from exc
        progress = Progress(len(refs), self.progress_on)
        try:
            if self.workers == 1 or len(refs) <= 1:
                results = [self._one(ref, ledger, progress) for ref in refs]
            else:
                with ThreadPoolExecutor(self.workers, thread_name_prefix="tbx-sync") as pool:
                    results = list(pool.map(lambda r: self._one(r, ledger, progress), refs))
        finally:
            progress.close()
            ledger.close()
        report.runs = [r for r in results if r is not None]
        report.aborted = self._stop
        report.fatal = self._fatal
        report.seconds = time.monotonic() - t0
        return report

    def _one(self, ref: RunRef, ledger: Ledger, progress: Progress) -> RunReport | None:
        if self._stop:
            return None
        rr = RunReport(ref.name, ref.key)
        t0 = time.monotonic()
        try:
            self._carry(ref, ledger, rr, progress)
        except _Abort:
            pass
        except (DataLossError, ConnectError) as exc:
            rr.status, rr.error = "failed", str(exc)
            if isinstance(exc, ConnectError) or self.strict:
                self._stop = self._stop or str(exc)
                if isinstance(exc, ConnectError):
                    self._fatal = exc
        except Exception as exc:  # one run's failure must not stop the others
            rr.status, rr.error = "failed", f"{type(exc).__name__}: {exc}"
        rr.seconds = time.monotonic() - t0
        progress.add(runs=1)
        return rr

    def _carry(self, ref: RunRef, ledger: Ledger, rr: RunReport, progress: Progress) -> None:
        entry = ledger.get(ref.key)
        data = self.source.read_run(ref, rr)
        for kind in SERIES_KINDS:
            if data.series.get(kind):
                rr.kind(kind).read = data.count(kind)
        for kind in ("params", "tags", "summary", "files"):
            if data.count(kind):
                rr.kind(kind).read = data.count(kind)
        dest: DestRun = self.destination.open_run(data, entry.state if entry else None)
        try:
            rr.destination = dest.ident
            exp = dest.expected(data, rr)
            counts = entry.counts if entry else {}
            if entry is None and dest.existing:
                counts = _prefix_counts(exp, dest.read_back())
            plan = _Plan(exp, counts, rr)
            meta = _meta_digest(exp)
            meta_changed = entry is None or entry.meta != meta
            if not meta_changed:
                for kind in ("params", "tags", "summary"):
                    if exp.count(kind):
                        rr.kind(kind).already = exp.count(kind)
            if not plan.items and not meta_changed:
                rr.status = "up-to-date"
                return
            if self.dry_run:
                rr.status = "would-carry"
                for kind, _tag, items, _done in plan.slices:
                    rr.kind(kind).written += len(items)
                if plan.files:
                    rr.kind("files").written += len(plan.files)
                return
            dest.write_meta(exp)
            if meta_changed:
                for kind in ("params", "tags", "summary"):
                    if exp.count(kind):
                        rr.kind(kind).written = exp.count(kind)
            self._write(dest, plan, ledger, ref, meta, rr, progress)
            dest.finish(exp)
            ledger.save(ref.key, ref.name, Entry(dest.state, plan.counts, meta, "carried"))
            rr.status = "carried"
            rr.destination = dest.ident
            if self.verify:
                verify(exp, dest.read_back(), rr)
        finally:
            dest.close()

    def _write(self, dest: DestRun, plan: _Plan, ledger: Ledger, ref: RunRef, meta: str, rr: RunReport,
               progress: Progress) -> None:
        # items per commit: the caller's choice, else the destination's
        # (W&B writes one offline fragment per commit), else 100k
        every = max(1, self.commit_every or getattr(dest, "commit_every", None) or 100_000)
        pending = 0
        pending_counts: list[tuple[str, str, int]] = []

        def commit() -> None:
            nonlocal pending
            dest.commit()
            for kind, tag, n in pending_counts:
                plan.counts.setdefault(kind, {})[tag] = n
            pending_counts.clear()
            # meta is recorded only at the end: a resumed sync rewrites it (idempotent).
            ledger.save(ref.key, ref.name, Entry(dest.state, plan.counts, None, "partial"))
            progress.add(points=pending)
            pending = 0

        for kind, tag, items, done in plan.slices:
            kc = rr.kind(kind)
            for start in range(0, len(items), every):
                if self._stop:
                    raise _Abort()
                chunk = items[start:start + every]
                dest.write(kind, tag, chunk)
                kc.written += len(chunk)
                pending += len(chunk)
                pending_counts.append((kind, tag, done + start + len(chunk)))
                if pending >= every:
                    commit()
        for f in plan.files:
            dest.write("files", f.path, [f])
            rr.kind("files").written += 1
            pending += 1
            pending_counts.append(("files", f.path, _file_mark(f.data)))
        commit()


def sync(source: Source, destination: Destination, **options: Any) -> SyncReport:
    """Carry every selected run of ``source`` to ``destination``; see :class:`Engine` for options.

    Returns the :class:`~tbx.converters.report.SyncReport`. Raises
    :class:`~tbx.converters.base.SyncError` when the sync cannot start
    (bad endpoint, unreachable tracker, unusable ledger).
    """
    return Engine(source, destination, **options).run()


__all__ = ["Engine", "Progress", "select", "sync", "verify"]
