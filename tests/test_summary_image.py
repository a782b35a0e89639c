"""SummaryWriter.add_image / add_images: layouts, dtypes, grids, and torch's pixels.

PNGs are decoded with PIL and compared with the exact pixels given (uint8),
with torch's float rule ``clip(float32(x) * 255)`` truncated to uint8, and
with what torch.utils.tensorboard writes for the same call.
"""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.tensorboard import SummaryWriter as TorchWriter

from tbx import SummaryWriter
from writer_util import (
    acc_tensors, image_samples, legacy_accumulator, plugin_accumulator, png_pixels, rgb_pixels, static_check,
    values_by_tag,
)

RNG = np.random.default_rng(21)
H, W = 5, 7


def _u8(*shape):
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def _from_float(x):
    """torch.utils.tensorboard's conversion of float pixels."""
    return (np.asarray(x).astype(np.float32) * 255).clip(0, 255).astype(np.uint8)


def _one(logdir, tag):
    [(_step, (width, height), pngs)] = image_samples(logdir, tag)
    assert len(pngs) == 1
    pixels = png_pixels(pngs[0])
    assert (width, height) == (pixels.shape[1], pixels.shape[0])
    return pixels


# --- add_image layouts and dtypes --------------------------------------------------

HWC3 = _u8(H, W, 3)
HWC4 = _u8(H, W, 4)
HW = _u8(H, W)
FLOAT_HWC = RNG.uniform(-0.2, 1.2, size=(H, W, 3))  # out-of-range values are clipped
BOOL_HW = RNG.random((H, W)) > 0.5

SINGLE_CASES = [
    # (id, array, dataformats, expected HWC/HW uint8 pixels)
    ("chw_rgb", HWC3.transpose(2, 0, 1), "CHW", HWC3),
    ("hwc_rgb", HWC3, "HWC", HWC3),
    ("chw_rgba", HWC4.transpose(2, 0, 1), "CHW", HWC4),
    ("hwc_rgba", HWC4, "HWC", HWC4),
    ("chw_gray", HW[None], "CHW", HW),
    ("hwc_gray", HW[..., None], "HWC", HW),
    ("hw", HW, "HW", HW),
    ("wh", HW.T, "WH", HW),
    ("lowercase", HWC3, "hwc", HWC3),
    ("float64", FLOAT_HWC, "HWC", _from_float(FLOAT_HWC)),
    ("float32_chw", FLOAT_HWC.astype(np.float32).transpose(2, 0, 1), "CHW", _from_float(FLOAT_HWC)),
    ("float16", FLOAT_HWC.astype(np.float16), "HWC", _from_float(FLOAT_HWC.astype(np.float16))),
    ("bool", BOOL_HW, "HW", BOOL_HW.astype(np.uint8) * 255),
    ("one_pixel", np.array([[[7]], [[8]], [[9]]], dtype=np.uint8), "CHW", np.array([[[7, 8, 9]]], dtype=np.uint8)),
    ("torch_chw", torch.from_numpy(HWC3.transpose(2, 0, 1).copy()), "CHW", HWC3),
    ("torch_float", torch.from_numpy(FLOAT_HWC.transpose(2, 0, 1).copy()), "CHW", _from_float(FLOAT_HWC)),
    ("noncontiguous", HWC3[:, ::-1], "HWC", HWC3[:, ::-1]),
]


def test_add_image_layouts_and_dtypes(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        for name, array, fmt, _want in SINGLE_CASES:
            writer.add_image(name, array, 3, dataformats=fmt)
    for name, _array, _fmt, want in SINGLE_CASES:
        got = _one(tmp_path, name)
        assert got.dtype == np.uint8 and np.array_equal(got, want), name
    assert static_check(tmp_path, header_first=False) == []
    first = values_by_tag(tmp_path)[".", "chw_rgb"][0][2]
    assert first.metadata.plugin_data.plugin_name == "images"


@pytest.mark.parametrize("mode", ["P", "CMYK", "LA", "RGBA", "1"])
def test_add_image_pil_modes_keep_their_colours(tmp_path, mode):
    """A PIL image is shown as PIL shows it: palette or CMYK pixels are not raw channel values."""
    image = Image.fromarray(HWC3).convert(mode)
    want = np.asarray(image.convert("RGBA" if "A" in image.getbands() else "RGB"))
    with SummaryWriter(tmp_path) as writer:
        writer.add_image("pil", image, 0)
    png = image_samples(tmp_path, "pil")[0][2][0]
    got = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA" if want.shape[-1] == 4 else "RGB"))
    assert np.array_equal(got, want), mode


@pytest.mark.parametrize("name,array,fmt", [
    ("chw_u8", HWC3.transpose(2, 0, 1), "CHW"),
    ("hwc_float", FLOAT_HWC, "HWC"),
    ("chw_gray", HW[None], "CHW"),
    ("hw", HW, "HW"),
])
def test_add_image_pixels_match_torch(tmp_path, name, array, fmt):
    with SummaryWriter(tmp_path / "tbx") as writer:
        writer.add_image(name, array, 0, dataformats=fmt)
    with TorchWriter(tmp_path / "torch") as torch_writer:
        torch_writer.add_image(name, array, 0, dataformats=fmt)
    theirs = legacy_accumulator(tmp_path / "torch").Images(name)[0].encoded_image_string
    [(_s, arr)] = acc_tensors(plugin_accumulator(tmp_path / "tbx"), name)
    assert np.array_equal(rgb_pixels(arr[2]), rgb_pixels(theirs))  # torch stores gray as RGB


# --- add_images: grids and samples --------------------------------------------------------

def _grid(images, ncols=8):
    """Reference layout: N HWC images, ``ncols`` per row, zero padding."""
    n, h, w, c = images.shape
    cols = min(n, ncols)
    rows = -(-n // cols)
    canvas = np.zeros((rows * h, cols * w, c), dtype=images.dtype)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        canvas[r * h:(r + 1) * h, q * w:(q + 1) * w] = img
    return canvas


@pytest.mark.parametrize("n", [1, 3, 8, 10, 17])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_add_images_grid_and_samples(tmp_path, n, channels):
    nhwc = _u8(n, H, W, channels)
    with SummaryWriter(tmp_path) as writer:
        writer.add_images("nchw", nhwc.transpose(0, 3, 1, 2), 0)
        writer.add_images("nhwc", nhwc, 0, dataformats="NHWC")
        writer.add_images("samples", torch.from_numpy(nhwc.transpose(0, 3, 1, 2).copy()), 0, as_grid=False)
        if channels == 1:
            writer.add_images("nhw", nhwc[..., 0], 0, dataformats="NHW")
    want = _grid(nhwc)
    want = want[..., 0] if channels == 1 else want
    for tag in ("nchw", "nhwc") + (("nhw",) if channels == 1 else ()):
        assert np.array_equal(_one(tmp_path, tag), want), tag
    [(_s, size, pngs)] = image_samples(tmp_path, "samples")
    assert size == (W, H) and len(pngs) == n
    for png, img in zip(pngs, nhwc):
        assert np.array_equal(png_pixels(png), img[..., 0] if channels == 1 else img)
    plugin = plugin_accumulator(tmp_path)
    [(_s, arr)] = acc_tensors(plugin, "samples")
    assert arr.shape == (n + 2,) and list(arr[2:]) == pngs


@pytest.mark.parametrize("n,channels", [(3, 3), (10, 3), (10, 1), (17, 3)])
def test_add_images_grid_matches_torch(tmp_path, n, channels):
    batch = RNG.random((n, channels, H, W)).astype(np.float32)
    with SummaryWriter(tmp_path / "tbx") as writer:
        writer.add_images("batch", batch, 0)
    with TorchWriter(tmp_path / "torch") as torch_writer:
        torch_writer.add_images("batch", batch, 0)
    theirs = legacy_accumulator(tmp_path / "torch").Images("batch")[0].encoded_image_string
    [(_s, _size, [ours])] = image_samples(tmp_path / "tbx", "batch")
    assert np.array_equal(rgb_pixels(ours), rgb_pixels(theirs))


def test_add_images_float_and_bool_batches(tmp_path):
    floats = RNG.uniform(-0.5, 1.5, size=(4, H, W, 3))
    bools = RNG.random((2, 1, H, W)) > 0.5
    with SummaryWriter(tmp_path) as writer:
        writer.add_images("f", floats, 0, dataformats="NHWC", as_grid=False)
        writer.add_images("b", bools, 0)
    [(_s, _size, pngs)] = image_samples(tmp_path, "f")
    assert [png_pixels(p).tolist() for p in pngs] == [_from_float(f).tolist() for f in floats]
    assert np.array_equal(_one(tmp_path, "b"), _grid(bools.transpose(0, 2, 3, 1).astype(np.uint8) * 255)[..., 0])


# --- snapshot semantics ---------------------------------------------------------------------

def test_mutating_after_the_call_does_not_change_the_logged_image(tmp_path):
    expected = []
    with SummaryWriter(tmp_path) as writer:
        for step in range(40):
            chw = _u8(3, 16, 16)
            batch = RNG.random((4, 3, 8, 8))
            tensor = torch.from_numpy(_u8(16, 16, 3))
            expected.append((chw.transpose(1, 2, 0).copy(), _grid(_from_float(batch.transpose(0, 2, 3, 1))),
                             tensor.numpy().copy()))
            writer.add_image("img", chw, step)
            chw[:] = 0
            writer.add_images("grid", batch, step)
            batch[:] = 1.0
            writer.add_image("torch", tensor, step, dataformats="HWC")
            tensor.fill_(255)
    for tag, index in (("img", 0), ("grid", 1), ("torch", 2)):
        got = image_samples(tmp_path, tag)
        assert [s for s, _size, _p in got] == list(range(40)), tag
        for (step, _size, [png]), want in zip(got, expected):
            assert np.array_equal(png_pixels(png), want[index]), (tag, step)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")
def test_cuda_image_tensor(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_image("img", torch.from_numpy(HWC3.transpose(2, 0, 1).copy()).cuda(), 0)
        writer.add_images("batch", torch.from_numpy(FLOAT_HWC[None].transpose(0, 3, 1, 2).copy()).cuda(), 0)
    assert np.array_equal(_one(tmp_path, "img"), HWC3)
    assert np.array_equal(_one(tmp_path, "batch"), _from_float(FLOAT_HWC))


def test_string_tensor_record_equals_protobuf_serialization():
    """The hand-built media record is byte for byte what protobuf writes for the same Event."""
    from tbx import record
    from tbx.proto import event_pb2
    from tbx.summary._metadata import string_tensor_record
    from tbx.summary.image import METADATA

    for tag, step, wall, dims, strings, md in [
        ("img", 3, 1700000000.5, (3,), [b"4", b"2", b"\x89PNG" + bytes(300)], METADATA),
        ("", 0, 0.0, (1, 2), [b"RIFF" + bytes(70000), b""], None),
        ("ü/a", -(2 ** 40), -0.0, (0,), [], METADATA),
    ]:
        event = event_pb2.Event(wall_time=wall, step=step)
        value = event.summary.value.add(tag=tag)
        value.tensor.dtype = 7
        value.tensor.tensor_shape.SetInParent()
        for d in dims:
            value.tensor.tensor_shape.dim.add(size=d)
        value.tensor.string_val.extend(strings)
        if md is not None:
            value.metadata.CopyFrom(md)
        got = string_tensor_record(tag, step, wall, dims, strings, None if md is None else md.SerializeToString())
        assert got == record.frame(event.SerializeToString())
