"""Bad arguments to SummaryWriter raise a clear error on the caller's thread and lose nothing.

Every case: log good points (a scalar, a histogram and an image, so encoding
jobs are in flight), make the bad call, which must raise ValueError/TypeError
whose message names the argument, then log another good point, close, and
check that every good point is in the file and nothing of the bad call is.
"""

import math
import warnings

import numpy as np
import pytest
import torch

from tbx import SummaryWriter
from writer_util import histogram_rows, image_samples, interleave_bad_calls, static_check, values_by_tag

IMG = np.zeros((3, 4, 5), dtype=np.uint8)
HIST = np.arange(10.0)


def _raw(**kw):
    args = dict(min=0.0, max=2.0, num=3, sum=3.0, sum_squares=5.0, bucket_limits=[1.0, 2.0], bucket_counts=[1, 2])
    args.update(kw)
    return lambda w: w.add_histogram_raw("bad", **args)


# (id, call on a writer, exception type, regex the message must match: the argument's name)
BAD_CALLS = [
    # images
    ("img_ndim", lambda w: w.add_image("bad", np.zeros((4, 5), np.uint8)), ValueError, r"img_tensor.*dimensions.*'CHW'"),
    ("img_ndim_hwc", lambda w: w.add_image("bad", IMG, dataformats="HW"), ValueError, r"img_tensor.*dataformats"),
    ("imgs_ndim", lambda w: w.add_images("bad", IMG), ValueError, r"img_tensor.*dataformats"),
    ("img_unknown_fmt", lambda w: w.add_image("bad", IMG, dataformats="XYZ"), ValueError, r"dataformats 'XYZ'"),
    ("img_repeated_fmt", lambda w: w.add_image("bad", IMG, dataformats="HHW"), ValueError, r"dataformats"),
    ("img_fmt_type", lambda w: w.add_image("bad", IMG, dataformats=None), TypeError, r"dataformats"),
    ("img_batch_fmt", lambda w: w.add_image("bad", IMG[None], dataformats="NCHW"), ValueError, r"dataformats"),
    ("imgs_single_fmt", lambda w: w.add_images("bad", IMG, dataformats="CHW"), ValueError, r"dataformats"),
    ("img_2_channels", lambda w: w.add_image("bad", np.zeros((2, 4, 5), np.uint8)), ValueError, r"img_tensor.*2 channels"),
    ("img_5_channels", lambda w: w.add_image("bad", np.zeros((4, 5, 5), np.uint8), dataformats="HWC"), ValueError,
     r"img_tensor.*5 channels"),
    ("imgs_2_channels", lambda w: w.add_images("bad", np.zeros((3, 2, 4, 5), np.uint8)), ValueError, r"img_tensor.*2 channels"),
    ("img_nan", lambda w: w.add_image("bad", np.full((1, 2, 2), np.nan)), ValueError, r"img_tensor.*NaN"),
    ("img_inf", lambda w: w.add_image("bad", torch.tensor([[[0.5, math.inf]]])), ValueError, r"img_tensor.*(NaN|inf)"),
    ("img_int64", lambda w: w.add_image("bad", np.zeros((1, 2, 2), np.int64)), TypeError, r"img_tensor.*int64"),
    ("img_empty", lambda w: w.add_image("bad", np.zeros((3, 0, 5), np.uint8)), ValueError, r"img_tensor.*empty"),
    ("imgs_empty_batch", lambda w: w.add_images("bad", np.zeros((0, 3, 4, 5), np.uint8)), ValueError, r"img_tensor.*empty"),
    ("img_none", lambda w: w.add_image("bad", None), TypeError, r"img_tensor"),
    # histograms
    ("hist_empty", lambda w: w.add_histogram("bad", np.array([])), ValueError, r"values.*empty"),
    ("hist_empty_torch", lambda w: w.add_histogram("bad", torch.zeros(0)), ValueError, r"values.*empty"),
    ("hist_complex", lambda w: w.add_histogram("bad", np.array([1 + 2j])), TypeError, r"values.*real"),
    ("hist_complex_torch", lambda w: w.add_histogram("bad", torch.tensor([1 + 2j])), TypeError, r"values.*real"),
    ("hist_bool", lambda w: w.add_histogram("bad", np.array([True, False])), TypeError, r"values.*real"),
    ("hist_bool_torch", lambda w: w.add_histogram("bad", torch.tensor([True])), TypeError, r"values.*real"),
    ("hist_strings", lambda w: w.add_histogram("bad", ["a", "b"]), TypeError, r"values"),
    ("hist_none", lambda w: w.add_histogram("bad", None), TypeError, r"values"),
    ("hist_ragged", lambda w: w.add_histogram("bad", [[1.0], [1.0, 2.0]]), TypeError, r"values"),
    ("bins_0", lambda w: w.add_histogram("bad", HIST, bins=0), ValueError, r"bins"),
    ("bins_neg", lambda w: w.add_histogram("bad", HIST, bins=-1), ValueError, r"bins"),
    ("bins_unknown", lambda w: w.add_histogram("bad", HIST, bins="magic"), ValueError, r"bins='magic'"),
    ("bins_decreasing", lambda w: w.add_histogram("bad", HIST, bins=[0.0, 2.0, 1.0]), ValueError, r"bins.*increasing"),
    ("bins_nan_edge", lambda w: w.add_histogram("bad", HIST, bins=[0.0, np.nan]), ValueError, r"bins"),
    ("bins_one_edge", lambda w: w.add_histogram("bad", HIST, bins=[1.0]), ValueError, r"bins"),
    ("bins_bool", lambda w: w.add_histogram("bad", HIST, bins=True), TypeError, r"bins"),
    ("max_bins_0", lambda w: w.add_histogram("bad", HIST, max_bins=0), ValueError, r"max_bins"),
    ("max_bins_float", lambda w: w.add_histogram("bad", HIST, max_bins=2.5), (TypeError, ValueError), r"max_bins"),
    ("max_bins_str", lambda w: w.add_histogram("bad", HIST, max_bins="3"), (TypeError, ValueError), r"max_bins"),
    ("raw_lengths", _raw(bucket_counts=[1, 2, 3]), ValueError, r"bucket_limits.*bucket_counts"),
    ("raw_empty", _raw(bucket_limits=[], bucket_counts=[]), ValueError, r"bucket_limits"),
    ("raw_min_gt_max", _raw(min=3.0), ValueError, r"min"),
    ("raw_negative_count", _raw(bucket_counts=[1, -2]), ValueError, r"bucket_counts"),
    ("raw_decreasing", _raw(bucket_limits=[2.0, 1.0]), ValueError, r"bucket_limits"),
    ("raw_num_none", _raw(num=None), TypeError, r"num"),
    # tags
    *[(f"tag_{name}_{kind}", call, TypeError, r"tag must be a str")
      for name, bad in (("none", None), ("int", 1), ("bytes", b"x"))
      for kind, call in (
          ("scalar", lambda w, t=bad: w.add_scalar(t, 1.0)),
          ("histogram", lambda w, t=bad: w.add_histogram(t, HIST)),
          ("raw", lambda w, t=bad: w.add_histogram_raw(t, 0, 2, 3, 3, 5, [1, 2], [1, 2])),
          ("image", lambda w, t=bad: w.add_image(t, IMG)),
          ("images", lambda w, t=bad: w.add_images(t, IMG[None])),
          ("text", lambda w, t=bad: w.add_text(t, "x")),
          ("scalars", lambda w, t=bad: w.add_scalars(t, {"a": 1.0})),
      )],
    ("scalars_key", lambda w: w.add_scalars("bad", {"a": 1.0, 2: 3.0}), TypeError, r"tag_scalar_dict key"),
    # steps
    *[(f"step_{name}_{kind}", call, TypeError, r"global_step must be an integer")
      for name, bad in (("float", 1.5), ("str", "3"), ("bool", True), ("np_float", np.float64(2.0)),
                        ("float_tensor", torch.tensor(1.0)))
      for kind, call in (
          ("scalar", lambda w, s=bad: w.add_scalar("bad", 1.0, s)),
          ("histogram", lambda w, s=bad: w.add_histogram("bad", HIST, s)),
          ("image", lambda w, s=bad: w.add_image("bad", IMG, s)),
          ("text", lambda w, s=bad: w.add_text("bad", "x", s)),
          ("scalars", lambda w, s=bad: w.add_scalars("bad", {"a": 1.0}, s)),
      )],
    ("step_too_big", lambda w: w.add_scalar("bad", 1.0, 2**63), ValueError, r"global_step"),
    ("step_too_small", lambda w: w.add_histogram("bad", HIST, -(2**63) - 1), ValueError, r"global_step"),
    # scalar values
    ("value_bool", lambda w: w.add_scalar("bad", True), TypeError, r"scalar_value.*bool"),
    ("value_np_bool", lambda w: w.add_scalar("bad", np.bool_(False)), TypeError, r"scalar_value.*bool"),
    ("value_torch_bool", lambda w: w.add_scalar("bad", torch.tensor(True)), TypeError, r"scalar_value.*bool"),
    ("value_none", lambda w: w.add_scalar("bad", None), TypeError, r"scalar_value"),
    ("value_str", lambda w: w.add_scalar("bad", "1.0"), TypeError, r"scalar_value"),
    ("value_complex", lambda w: w.add_scalar("bad", 1 + 1j), TypeError, r"scalar_value"),
    ("value_np_multi", lambda w: w.add_scalar("bad", np.array([1.0, 2.0])), ValueError, r"scalar_value.*one value"),
    ("value_torch_multi", lambda w: w.add_scalar("bad", torch.ones(2, 2)), ValueError, r"scalar_value.*one value"),
    ("value_empty", lambda w: w.add_scalar("bad", np.array([])), ValueError, r"scalar_value"),
    ("value_list", lambda w: w.add_scalar("bad", [1.0]), TypeError, r"scalar_value"),
    ("scalars_value_bool", lambda w: w.add_scalars("bad", {"a": 1.0, "b": True}), TypeError, r"tag_scalar_dict\['b'\]"),
    ("scalars_value_multi", lambda w: w.add_scalars("bad", {"a": 1.0, "b": np.ones(3)}), ValueError,
     r"tag_scalar_dict\['b'\]"),
    # walltime
    *[(f"walltime_{name}_{kind}", call, ValueError, r"walltime must be finite")
      for name, bad in (("nan", math.nan), ("inf", math.inf))
      for kind, call in (
          ("scalar", lambda w, t=bad: w.add_scalar("bad", 1.0, 0, walltime=t)),
          ("histogram", lambda w, t=bad: w.add_histogram("bad", HIST, 0, walltime=t)),
          ("image", lambda w, t=bad: w.add_image("bad", IMG, 0, walltime=t)),
          ("text", lambda w, t=bad: w.add_text("bad", "x", 0, walltime=t)),
          ("scalars", lambda w, t=bad: w.add_scalars("bad", {"a": 1.0}, 0, walltime=t)),
      )],
    ("walltime_str", lambda w: w.add_scalar("bad", 1.0, 0, walltime="now"), TypeError, r"walltime"),
    # containers and text
    ("scalars_list", lambda w: w.add_scalars("bad", [("a", 1.0)]), TypeError, r"tag_scalar_dict must be a dict"),
    ("scalars_none", lambda w: w.add_scalars("bad", None), TypeError, r"tag_scalar_dict"),
    ("text_int", lambda w: w.add_text("bad", 3), TypeError, r"text_string must be a str"),
    ("text_bytes", lambda w: w.add_text("bad", b"x"), TypeError, r"text_string"),
    ("text_none", lambda w: w.add_text("bad", None), TypeError, r"text_string"),
    ("purge_step_float", lambda w: SummaryWriter(w.get_logdir() + "_x", purge_step=1.5), TypeError, r"purge_step"),
]


def _good(writer, step):
    writer.add_scalar("good/scalar", float(step), step)
    writer.add_histogram("good/hist", HIST + step, step)
    writer.add_image("good/image", IMG + step, step)
    writer.add_text("good", f"text {step}", step)
    writer.add_scalars("good/multi", {"k": float(step)}, step)


def _check_good(logdir, steps):
    tags = values_by_tag(logdir)
    assert [s for s, _w, _v in tags[".", "good/scalar"]] == steps
    assert [v.simple_value for _s, _w, v in tags[".", "good/scalar"]] == [float(s) for s in steps]
    assert [s for s, _r in histogram_rows(logdir, "good/hist")] == steps
    assert [s for s, _size, _p in image_samples(logdir, "good/image")] == steps
    assert [s for s, _w, _v in tags[".", "good/text_summary"]] == steps
    assert [s for s, _w, _v in tags["good_multi_k", "good/multi"]] == steps
    bad = [key for key in tags if "bad" in key[0] or "bad" in key[1]]
    assert bad == [], f"the failed call wrote {bad}"
    assert static_check(logdir, header_first=False) == []


@pytest.mark.parametrize("call,exc,match", [pytest.param(c, e, m, id=i) for i, c, e, m in BAD_CALLS])
def test_bad_input_raises_clear_error_and_loses_nothing(tmp_path, call, exc, match):
    logdir = tmp_path / "run"
    writer = SummaryWriter(logdir)
    try:
        _good(writer, 0)
        with pytest.raises(exc, match=match):
            call(writer)
        _good(writer, 1)
    finally:
        writer.close()
    _check_good(logdir, [0, 1])
    assert not (tmp_path / "run_x").exists()


def test_every_bad_call_on_one_writer(tmp_path):
    """All the bad calls in a row on one writer, good points in between: none is lost."""
    with SummaryWriter(tmp_path) as writer:
        steps = interleave_bad_calls(writer, BAD_CALLS, _good)
    _check_good(tmp_path, steps)


def test_failed_binning_is_reported_at_the_call_or_not_at_all(tmp_path):
    """Input that passes validation but cannot be binned must not break a later, unrelated call.

    numpy's 'auto' rule fails when max - min overflows float64. Whether
    add_histogram rejects that at once or bins it some other way, the next
    add_scalar must succeed and every good point must be in the file.
    """
    writer = SummaryWriter(tmp_path)
    try:
        _good(writer, 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                writer.add_histogram("bad", np.array([-1e308, 1e308]), 0, bins="auto")
            except (ValueError, TypeError) as exc:
                assert "values" in str(exc) or "bins" in str(exc)
            writer.flush()
            _good(writer, 1)
    finally:
        writer.close()
    tags = values_by_tag(tmp_path)
    assert [s for s, _w, _v in tags[".", "good/scalar"]] == [0, 1]
