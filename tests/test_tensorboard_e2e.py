"""End to end: files from ``tbx.SummaryWriter`` shown by stock TensorBoard, both loaders.

One logdir is written per module (``write_logdir``); each loader's view of it is
fetched once over the HTTP API (``collect``) and the tests compare that view
with what was written (FORMATS.md section 7, steps 5 to 10 and 18).
"""

import glob
import io
import math
import os
import time
import warnings

import numpy as np
import pytest
from PIL import Image

import tbx
from tbserver import TensorBoardServer, fetched_once

# The writer under test; the stand-in during development was
# torch.utils.tensorboard.SummaryWriter, which has the same API.
SummaryWriter = tbx.SummaryWriter

LOADERS = [pytest.param(False, id="python"), pytest.param(True, id="rust")]

WALL0 = 1_700_000_000.123456  # fake but plausible wall times, exact in float64
WEIRD_TAG = "weird tag/ü+&?=#%"
WEIRD_RUN = "run ü &+=#"
SCALAR_STEPS = 1500
RESTART_STEP = 1000  # "train" is written by two writers: [0, 1000) and [1000, 1500)
EXTREME_STEPS = [-(2**40), -1000, -1, 0, 7, 2**31, 2**40]
HIST_STEPS = 65
IMAGE_STEPS = 12
IMG_N, IMG_C, IMG_H, IMG_W = 2, 3, 6, 10
TEXT_STEPS = 5


def _wall(step, offset=0.0):
    return WALL0 + offset + step * 0.0371


def _scalar_value(step, phase):
    """Deterministic value with NaN, +inf and -inf at a few fixed steps."""
    special = {100: math.nan, 200: math.inf, 300: -math.inf, 1234: math.nan, 1499: math.inf}
    if step in special:
        return special[step]
    return math.sin(step * 0.01 + phase) * 10 ** (step % 7 - 3)


def _image(step, index, hwc=False):
    rng = np.random.default_rng(1000 * step + index)
    img = rng.integers(0, 256, size=(IMG_H, IMG_W, IMG_C), dtype=np.uint8)
    return img if hwc else img.transpose(2, 0, 1)


def write_logdir(root):
    """Write the test logdir with ``SummaryWriter``; return what was written.

    Returned dict: ``runs`` (set); ``scalars`` {(run, tag): [(step, value, wall)]};
    ``auto_wall`` {(run, tag): (steps, earliest, latest)} for points written with
    walltime=None; ``histograms`` {(run, tag): [(step, wall, values)]};
    ``images`` {(run, tag): [(step, wall, [HWC uint8 array per sample])]};
    ``text`` {(run, tag): [(step, wall, str)]}; ``resumed`` (see below);
    ``files`` {run: [event file names in creation order]}.
    """
    root = os.fspath(root)
    out = {"runs": set(), "scalars": {}, "auto_wall": {}, "histograms": {}, "images": {}, "text": {}, "files": {}}

    def writer(run, **kwargs):
        out["runs"].add(run)
        return SummaryWriter(os.path.join(root, run), **kwargs)

    def closed(w, run):
        """Close ``w``; record the run's event files in creation order."""
        w.close()
        seen = out["files"].setdefault(run, [])
        seen.extend(sorted(set(os.listdir(os.path.join(root, run))) - set(seen)))

    def scalar(w, run, tag, step, value, wall, new_style):
        w.add_scalar(tag, value, step, walltime=wall, new_style=new_style)
        out["scalars"].setdefault((run, tag), []).append((step, value, wall))

    def histogram(w, run, tag, step, wall, values, **kwargs):
        w.add_histogram(tag, values, step, walltime=wall, **kwargs)
        out["histograms"].setdefault((run, tag), []).append((step, wall, values))

    # Run "train": 1500-step legacy and new-style scalars with NaN/inf, weird tags, and
    # a restart: a second writer, hence a second file, continues at step 1000.
    for first, last in ((0, RESTART_STEP), (RESTART_STEP, SCALAR_STEPS)):
        w = writer("train")
        for step in range(first, last):
            scalar(w, "train", "loss", step, _scalar_value(step, 0.0), _wall(step), False)
            scalar(w, "train", "acc/new_style", step, _scalar_value(step, 1.0), _wall(step, 0.001), True)
        if first == 0:
            for step in range(10):
                scalar(w, "train", WEIRD_TAG, step, step / 3.0, _wall(step, 3.0), False)
                scalar(w, "train", WEIRD_TAG + " new", step, -step / 7.0, _wall(step, 4.0), True)
                scalar(w, "train", "only_first_file", step, step * 1.5, _wall(step, 5.0), False)
            before = time.time()
            for step in range(3):
                w.add_scalar("auto_walltime", step * 2.0, step)
            out["auto_wall"]["train", "auto_walltime"] = ([0, 1, 2], before, time.time())
        closed(w, "train")

    # Run "hist": histograms over more than 60 steps: default bins, explicit bins,
    # and data with NaN/inf (which cannot be bucketed; every finite value must be).
    rng = np.random.default_rng(7)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "add_histogram", RuntimeWarning)  # tbx's NaN/inf notice
        w = writer("hist")
        for step in range(HIST_STEPS):
            wall = _wall(step, 10.0)
            normal = rng.normal(loc=step * 0.05, scale=1.0 + step * 0.01, size=500)
            histogram(w, "hist", "hist/default_bins", step, wall, normal)
            ints = rng.integers(-50, 50, size=300).astype(np.float64)
            histogram(w, "hist", "hist/bins30", step, wall, ints, bins=30)
            mixed = np.concatenate([rng.uniform(-1, 1, size=50), [np.nan, np.inf, -np.inf][: 1 + step % 3]])
            histogram(w, "hist", "hist/nonfinite", step, wall, mixed)
        closed(w, "hist")

    # Run "media": two images per step via add_images, as samples and as a grid, an
    # HWC add_image tag, and text.
    w = writer("media")
    for k in range(IMAGE_STEPS):
        step, wall = 10 * k, _wall(k, 20.0)
        batch = np.stack([_image(step, i) for i in range(IMG_N)])
        pixels = [img.transpose(1, 2, 0) for img in batch]
        # tbx's as_grid=False: each image is its own sample of the step.
        w.add_images("img/pair", batch, step, walltime=wall, dataformats="NCHW", as_grid=False)
        out["images"].setdefault(("media", "img/pair"), []).append((step, wall, pixels))
        # torch's default: one image tiling the batch, 8 per row, no padding.
        w.add_images("img/grid", batch, step, walltime=wall, dataformats="NCHW")
        out["images"].setdefault(("media", "img/grid"), []).append((step, wall, [np.hstack(pixels)]))
    for step in (0, 5, 9):
        wall, img = _wall(step, 30.0), _image(step, 99, hwc=True)
        w.add_image("img/hwc " + WEIRD_TAG, img, step, walltime=wall, dataformats="HWC")
        out["images"].setdefault(("media", "img/hwc " + WEIRD_TAG), []).append((step, wall, [img]))
    for step in range(TEXT_STEPS):
        wall = _wall(step, 40.0)
        # Markdown and non-ASCII, but nothing TensorBoard's HTML sanitizer rewrites.
        text = "step %d: **bold** ü `code` [link](https://example.com/a_b)\nsecond line" % step
        w.add_text("notes", text, step, walltime=wall)
        out["text"].setdefault(("media", "notes"), []).append((step, wall, text))
    closed(w, "media")

    # A run directory with unusual characters; extreme and negative steps. (Not in
    # "train": a restart marker there may rightly purge steps above the restart.)
    w = writer(WEIRD_RUN)
    for i, step in enumerate(EXTREME_STEPS):
        scalar(w, WEIRD_RUN, "steps/legacy", step, float(i) - 0.5, _wall(i, 1.0), False)
        scalar(w, WEIRD_RUN, "steps/new_style", step, float(i) + 0.25, _wall(i, 2.0), True)
    closed(w, WEIRD_RUN)

    # Run "resumed": steps 0..19, then a restart with purge_step=10 writing 10..14.
    # Both loaders must show 0..9 from the first file and 10..14 from the second.
    w = writer("resumed")
    for step in range(20):
        w.add_scalar("x", float(step), step, walltime=_wall(step, 60.0))
    closed(w, "resumed")
    w = writer("resumed", purge_step=10)
    for step in range(10, 15):
        w.add_scalar("x", 100.0 + step, step, walltime=_wall(step, 70.0))
    closed(w, "resumed")
    out["resumed"] = [(s, float(s), _wall(s, 60.0)) for s in range(10)] + [
        (s, 100.0 + s, _wall(s, 70.0)) for s in range(10, 15)
    ]
    return out


def written_histogram_bins(root, run):
    """{tag: [(step, wall, [[left, right, count], ...])]} as stored in the run's files.

    Read with TensorBoard's own event file loader (which migrates legacy values to
    the tensor form), because the binning is the writer's choice.
    """
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    found = {}
    for path in sorted(glob.glob(os.path.join(root, run, "*tfevents*"))):
        for event in EventFileLoader(path).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "histograms" or (
                    value.HasField("tensor") and value.tag in found
                ):
                    rows = tensor_util.make_ndarray(value.tensor).tolist()
                    found.setdefault(value.tag, []).append((event.step, event.wall_time, rows))
    return found


# -- fetching each loader's view ---------------------------------------------------


def _key(value):
    """A float (or "NaN"/"Infinity" string) as a comparable, NaN-safe token."""
    value = float(value)
    return "nan" if math.isnan(value) else value


def collect(logdir, load_fast):
    """Everything the tests check, fetched from one TensorBoard run on ``logdir``."""
    view = {}
    with TensorBoardServer(logdir, load_fast) as tb:
        view["runs"] = tb.get_json("/data/runs")
        plugins = tb.get_json("/data/plugins_listing")
        view["plugins_enabled"] = sorted(name for name, p in plugins.items() if p.get("enabled"))

        tags = tb.get_json("/data/plugin/scalars/tags")
        view["scalar_tags"] = {run: sorted(t) for run, t in tags.items()}
        view["scalars"], view["scalars_csv"] = {}, {}
        for run, run_tags in tags.items():
            for tag in run_tags:
                view["scalars"][run, tag] = tb.get_json("/data/plugin/scalars/scalars", run=run, tag=tag)
                body, ctype = tb.get_bytes("/data/plugin/scalars/scalars", run=run, tag=tag, format="csv")
                view["scalars_csv"][run, tag] = (body.decode("utf-8"), ctype)
        view["multirun_loss"] = tb.post_form(
            "/data/plugin/scalars/scalars_multirun", {"tag": "loss", "runs": sorted(tags)}
        )
        view["ts_scalars"] = tb.time_series([{"plugin": "scalars", "tag": "steps/new_style"}])

        hist_tags = tb.get_json("/data/plugin/histograms/tags")
        view["histogram_tags"] = {run: sorted(t) for run, t in hist_tags.items()}
        view["ts_histograms"], view["histograms"], view["distributions"] = {}, {}, {}
        for run, run_tags in hist_tags.items():
            for tag in run_tags:
                (series,) = tb.time_series([{"plugin": "histograms", "tag": tag, "run": run}])
                view["ts_histograms"][run, tag] = series["runToSeries"].get(run, [])
                view["histograms"][run, tag] = tb.get_json("/data/plugin/histograms/histograms", run=run, tag=tag)
                view["distributions"][run, tag] = tb.get_json(
                    "/data/plugin/distributions/distributions", run=run, tag=tag
                )

        image_tags = tb.get_json("/data/plugin/images/tags")
        view["image_tags"] = image_tags
        view["images"] = {}
        for run, run_tags in image_tags.items():
            for tag, info in run_tags.items():
                for sample in range(info["samples"]):
                    entries = []
                    for entry in tb.get_json("/data/plugin/images/images", run=run, tag=tag, sample=sample):
                        body, ctype = tb.get_bytes("/data/plugin/images/individualImage?" + entry["query"])
                        entries.append((entry["step"], entry["wall_time"], body, ctype))
                    view["images"][run, tag, sample] = entries

        text_tags = tb.get_json("/data/plugin/text/tags")
        view["text_tags"] = {run: sorted(t) for run, t in text_tags.items()}
        view["text"] = {}
        for run, run_tags in text_tags.items():
            for tag in run_tags:
                view["text"][run, tag] = tb.get_json(
                    "/data/plugin/text/text", run=run, tag=tag, markdown="false"
                )
    return view


def normalize(view):
    """The loader-independent part of a view, NaN-safe, for the cross-loader diff."""
    return {
        "runs": sorted(view["runs"]),
        "plugins_enabled": view["plugins_enabled"],
        "scalar_tags": view["scalar_tags"],
        "scalars": {
            k: [(wt, step, _key(v)) for wt, step, v in rows] for k, rows in sorted(view["scalars"].items())
        },
        "scalars_csv": view["scalars_csv"],
        "histogram_tags": view["histogram_tags"],
        "ts_histograms": {
            k: [(e["wallTime"], e["step"], [(b["min"], b["max"], b["count"]) for b in e["bins"]]) for e in rows]
            for k, rows in sorted(view["ts_histograms"].items())
        },
        # /histograms samples 51 of the steps at random, differently per loader.
        "histograms": {k: len(rows) for k, rows in view["histograms"].items()},
        "distributions": view["distributions"],
        "image_tags": {
            run: {tag: info["samples"] for tag, info in t.items()} for run, t in view["image_tags"].items()
        },
        "images": view["images"],
        "text_tags": view["text_tags"],
        "text": {k: [(e["wall_time"], e["step"], e["text"]) for e in rows] for k, rows in view["text"].items()},
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e_logdir")
    return root, write_logdir(root)


@pytest.fixture(scope="module")
def views(written):
    """``views(load_fast)``: that loader's view, fetched on first use, so any test
    order or ``-k`` selection works and each loader is started once per module."""
    return fetched_once(lambda load_fast: collect(written[0], load_fast))


@pytest.fixture(params=LOADERS)
def view(request, views):
    return views(request.param)


# -- writer output, independent of TensorBoard --------------------------------------


def test_restart_files_sort_in_write_order(written):
    writers = {"train": 2, "resumed": 2}
    for run, files in written[1]["files"].items():
        assert len(files) == writers.get(run, 1), "%s: one new event file per writer expected: %r" % (run, files)
        assert sorted(files) == files, "%s: a restart's file must sort after the earlier one: %r" % (run, files)


# -- per loader ------------------------------------------------------------------------


def test_runs(view, written):
    assert set(view["runs"]) == written[1]["runs"]
    assert len(view["runs"]) == len(set(view["runs"]))


def test_plugins_enabled(view):
    for plugin in ("scalars", "histograms", "distributions", "images", "text", "timeseries"):
        assert plugin in view["plugins_enabled"]


def test_scalar_tags(view, written):
    expected = {}
    for run, tag in list(written[1]["scalars"]) + list(written[1]["auto_wall"]):
        expected.setdefault(run, set()).add(tag)
    expected.setdefault("resumed", set()).add("x")
    assert {run: set(tags) for run, tags in view["scalar_tags"].items()} == expected


def _assert_series(got, expected, what):
    """got: served [[wall, step, value]]; expected: [(step, value, wall)]."""
    assert [row[1] for row in got] == [s for s, _v, _w in expected], "%s: steps differ" % what
    for (wall, step, value), (_s, want, want_wall) in zip(got, expected):
        assert abs(wall - want_wall) <= 1e-6, "%s step %d: wall_time %r != %r" % (what, step, wall, want_wall)
        got32, want32 = np.float32(float(value)), np.float32(want)
        assert got32 == want32 or (np.isnan(got32) and np.isnan(want32)), "%s step %d: value %r != %r" % (
            what,
            step,
            value,
            want,
        )


def test_scalar_values(view, written):
    for (run, tag), expected in written[1]["scalars"].items():
        _assert_series(view["scalars"][run, tag], expected, "%s/%s" % (run, tag))


def test_scalar_special_points(view):
    values = {row[1]: float(row[2]) for row in view["scalars"]["train", "loss"]}
    assert math.isnan(values[100]) and math.isnan(values[1234])
    assert values[200] == math.inf and values[1499] == math.inf and values[300] == -math.inf
    assert len(values) == SCALAR_STEPS
    for tag in ("steps/legacy", "steps/new_style"):
        assert [row[1] for row in view["scalars"][WEIRD_RUN, tag]] == EXTREME_STEPS


def test_scalars_auto_walltime(view, written):
    for (run, tag), (steps, earliest, latest) in written[1]["auto_wall"].items():
        got = view["scalars"][run, tag]
        assert [row[1] for row in got] == steps
        for wall, _step, _value in got:
            assert earliest - 1e-3 <= wall <= latest + 1e-3


def test_resumed_run_purges_overwritten_steps(view, written):
    _assert_series(view["scalars"]["resumed", "x"], written[1]["resumed"], "resumed/x")


def test_scalars_csv(view, written):
    for (run, tag), expected in written[1]["scalars"].items():
        body, ctype = view["scalars_csv"][run, tag]
        assert ctype.startswith("text/csv"), ctype
        lines = body.strip().splitlines()
        assert lines[0] == "Wall time,Step,Value"
        rows = [line.split(",") for line in lines[1:]]
        _assert_series([(float(w), int(s), float(v)) for w, s, v in rows], expected, "csv %s/%s" % (run, tag))


def test_scalars_multirun(view):
    multirun = view["multirun_loss"]
    assert set(multirun) == {"train"}
    assert [tuple(map(_key, r)) for r in multirun["train"]] == [
        tuple(map(_key, r)) for r in view["scalars"]["train", "loss"]
    ]


def test_timeseries_scalars(view, written):
    (series,) = view["ts_scalars"]
    got = [(e["wallTime"], e["step"], e["value"]) for e in series["runToSeries"][WEIRD_RUN]]
    _assert_series(got, written[1]["scalars"][WEIRD_RUN, "steps/new_style"], "timeSeries steps/new_style")


def test_histogram_tags(view, written):
    expected = {}
    for run, tag in written[1]["histograms"]:
        expected.setdefault(run, []).append(tag)
    assert view["histogram_tags"] == {run: sorted(tags) for run, tags in expected.items()}


def test_histogram_bins(view, written):
    root, out = written
    stored = written_histogram_bins(root, "hist")
    for (run, tag), logged in out["histograms"].items():
        what = "%s/%s" % (run, tag)
        served = view["ts_histograms"][run, tag]
        assert len(served) == len(logged), "%s: %d entries served, %d steps written" % (what, len(served), len(logged))
        assert [e["step"] for e in served] == [s for s, _w, _v in logged]
        assert [e["step"] for e in served] == [s for s, _w, _rows in stored[tag]]
        for entry, (step, wall, values), (_s, _w, rows) in zip(served, logged, stored[tag]):
            bins = [(b["min"], b["max"], b["count"]) for b in entry["bins"]]
            assert abs(entry["wallTime"] - wall) <= 1e-6
            assert np.array_equal(np.float32(bins), np.float32(rows)), "%s step %d: bins differ from the file" % (
                what,
                step,
            )
            assert all(left <= right for left, right, _c in bins), "%s step %d: backwards bin %r" % (what, step, bins)
            assert bins[0][2] > 0 and bins[-1][2] > 0, "%s step %d: empty end bin %r" % (what, step, bins)
            finite = int(np.isfinite(values).sum())
            assert sum(c for _l, _r, c in bins) == finite, "%s step %d: counts sum" % (what, step)
            finite_values = values[np.isfinite(values)]
            assert bins[0][0] <= finite_values.min() + 1e-6 and bins[-1][1] >= finite_values.max() - 1e-6


def test_histograms_and_distributions_endpoints(view, written):
    for (run, tag), logged in written[1]["histograms"].items():
        sampled = view["histograms"][run, tag]
        assert len(sampled) == min(51, len(logged))
        full = {e["step"]: (e["wallTime"], [[b["min"], b["max"], b["count"]] for b in e["bins"]])
                for e in view["ts_histograms"][run, tag]}
        for wall, step, bins in sampled:
            assert (wall, bins) == full[step], "%s/%s step %d: /histograms differs from timeSeries" % (run, tag, step)
        dist = view["distributions"][run, tag]
        assert len(dist) == min(501, len(logged))
        assert all(len(points) == 9 for _wt, _step, points in dist)


def test_image_tags(view, written):
    expected = {}
    for (run, tag), rows in written[1]["images"].items():
        expected.setdefault(run, {})[tag] = max(len(pixels) for _s, _w, pixels in rows)
    got = {run: {tag: info["samples"] for tag, info in t.items()} for run, t in view["image_tags"].items()}
    assert got == expected


def test_images(view, written):
    for (run, tag), rows in written[1]["images"].items():
        for sample in range(max(len(p) for _s, _w, p in rows)):
            entries = view["images"].get((run, tag, sample))
            assert entries is not None, "%s/%s sample %d not served" % (run, tag, sample)
            expected = [(s, w, p[sample]) for s, w, p in rows if len(p) > sample]
            assert [e[0] for e in entries] == [s for s, _w, _p in expected]
            for (step, wall, body, ctype), (_s, want_wall, pixels) in zip(entries, expected):
                assert ctype == "image/png", ctype
                assert abs(wall - want_wall) <= 1e-6
                decoded = np.asarray(Image.open(io.BytesIO(body)))
                assert decoded.shape == pixels.shape, "%s/%s step %d sample %d: shape" % (run, tag, step, sample)
                assert np.array_equal(decoded, pixels), "%s/%s step %d sample %d: pixels" % (run, tag, step, sample)


def test_text(view, written):
    # torch names a text tag "<tag>/text_summary"; the plain tag is accepted too.
    served_tags = {run: set(tags) for run, tags in view["text_tags"].items()}
    expected_tags = {}
    for (run, tag), rows in written[1]["text"].items():
        names = served_tags.get(run, set()) & {tag, tag + "/text_summary"}
        assert len(names) == 1, "%s/%s: text tags served %r" % (run, tag, view["text_tags"])
        (name,) = names
        expected_tags.setdefault(run, set()).add(name)
        got = view["text"][run, name]
        assert [(e["step"], e["text"]) for e in got] == [(s, t) for s, _w, t in rows]
        for entry, (_s, wall, _t) in zip(got, rows):
            assert abs(entry["wall_time"] - wall) <= 1e-6
    assert served_tags == expected_tags


# -- both loaders ----------------------------------------------------------------------


def test_loaders_agree(views):
    python, rust = normalize(views(False)), normalize(views(True))
    differing = sorted(k for k in python if python[k] != rust[k])
    details = []
    for k in differing:
        a, b = python[k], rust[k]
        if isinstance(a, dict) and isinstance(b, dict):
            sub = [sk for sk in set(a) | set(b) if a.get(sk) != b.get(sk)]
            details.append("%s: %d keys differ, e.g. %r" % (k, len(sub), sorted(map(repr, sub))[:3]))
        else:
            details.append(k)
    assert not differing, "Python and Rust loaders differ: " + "; ".join(details)
