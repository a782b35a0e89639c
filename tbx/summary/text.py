"""Text: a DT_STRING tensor with ``text`` metadata.

A rank-0 string renders as markdown; a rank-1 or rank-2 array of strings as an
HTML table (each cell rendered as markdown).
"""

from tbx.proto import plugin_data_pb2, tensor_pb2
from tbx.summary._metadata import TENSOR, metadata, value_record

PLUGIN_NAME = "text"
METADATA = metadata(PLUGIN_NAME, plugin_data_pb2.TextPluginData(version=0).SerializeToString(), TENSOR)


def check_table(cells, name="text_string"):
    """Validate a table given as a 1-D or 2-D sequence of str; returns (shape, flat cells)."""
    rows = list(cells)
    if not rows:
        raise ValueError(f"{name} is an empty table; give at least one cell")
    if all(isinstance(cell, str) for cell in rows):
        return (len(rows),), rows
    if not all(isinstance(row, (list, tuple)) for row in rows):
        raise TypeError(f"{name} must be a str, or a list of str / list of lists of str for a table")
    width = len(rows[0])
    if width == 0 or any(len(row) != width for row in rows):
        raise ValueError(f"{name}: every table row needs the same, non-zero number of cells, got {[len(r) for r in rows]}")
    flat = [cell for row in rows for cell in row]
    if not all(isinstance(cell, str) for cell in flat):
        raise TypeError(f"{name}: table cells must be str")
    return (len(rows), width), flat


def text_record(tag, text, step, wall_time, with_metadata, shape=()):
    """Framed Event bytes for markdown text (``shape=()``) or a table of cells (``text`` a list)."""
    cells = [text] if not shape else text

    def fill(value):
        value.tensor.dtype = tensor_pb2.DT_STRING
        value.tensor.tensor_shape.SetInParent()
        for size in shape:
            value.tensor.tensor_shape.dim.add(size=size)
        value.tensor.string_val.extend(cell.encode("utf-8") for cell in cells)
        if with_metadata:
            value.metadata.CopyFrom(METADATA)

    return value_record(tag, step, wall_time, fill)
