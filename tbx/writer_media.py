"""SummaryWriter methods: add_audio, add_video, add_figure, add_image_with_boxes.

A mixin of tbx.writer.SummaryWriter; it uses the writer's helpers
(`_point`, `_first_use`, `file_writer`).
"""


class MediaMethods:
    """add_audio, add_video, add_figure, add_image_with_boxes."""
