"""Text: a DT_STRING tensor with ``text`` metadata (rank 0 renders as markdown)."""

from tbx.proto import plugin_data_pb2, tensor_pb2
from tbx.summary._metadata import TENSOR, metadata, value_record

PLUGIN_NAME = "text"
METADATA = metadata(PLUGIN_NAME, plugin_data_pb2.TextPluginData(version=0).SerializeToString(), TENSOR)


def text_record(tag, text, step, wall_time, with_metadata):
    """Framed Event bytes for one markdown text."""

    def fill(value):
        value.tensor.dtype = tensor_pb2.DT_STRING
        value.tensor.tensor_shape.SetInParent()
        value.tensor.string_val.append(text.encode("utf-8"))
        if with_metadata:
            value.metadata.CopyFrom(METADATA)

    return value_record(tag, step, wall_time, fill)
