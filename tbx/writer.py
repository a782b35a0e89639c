"""SummaryWriter: torch.utils.tensorboard's API, written at memory speed.

Each ``add_*`` method validates its arguments on the caller's thread (so bad
input raises right there, naming the argument) and then either encodes the
record at once (scalars, text: well under a microsecond to a few) or snapshots
the data and hands the expensive encoding (histograms, PNG) to a background
pool. A background thread writes everything to the event file within
``tbx.event_file.WRITE_INTERVAL`` seconds.
"""

import math
import os
import socket
import threading
import time
import warnings
from datetime import datetime

import numpy as np

from tbx import _convert, _snapshot
from tbx.event_file import EventFileWriter
from tbx.summary import histogram as _histogram
from tbx.summary import image as _image
from tbx.summary import text as _text
from tbx.summary.scalar import METADATA_BYTES as _SCALAR_METADATA
from tbx.writer_graph import GraphMethods
from tbx.writer_hparams import HParamsMethods
from tbx.writer_media import MediaMethods
from tbx.writer_plugins import PluginMethods
from tbx.writer_projector import ProjectorMethods
from tbx.record import encode_scalar as _encode_scalar

_tag_value = _convert.tag_value
_scalar_value = _convert.scalar_value
_step_value = _convert.step_value
_wall_time_value = _convert.wall_time_value
_now = time.time
_isfinite = math.isfinite


def default_logdir(comment=""):
    """``runs/<Mon DD_HH-MM-SS>_<host><comment>``, as torch names it."""
    stamp = datetime.now().strftime("%b%d_%H-%M-%S")
    return os.path.join("runs", f"{stamp}_{socket.gethostname()}{comment}")


class SummaryWriter(MediaMethods, PluginMethods, ProjectorMethods, GraphMethods, HParamsMethods):
    """Writes TensorBoard event files; a drop-in for torch's and tensorboardX's SummaryWriter.

    Args:
        log_dir: run directory; default ``runs/<date>_<host><comment>``.
        comment: suffix of the default log_dir (ignored when log_dir is given).
        purge_step: when resuming a crashed run, the step to resume from:
            TensorBoard hides this run's older points at or after it.
        max_queue: accepted for compatibility. tbx bounds its queue in
            records and bytes (see tbx.event_file) and writes within 0.02 s.
        flush_secs: how often the file is fsynced to the device. Data reaches
            the OS (safe from a killed process) within 0.02 s regardless.
        filename_suffix: appended to every event file name of this writer.

    Thread-safety: every method may be called from several threads.

    Example::

        with tbx.SummaryWriter("runs/exp1") as writer:
            for step in range(100):
                writer.add_scalar("loss", 1 / (step + 1), step)
    """

    def __init__(self, log_dir=None, comment="", purge_step=None, max_queue=10, flush_secs=120, filename_suffix=""):
        if log_dir is None:
            log_dir = default_logdir(comment)
        self.log_dir = os.fspath(log_dir)
        if purge_step is not None:
            purge_step = _step_value(purge_step, "purge_step")
        self.purge_step = purge_step
        self.max_queue = max_queue
        self.flush_secs = flush_secs
        self.filename_suffix = filename_suffix
        self.nonfinite_dropped = {}
        """Per histogram tag, how many NaN/inf values were left out of the buckets."""
        self._warned_nonfinite = set()
        self._nonfinite_lock = threading.Lock()
        self._sub_writers = {}
        self.file_writer = EventFileWriter(self.log_dir, filename_suffix, flush_secs, purge_step)

    # -- basics -------------------------------------------------------------

    def get_logdir(self):
        """The directory this writer writes to."""
        return self.log_dir

    def _get_file_writer(self):
        return self.file_writer

    # -- helpers shared by every add_* method (also those in the mixin modules) --

    @staticmethod
    def _point(tag, global_step, walltime):
        """The validated ``(tag, step, wall time)`` of one add_* call."""
        return _tag_value(tag), _step_value(global_step), _wall_time_value(walltime)

    def _first_use(self, tag):
        """True the first time ``tag`` goes into the current event file: that record carries the metadata."""
        seen = self.file_writer.seen
        if tag in seen:
            return False
        seen.add(tag)
        return True

    def flush(self):
        """Block until everything added so far is written to the event file(s).

        After close() it does nothing, as torch's (frameworks flush after closing).
        """
        if self.file_writer.closed:
            return
        self.file_writer.flush()
        for writer in list(self._sub_writers.values()):
            writer.flush()

    def close(self):
        """Write everything, fsync and close. Idempotent; also run at interpreter exit."""
        error = None
        for writer in [self.file_writer, *self._sub_writers.values()]:
            try:
                writer.close()
            except Exception as exc:  # close every file, then report the first failure
                error = error or exc
        if error is not None:
            raise error

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- scalars --------------------------------------------------------------

    def add_scalar(self, tag, scalar_value, global_step=None, walltime=None, new_style=False, double_precision=False):
        """Log one scalar.

        Args:
            tag: name of the series.
            scalar_value: a Python, numpy or torch real number (NaN and +-inf are kept).
            global_step: integer step (int64; negative and huge steps round-trip).
            walltime: seconds since the epoch; default now.
            new_style: write a rank-0 float tensor with ``scalars`` metadata
                instead of the legacy ``simple_value`` (both display everywhere).
            double_precision: accepted for compatibility; values are written as
                float32 because TensorBoard's Rust loader drops double scalars.

        Example::

            writer.add_scalar("train/loss", loss.item(), step)
        """
        if type(tag) is not str:
            _tag_value(tag)
        if type(scalar_value) is not float:
            scalar_value = _scalar_value(scalar_value)
        if type(global_step) is not int:
            global_step = _step_value(global_step)
        if walltime is None:
            walltime = _now()
        elif type(walltime) is not float or not _isfinite(walltime):
            walltime = _wall_time_value(walltime)
        file = self.file_writer
        metadata = None
        if new_style and tag not in file.seen:
            file.seen.add(tag)
            metadata = _SCALAR_METADATA
        try:
            data = _encode_scalar(tag, scalar_value, global_step, walltime, metadata, not new_style)
        except OverflowError:
            _step_value(global_step)
            raise
        # EventFileWriter.write, inlined: this is the hottest path of the library.
        if file._closed or file._error is not None:
            file._check()
        records = file._records
        records.append(data)
        if file._idle:
            file._wake.set()  # the writer thread sleeps: wake it
        if len(records) > file.max_records:
            file._wait_for_room()

    def add_scalars(self, main_tag, tag_scalar_dict, global_step=None, walltime=None):
        """Log several scalars to sibling runs, one per key, as torch does.

        Each key ``k`` goes to the run ``<log_dir>/<main_tag with / as _>_<k>``
        under the tag ``main_tag``, so they share one chart.

        Example::

            writer.add_scalars("loss", {"train": 0.3, "val": 0.4}, step)
        """
        _tag_value(main_tag, "main_tag")
        if not isinstance(tag_scalar_dict, dict):
            raise TypeError(f"tag_scalar_dict must be a dict of name -> number, got {type(tag_scalar_dict).__name__}")
        step = _step_value(global_step)
        walltime = _wall_time_value(walltime)
        values = {}
        for key, value in tag_scalar_dict.items():
            _tag_value(key, "tag_scalar_dict key")
            values[key] = _scalar_value(value, f"tag_scalar_dict[{key!r}]")
        for key, value in values.items():
            run_dir = os.path.join(self.log_dir, main_tag.replace("/", "_") + "_" + key)
            writer = self._sub_writers.get(run_dir)
            if writer is None:
                writer = self._sub_writers.setdefault(
                    run_dir, EventFileWriter(run_dir, self.filename_suffix, self.flush_secs)
                )
            writer.write(_encode_scalar(main_tag, value, step, walltime, None, True))

    # -- histograms -----------------------------------------------------------

    def add_histogram(self, tag, values, global_step=None, bins=None, walltime=None, max_bins=None):
        """Log a histogram of ``values`` (binned off the caller's thread).

        Args:
            tag: name of the histogram.
            values: numpy array, torch tensor (a CUDA tensor is binned on its
                device; only the counts travel) or sequence of numbers.
            global_step: integer step.
            bins: None (tbx's fast default: 64 equal-width buckets from min to
                max), 'tensorflow', an int, a numpy rule such as 'auto', or a
                sequence of edges. See tbx.summary.histogram.
            walltime: seconds since the epoch; default now.
            max_bins: merge neighbouring buckets until at most this many remain.

        NaN and +-inf values are left out and counted in
        ``self.nonfinite_dropped[tag]`` (with one warning per tag).

        Example::

            writer.add_histogram("fc1/weight", model.fc1.weight, step)
        """
        tag, step, walltime = self._point(tag, global_step, walltime)
        bins = _histogram.check_bins(bins)
        if max_bins is not None and (isinstance(max_bins, bool) or not isinstance(max_bins, (int, np.integer)) or max_bins < 1):
            raise ValueError(f"max_bins must be a positive int or None, got {max_bins!r}")
        file = self.file_writer
        if _convert.is_torch_tensor(values) and values.device.type != "cpu" and (bins is None or isinstance(bins, int)):
            snapshot = _check_histogram_tensor(values, tag).detach().flatten().clone()
            job, nbytes, buffer = _device_histogram_job, 0, None
        else:
            array = _convert.to_numpy(values, "values")
            _check_histogram_array(array, tag)
            snapshot, buffer = _snapshot.snapshot(array)
            job, nbytes = _histogram_job, snapshot.nbytes
        first = self._first_use(tag)
        file.submit(job, self, tag, snapshot, bins, max_bins, step, walltime, first, nbytes=nbytes, buffer=buffer)

    def add_histogram_raw(self, tag, min, max, num, sum, sum_squares, bucket_limits, bucket_counts, global_step=None, walltime=None):
        """Log a histogram given as TensorFlow's HistogramProto fields.

        ``bucket_limits[i]`` is the right edge of bucket i; the first bucket
        starts at ``min``. Written in the [k, 3] tensor form with empty end
        buckets trimmed and edges clipped to [min, max].
        """
        tag, step, walltime = self._point(tag, global_step, walltime)
        lo = _scalar_value(min, "min")
        hi = _scalar_value(max, "max")
        limits = np.asarray(_convert.to_numpy(bucket_limits, "bucket_limits"), dtype=np.float64).ravel()
        counts = np.asarray(_convert.to_numpy(bucket_counts, "bucket_counts"), dtype=np.float64).ravel()
        if limits.size != counts.size:
            raise ValueError(f"bucket_limits has {limits.size} entries but bucket_counts has {counts.size}; they must match")
        if limits.size == 0:
            raise ValueError("bucket_limits and bucket_counts are empty; a histogram needs at least one bucket")
        if lo > hi:
            raise ValueError(f"min ({lo}) is greater than max ({hi})")
        if np.any(counts < 0) or not np.all(np.isfinite(counts)):
            raise ValueError("bucket_counts must be finite and non-negative")
        if np.any(np.diff(limits) < 0):
            raise ValueError("bucket_limits must be increasing")
        for name, value in (("num", num), ("sum", sum), ("sum_squares", sum_squares)):
            _scalar_value(value, name)
        rows = _histogram.raw_rows(lo, hi, limits, counts)
        file = self.file_writer
        first = self._first_use(tag)
        file.write(_histogram.histogram_record(tag, rows, step, walltime, first))

    def _count_nonfinite(self, tag, dropped):
        with self._nonfinite_lock:  # called from the encoder pool's threads
            self.nonfinite_dropped[tag] = self.nonfinite_dropped.get(tag, 0) + dropped
            first = tag not in self._warned_nonfinite
            self._warned_nonfinite.add(tag)
        if first:
            warnings.warn(
                f"add_histogram({tag!r}): {dropped} NaN/inf values were left out of the buckets "
                "(counted in SummaryWriter.nonfinite_dropped; warned once per tag)",
                RuntimeWarning,
                stacklevel=2,
            )

    # -- images ---------------------------------------------------------------

    def add_image(self, tag, img_tensor, global_step=None, walltime=None, dataformats="CHW"):
        """Log one image (PNG-encoded off the caller's thread).

        Args:
            tag: name of the image series.
            img_tensor: numpy array, torch tensor or PIL image; uint8 0-255 or
                float in [0, 1] (scaled by 255).
            dataformats: 'CHW' (default), 'HWC', 'HW' or 'WH'. A PIL image is
                always taken as HWC/HW.

        Example::

            writer.add_image("input", batch[0], step)            # 3xHxW tensor
        """
        self._add_images(tag, img_tensor, global_step, walltime, dataformats, batch=False, grid=False)

    def add_images(self, tag, img_tensor, global_step=None, walltime=None, dataformats="NCHW", *, as_grid=True):
        """Log a batch of images.

        Args:
            dataformats: 'NCHW' (default), 'NHWC' or 'NHW'.
            as_grid: True (torch's behaviour) tiles the batch into one image, 8
                per row; False writes every image as its own sample of the step.

        Example::

            writer.add_images("batch", images, step)             # NxCxHxW tensor
        """
        self._add_images(tag, img_tensor, global_step, walltime, dataformats, batch=True, grid=as_grid)

    def _add_images(self, tag, img_tensor, global_step, walltime, dataformats, batch, grid):
        tag, step, walltime = self._point(tag, global_step, walltime)
        is_pil = type(img_tensor).__module__.startswith("PIL.")
        if is_pil and img_tensor.mode not in ("1", "L", "RGB", "RGBA"):
            # palette, CMYK, LA, 16-bit and float modes: let PIL produce RGB(A) pixels
            alpha = "A" in img_tensor.getbands() or "transparency" in img_tensor.info
            img_tensor = img_tensor.convert("RGBA" if alpha else "RGB")
        array = _convert.to_numpy(img_tensor, "img_tensor")
        if is_pil and not batch:
            dataformats = "HWC" if array.ndim == 3 else "HW"
        if batch and isinstance(dataformats, str) and "N" not in dataformats.upper():
            raise ValueError(f"add_images needs a batch layout such as 'NCHW', 'NHWC' or 'NHW', got dataformats {dataformats!r}")
        if not batch and isinstance(dataformats, str) and "N" in dataformats.upper():
            raise ValueError(f"add_image takes one image ('CHW', 'HWC', 'HW', 'WH'); use add_images for dataformats {dataformats!r}")
        images = _image.to_hwc_uint8(array, dataformats)
        file = self.file_writer
        first = self._first_use(tag)
        nbytes = sum(img.nbytes for img in images)
        file.submit(_image.image_record, tag, images, step, walltime, first, grid, nbytes=nbytes)

    def _add_histogram_rows(self, tag, rows, global_step=None, walltime=None):
        """A histogram given as trusted float64 ``[k, 3]`` rows (tbx.watch): written as they are."""
        tag, step, walltime = self._point(tag, global_step, walltime)
        self.file_writer.write(_histogram.histogram_record(tag, rows, step, walltime, self._first_use(tag)))

    def _add_owned_images(self, tag, images, global_step=None, walltime=None):
        """add_images for HWC uint8 arrays that nobody will change (a tbx.media.Image's own
        pixels): no validation and no snapshot copy, one sample per image."""
        tag, step, walltime = self._point(tag, global_step, walltime)
        first = self._first_use(tag)
        nbytes = sum(img.nbytes for img in images)
        self.file_writer.submit(_image.image_record, tag, images, step, walltime, first, False, nbytes=nbytes)

    # -- text -----------------------------------------------------------------

    def add_text(self, tag, text_string, global_step=None, walltime=None):
        """Log markdown text, shown in the Text dashboard under ``<tag>/text_summary``.

        ``text_string`` is a markdown str, or (a tbx extension) a list of str or
        a list of rows of str, shown as a table.

        Example::

            writer.add_text("notes", "**lr** lowered to 1e-4", step)
            writer.add_text("results", [["model", "acc"], ["base", "0.91"]], step)
        """
        tag, step, walltime = self._point(tag, global_step, walltime)
        if isinstance(text_string, str):
            shape, cells = (), text_string
        elif isinstance(text_string, (list, tuple)):
            shape, cells = _text.check_table(text_string)
        else:
            raise TypeError(f"text_string must be a str (or a list of rows of str), got {type(text_string).__name__}")
        tag = tag + "/text_summary"
        self.file_writer.write(_text.text_record(tag, cells, step, walltime, self._first_use(tag), shape))


def _check_histogram_array(array, tag):
    if array.size == 0:
        raise ValueError(f"add_histogram({tag!r}): values is empty; a histogram needs at least one value")
    if array.dtype.kind not in "fiu":
        raise TypeError(f"add_histogram({tag!r}): values must be real numbers, got dtype {array.dtype}")


def _check_histogram_tensor(tensor, tag):
    if tensor.numel() == 0:
        raise ValueError(f"add_histogram({tag!r}): values is empty; a histogram needs at least one value")
    if tensor.is_complex() or tensor.dtype == getattr(type(tensor), "bool", None) or str(tensor.dtype) == "torch.bool":
        raise TypeError(f"add_histogram({tag!r}): values must be real numbers, got dtype {tensor.dtype}")
    return tensor


def _histogram_job(writer, tag, values, bins, max_bins, step, walltime, first):
    rows, dropped = _histogram.compute_bins(values, bins, max_bins)
    if dropped:
        writer._count_nonfinite(tag, dropped)
    return _histogram.histogram_record(tag, rows, step, walltime, first)


def _device_histogram_job(writer, tag, tensor, bins, max_bins, step, walltime, first):
    """Bin a CUDA (or other device) tensor on its device; only the counts come back."""
    tensor = tensor.float() if not tensor.is_floating_point() else tensor
    finite = tensor.isfinite()
    dropped = int(tensor.numel() - finite.sum().item())
    if dropped:
        tensor = tensor[finite]
        writer._count_nonfinite(tag, dropped)
    if tensor.numel() == 0:
        rows = np.zeros((0, 3))
    else:
        lo, hi = (float(v) for v in tensor.aminmax())
        k = _histogram.DEFAULT_BINS if bins is None else bins
        if lo == hi:
            rows = np.array([[lo - 0.5, hi + 0.5, float(tensor.numel())]])
        else:
            counts = tensor.double().histc(bins=k, min=lo, max=hi).cpu().numpy()
            edges = np.linspace(lo, hi, k + 1)
            rows = _histogram._trim(edges[:-1], edges[1:], counts)
    if max_bins is not None and rows.shape[0] > max_bins:
        rows = _histogram._merge(rows, max_bins)
    return _histogram.histogram_record(tag, rows, step, walltime, first)
