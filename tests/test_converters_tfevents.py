"""TensorBoard logdir → TensorBoard logdir through ``tbx sync``'s tfevents backend.

One source logdir holds a run of every kind written by each of three writers
(``tbx.SummaryWriter``, tensorboardX and ``torch.utils.tensorboard``); it is
synced once per module. The destination is then checked three ways:

- against what the test wrote (scalars exact after float32, media bytes);
- item by item against the source, both read with the backend's reader;
- with TensorBoard's own loaders: the ``plugin_event_accumulator`` the
  server uses (every tag, step, wall time and value), and a real TensorBoard
  server with ``--load_fast=false`` and ``true`` (the scalars endpoint).
"""

import json
import math
import os
import warnings

import numpy as np
import pytest

import tbx
from tbserver import TensorBoardServer
from tbx.converters.engine import sync
from tbx.converters.report import RunReport
from tbx.converters.tfevents import TfeventsDestination, TfeventsSource
from tbx.proto import event_pb2, summary_pb2, tensor_pb2
from tbx.event_file import EventFileWriter
from tbx import record

torch = pytest.importorskip("torch", reason="add_graph and the torch writer need torch")
tensorboardX = pytest.importorskip("tensorboardX", reason="the tensorboardX writer is part of the fixture")
pea = pytest.importorskip("tensorboard.backend.event_processing.plugin_event_accumulator",
                          reason="TensorBoard's loader is the oracle")
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402

WALL0 = 1_700_000_000.0
WRITERS = ("tbx", "tbX", "torch")
HPARAMS = {"lr": 0.01, "opt": "adam", "layers": 3}
STEPS = [0, 1, 2, 7, 2 ** 31, 2 ** 40]
VALUES = [0.1, math.nan, math.inf, -math.inf, 1 / 3, -2.5e-8]


def _writer(kind, path):
    if kind == "tbx":
        return tbx.SummaryWriter(path)
    if kind == "tbX":
        return tensorboardX.SummaryWriter(path)
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(path)


def _wall(i):
    return WALL0 + i * 0.1234567


def write_source(root):
    """One run per writer with every kind; returns the hparams sub-run of each writer."""
    rng = np.random.default_rng(7)
    sub_runs = {}
    for kind in WRITERS:
        run = os.path.join(root, kind)
        w = _writer(kind, run)
        for i, (step, v) in enumerate(zip(STEPS, VALUES)):
            w.add_scalar("loss", v, step, walltime=_wall(i))
        for step in range(3):
            w.add_histogram("weights", rng.normal(size=200) + step, step, walltime=_wall(step))
        w.add_image("img", rng.integers(0, 256, (3, 6, 10), dtype=np.uint8), 1, walltime=_wall(1))
        w.add_image("img", rng.integers(0, 256, (3, 6, 10), dtype=np.uint8), 2, walltime=_wall(2))
        w.add_audio("snd", (np.sin(np.linspace(0, 60, 800)) * 0.5).astype(np.float32), 3, sample_rate=8000,
                    walltime=_wall(3))
        w.add_video("vid", rng.integers(0, 256, (1, 3, 3, 8, 8), dtype=np.uint8), 4, fps=5, walltime=_wall(4))
        w.add_text("note", "hello **world** ü", 5, walltime=_wall(5))
        w.add_pr_curve("pr", np.array([0, 1, 1, 0, 1]), np.array([.1, .9, .8, .3, .6]), 6, walltime=_wall(6))
        w.add_embedding(rng.normal(size=(5, 3)), metadata=list("abcde"), global_step=2)
        w.add_graph(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU()), torch.zeros(1, 3))
        if kind == "tbx":
            w.add_text("table", [["model", "acc"], ["base", "0.91"]], 5, walltime=_wall(5))
            w.add_images("batch", rng.integers(0, 256, (3, 3, 4, 4), dtype=np.uint8), 8, walltime=_wall(8),
                         as_grid=False)
            w.add_custom_scalars({"train": {"loss": ["Multiline", ["loss"]]}})
            w.add_mesh("cloud", rng.normal(size=(1, 5, 3)), global_step=9, walltime=_wall(9))
        before = set(os.listdir(run))
        w.add_hparams(HPARAMS, {"hp/acc": 0.75})
        w.close()
        (sub,) = [n for n in set(os.listdir(run)) - before if os.path.isdir(os.path.join(run, n))]
        sub_runs[kind] = f"{kind}/{sub}"
    return sub_runs


@pytest.fixture(scope="module")
def trip(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfevents_trip")
    src, dst = str(root / "src"), str(root / "dst")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sub_runs = write_source(src)
    report = sync(TfeventsSource(src), TfeventsDestination(dst), ledger=str(root / "l.sqlite"))
    return src, dst, sub_runs, report


def read(logdir, key):
    source = TfeventsSource(logdir)
    (ref,) = [r for r in source.list_runs() if r.key == key]
    rr = RunReport(ref.name, ref.key)
    return source.read_run(ref, rr), rr


def accumulate(path):
    ea = pea.EventAccumulator(path, size_guidance={"tensors": 0})
    ea.Reload()
    return ea


# --- the report -----------------------------------------------------------------

def test_tbx_runs_carried_clean(trip):
    _src, _dst, sub_runs, report = trip
    runs = {r.name: r for r in report.runs}
    assert set(runs) == set(WRITERS) | set(sub_runs.values())
    for name in ("tbx", sub_runs["tbx"]):
        r = runs[name]
        assert r.status == "carried" and not r.mismatch and not r.error and not r.problems, r.as_dict()
        for kind, k in r.kinds.items():
            assert not k.dropped and not k.transformed, (name, kind, k)
            assert k.read == k.written == k.verified, (name, kind, k)
    kinds = runs["tbx"].kinds
    assert (kinds["scalars"].read, kinds["histograms"].read, kinds["images"].read) == (6, 3, 5)
    assert (kinds["audio"].read, kinds["video"].read, kinds["text"].read) == (1, 1, 1)
    assert kinds["files"].read == 3  # projector config, tensors.tsv, metadata.tsv


# --- source and destination read back equal ----------------------------------------

def _assert_same(a, b, what):
    assert sorted(a.series) == sorted(b.series)
    for kind in a.series:
        assert sorted(a.series[kind]) == sorted(b.series[kind]), (what, kind)
        for tag, items in a.series[kind].items():
            got = b.series[kind][tag]
            assert len(items) == len(got), (what, kind, tag)
            if kind == "scalars":
                assert np.array_equal(items.steps, got.steps)
                assert np.array_equal(items.wall_times, got.wall_times)
                assert np.array_equal(items.values.astype(np.float32), got.values, equal_nan=True)
                continue
            for x, y in zip(items, got):
                assert (x.step, x.wall_time) == (y.step, y.wall_time), (what, kind, tag)
                if kind == "histograms":
                    assert np.array_equal(x.counts, y.counts) and np.array_equal(x.edges, y.edges)
                elif kind in ("images", "audio", "video"):
                    assert (x.data, x.fmt, x.index) == (y.data, y.fmt, y.index), (what, kind, tag)
                elif kind == "text":
                    assert x.text == y.text
                else:
                    assert (x.plugin, x.value) == (y.plugin, y.value), (what, kind, tag)  # byte-identical
    assert {f.path: f.data for f in a.files} == {f.path: f.data for f in b.files}
    assert a.params == b.params


@pytest.mark.parametrize("writer", WRITERS)
def test_every_kind_reads_back_equal(trip, writer):
    src, dst, _sub, _report = trip
    a, _ = read(src, writer)
    b, rr = read(dst, writer)
    assert not rr.problems and not any(k.dropped for k in rr.kinds.values())
    _assert_same(a, b, writer)
    assert a.scalars["loss"].steps.tolist() == STEPS
    assert {f.path for f in b.files} == {"projector_config.pbtxt", "00002/default/tensors.tsv",
                                         "00002/default/metadata.tsv"}
    assert "__graph__" in b.series["tensors"] and "pr" in b.series["tensors"]


def test_scalars_exact_against_what_was_written(trip):
    _src, dst, _sub, _report = trip
    for writer in WRITERS:
        b, _ = read(dst, writer)
        s = b.scalars["loss"]
        assert s.steps.tolist() == STEPS
        assert s.wall_times.tolist() == [_wall(i) for i in range(len(STEPS))]
        assert np.array_equal(s.values, np.array(VALUES, dtype=np.float32).astype(np.float64), equal_nan=True)


def test_media_bytes_equal_the_source_records(trip):
    src, dst, _sub, _report = trip
    a, _ = read(src, "tbx")
    b, _ = read(dst, "tbx")
    assert [m.data[:8] for m in b.series["images"]["img"]] == [b"\x89PNG\r\n\x1a\n"] * 2
    assert b.series["audio"]["snd"][0].data[:4] == b"RIFF"
    assert b.series["video"]["vid"][0].data[:6] in (b"GIF89a", b"GIF87a")
    batch = b.series["images"]["batch"]
    assert [(m.step, m.index) for m in batch] == [(8, 0), (8, 1), (8, 2)]
    assert [m.data for m in batch] == [m.data for m in a.series["images"]["batch"]]


@pytest.mark.parametrize("writer", WRITERS)
def test_hparams_become_params_and_config(trip, writer):
    src, dst, sub_runs, _report = trip
    key = sub_runs[writer]
    a, _ = read(src, key)
    assert a.params == HPARAMS, f"the {writer} hparams were not read from the source"
    b, _ = read(dst, key)
    assert b.params == HPARAMS
    with open(os.path.join(dst, key, "config.yaml"), encoding="utf-8") as f:
        assert json.load(f) == {k: {"value": v} for k, v in HPARAMS.items()}


def test_text_table_and_plugins_byte_identical(trip):
    _src, dst, _sub, _report = trip
    b, _ = read(dst, "tbx")
    raw = b.series["tensors"]
    assert {"table/text_summary", "pr", "custom_scalars__config__", "__graph__"} <= set(raw)
    assert any(tag.startswith("cloud_") for tag in raw)
    value = summary_pb2.Summary.Value.FromString(raw["table/text_summary"][0].value)
    assert value.metadata.plugin_data.plugin_name == "text"
    assert [d.size for d in value.tensor.tensor_shape.dim] == [2, 2]
    assert value.tensor.string_val == [b"model", b"acc", b"base", b"0.91"]


def test_projector_files_byte_identical(trip):
    src, dst, _sub, _report = trip
    for writer in WRITERS:
        for rel in ("projector_config.pbtxt", "00002/default/tensors.tsv", "00002/default/metadata.tsv"):
            with open(os.path.join(src, writer, rel), "rb") as f, open(os.path.join(dst, writer, rel), "rb") as g:
                assert f.read() == g.read(), (writer, rel)


# --- TensorBoard's own loader ------------------------------------------------------------

#: the plugin TensorBoard's loader files an Event's tagged_run_metadata under
RUN_METADATA = "graph_tagged_run_metadata"


def _tags(ea, plugin=None):
    tags = ea.Tags()["tensors"]
    return [t for t in tags if plugin is None or ea.SummaryMetadata(t).plugin_data.plugin_name == plugin]


def _array(event):
    return tensor_util.make_ndarray(event.tensor_proto)


def _same_values(x, y):
    if x.dtype.kind in "fc" or y.dtype.kind in "fc":
        return x.shape == y.shape and np.allclose(x, y, rtol=1e-6, atol=0, equal_nan=True)
    return np.array_equal(x, y)


@pytest.mark.parametrize("writer", WRITERS)
def test_tensorboard_loader_sees_the_same_data(trip, writer):
    """Every tag of the source run, through TensorBoard's loader: same plugin, steps, wall times and values."""
    src, dst, _sub, _report = trip
    a, b = accumulate(os.path.join(src, writer)), accumulate(os.path.join(dst, writer))
    tags_a = set(_tags(a)) - set(_tags(a, RUN_METADATA))  # see test_run_metadata_is_carried_or_reported
    tags_b = set(_tags(b))
    assert tags_a <= tags_b, f"missing in the destination: {sorted(tags_a - tags_b)}"
    for tag in sorted(tags_a):
        assert a.SummaryMetadata(tag).plugin_data.plugin_name == b.SummaryMetadata(tag).plugin_data.plugin_name
        ea, eb = a.Tensors(tag), b.Tensors(tag)
        assert [(e.step, e.wall_time) for e in ea] == [(e.step, e.wall_time) for e in eb], tag
        for x, y in zip(ea, eb):
            assert _same_values(_array(x), _array(y)), tag
    assert b.SerializedGraph() == a.SerializedGraph()
    loss = b.Tensors("loss")
    assert [e.step for e in loss] == STEPS
    assert np.array_equal([float(_array(e)) for e in loss], np.array(VALUES, dtype=np.float32), equal_nan=True)
    plugins = {b.SummaryMetadata(t).plugin_data.plugin_name for t in tags_b}
    assert {"scalars", "histograms", "images", "audio", "text", "pr_curves"} <= plugins


@pytest.mark.parametrize("writer", ["tbX", "torch"])
def test_run_metadata_is_carried_or_reported(trip, writer):
    """add_graph of torch/tensorboardX also writes tagged run metadata; it must not vanish silently."""
    src, dst, _sub, report = trip
    have = set(_tags(accumulate(os.path.join(src, writer)), RUN_METADATA))
    assert have, "the fixture should hold run metadata"
    kept = set(_tags(accumulate(os.path.join(dst, writer)), RUN_METADATA))
    run = {r.name: r for r in report.runs}[writer]
    reported = any(k.dropped for k in run.kinds.values())
    assert kept == have or reported, (
        f"tagged run metadata {sorted(have)} is neither in the destination nor in the report: {run.as_dict()}")


def _hparams(ea):
    content = ea.PluginTagToContent("hparams")
    return {tag: plugin_data_pb2.HParamsPluginData.FromString(c) for tag, c in content.items()}


@pytest.mark.parametrize("writer", WRITERS)
def test_tensorboard_sees_the_hparams(trip, writer):
    _src, dst, sub_runs, _report = trip
    hp = _hparams(accumulate(os.path.join(dst, sub_runs[writer])))
    start = hp["_hparams_/session_start_info"].session_start_info.hparams
    got = {k: (v.number_value if v.HasField("number_value") else v.string_value) for k, v in start.items()}
    assert got == HPARAMS
    names = {h.name for h in hp["_hparams_/experiment"].experiment.hparam_infos}
    assert names == set(HPARAMS)


def test_hparams_metric_columns_survive(trip):
    """The HParams dashboard's metric columns (the experiment's metric_infos) go along."""
    src, dst, sub_runs, _report = trip
    key = sub_runs["tbx"]

    def metrics(root):
        exp = _hparams(accumulate(os.path.join(root, key)))["_hparams_/experiment"].experiment
        return [m.name.tag for m in exp.metric_infos]

    assert metrics(src) == ["hp/acc"]
    assert metrics(dst) == ["hp/acc"]


def test_hparams_written_once_across_syncs(tmp_path):
    """An incremental sync adds the new points, not a second copy of the run's hparams."""
    src, dst, led = str(tmp_path / "src"), str(tmp_path / "dst"), str(tmp_path / "l.sqlite")
    with tbx.SummaryWriter(os.path.join(src, "r")) as w:
        w.add_scalar("x", 1.0, 0, walltime=WALL0)
        w.add_hparams({"lr": 0.5}, {"hp/m": 1.0}, run_name=".")
    sync(TfeventsSource(src), TfeventsDestination(dst), ledger=led)
    with tbx.SummaryWriter(os.path.join(src, "r")) as w:
        w.add_scalar("x", 2.0, 1, walltime=WALL0 + 1)
    rep = sync(TfeventsSource(src), TfeventsDestination(dst), ledger=led)
    assert rep.runs[0].kinds["scalars"].written == 1
    ea = accumulate(os.path.join(dst, "r"))
    assert [e.step for e in ea.Tensors("x")] == [0, 1]
    counts = {t: len(ea.Tensors(t)) for t in ea.Tags()["tensors"] if t.startswith("_hparams_/")}
    assert counts == {"_hparams_/experiment": 1, "_hparams_/session_start_info": 1,
                      "_hparams_/session_end_info": 1}


# --- a real TensorBoard server, both loaders ---------------------------------------------

@pytest.mark.parametrize("load_fast", [False, True], ids=["python", "rust"])
def test_tensorboard_server_serves_the_destination(trip, load_fast):
    _src, dst, _sub, _report = trip
    with TensorBoardServer(dst, load_fast) as tb:
        runs = tb.get_json("/data/runs")
        assert set(WRITERS) <= set(runs)
        for writer in WRITERS:
            points = tb.get_json("/data/plugin/scalars/scalars", run=writer, tag="loss")
            assert [p[1] for p in points] == STEPS
            assert [p[0] for p in points] == pytest.approx([_wall(i) for i in range(len(STEPS))], abs=1e-6)
            want = np.array(VALUES, dtype=np.float32).astype(np.float64)
            assert np.array_equal(np.array([p[2] for p in points], dtype=np.float64), want, equal_nan=True)
        tags = tb.get_json("/data/plugin/histograms/tags")
        assert "weights" in tags["tbx"]


# --- other sources and destinations ------------------------------------------------------

def _double_scalars(run_dir, values):
    """Event records of a DT_DOUBLE scalar tensor (as TensorFlow's tf.summary.scalar writes float64)."""
    os.makedirs(run_dir)
    w = EventFileWriter(run_dir)
    for i, v in enumerate(values):
        event = event_pb2.Event(step=i, wall_time=WALL0 + i / 3)
        sv = event.summary.value.add(tag="x")
        sv.tensor.dtype = tensor_pb2.DT_DOUBLE
        sv.tensor.double_val.append(v)
        sv.metadata.plugin_data.plugin_name = "scalars"
        w.write(record.frame(event.SerializeToString()))
    w.close()


def test_float64_scalars_are_rounded_and_counted(tmp_path):
    values = [0.1, math.nan, 0.5, 1 / 3, -2.0, 1e-300]
    _double_scalars(str(tmp_path / "src" / "r"), values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no stray numpy warnings from the conversion
        rep = sync(TfeventsSource(str(tmp_path / "src")), TfeventsDestination(str(tmp_path / "dst")),
                   ledger=str(tmp_path / "l.sqlite"))
    k = rep.runs[0].kinds["scalars"]
    assert dict(k.transformed) == {"value rounded to float32 (TensorBoard's scalar type)": 3}
    assert rep.exit_code() == 0 and k.verified == 6
    b, _ = read(str(tmp_path / "dst"), "r")
    assert np.array_equal(b.scalars["x"].values, np.array(values, dtype=np.float32).astype(np.float64),
                          equal_nan=True)


def test_run_names_that_collide_get_distinct_directories(tmp_path):
    """The logdir's own run is named after the logdir; a sub-run of that name must not merge into it."""
    src = tmp_path / "proj"
    for run, v in ((src, 1.0), (src / "proj", 2.0)):
        with tbx.SummaryWriter(str(run)) as w:
            w.add_scalar("x", v, 0, walltime=WALL0)
    dst = tmp_path / "dst"
    rep = sync(TfeventsSource(str(src)), TfeventsDestination(str(dst)), ledger=str(tmp_path / "l.sqlite"))
    assert rep.exit_code() == 0
    dirs = sorted({r.destination for r in rep.runs})
    assert len(dirs) == 2
    for r in rep.runs:
        b = TfeventsDestination(str(dst)).open_run(read(str(src), r.key)[0], None)
        assert b.run_dir == r.destination  # the same source run finds its own directory again
        assert b.read_back().scalars["x"].values.tolist() == [1.0 if r.key == "." else 2.0]
        b.close()
    again = sync(TfeventsSource(str(src)), TfeventsDestination(str(dst)), ledger=str(tmp_path / "l.sqlite"))
    assert [r.status for r in again.runs] == ["up-to-date"] * 2
