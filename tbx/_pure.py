"""Pure-Python twin of the C kernel ``tbx._native``.

Same functions, same signatures, byte-identical results (tests/test_record.py
checks this property by property). It is used when the extension is not built
or when ``TBX_PURE=1`` is set. See tbx/_native.pyi for the contract of each
function.
"""

from array import array
import struct
import sys

IMPLEMENTATION = "pure"
CRC_PATH = "table"

_POLY = 0x82F63B78  # CRC32C, reflected
_MASK_DELTA = 0xA282EAD8


def _make_tables():
    first = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        first.append(crc)
    tables = [first]
    for _ in range(7):
        prev = tables[-1]
        tables.append([(c >> 8) ^ first[c & 0xFF] for c in prev])
    return tables


_T0, _T1, _T2, _T3, _T4, _T5, _T6, _T7 = _make_tables()


def crc32c(data, value=0, /):
    """CRC32C of ``data``, continuing from ``value`` (0 for a fresh CRC)."""
    view = memoryview(data).cast("B")
    crc = (value & 0xFFFFFFFF) ^ 0xFFFFFFFF
    n = len(view)
    whole = n - n % 8
    t0, t1, t2, t3, t4, t5, t6, t7 = _T0, _T1, _T2, _T3, _T4, _T5, _T6, _T7
    if whole:
        for word in struct.unpack_from(f"<{whole // 8}Q", view):
            low = (word & 0xFFFFFFFF) ^ crc
            high = word >> 32
            crc = (
                t7[low & 0xFF] ^ t6[(low >> 8) & 0xFF] ^ t5[(low >> 16) & 0xFF]
                ^ t4[low >> 24] ^ t3[high & 0xFF] ^ t2[(high >> 8) & 0xFF]
                ^ t1[(high >> 16) & 0xFF] ^ t0[high >> 24]
            )
    for byte in view[whole:]:
        crc = (crc >> 8) ^ t0[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data, /):
    """The TFRecord mask of crc32c(data): rotate right by 15, add 0xA282EAD8."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(payload, /):
    """One framed record: length, masked CRC of length, payload, masked CRC."""
    payload = bytes(payload)
    header = struct.pack("<Q", len(payload))
    return b"".join(
        (
            header,
            struct.pack("<I", masked_crc32c(header)),
            payload,
            struct.pack("<I", masked_crc32c(payload)),
        )
    )


def frame_many(payloads, /):
    """frame() of every payload, concatenated."""
    return b"".join([frame(p) for p in payloads])


# --- protobuf wire helpers ---------------------------------------------------

def _varint(n):
    n &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field_bytes(key, body):
    return key + _varint(len(body)) + body


def _float32(value):
    try:
        return struct.pack("<f", value)
    except OverflowError:  # finite double beyond float32: C casts it to +-inf
        return struct.pack("<f", float("inf") if value > 0 else float("-inf"))


def encode_scalar(tag, value, step, wall_time, metadata, legacy, /):
    """A framed scalar Event record; see tbx/_native.pyi."""
    if not isinstance(tag, str):
        raise TypeError(f"tag must be str, got {type(tag).__name__}")
    value = float(value)
    if not -(1 << 63) <= step < (1 << 63):
        raise OverflowError(f"step {step} does not fit in int64")
    wall_time = float(wall_time)
    tag_bytes = tag.encode("utf-8")
    parts = []
    if tag_bytes:
        parts.append(_field_bytes(b"\x0a", tag_bytes))
    if legacy:
        parts.append(b"\x15" + _float32(value))
    else:
        # TensorProto{dtype: DT_FLOAT, tensor_shape: {}, float_val: [value]}
        parts.append(_field_bytes(b"\x42", b"\x08\x01\x12\x00\x2a\x04" + _float32(value)))
    if metadata is not None:
        parts.append(_field_bytes(b"\x4a", bytes(metadata)))
    summary = _field_bytes(b"\x0a", b"".join(parts))
    event = []
    wall_bytes = struct.pack("<d", wall_time)
    if wall_bytes != b"\x00" * 8:
        event.append(b"\x09" + wall_bytes)
    if step:
        event.append(b"\x10" + _varint(step))
    event.append(_field_bytes(b"\x2a", summary))
    return frame(b"".join(event))


def _column(obj, kind, name):
    """A C-contiguous buffer of 8-byte items as a memoryview of ``kind`` ('d' float64, 'q' int64)."""
    view = memoryview(obj)
    fmt = view.format.lstrip("@=<" if sys.byteorder == "little" else "@=")
    ok = view.itemsize == 8 and (fmt == "d" if kind == "d" else fmt in ("q", "l"))
    if not ok or not view.c_contiguous:
        raise TypeError(f"{name} must be a contiguous buffer of {'float64' if kind == 'd' else 'int64'}, "
                        f"got format '{view.format}' (item size {view.itemsize})")
    return view.cast("B").cast(kind)


def encode_scalars(tag, values, steps, wall_times, metadata, legacy, /):
    """Framed scalar Events of every point; see tbx/_native.pyi."""
    values = _column(values, "d", "values")
    steps = _column(steps, "q", "steps")
    wall_times = _column(wall_times, "d", "wall_times")
    if not len(values) == len(steps) == len(wall_times):
        raise ValueError(f"encode_scalars: values, steps and wall_times differ in length "
                         f"({len(values)}, {len(steps)}, {len(wall_times)})")
    return b"".join(encode_scalar(tag, v, s, w, metadata if i == 0 else None, legacy)
                    for i, (v, s, w) in enumerate(zip(values, steps, wall_times)))


# --- reading -----------------------------------------------------------------

_unpack_q = struct.Struct("<Q").unpack_from
_unpack_i = struct.Struct("<I").unpack_from


def _next_record(view, pos, verify):
    """(payload, next_pos, status) for the record at pos; payload None if none."""
    n = len(view)
    if n - pos < 12:
        return None, pos, 0
    (length,) = _unpack_q(view, pos)
    if verify and masked_crc32c(view[pos:pos + 8]) != _unpack_i(view, pos + 8)[0]:
        return None, pos, 1
    if length > n - pos - 16:
        return None, pos, 0
    start = pos + 12
    payload = view[start:start + length]
    if verify and masked_crc32c(payload) != _unpack_i(view, start + length)[0]:
        return None, pos, 2
    return payload, start + length + 4, 0


def split_records(buf, offset=0, verify=True, /):
    """Split buf[offset:] into payloads; see tbx/_native.pyi."""
    view = memoryview(buf).cast("B")
    out = []
    pos = offset
    while True:
        payload, nxt, status = _next_record(view, pos, verify)
        if payload is None:
            return out, pos, status
        out.append(bytes(payload))
        pos = nxt


def seek_record(buf, offset, target, /):
    """Offset of the first record at or after target, walking lengths from offset; see tbx/_native.pyi."""
    view = memoryview(buf).cast("B")
    n = len(view)
    if offset < 0 or offset > n:
        raise ValueError(f"offset {offset} is outside the buffer (0..{n})")
    pos = offset
    while pos < target:
        if n - pos < 16:
            return -1
        (length,) = _unpack_q(view, pos)
        if masked_crc32c(view[pos:pos + 8]) != _unpack_i(view, pos + 8)[0] or length > n - pos - 16:
            return -1
        pos += 16 + length
    return pos


class _Malformed(Exception):
    pass


def _read_varint(b, pos, end):
    result = 0
    shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed
        byte = b[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7


def _fields(b, pos, end):
    """Yield (field, wire_type, value, start, stop) for a message in b[pos:end].

    For varints value is the integer; for fixed32/64 and LEN fields start:stop
    delimits the raw bytes.
    """
    while pos < end:
        key, pos = _read_varint(b, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _Malformed
        if wire == 0:
            value, pos = _read_varint(b, pos, end)
            yield field, 0, value, pos, pos
        elif wire == 1:
            if pos + 8 > end:
                raise _Malformed
            yield field, 1, None, pos, pos + 8
            pos += 8
        elif wire == 5:
            if pos + 4 > end:
                raise _Malformed
            yield field, 5, None, pos, pos + 4
            pos += 4
        elif wire == 2:
            length, pos = _read_varint(b, pos, end)
            if length > end - pos:
                raise _Malformed
            yield field, 2, None, pos, pos + length
            pos += length
        else:
            raise _Malformed


def _plugin_name(b, start, stop):
    name = None
    for field, wire, _, s, e in _fields(b, start, stop):
        if field == 1 and wire == 2:  # plugin_data
            for f2, w2, _, s2, e2 in _fields(b, s, e):
                if f2 == 1 and w2 == 2:
                    name = bytes(b[s2:e2]).decode("utf-8", "replace")
    return name if name is not None else ""


def _tensor_scalar(b, start, stop):
    """The value of a rank-0 DT_FLOAT/DT_DOUBLE tensor, or None."""
    dtype = 0
    rank = 0
    content = None
    floats = []
    doubles = []
    for field, wire, value, s, e in _fields(b, start, stop):
        if field == 1 and wire == 0:
            dtype = value
        elif field == 2 and wire == 2:
            rank = 0
            for f2, _, _, _, _ in _fields(b, s, e):
                if f2 == 2:
                    rank += 1
        elif field == 4 and wire == 2:
            content = bytes(b[s:e])
        elif field == 5:
            if wire == 2:
                if (e - s) % 4:
                    raise _Malformed
                floats.extend(struct.unpack_from(f"<{(e - s) // 4}f", b, s))
            elif wire == 5:
                floats.append(struct.unpack_from("<f", b, s)[0])
        elif field == 6:
            if wire == 2:
                if (e - s) % 8:
                    raise _Malformed
                doubles.extend(struct.unpack_from(f"<{(e - s) // 8}d", b, s))
            elif wire == 1:
                doubles.append(struct.unpack_from("<d", b, s)[0])
    if rank:
        return None
    if dtype == 1:
        if content is not None and len(content) == 4:
            return struct.unpack("<f", content)[0]
        if content is None and len(floats) == 1:
            return floats[0]
    elif dtype == 2:
        if content is not None and len(content) == 8:
            return struct.unpack("<d", content)[0]
        if content is None and len(doubles) == 1:
            return doubles[0]
    return None


def _event_points(b):
    """(wall_time, step, [(tag, plugin_or_None, value_or_None)]) of one Event."""
    wall_time = 0.0
    step = 0
    values = []
    for field, wire, value, s, e in _fields(b, 0, len(b)):
        if field == 1 and wire == 1:
            wall_time = struct.unpack_from("<d", b, s)[0]
        elif field == 2 and wire == 0:
            step = value - (1 << 64) if value >= (1 << 63) else value
        elif field == 5 and wire == 2:
            for f2, w2, _, s2, e2 in _fields(b, s, e):
                if f2 == 1 and w2 == 2:
                    values.append(_value_point(b, s2, e2))
    return wall_time, step, values


def _value_point(b, start, stop):
    tag = b""
    plugin = None
    point = None
    simple = False
    for field, wire, _, s, e in _fields(b, start, stop):
        if field == 1 and wire == 2:
            tag = bytes(b[s:e])
        elif field == 2 and wire == 5:
            point = struct.unpack_from("<f", b, s)[0]
            simple = True
        elif field == 8 and wire == 2:
            point = _tensor_scalar(b, s, e)
            simple = False
        elif field in (3, 4, 5, 6):  # another member of the value oneof
            point = None
            simple = False
        elif field == 9 and wire == 2:
            plugin = _plugin_name(b, s, e)
    return tag.decode("utf-8", "replace"), plugin, point, simple


def decode_scalars(buf, offset=0, verify=True, /):
    """Decode scalar points of every record in buf[offset:]; see _native.pyi."""
    view = memoryview(buf).cast("B")
    tags = []
    index = {}
    plugins = []
    tag_index = array("i")
    steps = array("q")
    walls = array("d")
    values = array("d")
    pos = offset
    records = 0
    while True:
        payload, nxt, status = _next_record(view, pos, verify)
        if payload is None:
            break
        pos = nxt
        records += 1
        try:
            wall_time, step, points = _event_points(payload)
        except (_Malformed, struct.error):
            continue
        for tag, plugin, point, simple in points:
            if not tag:
                continue
            i = index.get(tag)
            if i is None:
                i = index[tag] = len(tags)
                tags.append(tag)
                plugins.append(None)
            if plugins[i] is None:
                if plugin is not None:
                    plugins[i] = plugin
                elif simple:
                    plugins[i] = "scalars"
            if point is not None:
                tag_index.append(i)
                steps.append(step)
                walls.append(wall_time)
                values.append(point)
    columns = [tag_index, steps, walls, values]
    if sys.byteorder != "little":
        for column in columns:
            column.byteswap()
    return (pos, status, list(zip(tags, plugins)), *(c.tobytes() for c in columns), records)
