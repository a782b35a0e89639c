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


def count_summary_values(logdir: str) -> Dict[str, int]:
    """Count summary values per kind over every event file under ``logdir``.

    Kinds: 'scalar' (simple_value or rank-0 tensor), 'histogram' (histo or
    [k,3] tensor), 'image' (image or string tensor), 'other'. Parsed with
    TensorBoard's own protos, so a tbx bug cannot hide itself.
    """
    from tensorboard.compat.proto import event_pb2

    counts = {"scalar": 0, "histogram": 0, "image": 0, "other": 0, "events": 0}
    Event = event_pb2.Event
    by_plugin = {"scalars": "scalar", "histograms": "histogram", "images": "image"}
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
                elif kind == "tensor":
                    if v.tag not in plugin_of and v.HasField("metadata"):
                        plugin_of[v.tag] = v.metadata.plugin_data.plugin_name
                    plugin = plugin_of.get(v.tag, "")
                    counts[by_plugin.get(plugin, "other")] += 1
                else:
                    counts["other"] += 1
    return counts


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
