"""SummaryWriter methods: add_embedding.

A mixin of tbx.writer.SummaryWriter; it uses the writer's helpers
(`_point`, `_first_use`, `file_writer`).
"""


class ProjectorMethods:
    """add_embedding."""
