"""Issue 3 acceptance: every SummaryWriter method, shown by stock TensorBoard, both loaders.

One logdir is written with ``tbx.SummaryWriter`` through every public add_*
method (``write_logdir``). Each loader's view of it (Python ``load_fast=False``,
Rust ``load_fast=True``) is fetched once over the HTTP API (``collect``; one
TensorBoard per loader per module) and compared with what was written,
dashboard by dashboard, following FORMATS.md section 7 steps 5 to 16 and 18:
scalars, custom scalars, histograms and distributions, images (add_image,
add_images, add_figure, add_image_with_boxes, add_video), audio, text
(markdown and tables), PR curves, meshes, hparams (torch-style sub-runs and
the own-run mode, each trial with an ``eval`` sub-run), the projector and
graphs. ``test_loaders_agree`` then diffs the two loaders' normalized views.

"What was written" comes from two places: the arguments passed (pixels,
samples, counts, hparam values) and, for encoded bytes the server must pass
through untouched (PNG, GIF, WAV, GraphDef), the event files themselves, read
back with ``tbx.read_events``.
"""

import io
import json
import math
import os
import time
import wave

import numpy as np
import pytest
from PIL import Image

import tbx
from tbserver import TensorBoardError, TensorBoardServer, fetched_once

SummaryWriter = tbx.SummaryWriter

LOADERS = [pytest.param(False, id="python"), pytest.param(True, id="rust")]

WALL0 = 1_700_000_000.5  # fake but plausible wall times, exact in float64
SCALAR_STEPS = 40
HIST_STEPS = 8
HIST_VALUES = 400
PR_THRESHOLDS = 11
AUDIO_RATE = 8000
AUDIO_FRAMES = 800
IMG_H, IMG_W = 6, 10
DIST_BASIS_POINTS = [0, 668, 1587, 3085, 5000, 6915, 8413, 9332, 10000]
ALL_STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]

# hparams trials: (session run, writer mode, hparams, metrics, eval-subrun accuracy).
# "subrun": torch's add_hparams(run_name=...) from a writer on "hp";
# "own": a writer on the session run itself calls add_hparams(run_name=".").
HP_DOMAINS = {"optimizer": ["sgd", "adam"], "layers": [2, 3]}
HP_STEP = 4
HP_TRIALS = [
    ("hp/trial_0", "subrun", {"lr": 0.1, "optimizer": "sgd", "batchnorm": True, "layers": 2},
     {"hparam/accuracy": 0.75, "hparam/loss": 0.5}, 0.70),
    ("hp/trial_1", "subrun", {"lr": 0.01, "optimizer": "adam", "batchnorm": False, "layers": 3},
     {"hparam/accuracy": 0.85, "hparam/loss": 0.25}, 0.80),
    ("own/a", "own", {"lr": 0.003, "optimizer": "adam", "batchnorm": True, "layers": 3},
     {"hparam/accuracy": 0.9, "hparam/loss": 0.125}, 0.875),
    ("own/b", "own", {"lr": 0.3, "optimizer": "sgd", "batchnorm": False, "layers": 2},
     {"hparam/accuracy": 0.5, "hparam/loss": 1.5}, 0.4375),
]
HP_TYPES = {"lr": "DATA_TYPE_FLOAT64", "optimizer": "DATA_TYPE_STRING", "batchnorm": "DATA_TYPE_BOOL",
            "layers": "DATA_TYPE_FLOAT64"}


def _wall(step, offset=0.0):
    return WALL0 + offset + step * 0.0625


def _loss(step):
    special = {10: math.nan, 20: math.inf, 30: -math.inf}
    return special.get(step, math.exp(-step / 10.0) + 0.01 * step)


# -- writing -------------------------------------------------------------------------


def _image_chw(seed, channels=3, height=IMG_H, width=IMG_W):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(channels, height, width), dtype=np.uint8)


def _figure(seed):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.0, 1.5), dpi=40)
    ax = fig.add_subplot()
    ax.plot([0, 1, 2, 3], [seed % 3, 2, seed % 2, 3], color="tab:blue")
    ax.set_title("fig %d" % seed)
    return fig


def _render_rgb(fig):
    """The figure's pixels as add_figure must produce them (opaque figure -> RGB)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.array(canvas.buffer_rgba(), dtype=np.uint8, copy=True)
    assert (rgba[..., 3] == 255).all()
    return rgba[..., :3]


def _video():
    """[1, T=4, C=3, H=12, W=16] uint8 with few colours, so GIF palettes are lossless."""
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], dtype=np.uint8)
    frames = np.zeros((4, 12, 16, 3), dtype=np.uint8)
    for t in range(4):
        frames[t, :, :] = palette[t]
        frames[t, 2:6, 3 + t: 9 + t] = palette[(t + 1) % 5]
        frames[t, 8:, :4] = palette[4]
    return frames.transpose(0, 3, 1, 2)[None]


def _pr_inputs(step):
    """Labels and predictions that stay clear of the bucket edges k / (n - 1)."""
    rng = np.random.default_rng(50 + step)
    n = PR_THRESHOLDS
    labels = rng.integers(0, 2, size=200).astype(bool)
    bucket = np.where(labels, rng.integers(3, n - 1, size=200), rng.integers(0, n - 4, size=200))
    predictions = (bucket + rng.uniform(0.2, 0.8, size=200)) / (n - 1)
    return labels, predictions.astype(np.float32)


def _expected_pr(labels, predictions, n):
    """TensorBoard's definition: at threshold j, predictions with floor(p * (n - 1)) >= j are positive."""
    bucket = np.floor(predictions.astype(np.float64) * (n - 1)).astype(int)
    tp = np.array([np.sum(labels & (bucket >= j)) for j in range(n)], dtype=np.float64)
    fp = np.array([np.sum(~labels & (bucket >= j)) for j in range(n)], dtype=np.float64)
    tn, fn = fp[0] - fp, tp[0] - tp
    precision = tp / np.maximum(tp + fp, 1e-7)
    recall = tp / np.maximum(tp + fn, 1e-7)
    return np.stack([tp, fp, tn, fn, precision, recall])


PR_RAW = np.array(
    [
        [10, 8, 5, 2, 0, 0],  # TP: the last two thresholds have TP + FP == 0
        [10, 6, 3, 1, 0, 0],  # FP
        [0, 4, 7, 9, 10, 10],  # TN
        [0, 2, 5, 8, 10, 10],  # FN
        [0.5, 8 / 14, 5 / 8, 2 / 3, 0, 0],  # precision
        [1.0, 0.8, 0.5, 0.2, 0, 0],  # recall
    ],
    dtype=np.float64,
)

CUBE_VERTICES = np.array(
    [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float32
)[None]
CUBE_FACES = np.array(
    [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
     [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]],
    dtype=np.int32,
)[None]
CUBE_COLORS = (np.arange(24, dtype=np.int64).reshape(1, 8, 3) * 10).astype(np.uint8)
MESH_CONFIG = {"camera": {"cls": "PerspectiveCamera", "fov": 75}}


class _Net:
    """Builds a small torch module lazily (torch is imported only when writing)."""

    @staticmethod
    def make():
        import torch

        class TinyNet(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = torch.nn.Linear(4, 8)
                self.act = torch.nn.ReLU()
                self.fc2 = torch.nn.Linear(8, 2)

            def forward(self, x):
                return self.fc2(self.act(self.fc1(x)))

        torch.manual_seed(0)
        return TinyNet(), torch.zeros(1, 4)


def write_logdir(root):
    """Write the logdir through every SummaryWriter method; return what was written."""
    root = os.fspath(root)
    out = {
        "scalars": {},  # (run, tag) -> [(step, value, wall)]
        "histograms": {},  # (run, tag) -> [(step, wall, values or None)]
        "histogram_raw": {},  # (run, tag) -> [(step, wall, rows)]
        "images": {},  # (run, tag) -> [(step, wall, [HWC uint8 pixels or None per sample])]
        "audio": {},  # (run, tag) -> [(step, wall, [channels, frames] float clip)]
        "text": {},  # (run, tag as served) -> [(step, wall, str or rows)]
        "pr": {},  # (run, tag) -> [(step, wall, expected [6, n] or None)]
        "mesh": {},  # (run, name) -> [(step, wall, {content_type: array})]
        "embeddings": {},  # (run, tensor_name) -> dict
        "graphs": set(),  # runs with a graph
    }

    def scalar(w, run, tag, step, value, wall, new_style=False):
        w.add_scalar(tag, value, step, walltime=wall, new_style=new_style)
        out["scalars"].setdefault((run, tag), []).append((step, value, wall))

    # Run "scalars": add_scalar (legacy and new style, NaN/inf), add_scalars, custom scalars.
    w = SummaryWriter(os.path.join(root, "scalars"))
    for step in range(SCALAR_STEPS):
        wall = _wall(step)
        acc = 0.5 + 0.01 * step
        scalar(w, "scalars", "loss", step, _loss(step), wall)
        scalar(w, "scalars", "acc", step, acc, wall, new_style=True)
        scalar(w, "scalars", "acc_low", step, acc - 0.05, wall)
        scalar(w, "scalars", "acc_high", step, acc + 0.05, wall, new_style=True)
        pair = {"train": 1.0 / (step + 1), "val": 1.5 / (step + 1)}
        w.add_scalars("losses", pair, step, walltime=wall)
        for key, value in pair.items():
            out["scalars"].setdefault(("scalars/losses_" + key, "losses"), []).append((step, value, wall))
    w.add_custom_scalars({"Training": {"loss and acc": ["Multiline", ["loss", r"acc.*"]]}})
    w.add_custom_scalars_multilinechart(["losses"], category="Compare", title="train vs val")
    w.add_custom_scalars_marginchart(["acc", "acc_low", "acc_high"], category="Training", title="accuracy band")
    w.close()
    out["layout"] = [
        ("Training", [("loss and acc", "multiline", ["loss", "acc.*"]),
                      ("accuracy band", "margin", [("acc", "acc_low", "acc_high")])]),
        ("Compare", [("train vs val", "multiline", ["losses"])]),
    ]
    out["layout_run"] = "scalars"

    # Run "hist": add_histogram and add_histogram_raw.
    w = SummaryWriter(os.path.join(root, "hist"))
    rng = np.random.default_rng(3)
    for step in range(HIST_STEPS):
        wall = _wall(step, 100.0)
        values = rng.normal(step * 0.3, 1.0, size=HIST_VALUES)
        w.add_histogram("weights", values, step, walltime=wall)
        out["histograms"].setdefault(("hist", "weights"), []).append((step, wall, values))
        counts = [3.0, 5.0, 7.0, 2.0 + step]
        limits = [-1.0, 0.0, 1.0, 2.0]
        w.add_histogram_raw("raw", -2.0, 2.0, sum(counts), 1.5, 40.0, limits, counts, step, walltime=wall)
        rows = [[-2.0, -1.0, 3.0], [-1.0, 0.0, 5.0], [0.0, 1.0, 7.0], [1.0, 2.0, 2.0 + step]]
        out["histogram_raw"].setdefault(("hist", "raw"), []).append((step, wall, rows))
    w.close()

    # Run "media": add_image, add_images, add_figure, add_image_with_boxes, add_video,
    # add_audio, add_text.
    w = SummaryWriter(os.path.join(root, "media"))
    images = out["images"]
    for step in range(3):
        wall = _wall(step, 200.0)
        img = _image_chw(step)
        w.add_image("image/chw", img, step, walltime=wall)
        images.setdefault(("media", "image/chw"), []).append((step, wall, [img.transpose(1, 2, 0)]))
        batch = np.stack([_image_chw(10 * step + i) for i in range(3)])
        w.add_images("images/grid", batch, step, walltime=wall)  # torch: one tiled image, 8 per row
        images.setdefault(("media", "images/grid"), []).append(
            (step, wall, [np.hstack([b.transpose(1, 2, 0) for b in batch])])
        )
    wall = _wall(0, 210.0)
    fig = _figure(0)
    pixels = _render_rgb(fig)
    w.add_figure("figure", fig, 0, walltime=wall)
    images.setdefault(("media", "figure"), []).append((0, wall, [pixels]))
    figs = [_figure(1), _figure(2)]
    pixels = np.hstack([_render_rgb(f) for f in figs])
    w.add_figure("figure", figs, 1, walltime=_wall(1, 210.0))  # a list is tiled like a batch
    images["media", "figure"].append((1, _wall(1, 210.0), [pixels]))

    gray = np.full((3, 40, 60), 128, dtype=np.uint8)
    w.add_image_with_boxes("boxes", gray, np.array([[5, 20, 30, 35]]), 0, walltime=_wall(0, 220.0), labels=["cat"])
    w.add_image_with_boxes(
        "boxes", gray.transpose(1, 2, 0), np.array([[5.0, 20.0, 30.0, 35.0]]), 1,
        walltime=_wall(1, 220.0), rescale=2, dataformats="HWC",
    )
    images["media", "boxes"] = [(0, _wall(0, 220.0), [None]), (1, _wall(1, 220.0), [None])]  # checked apart

    video = _video()
    w.add_video("video", video, 0, fps=4, walltime=_wall(0, 230.0))
    out["video"] = {("media", "video"): [(0, _wall(0, 230.0), video[0].transpose(0, 2, 3, 1))]}
    images["media", "video"] = [(0, _wall(0, 230.0), [None])]  # a GIF; checked apart

    t = np.arange(AUDIO_FRAMES) / AUDIO_RATE
    for step in range(2):
        wall = _wall(step, 240.0)
        clip = (0.5 * np.sin(2 * np.pi * (440 + 110 * step) * t)).astype(np.float32)
        # [L] and torch's documented [1, L]
        w.add_audio("audio/mono", clip if step == 0 else clip[None], step, sample_rate=AUDIO_RATE, walltime=wall)
        out["audio"].setdefault(("media", "audio/mono"), []).append((step, wall, clip[None]))
    stereo = np.stack([0.25 * np.sin(2 * np.pi * 300 * t), -0.75 * np.cos(2 * np.pi * 500 * t)]).astype(np.float32)
    w.add_audio("audio/stereo", stereo, 0, sample_rate=AUDIO_RATE, walltime=_wall(0, 250.0))
    out["audio"]["media", "audio/stereo"] = [(0, _wall(0, 250.0), stereo)]

    for step in range(3):
        wall = _wall(step, 260.0)
        text = "step %d: **bold** ü `code`\n\n* item one\n* item two" % step
        w.add_text("notes", text, step, walltime=wall)
        out["text"].setdefault(("media", "notes/text_summary"), []).append((step, wall, text))
    table = [["model", "accuracy"], ["base", "**0.91**"], ["big", "0.95"]]
    w.add_text("results", table, 0, walltime=_wall(0, 270.0))
    out["text"]["media", "results/text_summary"] = [(0, _wall(0, 270.0), table)]
    column = ["alpha", "beta", "gamma"]
    w.add_text("column", column, 0, walltime=_wall(0, 280.0))
    out["text"]["media", "column/text_summary"] = [(0, _wall(0, 280.0), [[c] for c in column])]
    w.close()

    # Run "pr": add_pr_curve and add_pr_curve_raw.
    w = SummaryWriter(os.path.join(root, "pr"))
    for step in range(2):
        wall = _wall(step, 300.0)
        labels, predictions = _pr_inputs(step)
        w.add_pr_curve("pr/computed", labels, predictions, step, num_thresholds=PR_THRESHOLDS, walltime=wall)
        out["pr"].setdefault(("pr", "pr/computed"), []).append(
            (step, wall, _expected_pr(labels, predictions, PR_THRESHOLDS))
        )
    w.add_pr_curve_raw("pr/raw", *PR_RAW, global_step=0, num_thresholds=PR_RAW.shape[1], walltime=_wall(0, 310.0))
    out["pr"]["pr", "pr/raw"] = [(0, _wall(0, 310.0), PR_RAW)]
    w.close()

    # Run "mesh": add_mesh with all three components over two steps, and a point cloud of 2 samples.
    w = SummaryWriter(os.path.join(root, "mesh"))
    for step in range(2):
        wall = _wall(step, 400.0)
        vertices = CUBE_VERTICES * (step + 1)
        w.add_mesh("cube", vertices, colors=CUBE_COLORS, faces=CUBE_FACES, config_dict=MESH_CONFIG,
                   global_step=step, walltime=wall)
        out["mesh"].setdefault(("mesh", "cube"), []).append(
            (step, wall, {"VERTEX": vertices, "FACE": CUBE_FACES, "COLOR": CUBE_COLORS})
        )
    cloud = np.random.default_rng(9).normal(size=(2, 5, 3)).astype(np.float32)
    w.add_mesh("cloud", cloud, global_step=0, walltime=_wall(0, 410.0))
    out["mesh"]["mesh", "cloud"] = [(0, _wall(0, 410.0), {"VERTEX": cloud})]
    w.close()

    # Run "graph": add_graph of a small module.
    net, example = _Net.make()
    w = SummaryWriter(os.path.join(root, "graph"))
    w.add_graph(net, example)
    w.close()
    out["graphs"].add("graph")

    # Run "proj": two embeddings sharing one projector_config.pbtxt.
    w = SummaryWriter(os.path.join(root, "proj"))
    rng = np.random.default_rng(11)
    points = rng.normal(size=(6, 4)).astype(np.float32)
    labels = ["p%d" % i for i in range(6)]
    thumbs = rng.integers(0, 256, size=(6, 3, 8, 8), dtype=np.uint8)
    w.add_embedding(points, metadata=labels, label_img=thumbs, global_step=0, tag="points")
    features = rng.normal(size=(5, 3)).astype(np.float32)
    rows = [["f%d" % i, "class%d" % (i % 2)] for i in range(5)]
    w.add_embedding(features, metadata=rows, global_step=1, tag="features", metadata_header=["name", "cls"])
    w.close()
    out["embeddings"]["proj", "points:00000"] = {
        "mat": points, "metadata": ["p%d" % i for i in range(6)], "sprite": thumbs,
    }
    out["embeddings"]["proj", "features:00001"] = {
        "mat": features, "metadata": ["name\tcls"] + ["\t".join(r) for r in rows], "sprite": None,
    }

    # hparams: torch-style sub-runs and the own-run mode, each trial with an "eval" sub-run.
    hp_writer = SummaryWriter(os.path.join(root, "hp"))
    out["hparams"] = []
    for session, mode, hparams, metrics, eval_acc in HP_TRIALS:
        if mode == "subrun":
            hp_writer.add_hparams(hparams, metrics, hparam_domain_discrete=HP_DOMAINS,
                                  run_name=session.split("/", 1)[1], global_step=HP_STEP,
                                  extra_metrics=[("eval", "hparam/accuracy")])
        else:
            own = SummaryWriter(os.path.join(root, session))
            for step in range(HP_STEP + 1):
                scalar(own, session, "train/loss", step, 2.0 / (step + 1), _wall(step, 500.0))
            own.add_hparams(hparams, metrics, hparam_domain_discrete=HP_DOMAINS, run_name=".", global_step=HP_STEP,
                            extra_metrics=[("eval", "hparam/accuracy")])
            own.close()
        ev = SummaryWriter(os.path.join(root, session, "eval"))
        scalar(ev, session + "/eval", "hparam/accuracy", HP_STEP, eval_acc, _wall(HP_STEP, 600.0))
        ev.close()
        out["hparams"].append((session, hparams, metrics, eval_acc))
    hp_writer.close()

    out["runs"] = {
        os.path.relpath(dirpath, root).replace(os.sep, "/")
        for dirpath, _dirs, files in os.walk(root)
        if any("tfevents" in f for f in files)
    }
    return out


def read_stored(root):
    """{(run, tag): [(step, wall, tbx Summary.Value)]} and {run: [graph_def bytes]} from the files."""
    values, graphs = {}, {}
    for run, event in tbx.read_events(root):
        if event.HasField("graph_def"):
            graphs.setdefault(run, []).append(event.graph_def)
        for value in event.summary.value:
            values.setdefault((run, value.tag), []).append((event.step, event.wall_time, value))
    return values, graphs


# -- fetching each loader's view ---------------------------------------------------


class _Broken:
    """A view section whose requests failed: the tests that need it fail with the reason."""

    def __init__(self, error):
        self.error = error


def _section(view, name):
    got = view[name]
    if isinstance(got, _Broken):
        pytest.fail("%s: %s" % (name, got.error))
    return got


def _fetch_scalars(tb):
    tags = tb.get_json("/data/plugin/scalars/tags")
    return {
        "tags": tags,
        "values": {(run, tag): tb.get_json("/data/plugin/scalars/scalars", run=run, tag=tag)
                   for run, run_tags in tags.items() for tag in run_tags},
    }


def _fetch_custom_scalars(tb):
    queries = [("scalars", "acc.*"), ("scalars", "loss"), ("scalars/losses_train", "losses"),
               ("scalars/losses_val", "losses")]
    return {
        "layout": tb.get_json("/data/plugin/custom_scalars/layout"),
        "scalars": {(run, regex): tb.get_json("/data/plugin/custom_scalars/scalars", run=run, tag=regex)
                    for run, regex in queries},
    }


def _fetch_histograms(tb):
    tags = tb.get_json("/data/plugin/histograms/tags")
    got = {"tags": tags, "series": {}, "histograms": {}, "distributions": {}}
    for run, run_tags in tags.items():
        for tag in run_tags:
            (series,) = tb.time_series([{"plugin": "histograms", "tag": tag, "run": run}])
            got["series"][run, tag] = series["runToSeries"].get(run, [])
            got["histograms"][run, tag] = tb.get_json("/data/plugin/histograms/histograms", run=run, tag=tag)
            got["distributions"][run, tag] = tb.get_json(
                "/data/plugin/distributions/distributions", run=run, tag=tag
            )
    return got


def _fetch_blobs(tb, plugin, route, blob_route):
    tags = tb.get_json("/data/plugin/%s/tags" % plugin)
    got = {"tags": tags, "entries": {}}
    for run, run_tags in tags.items():
        for tag, info in run_tags.items():
            for sample in range(info["samples"]):
                entries = []
                for entry in tb.get_json("/data/plugin/%s/%s" % (plugin, route), run=run, tag=tag, sample=sample):
                    body, ctype = tb.get_bytes("/data/plugin/%s/%s?%s" % (plugin, blob_route, entry["query"]))
                    entry = {k: v for k, v in entry.items() if k != "query"}
                    entry.update(body=body, http_content_type=ctype)
                    entries.append(entry)
                got["entries"][run, tag, sample] = entries
    return got


def _fetch_text(tb):
    tags = tb.get_json("/data/plugin/text/tags")
    got = {"tags": tags, "markdown": {}, "raw": {}}
    for run, run_tags in tags.items():
        for tag in run_tags:
            got["markdown"][run, tag] = tb.get_json("/data/plugin/text/text", run=run, tag=tag)
            got["raw"][run, tag] = tb.get_json("/data/plugin/text/text", run=run, tag=tag, markdown="false")
    return got


def _fetch_pr_curves(tb):
    tags = tb.get_json("/data/plugin/pr_curves/tags")
    return {
        "tags": tags,
        "curves": {(run, tag): tb.get_json("/data/plugin/pr_curves/pr_curves", run=run, tag=tag)
                   for run, run_tags in tags.items() for tag in run_tags},
    }


def _fetch_mesh(tb):
    tags = tb.get_json("/data/plugin/mesh/tags")
    got = {"tags": tags, "meshes": {}, "data": {}}
    for run, run_tags in tags.items():
        for name, info in run_tags.items():
            for sample in range(info["samples"]):
                entries = tb.get_json("/data/plugin/mesh/meshes", run=run, tag=name, sample=sample)
                got["meshes"][run, name, sample] = entries
                for content_type, ctype_name in ((1, "VERTEX"), (2, "FACE"), (3, "COLOR")):
                    for step in sorted({e["step"] for e in entries if e["content_type"] == content_type}):
                        got["data"][run, name, sample, ctype_name, step] = tb.get_bytes(
                            "/data/plugin/mesh/data", run=run, tag=name, sample=sample,
                            content_type=ctype_name, step=step,
                        )
    return got


def _fetch_hparams(tb):
    experiment = tb.post_json("/data/plugin/hparams/experiment", {"experimentName": ""})
    groups = tb.post_json("/data/plugin/hparams/session_groups", {
        "experimentName": "", "allowedStatuses": ALL_STATUSES, "colParams": [],
        "startIndex": 0, "sliceSize": 100,
    })
    evals = {}
    for session, _mode, _hp, metrics, _eval in HP_TRIALS:
        names = [(tag, "") for tag in metrics] + [("hparam/accuracy", "eval")]
        if session.startswith("own/"):
            names.append(("train/loss", ""))
        for tag, group in names:
            evals[session, tag, group] = tb.post_json("/data/plugin/hparams/metric_evals", {
                "experimentName": "", "sessionName": session, "metricName": {"tag": tag, "group": group},
            })
    return {"experiment": experiment, "session_groups": groups, "metric_evals": evals}


def _fetch_projector(tb):
    runs = tb.get_json("/data/plugin/projector/runs")
    got = {"runs": runs, "info": {}, "tensor": {}, "metadata": {}, "sprite": {}}
    for run in runs:
        info = tb.get_json("/data/plugin/projector/info", run=run)
        got["info"][run] = info
        for emb in info.get("embeddings", []):
            name = emb["tensorName"]
            got["tensor"][run, name] = tb.get_bytes("/data/plugin/projector/tensor", run=run, name=name)
            if emb.get("metadataPath"):
                got["metadata"][run, name] = tb.get_text("/data/plugin/projector/metadata", run=run, name=name)
            if emb.get("sprite", {}).get("imagePath"):
                got["sprite"][run, name] = tb.get_bytes("/data/plugin/projector/sprite_image", run=run, name=name)
    return got


def _fetch_graphs(tb):
    info = tb.get_json("/data/plugin/graphs/info")
    graphs = {run: tb.get_bytes("/data/plugin/graphs/graph", run=run, conceptual="false")
              for run, item in info.items() if item.get("run_graph")}
    return {"info": info, "graphs": graphs}


def _plugins_enabled(tb, wanted):
    """Enabled plugin names; the projector's flag is computed asynchronously, so poll a little."""
    deadline = time.monotonic() + 10
    while True:
        listing = tb.get_json("/data/plugins_listing")
        enabled = sorted(name for name, p in listing.items() if p.get("enabled"))
        if set(wanted) <= set(enabled) or time.monotonic() > deadline:
            return enabled
        time.sleep(0.25)


EXPECTED_PLUGINS = ("scalars", "custom_scalars", "images", "audio", "graphs", "distributions", "histograms",
                    "text", "pr_curves", "hparams", "mesh", "projector", "timeseries")

FETCHERS = {
    "runs": lambda tb: tb.get_json("/data/runs"),
    "plugins": lambda tb: _plugins_enabled(tb, EXPECTED_PLUGINS),
    "scalars": _fetch_scalars,
    "custom_scalars": _fetch_custom_scalars,
    "histograms": _fetch_histograms,
    "images": lambda tb: _fetch_blobs(tb, "images", "images", "individualImage"),
    "audio": lambda tb: _fetch_blobs(tb, "audio", "audio", "individualAudio"),
    "text": _fetch_text,
    "pr_curves": _fetch_pr_curves,
    "mesh": _fetch_mesh,
    "hparams": _fetch_hparams,
    "projector": _fetch_projector,
    "graphs": _fetch_graphs,
}


def collect(logdir, load_fast):
    """Every dashboard's data from one TensorBoard on ``logdir``; a failing section is kept as _Broken."""
    view = {}
    with TensorBoardServer(logdir, load_fast) as tb:
        for name, fetch in FETCHERS.items():
            try:
                view[name] = fetch(tb)
            except (TensorBoardError, KeyError, ValueError, TypeError) as exc:
                view[name] = _Broken("%s: %s" % (type(exc).__name__, exc))
    return view


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e_surface")
    out = write_logdir(root)
    out["stored"], out["stored_graphs"] = read_stored(root)
    return root, out


@pytest.fixture(scope="module")
def views(written):
    """``views(load_fast)``: that loader's view, fetched on first use, so any test
    order or ``-k`` selection works and each loader is started once per module."""
    return fetched_once(lambda load_fast: collect(written[0], load_fast))


@pytest.fixture(params=LOADERS)
def view(request, views):
    return views(request.param)


# -- helpers -----------------------------------------------------------------------------


def _same_float32(got, want):
    got32, want32 = np.float32(float(got)), np.float32(float(want))
    return got32 == want32 or (np.isnan(got32) and np.isnan(want32))


def _assert_series(got, expected, what):
    """got: served [[wall, step, value]]; expected: [(step, value, wall)]."""
    assert [row[1] for row in got] == [s for s, _v, _w in expected], "%s: steps differ" % what
    for (wall, step, value), (_s, want, want_wall) in zip(got, expected):
        assert abs(wall - want_wall) <= 1e-6, "%s step %d: wall_time %r != %r" % (what, step, wall, want_wall)
        assert _same_float32(value, want), "%s step %d: value %r != %r" % (what, step, value, want)


def _stored_tensor(value):
    """A tbx Summary.Value's tensor as numpy, decoded by TensorBoard's own tensor_util."""
    from tensorboard.compat.proto import tensor_pb2
    from tensorboard.util import tensor_util

    return tensor_util.make_ndarray(tensor_pb2.TensorProto.FromString(value.tensor.SerializeToString()))


def _blob(value, index):
    """The index-th string of a stored blob-sequence value (tensor or legacy form)."""
    if value.HasField("tensor"):
        return value.tensor.string_val[index]
    if value.HasField("image"):
        return [str(value.image.width).encode(), str(value.image.height).encode(),
                value.image.encoded_image_string][index]
    assert value.HasField("audio") and index == 0
    return value.audio.encoded_audio_string


# -- runs and plugins ----------------------------------------------------------------------


def test_runs(view, written):
    runs = _section(view, "runs")
    assert sorted(runs) == sorted(set(runs)), "duplicate runs: %r" % runs
    # Every directory holding an event file is a run, whichever loader.
    assert set(runs) == written[1]["runs"]
    expected_subset = {"scalars", "scalars/losses_train", "scalars/losses_val", "hist", "media", "pr", "mesh",
                       "graph", "proj", "hp/trial_0", "hp/trial_1", "hp/trial_0/eval", "hp/trial_1/eval",
                       "own/a", "own/b", "own/a/eval", "own/b/eval"}
    assert expected_subset <= set(runs)


def test_plugins_enabled(view):
    enabled = _section(view, "plugins")
    missing = [p for p in EXPECTED_PLUGINS if p not in enabled]
    assert not missing, "plugins not enabled: %r (enabled: %r)" % (missing, enabled)


# -- scalars and custom scalars -------------------------------------------------------------


def test_scalars(view, written):
    got = _section(view, "scalars")
    expected_tags = {}
    for run, tag in written[1]["scalars"]:
        expected_tags.setdefault(run, set()).add(tag)
    got_tags = {run: set(tags) for run, tags in got["tags"].items() if tags}
    # add_hparams writes its metrics as scalars into the session run; they are checked with hparams.
    for session, _hp, metrics, _eval in written[1]["hparams"]:
        extra = got_tags.get(session, set()) - expected_tags.get(session, set())
        assert extra == set(metrics), "%s: scalar tags besides the written ones: %r" % (session, extra)
        got_tags[session] -= extra
        if not got_tags[session]:
            del got_tags[session]
    assert got_tags == expected_tags
    for (run, tag), expected in written[1]["scalars"].items():
        _assert_series(got["values"][run, tag], expected, "%s/%s" % (run, tag))


def _expected_layout_json(spec):
    """The written layout as the plugin prints it (TensorBoard's own Layout proto and printer)."""
    import warnings

    from tensorboard.plugins.custom_scalar import layout_pb2

    with warnings.catch_warnings():  # plugin_util's vendored bleach warns on import; not our concern
        warnings.simplefilter("ignore", DeprecationWarning)
        from tensorboard import plugin_util

    layout = layout_pb2.Layout()
    for title, charts in spec:
        category = layout.category.add(title=title)
        for chart_title, kind, tags in charts:
            chart = category.chart.add(title=chart_title)
            if kind == "multiline":
                chart.multiline.tag.extend(tags)
            else:
                for value, lower, upper in tags:
                    chart.margin.series.add(value=value, lower=lower, upper=upper)
    return json.loads(plugin_util.proto_to_json(layout))


def test_custom_scalars_layout(view, written):
    got = _section(view, "custom_scalars")
    assert got["layout"] == _expected_layout_json(written[1]["layout"])


def test_custom_scalars_data(view, written):
    got = _section(view, "custom_scalars")["scalars"]
    series = written[1]["scalars"]
    expectations = {
        ("scalars", "acc.*"): ["acc", "acc_high", "acc_low"],
        ("scalars", "loss"): ["loss"],
        ("scalars/losses_train", "losses"): ["losses"],
        ("scalars/losses_val", "losses"): ["losses"],
    }
    for (run, regex), tags in expectations.items():
        answer = got[run, regex]
        assert answer["regex_valid"] is True, (run, regex, answer)
        assert sorted(answer["tag_to_events"]) == tags, (run, regex, sorted(answer["tag_to_events"]))
        for tag in tags:
            _assert_series(answer["tag_to_events"][tag], series[run, tag], "custom_scalars %s/%s" % (run, tag))


# -- histograms and distributions -------------------------------------------------------------


def _bins(entry):
    return [[b["min"], b["max"], b["count"]] for b in entry["bins"]]


def test_histogram_tags(view):
    got = _section(view, "histograms")
    assert {run: sorted(tags) for run, tags in got["tags"].items() if tags} == {"hist": ["raw", "weights"]}


def test_histograms_add_histogram(view, written):
    got = _section(view, "histograms")
    stored = written[1]["stored"]["hist", "weights"]
    served = got["series"]["hist", "weights"]
    logged = written[1]["histograms"]["hist", "weights"]
    assert [e["step"] for e in served] == [s for s, _w, _v in logged]
    for entry, (step, wall, values), (_s, _w, value) in zip(served, logged, stored):
        assert abs(entry["wallTime"] - wall) <= 1e-6
        bins = _bins(entry)
        assert np.array_equal(np.float32(bins), np.float32(_stored_tensor(value))), "step %d: bins != file" % step
        assert sum(c for _l, _r, c in bins) == len(values), "step %d: counts do not add up" % step
        assert bins[0][0] <= values.min() + 1e-9 and bins[-1][1] >= values.max() - 1e-9
        assert all(left <= right for left, right, _c in bins)
        # each bucket holds the values inside it (edges shared: allow the boundary values)
        for left, right, count in bins:
            inside = np.sum((values > left) & (values < right))
            edges = np.sum((values == left) | (values == right))
            assert inside <= count <= inside + edges, "step %d: bucket [%r, %r] count %r" % (step, left, right, count)


def test_histograms_add_histogram_raw(view, written):
    got = _section(view, "histograms")
    served = got["series"]["hist", "raw"]
    logged = written[1]["histogram_raw"]["hist", "raw"]
    assert [(e["step"], e["wallTime"]) for e in served] == [(s, w) for s, w, _r in logged]
    for entry, (step, _wall, rows) in zip(served, logged):
        assert _bins(entry) == rows, "step %d" % step


def test_histograms_and_distributions_endpoints(view, written):
    got = _section(view, "histograms")
    for key in (("hist", "weights"), ("hist", "raw")):
        series = {e["step"]: (e["wallTime"], _bins(e)) for e in got["series"][key]}
        sampled = got["histograms"][key]
        assert len(sampled) == HIST_STEPS
        for wall, step, bins in sampled:
            assert (wall, bins) == series[step], "%s step %d: /histograms differs from timeSeries" % (key, step)
        dist = got["distributions"][key]
        assert [(wt, step) for wt, step, _p in dist] == [(wt, step) for step, (wt, _b) in sorted(series.items())]
        for _wt, step, points in dist:
            bins = series[step][1]
            assert [bp for bp, _v in points] == DIST_BASIS_POINTS
            values = [v for _bp, v in points]
            assert values == sorted(values), "%s step %d: percentiles not monotone %r" % (key, step, values)
            assert bins[0][0] - 1e-9 <= values[0] and values[-1] <= bins[-1][1] + 1e-9


# -- images (add_image, add_images, add_figure, add_image_with_boxes, add_video) ---------------------


def test_image_tags(view, written):
    got = _section(view, "images")
    expected = {}
    for (run, tag), rows in written[1]["images"].items():
        expected.setdefault(run, {})[tag] = max(len(samples) for _s, _w, samples in rows)
    served = {run: {tag: info["samples"] for tag, info in tags.items()} for run, tags in got["tags"].items() if tags}
    assert served == expected


def test_images_bytes_and_pixels(view, written):
    got = _section(view, "images")["entries"]
    stored = written[1]["stored"]
    for (run, tag), rows in written[1]["images"].items():
        entries = got[run, tag, 0]
        assert [(e["step"], e["wall_time"]) for e in entries] == [(s, w) for s, w, _p in rows], (run, tag)
        for entry, (step, _wall, samples), (_s, _w, value) in zip(entries, rows, stored[run, tag]):
            what = "%s/%s step %d" % (run, tag, step)
            body = entry["body"]
            assert body == _blob(value, 2), "%s: served bytes differ from the event file" % what
            if tag == "video":
                assert entry["http_content_type"] == "image/gif", what
                continue
            assert entry["http_content_type"] == "image/png", what
            if samples[0] is not None:
                decoded = np.asarray(Image.open(io.BytesIO(body)))
                assert decoded.shape == samples[0].shape, "%s: shape %r" % (what, decoded.shape)
                assert np.array_equal(decoded, samples[0]), "%s: pixels differ" % what


def test_image_with_boxes(view):
    entries = _section(view, "images")["entries"]["media", "boxes", 0]
    assert [e["step"] for e in entries] == [0, 1]
    plain = np.asarray(Image.open(io.BytesIO(entries[0]["body"])).convert("RGB")).astype(int)
    assert plain.shape == (40, 60, 3)
    red = np.array([255, 0, 0])
    # Box (xmin=5, ymin=20, xmax=30, ymax=35): its left and right edges below the label band are red ...
    for y in (26, 30):
        assert (plain[y, 5] == red).all() and (plain[y, 30] == red).all(), plain[y, 3:33]
    assert (plain[35, 15] == red).all()  # bottom edge
    # ... the inside and the surroundings stay gray.
    for y, x in ((28, 17), (2, 55), (38, 50), (28, 45)):
        assert (plain[y, x] == 128).all(), (y, x, plain[y, x])
    # A label band (red, with light text) sits above the box's top-left corner.
    band = plain[8:20, 5:20]
    assert (band == red).all(axis=-1).mean() > 0.3 and (band.min(axis=-1) > 200).any()

    scaled = np.asarray(Image.open(io.BytesIO(entries[1]["body"])).convert("RGB")).astype(int)
    assert scaled.shape == (80, 120, 3), "rescale=2 doubles both sides"
    assert scaled[56, 11, 0] > 200 and scaled[56, 11, 1] < 80, scaled[56, 8:15]  # left edge, scaled
    assert (np.abs(scaled[56, 34] - 128) <= 2).all() and (np.abs(scaled[4, 110] - 128) <= 2).all()


def test_video_is_a_gif(view, written):
    entries = _section(view, "images")["entries"]["media", "video", 0]
    ((step, wall, frames),) = written[1]["video"]["media", "video"]
    assert [(e["step"], e["wall_time"]) for e in entries] == [(step, wall)]
    gif = Image.open(io.BytesIO(entries[0]["body"]))
    assert gif.format == "GIF"
    assert gif.n_frames == frames.shape[0]
    for index, want in enumerate(frames):
        gif.seek(index)
        got = np.asarray(gif.convert("RGB"))
        assert np.array_equal(got, want), "frame %d differs" % index


# -- audio -------------------------------------------------------------------------------------


def test_audio(view, written):
    got = _section(view, "audio")
    served_tags = {run: {tag: info["samples"] for tag, info in tags.items()}
                   for run, tags in got["tags"].items() if tags}
    assert served_tags == {"media": {"audio/mono": 1, "audio/stereo": 1}}
    stored = written[1]["stored"]
    for (run, tag), rows in written[1]["audio"].items():
        entries = got["entries"][run, tag, 0]
        assert [(e["step"], e["wall_time"]) for e in entries] == [(s, w) for s, w, _c in rows], (run, tag)
        for entry, (step, _wall, clip), (_s, _w, value) in zip(entries, rows, stored[run, tag]):
            what = "%s/%s step %d" % (run, tag, step)
            assert entry["contentType"] == "audio/wav", "%s: contentType %r" % (what, entry["contentType"])
            assert entry["http_content_type"].startswith("audio/wav"), what
            assert entry["body"] == _blob(value, 0), "%s: served bytes differ from the WAV written" % what
            with wave.open(io.BytesIO(entry["body"])) as wav:
                assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (clip.shape[0], 2, AUDIO_RATE)
                assert wav.getnframes() == clip.shape[1]
                pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, clip.shape[0]).T
            assert np.abs(pcm / 32767.0 - clip).max() <= 1.0 / 32767, what


# -- text --------------------------------------------------------------------------------------


def test_text_tags(view, written):
    got = _section(view, "text")
    served = {run: sorted(tags) for run, tags in got["tags"].items() if tags}
    expected = {}
    for run, tag in written[1]["text"]:
        expected.setdefault(run, []).append(tag)
    assert served == {run: sorted(tags) for run, tags in expected.items()}


def test_text_markdown(view, written):
    got = _section(view, "text")
    rows = written[1]["text"]["media", "notes/text_summary"]
    html = got["markdown"]["media", "notes/text_summary"]
    raw = got["raw"]["media", "notes/text_summary"]
    assert [(e["step"], e["wall_time"]) for e in html] == [(s, w) for s, w, _t in rows]
    for entry, (step, _w, text) in zip(html, rows):
        assert "<strong>bold</strong>" in entry["text"] and "<code>code</code>" in entry["text"], entry["text"]
        assert "<li>item one</li>" in entry["text"] and "step %d:" % step in entry["text"]
        assert "<table>" not in entry["text"]
    assert [(e["step"], e["text"]) for e in raw] == [(s, t) for s, _w, t in rows]


def _table_cells(html):
    """The rows of cell contents of TensorBoard's HTML table."""
    import re

    body = html[html.index("<table>"):]
    return [re.findall(r"<td>(.*?)</td>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def test_text_tables(view, written):
    got = _section(view, "text")
    for tag in ("results/text_summary", "column/text_summary"):
        ((step, wall, table),) = written[1]["text"]["media", tag]
        (html,) = got["markdown"]["media", tag]
        (raw,) = got["raw"]["media", tag]
        assert (html["step"], html["wall_time"]) == (step, wall)
        assert "<table>" in html["text"] and "<table>" in raw["text"], (html, raw)
        raw_cells = _table_cells(raw["text"])
        assert raw_cells == table, "markdown=false: cells %r != %r" % (raw_cells, table)
        md_cells = _table_cells(html["text"])
        assert len(md_cells) == len(table) and all(len(r) == len(t) for r, t in zip(md_cells, table))
    cells = _table_cells(got["markdown"]["media", "results/text_summary"][0]["text"])
    assert "<strong>0.91</strong>" in cells[1][1], cells  # each cell is rendered as markdown


# -- PR curves ---------------------------------------------------------------------------------


PR_FIELDS = ["true_positives", "false_positives", "true_negatives", "false_negatives", "precision", "recall"]


def test_pr_curves(view, written):
    got = _section(view, "pr_curves")
    assert {run: sorted(tags) for run, tags in got["tags"].items() if tags} == {"pr": ["pr/computed", "pr/raw"]}
    stored = written[1]["stored"]
    for (run, tag), rows in written[1]["pr"].items():
        served = got["curves"][run, tag][run]
        assert [(e["step"], e["wall_time"]) for e in served] == [(s, w) for s, w, _d in rows], tag
        for entry, (step, _wall, expected), (_s, _w, value) in zip(served, rows, stored[run, tag]):
            what = "%s/%s step %d" % (run, tag, step)
            data = _stored_tensor(value)
            n = data.shape[1]
            assert data.shape == (6, expected.shape[1])
            np.testing.assert_allclose(data, expected, rtol=1e-6, atol=1e-6, err_msg=what + ": written rows")
            keep = n
            while keep > 0 and data[0, keep - 1] + data[1, keep - 1] == 0:
                keep -= 1
            assert keep < n, "%s: the test data should exercise the trimming" % what
            for i, field in enumerate(PR_FIELDS):
                assert np.array_equal(np.float32(entry[field]), data[i, :keep]), "%s: %s" % (what, field)
            np.testing.assert_allclose(entry["thresholds"], np.linspace(0, 1, n)[:keep], atol=1e-6, err_msg=what)


# -- mesh --------------------------------------------------------------------------------------


MESH_TYPES = {"VERTEX": (1, "<f4"), "FACE": (2, "<i4"), "COLOR": (3, "u1")}


def test_mesh(view, written):
    got = _section(view, "mesh")
    assert got["tags"] == {"mesh": {"cube": {"samples": 1}, "cloud": {"samples": 2}}}
    for (run, name), rows in written[1]["mesh"].items():
        samples = next(iter(rows))[2]["VERTEX"].shape[0]
        for sample in range(samples):
            entries = got["meshes"][run, name, sample]
            expected = sorted(
                (step, MESH_TYPES[kind][0], list(array.shape))
                for step, _wall, parts in rows for kind, array in parts.items()
            )
            assert sorted((e["step"], e["content_type"], e["data_shape"]) for e in entries) == expected
            walls = {step: wall for step, wall, _p in rows}
            components = sum(1 << MESH_TYPES[kind][0] for kind in rows[0][2])
            for entry in entries:
                assert abs(entry["wall_time"] - walls[entry["step"]]) <= 1e-6
                assert entry["components"] == components, entry
                if name == "cube":
                    assert json.loads(entry["config"]) == MESH_CONFIG
            for step, _wall, parts in rows:
                for kind, array in parts.items():
                    body, _ctype = got["data"][run, name, sample, kind, step]
                    want = np.ascontiguousarray(array[sample], dtype=MESH_TYPES[kind][1]).tobytes()
                    assert body == want, "%s/%s sample %d step %d: %s bytes differ" % (run, name, sample, step, kind)


# -- hparams -----------------------------------------------------------------------------------


def test_hparams_experiment(view, written):
    experiment = _section(view, "hparams")["experiment"]
    infos = {info["name"]: info for info in experiment["hparamInfos"]}
    assert set(infos) == set(HP_TYPES)
    for name, kind in HP_TYPES.items():
        assert infos[name]["type"] == kind, (name, infos[name])
    for name, domain in HP_DOMAINS.items():
        assert sorted(infos[name]["domainDiscrete"], key=str) == sorted(domain, key=str), infos[name]
    metric_names = {(m["name"].get("group", ""), m["name"]["tag"]) for m in experiment["metricInfos"]}
    expected = {("", "hparam/accuracy"), ("", "hparam/loss")}
    assert expected <= metric_names, "metricInfos %r lack %r" % (sorted(metric_names), sorted(expected - metric_names))


def test_hparams_experiment_lists_eval_subrun_metric(view):
    """FORMATS.md section 7 step 14: metrics of a session's sub-run (group "eval") are metrics too."""
    experiment = _section(view, "hparams")["experiment"]
    metric_names = {(m["name"].get("group", ""), m["name"]["tag"]) for m in experiment["metricInfos"]}
    assert ("eval", "hparam/accuracy") in metric_names, "metricInfos: %r" % sorted(metric_names)


def test_hparams_session_groups(view, written):
    answer = _section(view, "hparams")["session_groups"]
    trials = written[1]["hparams"]
    assert answer["totalSize"] == len(trials)
    groups = {g["name"]: g for g in answer["sessionGroups"]}
    assert set(groups) == {session for session, _h, _m, _e in trials}
    for session, hparams, metrics, eval_acc in trials:
        group = groups[session]
        assert [s["name"] for s in group["sessions"]] == [session]
        assert group["sessions"][0]["status"] == "STATUS_SUCCESS"
        assert group["hparams"] == hparams, (session, group["hparams"])
        _assert_metric_values(session, group, {("", tag): value for tag, value in metrics.items()})


def _assert_metric_values(session, group, expected):
    values = {(m["name"].get("group", ""), m["name"]["tag"]): m for m in group["metricValues"]}
    missing = sorted(set(expected) - set(values))
    assert not missing, "%s: metric values missing for %r (served %r)" % (session, missing, sorted(values))
    for key, want in expected.items():
        assert _same_float32(values[key]["value"], want), (session, key, values[key])
        assert values[key]["trainingStep"] == HP_STEP, (session, key, values[key])


def test_hparams_session_groups_eval_subrun(view, written):
    """Each group also has the last value of its "eval" sub-run's metric (FORMATS.md section 7 step 14)."""
    answer = _section(view, "hparams")["session_groups"]
    groups = {g["name"]: g for g in answer["sessionGroups"]}
    for session, _hparams, _metrics, eval_acc in written[1]["hparams"]:
        _assert_metric_values(session, groups[session], {("eval", "hparam/accuracy"): eval_acc})


def test_hparams_metric_evals(view, written):
    evals = _section(view, "hparams")["metric_evals"]
    scalars = written[1]["scalars"]
    for session, _hparams, metrics, eval_acc in written[1]["hparams"]:
        for tag, value in metrics.items():
            series = evals[session, tag, ""]
            assert [step for _wt, step, _v in series] == [HP_STEP], (session, tag, series)
            assert _same_float32(series[0][2], value), (session, tag, series)
        _assert_series(evals[session, "hparam/accuracy", "eval"], scalars[session + "/eval", "hparam/accuracy"],
                       "%s eval" % session)
        if session.startswith("own/"):  # the own run's other scalars are the session's too
            _assert_series(evals[session, "train/loss", ""], scalars[session, "train/loss"], "%s loss" % session)


# -- projector ---------------------------------------------------------------------------------


def test_projector(view, written):
    got = _section(view, "projector")
    embeddings = written[1]["embeddings"]
    assert sorted(got["runs"]) == sorted({run for run, _name in embeddings})
    for (run, name), emb in embeddings.items():
        infos = {e["tensorName"]: e for e in got["info"][run]["embeddings"]}
        assert set(infos) == {n for r, n in embeddings if r == run}
        info = infos[name]
        n, d = emb["mat"].shape
        assert [int(x) for x in info["tensorShape"]] == [n, d], info
        body, _ctype = got["tensor"][run, name]
        assert len(body) == n * d * 4
        assert np.array_equal(np.frombuffer(body, dtype="<f4").reshape(n, d), emb["mat"]), name
        assert got["metadata"][run, name].splitlines() == emb["metadata"], name
        if emb["sprite"] is None:
            assert "sprite" not in info or not info["sprite"].get("imagePath")
            continue
        thumbs = emb["sprite"].transpose(0, 2, 3, 1)
        h, w = thumbs.shape[1:3]
        assert [int(x) for x in info["sprite"]["singleImageDim"]] == [w, h], info["sprite"]
        body, ctype = got["sprite"][run, name]
        assert ctype == "image/png"
        sprite = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
        per_row = math.ceil(math.sqrt(n))
        assert sprite.shape == (per_row * h, per_row * w, 3), sprite.shape
        for i, thumb in enumerate(thumbs):
            r, c = divmod(i, per_row)
            assert np.array_equal(sprite[r * h:(r + 1) * h, c * w:(c + 1) * w], thumb), "thumbnail %d" % i


# -- graphs ------------------------------------------------------------------------------------


def test_graphs(view, written):
    from google.protobuf import text_format
    from tensorboard.compat.proto import graph_pb2

    got = _section(view, "graphs")
    runs_with_graph = {run for run, item in got["info"].items() if item.get("run_graph")}
    assert runs_with_graph == written[1]["graphs"]
    for run in written[1]["graphs"]:
        assert got["info"][run]["run"] == run
        body, ctype = got["graphs"][run]
        assert ctype.startswith("text/x-protobuf"), ctype
        served = text_format.Parse(body.decode("utf-8"), graph_pb2.GraphDef())
        (stored_bytes,) = written[1]["stored_graphs"][run]
        stored = graph_pb2.GraphDef.FromString(stored_bytes)
        assert [n.name for n in served.node] == [n.name for n in stored.node]
        assert served == stored
        names = " ".join(n.name for n in stored.node)
        # the module structure is in the graph: both Linear layers and the ReLU
        for part in ("fc1", "fc2", "act"):
            assert part in names, "%s missing from node names %s" % (part, names)


# -- both loaders ------------------------------------------------------------------------------


def _key(value):
    value = float(value)
    return "nan" if math.isnan(value) else value


def _strip_display(tags):
    return {run: {tag: {k: v for k, v in info.items() if k != "displayName"} for tag, info in t.items()}
            for run, t in tags.items() if t}


def normalize(view):
    """The loader-independent part of a view (FORMATS.md section 7 step 18)."""
    norm = {}
    for name, got in view.items():
        if isinstance(got, _Broken):
            norm[name] = "broken"
            continue
        if name == "runs":
            got = sorted(got)
        elif name == "scalars":
            got = {"tags": _strip_display(got["tags"]),
                   "values": {k: [(w, s, _key(v)) for w, s, v in rows] for k, rows in sorted(got["values"].items())}}
        elif name == "custom_scalars":
            got = {"layout": got["layout"],
                   "scalars": {k: (a["regex_valid"], {t: [(w, s, _key(v)) for w, s, v in rows]
                                                      for t, rows in a["tag_to_events"].items()})
                               for k, a in got["scalars"].items()}}
        elif name in ("histograms", "images", "audio", "pr_curves"):
            got = dict(got, tags=_strip_display(got["tags"]))
        elif name == "text":
            got = dict(got, tags={run: sorted(t) for run, t in got["tags"].items() if t})
        elif name == "mesh":
            got = dict(got, meshes={k: sorted(entries, key=lambda e: (e["step"], e["content_type"]))
                                    for k, entries in got["meshes"].items()})
        elif name == "hparams":
            experiment = {k: v for k, v in got["experiment"].items() if k != "timeCreatedSecs"}
            groups = dict(got["session_groups"])
            groups["sessionGroups"] = sorted(groups.get("sessionGroups", []), key=lambda g: g["name"])
            got = dict(got, experiment=experiment, session_groups=groups)
        norm[name] = got
    return norm


def test_loaders_agree(views):
    python, rust = normalize(views(False)), normalize(views(True))
    details = []
    for name in sorted(set(python) | set(rust)):
        a, b = python.get(name), rust.get(name)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            parts = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            for part in parts:
                x, y = a.get(part), b.get(part)
                if isinstance(x, dict) and isinstance(y, dict):
                    keys = sorted((k for k in set(x) | set(y) if x.get(k) != y.get(k)), key=repr)
                    details.append("%s.%s: %d keys differ, e.g. %r" % (name, part, len(keys), keys[:3]))
                else:
                    details.append("%s.%s: python %.300r != rust %.300r" % (name, part, x, y))
        else:
            details.append("%s: python %.300r != rust %.300r" % (name, a, b))
    assert not details, "Python and Rust loaders differ:\n" + "\n".join(details)
