"""Snapshot buffers: copies that own their memory, and buffers reused only after recycling."""

import numpy as np

from tbx import _snapshot


def test_snapshot_is_an_independent_copy_and_buffers_are_reused_after_recycling():
    a = np.arange(1000, dtype=np.float32).reshape(10, 100)
    copy, buffer = _snapshot.snapshot(a)
    a[:] = -1
    assert copy.dtype == np.float32 and copy.shape == (10, 100)
    assert np.array_equal(copy, np.arange(1000, dtype=np.float32).reshape(10, 100))
    second, other = _snapshot.snapshot(a)  # the first buffer is still in use: a new one
    assert other is not buffer and np.array_equal(copy.ravel()[:3], [0, 1, 2])
    _snapshot.recycle(buffer)
    third, reused = _snapshot.snapshot(np.full((10, 100), 7, np.float32))
    assert reused is buffer and np.all(third == 7)


def test_non_contiguous_input_is_copied_without_a_pooled_buffer():
    a = np.arange(100.0).reshape(10, 10).T
    copy, buffer = _snapshot.snapshot(a)
    assert buffer is None and np.array_equal(copy, a) and copy.flags.c_contiguous
    _snapshot.recycle(None)


def test_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(_snapshot, "MAX_CACHED_BYTES", 1000)
    monkeypatch.setattr(_snapshot, "_free", {})
    monkeypatch.setattr(_snapshot, "_cached", 0)
    buffers = [_snapshot.snapshot(np.zeros(100, np.float32))[1] for _ in range(5)]  # 400 bytes each
    for b in buffers:
        _snapshot.recycle(b)
    assert _snapshot._cached == 800 and len(_snapshot._free[400]) == 2
