"""Serialized SummaryMetadata and helpers shared by the summary modules."""

import struct

from tbx import record
from tbx._pure import _field_bytes as _field, _varint
from tbx.proto import event_pb2, summary_pb2

SCALAR = summary_pb2.DATA_CLASS_SCALAR
TENSOR = summary_pb2.DATA_CLASS_TENSOR
BLOB_SEQUENCE = summary_pb2.DATA_CLASS_BLOB_SEQUENCE


def metadata(plugin_name, content=b"", data_class=summary_pb2.DATA_CLASS_UNKNOWN, description=""):
    """A SummaryMetadata message for ``plugin_name``."""
    md = summary_pb2.SummaryMetadata(data_class=data_class, summary_description=description)
    md.plugin_data.plugin_name = plugin_name
    md.plugin_data.content = content
    return md


def value_record(tag, step, wall_time, fill):
    """A framed Event holding one Summary.Value; ``fill(value)`` sets its fields."""
    event = event_pb2.Event(wall_time=wall_time, step=step)
    value = event.summary.value.add(tag=tag)
    fill(value)
    return record.frame(event.SerializeToString())


def _nbytes(part):
    return part.nbytes if isinstance(part, memoryview) else len(part)


def string_tensor_record(tag, step, wall_time, dims, strings, metadata_bytes=None):
    """A framed Event with one Summary.Value holding a DT_STRING tensor.

    Each element of ``strings`` is bytes or a list of byte buffers (bytes,
    memoryview) that together form it. The result equals protobuf's
    serialization of the same message, but the large strings are copied
    once, by one join, instead of into a message object and out again: the
    encoder pool then holds the GIL only briefly, and ``record.frame``
    checksums large records with the GIL released.
    """
    shape = b"".join(_field(b"\x12", b"\x08" + _varint(d) if d else b"") for d in dims)
    tensor = [b"\x08\x07", _field(b"\x12", shape)]
    for string in strings:
        parts = string if isinstance(string, (list, tuple)) else (string,)
        tensor.append(b"\x42" + _varint(sum(map(_nbytes, parts))))
        tensor.extend(parts)
    tensor_len = sum(map(_nbytes, tensor))
    value_head = (_field(b"\x0a", tag.encode("utf-8")) if tag else b"") + b"\x42" + _varint(tensor_len)
    value_tail = _field(b"\x4a", metadata_bytes) if metadata_bytes is not None else b""
    value_len = len(value_head) + tensor_len + len(value_tail)
    summary_head = b"\x0a" + _varint(value_len)
    wall = struct.pack("<d", wall_time)
    event_head = b"".join([
        b"\x09" + wall if wall != bytes(8) else b"",
        b"\x10" + _varint(step) if step else b"",
        b"\x2a" + _varint(len(summary_head) + value_len),
    ])
    return record.frame(b"".join([event_head, summary_head, value_head, *tensor, value_tail]))
