"""SummaryWriter methods: add_pr_curve, add_pr_curve_raw, add_custom_scalars*, add_mesh.

A mixin of tbx.writer.SummaryWriter; it uses the writer's helpers
(`_point`, `_first_use`, `file_writer`).
"""


class PluginMethods:
    """add_pr_curve, add_pr_curve_raw, add_custom_scalars*, add_mesh."""
