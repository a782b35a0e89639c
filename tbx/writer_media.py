"""SummaryWriter methods: add_audio, add_video, add_figure, add_image_with_boxes.

A mixin of tbx.writer.SummaryWriter; it uses the writer's helpers
(`_point`, `_first_use`, `file_writer`). Every method validates and
snapshots its input on the caller's thread, so bad input raises at the call
and later changes to the caller's array do not reach the file; the WAV, GIF
and PNG encodings (and box drawing) run on the writer's encoder pool, in
submission order. Pillow and matplotlib are imported only when needed.
"""

import sys

import numpy as np

from tbx import _convert, _snapshot
from tbx.summary import audio as _audio
from tbx.summary import boxes as _boxes
from tbx.summary import image as _image
from tbx.summary import video as _video


class MediaMethods:
    """add_audio, add_video, add_figure, add_image_with_boxes. Thread-safe, as the writer."""

    def add_audio(self, tag, snd_tensor, global_step=None, sample_rate=44100, walltime=None):
        """Log a sound clip, shown (and playable) in the Audio dashboard.

        Args:
            tag: name of the clip series.
            snd_tensor: numpy array, torch tensor or sequence of samples:
                ``[L]`` or torch's ``[1, L]`` for mono; for several channels
                ``[C, L]`` or ``[L, C]`` (the shorter axis is the channel
                axis). Floats must lie in [-1, 1]; int16 is taken as PCM.
            global_step: integer step.
            sample_rate: samples per second (rounded to whole Hz).
            walltime: seconds since the epoch; default now.

        Written as 16-bit PCM WAV (see tbx.summary.audio for the exact rules).

        Example::

            writer.add_audio("speech", waveform.clamp(-1, 1), step, sample_rate=16000)
        """
        tag, step, walltime = self._point(tag, global_step, walltime)
        rate = _audio.sample_rate_value(sample_rate)
        clip = _audio.to_channels_first(_convert.to_numpy(snd_tensor, "snd_tensor"), rate)
        clip, buffer = _snapshot.snapshot(clip)
        first = self._first_use(tag)
        self.file_writer.submit(_audio.audio_record, tag, clip, rate, step, walltime, first,
                                nbytes=clip.nbytes, buffer=buffer)

    def add_video(self, tag, vid_tensor, global_step=None, fps=4, walltime=None, dataformats="NTCHW"):
        """Log a video as an animated GIF, shown in the Images dashboard.

        Args:
            tag: name of the video series.
            vid_tensor: ``[N, T, C, H, W]`` numpy array or torch tensor; uint8
                0-255, float in [0, 1] or bool; C is 1, 3 or 4 (alpha dropped).
                N > 1 clips are tiled into one, frame by frame (torch's grid).
            global_step: integer step.
            fps: frames per second (GIF stores whole centiseconds per frame).
            walltime: seconds since the epoch; default now.
            dataformats: the axis order of ``vid_tensor``, any order of the
                letters N, T, C, H, W (tensorboardX's argument), e.g. 'NTHWC'.

        Example::

            writer.add_video("rollout", frames[None], step, fps=10)   # frames: T x 3 x H x W
        """
        tag, step, walltime = self._point(tag, global_step, walltime)
        rate = _video.fps_value(fps)
        video = _video.check_video(_convert.to_numpy(vid_tensor, "vid_tensor"), dataformats)
        first = self._first_use(tag)
        self.file_writer.submit(_video.video_record, tag, video, rate, step, walltime, first, nbytes=video.nbytes)

    def add_figure(self, tag, figure, global_step=None, close=True, walltime=None):
        """Log a matplotlib figure (or a list of figures, tiled as add_images tiles a batch).

        The figure is rendered with matplotlib's Agg canvas on the caller's
        thread (matplotlib is not thread-safe); the PNG is encoded in the
        background. Pixels are RGB, or RGBA when the figure has transparent
        parts. The figure keeps its own canvas, so an interactive figure logged
        with ``close=False`` stays usable.

        Args:
            tag: name of the image series.
            figure: a ``matplotlib.figure.Figure`` or a non-empty list of them
                (all rendering to the same size).
            global_step: integer step.
            close: close the figure(s) after rendering (``pyplot.close``).
            walltime: seconds since the epoch; default now.

        Raises:
            ImportError: matplotlib is not installed.

        Example::

            fig, ax = plt.subplots(); ax.plot(losses)
            writer.add_figure("loss_curve", fig, step)
        """
        tag, step, walltime = self._point(tag, global_step, walltime)
        images = _render_figures(figure)
        if close:
            pyplot = sys.modules.get("matplotlib.pyplot")
            if pyplot is not None:  # without pyplot, no figure is registered anywhere to close
                for fig in figure if isinstance(figure, (list, tuple)) else [figure]:
                    pyplot.close(fig)
        first = self._first_use(tag)
        grid = isinstance(figure, (list, tuple))
        nbytes = sum(img.nbytes for img in images)
        self.file_writer.submit(_image.image_record, tag, images, step, walltime, first, grid, nbytes=nbytes)

    def add_image_with_boxes(self, tag, img_tensor, box_tensor, global_step=None, walltime=None, rescale=1,
                             dataformats="CHW", labels=None):
        """Log an image with bounding boxes drawn on it (in red, with optional labels).

        Args:
            tag: name of the image series.
            img_tensor: one image as in add_image (uint8, or float in [0, 1];
                a PIL image is taken as it is, whatever ``dataformats`` says).
            box_tensor: ``[N, 4]`` rows of (xmin, ymin, xmax, ymax) in pixels;
                N may be 0.
            global_step: integer step.
            walltime: seconds since the epoch; default now.
            rescale: resize factor for the picture, boxes included.
            dataformats: 'CHW' (default), 'HWC', 'HW' or 'WH'.
            labels: one str per box (or a single str for one box), or None.

        Example::

            writer.add_image_with_boxes("detections", image, boxes, step, labels=["cat", "dog"])
        """
        tag, step, walltime = self._point(tag, global_step, walltime)
        if isinstance(dataformats, str) and "N" in dataformats.upper():
            raise ValueError(
                f"add_image_with_boxes takes one image ('CHW', 'HWC', 'HW', 'WH'), got dataformats {dataformats!r}"
            )
        if type(img_tensor).__module__.startswith("PIL.") and hasattr(img_tensor, "getbands"):
            # a PIL image is HWC/HW whatever dataformats says, as in add_image
            if img_tensor.mode not in ("L", "RGB", "RGBA"):
                alpha = "A" in img_tensor.getbands() or "transparency" in img_tensor.info
                img_tensor = img_tensor.convert("RGBA" if alpha else "RGB")
            dataformats = "HWC" if len(img_tensor.getbands()) > 1 else "HW"
        [pixels] = _image.to_hwc_uint8(_convert.to_numpy(img_tensor, "img_tensor"), dataformats)
        boxes = _boxes.check_boxes(_convert.to_numpy(box_tensor, "box_tensor"))
        labels = _boxes.check_labels(labels, len(boxes))
        size = _boxes.scaled_size(pixels.shape[0], pixels.shape[1], rescale)
        first = self._first_use(tag)
        self.file_writer.submit(
            _boxes_record, tag, pixels, boxes, labels, size, step, walltime, first, nbytes=pixels.nbytes
        )


def _boxes_record(tag, pixels, boxes, labels, size, step, walltime, first):
    drawn = _boxes.draw_boxes(pixels, boxes, labels, size)
    return _image.image_record(tag, [drawn], step, walltime, first)


def _render_figures(figure):
    """HWC uint8 pixels of each figure (RGB, or RGBA for all when one has transparency)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("add_figure needs matplotlib, which is not installed: pip install matplotlib") from exc
    if isinstance(figure, (list, tuple)):
        if not figure:
            raise ValueError("figure is an empty list; expected a matplotlib Figure or a non-empty list of them")
        names = [f"figure[{i}]" for i in range(len(figure))]
        figures = list(figure)
    else:
        names, figures = ["figure"], [figure]
    for name, fig in zip(names, figures):
        if not isinstance(fig, Figure):
            raise TypeError(f"{name} must be a matplotlib.figure.Figure, got {type(fig).__name__}")
    rendered = [_render(fig) for fig in figures]
    for name, rgba in zip(names[1:], rendered[1:]):
        if rgba.shape != rendered[0].shape:
            raise ValueError(
                f"{name} renders to {rgba.shape[1]}x{rgba.shape[0]} pixels but figure[0] to "
                f"{rendered[0].shape[1]}x{rendered[0].shape[0]}; figures logged together must have the same size"
            )
    if all(bool((rgba[..., 3] == 255).all()) for rgba in rendered):
        return [np.ascontiguousarray(rgba[..., :3]) for rgba in rendered]
    return rendered


def _render(figure):
    """RGBA pixels of ``figure`` drawn by a fresh Agg canvas; the figure's own canvas is put back."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    own = figure.canvas
    try:
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        return np.array(canvas.buffer_rgba(), dtype=np.uint8, copy=True)
    finally:
        figure.set_canvas(own)
