"""tbx.watch: W&B's watch/unwatch hook semantics, tag names and 64-bin histograms."""

import importlib
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import tbx

# tbx.watch is W&B's watch function at package level; the module comes from
# sys.modules, and importing it must not replace that function.
_function = tbx.__dict__.get("watch")
tw = importlib.import_module("tbx.watch")
if _function is not None and _function is not tw:
    tbx.watch = _function


class RecordingRun:
    """Test double for tbx.run.Run: records what watch hands to ``_queue_histogram``.

    ``_writer`` is a real tbx.SummaryWriter when a test needs one (log_graph).
    """

    def __init__(self, writer=None):
        self.calls = []
        self._writer = writer

    def _queue_histogram(self, tag, rows):
        self.calls.append((tag, rows))

    def tags(self):
        return [tag for tag, _ in self.calls]

    def take(self):
        tags = self.tags()
        self.calls.clear()
        return tags


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))


def step(model, n_in=3):
    model(torch.randn(5, n_in)).sum().backward()


PARAMS = ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_log_all_fires_every_log_freq_forward_and_backward():
    run, model = RecordingRun(), mlp()
    tw.watch(run, model, log="all", log_freq=3)
    fired = []
    for i in range(1, 8):
        step(model)
        fired.append((i, sorted(run.take())))
    expected = sorted(["parameters/" + p for p in PARAMS] + ["gradients/" + p for p in PARAMS])
    assert fired == [(i, expected if i % 3 == 0 else []) for i in range(1, 8)]
    assert model._wandb_hook_names == ["parameters/"] + ["gradients/" + p for p in PARAMS]


def test_counters_are_separate_for_forward_and_each_parameter():
    run, model = RecordingRun(), mlp()
    tw.watch(run, model, log="all", log_freq=2)
    model(torch.randn(2, 3))  # a forward without backward: only the forward counter moves
    assert run.take() == []
    step(model)  # forward 2 -> parameters; backward 1 -> nothing
    assert sorted(run.take()) == sorted("parameters/" + p for p in PARAMS)
    step(model)  # forward 3 -> nothing; backward 2 -> gradients
    assert sorted(run.take()) == sorted("gradients/" + p for p in PARAMS)


@pytest.mark.parametrize(
    "log, kinds",
    [("gradients", {"gradients"}), ("parameters", {"parameters"}), ("all", {"gradients", "parameters"}), (None, set())],
)
def test_log_selects_hooks(log, kinds):
    run, model = RecordingRun(), mlp()
    tw.watch(run, model, log=log, log_freq=1)
    step(model)
    assert {tag.split("/")[0] for tag in run.tags()} == kinds
    assert len(run.tags()) == 4 * len(kinds)


def test_default_is_gradients_every_1000():
    run, model = RecordingRun(), mlp()
    tw.watch(run, model)
    for _ in range(999):
        step(model)
    assert run.take() == []
    step(model)
    assert sorted(run.take()) == sorted("gradients/" + p for p in PARAMS)


def test_prefix_of_later_models_has_no_separator():
    run = RecordingRun()
    a, b, c = mlp(), torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    tw.watch(run, [a, b], log_freq=1)
    tw.watch(run, c, log="all", log_freq=1)
    assert b._wandb_hook_names == ["gradients/graph_1weight", "gradients/graph_1bias"]
    assert c._wandb_hook_names == ["parameters/graph_2", "gradients/graph_2weight", "gradients/graph_2bias"]
    step(c, 2)
    assert sorted(run.take()) == sorted(
        ["parameters/graph_2weight", "parameters/graph_2bias", "gradients/graph_2weight", "gradients/graph_2bias"]
    )


def test_explicit_idx_and_counter_per_run():
    run = RecordingRun()
    a, b, c = (torch.nn.Linear(2, 1) for _ in range(3))
    tw.watch(run, [a, b], idx=5, log_freq=1)
    assert a._wandb_hook_names == ["gradients/graph_5weight", "gradients/graph_5bias"]
    assert b._wandb_hook_names == ["gradients/graph_6weight", "gradients/graph_6bias"]
    tw.watch(run, c, log_freq=1)  # the run's counter moved by two models, whatever idx was
    assert c._wandb_hook_names == ["gradients/graph_2weight", "gradients/graph_2bias"]
    other = RecordingRun()  # a new run starts its own count
    d = torch.nn.Linear(2, 1)
    tw.watch(other, d, log_freq=1)
    assert d._wandb_hook_names == ["gradients/weight", "gradients/bias"]


def test_frozen_parameters_get_no_gradient_hook():
    run, model = RecordingRun(), mlp()
    model[0].weight.requires_grad_(False)
    tw.watch(run, model, log="all", log_freq=1)
    step(model)
    tags = run.tags()
    assert "gradients/0.weight" not in tags and "parameters/0.weight" in tags
    assert "gradients/0.bias" in tags


def test_bad_arguments_raise_and_register_nothing():
    run, model = RecordingRun(), mlp()
    with pytest.raises(ValueError, match=r"log must be one of 'gradients', 'parameters', 'all', or None, got 'grads'"):
        tw.watch(run, model, log="grads")
    with pytest.raises(TypeError, match=r"models: expected a pytorch model \(torch.nn.Module\).*str"):
        tw.watch(run, [model, "net"])
    with pytest.raises(TypeError, match="log_freq must be an int, got '10'"):
        tw.watch(run, model, log_freq="10")
    with pytest.raises(ValueError, match="log_freq must be an int >= 0, got -1"):
        tw.watch(run, model, log_freq=-1)
    with pytest.raises(TypeError, match="idx must be an int, got 1.5"):
        tw.watch(run, model, idx=1.5)
    assert not hasattr(model, "_wandb_hook_names")
    step(model)
    assert run.calls == []
    tw.watch(run, model, log_freq=1e3)  # an integral float is accepted (W&B compares it as a number)
    assert model._wandb_hook_names[0] == "gradients/0.weight"  # first successful watch: no prefix


def test_same_hook_name_twice_raises_before_hooking():
    run, model, fresh = RecordingRun(), mlp(), torch.nn.Linear(2, 1)
    tw.watch(run, model, log_freq=1, idx=1)
    with pytest.raises(ValueError, match=r"hook named 'gradients/graph_10.weight' is already set in this run"):
        tw.watch(run, [fresh, model], log_freq=1, idx=0)
    assert not hasattr(fresh, "_wandb_hook_names")
    step(fresh, 2)
    step(model)
    assert sorted(run.take()) == sorted("gradients/graph_1" + p for p in PARAMS)  # one hook each, no duplicates


def test_unwatch_model_stops_its_histograms_only():
    run, a, b = RecordingRun(), mlp(), torch.nn.Linear(2, 1)
    tw.watch(run, [a, b], log="all", log_freq=1)
    tw.unwatch(run, a)
    assert not hasattr(a, "_wandb_hook_names")
    step(a)
    step(b, 2)
    assert sorted(run.take()) == sorted(
        ["parameters/graph_1weight", "parameters/graph_1bias", "gradients/graph_1weight", "gradients/graph_1bias"]
    )
    with pytest.warns(UserWarning, match="Sequential model has not been watched"):
        tw.unwatch(run, a)
    tw.watch(run, a, log_freq=1)  # watching again after unwatch works
    step(a)
    assert sorted(run.take()) == sorted("gradients/graph_2" + p for p in PARAMS)


def test_unwatch_all():
    run, a, b = RecordingRun(), mlp(), torch.nn.Linear(2, 1)
    tw.watch(run, [a, b], log="all", log_freq=1)
    tw.unwatch(run)
    step(a)
    step(b, 2)
    assert run.calls == []
    assert not hasattr(a, "_wandb_hook_names") and not hasattr(b, "_wandb_hook_names")
    tw.unwatch(run)  # idempotent
    tw.unwatch(RecordingRun())  # a run that watched nothing


def test_histogram_rows_from_hook_match_numpy():
    run, model = RecordingRun(), torch.nn.Linear(50, 40)
    tw.watch(run, model, log="parameters", log_freq=1)
    model(torch.zeros(1, 50))
    (tag, rows), (tag_b, rows_b) = run.calls
    assert (tag, tag_b) == ("parameters/weight", "parameters/bias")
    assert rows.dtype == np.float64 and rows.shape == (64, 3)
    counts, edges = np.histogram(model.weight.detach().numpy().astype(np.float64), bins=64)
    np.testing.assert_array_equal(rows[:, 2], counts)
    np.testing.assert_allclose(rows[:, 0], edges[:-1], rtol=0, atol=1e-7)
    np.testing.assert_allclose(rows[:, 1], edges[1:], rtol=0, atol=1e-7)


def test_tensor_histogram_removes_non_finite():
    t = torch.tensor([float("nan"), 1.0, float("inf"), 3.0, -float("inf"), 2.0, 5.0])
    rows = tw.tensor_histogram(t)
    assert rows[0, 0] == 1.0 and rows[-1, 1] == 5.0
    assert rows[:, 2].sum() == 4
    assert rows[0, 2] == 1 and rows[-1, 2] == 1
    assert tw.tensor_histogram(torch.tensor([float("nan"), float("inf")])) is None
    assert tw.tensor_histogram(torch.empty(0)) is None


def test_tensor_histogram_constant_is_one_bin():
    rows = tw.tensor_histogram(torch.full((3, 4), 0.25))
    np.testing.assert_array_equal(rows, [[0.25, 0.25, 12.0]])
    assert rows.dtype == np.float64


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.bool])
def test_tensor_histogram_dtypes(dtype):
    values = torch.arange(0, 128) % 2 if dtype is torch.bool else torch.arange(-64, 64)
    rows = tw.tensor_histogram(values.to(dtype))
    assert rows.shape == (64, 3) and rows[:, 2].sum() == 128
    assert rows[0, 0] == values.min().item() and rows[-1, 1] == values.max().item()


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_tensor_histogram_sparse_counts_implicit_zeros():
    dense = torch.zeros(20, 30)
    dense[1, 2], dense[5, 7], dense[9, 9] = 3.0, -2.0, 7.5
    sparse = tw.tensor_histogram(dense.to_sparse())
    np.testing.assert_array_equal(sparse, tw.tensor_histogram(dense))
    assert sparse[:, 2].sum() == 600
    only_positive = torch.zeros(4, 4)
    only_positive[0, 0] = 2.0
    rows = tw.tensor_histogram(only_positive.to_sparse_csr())
    assert rows[0, 0] == 0.0 and rows[0, 2] == 15 and rows[-1, 2] == 1
    np.testing.assert_array_equal(tw.tensor_histogram(torch.zeros(3, 3).to_sparse()), [[0.0, 0.0, 9.0]])


def test_tensor_histogram_chunked_counts_equal(monkeypatch):
    t = torch.randn(10_000)
    whole = tw.tensor_histogram(t)
    monkeypatch.setattr(tw, "_CHUNK", 999)
    np.testing.assert_array_equal(tw.tensor_histogram(t), whole)


def test_tensor_histogram_bad_input():
    with pytest.raises(TypeError, match="tensor must be a torch.Tensor, got ndarray"):
        tw.tensor_histogram(np.zeros(3))
    with pytest.raises(ValueError, match="bins must be at least 1, got 0"):
        tw.tensor_histogram(torch.zeros(3), bins=0)


def test_tensor_histogram_stays_on_device_for_meta():
    assert tw.tensor_histogram(torch.empty(4, device="meta")) is None


def test_log_graph_once_at_first_forward(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    writer = tbx.SummaryWriter(str(tmp_path))
    run, model = RecordingRun(writer), mlp()
    tw.watch(run, model, log="parameters", log_freq=1, log_graph=True)
    assert model._wandb_hook_names == ["parameters/", "topology/graph_0"]
    model(torch.randn(2, 3))
    # The trace ran the model again; it must not count as a forward of the hooks.
    assert run.take() == ["parameters/" + p for p in PARAMS]
    model(torch.randn(2, 3))
    assert len(run.take()) == 4
    writer.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    ops = [node.op for node in acc.Graph().node]
    assert ops.count("aten::linear") == 2 and "aten::relu" in ops
    graph_events = [e for _, e in tbx.read_events(str(tmp_path)) if e.HasField("graph_def")]
    assert len(graph_events) == 1


def test_log_graph_kwargs_warns_and_training_continues(tmp_path):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(2, 1)

        def forward(self, x, scale=1.0):
            return self.fc(x) * scale

    writer = tbx.SummaryWriter(str(tmp_path))
    run, model = RecordingRun(writer), Net()
    tw.watch(run, model, log_freq=1, log_graph=True)
    with pytest.warns(UserWarning, match=r"called with keyword arguments \['scale'\]"):
        model(torch.randn(3, 2), scale=2.0).sum().backward()
    assert run.take() == ["gradients/fc.bias", "gradients/fc.weight"]
    writer.close()


def test_import_tbx_and_tbx_watch_do_not_import_torch():
    code = "import sys, tbx, tbx.watch; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})


def test_matches_wandb_sdk_watch(monkeypatch):
    """Same tags, order and counts as the real W&B SDK's hooks (driven without a server)."""
    wandb = pytest.importorskip("wandb")
    from wandb.integration.torch.wandb_torch import TorchHistory
    from wandb.sdk import wandb_watch

    class WandbRecorder:
        """Stands in for wandb.run: receives what W&B's hooks log."""

        def __init__(self):
            self.calls = []

        def _log(self, data, commit=None):
            assert commit is False
            self.calls += [(k, np.asarray(v.histogram), np.asarray(v.bins)) for k, v in data.items()]

        def _telemetry_callback(self, telemetry):
            pass

    class WandbRun:
        def __init__(self):
            self._torch = TorchHistory()

    recorder = WandbRecorder()
    monkeypatch.setattr(wandb, "run", recorder)
    monkeypatch.setattr(wandb_watch, "_global_watch_idx", 0)

    def train(watch_fn):
        a, b = mlp(), torch.nn.Linear(2, 1)
        with torch.no_grad():
            b.bias.fill_(0.5)  # a constant tensor: one bin
        watch_fn([a, b])
        torch.manual_seed(1)
        for _ in range(4):
            step(a)
            step(b, 2)
        return a, b

    wa, wb = train(lambda models: wandb_watch._watch(WandbRun(), models, log="all", log_freq=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = RecordingRun()
        ta, tb = train(lambda models: tw.watch(run, models, log="all", log_freq=2))
    assert ta._wandb_hook_names == wa._wandb_hook_names
    assert tb._wandb_hook_names == wb._wandb_hook_names
    assert run.tags() == [k for k, _, _ in recorder.calls]
    assert len(run.calls) == 24
    for (tag, rows), (_, counts, bins) in zip(run.calls, recorder.calls):
        np.testing.assert_array_equal(rows[:, 2], counts, err_msg=tag)
        np.testing.assert_allclose(rows[:, 0], bins[:-1], rtol=1e-6, atol=1e-7, err_msg=tag)
        np.testing.assert_allclose(rows[:, 1], bins[1:], rtol=1e-6, atol=1e-7, err_msg=tag)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
def test_cuda_histogram_matches_cpu():
    t = torch.randn(100_000, device="cuda")
    np.testing.assert_array_equal(tw.tensor_histogram(t), tw.tensor_histogram(t.cpu()))
    half = t.half()
    np.testing.assert_array_equal(tw.tensor_histogram(half), tw.tensor_histogram(half.cpu()))
    t[::7] = float("nan")
    t[::11] = float("inf")
    rows = tw.tensor_histogram(t)
    np.testing.assert_array_equal(rows, tw.tensor_histogram(t.cpu()))
    assert rows[:, 2].sum() == torch.isfinite(t).sum().item()


@cuda
def test_cuda_counts_past_float32_precision():
    t = torch.zeros(20_000_000, device="cuda")
    t[0] = 1.0
    rows = tw.tensor_histogram(t)
    assert rows[0, 2] == 19_999_999 and rows[-1, 2] == 1 and rows[:, 2].sum() == 20_000_000


@cuda
def test_cuda_model_hooks():
    run, model = RecordingRun(), mlp().cuda()
    tw.watch(run, model, log="all", log_freq=1)
    model(torch.randn(5, 3, device="cuda")).sum().backward()
    by_tag = dict(run.calls)
    assert sorted(by_tag) == sorted(["parameters/" + p for p in PARAMS] + ["gradients/" + p for p in PARAMS])
    for name, param in model.named_parameters():
        np.testing.assert_array_equal(by_tag["parameters/" + name], tw.tensor_histogram(param.detach().cpu()))
        np.testing.assert_array_equal(by_tag["gradients/" + name], tw.tensor_histogram(param.grad.cpu()))


def test_end_to_end_with_tbx_run(tmp_path):
    """run.watch through tbx.run.init: histograms land at the user's next committed step."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    tbx_run = importlib.import_module("tbx.run")

    run = tbx_run.init(project="p", name="watched", dir=str(tmp_path), reinit="create_new")
    try:
        model = mlp()
        run.watch(model, log="all", log_freq=2, log_graph=True)
        for i in range(4):
            step(model)
            run.log({"loss": float(i)})
        last_weight = tw.tensor_histogram(model[0].weight)
        last_grad = tw.tensor_histogram(model[2].bias.grad)
        run.unwatch(model)
        step(model)
        run.log({"loss": 4.0})
    finally:
        run.finish()
    acc = EventAccumulator(str(tmp_path / "p" / f"watched-{run.id}"), size_guidance={"tensors": 0},
                           tensor_size_guidance={"histograms": 0, "scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["tensors"])
    expected = {"parameters/" + p for p in PARAMS} | {"gradients/" + p for p in PARAMS}
    assert expected <= tags
    for tag in expected:
        assert [e.step for e in acc.Tensors(tag)] == [1, 3], tag  # W&B: rows 1 and 3 with log_freq=2
    weight = tensor_util.make_ndarray(acc.Tensors("parameters/0.weight")[-1].tensor_proto)
    np.testing.assert_allclose(weight[:, 2], last_weight[:, 2])
    np.testing.assert_allclose(weight[:, 0], last_weight[:, 0], rtol=1e-6)
    grad = tensor_util.make_ndarray(acc.Tensors("gradients/2.bias")[-1].tensor_proto)
    assert grad[:, 2].sum() == 1 and last_grad[:, 2].sum() == 1  # a one-element gradient
    assert [e.step for e in acc.Tensors("loss")] == [0, 1, 2, 3, 4]
    assert len(acc.Graph().node) > 0
