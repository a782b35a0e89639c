"""W&B training scripts as W&B's documentation writes them, run with ``import tbx as wandb``.

Each script runs in a fresh interpreter (so module state, atexit and exit codes
are real); the result is read back with TensorBoard's own loader.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

QUICKSTART = """
import random
import tbx as wandb

wandb.init(
    project="my-awesome-project",
    config={"learning_rate": 0.02, "architecture": "CNN", "dataset": "CIFAR-100", "epochs": 10},
)
epochs = 10
offset = random.random() / 5
for epoch in range(2, epochs):
    acc = 1 - 2 ** -epoch - random.random() / epoch - offset
    loss = 2 ** -epoch + random.random() / epoch + offset
    wandb.log({"acc": acc, "loss": loss})
wandb.finish()
"""

DEFINE_METRIC = """
import tbx as wandb

with wandb.init(project="metrics", name="epochs", config={"lr": 0.1}) as run:
    run.define_metric("epoch")
    run.define_metric("val/*", step_metric="epoch")
    run.define_metric("train/loss", summary="min")
    for step in range(20):
        run.log({"train/loss": 1.0 / (step + 1) if step != 5 else 0.01})
        if step % 5 == 4:
            run.log({"epoch": step // 5, "val/acc": 0.5 + step / 40})
    run.summary["best_note"] = "done"
"""

MEDIA = """
import numpy as np
import tbx as wandb

run = wandb.init(project="media", name="media")
images = [wandb.Image(np.full((8, 8, 3), 40 * i, dtype=np.uint8), caption=f"sample {i}") for i in range(3)]
table = wandb.Table(columns=["id", "pred"], data=[[1, "cat"], [2, "dog"]])
run.log({"examples": images, "predictions": table, "weights": np.linspace(-1, 1, 1000)})
run.log({"hist": wandb.Histogram(np.random.default_rng(0).normal(size=500), num_bins=20)})
run.finish()
"""

PYTORCH_WATCH = """
import torch
from torch import nn
import tbx as wandb

torch.manual_seed(0)
run = wandb.init(project="torch", name="watched", config={"batch_size": 16})
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
wandb.watch(model, log="all", log_freq=5)
x, y = torch.randn(64, 4), torch.randn(64, 1)
for step in range(20):
    opt.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    wandb.log({"loss": loss.item()})
wandb.finish()
"""

CRASH = """
import tbx as wandb

wandb.init(project="crash", name="crash")
for step in range(5):
    wandb.log({"loss": float(step)})
raise RuntimeError("training diverged")
"""


def run_script(tmp_path, source):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(source))
    env = dict(os.environ, PYTHONPATH=ROOT, WANDB_DIR=str(tmp_path / "out"))
    env.pop("WANDB_PROJECT", None)
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def only_run_dir(tmp_path, project):
    project_dir = tmp_path / "out" / project
    runs = [p for p in project_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def accumulator(path):
    acc = EventAccumulator(str(path), size_guidance={"tensors": 0})
    acc.Reload()
    return acc


def scalars(acc, tag):
    return [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]


def test_quickstart(tmp_path):
    proc = run_script(tmp_path, QUICKSTART)
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run_dir(tmp_path, "my-awesome-project")
    acc = accumulator(run_dir)
    assert [s for s, _ in scalars(acc, "acc")] == list(range(8))
    assert [s for s, _ in scalars(acc, "loss")] == list(range(8))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["acc"] == pytest.approx(scalars(acc, "acc")[-1][1], rel=1e-6)
    assert summary["_step"] == 7
    config = (run_dir / "config.yaml").read_text()
    assert "learning_rate" in config and "CIFAR-100" in config
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["exit_code"] == 0
    assert "_hparams_/session_start_info" in acc.Tags()["tensors"]  # config in the HParams dashboard


def test_define_metric_step_metric_and_summary(tmp_path):
    proc = run_script(tmp_path, DEFINE_METRIC)
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run_dir(tmp_path, "metrics")
    acc = accumulator(run_dir)
    assert [s for s, _ in scalars(acc, "val/acc")] == [0, 1, 2, 3]  # x axis: the epoch
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["train/loss"] == {"min": 0.01}
    assert summary["best_note"] == "done"


def test_media_lists_tables_and_histograms(tmp_path):
    proc = run_script(tmp_path, MEDIA)
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run_dir(tmp_path, "media")
    acc = accumulator(run_dir)
    tags = acc.Tags()["tensors"]
    assert {"examples", "predictions/text_summary", "weights", "hist"} <= set(tags)
    examples = tensor_util.make_ndarray(acc.Tensors("examples")[0].tensor_proto)
    assert len(examples) == 2 + 3  # width, height, three PNGs
    table = tensor_util.make_ndarray(acc.Tensors("predictions/text_summary")[0].tensor_proto)
    assert table.shape == (3, 2) and table[1].tolist() == [b"1", b"cat"]
    weights = tensor_util.make_ndarray(acc.Tensors("weights")[0].tensor_proto)
    assert weights.shape == (32, 3) and weights[:, 2].sum() == 1000
    hist = tensor_util.make_ndarray(acc.Tensors("hist")[0].tensor_proto)
    assert hist[:, 2].sum() == 500 and acc.Tensors("hist")[0].step == 1


def test_pytorch_watch(tmp_path):
    proc = run_script(tmp_path, PYTORCH_WATCH)
    assert proc.returncode == 0, proc.stderr
    acc = accumulator(only_run_dir(tmp_path, "torch"))
    tags = set(acc.Tags()["tensors"])
    assert {"gradients/0.weight", "parameters/0.weight", "gradients/2.bias"} <= tags
    steps = [e.step for e in acc.Tensors("gradients/0.weight")]
    assert steps and all(s < 20 for s in steps)
    assert len(scalars(acc, "loss")) == 20


def test_uncaught_exception_finishes_with_exit_code_1(tmp_path):
    proc = run_script(tmp_path, CRASH)
    assert proc.returncode == 1 and "training diverged" in proc.stderr
    run_dir = only_run_dir(tmp_path, "crash")
    assert json.loads((run_dir / "metadata.json").read_text())["exit_code"] == 1
    assert [s for s, _ in scalars(accumulator(run_dir), "loss")] == [0, 1, 2, 3, 4]  # nothing lost
