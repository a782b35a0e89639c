"""Video: an animated GIF (encoded with Pillow) written as an ``images`` sample.

Wire form: the images plugin's DT_STRING tensor ``[width, height, gif]`` with
``ImagePluginData`` metadata; TensorBoard sniffs the bytes and serves them as
``image/gif``, so the Images dashboard plays the clip.

Input: a 5-D array, ``NTCHW`` by default (batch, time, channels, height,
width; any order of those letters via ``dataformats``). Pixels follow the
image rules (tbx.summary.image): uint8 as they are, float in [0, 1] scaled by
255 and clipped, bool as 0/255. One channel is grayscale, three RGB; a fourth
(alpha) channel is dropped, since GIF has no partial transparency.

Layout: a batch of N clips is tiled into one clip, frame by frame, on the
grid torch.utils.tensorboard uses: N is padded with black clips up to a power
of two, the grid has ``2 ** ((N.bit_length() - 1) // 2)`` rows and as many
columns as that padded count needs (N=3: 1x4, N=4: 2x2, N=5..8: 2x4, N=16: 4x4).

Timing: every frame lasts ``round(100 / fps)`` centiseconds (GIF's unit),
at least 1 and at most 65535; the GIF loops forever. Colours are quantized to
an adaptive palette of at most 256 per frame, so frames with few colours are
exact. Pillow merges a frame identical to the one before it into that frame
(adding up their durations), which shows the same thing in fewer frames.
"""

import io
import math

import numpy as np

from tbx._convert import scalar_value
from tbx.proto import tensor_pb2
from tbx.summary._metadata import value_record
from tbx.summary.image import METADATA

DEFAULT_DATAFORMATS = "NTCHW"
_MAX_DELAY_CS = 65535  # the GIF delay field is 16 bits of centiseconds


def fps_value(fps, name="fps"):
    """A positive, finite frame rate (float).

    Raises:
        TypeError: not a real number (bool included).
        ValueError: not finite or not positive.
    """
    value = scalar_value(fps, name)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of frames per second, got {fps!r}")
    return value


def frame_delay_cs(fps):
    """The GIF delay of one frame at ``fps``, in centiseconds."""
    return int(min(max(round(100.0 / fps), 1), _MAX_DELAY_CS))


def _order(dataformats):
    if not isinstance(dataformats, str):
        raise TypeError(f"dataformats must be a str such as {DEFAULT_DATAFORMATS!r}, got {dataformats!r}")
    fmt = dataformats.upper()
    if len(fmt) != 5 or set(fmt) != set(DEFAULT_DATAFORMATS):
        raise ValueError(
            f"unknown dataformats {dataformats!r}; expected the letters N, T, C, H, W once each, "
            f"e.g. {DEFAULT_DATAFORMATS!r} or 'NTHWC'"
        )
    return [fmt.index(c) for c in DEFAULT_DATAFORMATS]


def check_video(array, dataformats=DEFAULT_DATAFORMATS, name="vid_tensor"):
    """A validated ``NTCHW`` snapshot (a copy) of ``array``. Runs on the caller's thread.

    Raises:
        TypeError: ``dataformats`` not a str; a dtype other than uint8, bool or float.
        ValueError: unknown ``dataformats``, not 5-D, empty, a channel count
            other than 1, 3 or 4, or NaN/inf pixels.
    """
    order = _order(dataformats)
    if array.ndim != 5:
        raise ValueError(
            f"{name} has {array.ndim} dimensions (shape {array.shape}); expected 5 "
            f"(batch, time, channels, height, width as dataformats {dataformats!r})"
        )
    array = array.transpose(order)
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape} as NTCHW)")
    if array.dtype != np.uint8 and array.dtype != np.bool_ and array.dtype.kind != "f":
        raise TypeError(f"{name} has dtype {array.dtype}; expected uint8 (0-255), bool, or float in [0, 1]")
    channels = array.shape[2]
    if channels not in (1, 3, 4):
        raise ValueError(f"{name} has {channels} channels (shape {array.shape} as NTCHW); expected 1, 3 or 4")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values; expected finite floats in [0, 1]")
    return np.array(array, copy=True)


def to_uint8(video):
    """uint8 pixels by the image rules (uint8 kept, bool 0/255, float * 255 clipped)."""
    if video.dtype == np.uint8:
        return video
    if video.dtype == np.bool_:
        return video.astype(np.uint8) * 255
    return (video.astype(np.float32) * 255.0).clip(0, 255).astype(np.uint8)


def grid_shape(n):
    """(rows, columns) of the grid that tiles ``n`` clips (torch's layout)."""
    padded = n if n & (n - 1) == 0 else 1 << n.bit_length()
    rows = 1 << ((n.bit_length() - 1) // 2)
    return rows, padded // rows


def tile(video):
    """``[T, rows*H, cols*W, C]`` frames from an ``NTCHW`` uint8 video; empty cells are black."""
    n, t, c, h, w = video.shape
    rows, cols = grid_shape(n)
    if rows * cols != n:
        video = np.concatenate([video, np.zeros((rows * cols - n, t, c, h, w), dtype=video.dtype)])
    grid = video.reshape(rows, cols, t, c, h, w).transpose(2, 0, 4, 1, 5, 3)
    return grid.reshape(t, rows * h, cols * w, c)


def encode_gif(frames, fps):
    """An endlessly looping animated GIF of ``[T, H, W, C]`` uint8 frames (C = 1, 3 or 4)."""
    from PIL import Image

    if frames.shape[-1] == 4:
        frames = frames[..., :3]
    if frames.shape[-1] == 1:
        images = [Image.fromarray(np.ascontiguousarray(f[..., 0]), "L") for f in frames]
    else:
        # Fast octree colour reduction per frame: about 30x faster than Pillow's
        # default (median cut) for GIF, and exact for frames of <= 256 colours.
        images = [
            Image.fromarray(np.ascontiguousarray(f), "RGB").quantize(256, Image.Quantize.FASTOCTREE)
            for f in frames
        ]
    out = io.BytesIO()
    images[0].save(
        out, format="GIF", save_all=True, append_images=images[1:],
        duration=10 * frame_delay_cs(fps), loop=0,
    )
    return out.getvalue()


def video_record(tag, video, fps, step, wall_time, with_metadata):
    """Framed Event bytes with the GIF of an ``NTCHW`` video (runs on the encoder pool)."""
    frames = tile(to_uint8(video))
    gif = encode_gif(frames, fps)
    height, width = frames.shape[1:3]

    def fill(value):
        tensor = value.tensor
        tensor.dtype = tensor_pb2.DT_STRING
        tensor.tensor_shape.dim.add(size=3)
        tensor.string_val.extend([str(width).encode(), str(height).encode(), gif])
        if with_metadata:
            value.metadata.CopyFrom(METADATA)

    return value_record(tag, step, wall_time, fill)
