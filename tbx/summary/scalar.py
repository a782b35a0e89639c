"""Scalars: a rank-0 DT_FLOAT tensor with ``scalars`` metadata, or legacy simple_value.

Both forms display on both TensorBoard loaders. The tensor form must be rank-0
DT_FLOAT: the Rust loader silently drops DT_DOUBLE or shape [1] scalars.
"""

from tbx import record
from tbx.proto import plugin_data_pb2
from tbx.summary._metadata import SCALAR, metadata

PLUGIN_NAME = "scalars"
METADATA = metadata(PLUGIN_NAME, plugin_data_pb2.ScalarPluginData(version=0).SerializeToString(), SCALAR)
METADATA_BYTES = METADATA.SerializeToString()


def scalar_record(tag, value, step, wall_time, with_metadata, legacy):
    """Framed Event bytes for one scalar point (encoded by the kernel)."""
    return record.encode_scalar(tag, value, step, wall_time, METADATA_BYTES if with_metadata else None, legacy)
