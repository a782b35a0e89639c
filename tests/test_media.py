"""tbx.media: W&B's Image, Histogram, Audio, Video, Table, written into TensorBoard event files."""

import inspect
import io
import json
import os
import wave

import numpy as np
import pytest
from PIL import Image as PILImage
from tensorboard.backend.event_processing import plugin_event_accumulator as pea
from tensorboard.util import tensor_util

import tbx
from tbx import media

try:
    import wandb
except Exception:  # pragma: no cover - the oracle is optional
    wandb = None


def _load(logdir):
    acc = pea.EventAccumulator(
        logdir, size_guidance={pea.TENSORS: 0},
        tensor_size_guidance={"images": 0, "audio": 0, "histograms": 0, "text": 0},
    )
    acc.Reload()
    return acc


def _tensor(acc, tag, index=-1):
    event = acc.Tensors(tag)[index]
    return event.step, tensor_util.make_ndarray(event.tensor_proto)


def _pngs(acc, tag, index=-1):
    step, strings = _tensor(acc, tag, index)
    return step, [np.array(PILImage.open(io.BytesIO(s))) for s in strings[2:]]


def _text(acc, tag, index=-1):
    step, cells = _tensor(acc, tag + "/text_summary", index)
    return step, np.vectorize(lambda b: b.decode())(cells) if cells.ndim else cells.item().decode()


def _log(tmp_path, *pairs):
    with tbx.SummaryWriter(str(tmp_path)) as writer:
        for tag, item, step in pairs:
            item._tb_log(writer, tag, step)
    return _load(str(tmp_path))


# -- Image ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, expected",
    [
        (np.full((2, 2, 3), 0.5), 127),  # [0, 1] floats: x * 255, truncated (W&B 0.28: 0.5 -> 127)
        (np.full((2, 2, 3), 1.0), 255),
        (np.full((2, 2, 3), -1.0), 0),  # [-1, 1]: (x + 1) * 127.5
        (np.full((2, 2, 3), -0.5, dtype=np.float32), 63),
        (np.full((2, 2, 3), 200, dtype=np.uint8), 200),
        (np.full((2, 2, 3), 7, dtype=np.int64), 7),  # ints in range stay
        (np.full((2, 2, 3), 30.0), 30),  # floats beyond [-1, 1] but in [0, 255] stay
        (np.ones((2, 2, 3), dtype=bool), 255),
    ],
)
def test_image_value_scaling(data, expected):
    assert np.all(media.Image(data).to_numpy() == expected)


def test_image_out_of_range_is_clipped_with_a_warning():
    with pytest.warns(RuntimeWarning, match="clipped"):
        img = media.Image(np.array([[300, -5]], dtype=np.int64))
    assert img.to_numpy()[..., 0].tolist() == [[255, 0]]


def test_image_mixed_range_floats_use_the_right_rule():
    data = np.array([[0.0, 0.25], [0.75, 1.0]])
    assert media.Image(data).to_numpy()[..., 0].tolist() == [[0, 63], [191, 255]]
    data = np.array([[-1.0, 0.0], [0.5, 1.0]])
    assert media.Image(data).to_numpy()[..., 0].tolist() == [[0, 127], [191, 255]]


def test_image_inputs(tmp_path):
    torch = pytest.importorskip("torch")
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert media.Image(rgb).mode == "RGB" and (media.Image(rgb).to_numpy() == rgb).all()
    assert media.Image(rgb[None]).to_numpy().shape == (5, 7, 3)  # trivial dims squeezed
    gray = media.Image(rgb[..., 0])
    assert gray.mode == "L" and gray.to_numpy().shape == (5, 7, 1) and (gray.width, gray.height) == (7, 5)
    assert media.Image(rgb[..., :1]).mode == "L"
    chw = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
    assert (media.Image(chw).to_numpy() == rgb).all()
    rgba = np.dstack([rgb, np.full((5, 7), 9, np.uint8)])
    assert media.Image(PILImage.fromarray(rgba)).mode == "RGBA"
    assert (media.Image(PILImage.fromarray(rgb)).to_numpy() == rgb).all()
    path = tmp_path / "x.png"
    PILImage.fromarray(rgb).save(path)
    from_file = media.Image(str(path))
    assert (from_file.to_numpy() == rgb).all() and from_file.format == "png" and from_file.path == str(path)
    assert (media.Image(path).to_numpy() == rgb).all()  # pathlib.Path
    copy = media.Image(from_file, caption="new")
    assert copy.caption == "new" and (copy.to_numpy() == rgb).all()
    assert media.Image(rgb, mode="L").mode == "L"
    with pytest.warns(UserWarning, match="transparency"):
        assert media.Image(rgba, file_type="jpg").mode == "RGB"


def test_image_from_matplotlib_figure():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1), dpi=50)
    ax.plot([0, 1], [1, 0])
    img = media.Image(fig, caption="plot")
    plt.close(fig)
    assert (img.width, img.height) == (100, 50) and img.mode == "RGBA"
    assert img.to_numpy()[..., :3].min() < 128  # something was drawn on the white figure


def test_image_input_is_snapshot():
    data = np.zeros((3, 3, 3), dtype=np.uint8)
    img = media.Image(data)
    data[:] = 255
    assert img.to_numpy().max() == 0


@pytest.mark.parametrize(
    "data, kwargs, error, match",
    [
        (np.zeros((3, 8, 8)), {}, ValueError, r"Un-supported shape for image conversion \[3, 8, 8\]"),
        (np.zeros((8, 8, 2)), {}, ValueError, r"Un-supported shape for image conversion \[8, 8, 2\]"),
        (np.zeros(8), {}, ValueError, "Un-supported shape"),
        (np.array([[np.nan]]), {}, ValueError, "NaN"),
        (np.zeros((4, 4)), {"file_type": "gif"}, ValueError, "file_type must be one of"),
        (np.zeros((4, 4)), {"mode": "CMYK"}, ValueError, "mode must be one of"),
        (np.zeros((4, 4)), {"caption": 3}, TypeError, "caption must be a str"),
        (np.zeros((4, 4)), {"boxes": [1]}, ValueError, '"boxes" argument must be a dictionary'),
        ({"a": 1}, {}, TypeError, "data_or_path must be"),
        ("s3://bucket/x.png", {}, ValueError, "remote reference"),
    ],
)
def test_image_bad_input(data, kwargs, error, match):
    with pytest.raises(error, match=match):
        media.Image(data, **kwargs)


def test_image_missing_file():
    with pytest.raises(FileNotFoundError):
        media.Image("/nonexistent/x.png")


def test_image_reaches_tensorboard_with_caption(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    acc = _log(tmp_path, ("sample", media.Image(rgb, caption="a cat"), 3), ("sample", media.Image(rgb / 255.0), 4))
    step, [png] = _pngs(acc, "sample", 0)
    assert step == 3 and (png == rgb).all()
    step, [png] = _pngs(acc, "sample", 1)
    assert step == 4 and np.abs(png.astype(int) - rgb).max() <= 1
    assert _text(acc, "sample/caption") == (3, "a cat")
    assert len(acc.Tensors("sample/caption/text_summary")) == 1  # no caption, no text


# -- Histogram --------------------------------------------------------------------


def test_histogram_from_sequence_defaults_to_64_bins():
    values = np.random.default_rng(2).normal(size=1000)
    hist = media.Histogram(values)
    counts, edges = np.histogram(values, bins=64)
    assert hist.histogram == counts.tolist() and hist.bins == edges.tolist()
    assert len(media.Histogram([1, 2, 3], num_bins=5).histogram) == 5
    assert media.Histogram(values, num_bins=512).histogram == np.histogram(values, 512)[0].tolist()


def test_histogram_errors():
    with pytest.raises(ValueError, match="^The maximum length of a histogram is 512$"):
        media.Histogram([1, 2, 3], num_bins=513)
    with pytest.raises(ValueError, match="The maximum length of a histogram is 512"):
        media.Histogram(np_histogram=(np.ones(600), np.arange(601)))
    with pytest.raises(ValueError, match=r"len\(bins\) must be len\(histogram\) \+ 1"):
        media.Histogram(np_histogram=([1, 2], [0, 1]))
    with pytest.raises(ValueError, match="Expected np_histogram to be a tuple"):
        media.Histogram(np_histogram=([1], [0, 1], [2]))
    with pytest.raises(ValueError, match="Expected np_histogram"):
        media.Histogram()
    with pytest.raises(ValueError, match="num_bins must be a positive int"):
        media.Histogram([1], num_bins=0)
    with pytest.raises(ValueError, match="NaN"):
        media.Histogram([1.0, float("nan")])
    with pytest.raises(TypeError, match="sequence"):
        media.Histogram(["a", "b"])


@pytest.mark.skipif(wandb is None, reason="wandb is not installed (oracle only)")
def test_histogram_matches_wandb():
    values = np.random.default_rng(3).exponential(size=500)
    for kwargs in ({}, {"num_bins": 10}):
        ours, theirs = media.Histogram(values, **kwargs), wandb.Histogram(values, **kwargs)
        assert ours.histogram == theirs.histogram and ours.bins == theirs.bins
    with pytest.raises(ValueError) as expected:
        wandb.Histogram(values, num_bins=513)
    with pytest.raises(ValueError, match=f"^{expected.value}$"):
        media.Histogram(values, num_bins=513)


def test_histogram_reaches_tensorboard_with_its_edges(tmp_path):
    counts, edges = np.array([1, 0, 4, 2]), np.array([0.0, 0.5, 2.0, 2.5, 10.0])
    acc = _log(tmp_path, ("h", media.Histogram(np_histogram=(counts, edges)), 7),
               ("g", media.Histogram([1.0, 2.0, 2.0, 3.0], num_bins=4), 8))
    step, rows = _tensor(acc, "h")
    assert step == 7 and rows.tolist() == [[0, 0.5, 1], [0.5, 2, 0], [2, 2.5, 4], [2.5, 10, 2]]
    step, rows = _tensor(acc, "g")
    assert step == 8 and rows[:, 2].tolist() == [1, 0, 2, 1] and rows[0, 0] == 1.0 and rows[-1, 1] == 3.0


# -- Audio ------------------------------------------------------------------------


def _wav(data):
    with wave.open(io.BytesIO(data), "rb") as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())
        return w.getframerate(), frames


def test_audio_reaches_tensorboard(tmp_path):
    samples = np.sin(np.linspace(0, 20, 800)).astype(np.float32) * 0.5
    acc = _log(tmp_path, ("speech", media.Audio(samples, sample_rate=8000, caption="hello"), 2))
    step, blobs = _tensor(acc, "speech")
    rate, frames = _wav(blobs.ravel()[0])
    assert step == 2 and rate == 8000 and frames.shape == (800, 1)
    assert np.abs(frames[:, 0] / 32767 - samples).max() < 1e-4
    assert _text(acc, "speech/caption") == (2, "hello")


def test_audio_stereo_and_wav_file(tmp_path):
    stereo = np.stack([np.linspace(-1, 1, 300), np.zeros(300)], axis=1)  # [L, C] as soundfile
    clip = media.Audio(stereo, sample_rate=1000)
    assert clip.duration == 0.3
    path = tmp_path / "in.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(4000)
        w.writeframes(np.arange(-100, 100, dtype="<i2").tobytes())
    from_file = media.Audio(path)
    assert from_file.sample_rate == 4000 and from_file.duration == 200 / 4000
    acc = _log(tmp_path / "run", ("s", clip, 0), ("f", from_file, 1))
    rate, frames = _wav(_tensor(acc, "s")[1].ravel()[0])
    assert rate == 1000 and frames.shape == (300, 2) and frames[0, 0] == -32767 and frames[-1, 0] == 32767
    rate, frames = _wav(_tensor(acc, "f")[1].ravel()[0])
    assert rate == 4000 and frames[:, 0].tolist() == list(range(-100, 100))


def test_audio_bad_input_and_clipping(tmp_path):
    with pytest.raises(ValueError, match='Argument "sample_rate" is required'):
        media.Audio(np.zeros(10))
    with pytest.raises(ValueError, match="sample_rate"):
        media.Audio(np.zeros(10), sample_rate=-1)
    with pytest.raises(FileNotFoundError):
        media.Audio(tmp_path / "missing.wav")
    with pytest.warns(RuntimeWarning, match="clipped"):
        media.Audio(np.array([2.0, -3.0, 0.0]), sample_rate=10)


def test_audio_other_formats_become_a_note(tmp_path):
    path = tmp_path / "x.mp3"
    path.write_bytes(b"ID3 not really")
    clip = media.Audio(path)
    with pytest.warns(RuntimeWarning, match="WAV"):
        acc = _log(tmp_path / "run", ("a", clip, 0))
    assert "x.mp3" in _text(acc, "a")[1]


# -- Video ------------------------------------------------------------------------


def _gif_frames(data):
    from PIL import ImageSequence

    with PILImage.open(io.BytesIO(data)) as gif:
        return [np.array(f.convert("RGB")) for f in ImageSequence.Iterator(gif)], gif.info.get("duration")


def test_video_reaches_tensorboard_as_gif(tmp_path):
    frames = np.zeros((3, 3, 8, 10), dtype=np.uint8)  # T C H W
    for t in range(3):
        frames[t, t % 3] = 200
    acc = _log(tmp_path, ("clip", media.Video(frames, fps=10, caption="rollout"), 5))
    step, strings = _tensor(acc, "clip")
    decoded, duration = _gif_frames(strings[2])
    assert step == 5 and strings[0] == b"10" and strings[1] == b"8"
    assert len(decoded) == 3 and duration == 100
    assert decoded[1][..., 1].min() >= 190 and decoded[1][..., 0].max() <= 10
    assert _text(acc, "clip/caption") == (5, "rollout")


def test_video_inputs_and_errors(tmp_path):
    torch = pytest.importorskip("torch")
    batch = media.Video(torch.rand(2, 4, 3, 6, 6))  # N T C H W, floats in [0, 1]
    assert batch.fps == 4 and batch.format == "gif" and (batch.height, batch.width) == (6, 6)
    with pytest.raises(ValueError, match="Video must be at least 4 dimensions"):
        media.Video(np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="wandb.Video accepts gif, mp4, webm, ogg formats"):
        media.Video(np.zeros((2, 3, 8, 8), np.uint8), format="avi")
    with pytest.raises(ValueError, match="channels"):
        media.Video(np.zeros((2, 2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="fps"):
        media.Video(np.zeros((2, 3, 8, 8), np.uint8), fps=0)
    gif_path = tmp_path / "in.gif"
    pictures = [PILImage.new("RGB", (5, 4), c) for c in ("red", "blue")]
    pictures[0].save(gif_path, save_all=True, append_images=pictures[1:], duration=100)
    from_file = media.Video(str(gif_path))
    assert from_file.format == "gif" and (from_file.width, from_file.height) == (5, 4)
    with pytest.raises(ValueError, match="wandb.Video accepts"):
        media.Video(str(tmp_path / "x.avi"))
    with pytest.raises(ValueError, match="requires a `format`"):
        media.Video(io.BytesIO(b""))
    mp4 = tmp_path / "x.mp4"
    mp4.write_bytes(b"\0")
    with pytest.warns(RuntimeWarning, match="text note"):
        acc = _log(tmp_path / "run", ("g", from_file, 0), ("m", media.Video(mp4), 0))
    decoded, _ = _gif_frames(_tensor(acc, "g")[1][2])
    assert len(decoded) == 2 and tuple(decoded[1][0, 0]) == (0, 0, 255)
    assert "x.mp4" in _text(acc, "m")[1]


# -- Table ------------------------------------------------------------------------


def test_table_text_and_json(tmp_path):
    table = media.Table(columns=["a", "b", "c"], data=[[1, "x", 0.5], [2, "y", None]])
    table.add_data(np.int64(3), "z", np.float32(0.25))
    assert table.data[2] == [3, "z", 0.25] and table.get_column("a") == [1, 2, 3]
    acc = _log(tmp_path / "run", ("results", table, 4))
    step, cells = _text(acc, "results")
    assert step == 4 and cells.tolist() == [["a", "b", "c"], ["1", "x", "0.5"], ["2", "y", ""], ["3", "z", "0.25"]]
    path = media.Table(columns=["a", "b", "c"], data=[[1, "x", 0.5], [2, "y", None]])._save(str(tmp_path), "tab", 0)
    # the bytes and name W&B 0.31 writes for this table (observed offline)
    assert os.path.relpath(path, tmp_path) == os.path.join("media", "table", "tab_0_5db13759011322c056b8.table.json")
    with open(path) as f:
        assert f.read() == '{"columns":["a","b","c"],"data":[[1,"x",0.5],[2,"y",null]]}'
    nested = media.Table(columns=["k"], data=[["v"]])._save(str(tmp_path), "eval/preds", 12)
    assert os.path.dirname(os.path.relpath(nested, tmp_path)) == os.path.join("media", "table", "eval")
    assert os.path.basename(nested).startswith("preds_12_")


def test_table_sources():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"x": [1, 2], "y": ["p", "q"]})
    for table in (media.Table(dataframe=frame), media.Table(data=frame)):
        assert table.columns == ["x", "y"] and table.data == [[1, "p"], [2, "q"]]
    assert media.Table(data=np.arange(6).reshape(3, 2), columns=["u", "v"]).data == [[0, 1], [2, 3], [4, 5]]
    assert media.Table(rows=[[1, 2, 3]]).columns == ["Input", "Output", "Expected"]
    table = media.Table(columns=["a"], data=[[1], [2]])
    table.add_column("b", ["x", "y"])
    assert table.data == [[1, "x"], [2, "y"]]
    hist_cell = media.Table(columns=["h"], data=[[media.Histogram([1, 2], num_bins=2)]])
    assert hist_cell.data[0][0]["_type"] == "histogram"


def test_table_errors():
    with pytest.raises(ValueError, match=r"^This table expects 2 columns: \['a', 'b'\], found 3$"):
        media.Table(columns=["a", "b"], data=[[1, 2, 3]])
    table = media.Table(columns=["a", "b"])
    with pytest.raises(ValueError, match="expects 2 columns"):
        table.add_data(1)
    with pytest.raises(TypeError, match="columns must be a list"):
        media.Table(columns="ab")
    with pytest.raises(ValueError, match="unique"):
        media.Table(columns=["a", "a"])
    with pytest.raises(TypeError, match="each row must be a list"):
        media.Table(columns=["a"], data=[1, 2])
    with pytest.raises(ValueError, match="already exists"):
        table.add_column("a", [])


@pytest.mark.skipif(wandb is None, reason="wandb is not installed (oracle only)")
def test_table_errors_match_wandb():
    with pytest.raises(ValueError) as expected:
        wandb.Table(columns=["a", "b"], data=[[1, 2, 3]])
    with pytest.raises(ValueError) as ours:
        media.Table(columns=["a", "b"], data=[[1, 2, 3]])
    assert str(ours.value) == str(expected.value)


# -- lists ------------------------------------------------------------------------


def test_log_media_list_images(tmp_path):
    a = np.full((4, 5, 3), 10, np.uint8)
    b = np.full((4, 5, 3), 20, np.uint8)
    c = np.full((6, 2), 30, np.uint8)  # another size and mode
    with tbx.SummaryWriter(str(tmp_path)) as writer:
        media.log_media_list(writer, "batch", [media.Image(a, caption="first"), media.Image(b)], 1)
        media.log_media_list(writer, "mixed", [media.Image(a), media.Image(c)], 2)
        media.log_media_list(writer, "hists", [media.Histogram([1, 2]), media.Histogram([3, 4])], 3)
    acc = _load(str(tmp_path))
    step, pngs = _pngs(acc, "batch")
    assert step == 1 and [p[0, 0, 0] for p in pngs] == [10, 20]
    assert _text(acc, "batch/caption")[1].tolist() == ["first", ""]
    step, pngs = _pngs(acc, "mixed")
    assert step == 2 and pngs[0].shape == (4, 5, 3) and pngs[1].shape == (6, 2) and pngs[1][0, 0] == 30
    assert "mixed/caption/text_summary" not in acc.Tags()["tensors"]
    assert _tensor(acc, "hists/0")[0] == 3 and _tensor(acc, "hists/1")[1][:, 2].sum() == 2


def test_log_media_list_errors_and_limit(tmp_path):
    with tbx.SummaryWriter(str(tmp_path)) as writer:
        with pytest.raises(ValueError, match="empty"):
            media.log_media_list(writer, "x", [], 0)
        with pytest.raises(TypeError, match="one type"):
            media.log_media_list(writer, "x", [media.Image(np.zeros((2, 2))), media.Histogram([1])], 0)
        with pytest.raises(TypeError, match="media objects"):
            media.log_media_list(writer, "x", [1, 2], 0)
        with pytest.warns(UserWarning, match="Only 108 images"):
            media.log_media_list(writer, "many", [media.Image(np.zeros((2, 2)))] * 110, 0)
    assert len(_pngs(_load(str(tmp_path)), "many")[1]) == 108


# -- robustness and API -----------------------------------------------------------


def test_bad_input_loses_nothing(tmp_path):
    writer = tbx.SummaryWriter(str(tmp_path))
    media.Image(np.zeros((2, 2, 3), np.uint8))._tb_log(writer, "img", 0)
    media.Histogram([1, 2, 3])._tb_log(writer, "h", 0)
    for bad in (lambda: media.Image(np.zeros((3, 8, 8))), lambda: media.Histogram([1], num_bins=1000),
                lambda: media.Audio([0.1, 0.2]), lambda: media.Video(np.zeros(3)),
                lambda: media.Table(columns=["a"], data=[[1, 2]])):
        with pytest.raises((ValueError, TypeError)):
            bad()
    media.Image(np.ones((2, 2, 3), np.uint8))._tb_log(writer, "img", 1)
    media.Histogram([4, 5])._tb_log(writer, "h", 1)
    writer.close()
    acc = _load(str(tmp_path))
    assert [e.step for e in acc.Tensors("img")] == [0, 1] and [e.step for e in acc.Tensors("h")] == [0, 1]
    steps = sorted(event.step for _, event in tbx.read_events(str(tmp_path)) if event.summary.value)
    assert steps == [0, 0, 1, 1]


@pytest.mark.skipif(wandb is None, reason="wandb is not installed (oracle only)")
@pytest.mark.parametrize("name", ["Image", "Histogram", "Audio", "Video", "Table"])
def test_signatures_match_wandb(name):
    ours = inspect.signature(getattr(media, name).__init__).parameters
    theirs = inspect.signature(getattr(wandb, name).__init__).parameters
    assert list(ours) == list(theirs)
    differ = {"Video": {"fps"}, "Table": set()}.get(name, set())  # Video: fps None means 4 in both
    for param in ours:
        if param not in differ and param != "self":
            assert ours[param].default == theirs[param].default, param


def test_summary_json_is_serializable(tmp_path):
    table = media.Table(columns=["a"], data=[[1]])
    table._save(str(tmp_path), "t", 0)
    for item in (media.Image(np.zeros((2, 3)), caption="c"), media.Histogram([1, 2]),
                 media.Audio([0.0, 0.5], sample_rate=2), media.Video(np.zeros((1, 1, 2, 2), np.uint8)), table):
        json.dumps(item._summary_json())
    assert table._summary_json()["path"].startswith("media/table/t_0_")
    assert media.Image(np.zeros((2, 3)))._summary_json()["width"] == 3
