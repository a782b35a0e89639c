"""Shared helpers for benchmarks/run.py: implementations, data, verification.

Nothing here is timed; the workloads in ``_workloads.py`` do the timing.
"""

from __future__ import annotations

import gc
import os
import platform
import shutil
import struct
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

TBX = "tbx"
TENSORBOARDX = "tensorboardX"
TORCH = "torch"
# Peers first, tbx last: every workload runs them in this order in one process.
WRITER_IMPLS = (TORCH, TENSORBOARDX, TBX)
PEERS = (TORCH, TENSORBOARDX)


# --------------------------------------------------------------------------
# Implementations
# --------------------------------------------------------------------------


@dataclass
class Impl:
    name: str
    writer_cls: Optional[type] = None
    module: Any = None
    unavailable: Optional[str] = None  # reason, when it cannot run

    @property
    def ok(self) -> bool:
        return self.unavailable is None


def load_writers() -> Dict[str, Impl]:
    """Import the three SummaryWriter classes; a failure becomes a reason."""
    impls: Dict[str, Impl] = {}
    try:
        from torch.utils.tensorboard import SummaryWriter as TorchWriter

        import torch

        impls[TORCH] = Impl(TORCH, TorchWriter, torch)
    except Exception as exc:  # pragma: no cover - environment dependent
        impls[TORCH] = Impl(TORCH, unavailable=f"{type(exc).__name__}: {exc}")
    try:
        import tensorboardX
        from tensorboardX import SummaryWriter as TBXWriter

        impls[TENSORBOARDX] = Impl(TENSORBOARDX, TBXWriter, tensorboardX)
    except Exception as exc:  # pragma: no cover
        impls[TENSORBOARDX] = Impl(TENSORBOARDX, unavailable=f"{type(exc).__name__}: {exc}")
    impls[TBX] = load_tbx()
    return impls


def load_tbx() -> Impl:
    try:
        import tbx

        writer = getattr(tbx, "SummaryWriter", None)
        if writer is None:
            return Impl(TBX, module=tbx, unavailable="tbx.SummaryWriter does not exist yet")
        return Impl(TBX, writer, tbx)
    except Exception as exc:
        return Impl(TBX, unavailable=f"import tbx failed: {type(exc).__name__}: {exc}")


def tbx_attr(dotted: str) -> Any:
    """``tbx_attr('record.masked_crc32c')`` or None when it does not exist."""
    try:
        import importlib

        parts = dotted.split(".")
        obj: Any = importlib.import_module("tbx")
        for i, part in enumerate(parts):
            if hasattr(obj, part):
                obj = getattr(obj, part)
            else:
                obj = importlib.import_module("tbx." + ".".join(parts[: i + 1]))
        return obj
    except Exception:
        return None


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass
class Row:
    workload: str
    impl: str
    ops: int = 0  # number of timed operations (add_* calls, events read, CRC calls)
    op_name: str = "op"
    total_s: Optional[float] = None  # end to end (construct + loop + close), or the read/CRC time
    caller_s: Optional[float] = None  # wall time of the add loop alone
    rate: Optional[float] = None  # events/s or bytes/s, see rate_unit
    rate_unit: str = ""
    records: Optional[int] = None  # summary values found in the files afterwards
    expected_records: Optional[int] = None
    note: str = ""
    disk_bytes: Optional[int] = None  # size of the event files read or written
    unavailable: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def per_op_s(self) -> Optional[float]:
        return None if self.total_s is None or not self.ops else self.total_s / self.ops

    @property
    def caller_per_op_s(self) -> Optional[float]:
        return None if self.caller_s is None or not self.ops else self.caller_s / self.ops

    def to_json(self) -> Dict[str, Any]:
        d = asdict(self)
        d["per_op_s"] = self.per_op_s
        d["caller_per_op_s"] = self.caller_per_op_s
        return d


# --------------------------------------------------------------------------
# Timing helpers
# --------------------------------------------------------------------------


@contextmanager
def fresh_logdir(prefix: str):
    d = tempfile.mkdtemp(prefix=f"tbxbench-{prefix}-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def settle() -> None:
    """Between runs: collect garbage and let stray threads finish."""
    gc.collect()
    time.sleep(0.05)


def loop_overhead_per_iter(n: int = 200_000) -> float:
    """Seconds per iteration of the scalar loop shape with a no-op callee."""

    def noop(tag, value, step):
        return None

    tags = ["a", "b", "c", "d"]
    vals = [0.5] * 1024
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for i in range(n):
            noop(tags[i & 3], vals[i & 1023], i)
        best = min(best, time.perf_counter() - t0)
    return best / n


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def scalar_values(n: int = 1024, seed: int = 0) -> List[float]:
    rng = np.random.default_rng(seed)
    return [float(x) for x in rng.standard_normal(n)]


def histogram_arrays(count: int, size: int, seed: int = 1) -> List[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(size, dtype=np.float32) for _ in range(count)]


def images(count: int, hw: int, seed: int = 2) -> List[np.ndarray]:
    """Compressible CHW uint8 images: smooth gradients plus a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:hw, 0:hw].astype(np.int32)
    scale = 256 // hw if hw < 256 else 1
    out = []
    for k in range(count):
        r = (x * scale + 5 * k) % 256
        g = (y * scale + 11 * k) % 256
        b = ((x + y) * scale // 2 + 17 * k) % 256
        base = np.stack([r, g, b])
        noise = rng.integers(-8, 9, size=base.shape)
        out.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return out


def audio_clips(count: int, length: int, rate: int = 44100, seed: int = 5) -> List[np.ndarray]:
    """Mono float32 clips in [-1, 1]: a few tones under a little noise, peak 0.9."""
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float64) / rate
    out = []
    for k in range(count):
        wave = sum(np.sin(2 * np.pi * f * (1 + 0.01 * k) * t) for f in (220.0, 440.0, 660.0))
        wave = wave + 0.1 * rng.standard_normal(length)
        out.append((0.9 * wave / np.abs(wave).max()).astype(np.float32))
    return out


def videos(count: int, frames: int, hw: int, seed: int = 6) -> List[np.ndarray]:
    """``[1, T, 3, H, W]`` uint8 clips: a gradient moving a few pixels per frame plus
    ±8 noise, so consecutive frames differ and the GIF encoder quantizes each."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:hw, 0:hw].astype(np.int32)
    scale = max(1, 256 // hw)
    out = []
    for k in range(count):
        clip = []
        for f in range(frames):
            shift = 3 * f + 7 * k
            r = ((x + shift) * scale) % 256
            g = ((y + shift) * scale) % 256
            b = ((x + y) * scale // 2 + 17 * k) % 256
            base = np.stack([r, g, b])
            clip.append(np.clip(base + rng.integers(-8, 9, size=base.shape), 0, 255))
        out.append(np.stack(clip)[None].astype(np.uint8))
    return out


def pr_data(count: int, size: int, seed: int = 7):
    """``count`` pairs of (int64 0/1 labels, float32 probabilities in [0, 1]) of
    ``size`` points; the probabilities lean towards the label, as a classifier's do."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        labels = rng.integers(0, 2, size=size, dtype=np.int64)
        logits = rng.standard_normal(size) + 1.5 * (labels - 0.5)
        out.append((labels, (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)))
    return out


def embedding_data(points: int, dim: int, img_hw: int, seed: int = 8):
    """(mat, metadata, label_img): a float32 torch ``[N, D]`` tensor, N str labels
    (10 classes), and a float32 torch ``[N, 3, h, h]`` tensor in [0, 1].

    Torch tensors because torch's ``add_embedding`` calls ``label_img.size(0)``
    (a numpy array fails there); tbx and tensorboardX take them too, so all
    three get the same objects."""
    import torch

    g = torch.Generator().manual_seed(seed)
    mat = torch.randn(points, dim, generator=g)
    metadata = [f"class_{i % 10}" for i in range(points)]
    label_img = torch.rand(points, 3, img_hw, img_hw, generator=g)
    return mat, metadata, label_img


# --------------------------------------------------------------------------
# Reading back what was written (verification; independent of tbx)
# --------------------------------------------------------------------------


def event_files(logdir: str) -> List[str]:
    out = []
    for root, _dirs, files in os.walk(logdir):
        for f in files:
            if "tfevents" in f:
                out.append(os.path.join(root, f))
    return sorted(out)


def iter_record_payloads(path: str):
    with open(path, "rb") as fh:
        data = fh.read()
    off, n = 0, len(data)
    unpack = struct.unpack_from
    while off + 12 <= n:
        (length,) = unpack("<Q", data, off)
        start = off + 12
        end = start + length
        if end + 4 > n:
            break  # cut-off last record
        yield data[start:end]
        off = end + 4


def count_summary_values(logdir: str, details: bool = False) -> Dict[str, Any]:
    """Count summary values per kind over every event file under ``logdir``.

    Kinds: 'scalar' (simple_value or rank-0 tensor), 'histogram' (histo or
    [k,3] tensor), 'image' (image or string tensor of the images plugin; a
    video is an animated GIF there), 'audio' (clips: a legacy Summary.Audio
    is one, an audio-plugin tensor of shape [k, 2] or [k] is k), 'pr_curve'
    (pr_curves-plugin tensors), 'other'. Parsed with TensorBoard's own
    protos, so a tbx bug cannot hide itself.

    With ``details``, ``counts['samples']`` also describes each media sample
    by decoding it, as ``{kind: {description: count}}``: audio clips by
    their WAV header ("44100 Hz, 1 ch, 44100 frames"), images by their
    header ("png 256x256", "gif 64x64, 16 frames"), PR curves by their
    tensor shape ("6x127").
    """
    from tensorboard.compat.proto import event_pb2

    counts: Dict[str, Any] = {
        "scalar": 0, "histogram": 0, "image": 0, "audio": 0, "pr_curve": 0, "other": 0, "events": 0,
    }
    samples: Dict[str, Dict[str, int]] = {}

    def note(kind: str, description: str) -> None:
        bucket = samples.setdefault(kind, {})
        bucket[description] = bucket.get(description, 0) + 1

    Event = event_pb2.Event
    by_plugin = {"scalars": "scalar", "histograms": "histogram", "images": "image",
                 "audio": "audio", "pr_curves": "pr_curve"}
    for path in event_files(logdir):
        # Like TensorBoard, a tag's plugin comes from the first SummaryMetadata
        # seen for it; writers may send it with the first value only.
        plugin_of: Dict[str, str] = {}
        for payload in iter_record_payloads(path):
            ev = Event.FromString(payload)
            counts["events"] += 1
            if not ev.HasField("summary"):
                continue
            for v in ev.summary.value:
                kind = v.WhichOneof("value")
                if kind == "simple_value":
                    counts["scalar"] += 1
                elif kind == "histo":
                    counts["histogram"] += 1
                elif kind == "image":
                    counts["image"] += 1
                    if details:
                        note("image", describe_image(v.image.encoded_image_string))
                elif kind == "audio":
                    counts["audio"] += 1
                    if details:
                        note("audio", describe_wav(v.audio.encoded_audio_string))
                elif kind == "tensor":
                    if v.tag not in plugin_of and v.HasField("metadata"):
                        plugin_of[v.tag] = v.metadata.plugin_data.plugin_name
                    what = by_plugin.get(plugin_of.get(v.tag, ""), "other")
                    t = v.tensor
                    dims = [d.size for d in t.tensor_shape.dim]
                    if what == "audio":
                        # [k, 2] rows of (clip, label), or [k] clips
                        clips = list(t.string_val[:: 2 if len(dims) == 2 else 1])
                        counts["audio"] += len(clips)
                        if details:
                            for clip in clips:
                                note("audio", describe_wav(clip))
                        continue
                    counts[what] += 1
                    if details and what == "image":
                        for blob in t.string_val[2:]:  # [width, height, blob...]
                            note("image", describe_image(blob))
                    elif details and what == "pr_curve":
                        note("pr_curve", "x".join(str(d) for d in dims))
                else:
                    counts["other"] += 1
    if details:
        counts["samples"] = samples
    return counts


def describe_wav(data: bytes) -> str:
    """"<rate> Hz, <channels> ch, <frames> frames" from a WAV file's header."""
    import io
    import wave

    try:
        with wave.open(io.BytesIO(data)) as w:
            return f"{w.getframerate()} Hz, {w.getnchannels()} ch, {w.getnframes()} frames"
    except Exception as exc:
        return f"undecodable WAV ({type(exc).__name__})"


def describe_image(data: bytes) -> str:
    """"png WxH" or "gif WxH, N frames" (Pillow reads the header; GIF frames are counted)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format == "GIF":
                return f"gif {im.width}x{im.height}, {getattr(im, 'n_frames', 1)} frames"
            return f"{im.format.lower()} {im.width}x{im.height}"
    except Exception as exc:
        return f"undecodable image ({type(exc).__name__})"


def check_projector(logdir: str, points: int, img_hw: int) -> Dict[str, Any]:
    """Read back the Embedding Projector files: counts and per-embedding descriptions.

    Parses ``projector_config.pbtxt`` with TensorBoard's ProjectorConfig proto;
    for each entry counts the rows and columns of its tensors.tsv and the rows
    of its metadata.tsv (one label per line, no header), and checks the
    sprite: a square PNG of whole ``img_hw`` cells, enough of them for every
    point, with ``single_image_dim`` ``[img_hw, img_hw]``. An entry is
    described as "tensors NxD, metadata M rows, sprite ok"; ``counts['embedding']``
    is the number of config entries.
    """
    from google.protobuf import text_format
    from PIL import Image
    from tensorboard.plugins.projector import projector_config_pb2

    counts: Dict[str, Any] = {"embedding": 0, "samples": {"embedding": {}}}
    bucket = counts["samples"]["embedding"]
    path = os.path.join(logdir, "projector_config.pbtxt")
    if not os.path.exists(path):
        return counts
    config = projector_config_pb2.ProjectorConfig()
    with open(path) as fh:
        text_format.Merge(fh.read(), config)
    for emb in config.embeddings:
        counts["embedding"] += 1
        parts = []
        try:
            with open(os.path.join(logdir, emb.tensor_path)) as fh:
                rows = [line for line in fh.read().split("\n") if line]
            cols = {len(r.split("\t")) for r in rows}
            parts.append(f"tensors {len(rows)}x{cols.pop() if len(cols) == 1 else sorted(cols)}")
        except OSError:
            parts.append("tensors missing")
        if emb.metadata_path:
            try:
                with open(os.path.join(logdir, emb.metadata_path)) as fh:
                    parts.append(f"metadata {len([x for x in fh.read().split(chr(10)) if x])} rows")
            except OSError:
                parts.append("metadata missing")
        else:
            parts.append("no metadata")
        if emb.sprite.image_path:
            try:
                with Image.open(os.path.join(logdir, emb.sprite.image_path)) as im:
                    w, h = im.size
                cells = (w // img_hw) * (h // img_hw)
                ok = (w == h and w % img_hw == 0 and cells >= points
                      and list(emb.sprite.single_image_dim) == [img_hw, img_hw])
                parts.append("sprite ok" if ok else f"sprite bad ({w}x{h}, dim {list(emb.sprite.single_image_dim)})")
            except OSError:
                parts.append("sprite missing")
        else:
            parts.append("no sprite")
        desc = ", ".join(parts)
        bucket[desc] = bucket.get(desc, 0) + 1
    return counts


def projector_expected(points: int, dim: int) -> str:
    """The description check_projector gives a correct embedding entry."""
    return f"tensors {points}x{dim}, metadata {points} rows, sprite ok"


def dir_bytes(logdir: str) -> int:
    """Size of every file under ``logdir``."""
    total = 0
    for root, _dirs, files in os.walk(logdir):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


# --------------------------------------------------------------------------
# Fallback scalar-file writer for the read workload (used only while tbx
# cannot write): TensorBoard protos framed with the crc32c package.
# --------------------------------------------------------------------------


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def write_scalar_file_fallback(logdir: str, n: int, tags: List[str], new_style: bool) -> str:
    import socket

    import crc32c
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2

    def frame(payload: bytes) -> bytes:
        header = struct.pack("<Q", len(payload))
        return b"".join(
            (
                header,
                struct.pack("<I", _mask(crc32c.crc32c(header))),
                payload,
                struct.pack("<I", _mask(crc32c.crc32c(payload))),
            )
        )

    path = os.path.join(
        logdir, f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.0"
    )
    vals = scalar_values()
    wall = time.time()
    ntags = len(tags)
    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = "scalars"
    chunks = [frame(event_pb2.Event(wall_time=wall, file_version="brain.Event:2").SerializeToString())]
    for i in range(n):
        if new_style:
            t = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[vals[i & 1023]])
            value = summary_pb2.Summary.Value(tag=tags[i % ntags], tensor=t, metadata=meta)
        else:
            value = summary_pb2.Summary.Value(tag=tags[i % ntags], simple_value=vals[i & 1023])
        ev = event_pb2.Event(
            wall_time=wall + i * 1e-6, step=i // ntags, summary=summary_pb2.Summary(value=[value])
        )
        chunks.append(frame(ev.SerializeToString()))
    with open(path, "wb") as fh:
        fh.write(b"".join(chunks))
    return path


# --------------------------------------------------------------------------
# Platform
# --------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags") or line.startswith("Features"):
                    flags = set(line.split(":", 1)[1].split())
                    wanted = ["sse4_2", "pclmulqdq", "avx2", "avx512f", "vpclmulqdq", "crc32"]
                    return " ".join(f for f in wanted if f in flags)
    except OSError:
        pass
    return "?"


def platform_info(impls: Dict[str, Impl]) -> Dict[str, Any]:
    def version(mod: str) -> str:
        try:
            import importlib

            m = importlib.import_module(mod)
            return str(getattr(m, "__version__", "?"))
        except Exception as exc:
            return f"unavailable ({type(exc).__name__})"

    info: Dict[str, Any] = {
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "numpy": version("numpy"),
        "torch": version("torch"),
        "tensorboardX": version("tensorboardX"),
        "tensorboard": version("tensorboard"),
        "protobuf": version("google.protobuf"),
        "crc32c": version("crc32c"),
    }
    try:
        import crc32c

        info["crc32c_hardware_based"] = bool(getattr(crc32c, "hardware_based", False))
    except Exception:
        pass
    tbx_impl = impls.get(TBX)
    mod = tbx_impl.module if tbx_impl else None
    info["tbx_path"] = getattr(mod, "__file__", None) or (
        list(getattr(mod, "__path__", [])) if mod is not None else None
    )
    info["tbx.record.IMPLEMENTATION"] = tbx_attr("record.IMPLEMENTATION") or "unavailable"
    crc_path = tbx_attr("record.CRC_PATH") or tbx_attr("_native.CRC_PATH")
    info["tbx CRC path"] = crc_path or "unavailable"
    return info
