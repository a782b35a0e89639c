"""tbx.SummaryWriter: torch's API, value conversion, and what lands in the event files.

Files are read back with TensorBoard's own loaders (both accumulators), with
an independent framing/CRC reader (writer_util) and with ``tbx.read_events``
/ ``tbx.read_scalars``; all must agree with what was logged.
See also test_writer_bad_input.py, test_summary_histogram.py, test_summary_image.py.
"""

import inspect
import math
import os
import re
import socket
import time
from datetime import datetime

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.tensorboard import SummaryWriter as TorchWriter

import tbx
from tbx import SummaryWriter
from writer_util import (
    acc_tensors, float32_equal, histogram_rows, image_samples, legacy_accumulator, png_pixels,
    plugin_accumulator, run_events, static_check, tbx_values_by_tag, values_by_tag,
)

WALL = 1_700_000_000.25
DBL_MAX = float(np.finfo(np.float64).max)

# --- 1. signatures ------------------------------------------------------------

SAME_AS_TORCH = [
    "__init__", "add_scalar", "add_scalars", "add_histogram_raw", "add_image", "add_text",
    "flush", "close", "get_logdir",
]


def _params(fn):
    """[(name, kind, default)] without ``self``; annotations are not compared."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()][1:]


@pytest.mark.parametrize("name", SAME_AS_TORCH)
def test_signature_matches_torch(name):
    assert _params(getattr(SummaryWriter, name)) == _params(getattr(TorchWriter, name))


def test_add_histogram_signature_differs_only_in_bins_default():
    ours, theirs = _params(SummaryWriter.add_histogram), _params(TorchWriter.add_histogram)
    assert [p[:2] for p in ours] == [p[:2] for p in theirs]
    ours_defaults, theirs_defaults = {p[0]: p[2] for p in ours}, {p[0]: p[2] for p in theirs}
    # Intentional: None means tbx's fast 64 equal-width buckets; torch defaults to 'tensorflow'.
    assert ours_defaults.pop("bins") is None
    assert theirs_defaults.pop("bins") == "tensorflow"
    assert ours_defaults == theirs_defaults


def test_add_images_adds_keyword_only_as_grid():
    ours = _params(SummaryWriter.add_images)
    assert ours[-1] == ("as_grid", inspect.Parameter.KEYWORD_ONLY, True)
    assert ours[:-1] == _params(TorchWriter.add_images)


# --- 2. default log_dir ----------------------------------------------------------

def test_default_logdir_like_torch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = datetime.now().replace(microsecond=0)
    with SummaryWriter(comment="_lr0.1") as writer:
        logdir = writer.get_logdir()
    after = datetime.now()
    host = re.escape(socket.gethostname())
    match = re.fullmatch(rf"runs/([A-Z][a-z]{{2}}\d{{2}}_\d{{2}}-\d{{2}}-\d{{2}})_{host}_lr0\.1", logdir)
    assert match, logdir
    stamp = datetime.strptime(match.group(1), "%b%d_%H-%M-%S").replace(year=before.year)
    assert before <= stamp <= after
    assert any("tfevents" in n for n in os.listdir(tmp_path / logdir))
    torch_writer = TorchWriter(comment="_lr0.1")
    try:
        theirs = torch_writer.get_logdir()
    finally:
        torch_writer.close()
    assert re.sub(r"^runs/[^_]+_\d\d-\d\d-\d\d_", "", logdir) == re.sub(r"^runs/[^_]+_\d\d-\d\d-\d\d_", "", theirs)


def test_explicit_logdir_ignores_comment(tmp_path):
    with SummaryWriter(tmp_path / "exp", comment="_ignored") as writer:
        assert writer.get_logdir() == os.fspath(tmp_path / "exp")
        assert writer.log_dir == writer.get_logdir()
    assert any("tfevents" in n for n in os.listdir(tmp_path / "exp"))


# --- 3. value types, read back by every reader -----------------------------------

SCALAR_INPUTS = [
    ("py_int", 3, 3.0),
    ("py_big_int", 2**70, float(2**70)),
    ("py_float", 0.1, 0.1),
    ("np_float32", np.float32(1.1), float(np.float32(1.1))),
    ("np_float16", np.float16(2.5), 2.5),
    ("np_int64", np.int64(-7), -7.0),
    ("np_uint8", np.uint8(200), 200.0),
    ("np_0d", np.array(4.25), 4.25),
    ("np_1elem", np.array([5.5]), 5.5),
    ("np_1x1", np.array([[6.5]], dtype=np.float32), 6.5),
    ("torch_float", torch.tensor(7.25), 7.25),
    ("torch_double", torch.tensor(0.3, dtype=torch.float64), 0.3),
    ("torch_int", torch.tensor(9), 9.0),
    ("torch_1elem", torch.tensor([10.5]), 10.5),
]


@pytest.mark.parametrize("new_style", [False, True], ids=["legacy", "new_style"])
def test_scalar_value_types_round_trip(tmp_path, new_style):
    with SummaryWriter(tmp_path) as writer:
        for step, (tag, value, _want) in enumerate(SCALAR_INPUTS):
            writer.add_scalar(tag, value, step, walltime=WALL + step, new_style=new_style)
    expected = {tag: (step, want) for step, (tag, _v, want) in enumerate(SCALAR_INPUTS)}
    legacy, plugin = legacy_accumulator(tmp_path), plugin_accumulator(tmp_path)
    frame = tbx.read_scalars(tmp_path, as_frame=False)
    ours = {t: (int(s), v) for t, s, v in zip(frame["tag"], frame["step"], frame["value"])}
    assert set(ours) == set(expected)
    for tag, (step, want) in expected.items():
        if new_style:
            legacy_points = [(s, float(v)) for s, v in acc_tensors(legacy, tag)]
        else:
            legacy_points = [(e.step, e.value) for e in legacy.Scalars(tag)]
        plugin_points = [(s, float(v)) for s, v in acc_tensors(plugin, tag)]
        for name, points in (("legacy", legacy_points), ("plugin", plugin_points), ("tbx", [ours[tag]])):
            assert len(points) == 1 and points[0][0] == step, (name, tag, points)
            assert float32_equal(points[0][1], want), (name, tag, points[0][1], want)
        assert [e.wall_time for e in plugin.Tensors(tag)] == [WALL + step]


def test_scalar_from_tensor_requiring_grad(tmp_path):
    """The everyday ``writer.add_scalar("loss", loss, step)`` with a loss that requires grad."""
    loss = (torch.tensor([1.5, 2.5], requires_grad=True) ** 2).mean()
    with SummaryWriter(tmp_path) as writer:
        writer.add_scalar("loss", loss, 0)
        writer.add_scalar("param", torch.nn.Parameter(torch.tensor(0.75)), 0)
    frame = tbx.read_scalars(tmp_path, as_frame=False)
    assert dict(zip(frame["tag"], frame["value"])) == {"loss": 4.25, "param": 0.75}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")
def test_cuda_scalar_values(tmp_path):
    """``add_scalar("loss", loss_on_gpu, step)``, the most common call in CUDA training loops."""
    gpu = torch.tensor([0.5, 1.25], device="cuda")
    with SummaryWriter(tmp_path) as writer:
        writer.add_scalar("elem", gpu[1], 0)
        writer.add_scalar("grad", (gpu.clone().requires_grad_() * 2).sum(), 0)
        writer.add_scalars("multi", {"a": gpu[0]}, 0)
    frame = tbx.read_scalars(tmp_path, as_frame=False)
    assert sorted(zip(frame["tag"], frame["value"])) == [("elem", 1.25), ("grad", 3.5), ("multi", 0.5)]


def test_histogram_from_torch_tensor_equals_numpy(tmp_path):
    values = np.random.default_rng(1).normal(size=(40, 25)).astype(np.float32)
    with SummaryWriter(tmp_path) as writer:
        writer.add_histogram("np", values, 0)
        writer.add_histogram("torch", torch.from_numpy(values.copy()), 0)
        writer.add_histogram("torch_grad", torch.from_numpy(values.copy()).requires_grad_(), 0)
        writer.add_histogram("list", values.ravel().tolist(), 0)
    np_rows = histogram_rows(tmp_path, "np")[0][1]
    assert np_rows.shape == (64, 3) and np_rows[:, 2].sum() == values.size
    for tag in ("torch", "torch_grad", "list"):
        assert np.array_equal(histogram_rows(tmp_path, tag)[0][1], np_rows), tag
    for acc in (legacy_accumulator(tmp_path), plugin_accumulator(tmp_path)):
        for tag in ("np", "torch"):
            [(step, rows)] = acc_tensors(acc, tag)
            assert step == 0 and np.array_equal(np.asarray(rows, dtype=np.float64), np_rows)
    ours = tbx_values_by_tag(tmp_path)[".", "torch"][0][2].tensor
    assert np.array_equal(np.frombuffer(ours.tensor_content, "<f8").reshape(-1, 3), np_rows)


def test_image_inputs_numpy_torch_pil(tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, size=(5, 7), dtype=np.uint8)
    with SummaryWriter(tmp_path) as writer:
        writer.add_image("np_chw", rgb.transpose(2, 0, 1), 0)
        writer.add_image("torch_chw", torch.from_numpy(rgb.transpose(2, 0, 1).copy()), 0)
        writer.add_image("torch_float", torch.from_numpy(rgb.transpose(2, 0, 1) / 255.0), 0)
        writer.add_image("pil_rgb", Image.fromarray(rgb), 0)  # dataformats ignored for PIL
        writer.add_image("pil_l", Image.fromarray(gray), 0)
    as_float = (rgb / 255.0).astype(np.float32) * 255  # torch's rule: float32(x) * 255, clipped, truncated
    want = {"np_chw": rgb, "torch_chw": rgb, "torch_float": as_float.clip(0, 255).astype(np.uint8), "pil_rgb": rgb, "pil_l": gray}
    legacy, plugin = legacy_accumulator(tmp_path), plugin_accumulator(tmp_path)
    ours = tbx_values_by_tag(tmp_path)
    for tag, pixels in want.items():
        [(step, size, pngs)] = image_samples(tmp_path, tag)
        assert (step, size, len(pngs)) == (0, (7, 5), 1), tag
        assert np.array_equal(png_pixels(pngs[0]), pixels), tag
        for acc in (legacy, plugin):
            [(_s, arr)] = acc_tensors(acc, tag)
            assert list(arr[:2]) == [b"7", b"5"] and arr[2] == pngs[0], tag
        assert list(ours[".", tag][0][2].tensor.string_val)[2:] == pngs, tag


# --- 4. static container check on a logdir touching every method ---------------------

def _write_everything(root):
    rng = np.random.default_rng(3)
    logged = {"hist": [], "img": [], "grid": [], "samples": []}
    with pytest.warns(RuntimeWarning, match="NaN/inf"), SummaryWriter(root) as writer:
        for step in range(4):
            values = rng.normal(size=500)
            values[:step] = np.nan  # a few non-finite values on later steps
            logged["hist"].append(values)
            writer.add_histogram("hist/default", values, step)
            writer.add_histogram("hist/tf", torch.from_numpy(values), step, bins="tensorflow")
            writer.add_histogram("hist/merged", values, step, bins=200, max_bins=16)
            writer.add_histogram_raw(
                "hist/raw", min=0.5, max=2.5, num=3, sum=4.5, sum_squares=8.75,
                bucket_limits=[-DBL_MAX, 0.0, 1.0, 2.0, 3.0, DBL_MAX], bucket_counts=[0, 0, 1, 1, 1, 0],
                global_step=step,
            )
            writer.add_scalar("scalar/legacy", step * 0.5, step)
            writer.add_scalar("scalar/new", step * 0.25, step, new_style=True)
            writer.add_scalars("multi", {"a": step, "b": -step}, step)
            img = rng.integers(0, 256, size=(3, 4, 6), dtype=np.uint8)
            logged["img"].append(img.transpose(1, 2, 0))
            writer.add_image("image/one", img, step)
            batch = rng.random(size=(3, 4, 6, 1))
            logged["grid"].append(batch)
            writer.add_images("image/grid", batch, step, dataformats="NHWC")
            writer.add_images("image/samples", batch, step, dataformats="NHWC", as_grid=False)
            writer.add_text("notes", f"**step** {step}", step)
        writer.flush()
    return logged


def test_static_container_check(tmp_path):
    logged = _write_everything(tmp_path)
    problems = static_check(tmp_path)
    assert problems == [], "\n".join(problems)
    runs = run_events(tmp_path)
    assert set(runs) == {".", "multi_a", "multi_b"}
    by_tag = values_by_tag(tmp_path)
    for step, values in enumerate(logged["hist"]):
        for tag in ("hist/default", "hist/tf", "hist/merged"):
            rows = histogram_rows(tmp_path, tag)[step][1]
            assert rows[:, 2].sum() == np.isfinite(values).sum(), (tag, step)
        raw = histogram_rows(tmp_path, "hist/raw")[step][1]
        assert raw.tolist() == [[0.5, 1.0, 1.0], [1.0, 2.0, 1.0], [2.0, 2.5, 1.0]]
        _s, size, one = image_samples(tmp_path, "image/one")[step]
        assert size == (6, 4) and np.array_equal(png_pixels(one[0]), logged["img"][step])
        scaled = (logged["grid"][step].astype(np.float32) * 255).clip(0, 255).astype(np.uint8)
        _s, gsize, grid = image_samples(tmp_path, "image/grid")[step]
        assert gsize == (18, 4) and len(grid) == 1
        assert np.array_equal(png_pixels(grid[0]), np.concatenate(list(scaled[..., 0]), axis=1))
        _s, ssize, samples = image_samples(tmp_path, "image/samples")[step]
        assert ssize == (6, 4) and [png_pixels(p).tolist() for p in samples] == [s[..., 0].tolist() for s in scaled]
    assert [v.simple_value for _s, _w, v in by_tag["multi_b", "multi"]] == [0.0, -1.0, -2.0, -3.0]
    assert [v.tensor.string_val[0] for _s, _w, v in by_tag[".", "notes/text_summary"]] == [
        f"**step** {s}".encode() for s in range(4)
    ]


def test_first_records_are_header_then_purge_start_even_for_async_summaries(tmp_path):
    """Histograms and images are encoded on a pool; they must still follow the header."""
    for attempt in range(5):
        logdir = tmp_path / str(attempt)
        with SummaryWriter(logdir, purge_step=3) as writer:
            writer.add_histogram("h", np.arange(10.0), 3)
            writer.add_image("i", np.zeros((1, 2, 2), dtype=np.uint8), 3)
            time.sleep(0.05)
            writer.add_scalar("s", 1.0, 3)
        [events] = run_events(logdir).values()
        kinds = [e.WhichOneof("what") for e in events]
        assert kinds[:2] == ["file_version", "session_log"], f"attempt {attempt}: record order {kinds}"
        starts = _session_starts(events)
        assert set(starts) == {(events[1].session_log.START, 3)}
        assert all(k == "summary" for k in kinds[1 + len(starts):]), kinds


# --- 7. text, add_scalars, purge_step, new_style, steps, special values -------------------

def test_add_text_tag_and_markdown_round_trip(tmp_path):
    text = "# Title\n\n* **bold** `code` ü ✓\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    with SummaryWriter(tmp_path) as writer:
        writer.add_text("notes", text, 5, walltime=WALL)
        writer.add_text("notes", "", 6, walltime=WALL)
    theirs_dir = tmp_path / "torch"
    with TorchWriter(theirs_dir) as torch_writer:
        torch_writer.add_text("notes", text, 5)
    assert {t for _r, t in values_by_tag(theirs_dir)} == {t for _r, t in values_by_tag(tmp_path)} == {"notes/text_summary"}
    for acc in (legacy_accumulator(tmp_path), plugin_accumulator(tmp_path)):
        got = [(s, arr.reshape(-1)[0].decode("utf-8")) for s, arr in acc_tensors(acc, "notes/text_summary")]
        assert got == [(5, text), (6, "")]
    [(_s, _w, first), _] = values_by_tag(tmp_path)[".", "notes/text_summary"]
    assert first.metadata.plugin_data.plugin_name == "text"


def test_add_text_tables(tmp_path):
    rows = [["model", "acc"], ["base", "0.91"], ["**big**", "0.95"]]
    with SummaryWriter(tmp_path) as writer:
        writer.add_text("results", rows, 1, walltime=WALL)
        writer.add_text("results", ["a", "b", "c"], 2, walltime=WALL)
        for bad, err in (([], ValueError), ([["a"], ["b", "c"]], ValueError), ([[1, 2]], TypeError), (3, TypeError)):
            with pytest.raises(err, match="text_string"):
                writer.add_text("results", bad, 3)
    got = [(s, arr.shape, arr.reshape(-1).tolist()) for s, arr in acc_tensors(plugin_accumulator(tmp_path), "results/text_summary")]
    flat = [c.encode() for row in rows for c in row]
    assert got == [(1, (3, 2), flat), (2, (3,), [b"a", b"b", b"c"])]


def test_add_scalars_run_directories_match_torch(tmp_path):
    values = {"train": 0.5, "val": np.float32(0.25), "test/x": torch.tensor(0.125)}
    with SummaryWriter(tmp_path / "tbx") as writer:
        writer.add_scalars("loss/total", values, 7, walltime=WALL)
        writer.add_scalars("loss/total", {"train": 0.75}, 8, walltime=WALL + 1)
    with TorchWriter(tmp_path / "torch") as torch_writer:
        torch_writer.add_scalars("loss/total", values, 7)
        torch_writer.add_scalars("loss/total", {"train": 0.75}, 8)
    ours, theirs = values_by_tag(tmp_path / "tbx"), values_by_tag(tmp_path / "torch")
    assert set(ours) == set(theirs) == {
        ("loss_total_train", "loss/total"), ("loss_total_val", "loss/total"), ("loss_total_test/x", "loss/total"),
    }
    for key in ours:
        assert [(s, v.simple_value) for s, _w, v in ours[key]] == [(s, v.simple_value) for s, _w, v in theirs[key]]
    assert [w for _s, w, _v in ours["loss_total_train", "loss/total"]] == [WALL, WALL + 1]
    assert set(run_events(tmp_path / "tbx")) == set(run_events(tmp_path / "torch"))


def _session_starts(events):
    """The SessionLog events right after the header, as (status, step)."""
    out = []
    for event in events[1:]:
        if event.WhichOneof("what") != "session_log":
            break
        out.append((event.session_log.status, event.step))
    return out


def test_purge_step_writes_session_log_start_after_header(tmp_path):
    with SummaryWriter(tmp_path, purge_step=2**40) as writer:
        writer.add_scalar("x", 1.0, 2**40 + 1)
    [events] = run_events(tmp_path).values()
    assert events[0].file_version == "brain.Event:2"
    starts = _session_starts(events)
    # tbx writes START twice on purpose: the Python loader ignores a run's first START.
    assert starts and set(starts) == {(events[1].session_log.START, 2**40)}
    assert [e.step for e in events[1 + len(starts):]] == [2**40 + 1]
    with SummaryWriter(tmp_path / "no_purge") as writer:
        writer.add_scalar("x", 1.0, 0)
    assert _session_starts(run_events(tmp_path / "no_purge")["."]) == []


def _next_second():
    time.sleep(1.02 - time.time() % 1)  # the next writer's file name then sorts later


def test_purge_step_hides_old_points_in_python_loader(tmp_path):
    with SummaryWriter(tmp_path, purge_step=0) as writer:
        for step in range(10):
            writer.add_scalar("s", float(step), step, walltime=WALL + step)
            writer.add_histogram("h", np.full(3, float(step)), step, walltime=WALL + step)
    _next_second()
    with SummaryWriter(tmp_path, purge_step=5) as writer:
        for step in range(5, 8):
            writer.add_scalar("s", 100.0 + step, step, walltime=WALL + 100 + step)
            writer.add_histogram("h", np.full(3, 100.0 + step), step, walltime=WALL + 100 + step)
    acc = plugin_accumulator(tmp_path)
    assert [(s, float(v)) for s, v in acc_tensors(acc, "s")] == [(s, float(s)) for s in range(5)] + [
        (s, 100.0 + s) for s in range(5, 8)
    ]
    hist = [(s, rows[0][0] + 0.5) for s, rows in acc_tensors(acc, "h")]  # constant input: [v-0.5, v+0.5]
    assert hist == [(s, float(s)) for s in range(5)] + [(s, 100.0 + s) for s in range(5, 8)], (
        "histograms (encoded on the pool) must survive the purge like scalars do")


def test_event_file_names_sort_in_creation_order(tmp_path):
    """Restarts in one run within one second must still give later-sorting names (FORMATS §1.1).

    The name ends in a per-process counter; ``...9`` then ``...10`` within one
    second sorts the newer file first unless the counter is zero-padded.
    """

    def counter(writer):
        return int(writer.file_writer.path.rsplit(".", 1)[1])

    def new_counter(directory):
        writer = SummaryWriter(directory)
        writer.close()
        return counter(writer)

    n = new_counter(tmp_path / "scratch")
    target = 10 ** len(str(n + 1)) - 1  # the next 9, 99, 999, ...
    if target - n > 3000:
        pytest.skip(f"file counter {n} is too far from {target}")
    while n < target - 1:
        n = new_counter(tmp_path / "scratch")
    paths = []
    for _ in range(2):  # counters target and target + 1, e.g. 99 and 100, in the same second
        writer = SummaryWriter(tmp_path / "run")
        paths.append(os.path.basename(writer.file_writer.path))
        writer.close()
    assert counter(writer) == target + 1
    assert sorted(paths) == paths


def test_new_style_scalars_form_and_values(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        for step in range(3):
            writer.add_scalar("loss", 1.0 / (step + 1), step, walltime=WALL, new_style=True)
    values = values_by_tag(tmp_path)[".", "loss"]
    assert values[0][2].metadata.plugin_data.plugin_name == "scalars"
    assert all(not v.HasField("metadata") for _s, _w, v in values[1:])  # metadata once per tag
    for step, _w, value in values:
        assert value.WhichOneof("value") == "tensor"
        assert value.tensor.dtype == 1 and not value.tensor.tensor_shape.dim
        assert float32_equal(value.tensor.float_val[0] if value.tensor.float_val
                             else np.frombuffer(value.tensor.tensor_content, "<f4")[0], 1.0 / (step + 1))
    assert static_check(tmp_path) == []


EXTREME_STEPS = [-(2**63), -(2**40), -1, 0, 1, 2**31, 2**40, 2**63 - 1]


@pytest.mark.parametrize("new_style", [False, True], ids=["legacy", "new_style"])
def test_extreme_steps_and_special_values_round_trip(tmp_path, new_style):
    specials = [math.nan, math.inf, -math.inf, -0.0, 3.4e38, 1e-45]
    with SummaryWriter(tmp_path) as writer:
        for step in EXTREME_STEPS:
            writer.add_scalar("steps", float(step % 97), np.int64(step), walltime=WALL, new_style=new_style)
        for step, value in enumerate(specials):
            writer.add_scalar("special", value, step, walltime=WALL, new_style=new_style)
    frame = tbx.read_scalars(tmp_path, as_frame=False)
    steps = frame["step"][frame["tag"] == "steps"].tolist()
    assert steps == EXTREME_STEPS
    got = frame["value"][frame["tag"] == "special"]
    assert all(float32_equal(g, w) for g, w in zip(got, specials)) and len(got) == len(specials)
    assert math.copysign(1.0, got[3]) == -1.0
    acc = plugin_accumulator(tmp_path)
    assert [s for s, _v in acc_tensors(acc, "steps")] == EXTREME_STEPS
    assert all(float32_equal(v, w) for (_s, v), w in zip(acc_tensors(acc, "special"), specials))
    if not new_style:
        legacy = legacy_accumulator(tmp_path)
        assert [e.step for e in legacy.Scalars("steps")] == EXTREME_STEPS
        assert all(float32_equal(e.value, w) for e, w in zip(legacy.Scalars("special"), specials))
