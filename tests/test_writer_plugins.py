"""PluginMethods (add_pr_curve, add_pr_curve_raw, add_custom_scalars*, add_mesh) on the SummaryWriter.

torch compatibility of the signatures; bad input raises a clear error at the
call and loses nothing; concurrent layout updates; and stock TensorBoard, with
both loaders, serving what was written.
"""

import inspect
import math
import threading

import numpy as np
import pytest
import torch
from tensorboard.plugins.custom_scalar import layout_pb2 as tb_layout_pb2
from torch.utils.tensorboard import SummaryWriter as TorchWriter

from tbx import SummaryWriter
from tbx.errors import WriterClosedError
from tbx.summary import pr_curve as pr
from tbx.summary.custom_scalars import CONFIG_TAG
from tbserver import TensorBoardServer
from writer_util import interleave_bad_calls, to_ndarray, values_by_tag

METHODS = ("add_pr_curve", "add_pr_curve_raw", "add_custom_scalars", "add_custom_scalars_multilinechart",
           "add_custom_scalars_marginchart", "add_mesh")

LABELS = np.array([1, 0, 1, 0, 1])
PREDS = np.array([0.9, 0.2, 0.65, 0.4, 0.35])
RAW = ([3, 2, 0], [2, 1, 0], [0, 1, 2], [0, 1, 3], [0.6, 0.66, 0.0], [1.0, 0.66, 0.0])
VERTS = np.array([[[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]], dtype=np.float32)
FACES = np.array([[[0, 1, 2], [0, 1, 3]]])
COLORS = np.full((1, 4, 3), 128, dtype=np.uint8)


@pytest.mark.parametrize("name", METHODS)
def test_signature_matches_torch(name):
    ours = inspect.signature(getattr(SummaryWriter, name)).parameters
    theirs = inspect.signature(getattr(TorchWriter, name)).parameters
    assert list(ours) == list(theirs)
    assert [p.default for p in ours.values()] == [p.default for p in theirs.values()]
    assert [p.kind for p in ours.values()] == [p.kind for p in theirs.values()]
    assert getattr(SummaryWriter, name).__doc__ and "Example" in getattr(SummaryWriter, name).__doc__


def _raw(**changes):
    names = pr.ROWS
    args = dict(zip(names, RAW))
    args.update(changes)
    return lambda w: w.add_pr_curve_raw("bad", *[args[n] for n in names], **{k: v for k, v in changes.items() if k not in names})


def _mesh(**kw):
    args = dict(vertices=VERTS, colors=COLORS, faces=FACES)
    args.update(kw)
    return lambda w: w.add_mesh("bad", **args)


def _layout(layout):
    return lambda w: w.add_custom_scalars(layout)


def _no_content_layout():
    layout = tb_layout_pb2.Layout()
    layout.category.add(title="c").chart.add(title="empty")
    return layout


# (id, call on a writer, exception type, regex the message must match: the argument's name)
BAD_CALLS = [
    # add_pr_curve
    ("pr_shapes", lambda w: w.add_pr_curve("bad", LABELS, PREDS[:4]), ValueError, r"labels.*predictions.*match"),
    ("pr_above_1", lambda w: w.add_pr_curve("bad", LABELS, PREDS + 0.2), ValueError, r"predictions.*\[0, 1\]"),
    ("pr_below_0", lambda w: w.add_pr_curve("bad", LABELS, PREDS - 0.5), ValueError, r"predictions.*\[0, 1\]"),
    ("pr_nan", lambda w: w.add_pr_curve("bad", LABELS, np.where(LABELS, np.nan, 0.5)), ValueError, r"predictions.*NaN"),
    ("pr_inf", lambda w: w.add_pr_curve("bad", LABELS, torch.tensor([0.5, math.inf, 0, 0, 0])), ValueError, r"predictions"),
    ("pr_empty", lambda w: w.add_pr_curve("bad", [], []), ValueError, r"predictions.*empty"),
    ("pr_labels_2", lambda w: w.add_pr_curve("bad", LABELS * 2, PREDS), ValueError, r"labels must be 0/1"),
    ("pr_labels_half", lambda w: w.add_pr_curve("bad", LABELS * 0.5, PREDS), ValueError, r"labels must be 0/1"),
    ("pr_labels_neg", lambda w: w.add_pr_curve("bad", -LABELS, PREDS), ValueError, r"labels must be 0/1"),
    ("pr_labels_str", lambda w: w.add_pr_curve("bad", ["a"] * 5, PREDS), TypeError, r"labels"),
    ("pr_labels_none", lambda w: w.add_pr_curve("bad", None, PREDS), TypeError, r"labels"),
    ("pr_preds_none", lambda w: w.add_pr_curve("bad", LABELS, None), TypeError, r"predictions"),
    ("pr_preds_complex", lambda w: w.add_pr_curve("bad", LABELS, PREDS + 0j), TypeError, r"predictions.*real"),
    ("pr_n_1", lambda w: w.add_pr_curve("bad", LABELS, PREDS, num_thresholds=1), ValueError, r"num_thresholds.*2"),
    ("pr_n_neg", lambda w: w.add_pr_curve("bad", LABELS, PREDS, num_thresholds=-3), ValueError, r"num_thresholds"),
    ("pr_n_float", lambda w: w.add_pr_curve("bad", LABELS, PREDS, num_thresholds=10.0), TypeError, r"num_thresholds"),
    ("pr_n_str", lambda w: w.add_pr_curve("bad", LABELS, PREDS, num_thresholds="10"), TypeError, r"num_thresholds"),
    ("pr_n_bool", lambda w: w.add_pr_curve("bad", LABELS, PREDS, num_thresholds=True), TypeError, r"num_thresholds"),
    ("pr_n_none", lambda w: w.add_pr_curve("bad", LABELS, PREDS, num_thresholds=None), TypeError, r"num_thresholds"),
    ("pr_weights_shape", lambda w: w.add_pr_curve("bad", LABELS, PREDS, weights=np.ones(3)), ValueError,
     r"weights.*shape"),
    ("pr_weights_neg", lambda w: w.add_pr_curve("bad", LABELS, PREDS, weights=-1.0), ValueError,
     r"weights.*non-negative"),
    ("pr_weights_nan", lambda w: w.add_pr_curve("bad", LABELS, PREDS, weights=np.full(5, np.nan)), ValueError,
     r"weights"),
    ("pr_weights_str", lambda w: w.add_pr_curve("bad", LABELS, PREDS, weights="heavy"), TypeError, r"weights"),
    ("pr_tag", lambda w: w.add_pr_curve(None, LABELS, PREDS), TypeError, r"tag must be a str"),
    ("pr_step", lambda w: w.add_pr_curve("bad", LABELS, PREDS, 1.5), TypeError, r"global_step"),
    ("pr_walltime", lambda w: w.add_pr_curve("bad", LABELS, PREDS, 0, walltime=math.nan), ValueError, r"walltime"),
    # add_pr_curve_raw
    ("raw_lengths", _raw(recall=[1.0, 0.5]), ValueError, r"same length.*recall 2"),
    ("raw_2d", _raw(precision=[[0.6, 0.66, 0.0]]), ValueError, r"precision.*one-dimensional"),
    ("raw_too_short", lambda w: w.add_pr_curve_raw("bad", [1], [1], [0], [0], [0.5], [1.0]), ValueError,
     r"at least 2 thresholds"),
    ("raw_n_mismatch", _raw(num_thresholds=4), ValueError, r"num_thresholds is 4.*3 entries"),
    ("raw_n_bad", _raw(num_thresholds=0), ValueError, r"num_thresholds"),
    ("raw_negative", _raw(true_positive_counts=[3, -2, 0]), ValueError, r"true_positive_counts.*non-negative"),
    ("raw_nan_count", _raw(false_negative_counts=[0, np.nan, 3]), ValueError, r"false_negative_counts"),
    ("raw_inf_count", _raw(true_negative_counts=[0, 1, np.inf]), ValueError, r"true_negative_counts"),
    ("raw_precision_2", _raw(precision=[0.6, 2.0, 0.0]), ValueError, r"precision.*\[0, 1\]"),
    ("raw_recall_nan", _raw(recall=[np.nan, 0.5, 0.0]), ValueError, r"recall"),
    ("raw_none", _raw(false_positive_counts=None), TypeError, r"false_positive_counts"),
    ("raw_bool", _raw(precision=np.array([True, False, False])), TypeError, r"precision.*real"),
    ("raw_tag", lambda w: w.add_pr_curve_raw(3, *RAW), TypeError, r"tag must be a str"),
    # custom scalars
    ("cs_list", _layout([("a", "b")]), TypeError, r"layout must be a dict"),
    ("cs_none", _layout(None), TypeError, r"layout"),
    ("cs_empty", _layout({}), ValueError, r"layout is empty"),
    ("cs_category_type", _layout({"c": ["Multiline", ["a"]]}), TypeError, r"layout\['c'\] must be a dict"),
    ("cs_category_empty", _layout({"c": {}}), ValueError, r"layout\['c'\] has no charts"),
    ("cs_category_title", _layout({1: {"t": ["Multiline", ["a"]]}}), TypeError, r"category title"),
    ("cs_chart_title", _layout({"c": {2: ["Multiline", ["a"]]}}), TypeError, r"chart title"),
    ("cs_spec_short", _layout({"c": {"t": ["Multiline"]}}), ValueError, r"layout\['c'\]\['t'\].*\[kind, tags\]"),
    ("cs_spec_str", _layout({"c": {"t": "Multiline"}}), ValueError, r"layout\['c'\]\['t'\]"),
    ("cs_kind", _layout({"c": {"t": ["Lines", ["a"]]}}), ValueError, r"'Multiline' or 'Margin', got 'Lines'"),
    ("cs_margin_2", _layout({"c": {"t": ["Margin", ["a", "b"]]}}), ValueError, r"exactly 3 tags"),
    ("cs_tags_str", _layout({"c": {"t": ["Multiline", "abc"]}}), TypeError, r"tags must be a list"),
    ("cs_tags_int", _layout({"c": {"t": ["Multiline", ["a", 1]]}}), TypeError, r"tags must be str"),
    ("cs_regex", _layout({"c": {"t": ["Multiline", ["loss/(train"]]}}), ValueError, r"regular expression"),
    ("cs_multiline_empty", _layout({"c": {"t": ["Multiline", []]}}), ValueError, r"at least one tag"),
    ("cs_proto_no_content", _layout(_no_content_layout()), ValueError, r"neither multiline nor margin"),
    ("cs_ml_tags_str", lambda w: w.add_custom_scalars_multilinechart("loss"), TypeError, r"tags must be a list"),
    ("cs_ml_regex", lambda w: w.add_custom_scalars_multilinechart(["a[", "b"]), ValueError, r"'a\['.*regular"),
    ("cs_ml_empty", lambda w: w.add_custom_scalars_multilinechart([]), ValueError, r"at least one tag"),
    ("cs_ml_category", lambda w: w.add_custom_scalars_multilinechart(["a"], category=1), TypeError, r"category"),
    ("cs_ml_title", lambda w: w.add_custom_scalars_multilinechart(["a"], title=None), TypeError, r"title"),
    ("cs_margin_4", lambda w: w.add_custom_scalars_marginchart(["a", "b", "c", "d"]), ValueError, r"exactly 3 tags"),
    ("cs_margin_none", lambda w: w.add_custom_scalars_marginchart(None), TypeError, r"tags"),
    ("cs_margin_title", lambda w: w.add_custom_scalars_marginchart(["a", "b", "c"], title=5), TypeError, r"title"),
    # add_mesh
    ("mesh_2d", _mesh(vertices=VERTS[0]), ValueError, r"vertices must have shape \[B, N, 3\].*vertices\[None\]"),
    ("mesh_last_dim", _mesh(vertices=VERTS[..., :2], colors=None, faces=None), ValueError, r"vertices.*\[B, N, 3\]"),
    ("mesh_empty", _mesh(vertices=np.zeros((1, 0, 3)), colors=None, faces=None), ValueError, r"vertices is empty"),
    ("mesh_nan", _mesh(vertices=np.where(VERTS == 1, np.nan, VERTS)), ValueError, r"vertices.*NaN"),
    ("mesh_overflow", _mesh(vertices=VERTS.astype(np.float64) * 1e300), ValueError, r"vertices.*infinite"),
    ("mesh_none", _mesh(vertices=None), TypeError, r"vertices"),
    ("mesh_str", _mesh(vertices=[["a"]]), TypeError, r"vertices"),
    ("mesh_complex", _mesh(vertices=VERTS + 1j), TypeError, r"vertices.*real"),
    ("mesh_colors_shape", _mesh(colors=COLORS[:, :3]), ValueError, r"colors has shape.*must match"),
    ("mesh_colors_batch", _mesh(colors=np.concatenate([COLORS, COLORS])), ValueError, r"colors has shape"),
    ("mesh_colors_range", _mesh(colors=COLORS.astype(np.int32) * 3), ValueError, r"colors must be in \[0, 255\]"),
    ("mesh_colors_neg", _mesh(colors=-np.ones((1, 4, 3))), ValueError, r"colors must be in \[0, 255\]"),
    ("mesh_colors_nan", _mesh(colors=np.full((1, 4, 3), np.nan)), ValueError, r"colors"),
    ("mesh_colors_bool", _mesh(colors=np.ones((1, 4, 3), bool)), TypeError, r"colors.*real"),
    ("mesh_faces_range", _mesh(faces=FACES + 2), ValueError, r"faces must index the 4 vertices"),
    ("mesh_faces_neg", _mesh(faces=FACES - 1), ValueError, r"faces must index"),
    ("mesh_faces_frac", _mesh(faces=FACES + 0.5), ValueError, r"faces.*whole"),
    ("mesh_faces_nan", _mesh(faces=np.full((1, 2, 3), np.nan)), ValueError, r"faces"),
    ("mesh_faces_batch", _mesh(faces=np.concatenate([FACES, FACES])), ValueError, r"faces has 2 samples"),
    ("mesh_faces_2d", _mesh(faces=FACES[0]), ValueError, r"faces must have shape \[B, N, 3\]"),
    ("mesh_config_list", _mesh(config_dict=[1, 2]), TypeError, r"config_dict must be a dict"),
    ("mesh_config_object", _mesh(config_dict={"a": object()}), ValueError, r"config_dict.*JSON"),
    ("mesh_config_nan", _mesh(config_dict={"fov": math.nan}), ValueError, r"config_dict"),
    ("mesh_tag", lambda w: w.add_mesh(b"m", VERTS), TypeError, r"tag must be a str"),
    ("mesh_step", lambda w: w.add_mesh("bad", VERTS, global_step="1"), TypeError, r"global_step"),
]


def _good(writer, step):
    writer.add_scalar("good/scalar", float(step), step)
    writer.add_pr_curve("good/pr", LABELS, PREDS, step, num_thresholds=5)
    writer.add_pr_curve_raw("good/raw", *RAW, global_step=step)
    writer.add_mesh("good/mesh", VERTS + step, colors=COLORS, faces=FACES, global_step=step)
    writer.add_custom_scalars_multilinechart([f"good/{step}"], title=f"chart {step}")


def _after_bad(writer):
    """The bad call's tags used correctly: each must get its metadata now."""
    writer.add_pr_curve("bad", LABELS, PREDS, 7)
    writer.add_mesh("bad", VERTS, global_step=7)


def _check(logdir, steps):
    tags = values_by_tag(logdir)
    for tag in ("good/scalar", "good/pr", "good/raw", "good/mesh_VERTEX", "good/mesh_FACE", "good/mesh_COLOR"):
        assert [s for s, _w, _v in tags[".", tag]] == steps, tag
    assert [to_ndarray(v.tensor)[0, 0, 0] for _s, _w, v in tags[".", "good/mesh_VERTEX"]] == [float(s) for s in steps]
    for tag in ("bad", "bad_VERTEX"):  # only the good call after the failed one
        [(step, _w, value)] = tags[".", tag]
        assert step == 7 and value.HasField("metadata"), tag
    assert not any(key for key in tags if "bad" in key[1] and key[1] not in ("bad", "bad_VERTEX"))
    layout = tb_layout_pb2.Layout.FromString(tags[".", CONFIG_TAG][-1][2].tensor.string_val[0])
    assert [c.title for c in layout.category] == ["default"]
    assert [(ch.title, list(ch.multiline.tag)) for ch in layout.category[0].chart] == [
        (f"chart {s}", [f"good/{s}"]) for s in steps]


@pytest.mark.parametrize("call,exc,match", [pytest.param(c, e, m, id=i) for i, c, e, m in BAD_CALLS])
def test_bad_input_raises_clear_error_and_loses_nothing(tmp_path, call, exc, match):
    writer = SummaryWriter(tmp_path)
    try:
        _good(writer, 0)
        with pytest.raises(exc, match=match):
            call(writer)
        _good(writer, 1)
        _after_bad(writer)
    finally:
        writer.close()
    _check(tmp_path, [0, 1])


def test_every_bad_call_on_one_writer(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        steps = interleave_bad_calls(writer, BAD_CALLS, _good)
        _after_bad(writer)
    _check(tmp_path, steps)


@pytest.mark.parametrize("call", [
    lambda w: w.add_pr_curve("x", LABELS, PREDS),
    lambda w: w.add_pr_curve_raw("x", *RAW),
    lambda w: w.add_custom_scalars({"c": {"t": ["Multiline", ["a"]]}}),
    lambda w: w.add_custom_scalars_multilinechart(["a"]),
    lambda w: w.add_custom_scalars_marginchart(["a", "b", "c"]),
    lambda w: w.add_mesh("x", VERTS),
])
def test_closed_writer_raises(tmp_path, call):
    writer = SummaryWriter(tmp_path)
    writer.close()
    with pytest.raises(WriterClosedError):
        call(writer)


def test_concurrent_layout_updates_lose_no_chart(tmp_path):
    threads, per_thread = 8, 25
    with SummaryWriter(tmp_path) as writer:
        barrier = threading.Barrier(threads)

        def work(i):
            barrier.wait()
            for j in range(per_thread):
                writer.add_custom_scalars_multilinechart([f"t{i}/{j}"], category=f"thread {i}", title=str(j))

        pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    records = values_by_tag(tmp_path)[".", CONFIG_TAG]
    assert [step for step, _w, _v in records] == list(range(threads * per_thread))
    layouts = [tb_layout_pb2.Layout.FromString(v.tensor.string_val[0]) for _s, _w, v in records]
    # each record is the previous one plus one chart, in file order
    assert [sum(len(c.chart) for c in layout.category) for layout in layouts] == list(range(1, threads * per_thread + 1))
    final = layouts[-1]
    assert sorted(c.title for c in final.category) == [f"thread {i}" for i in range(threads)]
    for cat in final.category:
        assert [ch.title for ch in cat.chart] == [str(j) for j in range(per_thread)]


# --- stock TensorBoard, both loaders -------------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """What each loader serves for a run with PR curves, a mesh and a layout."""
    logdir = tmp_path_factory.mktemp("plugins_e2e")
    rng = np.random.default_rng(1)
    curves = []
    with SummaryWriter(logdir) as writer:
        for step in range(3):
            labels, preds = rng.random(200) < 0.5, rng.random(200)
            writer.add_pr_curve("pr", labels, preds, step, num_thresholds=9)
            curves.append(np.float32(pr.compute_curve(labels, preds, None, 9)))
            writer.add_mesh("cloud", VERTS * (step + 1), colors=COLORS, faces=FACES,
                            config_dict={"camera": {"fov": 60}}, global_step=step)
            writer.add_scalar("loss/train", 1.0 / (step + 1), step)
        writer.add_pr_curve_raw("raw", *RAW, global_step=4)
        writer.add_custom_scalars_multilinechart(["loss/.*"], category="losses", title="all")
        writer.add_custom_scalars_marginchart(["loss/train", "loss/train", "loss/train"], category="losses", title="band")
    out = {}
    for load_fast in (False, True):
        with TensorBoardServer(logdir, load_fast) as server:
            out[load_fast] = {
                "pr": server.get_json("/data/plugin/pr_curves/pr_curves", run=".", tag="pr")["."],
                "raw": server.get_json("/data/plugin/pr_curves/pr_curves", run=".", tag="raw")["."],
                "mesh_tags": server.get_json("/data/plugin/mesh/tags"),
                "meshes": server.get_json("/data/plugin/mesh/meshes", run=".", tag="cloud", sample=0),
                "vertex": server.get_bytes("/data/plugin/mesh/data", run=".", tag="cloud", sample=0,
                                           content_type="VERTEX", step=2),
                "face": server.get_bytes("/data/plugin/mesh/data", run=".", tag="cloud", sample=0,
                                         content_type="FACE", step=2),
                "color": server.get_bytes("/data/plugin/mesh/data", run=".", tag="cloud", sample=0,
                                          content_type="COLOR", step=2),
                "layout": server.get_json("/data/plugin/custom_scalars/layout"),
                "cs_scalars": server.get_json("/data/plugin/custom_scalars/scalars", run=".", tag="loss/.*"),
                "plugins": server.get_json("/data/plugins_listing"),
            }
    return out, curves


@pytest.mark.parametrize("load_fast", [False, True], ids=["python", "rust"])
def test_stock_tensorboard_serves_everything(served, load_fast):
    out, curves = served
    view = out[load_fast]
    assert all(view["plugins"][name]["enabled"] for name in ("pr_curves", "mesh", "custom_scalars"))
    assert [e["step"] for e in view["pr"]] == [0, 1, 2]
    for entry, want in zip(view["pr"], curves):
        k = len(entry["thresholds"])
        assert entry["thresholds"] == np.linspace(0, 1, 9)[:k].tolist()
        assert entry["true_positives"] == want[0, :k].astype(int).tolist()
        assert entry["false_negatives"] == want[3, :k].astype(int).tolist()
        assert entry["precision"] == want[4, :k].tolist()
    [raw] = view["raw"]
    assert raw["step"] == 4 and raw["true_positives"] == [3, 2] and raw["recall"] == np.float32(RAW[5][:2]).tolist()
    assert view["mesh_tags"] == {".": {"cloud": {"samples": 1}}}
    assert sorted((e["step"], e["content_type"], e["components"]) for e in view["meshes"]) == [
        (s, t, 14) for s in range(3) for t in (1, 2, 3)]
    assert view["vertex"] == ((VERTS * 3)[0].tobytes(), "arraybuffer")
    assert view["face"] == (FACES[0].astype(np.int32).tobytes(), "arraybuffer")
    assert view["color"] == (COLORS[0].tobytes(), "arraybuffer")
    assert view["layout"]["category"] == [{
        "title": "losses",
        "chart": [
            {"title": "all", "multiline": {"tag": ["loss/.*"]}},
            {"title": "band", "margin": {"series": [{"value": "loss/train", "lower": "loss/train", "upper": "loss/train"}]}},
        ],
        "closed": False,
    }]
    assert view["cs_scalars"]["regex_valid"] is True
    assert [(step, value) for _wt, step, value in view["cs_scalars"]["tag_to_events"]["loss/train"]] == [
        (s, np.float32(1.0 / (s + 1)).item()) for s in range(3)]


def test_loaders_agree(served):
    out, _curves = served

    def normal(view):
        view = dict(view)
        view["meshes"] = sorted((e["step"], e["content_type"], e["data_shape"], e["config"]) for e in view["meshes"])
        view["plugins"] = {k: v["enabled"] for k, v in view["plugins"].items()}
        return view

    assert normal(out[False]) == normal(out[True])
