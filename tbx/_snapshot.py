"""Reusable buffers for snapshots of large arrays handed to the encoder pool.

A media call copies its input on the caller's thread (so the caller may change
the array afterwards) and the pool encodes the copy. Fresh allocations of a few
hundred KB are page-faulted in every time, and the page faults of several
threads contend in the kernel; a copy made with numpy also gives the GIL away
and must win it back from the busy encoder threads. A snapshot here is a plain
memcpy into a buffer that earlier snapshots of the same size used, kept while
the GIL is held, and the buffer goes back to the free list when its job is done.

Thread-safety: snapshot and recycle may be called from any thread.
"""

import threading

import numpy as np

MAX_CACHED_BYTES = 64 << 20
"""Free buffers kept for reuse, in bytes, all sizes together."""

_free = {}
_cached = 0
_lock = threading.Lock()


def snapshot(array):
    """``(copy, buffer)``: a C-contiguous copy of ``array`` and the buffer to recycle, or None."""
    if not array.flags.c_contiguous or array.dtype.hasobject or array.nbytes == 0:
        return np.array(array, order="C", copy=True), None
    global _cached
    nbytes = array.nbytes
    with _lock:
        spare = _free.get(nbytes)
        buffer = spare.pop() if spare else None
        if buffer is not None:
            _cached -= nbytes
    if buffer is None:
        buffer = np.empty(nbytes, dtype=np.uint8)  # not zero-filled, unlike bytearray
    memoryview(buffer)[:] = memoryview(array).cast("B")
    return buffer.view(array.dtype).reshape(array.shape), buffer


def recycle(buffer):
    """Give a snapshot's buffer back once nothing uses the copy any more."""
    global _cached
    if buffer is None:
        return
    with _lock:
        if _cached + buffer.nbytes <= MAX_CACHED_BYTES:
            _free.setdefault(buffer.nbytes, []).append(buffer)
            _cached += buffer.nbytes
