"""``tbx demo``: train a small network with numpy and log it with tbx.

A two-layer MLP learns to separate two interleaved spirals. Every step logs
training loss and accuracy; every 10 steps the validation metrics, learning
rate and weight/gradient histograms; every 50 steps an image of the decision
boundary; text notes at the start and the end. The result is a realistic run
to open in TensorBoard.
"""

import argparse
import os
import time
from datetime import datetime

import numpy as np

from tbx.writer import SummaryWriter

EXAMPLES = """examples:
  tbx demo                      # writes runs/demo_<date>; then: tensorboard --logdir runs
  tbx demo --steps 2000 --logdir /tmp/tb
"""


def add_arguments(parser):
    parser.description = "Train a small numpy MLP on two spirals and log the run with tbx."
    parser.epilog = EXAMPLES
    parser.add_argument("--logdir", default="runs", help="parent directory of the run (default: runs)")
    parser.add_argument("--name", default=None, help="run name (default: demo_<date>)")
    parser.add_argument("--steps", type=int, default=2000, help="training steps (default: 2000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def spirals(n, rng):
    t = np.sqrt(rng.uniform(0, 1, n)) * 3 * np.pi
    label = rng.integers(0, 2, n)
    angle = t + np.pi * label
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1) / (3 * np.pi)
    return (x + rng.normal(0, 0.02, x.shape)).astype(np.float32), label


def _forward(params, x):
    hidden = np.tanh(x @ params["w1"] + params["b1"])
    logits = hidden @ params["w2"] + params["b2"]
    prob = 1 / (1 + np.exp(-logits[:, 0]))
    return hidden, prob


def _boundary_image(params, x, y, size=128):
    grid = np.linspace(-1.1, 1.1, size, dtype=np.float32)
    xx, yy = np.meshgrid(grid, -grid)
    _, prob = _forward(params, np.stack([xx.ravel(), yy.ravel()], axis=1))
    prob = prob.reshape(size, size)
    image = np.stack([prob, 0.25 + 0.5 * np.abs(prob - 0.5), 1 - prob], axis=-1) * 0.8
    cols = np.clip(((x[:, 0] + 1.1) / 2.2 * (size - 1)).astype(int), 0, size - 1)
    rows = np.clip(((1.1 - x[:, 1]) / 2.2 * (size - 1)).astype(int), 0, size - 1)
    image[rows, cols] = np.where(y[:, None] == 1, [1.0, 0.9, 0.2], [0.1, 0.1, 0.1])
    return image  # HWC float in [0, 1]


def train(logdir, steps=2000, seed=0, hidden=64, lr=0.5):
    """Train and log to ``logdir``; returns the final validation accuracy."""
    rng = np.random.default_rng(seed)
    x_train, y_train = spirals(2000, rng)
    x_val, y_val = spirals(500, rng)
    params = {
        "w1": rng.normal(0, 1.0, (2, hidden)).astype(np.float32),
        "b1": np.zeros(hidden, np.float32),
        "w2": rng.normal(0, 1.0 / np.sqrt(hidden), (hidden, 1)).astype(np.float32),
        "b2": np.zeros(1, np.float32),
    }
    accuracy = 0.0
    with SummaryWriter(logdir) as writer:
        writer.add_text("config", "| setting | value |\n|---|---|\n"
                        f"| hidden units | {hidden} |\n| learning rate | {lr} |\n| steps | {steps} |\n"
                        f"| seed | {seed} |\n| train / val | {len(x_train)} / {len(x_val)} |", 0)
        for step in range(steps):
            batch = rng.integers(0, len(x_train), 256)
            x, y = x_train[batch], y_train[batch]
            h, prob = _forward(params, x)
            eps = 1e-7
            loss = -np.mean(y * np.log(prob + eps) + (1 - y) * np.log(1 - prob + eps))
            dlogits = ((prob - y) / len(y))[:, None].astype(np.float32)
            grads = {"w2": h.T @ dlogits, "b2": dlogits.sum(0)}
            dh = (dlogits @ params["w2"].T) * (1 - h ** 2)
            grads["w1"] = x.T @ dh
            grads["b1"] = dh.sum(0)
            step_lr = lr * (0.5 * (1 + np.cos(np.pi * step / steps)) * 0.9 + 0.1)
            for key in params:
                params[key] -= step_lr * grads[key]
            writer.add_scalar("train/loss", float(loss), step)
            writer.add_scalar("train/accuracy", float(np.mean((prob > 0.5) == y)), step)
            if step % 10 == 0 or step == steps - 1:
                _, val_prob = _forward(params, x_val)
                accuracy = float(np.mean((val_prob > 0.5) == y_val))
                writer.add_scalar("val/accuracy", accuracy, step)
                writer.add_scalar("val/loss", float(-np.mean(
                    y_val * np.log(val_prob + 1e-7) + (1 - y_val) * np.log(1 - val_prob + 1e-7))), step)
                writer.add_scalar("lr", step_lr, step)
                for key in ("w1", "w2"):
                    writer.add_histogram(f"weights/{key}", params[key], step)
                    writer.add_histogram(f"grads/{key}", grads[key], step)
            if step % 50 == 0 or step == steps - 1:
                writer.add_image("decision_boundary", _boundary_image(params, x_val, y_val), step, dataformats="HWC")
        writer.add_text("summary", f"Finished {steps} steps: validation accuracy **{accuracy:.3f}**.", steps - 1)
    return accuracy


def main(args):
    name = args.name or "demo_" + datetime.now().strftime("%Y%m%d-%H%M%S")
    logdir = os.path.join(args.logdir, name)
    start = time.perf_counter()
    accuracy = train(logdir, steps=args.steps, seed=args.seed)
    print(f"wrote {logdir} ({args.steps} steps, validation accuracy {accuracy:.3f}, "
          f"{time.perf_counter() - start:.1f} s)")
    print(f"view it with: tensorboard --logdir {args.logdir}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tbx.demo")
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
