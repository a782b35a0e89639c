"""SummaryWriter methods: add_hparams.

A mixin of tbx.writer.SummaryWriter; it uses the writer's helpers
(`_point`, `_first_use`, `file_writer`).
"""


class HParamsMethods:
    """add_hparams."""
