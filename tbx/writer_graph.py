"""SummaryWriter methods: add_graph, add_onnx_graph.

A mixin of tbx.writer.SummaryWriter; it uses the writer's helpers
(`_point`, `_first_use`, `file_writer`).
"""


class GraphMethods:
    """add_graph, add_onnx_graph."""
