"""The record kernel: known answers, and the C kernel against its pure twin byte for byte."""

import math
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tbx import _pure, record
from tbx.proto import event_pb2, summary_pb2

try:
    from tbx import _native
except ImportError:  # reported by test_native_is_built when it is required
    _native = None

KERNELS = [_pure] + ([_native] if _native is not None else [])
needs_native = pytest.mark.skipif(_native is None, reason="C kernel not built; test_native_is_built decides if that is allowed")

SCALAR_MD = summary_pb2.SummaryMetadata(data_class=summary_pb2.DATA_CLASS_SCALAR)
SCALAR_MD.plugin_data.plugin_name = "scalars"
SCALAR_MD = SCALAR_MD.SerializeToString()


def test_native_is_built():
    """CI builds with TBX_REQUIRE_NATIVE=1: there the extension must exist."""
    if os.environ.get("TBX_REQUIRE_NATIVE") == "1":
        assert _native is not None, "TBX_REQUIRE_NATIVE=1 but tbx._native is not importable"


def test_implementation_names_kernel_and_crc_path():
    kernel = "pure" if os.environ.get("TBX_PURE") == "1" or _native is None else "native"
    assert record.IMPLEMENTATION.startswith(kernel + " (crc: ")
    assert record.KERNEL.CRC_PATH in record.IMPLEMENTATION
    if kernel == "pure":
        assert record.crc32c is _pure.crc32c


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.IMPLEMENTATION)
class TestKnownAnswers:
    def test_crc32c(self, kernel):
        assert kernel.crc32c(b"123456789") == 0xE3069283
        assert kernel.crc32c(b"") == 0

    def test_masked(self, kernel):
        assert kernel.masked_crc32c(b"123456789") == 0xC78AB0E5
        assert kernel.masked_crc32c(b"") == 0xA282EAD8
        assert kernel.masked_crc32c(b"\x1a\x11CRC test, one two") == 0x5794D08A
        assert kernel.masked_crc32c(struct.pack("<Q", 24)) == 0x224B7FA3

    def test_incremental(self, kernel):
        assert kernel.crc32c(b"56789", kernel.crc32c(b"1234")) == 0xE3069283

    def test_buffer_types(self, kernel):
        data = b"123456789"
        for buf in (bytearray(data), memoryview(data)):
            assert kernel.crc32c(buf) == 0xE3069283

    def test_frame_layout(self, kernel):
        framed = kernel.frame(b"hello")
        assert framed[:8] == struct.pack("<Q", 5)
        assert struct.unpack("<I", framed[8:12])[0] == kernel.masked_crc32c(framed[:8])
        assert framed[12:17] == b"hello"
        assert struct.unpack("<I", framed[17:])[0] == kernel.masked_crc32c(b"hello")

    def test_first_record_matches_tensorboard_file(self, kernel):
        # A TensorBoard-written file starts 4800000000000000 fe92489d (72-byte first record).
        assert kernel.frame(b"x" * 72)[:12] == bytes.fromhex("4800000000000000fe92489d")

    def test_encode_scalar_equals_protobuf(self, kernel):
        for legacy in (True, False):
            for metadata in (None, SCALAR_MD):
                framed = kernel.encode_scalar("loss", 0.25, 7, 1700000000.5, metadata, legacy)
                assert framed == kernel.frame(_reference_scalar("loss", 0.25, 7, 1700000000.5, metadata, legacy))

    def test_split_records_statuses(self, kernel):
        data = kernel.frame_many([b"a", b"bb", b"ccc"])
        assert kernel.split_records(data) == ([b"a", b"bb", b"ccc"], len(data), 0)
        assert kernel.split_records(data, 17) == ([b"bb", b"ccc"], len(data), 0)
        cut = data[:-2]
        assert kernel.split_records(cut) == ([b"a", b"bb"], 35, 0)
        bad_len = bytearray(data)
        bad_len[17 + 9] ^= 0xFF
        assert kernel.split_records(bytes(bad_len)) == ([b"a"], 17, 1)
        bad_data = bytearray(data)
        bad_data[17 + 12] ^= 0x01
        assert kernel.split_records(bytes(bad_data)) == ([b"a"], 17, 2)
        assert kernel.split_records(bytes(bad_data), 0, False)[0] == [b"a", bytes([ord("b") ^ 1]) + b"b", b"ccc"]


def _reference_scalar(tag, value, step, wall_time, metadata, legacy):
    event = event_pb2.Event(wall_time=wall_time, step=step)
    val = event.summary.value.add(tag=tag)
    if legacy:
        val.simple_value = value
    else:
        val.tensor.dtype = 1
        val.tensor.tensor_shape.SetInParent()
        val.tensor.float_val.append(value)
    if metadata is not None:
        val.metadata.ParseFromString(metadata)
        val.metadata.SetInParent()
    return event.SerializeToString()


@needs_native
@pytest.mark.parametrize("crc_env", ["table", "hw"])
def test_native_crc_paths_agree_with_pure(crc_env):
    """Both native CRC paths (forced table, and hardware when present) equal the twin, at every alignment."""
    code = (
        "import os, random, sys\n"
        "from tbx import _native, _pure\n"
        "random.seed(1)\n"
        "print(_native.CRC_PATH)\n"
        "for n in list(range(0, 80)) + [255, 256, 767, 768, 769, 3*8192-1, 3*8192, 3*8192+1, 100003, 1 << 20]:\n"
        "    data = random.randbytes(n + 8)\n"
        "    for off in range(0, 8, 3):\n"
        "        chunk = data[off:off + n]\n"
        "        assert _native.crc32c(chunk) == _pure.crc32c(chunk), (n, off)\n"
        "        assert _native.crc32c(chunk, 12345) == _pure.crc32c(chunk, 12345), (n, off)\n"
    )
    env = dict(os.environ)
    env.pop("TBX_CRC", None)
    if crc_env == "table":
        env["TBX_CRC"] = "table"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    path = out.stdout.strip()
    if crc_env == "table":
        assert path == "table"
    else:
        assert path in ("sse4.2", "armv8-crc", "table")


# --- property tests: native == pure, byte for byte -----------------------------

settings.register_profile("tbx", deadline=None, max_examples=300)
settings.load_profile("tbx")

finite_or_special = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1e300, -1e300, 3.4028235e38, 1e-45]),
)
steps = st.one_of(
    st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.sampled_from([0, -1, 1 << 40, -(1 << 40), (1 << 63) - 1, -(1 << 63)]),
)


@needs_native
@given(st.binary(max_size=5000))
def test_prop_crc_and_frame(data):
    assert _native.crc32c(data) == _pure.crc32c(data)
    assert _native.masked_crc32c(data) == _pure.masked_crc32c(data)
    assert _native.frame(data) == _pure.frame(data)


@needs_native
def test_every_length_0_to_4096():
    data = os.urandom(4097)
    for n in range(4097):
        chunk = data[:n]
        assert _native.frame(chunk) == _pure.frame(chunk), n


@needs_native
def test_large_buffers():
    data = os.urandom((8 << 20) + 13)
    assert _native.crc32c(data) == _pure.crc32c(data)
    assert _native.frame(data) == _pure.frame(data)


@needs_native
@given(st.lists(st.binary(max_size=300), max_size=30))
def test_prop_frame_many(payloads):
    assert _native.frame_many(payloads) == _pure.frame_many(payloads)
    assert _native.frame_many(payloads) == b"".join(_pure.frame(p) for p in payloads)


@needs_native
@given(
    tag=st.text(max_size=40),
    value=finite_or_special,
    step=steps,
    wall_time=st.one_of(st.floats(allow_nan=False, width=64), st.just(0.0), st.just(-0.0)),
    with_metadata=st.booleans(),
    legacy=st.booleans(),
)
def test_prop_encode_scalar(tag, value, step, wall_time, with_metadata, legacy):
    md = SCALAR_MD if with_metadata else None
    native = _native.encode_scalar(tag, value, step, wall_time, md, legacy)
    assert native == _pure.encode_scalar(tag, value, step, wall_time, md, legacy)
    # and it is exactly what protobuf serializes (values rounded to float32 first)
    try:
        f32 = struct.unpack("<f", struct.pack("<f", value))[0]
    except OverflowError:
        f32 = math.copysign(math.inf, value)
    ref = _pure.frame(_reference_scalar(tag, f32, step, wall_time, md, legacy))
    if not math.isnan(value):
        assert native == ref


@given(
    tag=st.text(max_size=20),
    points=st.lists(st.tuples(finite_or_special, steps,
                              st.one_of(st.floats(allow_nan=False, width=64), st.just(0.0), st.just(-0.0))),
                    max_size=30),
    with_metadata=st.booleans(),
    legacy=st.booleans(),
)
def test_prop_encode_scalars_is_encode_scalar_per_point(tag, points, with_metadata, legacy):
    """The batch encoder gives encode_scalar's bytes for every point, metadata on the first only."""
    md = SCALAR_MD if with_metadata else None
    values = np.array([p[0] for p in points], np.float64)
    step_col = np.array([p[1] for p in points], np.int64)
    walls = np.array([p[2] for p in points], np.float64)
    expected = b"".join(_pure.encode_scalar(tag, v, s, w, md if i == 0 else None, legacy)
                        for i, (v, s, w) in enumerate(points))
    for kernel in KERNELS:
        assert kernel.encode_scalars(tag, values, step_col, walls, md, legacy) == expected


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.IMPLEMENTATION)
def test_encode_scalars_checks_its_columns(kernel):
    one, ints = np.ones(3), np.arange(3)
    with pytest.raises(TypeError, match="values must be a contiguous buffer of float64, got format"):
        kernel.encode_scalars("t", ints, ints, one, None, False)
    with pytest.raises(TypeError, match="steps must be a contiguous buffer of int64"):
        kernel.encode_scalars("t", one, one, one, None, False)
    with pytest.raises(TypeError, match="wall_times must be a contiguous buffer of float64"):
        kernel.encode_scalars("t", one, ints, np.ones(6)[::2], None, False)
    with pytest.raises(ValueError, match=r"differ in length \(3, 2, 3\)"):
        kernel.encode_scalars("t", one, ints[:2], one, None, False)
    big = kernel.encode_scalars("t", np.ones(20000), np.arange(20000), np.ones(20000), SCALAR_MD, True)
    assert big.startswith(kernel.encode_scalar("t", 1.0, 0, 1.0, SCALAR_MD, True))  # past the GIL threshold
    assert big.endswith(kernel.encode_scalar("t", 1.0, 19999, 1.0, None, True))


@needs_native
@given(st.lists(st.tuples(st.text(min_size=1, max_size=8), finite_or_special, steps, st.booleans(), st.booleans()), max_size=40),
       st.integers(min_value=0, max_value=40))
def test_prop_decode_scalars_and_split(points, cut):
    buf = b"".join(
        _pure.encode_scalar(tag, v, s, 1000.0 + i, SCALAR_MD if md else None, legacy)
        for i, (tag, v, s, md, legacy) in enumerate(points)
    )
    buf = buf[: max(0, len(buf) - cut)]
    assert _native.decode_scalars(buf) == _pure.decode_scalars(buf)
    assert _native.split_records(buf) == _pure.split_records(buf)


@needs_native
@given(st.binary(max_size=400), st.booleans())
def test_prop_decode_garbage_is_handled_the_same(payload, verify):
    buf = _pure.frame(payload) + _pure.encode_scalar("t", 1.0, 1, 2.0, None, True)
    assert _native.decode_scalars(buf, 0, verify) == _pure.decode_scalars(buf, 0, verify)
    assert _native.split_records(buf, 0, verify) == _pure.split_records(buf, 0, verify)


@needs_native
@given(st.data())
def test_prop_decode_tensor_forms(data):
    """Hand-built tensors of every dtype/shape/storage form decode identically."""
    event = event_pb2.Event(wall_time=1.5, step=data.draw(steps))
    for i in range(data.draw(st.integers(0, 4))):
        val = event.summary.value.add(tag=data.draw(st.sampled_from(["a", "b", "ü"])))
        kind = data.draw(st.sampled_from(["float_val", "double_val", "content4", "content8", "shape1", "int", "simple", "string"]))
        t = val.tensor
        if kind == "float_val":
            t.dtype = 1
            t.float_val.extend(data.draw(st.lists(st.floats(width=32), min_size=0, max_size=2)))
        elif kind == "double_val":
            t.dtype = 2
            t.double_val.extend(data.draw(st.lists(st.floats(), min_size=0, max_size=2)))
        elif kind == "content4":
            t.dtype = 1
            t.tensor_content = struct.pack("<f", data.draw(st.floats(width=32)))
        elif kind == "content8":
            t.dtype = 2
            t.tensor_content = struct.pack("<d", data.draw(st.floats()))
        elif kind == "shape1":
            t.dtype = 1
            t.tensor_shape.dim.add(size=1)
            t.float_val.append(1.0)
        elif kind == "int":
            t.dtype = 9
            t.int64_val.append(3)
        elif kind == "simple":
            val.simple_value = data.draw(st.floats(width=32))
        else:
            t.dtype = 7
            t.string_val.append(b"x")
        if data.draw(st.booleans()):
            val.metadata.plugin_data.plugin_name = data.draw(st.sampled_from(["scalars", "histograms", ""]))
    buf = _pure.frame(event.SerializeToString())
    assert _native.decode_scalars(buf) == _pure.decode_scalars(buf)


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.IMPLEMENTATION)
def test_decode_scalars_semantics(kernel):
    buf = b"".join([
        kernel.encode_scalar("new", 1.5, 1, 10.0, SCALAR_MD, False),
        kernel.encode_scalar("new", 2.5, 2, 11.0, None, False),
        kernel.encode_scalar("old", float("nan"), -3, 12.0, None, True),
        kernel.encode_scalar("old", float("inf"), 1 << 40, 13.0, None, True),
        kernel.frame(b"\x1a\x05brain"),  # an Event with file_version only: a record, no point
    ])
    end, status, tags, idx, stp, wall, val, records = kernel.decode_scalars(buf)
    assert (end, status, records) == (len(buf), 0, 5)
    assert tags == [("new", "scalars"), ("old", "scalars")]
    assert struct.unpack("<4i", idx) == (0, 0, 1, 1)
    assert struct.unpack("<4q", stp) == (1, 2, -3, 1 << 40)
    assert struct.unpack("<4d", wall) == (10.0, 11.0, 12.0, 13.0)
    values = struct.unpack("<4d", val)
    assert values[:2] == (1.5, 2.5) and math.isnan(values[2]) and values[3] == math.inf


@needs_native
@pytest.mark.parametrize("tag_len", [0, 1, 126, 127, 128, 300])
@pytest.mark.parametrize("legacy", [False, True])
def test_decode_scalars_encoder_layout_and_near_misses(tag_len, legacy):
    """The decoder reads the encoder's own layout at fixed places; near misses go the general way: same points."""
    tag = "t" * tag_len
    events = [_native.encode_scalar(tag, 0.5, 3, 1.25, None, legacy),
              _native.encode_scalar(tag, -2.0, 0, 0.0, None, legacy),  # step and wall time left out
              _native.encode_scalar(tag, 1.0, -(1 << 40), 7.0, SCALAR_MD, legacy)]  # with metadata
    e = event_pb2.Event(wall_time=2.0, step=9)  # the wall time after the step, two values
    e.summary.value.add(tag=tag, simple_value=4.0)
    e.summary.value.add(tag="other", simple_value=5.0)
    events.append(_native.frame(e.SerializeToString()))
    e = event_pb2.Event(step=1, wall_time=3.0)
    e.summary.value.add(tag=tag).tensor.CopyFrom(_tensor(1, [], [6.0]))  # rank-0 tensor, unpacked float_val
    events.append(_native.frame(e.SerializeToString()))
    buf = b"".join(events)
    out = _native.decode_scalars(buf)
    assert out == _pure.decode_scalars(buf)
    assert out[-1] == len(events)
    expected = [0.5, -2.0, 1.0, 4.0, 5.0, 6.0] if tag_len else [5.0]
    assert list(struct.unpack(f"<{len(expected)}d", out[6])) == expected


def _tensor(dtype, shape, floats):
    from tbx.proto import tensor_pb2
    t = tensor_pb2.TensorProto(dtype=dtype)
    for d in shape:
        t.tensor_shape.dim.add(size=d)
    t.float_val.extend(floats)
    return t


@given(st.lists(st.integers(0, 300), max_size=30), st.integers(0, 12000), st.integers(0, 12000))
def test_prop_seek_record(sizes, target, start_at):
    """seek_record: the first record boundary at or after target, found by walking lengths; native and pure agree."""
    recs = [_pure.frame(bytes(n)) for n in sizes]
    buf = b"".join(recs)
    bounds = [0]
    for r in recs:
        bounds.append(bounds[-1] + len(r))
    start = bounds[min(start_at % (len(bounds)), len(bounds) - 1)]
    want = next((b for b in bounds if b >= max(target, start)), -1)
    for kernel in KERNELS:
        assert kernel.seek_record(buf, start, target) == want
    if len(buf) > 8:
        bad = bytearray(buf)
        bad[8] ^= 1  # the first length checksum
        for kernel in KERNELS:
            assert kernel.seek_record(bytes(bad), 0, max(target, 1)) == -1
