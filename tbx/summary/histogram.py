"""Histograms: a ``[k, 3]`` DT_DOUBLE tensor of (left edge, right edge, count) rows.

This is the form both TensorBoard loaders render correctly. tbx never writes
the legacy HistogramProto with TensorFlow's +-DBL_MAX edges, and never leaves
an empty bucket at either end (the Rust loader turns those into backwards
buckets).

Binning (the ``bins`` argument of ``SummaryWriter.add_histogram``):

* ``None`` (tbx's default): ``DEFAULT_BINS`` equal-width buckets from the
  minimum to the maximum. It costs one min/max pass and one counting pass,
  about 2 ms for a million float32 values, where TensorFlow-style exponential
  edges need a logarithm per value and numpy's ``'auto'`` a partial sort.
  TensorBoard's own summaries also use equal-width buckets (30), and its
  charts re-bin what they get anyway.
* ``'tensorflow'``: TensorFlow's exponential edges (+-1e-12 * 1.1**k and 0),
  the default of torch and tensorboardX, empty end buckets trimmed.
* an int: that many equal-width buckets from the minimum to the maximum.
* any other string numpy understands (``'auto'``, ``'fd'``, ...) or a sequence
  of edges: numpy's binning; values outside explicit edges are not counted.

Non-finite values (NaN, +-inf) cannot be placed in a bucket: they are dropped
and counted (``SummaryWriter.nonfinite_dropped``), with one warning per tag.
"""

import math

import numpy as np

from tbx.proto import plugin_data_pb2, tensor_pb2
from tbx.summary._metadata import TENSOR, metadata, value_record

PLUGIN_NAME = "histograms"
METADATA = metadata(PLUGIN_NAME, plugin_data_pb2.HistogramPluginData(version=0).SerializeToString(), TENSOR)
DEFAULT_BINS = 64


def _tf_edges():
    positive = []
    edge = 1e-12
    while edge < 1e20:
        positive.append(edge)
        edge *= 1.1
    positive = np.array(positive)
    return np.concatenate([-positive[::-1], [0.0], positive])


_TF_EDGES = None


def check_bins(bins):
    """Validate ``bins`` on the caller's thread; returns it normalised."""
    if bins is None or (isinstance(bins, str) and bins == "tensorflow"):
        return bins
    if isinstance(bins, (bool, np.bool_)):
        raise TypeError(f"bins must be None, 'tensorflow', a numpy bin rule, an int or a sequence of edges, got {bins!r}")
    if isinstance(bins, (int, np.integer)):
        if bins < 1:
            raise ValueError(f"bins must be a positive number of buckets, got {bins}")
        return int(bins)
    if isinstance(bins, str):
        known = ("auto", "fd", "doane", "scott", "stone", "rice", "sturges", "sqrt")
        if bins not in known:
            raise ValueError(f"bins={bins!r} is not a known rule; expected None, 'tensorflow', one of {known}, an int or edges")
        return bins
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2:
        raise ValueError(f"bins as edges must be a 1-D sequence of at least 2 numbers, got shape {edges.shape}")
    if not np.all(np.isfinite(edges)) or np.any(np.diff(edges) < 0):
        raise ValueError("bins as edges must be finite and increasing")
    return edges


def _uniform_counts(values, lo, hi, k):
    """Counts of k equal-width buckets over [lo, hi] (lo < hi, all values finite)."""
    work = np.float64
    if values.dtype in (np.float32, np.float16) and (hi - lo) < 3e38:
        work = np.float32
    scaled = np.subtract(values, work(lo), dtype=work)
    scaled *= work(k / (hi - lo))
    index = scaled.astype(np.uint8 if k < 255 else np.int32)
    counts = np.bincount(index, minlength=k + 1).astype(np.float64)
    counts[k - 1] += counts[k:].sum()  # the maximum lands exactly on the right edge
    return counts[:k]


def _trim(left, right, counts):
    nonzero = np.flatnonzero(counts)
    if nonzero.size == 0:
        return np.zeros((0, 3))
    first, last = nonzero[0], nonzero[-1] + 1
    return np.stack([left[first:last], right[first:last], counts[first:last]], axis=1)


def compute_bins(values, bins, max_bins=None):
    """``([k, 3] float64 rows, dropped non-finite count)`` for a numpy array."""
    values = np.ravel(values)
    if values.dtype.kind not in "fiu":
        values = values.astype(np.float64)
    lo, hi = values.min(), values.max()
    dropped = 0
    if values.dtype.kind == "f" and not (math.isfinite(lo) and math.isfinite(hi)):
        finite = values[np.isfinite(values)]
        dropped = values.size - finite.size
        values = finite
        if values.size == 0:
            return np.zeros((0, 3)), dropped
        lo, hi = values.min(), values.max()
    lo, hi = float(lo), float(hi)
    if bins is None or isinstance(bins, int):
        k = DEFAULT_BINS if bins is None else bins
        if lo == hi:
            rows = np.array([[lo - 0.5, hi + 0.5, float(values.size)]])
        else:
            if math.isfinite(hi - lo):
                counts = _uniform_counts(values, lo, hi, k)
            else:  # the range overflows float64: bin the halved values
                counts = _uniform_counts(np.multiply(values, 0.5, dtype=np.float64), lo * 0.5, hi * 0.5, k)
            t = np.arange(k + 1) / k
            edges = lo * (1 - t) + hi * t  # exact ends, no overflow
            rows = _trim(edges[:-1], edges[1:], counts)
    elif isinstance(bins, str) and bins == "tensorflow":
        global _TF_EDGES
        if _TF_EDGES is None:
            _TF_EDGES = _tf_edges()
        # bucket i holds values in (edge[i-1], edge[i]]; the first holds everything <= edge[0]
        index = np.searchsorted(_TF_EDGES, values, side="left")
        counts = np.bincount(index, minlength=_TF_EDGES.size + 1).astype(np.float64)
        rights = np.concatenate([_TF_EDGES, [np.inf]])
        lefts = np.concatenate([[-np.inf], _TF_EDGES])
        rows = _trim(lefts, rights, counts)
        rows[0, 0] = max(rows[0, 0], lo)  # clip the open ends to the data
        rows[-1, 1] = min(rows[-1, 1], hi)
    else:
        try:
            counts, edges = np.histogram(values, bins=bins)
        except (ValueError, MemoryError):  # e.g. a rule needs more buckets than fit: use the default
            return compute_bins(values, None, max_bins)[0], dropped
        rows = _trim(edges[:-1], edges[1:], counts.astype(np.float64))
    if max_bins is not None and rows.shape[0] > max_bins:
        rows = _merge(rows, max_bins)
    return rows, dropped


def _merge(rows, max_bins):
    group = -(-rows.shape[0] // max_bins)
    starts = np.arange(0, rows.shape[0], group)
    ends = np.minimum(starts + group, rows.shape[0]) - 1
    counts = np.add.reduceat(rows[:, 2], starts)
    return np.stack([rows[starts, 0], rows[ends, 1], counts], axis=1)


def raw_rows(min, max, bucket_limits, bucket_counts):
    """Rows from a legacy HistogramProto description (``add_histogram_raw``).

    Bucket i spans (limit[i-1], limit[i]]; the first starts at ``min`` and the
    last right edge is clipped to ``max``, so no +-DBL_MAX edge survives.
    """
    limits = np.asarray(bucket_limits, dtype=np.float64).ravel()
    counts = np.asarray(bucket_counts, dtype=np.float64).ravel()
    lefts = np.concatenate([[min], limits[:-1]])
    rows = _trim(lefts, limits.copy(), counts)
    if rows.shape[0]:
        rows[0, 0] = np.clip(rows[0, 0], min, rows[0, 1])
        rows[-1, 1] = np.clip(rows[-1, 1], rows[-1, 0], max) if max >= rows[-1, 0] else rows[-1, 1]
    return rows


def histogram_record(tag, rows, step, wall_time, with_metadata):
    """Framed Event bytes for ``[k, 3]`` rows."""
    rows = np.ascontiguousarray(rows, dtype="<f8")

    def fill(value):
        tensor = value.tensor
        tensor.dtype = tensor_pb2.DT_DOUBLE
        tensor.tensor_shape.dim.add(size=rows.shape[0])
        tensor.tensor_shape.dim.add(size=3)
        tensor.tensor_content = rows.tobytes()
        if with_metadata:
            value.metadata.CopyFrom(METADATA)

    return value_record(tag, step, wall_time, fill)
