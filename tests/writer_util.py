"""Helpers for the SummaryWriter tests: independent readers and the static container check.

Everything here reads event files with code that does not come from tbx:
the TFRecord framing is parsed by hand and checked with the CRC32C of
TensorBoard's TensorFlow stub, events are parsed with TensorBoard's compiled
protos, tensors are decoded with ``tensorboard.util.tensor_util`` and PNGs
with PIL. That way a tbx bug cannot hide behind the same bug in tbx's reader.
"""

import io
import math
import os
import re
import struct
import wave

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator as legacy_acc
from tensorboard.backend.event_processing import plugin_event_accumulator as plugin_acc
from tensorboard.compat.proto import event_pb2 as tb_event_pb2
from tensorboard.compat.proto import summary_pb2 as tb_summary_pb2
from tensorboard.compat.proto import tensor_pb2 as tb_tensor_pb2
from tensorboard.compat.proto import types_pb2 as tb_types_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

import tbx

KEEP_ALL = 0  # size guidance 0: the accumulators keep every event
PLUGINS = ("scalars", "histograms", "images", "text", "pr_curves", "mesh", "custom_scalars", "audio")
DBL_MAX = np.finfo(np.float64).max

# plugin -> the data_class tbx must write on a tag's first value (FORMATS.md §1.4)
EXPECTED_CLASS = {
    "scalars": tb_summary_pb2.DATA_CLASS_SCALAR,
    "histograms": tb_summary_pb2.DATA_CLASS_TENSOR,
    "text": tb_summary_pb2.DATA_CLASS_TENSOR,
    "images": tb_summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
    "pr_curves": tb_summary_pb2.DATA_CLASS_TENSOR,
    "mesh": tb_summary_pb2.DATA_CLASS_TENSOR,
    "custom_scalars": tb_summary_pb2.DATA_CLASS_TENSOR,
    "hparams": tb_summary_pb2.DATA_CLASS_TENSOR,
    # UNKNOWN on purpose, as TensorBoard's own audio writer: the Python loader then
    # projects the [k, 2] (clip, label) rows to one blob per clip (tbx.summary.audio)
    "audio": tb_summary_pb2.DATA_CLASS_UNKNOWN,
}
EVENT_FILE_NAME = re.compile(r"^events\.out\.tfevents\.\d{10}\.")


# --- independent reading ------------------------------------------------------

def read_framed(path):
    """Payloads of every record of one file; raises AssertionError on any framing defect."""
    data = open(path, "rb").read()
    payloads, pos = [], 0
    while pos < len(data):
        assert len(data) - pos >= 12, f"{path}: {len(data) - pos} trailing bytes at offset {pos}"
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        assert length_crc == masked_crc32c(header), f"{path}: bad length crc at offset {pos}"
        end = pos + 12 + length + 4
        assert end <= len(data), f"{path}: record at offset {pos} cut off"
        payload = data[pos + 12:pos + 12 + length]
        (data_crc,) = struct.unpack("<I", data[end - 4:end])
        assert data_crc == masked_crc32c(payload), f"{path}: bad data crc at offset {pos}"
        payloads.append(payload)
        pos = end
    return payloads


def event_files(logdir):
    """{run: [paths in lexicographic order]} for every run under ``logdir``."""
    runs = {}
    for dirpath, _dirs, files in os.walk(logdir):
        names = sorted(f for f in files if "tfevents" in f)
        if names:
            rel = os.path.relpath(dirpath, logdir)
            runs["." if rel == "." else rel.replace(os.sep, "/")] = [os.path.join(dirpath, n) for n in names]
    return runs


def tb_events(path):
    """TensorBoard-proto Events of one file, CRCs checked independently."""
    return [tb_event_pb2.Event.FromString(p) for p in read_framed(path)]


def run_events(logdir):
    """{run: [Event, ...]} over all files of each run, in file order (TensorBoard protos)."""
    return {run: [e for f in files for e in tb_events(f)] for run, files in event_files(logdir).items()}


def values_by_tag(logdir):
    """{(run, tag): [(step, wall_time, Summary.Value)]} in file order (TensorBoard protos)."""
    out = {}
    for run, events in run_events(logdir).items():
        for event in events:
            for value in event.summary.value:
                out.setdefault((run, value.tag), []).append((event.step, event.wall_time, value))
    return out


def tbx_values_by_tag(logdir):
    """The same as values_by_tag, read with tbx.read_events (tbx protos)."""
    out = {}
    for run, event in tbx.read_events(logdir):
        for value in event.summary.value:
            out.setdefault((run, value.tag), []).append((event.step, event.wall_time, value))
    return out


def to_ndarray(tensor):
    """numpy value of a TensorProto (tbx's or TensorBoard's), decoded by TensorBoard."""
    from tensorboard.util import tensor_util

    proto = tb_tensor_pb2.TensorProto.FromString(tensor.SerializeToString())
    return tensor_util.make_ndarray(proto)


def png_pixels(data):
    """The pixels of PNG bytes as a numpy array (2-D for grayscale)."""
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG", image.format
    return np.asarray(image)


def image_pixels(data):
    """The pixels of an image sample's bytes: PNG, or the first frame of a GIF (add_video)."""
    image = Image.open(io.BytesIO(data))
    assert image.format in ("PNG", "GIF"), image.format
    return np.asarray(image)


def rgb_pixels(data):
    """PNG bytes as an HxWx3 array, whatever the stored mode (to compare with torch's RGB)."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def legacy_accumulator(run_dir):
    acc = legacy_acc.EventAccumulator(
        os.fspath(run_dir), size_guidance={kind: KEEP_ALL for kind in legacy_acc.DEFAULT_SIZE_GUIDANCE}
    )
    acc.Reload()
    return acc


def plugin_accumulator(run_dir):
    acc = plugin_acc.EventAccumulator(
        os.fspath(run_dir),
        size_guidance={plugin_acc.TENSORS: KEEP_ALL},
        tensor_size_guidance={name: KEEP_ALL for name in PLUGINS},
    )
    acc.Reload()
    return acc


def acc_tensors(acc, tag):
    """[(step, numpy value)] of a tag's tensor events in an accumulator."""
    return [(e.step, to_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]


def histogram_rows(logdir, tag, run="."):
    """[(step, [k,3] float64 rows)] of a histogram tag, read independently."""
    return [(s, np.asarray(to_ndarray(v.tensor), dtype=np.float64).reshape(-1, 3))
            for s, _w, v in values_by_tag(logdir)[run, tag]]


def image_samples(logdir, tag, run="."):
    """[(step, (width, height), [PNG bytes, ...])] of an image tag, read independently."""
    out = []
    for step, _w, value in values_by_tag(logdir)[run, tag]:
        strings = list(value.tensor.string_val)
        out.append((step, (int(strings[0]), int(strings[1])), strings[2:]))
    return out


def float32_equal(a, b):
    a, b = np.float32(a), np.float32(b)
    return bool(a == b or (np.isnan(a) and np.isnan(b)))


# --- the static container check (FORMATS.md §7 step 2) -----------------------

def static_check(logdir, header_first=True):
    """Every problem found in ``logdir`` by the static container check, as strings.

    Checks: file names; both CRCs of every record and no trailing bytes (read
    independently of tbx); the first event is ``file_version brain.Event:2``;
    wall times finite; per run and tag, the first value carries metadata with a
    plugin name and the data_class tbx must write, and steps strictly increase;
    scalar tensors rank-0 DT_FLOAT; images DT_STRING rank 1 ``[w, h, png...]``
    whose PNGs decode to that size; histograms ``[k, 3]`` with finite edges,
    left <= right, non-negative counts and no empty first or last bucket. tbx's
    own reader must return the same events.

    ``header_first=False`` leaves out the record-order checks (the header is
    the first record and comes once), for tests about something else.
    """
    problems = []
    runs = event_files(logdir)
    if not runs:
        return [f"no event files under {logdir}"]
    for run, files in runs.items():
        plugin_of = {}
        last_step = {}
        for path in files:
            name = os.path.basename(path)
            if not EVENT_FILE_NAME.match(name):
                problems.append(f"{run}: file name {name!r} lacks the 10-digit timestamp")
            try:
                events = tb_events(path)
            except AssertionError as exc:
                problems.append(str(exc))
                continue
            ours = [e for _r, e in tbx.read_events(path)]
            if [e.SerializeToString() for e in ours] != [e.SerializeToString() for e in events]:
                problems.append(f"{name}: tbx.read_events disagrees with the independent reader")
            if header_first and (not events or events[0].file_version != "brain.Event:2"):
                first = events[0].WhichOneof("what") if events else None
                problems.append(f"{run}/{name}: first event is {first!r}, not file_version 'brain.Event:2'")
            for index, event in enumerate(events):
                if not math.isfinite(event.wall_time):
                    problems.append(f"{run}/{name} event {index}: wall_time {event.wall_time}")
                if header_first and index and event.HasField("file_version"):
                    problems.append(f"{run}/{name}: file_version at event {index}, not first")
                for value in event.summary.value:
                    problems.extend(_check_value(run, value, event.step, plugin_of, last_step))
    return problems


def _check_value(run, value, step, plugin_of, last_step):
    tag = value.tag
    where = f"{run}/{tag} step {step}"
    out = []
    if tag in last_step and step <= last_step[tag]:
        out.append(f"{where}: step not above the previous {last_step[tag]}")
    last_step[tag] = step
    kind = value.WhichOneof("value")
    if tag not in plugin_of:
        if kind == "simple_value":
            plugin_of[tag] = "scalars"  # legacy scalars need no metadata
        elif not value.HasField("metadata") or not value.metadata.plugin_data.plugin_name:
            out.append(f"{where}: first value has no plugin metadata")
            plugin_of[tag] = None
        else:
            plugin = value.metadata.plugin_data.plugin_name
            plugin_of[tag] = plugin
            want = EXPECTED_CLASS.get(plugin)
            if want is None:
                out.append(f"{where}: unexpected plugin {plugin!r}")
            elif value.metadata.data_class != want:
                out.append(f"{where}: data_class {value.metadata.data_class} for {plugin}, expected {want}")
    plugin = plugin_of[tag]
    if kind == "simple_value":
        if plugin != "scalars":
            out.append(f"{where}: simple_value under plugin {plugin!r}")
        return out
    if kind != "tensor":
        return out + [f"{where}: value form {kind!r}; tbx writes tensors (or simple_value scalars)"]
    tensor = value.tensor
    dims = [d.size for d in tensor.tensor_shape.dim]
    if plugin == "scalars":
        if tensor.dtype != tb_types_pb2.DT_FLOAT or dims:
            out.append(f"{where}: scalar tensor dtype {tensor.dtype} shape {dims}, expected rank-0 DT_FLOAT")
        elif to_ndarray(tensor).shape != ():
            out.append(f"{where}: scalar tensor does not decode to one value")
    elif plugin == "images":
        strings = list(tensor.string_val)
        if tensor.dtype != tb_types_pb2.DT_STRING or len(dims) != 1 or dims[0] != len(strings) or len(strings) < 3:
            out.append(f"{where}: image tensor dtype {tensor.dtype} shape {dims} with {len(strings)} strings")
            return out
        if not (strings[0].isdigit() and strings[1].isdigit()):
            out.append(f"{where}: width/height {strings[:2]!r} are not ASCII decimals")
            return out
        width, height = int(strings[0]), int(strings[1])
        for i, png in enumerate(strings[2:]):
            try:
                pixels = image_pixels(png)
            except Exception as exc:  # noqa: BLE001 - any decoding failure is a finding
                out.append(f"{where}: sample {i} is not a valid PNG or GIF ({exc})")
                continue
            if pixels.shape[:2] != (height, width):
                out.append(f"{where}: sample {i} is {pixels.shape[1]}x{pixels.shape[0]}, header says {width}x{height}")
    elif plugin == "histograms":
        if tensor.dtype not in (tb_types_pb2.DT_DOUBLE, tb_types_pb2.DT_FLOAT) or len(dims) != 2 or dims[1] != 3:
            return out + [f"{where}: histogram tensor dtype {tensor.dtype} shape {dims}, expected [k, 3]"]
        rows = np.asarray(to_ndarray(tensor), dtype=np.float64).reshape(-1, 3)
        out.extend(f"{where}: {p}" for p in histogram_row_problems(rows))
    elif plugin == "audio":
        strings = list(tensor.string_val)
        if tensor.dtype != tb_types_pb2.DT_STRING or len(dims) != 2 or dims[1] != 2 or 2 * dims[0] != len(strings):
            return out + [f"{where}: audio tensor dtype {tensor.dtype} shape {dims} with {len(strings)} strings"]
        for i, clip in enumerate(strings[0::2]):
            try:
                with wave.open(io.BytesIO(clip)) as wav:
                    wav.readframes(wav.getnframes())
            except Exception as exc:  # noqa: BLE001 - any decoding failure is a finding
                out.append(f"{where}: clip {i} is not a valid WAV ({exc})")
    elif plugin == "text":
        if tensor.dtype != tb_types_pb2.DT_STRING:
            out.append(f"{where}: text tensor dtype {tensor.dtype}")
    return out


def histogram_row_problems(rows):
    """What is wrong with ``[k, 3]`` histogram rows (empty list when fine)."""
    out = []
    if rows.ndim != 2 or rows.shape[1] != 3:
        return [f"shape {rows.shape}, expected [k, 3]"]
    if not np.all(np.isfinite(rows)):
        out.append(f"non-finite numbers in rows {rows[~np.all(np.isfinite(rows), axis=1)].tolist()[:3]}")
    if np.any(np.abs(rows[:, :2]) >= DBL_MAX):
        out.append("a +-DBL_MAX edge")
    if np.any(rows[:, 0] > rows[:, 1]):
        out.append(f"backwards bucket(s) {rows[rows[:, 0] > rows[:, 1]].tolist()[:3]}")
    if np.any(rows[:, 2] < 0):
        out.append("negative counts")
    if len(rows) and (rows[0, 2] == 0 or rows[-1, 2] == 0):
        out.append(f"empty end bucket: first {rows[0].tolist()}, last {rows[-1].tolist()}")
    return out


def interleave_bad_calls(writer, bad_calls, good):
    """``good(writer, step)`` before each ``(name, call, exc, match)`` bad call, each of which must
    raise ``exc`` matching ``match``; returns the steps of the good points."""
    for step, (_name, call, exc, match) in enumerate(bad_calls):
        good(writer, step)
        with pytest.raises(exc, match=match):
            call(writer)
    return list(range(len(bad_calls)))
