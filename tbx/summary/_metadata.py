"""Serialized SummaryMetadata and helpers shared by the summary modules."""

from tbx import record
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
