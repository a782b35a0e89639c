"""SummaryWriter media methods: signatures, add_figure, add_image_with_boxes, bad input for all
four methods (add_audio, add_video, add_figure, add_image_with_boxes), and stock TensorBoard
serving every media kind with both loaders.

Sound and video pixels are covered in test_summary_audio.py and test_summary_video.py.
"""

import inspect
import io
import math
import os
import subprocess
import sys
import urllib.parse
import wave

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from tensorboardX import SummaryWriter as XWriter  # noqa: E402
from torch.utils.tensorboard import SummaryWriter as TorchWriter  # noqa: E402
from torch.utils.tensorboard._utils import figure_to_image  # noqa: E402

from tbx import SummaryWriter  # noqa: E402
from tbx.summary import image as image_summary  # noqa: E402
from tbserver import TensorBoardServer  # noqa: E402
from writer_util import (  # noqa: E402
    image_samples, interleave_bad_calls, legacy_accumulator, png_pixels, static_check, values_by_tag,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RNG = np.random.default_rng(5)
RED = [255, 0, 0]


def _params(fn):
    """[(name, kind, default)] without ``self``; annotations are not compared."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()][1:]


# --- signatures -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["add_audio", "add_figure", "add_image_with_boxes"])
def test_signature_matches_torch(name):
    assert _params(getattr(SummaryWriter, name)) == _params(getattr(TorchWriter, name))


def test_add_video_is_torchs_plus_tensorboardx_dataformats():
    ours = _params(SummaryWriter.add_video)
    assert ours[:-1] == _params(TorchWriter.add_video)
    dataformats = ("dataformats", inspect.Parameter.POSITIONAL_OR_KEYWORD, "NTCHW")
    assert ours[-1] == _params(XWriter.add_video)[-1] == dataformats


# --- add_figure -------------------------------------------------------------------------

def _figure(seed, size=(2.0, 1.5), dpi=40, pyplot=True, transparent=False):
    rng = np.random.default_rng(seed)
    fig = plt.figure(figsize=size, dpi=dpi) if pyplot else Figure(figsize=size, dpi=dpi)
    ax = fig.add_subplot()
    ax.plot(rng.random(10), color="C%d" % (seed % 10))
    ax.set_title(f"figure {seed}")
    if transparent:
        fig.patch.set_alpha(0.0)
        ax.patch.set_alpha(0.0)
    return fig


def _torch_pixels(fig):
    return figure_to_image(fig, close=False).transpose(1, 2, 0)


def test_add_figure_pixels_equal_an_agg_render(tmp_path):
    fig = _figure(1)
    want = _torch_pixels(fig)
    canvas = fig.canvas
    with SummaryWriter(tmp_path) as writer:
        writer.add_figure("fig", fig, 3, close=False)
    assert plt.fignum_exists(fig.number) and fig.canvas is canvas  # still open, own canvas back
    [(step, (width, height), [png])] = image_samples(tmp_path, "fig")
    assert step == 3 and (width, height) == (80, 60)
    assert np.array_equal(png_pixels(png), want)
    plt.close(fig)
    assert static_check(tmp_path, header_first=False) == []


def test_add_figure_matches_torch(tmp_path):
    figs = [_figure(2), _figure(3)]
    wants = [_torch_pixels(f) for f in figs]
    with SummaryWriter(tmp_path / "tbx") as writer:
        writer.add_figure("one", figs[0], 0, close=False)
        writer.add_figure("two", figs, 0, close=False)
    with TorchWriter(tmp_path / "torch") as torch_writer:
        torch_writer.add_figure("one", figs[0], 0, close=False)
        torch_writer.add_figure("two", figs, 0)
    theirs = legacy_accumulator(tmp_path / "torch")
    for tag, want in (("one", wants[0]), ("two", image_summary.make_grid(wants))):
        [(_s, _size, [ours])] = image_samples(tmp_path / "tbx", tag)
        assert np.array_equal(png_pixels(ours), want), tag
        torch_png = theirs.Images(tag)[0].encoded_image_string
        assert np.array_equal(png_pixels(ours), np.asarray(Image.open(io.BytesIO(torch_png)).convert("RGB"))), tag


def test_add_figure_close(tmp_path):
    figs = [_figure(4), _figure(5)]
    single = _figure(6)
    with SummaryWriter(tmp_path) as writer:
        writer.add_figure("list", figs, 0)
        writer.add_figure("single", single, 0)
        writer.add_figure("tuple", tuple([_figure(7)]), 0, close=True)
    assert not any(plt.fignum_exists(f.number) for f in [*figs, single])
    assert {tag for _run, tag in values_by_tag(tmp_path)} == {"list", "single", "tuple"}


def test_add_figure_list_is_a_grid_of_eight_per_row(tmp_path):
    figs = [_figure(i, size=(1.0, 1.0), dpi=20, pyplot=False) for i in range(10)]
    wants = [np.asarray(figure_to_image(f, close=False)).transpose(1, 2, 0) for f in figs]
    with SummaryWriter(tmp_path) as writer:
        writer.add_figure("grid", figs, 0)
    [(_s, (width, height), [png])] = image_samples(tmp_path, "grid")
    assert (width, height) == (8 * 20, 2 * 20)
    assert np.array_equal(png_pixels(png), image_summary.make_grid(wants))


def test_add_figure_without_pyplot_and_transparent(tmp_path):
    fig = _figure(8, pyplot=False, transparent=True)
    with SummaryWriter(tmp_path) as writer:
        writer.add_figure("transparent", fig, 0)
        writer.add_figure("opaque", _figure(9, pyplot=False), 0)
    [(_s, _size, [png])] = image_samples(tmp_path, "transparent")
    rgba = png_pixels(png)
    assert rgba.shape == (60, 80, 4) and rgba[..., 3].min() == 0 and rgba[..., 3].max() == 255
    [(_s, _size, [png])] = image_samples(tmp_path, "opaque")
    assert png_pixels(png).shape == (60, 80, 3)


def test_add_figure_renders_at_the_call(tmp_path):
    """The figure is drawn before add_figure returns: later changes do not reach the file."""
    fig = _figure(10)
    want = _torch_pixels(fig)
    with SummaryWriter(tmp_path) as writer:
        for step in range(5):
            writer.add_figure("fig", fig, step, close=False)
            fig.axes[0].plot([0, 9], [0, 1], color="k", linewidth=5)
            fig.patch.set_facecolor("yellow")
    plt.close(fig)
    got = image_samples(tmp_path, "fig")
    assert not np.array_equal(png_pixels(got[1][2][0]), want)
    assert np.array_equal(png_pixels(got[0][2][0]), want)


def test_add_figure_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with SummaryWriter(tmp_path) as writer:
        with pytest.raises(ImportError, match="add_figure needs matplotlib"):
            writer.add_figure("fig", object(), 0)


def test_media_imports_stay_lazy():
    """`import tbx` and add_audio load neither Pillow nor matplotlib; add_video needs Pillow only."""
    code = (
        "import sys, tempfile, numpy as np, tbx\n"
        "w = tbx.SummaryWriter(tempfile.mkdtemp())\n"
        "w.add_audio('a', np.zeros(10), 0); w.flush()\n"
        "print(sorted(m for m in ('PIL', 'matplotlib') if m in sys.modules))\n"
        "w.add_video('v', np.zeros((1, 2, 3, 4, 4)), 0); w.close()\n"
        "print(sorted(m for m in ('PIL', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "['PIL']"]


# --- add_image_with_boxes ---------------------------------------------------------------------

H, W = 40, 50
GRAY = 100


def _canvas(channels=3, value=GRAY):
    return np.full((channels, H, W), value, dtype=np.uint8)


def _boxed(x0, y0, x1, y1, channels=3, background=None):
    """The expected HWC picture: a 2-pixel red outline drawn inside the box's bounds."""
    if background is None:
        background = np.full((H, W, max(channels, 3)), GRAY, dtype=np.uint8)
    want = background.copy()
    outline = np.zeros((H, W), bool)
    outline[max(y0, 0):y1 + 1, max(x0, 0):x1 + 1] = True
    outline[max(y0 + 2, 0):max(y1 - 1, 0), max(x0 + 2, 0):max(x1 - 1, 0)] = False
    want[outline, :3] = RED
    if channels == 4:
        want[outline, 3] = 255
    return want


def _drawn(logdir, tag):
    [(_s, (width, height), [png])] = image_samples(logdir, tag)
    pixels = png_pixels(png)
    assert pixels.shape[:2] == (height, width)
    return pixels


def test_boxes_are_red_outlines_in_pixel_coordinates(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_image_with_boxes("one", _canvas(), np.array([[5, 8, 30, 25]]), 0)
        writer.add_image_with_boxes("float_coords", _canvas(), np.array([[5.2, 7.6, 29.5, 24.7]]), 0)
        writer.add_image_with_boxes("reversed", _canvas(), np.array([[30, 25, 5, 8]]), 0)
        writer.add_image_with_boxes("torch", torch.from_numpy(_canvas()), torch.tensor([[5, 8, 30, 25]]), 0)
        writer.add_image_with_boxes("hwc", _canvas().transpose(1, 2, 0), [[5, 8, 30, 25]], 0, dataformats="HWC")
        writer.add_image_with_boxes("outside", _canvas(), np.array([[-10, -1e12, 20, 1e12]]), 0)
        writer.add_image_with_boxes("two", _canvas(), np.array([[0, 0, 10, 10], [20, 20, 49, 39]]), 0)
    for tag in ("one", "float_coords", "reversed", "torch", "hwc"):
        assert np.array_equal(_drawn(tmp_path, tag), _boxed(5, 8, 30, 25)), tag
    assert np.array_equal(_drawn(tmp_path, "outside"), _boxed(-10, -5, 20, H + 4))
    want = np.where(_boxed(20, 20, 49, 39) == GRAY, _boxed(0, 0, 10, 10), _boxed(20, 20, 49, 39))
    assert np.array_equal(_drawn(tmp_path, "two"), want)
    assert static_check(tmp_path, header_first=False) == []


def test_boxes_on_gray_rgba_and_float_images(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_image_with_boxes("gray", _canvas(1), np.array([[5, 8, 30, 25]]), 0)
        writer.add_image_with_boxes("hw", _canvas(1)[0], np.array([[5, 8, 30, 25]]), 0, dataformats="HW")
        writer.add_image_with_boxes("rgba", _canvas(4, 100), np.array([[5, 8, 30, 25]]), 0)
        writer.add_image_with_boxes("float", np.full((3, H, W), GRAY / 255.0), np.array([[5, 8, 30, 25]]), 0)
        writer.add_image_with_boxes("none", _canvas(), np.zeros((0, 4)), 0, labels=[])
    for tag in ("gray", "hw", "float"):
        assert np.array_equal(_drawn(tmp_path, tag), _boxed(5, 8, 30, 25)), tag
    assert np.array_equal(_drawn(tmp_path, "rgba"), _boxed(5, 8, 30, 25, channels=4))
    assert np.array_equal(_drawn(tmp_path, "none"), _canvas().transpose(1, 2, 0))


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA"])
def test_boxes_on_a_pil_image(tmp_path, mode):
    image = Image.fromarray(_canvas().transpose(1, 2, 0)).convert(mode)
    with SummaryWriter(tmp_path) as writer:
        writer.add_image_with_boxes("pil", image, np.array([[5, 8, 30, 25]]), 0)
    background = np.asarray(image.convert("RGBA" if mode == "RGBA" else "RGB"))
    want = _boxed(5, 8, 30, 25, channels=background.shape[-1], background=background)
    assert np.array_equal(_drawn(tmp_path, "pil"), want)


def test_labels(tmp_path):
    boxes = np.array([[5, 20, 30, 35], [32, 0, 45, 12]])
    with SummaryWriter(tmp_path) as writer:
        writer.add_image_with_boxes("plain", _canvas(), boxes, 0)
        writer.add_image_with_boxes("labels", _canvas(), boxes, 0, labels=["cat", "dög 日本"])
        writer.add_image_with_boxes("one_str", _canvas(), boxes[:1], 0, labels="cat")
        writer.add_image_with_boxes("empty_label", _canvas(), boxes, 0, labels=["", ""])
    plain, labelled = _drawn(tmp_path, "plain"), _drawn(tmp_path, "labels")
    assert np.array_equal(_drawn(tmp_path, "empty_label"), plain)
    changed = np.argwhere((plain != labelled).any(axis=-1))
    # box 0: a band above its top-left corner; box 1 (at the top edge): inside the box
    above = changed[changed[:, 1] < 32]
    assert len(above) and above[:, 0].max() < 20 and above[:, 1].min() >= 5
    inside = changed[changed[:, 1] >= 32]
    assert len(inside) and inside[:, 0].min() >= 0 and inside[:, 0].max() <= 20
    assert ((labelled == 255).all(axis=-1)).any()  # white text
    one = _drawn(tmp_path, "one_str")
    assert np.array_equal(one[20:], _boxed(5, 20, 30, 35)[20:]) and not np.array_equal(one, _boxed(5, 20, 30, 35))


@pytest.mark.parametrize("rescale,size", [(2, (80, 100)), (0.5, (20, 25)), (1.3, (52, 65))])
def test_rescale_resizes_image_and_boxes(tmp_path, rescale, size):
    image = RNG.integers(0, 256, size=(3, H, W), dtype=np.uint8)
    boxes = np.array([[5, 8, 30, 25]])
    with SummaryWriter(tmp_path / "tbx") as writer:
        writer.add_image_with_boxes("b", image, boxes, 0)
        writer.add_image_with_boxes("scaled", image, boxes, 0, rescale=rescale)
    with TorchWriter(tmp_path / "torch") as torch_writer:
        torch_writer.add_image_with_boxes("scaled", image, boxes, 0, rescale=rescale)
    drawn = _drawn(tmp_path / "tbx", "b")
    want = np.asarray(Image.fromarray(drawn).resize(size[::-1], Image.Resampling.LANCZOS))
    assert np.array_equal(_drawn(tmp_path / "tbx", "scaled"), want)
    theirs = legacy_accumulator(tmp_path / "torch").Images("scaled")[0].encoded_image_string
    assert png_pixels(theirs).shape[:2] == size


def test_boxes_snapshot(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        for step in range(20):
            image, boxes, labels = _canvas(), np.array([[5, 8, 30, 25]]), ["a"]
            writer.add_image_with_boxes("b", image, boxes, step, labels=labels)
            image[:] = 0
            boxes[:] = 0
            labels[0] = "changed later"
    got = image_samples(tmp_path, "b")
    assert [s for s, _size, _p in got] == list(range(20))
    assert len({png for _s, _size, [png] in got}) == 1
    first = png_pixels(got[0][2][0])
    assert np.array_equal(first[20:], _boxed(5, 8, 30, 25)[20:])


# --- bad input: each a clear error at the call, and nothing already logged is lost ----------------

SND = np.zeros(8)
VID = np.zeros((1, 2, 3, 4, 4), np.uint8)
IMG = np.zeros((3, 6, 7), np.uint8)
BOX = np.array([[1, 1, 4, 4]])
SMALL_FIG_SIZE = (0.5, 0.5)


def _small_figure(size=SMALL_FIG_SIZE, shade=0.5):
    """A tiny figure without axes (quick to draw): a gray face."""
    return Figure(figsize=size, dpi=20, facecolor=(shade, shade, shade))


BAD_CALLS = [
    # add_audio
    ("snd_none", lambda w: w.add_audio("bad", None), TypeError, r"snd_tensor"),
    ("snd_strings", lambda w: w.add_audio("bad", ["a", "b"]), TypeError, r"snd_tensor"),
    ("snd_int32", lambda w: w.add_audio("bad", np.zeros(4, np.int32)), TypeError, r"snd_tensor.*int32"),
    ("snd_bool", lambda w: w.add_audio("bad", np.zeros(4, bool)), TypeError, r"snd_tensor.*bool"),
    ("snd_complex", lambda w: w.add_audio("bad", np.zeros(4, complex)), TypeError, r"snd_tensor.*complex"),
    ("snd_torch_int", lambda w: w.add_audio("bad", torch.zeros(4, dtype=torch.int64)), TypeError, r"snd_tensor"),
    ("snd_empty", lambda w: w.add_audio("bad", np.zeros(0)), ValueError, r"snd_tensor.*empty"),
    ("snd_empty_2d", lambda w: w.add_audio("bad", np.zeros((2, 0))), ValueError, r"snd_tensor.*empty"),
    ("snd_scalar", lambda w: w.add_audio("bad", np.float64(0.5)), ValueError, r"snd_tensor.*single number"),
    ("snd_3d", lambda w: w.add_audio("bad", np.zeros((2, 3, 4))), ValueError, r"snd_tensor.*shape \(2, 3, 4\)"),
    ("snd_too_loud", lambda w: w.add_audio("bad", np.array([0.0, 1.5])), ValueError, r"snd_tensor.*\[-1, 1\]"),
    ("snd_too_quiet", lambda w: w.add_audio("bad", torch.tensor([-1.01, 0.0])), ValueError, r"snd_tensor.*\[-1, 1\]"),
    ("snd_nan", lambda w: w.add_audio("bad", np.array([0.0, np.nan])), ValueError, r"snd_tensor.*NaN"),
    ("snd_nan_torch", lambda w: w.add_audio("bad", torch.tensor([[math.nan, 0.1]])), ValueError, r"snd_tensor.*NaN"),
    ("snd_inf", lambda w: w.add_audio("bad", np.array([0.0, -np.inf])), ValueError, r"snd_tensor.*inf"),
    ("rate_0", lambda w: w.add_audio("bad", SND, sample_rate=0), ValueError, r"sample_rate"),
    ("rate_negative", lambda w: w.add_audio("bad", SND, sample_rate=-8000), ValueError, r"sample_rate"),
    ("rate_nan", lambda w: w.add_audio("bad", SND, sample_rate=math.nan), ValueError, r"sample_rate"),
    ("rate_inf", lambda w: w.add_audio("bad", SND, sample_rate=math.inf), ValueError, r"sample_rate"),
    ("rate_tiny", lambda w: w.add_audio("bad", SND, sample_rate=0.2), ValueError, r"sample_rate"),
    ("rate_bool", lambda w: w.add_audio("bad", SND, sample_rate=True), TypeError, r"sample_rate"),
    ("rate_str", lambda w: w.add_audio("bad", SND, sample_rate="44100"), TypeError, r"sample_rate"),
    ("rate_none", lambda w: w.add_audio("bad", SND, sample_rate=None), TypeError, r"sample_rate"),
    ("audio_tag", lambda w: w.add_audio(None, SND), TypeError, r"tag must be a str"),
    ("audio_step", lambda w: w.add_audio("bad", SND, 1.5), TypeError, r"global_step"),
    ("audio_walltime", lambda w: w.add_audio("bad", SND, 0, walltime=math.nan), ValueError, r"walltime"),
    # add_video
    ("vid_none", lambda w: w.add_video("bad", None), TypeError, r"vid_tensor"),
    ("vid_4d", lambda w: w.add_video("bad", VID[0]), ValueError, r"vid_tensor has 4 dimensions"),
    ("vid_6d", lambda w: w.add_video("bad", VID[None]), ValueError, r"vid_tensor has 6 dimensions"),
    ("vid_empty", lambda w: w.add_video("bad", VID[:, :0]), ValueError, r"vid_tensor.*empty"),
    ("vid_int64", lambda w: w.add_video("bad", VID.astype(np.int64)), TypeError, r"vid_tensor.*int64"),
    ("vid_complex", lambda w: w.add_video("bad", VID.astype(complex)), TypeError, r"vid_tensor.*complex"),
    ("vid_2_channels", lambda w: w.add_video("bad", VID[:, :, :2]), ValueError, r"vid_tensor.*2 channels"),
    ("vid_5_channels", lambda w: w.add_video("bad", np.zeros((1, 2, 5, 4, 4))), ValueError, r"vid_tensor.*5 channels"),
    ("vid_nan", lambda w: w.add_video("bad", np.full((1, 1, 1, 2, 2), np.nan)), ValueError, r"vid_tensor.*NaN"),
    ("vid_inf_torch", lambda w: w.add_video("bad", torch.full((1, 1, 3, 2, 2), math.inf)), ValueError,
     r"vid_tensor.*infinite"),
    ("fps_0", lambda w: w.add_video("bad", VID, fps=0), ValueError, r"fps"),
    ("fps_negative", lambda w: w.add_video("bad", VID, fps=-4), ValueError, r"fps"),
    ("fps_nan", lambda w: w.add_video("bad", VID, fps=math.nan), ValueError, r"fps"),
    ("fps_inf", lambda w: w.add_video("bad", VID, fps=math.inf), ValueError, r"fps"),
    ("fps_bool", lambda w: w.add_video("bad", VID, fps=True), TypeError, r"fps"),
    ("fps_str", lambda w: w.add_video("bad", VID, fps="4"), TypeError, r"fps"),
    ("fps_none", lambda w: w.add_video("bad", VID, fps=None), TypeError, r"fps"),
    ("vid_fmt_short", lambda w: w.add_video("bad", VID, dataformats="NTCH"), ValueError, r"dataformats 'NTCH'"),
    ("vid_fmt_repeat", lambda w: w.add_video("bad", VID, dataformats="NTCHH"), ValueError, r"dataformats"),
    ("vid_fmt_unknown", lambda w: w.add_video("bad", VID, dataformats="ABCDE"), ValueError, r"dataformats"),
    ("vid_fmt_none", lambda w: w.add_video("bad", VID, dataformats=None), TypeError, r"dataformats"),
    ("video_tag", lambda w: w.add_video(3, VID), TypeError, r"tag must be a str"),
    ("video_step", lambda w: w.add_video("bad", VID, "1"), TypeError, r"global_step"),
    ("video_walltime", lambda w: w.add_video("bad", VID, 0, walltime=math.inf), ValueError, r"walltime"),
    # add_figure
    ("fig_none", lambda w: w.add_figure("bad", None), TypeError, r"figure must be a matplotlib.figure.Figure"),
    ("fig_array", lambda w: w.add_figure("bad", IMG), TypeError, r"figure must be a matplotlib.figure.Figure"),
    ("fig_axes", lambda w: w.add_figure("bad", _small_figure().add_subplot()), TypeError, r"figure.*Axes"),
    ("fig_empty_list", lambda w: w.add_figure("bad", []), ValueError, r"figure is an empty list"),
    ("fig_list_item", lambda w: w.add_figure("bad", [_small_figure(), "x"]), TypeError, r"figure\[1\]"),
    ("fig_sizes_differ", lambda w: w.add_figure("bad", [_small_figure(), _small_figure((1, 1))]), ValueError,
     r"figure\[1\] renders to 20x20 pixels but figure\[0\] to 10x10"),
    ("figure_tag", lambda w: w.add_figure(None, _small_figure()), TypeError, r"tag must be a str"),
    ("figure_step", lambda w: w.add_figure("bad", _small_figure(), 2.5), TypeError, r"global_step"),
    ("figure_walltime", lambda w: w.add_figure("bad", _small_figure(), 0, walltime=math.nan), ValueError, r"walltime"),
    # add_image_with_boxes
    ("box_1d", lambda w: w.add_image_with_boxes("bad", IMG, np.array([1, 1, 4, 4])), ValueError,
     r"box_tensor has shape \(4,\); expected \[N, 4\]"),
    ("box_5_columns", lambda w: w.add_image_with_boxes("bad", IMG, np.zeros((2, 5))), ValueError,
     r"box_tensor.*\[N, 4\]"),
    ("box_3d", lambda w: w.add_image_with_boxes("bad", IMG, np.zeros((1, 1, 4))), ValueError, r"box_tensor.*\[N, 4\]"),
    ("box_empty_list", lambda w: w.add_image_with_boxes("bad", IMG, []), (TypeError, ValueError), r"box_tensor"),
    ("box_bool", lambda w: w.add_image_with_boxes("bad", IMG, np.ones((1, 4), bool)), TypeError, r"box_tensor.*bool"),
    ("box_none", lambda w: w.add_image_with_boxes("bad", IMG, None), TypeError, r"box_tensor"),
    ("box_strings", lambda w: w.add_image_with_boxes("bad", IMG, [["a", "b", "c", "d"]]), TypeError, r"box_tensor"),
    ("box_nan", lambda w: w.add_image_with_boxes("bad", IMG, np.array([[0, 0, 1, 1], [0, np.nan, 1, 1]])),
     ValueError, r"box_tensor row 1.*finite"),
    ("box_inf_torch", lambda w: w.add_image_with_boxes("bad", IMG, torch.tensor([[0.0, 0.0, math.inf, 1.0]])),
     ValueError, r"box_tensor row 0"),
    ("labels_too_few", lambda w: w.add_image_with_boxes("bad", IMG, np.zeros((2, 4)), labels=["a"]), ValueError,
     r"labels has 1 entries but box_tensor has 2 boxes"),
    ("labels_too_many", lambda w: w.add_image_with_boxes("bad", IMG, BOX, labels=["a", "b"]), ValueError, r"labels"),
    ("labels_str_for_two", lambda w: w.add_image_with_boxes("bad", IMG, np.zeros((2, 4)), labels="a"), ValueError,
     r"labels"),
    ("labels_int_item", lambda w: w.add_image_with_boxes("bad", IMG, BOX, labels=[1]), TypeError, r"labels\[0\]"),
    ("labels_int", lambda w: w.add_image_with_boxes("bad", IMG, BOX, labels=5), TypeError, r"labels"),
    ("rescale_0", lambda w: w.add_image_with_boxes("bad", IMG, BOX, rescale=0), ValueError, r"rescale"),
    ("rescale_negative", lambda w: w.add_image_with_boxes("bad", IMG, BOX, rescale=-2), ValueError, r"rescale"),
    ("rescale_nan", lambda w: w.add_image_with_boxes("bad", IMG, BOX, rescale=math.nan), ValueError, r"rescale"),
    ("rescale_to_nothing", lambda w: w.add_image_with_boxes("bad", IMG, BOX, rescale=0.1), ValueError,
     r"rescale 0.1 shrinks the 6x7 image to 0x0"),
    ("rescale_str", lambda w: w.add_image_with_boxes("bad", IMG, BOX, rescale="2"), TypeError, r"rescale"),
    ("rescale_bool", lambda w: w.add_image_with_boxes("bad", IMG, BOX, rescale=True), TypeError, r"rescale"),
    ("boxes_fmt_batch", lambda w: w.add_image_with_boxes("bad", IMG[None], BOX, dataformats="NCHW"), ValueError,
     r"dataformats 'NCHW'"),
    ("boxes_fmt_unknown", lambda w: w.add_image_with_boxes("bad", IMG, BOX, dataformats="XYZ"), ValueError,
     r"dataformats 'XYZ'"),
    ("boxes_fmt_none", lambda w: w.add_image_with_boxes("bad", IMG, BOX, dataformats=None), TypeError, r"dataformats"),
    ("boxes_img_ndim", lambda w: w.add_image_with_boxes("bad", IMG[0], BOX), ValueError, r"img_tensor.*dimensions"),
    ("boxes_img_empty", lambda w: w.add_image_with_boxes("bad", IMG[:, :0], BOX), ValueError, r"img_tensor.*empty"),
    ("boxes_img_2_channels", lambda w: w.add_image_with_boxes("bad", IMG[:2], BOX), ValueError,
     r"img_tensor.*2 channels"),
    ("boxes_img_int64", lambda w: w.add_image_with_boxes("bad", IMG.astype(np.int64), BOX), TypeError,
     r"img_tensor.*int64"),
    ("boxes_img_nan", lambda w: w.add_image_with_boxes("bad", np.full((3, 2, 2), np.nan), BOX), ValueError,
     r"img_tensor.*NaN"),
    ("boxes_img_none", lambda w: w.add_image_with_boxes("bad", None, BOX), TypeError, r"img_tensor"),
    ("boxes_tag", lambda w: w.add_image_with_boxes(b"t", IMG, BOX), TypeError, r"tag must be a str"),
    ("boxes_step", lambda w: w.add_image_with_boxes("bad", IMG, BOX, True), TypeError, r"global_step"),
    ("boxes_walltime", lambda w: w.add_image_with_boxes("bad", IMG, BOX, 0, walltime="now"), TypeError, r"walltime"),
]


def _good(writer, step):
    writer.add_scalar("good/scalar", float(step), step)
    writer.add_image("good/image", IMG + step, step)
    writer.add_audio("good/audio", SND + step / 100, step, sample_rate=100)
    writer.add_video("good/video", VID + step, step)
    writer.add_figure("good/figure", _small_figure(shade=step / 255), step)
    writer.add_image_with_boxes("good/boxes", IMG + step, BOX, step, labels=["x"])


def _check_good(logdir, steps):
    tags = values_by_tag(logdir)
    bad = [key for key in tags if "bad" in key[1]]
    assert bad == [], f"the failed call wrote {bad}"
    assert set(tags) == {(".", "good/" + kind) for kind in ("scalar", "image", "audio", "video", "figure", "boxes")}
    assert [(s, v.simple_value) for s, _w, v in tags[".", "good/scalar"]] == [(s, float(s)) for s in steps]
    for kind in ("image", "figure", "boxes"):
        got = image_samples(logdir, "good/" + kind)
        assert [s for s, _size, _p in got] == steps, kind
        assert all(png_pixels(p).shape[:2] == (size[1], size[0]) for _s, size, [p] in got), kind
    for kind in ("image", "figure"):
        assert [png_pixels(p)[0, 0, 0] for _s, _size, [p] in image_samples(logdir, "good/" + kind)] == steps, kind
    audio = tags[".", "good/audio"]
    assert [s for s, _w, _v in audio] == steps
    for step, _wall, value in audio:
        with wave.open(io.BytesIO(value.tensor.string_val[0])) as wav:
            assert wav.getframerate() == 100
            assert np.frombuffer(wav.readframes(8), "<i2").tolist() == [round(step / 100 * 32767)] * 8
    video = tags[".", "good/video"]
    assert [s for s, _w, _v in video] == steps
    for step, _wall, value in video:
        gif = Image.open(io.BytesIO(value.tensor.string_val[2]))
        assert gif.format == "GIF" and np.asarray(gif.convert("RGB"))[0, 0, 0] == step
    for tag in {t for _r, t in tags} - {"good/scalar"}:  # the legacy scalar form needs none
        assert tags[".", tag][0][2].HasField("metadata"), tag


@pytest.mark.parametrize("call,exc,match", [pytest.param(c, e, m, id=i) for i, c, e, m in BAD_CALLS])
def test_bad_input_raises_clear_error_and_loses_nothing(tmp_path, call, exc, match):
    writer = SummaryWriter(tmp_path)
    try:
        _good(writer, 0)
        with pytest.raises(exc, match=match):
            call(writer)
        _good(writer, 1)
    finally:
        writer.close()
    _check_good(tmp_path, [0, 1])


def test_every_bad_call_on_one_writer(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        steps = interleave_bad_calls(writer, BAD_CALLS, _good)
    _check_good(tmp_path, steps)


def test_failed_call_does_not_use_up_the_tags_metadata(tmp_path):
    """A tag's first record carries its metadata even when an earlier call on that tag failed."""
    with SummaryWriter(tmp_path) as writer:
        for call, good in (
            (lambda: writer.add_audio("a", np.array([2.0])), lambda: writer.add_audio("a", SND)),
            (lambda: writer.add_video("v", VID, fps=0), lambda: writer.add_video("v", VID)),
            (lambda: writer.add_figure("f", []), lambda: writer.add_figure("f", _small_figure())),
            (lambda: writer.add_image_with_boxes("b", IMG, BOX, labels=[]),
             lambda: writer.add_image_with_boxes("b", IMG, BOX)),
        ):
            with pytest.raises((TypeError, ValueError)):
                call()
            good()
    tags = values_by_tag(tmp_path)
    assert {t: tags[".", t][0][2].metadata.plugin_data.plugin_name for _r, t in tags} == {
        "a": "audio", "v": "images", "f": "images", "b": "images"}


# --- stock TensorBoard, both loaders ------------------------------------------------------------

@pytest.mark.parametrize("load_fast", ["false", "true"])
def test_tensorboard_serves_media(tmp_path, load_fast):
    snd = RNG.uniform(-1, 1, size=(2, 400))
    video = np.zeros((2, 3, 3, 6, 8), np.uint8)
    for t in range(3):
        video[:, t, t % 3] = 255  # red, green, blue frames
    with SummaryWriter(tmp_path) as writer:
        for step in range(3):
            writer.add_audio("sound", snd * (step + 1) / 3, step, sample_rate=8000)
        writer.add_video("clip", video, 0, fps=5)
        writer.add_figure("plot", _figure(11, pyplot=False), 0)
        writer.add_image_with_boxes("det", _canvas(), BOX, 0, labels=["x"])
    written = values_by_tag(tmp_path)
    with TensorBoardServer(tmp_path, load_fast) as tb:
        assert tb.get_json("/data/plugin/audio/tags")["."]["sound"]["samples"] == 1
        entries = tb.get_json("/data/plugin/audio/audio", run=".", tag="sound", sample=0)
        assert [e["step"] for e in entries] == [0, 1, 2]
        for entry, (_s, _w, value) in zip(entries, written[".", "sound"]):
            assert entry["contentType"] == "audio/wav"
            query = dict(urllib.parse.parse_qsl(entry["query"]))
            body, ctype = tb.get_bytes("/data/plugin/audio/individualAudio", **query)
            assert body == value.tensor.string_val[0] and ctype.startswith("audio/wav")
        image_tags = tb.get_json("/data/plugin/images/tags")["."]
        assert {t: info["samples"] for t, info in image_tags.items()} == {"clip": 1, "plot": 1, "det": 1}
        for tag, mime in (("clip", "image/gif"), ("plot", "image/png"), ("det", "image/png")):
            [entry] = tb.get_json("/data/plugin/images/images", run=".", tag=tag, sample=0)
            body, ctype = tb.get_bytes("/data/plugin/images/individualImage?" + entry["query"])
            assert ctype == mime and body == written[".", tag][0][2].tensor.string_val[2], tag
