"""Files from ``tbx.SummaryWriter`` read by TensorBoard's in-process Python loaders.

Both ``event_accumulator.EventAccumulator`` (the legacy API many scripts use to
read logs) and ``plugin_event_accumulator.EventAccumulator`` (what the Python
TensorBoard server uses) must return exactly the values written, and the same
values as each other. The logdir is the one the end-to-end test writes.
"""

import dataclasses
import io
import math

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator as legacy_acc
from tensorboard.backend.event_processing import tag_types
from tensorboard.util import tensor_util

from writer_util import legacy_accumulator, plugin_accumulator
from test_tensorboard_e2e import EXTREME_STEPS, WEIRD_RUN, write_logdir, written_histogram_bins

KINDS = ("scalars", "histograms", "images", "text")  # plugin names, also our result keys


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("loaders_logdir")
    return root, write_logdir(root)


def read_run(acc, legacy):
    """{kind: {tag: [(step, wall, value)]}} from an accumulator, whatever form was written.

    Scalars become floats; histograms ``[[left, right, count], ...]`` rows, or for a
    legacy ``HistogramProto`` seen by the legacy accumulator, a dict of its fields;
    images a list of PNG byte strings per step; text a list of strings per step.
    ``forms`` maps (kind, tag) to the set of (dtype, shape) of its tensors, plus the
    (width, height) header for image tensors.
    """
    tags = acc.Tags()
    out = {kind: {} for kind in KINDS + ("forms",)}
    if legacy:
        for tag in tags[legacy_acc.SCALARS]:
            out["scalars"][tag] = [(e.step, e.wall_time, e.value) for e in acc.Scalars(tag)]
        for tag in tags[legacy_acc.HISTOGRAMS]:
            out["histograms"][tag] = [
                (e.step, e.wall_time, dataclasses.asdict(e.histogram_value)) for e in acc.Histograms(tag)
            ]
        for tag in tags[legacy_acc.IMAGES]:
            out["images"][tag] = [(e.step, e.wall_time, [e.encoded_image_string]) for e in acc.Images(tag)]
    for tag in tags[tag_types.TENSORS]:
        kind = acc.SummaryMetadata(tag).plugin_data.plugin_name
        if kind not in KINDS:
            continue
        events = [(e.step, e.wall_time, tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]
        out["forms"][kind, tag] = {(arr.dtype.str, arr.shape) for _s, _w, arr in events}
        if kind == "scalars":
            out["scalars"][tag] = [(s, w, float(arr)) for s, w, arr in events]
        elif kind == "histograms":
            out["histograms"][tag] = [(s, w, arr.tolist()) for s, w, arr in events]
        elif kind == "images":
            out["forms"]["image_size", tag] = [(int(arr[0]), int(arr[1])) for _s, _w, arr in events]
            out["images"][tag] = [(s, w, list(arr[2:])) for s, w, arr in events]
        else:
            out["text"][tag] = [(s, w, [x.decode("utf-8") for x in arr.reshape(-1)]) for s, w, arr in events]
    return out


@pytest.fixture(scope="module")
def loaded(written):
    """{(accumulator name, run): read_run(...)} for both accumulators and every run."""
    root, out = written
    result = {}
    for run in out["runs"]:
        result["legacy", run] = read_run(legacy_accumulator(root / run), legacy=True)
        result["plugin", run] = read_run(plugin_accumulator(root / run), legacy=False)
    return result


ACCUMULATORS = ["legacy", "plugin"]


def _same_float32(a, b):
    a, b = np.float32(a), np.float32(b)
    return a == b or (np.isnan(a) and np.isnan(b))


@pytest.mark.parametrize("acc", ACCUMULATORS)
def test_scalars(loaded, written, acc):
    _root, out = written
    expected_tags = {}
    for run, tag in list(out["scalars"]) + list(out["auto_wall"]):
        expected_tags.setdefault(run, set()).add(tag)
    expected_tags["resumed"] = {"x"}
    for run in out["runs"]:
        assert set(loaded[acc, run]["scalars"]) == expected_tags.get(run, set()), run
    for (run, tag), expected in out["scalars"].items():
        got = loaded[acc, run]["scalars"][tag]
        what = "%s %s/%s" % (acc, run, tag)
        form = loaded[acc, run]["forms"].get(("scalars", tag))
        assert form in (None, {("<f4", ())}), "%s: scalar tensors must be rank-0 float32, got %r" % (what, form)
        assert [s for s, _w, _v in got] == [s for s, _v, _w in expected], what + ": steps"
        for (step, wall, value), (_s, want, want_wall) in zip(got, expected):
            assert abs(wall - want_wall) <= 1e-6, "%s step %d: wall %r != %r" % (what, step, wall, want_wall)
            assert _same_float32(value, want), "%s step %d: %r != %r" % (what, step, value, want)


@pytest.mark.parametrize("acc", ACCUMULATORS)
def test_scalar_special_values_and_steps(loaded, acc):
    loss = {s: v for s, _w, v in loaded[acc, "train"]["scalars"]["loss"]}
    assert math.isnan(loss[100]) and loss[200] == math.inf and loss[300] == -math.inf
    for tag in ("steps/legacy", "steps/new_style"):
        assert [s for s, _w, _v in loaded[acc, WEIRD_RUN]["scalars"][tag]] == EXTREME_STEPS


@pytest.mark.parametrize("acc", ACCUMULATORS)
def test_restart_purge(loaded, written, acc):
    got = [(s, v, w) for s, w, v in loaded[acc, "resumed"]["scalars"]["x"]]
    expected = written[1]["resumed"]
    assert [g[0] for g in got] == [e[0] for e in expected]
    assert all(_same_float32(g[1], e[1]) and abs(g[2] - e[2]) <= 1e-6 for g, e in zip(got, expected))


@pytest.mark.parametrize("acc", ACCUMULATORS)
def test_histograms(loaded, written, acc):
    root, out = written
    stored = written_histogram_bins(root, "hist")
    for (run, tag), logged in out["histograms"].items():
        got = loaded[acc, run]["histograms"].get(tag)
        what = "%s %s/%s" % (acc, run, tag)
        assert got is not None, what + ": missing"
        assert [s for s, _w, _h in got] == [s for s, _w, _v in logged], what + ": steps"
        for (step, wall, hist), (_s, want_wall, values), (_s2, _w2, rows) in zip(got, logged, stored[tag]):
            assert abs(wall - want_wall) <= 1e-6
            finite = values[np.isfinite(values)]
            if isinstance(hist, dict):  # legacy HistogramProto via the legacy accumulator
                assert hist["num"] == finite.size and sum(hist["bucket"]) == finite.size, what
                assert len(hist["bucket"]) == len(hist["bucket_limit"]), what
                assert hist["min"] <= finite.min() and hist["max"] >= finite.max(), what
                continue
            assert np.array_equal(np.float32(hist), np.float32(rows)), "%s step %d: bins" % (what, step)
            assert sum(c for _l, _r, c in hist) == finite.size, "%s step %d: counts" % (what, step)
            assert all(left <= right for left, right, _c in hist), "%s step %d: backwards bin" % (what, step)


@pytest.mark.parametrize("acc", ACCUMULATORS)
def test_images(loaded, written, acc):
    for (run, tag), logged in written[1]["images"].items():
        got = loaded[acc, run]["images"].get(tag)
        what = "%s %s/%s" % (acc, run, tag)
        assert got is not None, what + ": missing"
        assert [s for s, _w, _p in got] == [s for s, _w, _p in logged], what + ": steps"
        sizes = loaded[acc, run]["forms"].get(("image_size", tag), [None] * len(got))
        for (step, wall, pngs), size, (_s, want_wall, pixels) in zip(got, sizes, logged):
            assert abs(wall - want_wall) <= 1e-6
            height, width = pixels[0].shape[:2]
            assert size in (None, (width, height)), "%s step %d: tensor header %r" % (what, step, size)
            assert len(pngs) == len(pixels), "%s step %d: %d images, %d written" % (what, step, len(pngs), len(pixels))
            for png, want in zip(pngs, pixels):
                assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), want), "%s step %d" % (what, step)


@pytest.mark.parametrize("acc", ACCUMULATORS)
def test_text(loaded, written, acc):
    for (run, tag), logged in written[1]["text"].items():
        texts = loaded[acc, run]["text"]
        names = set(texts) & {tag, tag + "/text_summary"}  # torch appends "/text_summary"
        assert len(names) == 1, "%s %s/%s: text tags %r" % (acc, run, tag, sorted(texts))
        got = texts[names.pop()]
        assert [(s, t) for s, _w, t in got] == [(s, [t]) for s, _w, t in logged]
        assert all(abs(g[1] - e[1]) <= 1e-6 for g, e in zip(got, logged))


def _comparable(value):
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    return value


def test_accumulators_agree(loaded, written):
    """Both accumulators list the same tags and, but for legacy histograms, the same data."""
    for run in written[1]["runs"]:
        legacy, plugin = loaded["legacy", run], loaded["plugin", run]
        for kind in KINDS:
            assert set(legacy[kind]) == set(plugin[kind]), (run, kind)
            for tag in legacy[kind]:
                if kind == "histograms" and isinstance(legacy[kind][tag][0][2], dict):
                    continue  # legacy HistogramProto: compared with the data in test_histograms
                assert _comparable(legacy[kind][tag]) == _comparable(plugin[kind][tag]), (run, kind, tag)
