"""What a backend provides: a :class:`Source`, a :class:`Destination`, or both.

Adding a tracker means one module with these classes and one entry in
:mod:`tbx.converters.endpoints`. The engine (:mod:`tbx.converters.engine`)
does everything else: selection, the ledger, incremental slicing, batching of
commits, parallelism, verification and the report.

Contract of a destination run (:class:`DestRun`):

1. ``expected(run, report)`` returns the run as this destination will store it
   (keys sanitized, values rounded, unsupported items removed), counting
   every change in ``report.transformed`` and every loss in
   ``report.dropped``. It must be deterministic and item-local, so that the
   first *n* items of a tag stay the same when the source grows.
2. ``write_meta`` then ``write(kind, tag, items)`` (only items not carried
   before) then ``commit()``: after ``commit`` returns, everything written is
   durable and ``state`` describes it. The engine saves ``state`` and the
   per-tag counts in the ledger after each commit.
3. Items written after the last commit may or may not have arrived when a
   sync dies; the next sync sends them again, so a destination must make a
   repeated write of the same items harmless (MLflow ignores an identical
   metric; a tfevents destination truncates its files back to the committed
   size from ``state``).
4. ``read_back()`` reads the run from the destination (not from memory), in
   the form ``expected`` returns, for verification.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tbx.converters.model import RunData
from tbx.converters.report import RunReport
from tbx.errors import TbxError


class SyncError(TbxError):
    """A sync cannot start or go on: bad endpoint, unreachable server (exit status 2)."""

    exit_code = 2


class UsageError(SyncError):
    """Bad command-line arguments or endpoint specification."""


class ConnectError(SyncError):
    """A tracker could not be reached or refused the request."""


@dataclasses.dataclass(frozen=True)
class RunRef:
    """A run as listed by a source: ``key`` is stable across syncs, ``name`` is for people."""

    key: str
    name: str
    extra: Any = None  # backend-private (a path, a run object)


class Source:
    """Reads runs into the neutral model."""

    #: e.g. ``"tfevents:runs/"``; used in messages, the report and the ledger's identity.
    spec: str = ""

    def check(self) -> None:
        """Raise :class:`SyncError` if the source cannot be read at all."""

    def list_runs(self) -> list[RunRef]:
        raise NotImplementedError

    def read_run(self, ref: RunRef, report: RunReport) -> RunData:
        """The whole run (every item, in source order); losses go into ``report``."""
        raise NotImplementedError


class DestRun:
    """One run being written to a destination (used by one worker thread)."""

    #: the destination's name for the run (a path, a run id), for the report.
    ident: str = ""
    #: JSON-able state saved in the ledger after every commit.
    state: dict[str, Any]
    #: True when the run was found in the destination without a ledger entry
    #: (the engine then reads it back to learn what is already there).
    existing: bool = False

    def expected(self, run: RunData, report: RunReport) -> RunData:
        raise NotImplementedError

    def write_meta(self, run: RunData) -> None:
        raise NotImplementedError

    def write(self, kind: str, tag: str, items: Any) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def finish(self, run: RunData) -> None:
        """Called once per sync after the last commit (end time, status)."""

    def read_back(self) -> RunData:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources; called even after an error."""


class Destination:
    """Writes runs from the neutral model."""

    spec: str = ""
    #: the source's spec, set by the engine before any run is opened; a
    #: destination that finds runs by their source key (MLflow) also matches
    #: on it, so two logdirs with the same run names never share a run.
    source_spec: str | None = None

    def check(self) -> None:
        """Raise :class:`SyncError` if the destination cannot be written at all."""

    def open_run(self, run: RunData, state: dict[str, Any] | None) -> DestRun:
        """Open the destination run for ``run`` (looking it up is fine).

        Nothing may be created before ``write_meta``: a dry run opens runs,
        asks for ``expected`` and closes them without writing.

        ``state`` is what the ledger saved at the last commit for this run,
        or None on the first sync.
        """
        raise NotImplementedError
