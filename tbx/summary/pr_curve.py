"""PR curves: a float32 ``[6, n]`` tensor with ``pr_curves`` metadata.

The rows are, per threshold, the true positive, false positive, true negative
and false negative counts (weighted when weights are given), then precision
and recall. Threshold ``j`` of ``n`` is ``j / (n - 1)``: TensorBoard draws the
columns at ``linspace(0, 1, n)``, taking ``n`` from the tensor's shape.

A prediction ``p`` counts as positive at every threshold ``j`` with
``j <= floor(p * (n - 1))``, the bucketing TensorBoard's own summary uses.
tbx computes ``p * (n - 1)`` in float64 (exact for float32 inputs), so a
float32 prediction lying exactly on a threshold is never rounded across it.
Precision is ``tp / max(tp + fp, 1e-7)`` and recall ``tp / max(tp + fn, 1e-7)``,
so both are 0 where their denominator is 0, as in TensorBoard.
"""

import numbers

import numpy as np

from tbx.proto import plugin_data_pb2, tensor_pb2
from tbx.summary._metadata import TENSOR, metadata, value_record

PLUGIN_NAME = "pr_curves"
ROWS = ("true_positive_counts", "false_positive_counts", "true_negative_counts", "false_negative_counts",
        "precision", "recall")
"""The six rows of the tensor, named as add_pr_curve_raw's arguments."""
MIN_COUNT = 1e-7
_MAX_THRESHOLDS = 2**31 - 1


def summary_metadata(num_thresholds):
    """SummaryMetadata of a PR curve tag with ``num_thresholds`` columns."""
    content = plugin_data_pb2.PrCurvePluginData(version=0, num_thresholds=num_thresholds).SerializeToString()
    return metadata(PLUGIN_NAME, content, TENSOR)


def check_num_thresholds(num_thresholds):
    """``num_thresholds`` as an int >= 2; TypeError/ValueError naming it otherwise."""
    if isinstance(num_thresholds, (bool, np.bool_)) or not isinstance(num_thresholds, numbers.Integral):
        raise TypeError(f"num_thresholds must be an int >= 2, got {type(num_thresholds).__name__} {num_thresholds!r}")
    n = int(num_thresholds)
    if not 2 <= n <= _MAX_THRESHOLDS:
        raise ValueError(f"num_thresholds must be between 2 and {_MAX_THRESHOLDS}, got {n}")
    return n


def _real_array(array, name, allow_bool=True):
    kinds = "fiub" if allow_bool else "fiu"
    if array.dtype.kind not in kinds:
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    return array


def check_inputs(labels, predictions, weights):
    """Validate add_pr_curve's arrays on the caller's thread and snapshot them.

    Args:
        labels, predictions, weights: numpy arrays (weights may be None).

    Returns:
        ``(positive, predictions, weights)``: a bool array, a float32 or
        float64 array and a float64 array of the same shape or None, all
        fresh copies.

    Raises:
        TypeError: a non-numeric dtype.
        ValueError: mismatched shapes, no values, predictions outside [0, 1]
            or not finite, labels other than 0/1, negative or non-finite weights.
    """
    _real_array(labels, "labels")
    _real_array(predictions, "predictions")
    if labels.shape != predictions.shape:
        raise ValueError(f"labels has shape {labels.shape} but predictions has shape {predictions.shape}; they must match")
    if predictions.size == 0:
        raise ValueError(f"predictions is empty (shape {predictions.shape}); a PR curve needs at least one prediction")
    # float32 stays float32 (half the memory); compute_curve works in float64
    probs = np.array(predictions, dtype=np.float32 if predictions.dtype == np.float32 else np.float64, copy=True)
    lo, hi = probs.min(), probs.max()
    if not (lo >= 0.0 and hi <= 1.0):  # also false for NaN
        if np.isnan(lo) or np.isnan(hi):
            raise ValueError("predictions contains NaN; expected probabilities in [0, 1]")
        raise ValueError(f"predictions must be probabilities in [0, 1], got values from {lo!r} to {hi!r}")
    if labels.dtype == np.bool_:
        positive = np.array(labels, copy=True)
    else:
        positive = labels != 0
        if labels.dtype.kind == "f" or labels.min() < 0 or labels.max() > 1:
            bad = positive & (labels != 1)
            if bad.any():
                example = labels[bad].flat[0]
                raise ValueError(f"labels must be 0/1 (or bool), got {example!r} among them")
    if weights is not None:
        _real_array(weights, "weights")
        try:
            weights = np.array(np.broadcast_to(weights, probs.shape), dtype=np.float64, copy=True)
        except ValueError:
            raise ValueError(
                f"weights has shape {weights.shape}, which does not broadcast to the shape {probs.shape} "
                "of labels and predictions"
            ) from None
        wlo, whi = weights.min(), weights.max()
        if not (wlo >= 0.0 and np.isfinite(whi)):
            raise ValueError(f"weights must be finite and non-negative, got values from {wlo!r} to {whi!r}")
    return positive, probs, weights


def compute_curve(positive, predictions, weights, num_thresholds):
    """The ``[6, num_thresholds]`` float64 rows for validated inputs (see the module docstring)."""
    n = num_thresholds
    # Index bucket + n * label: one counting pass gives the negatives' buckets
    # (row 0) and the positives' (row 1). Truncation is floor here: p >= 0.
    index = (predictions.ravel().astype(np.float64) * (n - 1)).astype(np.intp)
    index += positive.ravel() * n
    w = None if weights is None else weights.ravel()
    fp_buckets, tp_buckets = np.bincount(index, weights=w, minlength=2 * n).astype(np.float64).reshape(2, n)
    # At threshold j: every prediction in bucket j or above is called positive.
    tp = np.cumsum(tp_buckets[::-1])[::-1]
    fp = np.cumsum(fp_buckets[::-1])[::-1]
    tn = fp[0] - fp
    fn = tp[0] - tp
    precision = tp / np.maximum(tp + fp, MIN_COUNT)
    recall = tp / np.maximum(tp + fn, MIN_COUNT)
    return np.stack([tp, fp, tn, fn, precision, recall])


def check_raw(rows, num_thresholds):
    """Validate add_pr_curve_raw's six arrays; returns a float32 ``[6, n]`` copy.

    Args:
        rows: the six arrays as numpy, in ROWS order.
        num_thresholds: the caller's value (checked with check_num_thresholds).
            It must equal the arrays' length, except that torch's default 127
            stands for "the arrays' length" (torch writes whatever length the
            arrays have and TensorBoard draws that many thresholds).
    """
    lengths = []
    for name, array in zip(ROWS, rows):
        _real_array(array, name, allow_bool=False)
        if array.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional (one entry per threshold), got shape {array.shape}")
        lengths.append(array.shape[0])
    if len(set(lengths)) != 1:
        detail = ", ".join(f"{name} {n}" for name, n in zip(ROWS, lengths))
        raise ValueError(f"the six PR curve arrays must have the same length, got {detail}")
    n = lengths[0]
    if n < 2:
        raise ValueError(f"the PR curve arrays need at least 2 thresholds, got length {n}")
    if num_thresholds != n and num_thresholds != 127:
        raise ValueError(f"num_thresholds is {num_thresholds} but the arrays have {n} entries; they must match")
    data = np.array(np.stack(rows), dtype=np.float64)
    for i, name in enumerate(ROWS):
        row = data[i]
        lo, hi = row.min(), row.max()
        if i < 4 and not (lo >= 0.0 and np.isfinite(hi)):
            raise ValueError(f"{name} must be finite, non-negative counts, got values from {lo!r} to {hi!r}")
        if i >= 4 and not (lo >= 0.0 and hi <= 1.0):
            raise ValueError(f"{name} must be in [0, 1], got values from {lo!r} to {hi!r}")
    return data.astype(np.float32)


def pr_curve_record(tag, data, step, wall_time, with_metadata):
    """Framed Event bytes for one ``[6, n]`` curve (float32 on the wire)."""
    data = np.ascontiguousarray(data, dtype="<f4")
    rows, n = data.shape

    def fill(value):
        tensor = value.tensor
        tensor.dtype = tensor_pb2.DT_FLOAT
        tensor.tensor_shape.dim.add(size=rows)
        tensor.tensor_shape.dim.add(size=n)
        tensor.tensor_content = data.tobytes()
        if with_metadata:
            value.metadata.CopyFrom(summary_metadata(n))

    return value_record(tag, step, wall_time, fill)


def curve_job(tag, positive, predictions, weights, num_thresholds, step, wall_time, with_metadata):
    """Background job: bucket the snapshots and encode the record."""
    data = compute_curve(positive, predictions, weights, num_thresholds)
    return pr_curve_record(tag, data, step, wall_time, with_metadata)
