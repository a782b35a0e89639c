"""SummaryWriter.add_video and tbx.summary.video: GIF frames, timing, torch's grid, the wire form.

GIFs are decoded with Pillow, frame by frame, and compared with the exact
pixels given. Inputs use few distinct colours (or grayscale, which GIF stores
losslessly), because a GIF palette holds at most 256 colours per frame.
"""

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence
from tensorboard.compat.proto import summary_pb2 as tb_summary_pb2
from tensorboard.compat.proto import types_pb2 as tb_types_pb2
from tensorboard.plugins.image import plugin_data_pb2 as tb_image_pb2
from tensorboard.util import img_mime_type_detector
from torch.utils.tensorboard._utils import _prepare_video as torch_prepare_video

from tbx import SummaryWriter
from tbx.summary import video as video_summary
from writer_util import plugin_accumulator, tbx_values_by_tag, to_ndarray, values_by_tag

RNG = np.random.default_rng(11)
PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [12, 200, 90]], np.uint8)


def palette_video(n, t, h, w, channels=3):
    """uint8 NTCHW video whose pixels are drawn from a few colours, every frame different."""
    index = RNG.integers(0, len(PALETTE), size=(n, t, h, w))
    index[:, :, 0, 0] = np.arange(t) % len(PALETTE)  # consecutive frames never identical
    index[:, :, 0, 1] = (np.arange(t) // len(PALETTE)) % len(PALETTE)
    pixels = PALETTE[index][..., :channels]  # N T H W C
    return np.ascontiguousarray(pixels.transpose(0, 1, 4, 2, 3))


def gif_samples(logdir, tag, run="."):
    """[(step, (width, height), GIF bytes)] of a video tag, read independently."""
    out = []
    for step, _wall, value in values_by_tag(logdir)[run, tag]:
        tensor = value.tensor
        assert tensor.dtype == tb_types_pb2.DT_STRING and [d.size for d in tensor.tensor_shape.dim] == [3]
        width, height, gif = tensor.string_val
        out.append((step, (int(width), int(height)), gif))
    return out


def decode_gif(data):
    """(list of HxWx3 RGB frames, list of durations in ms, loop) of GIF bytes, decoded by Pillow."""
    image = Image.open(io.BytesIO(data))
    assert image.format == "GIF"
    frames, durations = [], []
    for frame in ImageSequence.Iterator(image):
        durations.append(frame.info["duration"])
        frames.append(np.asarray(frame.convert("RGB")))
    return frames, durations, image.info.get("loop")


def one_gif(logdir, tag):
    [(_step, (width, height), gif)] = gif_samples(logdir, tag)
    frames, durations, loop = decode_gif(gif)
    assert frames[0].shape[:2] == (height, width)
    return frames, durations, loop


def torch_grid(video_u8):
    """torch.utils.tensorboard's tiling of an NTCHW uint8 video, as T x H x W x C uint8."""
    tiled = torch_prepare_video(video_u8.astype(np.float32) / 255.0)
    return np.rint(tiled * 255).astype(np.uint8)


# --- frames, pixels, timing ---------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16])
def test_frames_and_grid_match_torchs_layout(tmp_path, n):
    video = palette_video(n, 5, 4, 6)
    with SummaryWriter(tmp_path) as writer:
        writer.add_video("v", video, 0)
    frames, durations, loop = one_gif(tmp_path, "v")
    want = torch_grid(video)
    assert len(frames) == 5 and durations == [250] * 5 and loop == 0
    rows, cols = video_summary.grid_shape(n)
    assert frames[0].shape == (rows * 4, cols * 6, 3) == want.shape[1:]
    for got, expected in zip(frames, want):
        assert np.array_equal(got, expected)


def test_grid_shape_is_torchs():
    for n in range(1, 70):
        tiled = torch_prepare_video(np.zeros((n, 1, 1, 2, 3), np.float32))
        rows, cols = video_summary.grid_shape(n)
        assert tiled.shape[1:3] == (rows * 2, cols * 3), n


@pytest.mark.parametrize("fps,duration", [
    (4, 250), (30, 30), (25, 40), (0.5, 2000), (1000, 10), (3, 330), (0.001, 655350),
])
def test_fps_sets_the_frame_duration(tmp_path, fps, duration):
    with SummaryWriter(tmp_path) as writer:
        writer.add_video("v", palette_video(1, 3, 2, 2), 0, fps=fps)
    _frames, durations, _loop = one_gif(tmp_path, "v")
    assert durations == [duration] * 3


def test_grayscale_is_lossless(tmp_path):
    gray = RNG.integers(0, 256, size=(2, 4, 1, 5, 3), dtype=np.uint8)
    gray[:, :, 0, 0, 0] = np.arange(4) * 60  # frames differ
    with SummaryWriter(tmp_path) as writer:
        writer.add_video("gray", gray, 0)
    frames, _durations, _loop = one_gif(tmp_path, "gray")
    want = torch_grid(gray)
    assert len(frames) == 4
    for got, expected in zip(frames, want):
        assert np.array_equal(got, np.repeat(expected, 3, axis=-1))


def test_alpha_is_dropped_and_float_and_bool_follow_the_image_rules(tmp_path):
    rgba = palette_video(1, 3, 4, 4, channels=3)
    alpha = RNG.integers(0, 256, size=(1, 3, 1, 4, 4), dtype=np.uint8)
    floats = palette_video(1, 3, 4, 4).astype(np.float64) / 255.0
    bools = RNG.random((1, 3, 1, 4, 4)) > 0.5
    bools[0, :, 0, 0, 0] = [True, False, True]
    with SummaryWriter(tmp_path) as writer:
        writer.add_video("rgba", np.concatenate([rgba, alpha], axis=2), 0)
        writer.add_video("float", floats, 0)
        writer.add_video("float_torch", torch.from_numpy(floats.astype(np.float32)), 0)
        writer.add_video("bool", bools, 0)
    frames, _d, _l = one_gif(tmp_path, "rgba")
    assert [f.tolist() for f in frames] == [f.tolist() for f in rgba[0].transpose(0, 2, 3, 1)]
    for tag in ("float", "float_torch"):
        frames, _d, _l = one_gif(tmp_path, tag)
        want = (floats[0].astype(np.float32) * 255).clip(0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        assert [f.tolist() for f in frames] == [f.tolist() for f in want], tag
    frames, _d, _l = one_gif(tmp_path, "bool")
    assert [f[..., 0].tolist() for f in frames] == [(b[0] * 255).tolist() for b in bools[0].astype(np.uint8)]


@pytest.mark.parametrize("fmt", ["NTHWC", "ntchw", "TNCHW", "NCTHW"])
def test_dataformats(tmp_path, fmt):
    video = palette_video(2, 3, 4, 5)  # NTCHW
    given = video.transpose(["NTCHW".index(c) for c in fmt.upper()])
    with SummaryWriter(tmp_path) as writer:
        writer.add_video("v", given, 0, dataformats=fmt)
    frames, _d, _l = one_gif(tmp_path, "v")
    assert [f.tolist() for f in frames] == [f.tolist() for f in torch_grid(video)]


def test_identical_frames_keep_the_total_duration(tmp_path):
    """Pillow merges a frame equal to the previous one; the clip still lasts T / fps."""
    video = palette_video(1, 4, 3, 3)
    video[:, 2] = video[:, 1]
    with SummaryWriter(tmp_path) as writer:
        writer.add_video("v", video, 0, fps=10)
    frames, durations, _loop = one_gif(tmp_path, "v")
    assert sum(durations) == 400 and len(frames) == 3
    assert np.array_equal(frames[1], video[0, 1].transpose(1, 2, 0))


def test_single_frame(tmp_path):
    video = palette_video(1, 1, 3, 3)
    with SummaryWriter(tmp_path) as writer:
        writer.add_video("v", video, 0)
    frames, _durations, _loop = one_gif(tmp_path, "v")
    assert len(frames) == 1 and np.array_equal(frames[0], video[0, 0].transpose(1, 2, 0))


# --- the wire form and TensorBoard's view ---------------------------------------------

def test_wire_form_is_an_image_sample(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        for step in range(3):
            writer.add_video("v", palette_video(3, 2, 4, 5), step)
    values = values_by_tag(tmp_path)[".", "v"]
    assert [s for s, _w, _v in values] == [0, 1, 2]
    first = values[0][2].metadata
    assert first.plugin_data.plugin_name == "images"
    assert tb_image_pb2.ImagePluginData.FromString(first.plugin_data.content).version == 0
    assert first.data_class == tb_summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    assert all(not v.HasField("metadata") for _s, _w, v in values[1:])
    samples = gif_samples(tmp_path, "v")
    assert all(size == (20, 4) for _s, size, _g in samples)  # 3 clips: a 1x4 grid of 5x4 frames
    assert all(img_mime_type_detector.from_bytes(gif) == "image/gif" for _s, _size, gif in samples)
    acc = plugin_accumulator(tmp_path)
    got = [(e.step, list(to_ndarray(e.tensor_proto))) for e in acc.Tensors("v")]
    assert got == [(s, [b"20", b"4", gif]) for s, _size, gif in samples]
    ours = tbx_values_by_tag(tmp_path)[".", "v"]
    assert [v.SerializeToString() for _s, _w, v in ours] == [v.SerializeToString() for _s, _w, v in values]


def test_mutating_after_the_call_does_not_change_the_video(tmp_path):
    wanted = []
    with SummaryWriter(tmp_path) as writer:
        for step in range(20):
            video = palette_video(1, 3, 4, 4)
            wanted.append(video[0].transpose(0, 2, 3, 1).copy())
            tensor = torch.from_numpy(video)
            writer.add_video("v", tensor, step)
            tensor.fill_(7)
    got = gif_samples(tmp_path, "v")
    assert [s for s, _size, _g in got] == list(range(20))
    for (_s, _size, gif), want in zip(got, wanted):
        frames, _d, _l = decode_gif(gif)
        assert [f.tolist() for f in frames] == [f.tolist() for f in want]


# --- caller-thread checks of tbx.summary.video (writer-level bad input: test_writer_media) --

@pytest.mark.parametrize("fps", [0, -4, float("nan"), float("inf")])
def test_fps_value_rejects(fps):
    with pytest.raises(ValueError, match="fps"):
        video_summary.fps_value(fps)


def test_check_video_is_a_copy():
    video = palette_video(1, 2, 3, 3)
    snapshot = video_summary.check_video(video)
    assert np.array_equal(snapshot, video) and not np.shares_memory(snapshot, video)
