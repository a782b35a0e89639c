"""W&B media types (``wandb.Image``, ``Histogram``, ``Audio``, ``Video``, ``Table``) for ``import tbx as wandb``.

Each object converts, validates and copies its input when it is created (so
bad input raises at the constructor, as in W&B, and later changes to the
caller's array have no effect) and knows how to write itself into a
``tbx.SummaryWriter`` with ``_tb_log(writer, tag, step)``:

=========  ==============================================================
Image      ``add_image`` (HWC uint8); the caption as text ``<tag>/caption``
Histogram  ``add_histogram_raw`` with its own edges and counts
Audio      ``add_audio``; the caption as text ``<tag>/caption``
Video      ``add_video`` (an animated GIF); the caption as text
Table      ``add_text`` as a table (header row, then rows of str), and a
           W&B ``.table.json`` file via ``_save(files_dir, key, step)``
=========  ==============================================================

``log_media_list(writer, tag, items, step)`` logs a list of objects of one
type (a list of Images becomes N samples of one step, as W&B shows them).

Thread-safety: the objects are immutable once built (Table's ``add_data`` /
``add_column`` excepted); ``_tb_log`` is as thread-safe as the writer.
Pillow is imported only for PIL input, image/GIF files and mode conversion;
matplotlib only for figures.
"""

import hashlib
import io
import json
import math
import os
import pathlib
import wave
import warnings

import numpy as np

from tbx import _convert
from tbx.summary import image as _image

__all__ = ["Audio", "Histogram", "Image", "Table", "Video", "log_media_list"]

_IMAGE_FILE_TYPES = ["png", "jpg", "jpeg", "bmp"]
_VIDEO_FORMATS = ("gif", "mp4", "webm", "ogg")
_MODES = {"L": 1, "RGB": 3, "RGBA": 4}


def _is_path(value):
    return isinstance(value, (str, pathlib.PurePath))


def _is_reference(path):
    return "://" in str(path)


def _caption_value(caption, name="caption"):
    if caption is not None and not isinstance(caption, str):
        raise TypeError(f"{name} must be a str or None, got {type(caption).__name__}")
    return caption


def _log_caption(writer, tag, caption, step):
    if caption:
        writer.add_text(tag + "/caption", caption, step)


# -- pixels ---------------------------------------------------------------------


def to_uint8_pixels(array, name="data_or_path"):
    """uint8 pixels by W&B's 0.20-0.28 rule (see Image); warns when values are clipped."""
    if array.dtype == np.uint8:
        return np.array(array, copy=True)
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} has dtype {array.dtype}; expected numbers (uint8 0-255, or floats)")
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or infinite values; image pixels must be finite")
    lo, hi = float(values.min()), float(values.max())
    if array.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        values = values * 255.0
    elif array.dtype.kind == "f" and lo >= -1.0 and hi <= 1.0:
        values = (values + 1.0) * 127.5
    elif lo < 0.0 or hi > 255.0:
        warnings.warn(
            f"{name}: pixel values span [{lo:g}, {hi:g}]; values outside [0, 255] are clipped",
            RuntimeWarning,
            stacklevel=4,
        )
    return values.clip(0.0, 255.0).astype(np.uint8)


def _squeeze_leading(array, keep):
    while array.ndim > keep and array.shape[0] == 1:
        array = array[0]
    return array


def _figure_pixels(figure, file_type):
    """Render a matplotlib figure (or an artist's figure) to an RGBA/RGB array via savefig."""
    from PIL import Image as PILImage

    fig = figure if hasattr(figure, "savefig") else getattr(figure, "figure", None)
    if fig is None or not hasattr(fig, "savefig"):
        raise TypeError(f"data_or_path: a matplotlib {type(figure).__name__} without a figure cannot be rendered")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    buffer.seek(0)
    with PILImage.open(buffer) as img:
        return np.array(img.convert("RGBA"))


def _pil_pixels(img):
    if img.mode not in ("1", "L", "RGB", "RGBA"):
        alpha = "A" in img.getbands() or "transparency" in img.info
        img = img.convert("RGBA" if alpha else "RGB")
    return np.array(img, copy=True)


class Image:
    """An image, as ``wandb.Image``.

    Accepted ``data_or_path``:

    * a numpy array, **HWC or HW** (axes of size 1 are squeezed first, so
      ``(1, H, W, 3)`` and ``(H, W, 1)`` work); a numpy ``(3, H, W)`` is an
      error, as in W&B (``ValueError: Un-supported shape for image conversion``);
    * a torch tensor, **CHW** (or HW), permuted to HWC;
    * a PIL image; a file path (``str`` or ``Path``, opened with Pillow);
    * a matplotlib figure or artist (saved to PNG, RGBA);
    * another ``Image`` (copied; a new ``caption`` replaces the old one).

    Pixel values (W&B 0.20-0.28's rule, which tbx keeps because most code
    relies on it; W&B 0.29+ casts to uint8 instead, turning float images black):

    * uint8: as they are; bool: 0 / 255;
    * floats all in [0, 1]: ``x * 255``; else all in [-1, 1]: ``(x + 1) * 127.5``
      (truncated to integers, so 0.5 becomes 127);
    * anything else (ints, floats beyond [-1, 1]): clipped to [0, 255], with a
      warning when a value lies outside that range. NaN/inf are errors.

    One channel is ``L``, three ``RGB``, four ``RGBA`` (``RGB`` for jpg/jpeg);
    other channel counts raise ValueError. ``mode`` (``L``, ``RGB``, ``RGBA``)
    converts the pixels with Pillow.

    TensorBoard gets a PNG whatever ``file_type`` says; ``file_type`` (png,
    jpg, jpeg, bmp) is validated and recorded. The caption is logged as text
    under ``<tag>/caption`` at the same step. ``boxes``, ``masks``, ``classes``
    and ``grouping`` are accepted and kept on the object, but not drawn.

    Example::

        wandb.log({"sample": wandb.Image(img_hwc, caption="epoch 3")})
    """

    MAX_ITEMS = 108
    MAX_DIMENSION = 65500

    def __init__(self, data_or_path, mode=None, caption=None, grouping=None, classes=None, boxes=None,
                 masks=None, file_type=None):
        self.caption = _caption_value(caption)
        if file_type is not None and file_type not in _IMAGE_FILE_TYPES:
            raise ValueError(f"file_type must be one of {_IMAGE_FILE_TYPES}, got {file_type!r}")
        if mode is not None and mode not in _MODES:
            raise ValueError(f"mode must be one of {list(_MODES)} or None, got {mode!r}")
        if boxes is not None and not isinstance(boxes, dict):
            raise ValueError('Images "boxes" argument must be a dictionary')
        if masks is not None and not isinstance(masks, dict):
            raise ValueError('Images "masks" argument must be a dictionary')
        self.grouping, self.classes, self.boxes, self.masks = grouping, classes, boxes, masks
        self.path = None
        self.format = file_type or "png"
        if isinstance(data_or_path, Image):
            pixels = data_or_path._pixels
            self.caption = self.caption if caption is not None else data_or_path.caption
            if file_type is None:
                self.format = data_or_path.format
        elif _is_path(data_or_path):
            pixels = self._from_file(os.fspath(data_or_path), file_type)
        elif _convert.is_torch_tensor(data_or_path):
            array = _squeeze_leading(_convert.to_numpy(data_or_path, "data_or_path"), 3)
            if array.ndim == 3:
                array = array.transpose(1, 2, 0)
            pixels = self._from_array(array, keep_channels_last=True)
        elif type(data_or_path).__module__.startswith("PIL.") and hasattr(data_or_path, "getbands"):
            pixels = _pil_pixels(data_or_path)
        elif type(data_or_path).__module__.startswith("matplotlib."):
            pixels = _figure_pixels(data_or_path, self.format)
        elif isinstance(data_or_path, (np.ndarray, list, tuple)) or hasattr(data_or_path, "__array__"):
            array = _convert.to_numpy(data_or_path, "data_or_path")
            if array.ndim > 2:
                array = array.squeeze()
            pixels = self._from_array(array)
        else:
            raise TypeError(
                "data_or_path must be a numpy array (HWC or HW), a torch tensor (CHW), a PIL image, "
                f"a file path, a matplotlib figure or a wandb Image, got {type(data_or_path).__name__}"
            )
        if pixels.ndim == 2:
            pixels = pixels[..., None]
        if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3, 4) or 0 in pixels.shape:
            raise ValueError(f"Un-supported shape for image conversion {list(pixels.shape)}")
        if pixels.shape[-1] == 4 and self.format in ("jpg", "jpeg"):
            warnings.warn("JPEG format does not support transparency. Ignoring alpha channel.", stacklevel=2)
            pixels = pixels[..., :3]
        if mode is not None and _MODES[mode] != pixels.shape[-1]:
            pixels = self._convert_mode(pixels, mode)
        height, width = pixels.shape[:2]
        if max(height, width) > self.MAX_DIMENSION:
            raise ValueError(
                f"image is {width}x{height} pixels; W&B and PNG viewers limit each side to {self.MAX_DIMENSION}"
            )
        self._pixels = np.ascontiguousarray(pixels)
        self._pixels.flags.writeable = False
        self.width, self.height = int(width), int(height)
        self.mode = {1: "L", 3: "RGB", 4: "RGBA"}[pixels.shape[-1]]

    @staticmethod
    def _from_array(array, keep_channels_last=True):
        if array.ndim == 3 and array.shape[-1] in (1, 3, 4) or array.ndim == 2:
            return to_uint8_pixels(array)
        raise ValueError(
            f"Un-supported shape for image conversion {list(array.shape)}: numpy images must be HWC or HW "
            "(1, 3 or 4 channels last), torch tensors CHW; for a CHW numpy array pass arr.transpose(1, 2, 0)"
        )

    def _from_file(self, path, file_type):
        if _is_reference(path):
            raise ValueError(f"data_or_path {path!r} is a remote reference; tbx works offline and needs a local image file")
        from PIL import Image as PILImage

        with PILImage.open(path) as img:
            img.load()
            pixels = _pil_pixels(img)
        self.path = path
        if file_type is None:
            ext = os.path.splitext(path)[1][1:].lower()
            self.format = ext or "png"
        return pixels

    @staticmethod
    def _convert_mode(pixels, mode):
        from PIL import Image as PILImage

        source = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
        converted = np.array(PILImage.fromarray(source).convert(mode))
        return converted[..., None] if converted.ndim == 2 else converted

    @property
    def image(self):
        """The pixels as a PIL image (Pillow is needed)."""
        from PIL import Image as PILImage

        pixels = self._pixels[..., 0] if self._pixels.shape[-1] == 1 else self._pixels
        return PILImage.fromarray(pixels)

    def to_numpy(self):
        """A copy of the HWC uint8 pixels."""
        return np.array(self._pixels, copy=True)

    def _summary_json(self):
        out = {"_type": "image-file", "format": self.format, "width": self.width, "height": self.height}
        if self.caption is not None:
            out["caption"] = self.caption
        return out

    def _tb_log(self, writer, tag, step):
        """Write the image (``add_image``, HWC) and its caption into ``writer`` at ``step``."""
        pixels = self._pixels
        if pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[-1] in (1, 3, 4):
            writer._add_owned_images(tag, [pixels], step)  # the Image's own copy: no second one
        else:
            writer.add_image(tag, pixels, step, dataformats="HWC")
        _log_caption(writer, tag, self.caption, step)

    def __repr__(self):
        return f"<tbx.media.Image {self.width}x{self.height} {self.mode} caption={self.caption!r}>"


# -- histogram ------------------------------------------------------------------


class Histogram:
    """A histogram, as ``wandb.Histogram``.

    Args:
        sequence: numbers (list, numpy array, torch tensor), binned with
            ``np.histogram(sequence, bins=num_bins)``.
        np_histogram: ``(counts, edges)``, e.g. ``np.histogram(x)``'s result, used as given.
        num_bins: number of equal-width bins for ``sequence`` (default 64, at most 512).

    Raises:
        ValueError: more than 512 bins ("The maximum length of a histogram is
            512"), ``len(edges) != len(counts) + 1``, an ``np_histogram`` that
            is not a pair, NaN/inf in ``sequence``.

    Attributes:
        histogram: the counts (list); bins: the edges (list), W&B's names.
    """

    MAX_LENGTH = 512

    def __init__(self, sequence=None, np_histogram=None, num_bins=64):
        if np_histogram is not None:
            if not isinstance(np_histogram, (tuple, list)) or len(np_histogram) != 2:
                raise ValueError(
                    "Expected np_histogram to be a tuple of (values, bin_edges) or sequence to be specified"
                )
            counts = np.asarray(_convert.to_numpy(np_histogram[0], "np_histogram[0]"), dtype=np.float64).ravel()
            edges = np.asarray(_convert.to_numpy(np_histogram[1], "np_histogram[1]"), dtype=np.float64).ravel()
            if len(counts) > self.MAX_LENGTH:
                raise ValueError(f"The maximum length of a histogram is {self.MAX_LENGTH}")
            if len(counts) + 1 != len(edges):
                raise ValueError(
                    f"len(bins) must be len(histogram) + 1 (np_histogram has {len(counts)} counts and {len(edges)} edges)"
                )
            if not (np.isfinite(counts).all() and np.isfinite(edges).all()) or (counts < 0).any():
                raise ValueError("np_histogram: counts must be finite and non-negative, edges finite")
            if (np.diff(edges) < 0).any():
                raise ValueError("np_histogram: bin edges must be increasing")
            self.histogram = [int(c) if float(c).is_integer() else float(c) for c in counts]
            self.bins = edges.tolist()
            return
        if sequence is None:
            raise ValueError("Expected np_histogram to be a tuple of (values, bin_edges) or sequence to be specified")
        if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
            raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
        if num_bins > self.MAX_LENGTH:
            raise ValueError(f"The maximum length of a histogram is {self.MAX_LENGTH}")
        values = _convert.to_numpy(sequence, "sequence")
        if values.dtype.kind not in "fiub":
            raise TypeError(f"sequence must hold real numbers, got dtype {values.dtype}")
        values = values.astype(np.float64).ravel()
        if not np.isfinite(values).all():
            raise ValueError("sequence contains NaN or infinite values; a histogram needs finite numbers")
        counts, edges = np.histogram(values, bins=int(num_bins))
        self.histogram = counts.tolist()
        self.bins = edges.tolist()

    def _summary_json(self):
        return {"_type": "histogram", "values": list(self.histogram), "bins": list(self.bins)}

    def _tb_log(self, writer, tag, step):
        """Write the histogram with ``add_histogram_raw`` (edges and counts unchanged)."""
        counts = np.asarray(self.histogram, dtype=np.float64)
        edges = np.asarray(self.bins, dtype=np.float64)
        centers = (edges[:-1] + edges[1:]) / 2
        if counts.size == 0 or counts.sum() == 0:
            counts = np.zeros(max(counts.size, 1))
            edges = edges if edges.size >= 2 else np.array([0.0, 1.0])
        writer.add_histogram_raw(
            tag, min=edges[0], max=edges[-1], num=float(counts.sum()), sum=float((counts * centers).sum()),
            sum_squares=float((counts * centers ** 2).sum()), bucket_limits=edges[1:], bucket_counts=counts,
            global_step=step,
        )

    def __repr__(self):
        return f"<tbx.media.Histogram {len(self.histogram)} bins>"


# -- audio ----------------------------------------------------------------------


def _read_wav(path):
    with wave.open(path, "rb") as wav:
        rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
        frames = wav.readframes(wav.getnframes())
    if width == 1:
        samples = (np.frombuffer(frames, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(frames, "<i2").astype(np.float32) / 32768.0
    elif width == 4:
        samples = np.frombuffer(frames, "<i4").astype(np.float32) / 2147483648.0
    else:
        raise ValueError(f"{path}: {8 * width}-bit WAV samples are not supported; use 8, 16 or 32-bit PCM")
    return samples.reshape(-1, channels), rate


class Audio:
    """A sound clip, as ``wandb.Audio``.

    Args:
        data_or_path: samples (list, numpy array, torch tensor; ``[L]`` mono or
            ``[L, C]`` as soundfile takes them; ``[C, L]`` also works, the
            shorter axis being the channels) or the path of a WAV file. Floats
            beyond [-1, 1] are clipped (with a warning), as soundfile does;
            int16 samples are PCM.
        sample_rate: samples per second; required with raw samples (W&B's
            message), read from the file for a path.
        caption: logged as text under ``<tag>/caption``.

    A path to another format (mp3, flac, ...) cannot be decoded without extra
    packages: it is logged as a text note naming the file, with a warning.
    """

    def __init__(self, data_or_path, sample_rate=None, caption=None):
        self.caption = _caption_value(caption)
        self.path = None
        self._samples = None
        if _is_path(data_or_path):
            path = os.fspath(data_or_path)
            if _is_reference(path):
                raise ValueError("Audio media created by a reference to external storage cannot currently be added to a run")
            if not os.path.isfile(path):
                raise FileNotFoundError(f"data_or_path: no audio file at {path!r}")
            self.path = path
            if path.lower().endswith(".wav"):
                self._samples, self.sample_rate = _read_wav(path)
            else:
                self.sample_rate = sample_rate
            self.duration = None if self._samples is None else len(self._samples) / float(self.sample_rate)
            return
        if sample_rate is None:
            raise ValueError('Argument "sample_rate" is required when instantiating wandb.Audio with raw data.')
        from tbx.summary import audio as _audio

        rate = _audio.sample_rate_value(sample_rate)
        samples = _convert.to_numpy(data_or_path, "data_or_path")
        if samples.dtype in (np.int32, np.uint8):  # PCM, as soundfile reads them
            samples = samples.astype(np.float32) / 2147483648.0 if samples.dtype == np.int32 else \
                (samples.astype(np.float32) - 128.0) / 128.0
        if samples.dtype.kind == "f" or samples.dtype.kind in "iu" and samples.dtype != np.int16:
            samples = samples.astype(np.float32)
            if not np.isfinite(samples).all():
                raise ValueError("data_or_path contains NaN or infinite samples")
            if samples.size and float(np.abs(samples).max()) > 1.0:
                warnings.warn("Audio samples beyond [-1, 1] are clipped", RuntimeWarning, stacklevel=2)
                samples = samples.clip(-1.0, 1.0)
        clip = _audio.to_channels_first(samples, rate, "data_or_path")  # validates the layout
        self._samples = np.array(clip, copy=True).T
        self.sample_rate = rate
        self.duration = self._samples.shape[0] / float(rate)

    def _summary_json(self):
        out = {"_type": "audio-file", "sample_rate": self.sample_rate, "duration": self.duration}
        if self.caption is not None:
            out["caption"] = self.caption
        return out

    def _tb_log(self, writer, tag, step):
        """Write the clip with ``add_audio`` (a note for undecodable files) and its caption."""
        if self._samples is None:
            warnings.warn(f"Audio {self.path!r}: only WAV files can be shown in TensorBoard; logged as a text note",
                          RuntimeWarning, stacklevel=2)
            writer.add_text(tag, f"audio file `{self.path}` (not a WAV file; not playable in TensorBoard)", step)
        else:
            writer.add_audio(tag, self._samples, step, sample_rate=self.sample_rate)
        _log_caption(writer, tag, self.caption, step)


# -- video ----------------------------------------------------------------------


def _gif_frames(source):
    from PIL import Image as PILImage, ImageSequence

    with PILImage.open(source) as gif:
        frames = [np.array(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]
    return np.stack(frames)[None]  # N T H W C


class Video:
    """A video, as ``wandb.Video``; TensorBoard shows it as an animated GIF.

    Args:
        data_or_path: ``[T, C, H, W]`` or ``[N, T, C, H, W]`` numpy array or
            torch tensor (N clips are tiled into one, as W&B and torch do), a
            file path, or a file-like object (then ``format`` is required).
        caption: logged as text under ``<tag>/caption``.
        fps: frames per second (default 4).
        format: gif, mp4, webm or ogg. With an array, None means gif (W&B
            before 0.31; 0.31 requires the argument); TensorBoard always gets
            a GIF.

    Pixel values follow Image's rule (uint8 as is, floats in [0, 1] scaled
    by 255, ...); W&B itself casts to uint8. GIF files are decoded with
    Pillow and shown; mp4/webm/ogg files are logged as a text note naming the
    file (tbx does not bundle a video decoder), with a warning.
    """

    EXTS = _VIDEO_FORMATS

    def __init__(self, data_or_path, caption=None, fps=None, format=None):
        from tbx.summary import video as _video

        self.caption = _caption_value(caption)
        self.fps = _video.fps_value(4 if fps is None else fps)
        self.path = None
        self._frames = None  # N T H W C uint8
        if format is not None and format not in _VIDEO_FORMATS:
            raise ValueError("wandb.Video accepts {} formats".format(", ".join(_VIDEO_FORMATS)))
        if _is_path(data_or_path):
            path = os.fspath(data_or_path)
            ext = os.path.splitext(path)[1][1:].lower()
            if ext not in _VIDEO_FORMATS:
                raise ValueError("wandb.Video accepts {} formats".format(", ".join(_VIDEO_FORMATS)))
            if not os.path.isfile(path):
                raise FileNotFoundError(f"data_or_path: no video file at {path!r}")
            self.path, self.format = path, ext
            if ext == "gif":
                self._frames = _gif_frames(path)
        elif hasattr(data_or_path, "read"):
            if format is None:
                raise ValueError("wandb.Video requires a `format` argument when initializing with a file-like object.")
            self.format = format
            data = data_or_path.read()
            if format == "gif":
                self._frames = _gif_frames(io.BytesIO(data))
            else:
                self._bytes = data
        else:
            self.format = format or "gif"
            array = _convert.to_numpy(data_or_path, "data_or_path")
            if array.ndim < 4:
                raise ValueError(
                    f"Video must be at least 4 dimensions: time, channels, height, width (got shape {array.shape})"
                )
            if array.ndim == 4:
                array = array[None]
            checked = _video.check_video(array, "NTCHW", "data_or_path")  # shape, channels, copy
            self._frames = to_uint8_pixels(checked.transpose(0, 1, 3, 4, 2))
        if self._frames is not None:
            self._frames.flags.writeable = False
            self.height, self.width = (int(s) for s in self._frames.shape[2:4])
        else:
            self.height = self.width = None

    def _summary_json(self):
        out = {"_type": "video-file", "format": self.format, "width": self.width, "height": self.height}
        if self.caption is not None:
            out["caption"] = self.caption
        return out

    def _tb_log(self, writer, tag, step):
        """Write the clip with ``add_video`` (NTHWC; a note for mp4/webm/ogg files) and its caption."""
        if self._frames is None:
            where = self.path or f"<{self.format} data>"
            warnings.warn(f"Video {where}: only GIFs and arrays can be shown in TensorBoard; logged as a text note",
                          RuntimeWarning, stacklevel=2)
            writer.add_text(tag, f"video `{where}` ({self.format}; not playable in TensorBoard)", step)
        else:
            writer.add_video(tag, self._frames, step, fps=self.fps, dataformats="NTHWC")
        _log_caption(writer, tag, self.caption, step)


# -- table ----------------------------------------------------------------------


def _json_cell(value):
    """A JSON-ready cell: numpy/torch scalars to Python, media to their summary JSON, others kept."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if _convert.is_torch_tensor(value) or isinstance(value, np.ndarray):
        array = _convert.to_numpy(value, "cell")
        return array.item() if array.size == 1 else array.tolist()
    if isinstance(value, (list, tuple)):
        return [_json_cell(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_cell(v) for k, v in value.items()}
    if hasattr(value, "_summary_json"):
        return value._summary_json()
    return str(value)


def _text_cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


class Table:
    """A table, as ``wandb.Table``.

    Args:
        columns: column names (default W&B's legacy ``["Input", "Output", "Expected"]``).
        data: a list of rows, a 2-D numpy array or a pandas DataFrame.
        rows: the legacy name of ``data``.
        dataframe: a pandas DataFrame (its column names unless ``columns`` is given).
        dtype, optional, allow_mixed_types, log_mode: accepted for
            compatibility; tbx does not type-check columns.

    In TensorBoard the table is a text table (header row first) under the
    logged key; ``_save(files_dir, key, step)`` writes W&B's
    ``media/table/<key>_<step>_<sha256[:20]>.table.json`` file
    (``{"columns": [...], "data": [[...]]}``).

    Raises:
        ValueError: a row whose length differs from the number of columns
            ("This table expects N columns: [...], found M").
    """

    MAX_ROWS = 10000
    MAX_ARTIFACT_ROWS = 200000

    def __init__(self, columns=None, data=None, rows=None, dataframe=None, dtype=None, optional=True,
                 allow_mixed_types=False, log_mode="IMMUTABLE"):
        if data is not None and type(data).__module__.startswith("pandas") and dataframe is None:
            data, dataframe = None, data
        if dataframe is not None:
            if columns is None:
                columns = [str(c) for c in dataframe.columns]
            data = dataframe.values.tolist() if len(dataframe.columns) else []
        if columns is None:
            columns = ["Input", "Output", "Expected"]
        if isinstance(columns, str) or not isinstance(columns, (list, tuple)):
            raise TypeError(f"columns must be a list of column names, got {type(columns).__name__}")
        for c in columns:
            if not isinstance(c, (str, int)):
                raise TypeError(f"columns: each name must be a str or int, got {c!r}")
        if len(set(columns)) != len(columns):
            raise ValueError(f"columns must be unique, got {list(columns)}")
        self.columns = list(columns)
        self.log_mode = log_mode
        self.data = []
        source = data if data is not None else rows
        if source is not None:
            if isinstance(source, np.ndarray):
                if source.ndim != 2:
                    raise ValueError(f"data: a numpy table must be 2-D, got shape {source.shape}")
                source = source.tolist()
            for row in source:
                if isinstance(row, (str, bytes)) or not hasattr(row, "__len__"):
                    raise TypeError(f"data: each row must be a list of cells, got {type(row).__name__}")
                self.add_data(*row)

    def add_data(self, *data):
        """Append one row (one value per column)."""
        if len(data) != len(self.columns):
            raise ValueError(f"This table expects {len(self.columns)} columns: {self.columns}, found {len(data)}")
        self.data.append([_json_cell(v) for v in data])

    def add_column(self, name, data):
        """Append a column; ``data`` has one value per existing row."""
        if name in self.columns:
            raise ValueError(f"Column {name} already exists in table")
        data = list(data)
        if self.data and len(data) != len(self.data):
            raise ValueError(f"Expected length {len(self.data)}, found {len(data)}")
        if not self.data:
            self.data = [[] for _ in data]
        self.columns.append(name)
        for row, value in zip(self.data, data):
            row.append(_json_cell(value))

    def get_column(self, name):
        """The values of column ``name`` (a list)."""
        if name not in self.columns:
            raise ValueError(f"Column {name!r} not in table columns {self.columns}")
        i = self.columns.index(name)
        return [row[i] for row in self.data]

    def _table_json(self):
        rows = self.data[: self.MAX_ARTIFACT_ROWS]
        return {"columns": self.columns, "data": rows}

    def _text_rows(self):
        rows = self.data
        if len(rows) > self.MAX_ROWS:
            warnings.warn(f"Truncating wandb.Table object to {self.MAX_ROWS} rows.", stacklevel=3)
            rows = rows[: self.MAX_ROWS]
        return [[str(c) for c in self.columns]] + [[_text_cell(v) for v in row] for row in rows]

    def _tb_log(self, writer, tag, step):
        """Write the table into ``writer`` as a text table (header row, then the data rows)."""
        if not self.columns:
            writer.add_text(tag, "(empty table)", step)
            return
        writer.add_text(tag, self._text_rows(), step)

    def _save(self, files_dir, key, step):
        """Write W&B's ``<files_dir>/media/table/<key>_<step>_<hash>.table.json``; returns its path.

        ``/`` in ``key`` makes subdirectories, as in W&B.
        """
        payload = json.dumps(self._table_json(), separators=(",", ":"), allow_nan=True).encode("utf-8")
        digest = hashlib.sha256(payload).hexdigest()
        parts = [p for p in str(key).split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise ValueError(f"key {key!r} cannot name a table file")
        name = f"{parts[-1]}_{step}_{digest[:20]}.table.json"
        path = os.path.join(files_dir, "media", "table", *parts[:-1], name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(payload)
        self._saved = {
            "_type": "table-file", "path": os.path.relpath(path, files_dir).replace(os.sep, "/"),
            "sha256": digest, "size": len(payload), "ncols": len(self.columns), "nrows": len(self.data),
        }
        return path

    def _summary_json(self):
        return dict(getattr(self, "_saved", {"_type": "table", "ncols": len(self.columns), "nrows": len(self.data)}))

    def __repr__(self):
        return f"<tbx.media.Table {len(self.data)} rows x {len(self.columns)} columns>"


# -- lists ----------------------------------------------------------------------


def log_media_list(writer, tag, items, step):
    """Log a list of media objects of one type under ``tag`` at ``step``.

    Images become the samples of one step (``add_images(..., as_grid=False)``;
    images of different sizes or modes are written as separate PNGs of that
    step), at most ``Image.MAX_ITEMS`` (108) of them, with a warning for the
    rest; their captions go to ``<tag>/caption`` as a one-column table. Other
    types are logged one per tag ``<tag>/<index>``.

    Raises:
        ValueError: ``items`` is empty. TypeError: items of different types or non-media.
    """
    items = list(items)
    if not items:
        raise ValueError(f"log_media_list({tag!r}): items is empty")
    kind = type(items[0])
    if kind not in (Image, Histogram, Audio, Video, Table):
        raise TypeError(f"log_media_list({tag!r}): items must be tbx media objects, got {kind.__name__}")
    if any(type(item) is not kind for item in items):
        names = sorted({type(item).__name__ for item in items})
        raise TypeError(f"log_media_list({tag!r}): all items must have one type, got {names}")
    if kind is not Image:
        for i, item in enumerate(items):
            item._tb_log(writer, f"{tag}/{i}", step)
        return
    if len(items) > Image.MAX_ITEMS:
        warnings.warn(f"Only {Image.MAX_ITEMS} images will be uploaded (got {len(items)}).", stacklevel=2)
        items = items[: Image.MAX_ITEMS]
    pixels = [item._pixels for item in items]
    if all(p.shape == pixels[0].shape for p in pixels):
        writer.add_images(tag, np.stack(pixels), step, dataformats="NHWC", as_grid=False)
    else:  # one record, one PNG per image, each of its own size
        tag, step, walltime = writer._point(tag, step, None)
        first = writer._first_use(tag)
        images = [np.array(p, copy=True) for p in pixels]
        writer.file_writer.submit(_image.image_record, tag, images, step, walltime, first, False,
                                  nbytes=sum(p.nbytes for p in images))
    captions = [item.caption for item in items]
    if any(captions):
        writer.add_text(tag + "/caption", [c or "" for c in captions], step)
