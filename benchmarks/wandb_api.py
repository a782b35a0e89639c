"""tbx's W&B-style API against the real wandb SDK in offline mode, side by side.

    python benchmarks/wandb_api.py [--quick]

Workloads (each in a fresh temporary directory, tbx and wandb in this process):

* ``init+finish``: ``init(project=..., dir=..., config={...})`` then ``finish()``.
* ``log scalars``: 20,000 ``run.log({"loss": x, "acc": y})``; caller time of the
  loop, and the time of the loop plus ``finish()`` (everything on disk).
* ``log image``: 1,000 ``run.log({"img": Image(64x64x3 uint8)})``.
* ``watch``: a small CNN trained for N steps with ``watch(model, log="all",
  log_freq=100)`` and one ``log`` per step, against the same loop without
  watch; the overhead per logged (every 100th) step is compared.

Floors (issue 4): log >= 20x faster than wandb.log, init+finish >= 10x faster,
watch overhead per logged step <= half of wandb's.
"""

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_CONSOLE", "off")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tbx  # noqa: E402


def _wandb():
    import wandb

    return wandb


def time_init_finish(api, repeats):
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            gc.collect()
            start = time.perf_counter()
            run = api.init(project="bench", dir=tmp, config={"lr": 0.1, "layers": 3}, mode="offline")
            run.finish()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_log(api, n, make_row):
    with tempfile.TemporaryDirectory() as tmp:
        run = api.init(project="bench", dir=tmp, mode="offline")
        rows = [make_row(i) for i in range(min(n, 64))]
        gc.collect()
        start = time.perf_counter()
        for i in range(n):
            run.log(rows[i % len(rows)])
        caller = time.perf_counter() - start
        run.finish()
        total = time.perf_counter() - start
    return caller / n, total / n


def time_watch(api, steps, log_freq, reps=3):
    import torch
    from torch import nn

    torch.manual_seed(0)

    def model():
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(256, 10),
        )

    torch.set_num_threads(1)  # steadier timings on a small machine
    x = torch.randn(8, 3, 16, 16)
    y = torch.randint(0, 10, (8,))

    def loop(watch):
        with tempfile.TemporaryDirectory() as tmp:
            run = api.init(project="bench", dir=tmp, mode="offline")
            net = model()
            opt = torch.optim.SGD(net.parameters(), lr=0.01)
            if watch:
                run.watch(net, log="all", log_freq=log_freq)
            gc.collect()
            start = time.perf_counter()
            for step in range(steps):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(net(x), y)
                loss.backward()
                opt.step()
                run.log({"loss": loss.item()})
            elapsed = time.perf_counter() - start
            run.finish()
        return elapsed

    loop(False)  # warm up torch
    base, watched = [], []
    for _ in range(reps):  # alternate, so drifts of the machine hit both alike
        base.append(loop(False))
        watched.append(loop(True))
    base, watched = min(base), min(watched)
    logged_steps = steps // log_freq
    return max(watched - base, 0.0) / logged_steps, base, watched


def fmt(seconds):
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller workloads")
    args = parser.parse_args(argv)
    wandb = _wandb()
    n_log = 2_000 if args.quick else 20_000
    n_img = 100 if args.quick else 1_000
    steps = 200 if args.quick else 1_000
    print(f"python {sys.version.split()[0]} | wandb {wandb.__version__} (offline) | tbx {tbx.__version__} "
          f"| kernel {tbx.record.IMPLEMENTATION} | cpus {os.cpu_count()}")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    rows = []
    floors = []

    t_w = time_init_finish(wandb, 3)
    t_t = time_init_finish(tbx, 3)
    rows.append(("init+finish", fmt(t_w), fmt(t_t), t_w / t_t, "-", "-", "-"))
    floors.append(("init+finish", t_w / t_t, 10))

    scal = lambda i: {"loss": 1.0 / (i + 1), "acc": i * 1e-4}  # noqa: E731
    (cw, tw), (ct, tt) = time_log(wandb, n_log, scal), time_log(tbx, n_log, scal)
    rows.append((f"log 2 scalars x{n_log}", fmt(tw), fmt(tt), tw / tt, fmt(cw), fmt(ct), cw / ct))
    floors.append(("log scalars (caller)", cw / ct, 20))

    img = lambda api: (lambda i: {"img": api.Image(image)})  # noqa: E731
    (cw, tw), (ct, tt) = time_log(wandb, n_img, img(wandb)), time_log(tbx, n_img, img(tbx))
    rows.append((f"log Image x{n_img}", fmt(tw), fmt(tt), tw / tt, fmt(cw), fmt(ct), cw / ct))
    floors.append(("log Image (caller)", cw / ct, 20))

    # The setting (log_freq=100): overhead per training step. On a small
    # machine this is close to the timing noise, so the floor is checked on the
    # overhead per *logged* step, measured with every step logged (log_freq=1).
    ow, bw, ww = time_watch(wandb, steps, 100)
    ot, bt, wt = time_watch(tbx, steps, 100)
    per_step_w, per_step_t = ow * (steps // 100) / steps, ot * (steps // 100) / steps
    rows.append((f"watch log_freq=100: overhead / step ({steps} steps)", fmt(per_step_w), fmt(per_step_t),
                 per_step_w / per_step_t if per_step_t else float("inf"),
                 f"{fmt(bw)} -> {fmt(ww)}", f"{fmt(bt)} -> {fmt(wt)}", "-"))
    logged = max(steps // 10, 50)
    lw, bw1, ww1 = time_watch(wandb, logged, 1, reps=5)
    lt, bt1, wt1 = time_watch(tbx, logged, 1, reps=5)
    rows.append((f"watch log_freq=1: overhead / logged step ({logged} steps)", fmt(lw), fmt(lt),
                 lw / lt if lt else float("inf"), f"{fmt(bw1)} -> {fmt(ww1)}", f"{fmt(bt1)} -> {fmt(wt1)}", "-"))
    floors.append(("watch overhead per logged step", lw / lt if lt else float("inf"), 2))
    print("watch columns 5-6: the training loop without -> with watch (min of alternated runs); "
          "an overhead of 0 is below the timing noise")

    header = ("workload", "wandb total/op", "tbx total/op", "ratio", "wandb caller/op (watch: loop)",
              "tbx caller/op (watch: loop)", "ratio")
    widths = [max(len(str(r[i])) if not isinstance(r[i], float) else 8 for r in rows + [header]) for i in range(7)]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join((f"{c:.1f}x" if isinstance(c, float) else str(c)).ljust(w) for c, w in zip(r, widths)))
    print()
    for name, ratio, floor in floors:
        print(f"{'PASS' if ratio >= floor else 'MISS'}  {name}: {ratio:.1f}x faster than wandb (floor {floor}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
