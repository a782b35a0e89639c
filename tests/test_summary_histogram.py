"""SummaryWriter.add_histogram / add_histogram_raw: binning rules and what is written.

Rows are read back independently (writer_util) and compared with numpy's
histogram, with torch's own 'tensorflow' binning, and with TensorBoard's loaders.
"""

import time
import warnings

import numpy as np
import pytest
import torch
from torch.utils.tensorboard import summary as torch_summary

from tbx import SummaryWriter
from writer_util import (
    DBL_MAX, acc_tensors, histogram_row_problems, histogram_rows, legacy_accumulator, plugin_accumulator,
    static_check,
)


def _rows(tmp_path, tag, *args, **kwargs):
    """Log one histogram in a fresh run and return its rows."""
    logdir = tmp_path / tag.replace("/", "_")
    with SummaryWriter(logdir) as writer:
        writer.add_histogram(tag, *args, **kwargs)
    [(_step, rows)] = histogram_rows(logdir, tag)
    assert histogram_row_problems(rows) == [], histogram_row_problems(rows)
    return rows


def _trimmed(counts, edges):
    """numpy counts/edges as rows without empty end buckets."""
    nz = np.flatnonzero(counts)
    if not nz.size:
        return np.zeros((0, 3))
    a, b = nz[0], nz[-1] + 1
    return np.stack([edges[:-1][a:b], edges[1:][a:b], np.asarray(counts, np.float64)[a:b]], axis=1)


def _tf_edges():
    """TensorFlow's default bucket edges, built the way histogram.cc does."""
    positive, edge = [], 1e-12
    while edge < 1e20:
        positive.append(edge)
        edge *= 1.1
    return np.array([-e for e in reversed(positive)] + [0.0] + positive)


def _contiguous(rows):
    return np.array_equal(rows[1:, 0], rows[:-1, 1])


RNG = np.random.default_rng(11)
NORMAL = RNG.normal(3.0, 2.0, size=20_000)


# --- default and int bins --------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_default_bins_are_64_equal_width_min_to_max(tmp_path, dtype):
    values = NORMAL.astype(dtype)
    rows = _rows(tmp_path, "h", values, 0)
    lo, hi = float(values.min()), float(values.max())
    assert rows.shape == (64, 3)  # min and max are data points, so no end bucket is empty
    assert np.allclose(rows[:, 0], np.linspace(lo, hi, 65)[:-1], rtol=0, atol=1e-12 * (hi - lo))
    assert rows[0, 0] == lo and rows[-1, 1] == hi and _contiguous(rows)
    counts, _edges = np.histogram(values.astype(np.float64), bins=64, range=(lo, hi))
    assert np.array_equal(rows[:, 2], counts) and rows[:, 2].sum() == values.size


@pytest.mark.parametrize("k", [1, 7, 254, 255, 1000])
def test_int_bins(tmp_path, k):
    rows = _rows(tmp_path, "h", NORMAL, 0, bins=k)
    counts, edges = np.histogram(NORMAL, bins=k)
    want = _trimmed(counts, edges)
    assert rows.shape == want.shape and rows.shape[0] <= k
    assert np.allclose(rows[:, :2], want[:, :2], rtol=1e-12) and np.array_equal(rows[:, 2], want[:, 2])
    assert rows[:, 2].sum() == NORMAL.size


INT_DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_integer_dtypes(tmp_path, dtype):
    info = np.iinfo(dtype)
    values = RNG.integers(max(info.min, -1000), min(info.max, 1000), size=3000, endpoint=True).astype(dtype)
    rows = _rows(tmp_path, "h", values, 0)
    lo, hi = float(values.min()), float(values.max())
    assert rows[0, 0] == lo and rows[-1, 1] == hi and rows[:, 2].sum() == values.size
    counts, edges = np.histogram(values.astype(np.float64), bins=64, range=(lo, hi))
    assert np.array_equal(rows, _trimmed(counts, edges))


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_integer_dtype_extremes(tmp_path, dtype):
    """min and max of the dtype must not overflow the binning (rounding near edges is allowed)."""
    info = np.iinfo(dtype)
    values = np.array([info.min, info.min + 1, info.min // 2 + info.max // 2, info.max - 1, info.max], dtype=dtype)
    rows = _rows(tmp_path, "h", values, 0)
    assert rows[0, 0] == float(info.min) and rows[-1, 1] == float(info.max) and rows[:, 2].sum() == 5
    assert rows.shape == (64, 3) and rows[0, 2] == 2 and rows[-1, 2] == 2


@pytest.mark.parametrize("bins", [None, 10, "tensorflow", "auto"])
def test_constant_input(tmp_path, bins):
    rows = _rows(tmp_path, "h", np.full(50, 2.5), 0, bins=bins)
    assert rows.shape == (1, 3) and rows[0, 2] == 50
    assert rows[0, 0] <= 2.5 <= rows[0, 1]


# --- 'tensorflow', rules, edges, max_bins ------------------------------------------

def test_tensorflow_bins_match_torch(tmp_path):
    values = np.concatenate([NORMAL, -NORMAL[:500] * 1e-6, [1e-11, -3e-12]])
    rows = _rows(tmp_path, "h", values, 0, bins="tensorflow")
    edges = _tf_edges()
    assert rows[0, 0] >= values.min() and rows[-1, 1] <= values.max()
    assert rows[0, 0] == values.min() and rows[-1, 1] == values.max()  # open ends clipped to the data
    assert rows[:, 2].sum() == values.size and _contiguous(rows)
    assert np.isin(rows[1:, 0], edges).all() and np.isin(rows[:-1, 1], edges).all()
    histo = torch_summary.histogram("h", values, bins=list(edges)).value[0].histo
    limits, counts = np.array(histo.bucket_limit), np.array(histo.bucket)
    torch_rows = np.stack([limits[:-1], limits[1:], counts[1:]], axis=1)  # bucket 0 is torch's empty left pad
    assert np.array_equal(rows[:, 2], torch_rows[:, 2])
    assert np.array_equal(rows[1:, 0], torch_rows[1:, 0]) and np.array_equal(rows[:-1, 1], torch_rows[:-1, 1])


def test_tensorflow_bins_beyond_the_edges(tmp_path):
    values = np.array([-1e25, -1.0, 0.0, 2.0, 1e30])
    rows = _rows(tmp_path, "h", values, 0, bins="tensorflow")
    assert rows[0].tolist()[::2] == [-1e25, 1.0] and rows[-1].tolist()[1:] == [1e30, 1.0]
    assert rows[:, 2].sum() == 5


@pytest.mark.parametrize("rule", ["auto", "fd", "sturges", "sqrt"])
def test_numpy_rules(tmp_path, rule):
    rows = _rows(tmp_path, "h", NORMAL, 0, bins=rule)
    counts, edges = np.histogram(NORMAL, bins=rule)
    assert np.array_equal(rows, _trimmed(counts, edges))


def test_explicit_edges_count_only_values_inside(tmp_path):
    values = np.array([-5.0, -0.5, 0.1, 0.2, 0.7, 1.0, 9.0])
    rows = _rows(tmp_path, "h", values, 0, bins=[-1.0, 0.0, 0.5, 1.0, 2.0, 3.0])
    assert rows.tolist() == [[-1.0, 0.0, 1.0], [0.0, 0.5, 2.0], [0.5, 1.0, 1.0], [1.0, 2.0, 1.0]]
    rows = _rows(tmp_path, "h2", values, 0, bins=np.array([10.0, 11.0]))
    assert rows.shape == (0, 3)


@pytest.mark.parametrize("bins,max_bins", [(None, 10), (1000, 7), ("tensorflow", 5), (None, 1), (None, 64)])
def test_max_bins_merges_neighbours(tmp_path, bins, max_bins):
    full = _rows(tmp_path, "full", NORMAL, 0, bins=bins)
    rows = _rows(tmp_path, "merged", NORMAL, 0, bins=bins, max_bins=max_bins)
    assert 1 <= rows.shape[0] <= max_bins
    assert rows[0, 0] == full[0, 0] and rows[-1, 1] == full[-1, 1] and _contiguous(rows)
    assert rows[:, 2].sum() == NORMAL.size
    assert set(rows[:, 0]) <= set(full[:, 0])  # merging only removes edges


# --- non-finite values ---------------------------------------------------------------

def test_nonfinite_values_dropped_counted_warned_once_per_tag(tmp_path):
    values = np.array([1.0, np.nan, 2.0, np.inf, -np.inf, 3.0, np.nan])
    with pytest.warns(RuntimeWarning, match="NaN/inf") as record:
        with SummaryWriter(tmp_path) as writer:
            for step in range(3):
                writer.add_histogram("a", values, step)
                writer.add_histogram("b", torch.from_numpy(values[:3]), step)
                writer.add_histogram("clean", values[[0, 2, 5]], step)
            writer.flush()
            assert writer.nonfinite_dropped == {"a": 12, "b": 3}
    assert sorted(str(w.message).split("'")[1] for w in record if "NaN/inf" in str(w.message)) == ["a", "b"]
    for step, rows in histogram_rows(tmp_path, "a"):
        assert rows[:, 2].sum() == 3 and rows[0, 0] == 1.0 and rows[-1, 1] == 3.0
    assert static_check(tmp_path, header_first=False) == []


def test_all_nan_gives_empty_histogram(tmp_path):
    with pytest.warns(RuntimeWarning), SummaryWriter(tmp_path) as writer:
        writer.add_histogram("h", np.full(10, np.nan, dtype=np.float32), 0)
        writer.add_histogram("h", np.array([np.inf, -np.inf]), 1, bins="tensorflow")
        writer.flush()
        assert writer.nonfinite_dropped == {"h": 12}
    assert [(s, r.shape) for s, r in histogram_rows(tmp_path, "h")] == [(0, (0, 3)), (1, (0, 3))]
    for acc in (legacy_accumulator(tmp_path), plugin_accumulator(tmp_path)):
        assert [np.asarray(v).shape for _s, v in acc_tensors(acc, "h")] == [(0, 3), (0, 3)]


class _SlowDict(dict):
    """A dict whose reads yield the GIL, to widen any read-modify-write window."""

    def get(self, *args):
        value = super().get(*args)
        time.sleep(0.001)
        return value

    def __getitem__(self, key):
        value = super().__getitem__(key)
        time.sleep(0.001)
        return value


def test_nonfinite_count_exact_under_concurrent_jobs(tmp_path):
    """Histograms are binned on a thread pool; the per-tag count must not lose updates."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with SummaryWriter(tmp_path) as writer:
            writer.nonfinite_dropped = _SlowDict()
            for step in range(200):
                writer.add_histogram("h", np.array([np.nan, 1.0, np.inf]), step)
            writer.flush()
            assert writer.nonfinite_dropped == {"h": 400}


def test_huge_range_gives_finite_edges(tmp_path):
    """max - min overflows float64: the edges must stay finite and ordered."""
    values = np.array([-1.5e308, 0.0, 1.5e308])
    for bins in (None, 8, "tensorflow"):
        rows = _rows(tmp_path, f"h{bins}", values, 0, bins=bins)
        assert rows[:, 2].sum() == 3, (bins, rows)


# --- snapshot semantics ----------------------------------------------------------------

def test_mutating_values_after_the_call_does_not_change_what_is_logged(tmp_path):
    expected = []
    with SummaryWriter(tmp_path) as writer:
        for step in range(60):
            array = np.random.default_rng(step).normal(size=20_000)
            expected.append(_trimmed(*np.histogram(array, bins=64)))
            writer.add_histogram("np", array, step)
            array[:] = 1e9  # right after the call returns, while the pool may still be binning
            tensor = torch.from_numpy(np.random.default_rng(step).normal(size=20_000))
            writer.add_histogram("torch", tensor, step)
            tensor.fill_(-1e9)
    for tag in ("np", "torch"):
        got = histogram_rows(tmp_path, tag)
        assert [s for s, _r in got] == list(range(60))
        for (step, rows), want in zip(got, expected):
            assert np.allclose(rows[:, :2], want[:, :2], rtol=1e-12) and np.array_equal(rows[:, 2], want[:, 2]), (tag, step)


# --- add_histogram_raw ---------------------------------------------------------------------

def test_add_histogram_raw_tf_style_is_trimmed_and_clipped(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_histogram_raw("tf", min=0.5, max=0.5, num=1, sum=0.5, sum_squares=0.25,
                                 bucket_limits=[-DBL_MAX, 0.0, 1.0, DBL_MAX], bucket_counts=[0, 0, 1, 0], global_step=0)
        # torch's documented example: np.histogram counts with limits[1:] as right edges
        data = np.concatenate([[i + 0.001] * i for i in range(50)])
        counts, limits = np.histogram(data, bins=np.arange(52))
        writer.add_histogram_raw("torch_doc", data.min(), data.max(), data.size, data.sum(), data.dot(data),
                                 limits[1:].tolist(), counts.tolist(), global_step=1)
        writer.add_histogram_raw("arrays", np.float32(-2.0), torch.tensor(4.0), 6, 3.0, 30.0,
                                 torch.tensor([-1.0, 0.0, 2.0, 4.0]), np.array([1, 2, 0, 3]), global_step=2)
    assert static_check(tmp_path, header_first=False) == []
    assert [(s, r.tolist()) for s, r in histogram_rows(tmp_path, "tf")] == [(0, [[0.5, 0.5, 1.0]])]
    [(_s, rows)] = histogram_rows(tmp_path, "torch_doc")
    assert rows[0].tolist() == [data.min(), 2.0, 1.0] and rows[-1].tolist() == [49.0, data.max(), 49.0]
    assert rows[:, 2].sum() == data.size and rows.shape == (49, 3)
    [(_s, rows)] = histogram_rows(tmp_path, "arrays")
    assert rows.tolist() == [[-2.0, -1.0, 1.0], [-1.0, 0.0, 2.0], [0.0, 2.0, 0.0], [2.0, 4.0, 3.0]]
    for acc in (legacy_accumulator(tmp_path), plugin_accumulator(tmp_path)):
        assert [s for s, _v in acc_tensors(acc, "torch_doc")] == [1]


# --- CUDA --------------------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")
def test_cuda_tensor_binned_on_device(tmp_path, monkeypatch):
    import tbx.writer as writer_module

    seen = []
    real_job = writer_module._device_histogram_job

    def spy(writer, tag, tensor, *args):
        seen.append((tag, tensor.device.type))
        return real_job(writer, tag, tensor, *args)

    monkeypatch.setattr(writer_module, "_device_histogram_job", spy)
    cpu = torch.randn(200_000, generator=torch.Generator().manual_seed(5))
    cpu[:7] = float("nan")
    gpu = cpu.cuda()
    ints = torch.randint(-50, 50, (10_000,), generator=torch.Generator().manual_seed(6))
    with pytest.warns(RuntimeWarning, match="NaN/inf"), SummaryWriter(tmp_path) as writer:
        writer.add_histogram("cpu", cpu, 0)
        writer.add_histogram("gpu", gpu, 0)
        writer.add_histogram("cpu32", cpu, 0, bins=32, max_bins=10)
        writer.add_histogram("gpu32", gpu, 0, bins=32, max_bins=10)
        writer.add_histogram("cpu_int", ints, 0)
        writer.add_histogram("gpu_int", ints.cuda(), 0)
        writer.add_histogram("gpu_tf", gpu, 0, bins="tensorflow")  # a rule: binned on the host
        gpu.fill_(0.0)  # after the call: must not change what is logged
        writer.flush()
        assert writer.nonfinite_dropped == {"cpu": 7, "gpu": 7, "cpu32": 7, "gpu32": 7, "gpu_tf": 7}
    assert sorted(seen) == [("gpu", "cuda"), ("gpu32", "cuda"), ("gpu_int", "cuda")]
    assert static_check(tmp_path, header_first=False) == []
    for cpu_tag, gpu_tag in (("cpu", "gpu"), ("cpu32", "gpu32"), ("cpu_int", "gpu_int")):
        [(_s, want)] = histogram_rows(tmp_path, cpu_tag)
        [(_s, got)] = histogram_rows(tmp_path, gpu_tag)
        assert got.shape == want.shape, cpu_tag
        assert np.allclose(got[:, :2], want[:, :2], rtol=1e-9, atol=1e-9), cpu_tag
        assert got[:, 2].sum() == want[:, 2].sum()
        assert np.abs(got[:, 2] - want[:, 2]).sum() <= 20, cpu_tag  # values on a bucket edge may move
