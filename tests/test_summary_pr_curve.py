"""SummaryWriter.add_pr_curve / add_pr_curve_raw: the counts and what is written.

Oracles: torch's own ``compute_curve`` and ``pr_curve`` summary (the reference
implementation tbx replaces), an exact brute-force count per threshold,
TensorBoard's compiled protos and loaders, and TensorBoard's PR curves plugin
serving the written files in-process.
"""

import json

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing import data_provider as tb_data_provider
from tensorboard.backend.event_processing import plugin_event_accumulator as plugin_acc
from tensorboard.backend.event_processing import plugin_event_multiplexer as tb_multiplexer
from tensorboard.compat.proto import summary_pb2 as tb_summary_pb2
from tensorboard.compat.proto import types_pb2 as tb_types_pb2
from tensorboard.plugins import base_plugin
from tensorboard.plugins.pr_curve import plugin_data_pb2 as tb_pr_pd
from tensorboard.plugins.pr_curve import pr_curves_plugin
from torch.utils.tensorboard import summary as torch_summary
from werkzeug.test import EnvironBuilder

from tbx import SummaryWriter
from tbx.summary import pr_curve as pr
from writer_util import to_ndarray, values_by_tag, tbx_values_by_tag

RNG = np.random.default_rng(5)


def _curve(labels, predictions, n, weights=None):
    positive, probs, w = pr.check_inputs(np.asarray(labels), np.asarray(predictions),
                                         None if weights is None else np.asarray(weights))
    return pr.compute_curve(positive, probs, w, n)


def _brute_force(labels, predictions, n, weights=None):
    """Counts straight from the definition: positive at threshold j iff floor(p*(n-1)) >= j."""
    labels = np.asarray(labels, dtype=bool).ravel()
    bucket = np.floor(np.asarray(predictions, dtype=np.float64).ravel() * (n - 1))
    w = np.ones(labels.shape) if weights is None else np.broadcast_to(weights, labels.shape).ravel()
    rows = []
    for j in range(n):
        called = bucket >= j
        tp, fp = w[called & labels].sum(), w[called & ~labels].sum()
        fn, tn = w[~called & labels].sum(), w[~called & ~labels].sum()
        rows.append((tp, fp, tn, fn, tp / max(tp + fp, 1e-7), tp / max(tp + fn, 1e-7)))
    return np.array(rows).T


def _written(logdir, tag):
    """[(step, [6, n] array, metadata or None)] read with TensorBoard's protos."""
    return [(s, to_ndarray(v.tensor), v.metadata if v.HasField("metadata") else None)
            for s, _w, v in values_by_tag(logdir)[".", tag]]


# --- the counts -----------------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 3, 10, 127, 500])
@pytest.mark.parametrize("weighted", [False, True])
def test_counts_match_torch_compute_curve(n, weighted):
    labels = RNG.random(3000) < 0.3
    predictions = RNG.random(3000)
    weights = RNG.random(3000) * 3 if weighted else None
    got = _curve(labels, predictions, n, weights)
    want = torch_summary.compute_curve(labels, predictions, num_thresholds=n, weights=weights)
    assert got.shape == (6, n)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got, _brute_force(labels, predictions, n, weights), rtol=1e-12, atol=1e-9)


def test_counts_are_cumulative_and_consistent():
    labels = RNG.random(1000) < 0.5
    got = _curve(labels, RNG.random(1000), 50)
    tp, fp, tn, fn, precision, recall = got
    assert tp[0] == labels.sum() and fp[0] == (~labels).sum() and tn[0] == 0 and fn[0] == 0
    assert np.all(np.diff(tp) <= 0) and np.all(np.diff(fp) <= 0)
    assert np.all(tp + fn == labels.sum()) and np.all(fp + tn == (~labels).sum())
    called = tp + fp > 0
    assert np.allclose(precision[called], tp[called] / (tp + fp)[called]) and np.all(precision[~called] == 0)
    assert np.allclose(recall, tp / labels.sum())


def test_float32_predictions_on_a_threshold_are_not_rounded_across_it():
    # float32(j / 126) * 126 rounds to an integer in float32 arithmetic even when
    # the float32 value lies just below j / 126; tbx multiplies in float64.
    n = 127
    predictions = (np.arange(n, dtype=np.float64) / (n - 1)).astype(np.float32)
    labels = np.ones(n, dtype=bool)
    got = _curve(labels, predictions, n)
    exact = np.floor(predictions.astype(np.float64) * (n - 1))
    want_tp = np.array([(exact >= j).sum() for j in range(n)], dtype=np.float64)
    assert np.array_equal(got[0], want_tp)
    # the oracle with float64 input agrees exactly
    want = torch_summary.compute_curve(labels, predictions.astype(np.float64), num_thresholds=n)
    assert np.array_equal(got, want)


def test_extreme_predictions():
    got = _curve([1, 0, 1, 0], [0.0, 0.0, 1.0, 1.0], 5)
    assert got[0].tolist() == [2, 1, 1, 1, 1]  # 1.0 is positive at every threshold, 0.0 only at 0
    assert got[1].tolist() == [2, 1, 1, 1, 1]
    assert got[4].tolist() == [0.5] * 5


@pytest.mark.parametrize("labels, predictions", [
    (torch.tensor([1, 0, 1, 1]), torch.tensor([0.85, 0.15, 0.45, 0.65])),
    (torch.tensor([True, False, True, True]), torch.tensor([0.85, 0.15, 0.45, 0.65], dtype=torch.float64)),
    (np.array([1.0, 0.0, 1.0, 1.0]), np.array([0.85, 0.15, 0.45, 0.65], dtype=np.float16)),
    ([1, 0, 1, 1], [0.85, 0.15, 0.45, 0.65]),
    (np.array([[1, 0], [1, 1]], dtype=np.uint8), np.array([[0.85, 0.15], [0.45, 0.65]])),
])
def test_input_types(tmp_path, labels, predictions):
    with SummaryWriter(tmp_path) as writer:
        writer.add_pr_curve("pr", labels, predictions, 1, num_thresholds=11)
    [(_step, data, _md)] = _written(tmp_path, "pr")
    want = torch_summary.compute_curve(np.array([1, 0, 1, 1]), np.array([0.85, 0.15, 0.45, 0.65]), num_thresholds=11)
    atol = 1e-3 if getattr(predictions, "dtype", None) == np.float16 else 1e-6
    np.testing.assert_allclose(data, want, atol=atol)


# --- what is written -----------------------------------------------------------------

def test_record_matches_torch_summary(tmp_path):
    labels = RNG.random(500) < 0.4
    predictions = RNG.random(500)
    weights = RNG.random(500)
    with SummaryWriter(tmp_path) as writer:
        writer.add_pr_curve("val/pr", torch.from_numpy(labels), torch.from_numpy(predictions), 7, 33, weights)
    [(step, data, md)] = _written(tmp_path, "val/pr")
    [(tbx_step, _w, tbx_value)] = tbx_values_by_tag(tmp_path)[".", "val/pr"]
    theirs = torch_summary.pr_curve("val/pr", labels, predictions, num_thresholds=33, weights=weights).value[0]
    assert step == tbx_step == 7
    assert data.dtype == np.float32 and data.shape == (6, 33)
    assert np.array_equal(data, to_ndarray(theirs.tensor))  # both float32 of the same float64 counts
    assert np.array_equal(to_ndarray(tbx_value.tensor), data)
    assert md.plugin_data.plugin_name == "pr_curves" == theirs.metadata.plugin_data.plugin_name
    assert md.plugin_data.content == theirs.metadata.plugin_data.content  # PrCurvePluginData{0, 33}
    assert tb_pr_pd.PrCurvePluginData.FromString(md.plugin_data.content).num_thresholds == 33
    assert md.data_class == tb_summary_pb2.DATA_CLASS_TENSOR


def test_more_than_127_thresholds_are_kept(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_pr_curve("pr", [0, 1, 1], [0.2, 0.5, 0.999], 0, num_thresholds=1000)
    [(_s, data, md)] = _written(tmp_path, "pr")
    assert data.shape == (6, 1000)
    assert tb_pr_pd.PrCurvePluginData.FromString(md.plugin_data.content).num_thresholds == 1000
    assert data[0, 998] == 1 and data[0, 999] == 0  # 0.999 * 999 = 998.0...


def test_metadata_once_per_tag_and_steps(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        for step in range(5):
            writer.add_pr_curve("a", RNG.random(20) < 0.5, RNG.random(20), step)
            writer.add_pr_curve("b", RNG.random(20) < 0.5, RNG.random(20), step, num_thresholds=3)
    for tag, n in (("a", 127), ("b", 3)):
        points = _written(tmp_path, tag)
        assert [s for s, _d, _m in points] == list(range(5))
        assert [m is not None for _s, _d, m in points] == [True, False, False, False, False]
        assert all(d.shape == (6, n) for _s, d, _m in points)


def test_input_is_snapshotted_at_the_call(tmp_path):
    labels = np.array([1, 0, 1, 0])
    predictions = np.array([0.9, 0.2, 0.6, 0.4])
    weights = np.ones(4)
    want = _curve(labels, predictions, 5)
    with SummaryWriter(tmp_path) as writer:
        writer.add_pr_curve("pr", labels, predictions, 0, num_thresholds=5, weights=weights)
        labels[:] = 0
        predictions[:] = 1.0
        weights[:] = 0
    [(_s, data, _m)] = _written(tmp_path, "pr")
    assert np.allclose(data, want)


def test_tensorboard_accumulator_reads_it(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_pr_curve("pr", [1, 0, 1], [0.7, 0.3, 0.2], 4, num_thresholds=6)
        writer.add_pr_curve_raw("raw", [2, 1], [1, 0], [0, 1], [0, 1], [2 / 3, 1.0], [1.0, 0.5], 5)
    acc = plugin_acc.EventAccumulator(str(tmp_path), size_guidance={plugin_acc.TENSORS: 0},
                                      tensor_size_guidance={"pr_curves": 0})
    acc.Reload()
    assert sorted(acc.Tags()["tensors"]) == ["pr", "raw"]
    assert set(acc.PluginTagToContent("pr_curves")) == {"pr", "raw"}
    [event] = acc.Tensors("pr")
    assert event.step == 4 and event.tensor_proto.dtype == tb_types_pb2.DT_FLOAT
    assert np.allclose(to_ndarray(event.tensor_proto), _curve([1, 0, 1], [0.7, 0.3, 0.2], 6))
    [event] = acc.Tensors("raw")
    assert to_ndarray(event.tensor_proto).tolist() == np.float32([[2, 1], [1, 0], [0, 1], [0, 1], [2 / 3, 1], [1, 0.5]]).tolist()
    assert acc.SummaryMetadata("raw").data_class == tb_summary_pb2.DATA_CLASS_TENSOR


def _pr_curves_response(logdir, tag):
    """TensorBoard's PR curves plugin answering /pr_curves?run=.&tag=... in-process (Python loader)."""
    multiplexer = tb_multiplexer.EventMultiplexer(tensor_size_guidance={"pr_curves": 0})
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = tb_data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    plugin = pr_curves_plugin.PrCurvesPlugin(base_plugin.TBContext(data_provider=provider, logdir=str(logdir)))
    environ = EnvironBuilder(path="/pr_curves", query_string={"run": ".", "tag": tag}).get_environ()
    status = []
    body = b"".join(plugin.get_plugin_apps()["/pr_curves"](environ, lambda s, h, e=None: status.append(s)))
    assert status == ["200 OK"], body
    return json.loads(body)["."]


def test_pr_curves_plugin_serves_it(tmp_path):
    labels = RNG.random(400) < 0.5
    predictions = RNG.random(400) * 0.7  # nothing above 0.7: the last columns have TP + FP == 0
    with SummaryWriter(tmp_path) as writer:
        writer.add_pr_curve("pr", labels, predictions, 3, num_thresholds=11)
    [entry] = _pr_curves_response(tmp_path, "pr")
    want = np.float32(_curve(labels, predictions, 11))
    kept = 7  # thresholds 0.0 .. 0.6 have predictions at or above them
    assert entry["step"] == 3
    assert entry["thresholds"] == np.linspace(0, 1, 11)[:kept].tolist()
    assert entry["true_positives"] == want[0, :kept].astype(int).tolist()
    assert entry["false_positives"] == want[1, :kept].astype(int).tolist()
    assert entry["true_negatives"] == want[2, :kept].astype(int).tolist()
    assert entry["false_negatives"] == want[3, :kept].astype(int).tolist()
    assert entry["precision"] == want[4, :kept].tolist()
    assert entry["recall"] == want[5, :kept].tolist()


# --- add_pr_curve_raw ------------------------------------------------------------------

RAW = dict(
    true_positive_counts=[75, 64, 21, 5, 0],
    false_positive_counts=[150, 105, 18, 0, 0],
    true_negative_counts=[0, 45, 132, 150, 150],
    false_negative_counts=[0, 11, 54, 70, 75],
    precision=[0.3333333, 0.3786982, 0.5384616, 1.0, 0.0],
    recall=[1.0, 0.8533334, 0.28, 0.0666667, 0.0],
)


def test_raw_round_trip_and_torch_default_num_thresholds(tmp_path):
    # torch's demo passes 5-entry arrays and leaves num_thresholds at 127.
    with SummaryWriter(tmp_path) as writer:
        writer.add_pr_curve_raw("raw", *RAW.values(), global_step=2)
        writer.add_pr_curve_raw("raw", *[torch.tensor(v) for v in RAW.values()], global_step=3, num_thresholds=5)
    points = _written(tmp_path, "raw")
    want = np.array(list(RAW.values()), dtype=np.float32)
    assert [s for s, _d, _m in points] == [2, 3]
    for _s, data, _m in points:
        assert data.dtype == np.float32 and np.array_equal(data, want)
    md = points[0][2]
    assert tb_pr_pd.PrCurvePluginData.FromString(md.plugin_data.content).num_thresholds == 5
    theirs = torch_summary.pr_curve_raw("raw", *RAW.values(), num_thresholds=5).value[0]
    assert np.array_equal(to_ndarray(theirs.tensor), want)
    assert md.plugin_data.content == theirs.metadata.plugin_data.content
    [first, _second] = _pr_curves_response(tmp_path, "raw")
    assert first["true_positives"] == RAW["true_positive_counts"][:4]  # TB trims the TP+FP == 0 tail
    assert first["thresholds"] == [0.0, 0.25, 0.5, 0.75]


def test_raw_ignores_weights_like_torch(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_pr_curve_raw("raw", *RAW.values(), weights=np.array([9.0]))
    [(_s, data, _m)] = _written(tmp_path, "raw")
    assert np.array_equal(data, np.array(list(RAW.values()), dtype=np.float32))
