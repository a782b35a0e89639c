"""SummaryWriter.add_audio and tbx.summary.audio: layouts, samples, the wire form, TensorBoard's view.

Clips are decoded with the standard library's ``wave`` module and compared
sample for sample with ``round(x * 32767)`` (the documented rule); events are
read independently (writer_util), with tbx.read_events, and with TensorBoard's
own loader and data provider.
"""

import io
import wave

import numpy as np
import pytest
import torch
from tensorboard import context as tb_context
from tensorboard.backend.event_processing import data_provider as tb_data_provider
from tensorboard.backend.event_processing import plugin_event_accumulator as plugin_acc
from tensorboard.backend.event_processing import plugin_event_multiplexer as tb_multiplexer
from tensorboard.compat.proto import summary_pb2 as tb_summary_pb2
from tensorboard.compat.proto import types_pb2 as tb_types_pb2
from tensorboard.plugins.audio import metadata as tb_audio_metadata
from tensorboard.plugins.audio import plugin_data_pb2 as tb_audio_pb2
from torch.utils.tensorboard import SummaryWriter as TorchWriter

from tbx import SummaryWriter
from tbx.summary import audio as audio_summary
from writer_util import legacy_accumulator, tbx_values_by_tag, to_ndarray, values_by_tag

RNG = np.random.default_rng(7)


def expected_audio(samples):
    """int16 ``[frames, channels]`` that a ``[channels, frames]`` float clip must decode to."""
    return np.rint(np.asarray(samples, dtype=np.float64) * 32767).astype(np.int16).T


def decode_wav(data):
    """(channels, sample_rate, int16 samples [frames, channels]) of WAV bytes, read with ``wave``."""
    with wave.open(io.BytesIO(data), "rb") as wav:
        assert wav.getsampwidth() == 2 and wav.getcomptype() == "NONE"
        channels, rate, frames = wav.getnchannels(), wav.getframerate(), wav.getnframes()
        pcm = np.frombuffer(wav.readframes(frames), dtype="<i2")
    assert pcm.size == frames * channels
    return channels, rate, pcm.reshape(frames, channels)


def clips(logdir, tag, run="."):
    """[(step, WAV bytes)] of an audio tag, read independently; checks the [k, 2] form on the way."""
    out = []
    for step, _wall, value in values_by_tag(logdir)[run, tag]:
        tensor = value.tensor
        assert tensor.dtype == tb_types_pb2.DT_STRING
        assert [d.size for d in tensor.tensor_shape.dim] == [1, 2]
        wav, label = tensor.string_val
        assert label == b""
        out.append((step, wav))
    return out


def one_clip(logdir, tag):
    [(_step, wav)] = clips(logdir, tag)
    return decode_wav(wav)


MONO = RNG.uniform(-1, 1, size=300)
STEREO = RNG.uniform(-1, 1, size=(2, 250))
SIX = RNG.uniform(-1, 1, size=(6, 40))

# (id, snd_tensor, expected [channels, frames] floats)
LAYOUTS = [
    ("mono_1d", MONO, MONO[None]),
    ("mono_torch_1xL", torch.from_numpy(MONO[None].copy()), MONO[None]),
    ("mono_Lx1", MONO[:, None], MONO[None]),
    ("mono_1x1xL", MONO[None, None], MONO[None]),
    ("mono_float32", MONO.astype(np.float32), MONO.astype(np.float32)[None]),
    ("mono_float16", MONO.astype(np.float16), MONO.astype(np.float16)[None]),
    ("mono_list", MONO.tolist(), MONO[None]),
    ("stereo_CxL", STEREO, STEREO),
    ("stereo_LxC", STEREO.T, STEREO),
    ("stereo_torch_1xCxL", torch.from_numpy(STEREO[None].copy()), STEREO),
    ("six_channels_LxC", SIX.T.copy(), SIX),
    ("square_is_channels_first", STEREO[:, :2], STEREO[:, :2]),
    ("one_sample", np.array([0.5]), np.array([[0.5]])),
    ("noncontiguous", STEREO[:, ::-2], STEREO[:, ::-2]),
]


def test_layouts_and_samples(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        for name, snd, _want in LAYOUTS:
            writer.add_audio(name, snd, 3, sample_rate=8000)
    for name, _snd, want in LAYOUTS:
        channels, rate, pcm = one_clip(tmp_path, name)
        assert (channels, rate) == (want.shape[0], 8000), name
        assert np.array_equal(pcm, expected_audio(want)), name


def test_full_scale_and_rounding(tmp_path):
    samples = np.array([-1.0, 1.0, 0.0, 0.5 / 32767, -0.5 / 32767, 1.5 / 32767, 0.4999 / 32767, -1e-9])
    with SummaryWriter(tmp_path) as writer:
        writer.add_audio("edges", samples, 0)
    _channels, _rate, pcm = one_clip(tmp_path, "edges")
    # round half to even, symmetric around 0: -1 -> -32767, never -32768
    assert pcm[:, 0].tolist() == [-32767, 32767, 0, 0, 0, 2, 0, 0]


def test_int16_is_taken_as_pcm(tmp_path):
    pcm = RNG.integers(-32768, 32768, size=(2, 100), dtype=np.int16)
    with SummaryWriter(tmp_path) as writer:
        writer.add_audio("pcm", pcm, 0, sample_rate=16000)
        writer.add_audio("pcm_torch", torch.from_numpy(pcm[0].copy()), 0, sample_rate=16000)
    assert np.array_equal(one_clip(tmp_path, "pcm")[2], pcm.T)
    assert np.array_equal(one_clip(tmp_path, "pcm_torch")[2][:, 0], pcm[0])


@pytest.mark.parametrize("rate,want", [
    (44100, 44100), (22050.4, 22050), (7999.5, 8000), (np.int64(16000), 16000), (torch.tensor(48000), 48000),
    (np.float32(11025.0), 11025), (1, 1),
])
def test_sample_rate(tmp_path, rate, want):
    with SummaryWriter(tmp_path) as writer:
        writer.add_audio("rate", MONO[:10], 0, sample_rate=rate)
    assert one_clip(tmp_path, "rate")[1] == want


def test_default_sample_rate_is_torchs(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_audio("a", MONO)
    assert one_clip(tmp_path, "a")[1] == 44100


def test_wav_bytes_equal_the_stdlib_writer():
    """Our header and interleaving equal what Python's ``wave`` writes for the same int16 frames."""
    for clip in (STEREO, MONO[None], SIX):
        pcm = np.rint(clip * 32767).astype(np.int16)
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(clip.shape[0])
            wav.setsampwidth(2)
            wav.setframerate(12345)
            wav.writeframes(np.ascontiguousarray(pcm.T).astype("<i2").tobytes())
        assert audio_summary.encode_wav(clip, 12345) == out.getvalue()


# --- the wire form and TensorBoard's view ---------------------------------------------

def test_wire_form(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        for step in range(3):
            writer.add_audio("a", MONO * (step + 1) / 3, step, sample_rate=8000)
    values = values_by_tag(tmp_path)[".", "a"]
    assert [s for s, _w, _v in values] == [0, 1, 2]
    first = values[0][2].metadata
    assert first.plugin_data.plugin_name == "audio"
    content = tb_audio_pb2.AudioPluginData.FromString(first.plugin_data.content)
    assert content.version == 0 and content.encoding == tb_audio_pb2.AudioPluginData.WAV
    # left UNKNOWN on purpose (as TensorBoard's own writer): see tbx.summary.audio
    assert first.data_class == tb_summary_pb2.DATA_CLASS_UNKNOWN
    assert all(not v.HasField("metadata") for _s, _w, v in values[1:])
    wavs = clips(tmp_path, "a")
    for step, wav in wavs:
        assert np.array_equal(decode_wav(wav)[2], expected_audio(MONO[None] * (step + 1) / 3))
    ours = tbx_values_by_tag(tmp_path)[".", "a"]
    assert [v.SerializeToString() for _s, _w, v in ours] == [v.SerializeToString() for _s, _w, v in values]


def test_tensorboard_loader_and_data_provider_serve_one_wav_per_step(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        for step in range(4):
            writer.add_audio("a", STEREO * (step + 1) / 4, step, sample_rate=16000)
    acc = plugin_acc.EventAccumulator(str(tmp_path), tensor_size_guidance={"audio": 0})
    acc.Reload()
    assert acc.Tags()["tensors"] == ["a"]
    metadata = acc.SummaryMetadata("a")
    assert metadata.data_class == tb_summary_pb2.DATA_CLASS_BLOB_SEQUENCE  # inferred by the loader
    assert tb_audio_metadata.parse_plugin_metadata(metadata.plugin_data.content).encoding == 11  # served as audio/wav
    events = acc.Tensors("a")
    assert [e.step for e in events] == [0, 1, 2, 3]
    for event in events:
        [wav] = to_ndarray(event.tensor_proto)  # the label column is projected away
        assert np.array_equal(decode_wav(wav)[2], expected_audio(STEREO * (event.step + 1) / 4))

    multiplexer = tb_multiplexer.EventMultiplexer(tensor_size_guidance={"audio": 0})
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    provider = tb_data_provider.MultiplexerDataProvider(multiplexer, str(tmp_path))
    ctx = tb_context.RequestContext()
    series = provider.read_blob_sequences(ctx, experiment_id="", plugin_name="audio", downsample=100)["."]["a"]
    assert [d.step for d in series] == [0, 1, 2, 3]
    for datum, (_step, wav) in zip(series, clips(tmp_path, "a")):
        [blob] = datum.values
        assert provider.read_blob(ctx, blob_key=blob.blob_key) == wav


def test_samples_match_torch_within_truncation(tmp_path):
    """torch truncates ``x * 32767`` toward zero, tbx rounds: the same clip within one step."""
    snd = RNG.uniform(-1, 1, size=(1, 500)).astype(np.float32)
    with SummaryWriter(tmp_path / "tbx") as writer:
        writer.add_audio("a", torch.from_numpy(snd), 5, sample_rate=22050)
    with TorchWriter(tmp_path / "torch") as torch_writer:
        torch_writer.add_audio("a", torch.from_numpy(snd), 5, sample_rate=22050)
    [theirs] = legacy_accumulator(tmp_path / "torch").Audio("a")
    t_channels, t_rate, t_pcm = decode_wav(theirs.encoded_audio_string)
    channels, rate, pcm = one_clip(tmp_path / "tbx", "a")
    assert (channels, rate, pcm.shape) == (t_channels, t_rate, t_pcm.shape) == (1, 22050, (500, 1))
    assert np.abs(pcm.astype(int) - t_pcm.astype(int)).max() <= 1


def test_mutating_after_the_call_does_not_change_the_clip(tmp_path):
    wanted = []
    with SummaryWriter(tmp_path) as writer:
        for step in range(30):
            snd = RNG.uniform(-1, 1, size=(2, 200))
            tensor = torch.from_numpy(RNG.uniform(-1, 1, size=200))
            wanted.append((expected_audio(snd), expected_audio(tensor.numpy()[None])))
            writer.add_audio("np", snd, step)
            snd[:] = 0
            writer.add_audio("torch", tensor, step)
            tensor.fill_(1.0)
    for tag, index in (("np", 0), ("torch", 1)):
        got = clips(tmp_path, tag)
        assert [s for s, _w in got] == list(range(30))
        for (_step, wav), want in zip(got, wanted):
            assert np.array_equal(decode_wav(wav)[2], want[index]), tag


# --- the caller-thread checks of tbx.summary.audio (writer-level bad input: test_writer_media) --

@pytest.mark.parametrize("rate", [0, -1, 0.4, float("nan"), float("inf"), 2**40])
def test_sample_rate_value_rejects(rate):
    with pytest.raises(ValueError, match="sample_rate"):
        audio_summary.sample_rate_value(rate)


@pytest.mark.parametrize("rate", [True, None, "44100", [44100]])
def test_sample_rate_value_type(rate):
    with pytest.raises(TypeError, match="sample_rate"):
        audio_summary.sample_rate_value(rate)


def test_to_channels_first_puts_channels_first_and_the_snapshot_copies():
    from tbx import _snapshot

    data = STEREO.T  # [L, C]
    clip = audio_summary.to_channels_first(data, 8000)
    assert clip.shape == (2, 250) and np.array_equal(clip, STEREO)
    for view in (clip, np.ascontiguousarray(clip)):
        copy, buffer = _snapshot.snapshot(view)
        assert np.array_equal(copy, STEREO) and not np.shares_memory(copy, data)
        _snapshot.recycle(buffer)
    again, buffer = _snapshot.snapshot(np.ascontiguousarray(clip))  # a recycled buffer, overwritten
    assert np.array_equal(again, STEREO)
