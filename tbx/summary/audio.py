"""Audio: 16-bit PCM WAV clips in a DT_STRING ``[k, 2]`` tensor with ``audio`` metadata.

Wire form: plugin ``audio``, ``AudioPluginData{version=0, encoding=WAV}``, a
DT_STRING tensor of shape ``[k, 2]`` whose rows are ``(wav bytes, label)``;
tbx writes one clip per call with an empty label (TensorBoard discards labels).
That is the form TensorBoard's own audio summaries use, and like them tbx
leaves ``data_class`` UNKNOWN: both loaders then infer BLOB_SEQUENCE and the
Python loader projects the ``[k, 2]`` rows onto their first column, so each
clip is exactly one blob. (With BLOB_SEQUENCE written explicitly, the Python
data provider keeps the label column and reports 2k blobs per step.) The
response content type is ``audio/wav`` on both loaders.

Sample layouts (what ``snd_tensor`` may look like):

* ``[L]``: mono, L frames.
* 2-D: the **shorter axis is the channel axis** (the first axis on a tie), so
  torch's ``[1, L]``, torchaudio's ``[C, L]`` and tensorboardX/soundfile's
  ``[L, C]`` all mean what their authors meant.
* More dimensions: axes of size 1 are dropped first (as torch does with
  ``[1, 1, L]``); what remains must be 1-D or 2-D.

Sample values: floats must be finite and lie in [-1, 1]; they become
``round(x * 32767)``, so -1 and 1 map to -32767 and 32767 and the mapping is
symmetric (torch truncates toward zero instead). int16 samples are taken as
PCM as they are. Other dtypes are errors.

``sample_rate`` is rounded to an integer number of Hz, as the WAV header (and
Python's ``wave`` module, which torch uses) requires.
"""

import math
import struct

import numpy as np

from tbx._convert import scalar_value
from tbx.proto import plugin_data_pb2
from tbx.summary._metadata import metadata, string_tensor_record

PLUGIN_NAME = "audio"
METADATA = metadata(
    PLUGIN_NAME,
    plugin_data_pb2.AudioPluginData(version=0, encoding=plugin_data_pb2.AudioPluginData.WAV).SerializeToString(),
)
METADATA_BYTES = METADATA.SerializeToString()
PCM_SCALE = 32767
"""Full scale of the 16-bit samples: a float sample x becomes round(x * PCM_SCALE)."""

_UINT32_MAX = (1 << 32) - 1
_MAX_CHANNELS = (1 << 16) - 1  # the WAV header stores the channel count in 16 bits


def sample_rate_value(sample_rate, name="sample_rate"):
    """The WAV frame rate (a positive int) from a positive real number of Hz.

    Raises:
        TypeError: not a real number (bool included).
        ValueError: not finite, not positive, or rounds to 0 Hz or above 2**31 Hz.
    """
    rate = scalar_value(sample_rate, name)
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"{name} must be a positive number of samples per second, got {sample_rate!r}")
    hz = int(round(rate))
    if hz < 1:
        raise ValueError(f"{name} {sample_rate!r} rounds to {hz} Hz; the WAV header needs at least 1 Hz")
    if hz > _UINT32_MAX // 2:
        raise ValueError(f"{name} {sample_rate!r} is too high for a WAV header (at most {_UINT32_MAX // 2} Hz)")
    return hz


def to_channels_first(array, sample_rate, name="snd_tensor"):
    """A ``[channels, frames]`` view of ``array`` (float in [-1, 1] or int16), validated.

    Called on the caller's thread: checks dtype, shape and range (against the
    limits of a WAV header at ``sample_rate`` Hz). The caller snapshots it.

    Raises:
        TypeError: a dtype other than float or int16.
        ValueError: no samples, too many dimensions, NaN or a float outside [-1, 1],
            or more data than a WAV file can describe.
    """
    kind = array.dtype.kind
    if kind != "f" and array.dtype != np.int16:
        raise TypeError(f"{name} has dtype {array.dtype}; expected float samples in [-1, 1] or int16 PCM samples")
    if array.ndim == 0:
        raise ValueError(f"{name} is a single number (shape ()); expected samples of shape [L], [C, L] or [L, C]")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); expected at least one sample")
    shape = array.shape
    if array.ndim > 2:
        array = array.reshape([d for d in shape if d != 1] or [1])
        if array.ndim > 2:
            raise ValueError(
                f"{name} has shape {shape}; expected [L] (mono), [C, L] or [L, C] "
                "(size-1 axes are ignored)"
            )
    if array.ndim == 1:
        array = array[None, :]
    elif array.shape[0] > array.shape[1]:
        array = array.T  # [L, C]: the shorter axis is the channel axis
    channels, frames = array.shape
    if channels > _MAX_CHANNELS:
        raise ValueError(f"{name} has shape {shape}: {channels} channels; a WAV file holds at most {_MAX_CHANNELS}")
    if 2 * channels * frames > _UINT32_MAX - 36:
        raise ValueError(f"{name} has shape {shape}: too many samples for one WAV file (4 GiB limit)")
    if 2 * channels * sample_rate > _UINT32_MAX:
        raise ValueError(f"{name} has {channels} channels: too many at sample_rate {sample_rate} Hz for a WAV header")
    if kind == "f":
        lo, hi = array.min(), array.max()
        if not (lo >= -1.0 and hi <= 1.0):  # also true for NaN, which fails every comparison
            if np.isnan(lo) or np.isnan(hi):
                raise ValueError(f"{name} contains NaN; expected finite samples in [-1, 1]")
            raise ValueError(
                f"{name} has samples in [{float(lo):g}, {float(hi):g}]; expected floats in [-1, 1] "
                "(normalize, e.g. x / abs(x).max(), or clip before logging)"
            )
    return array


def to_pcm16(clip):
    """int16 samples of a ``[channels, frames]`` clip (float in [-1, 1] or int16)."""
    if clip.dtype == np.int16:
        return clip
    scaled = clip.astype(np.float64)  # one temporary, worked on in place
    scaled *= PCM_SCALE
    return np.rint(scaled, out=scaled).astype(np.int16)


def wav_parts(clip, sample_rate):
    """A 16-bit PCM WAV file of a ``[channels, frames]`` clip as [header, samples] buffers."""
    pcm = to_pcm16(clip)
    channels = pcm.shape[0]
    data = memoryview(np.ascontiguousarray(pcm.T, dtype="<i2")).cast("B")  # channels interleaved per frame
    block_align = 2 * channels
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + data.nbytes, b"WAVE",
        b"fmt ", 16, 1, channels, sample_rate, sample_rate * block_align, block_align, 16,
        b"data", data.nbytes,
    )
    return [header, data]


def encode_wav(clip, sample_rate):
    """A 16-bit PCM WAV file (bytes) of a ``[channels, frames]`` clip at ``sample_rate`` Hz."""
    return b"".join(wav_parts(clip, sample_rate))


def audio_record(tag, clip, sample_rate, step, wall_time, with_metadata):
    """Framed Event bytes with one WAV clip (runs on the encoder pool)."""
    wav = wav_parts(clip, sample_rate)
    return string_tensor_record(tag, step, wall_time, (1, 2), (wav, b""), METADATA_BYTES if with_metadata else None)
