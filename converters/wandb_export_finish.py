"""Waiting until wandb-core has written the whole ``.wandb`` log of a finished run.

An offline fragment counts as finished only once its log holds the exit
record (see :mod:`tbx.converters.wandb_export`'s module doc).
"""

from __future__ import annotations

import os
import struct
import time

from tbx.converters.base import SyncError

#: seconds to wait for wandb-core to write the end of a finished run's log.
FINISH_WAIT = 120.0
_BLOCK, _CHUNK_HEADER, _LOG_HEADER = 32 * 1024, 7, 7  # the .wandb log's framing


def log_finished(path: str) -> bool:
    """Whether the run's ``.wandb`` log holds its exit record, so every record before it too.

    wandb-core writes the log a 32 KiB block at a time and the last, partial
    block only when it closes the run's stream, which ``run.finish()`` does
    not wait for. The exit record comes after every history row, so it is
    looked for in the last two blocks only (chunk headers:
    ``crc32 | length | type``, TRACKERS.md §1b; checksums are not needed to
    find a record).
    """
    from wandb.proto import wandb_internal_pb2 as pb

    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            start = max(0, (max(size, 1) - 1) // _BLOCK * _BLOCK - _BLOCK)
            f.seek(start)
            data = f.read()
    except OSError:
        return False
    p = _LOG_HEADER if start == 0 else 0
    parts: list[bytes] | None = None  # a record split over chunks
    while True:
        left = _BLOCK - (start + p) % _BLOCK
        if left < _CHUNK_HEADER:  # zero padding at the end of a block
            p += left
        if p + _CHUNK_HEADER > len(data):
            return False
        length, kind = struct.unpack_from("<HB", data, p + 4)
        payload = data[p + _CHUNK_HEADER:p + _CHUNK_HEADER + length]
        if kind == 0 or len(payload) < length:
            return False  # the written part ends here
        p += _CHUNK_HEADER + length
        if kind == 2:  # FIRST
            parts = [payload]
            continue
        if kind in (3, 4) and parts is not None:  # MIDDLE, LAST
            parts.append(payload)
            if kind == 3:
                continue
            payload = b"".join(parts)
        elif kind != 1:  # FULL
            continue
        parts = None
        try:
            if pb.Record.FromString(payload).WhichOneof("record_type") == "exit":
                return True
        except Exception:  # a damaged record is not the exit record
            pass


def wait_for_log(path: str, timeout: float | None = None) -> None:
    """Wait until wandb-core has written the whole log of a finished run (see :func:`log_finished`)."""
    limit = FINISH_WAIT if timeout is None else timeout
    deadline = time.monotonic() + limit
    delay = 0.001
    while not log_finished(path):
        if time.monotonic() > deadline:
            raise SyncError(f"wandb-core has not written the end of {path} {limit:g} s after the run "
                            "finished (expected its exit record); the next sync writes this part again")
        time.sleep(delay)
        delay = min(2 * delay, 0.05)
