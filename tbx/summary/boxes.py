"""Images with bounding boxes, drawn with Pillow and written as an ``images`` sample (PNG).

Boxes are ``[N, 4]`` rows ``(xmin, ymin, xmax, ymax)`` in pixels of the
image as given, drawn as 2-pixel red outlines (``BOX_COLOR``). A box whose
corners come in the other order is drawn between the same corners; boxes
reaching outside the image are cut at its border. A label is drawn in white
on a red band above the box's top-left corner (inside the box when there is
no room above). Grayscale images become RGB so the boxes show in colour;
RGBA images keep their alpha and the boxes are opaque.

``rescale`` (as torch.utils.tensorboard): boxes are drawn on the image at its
own size, then the whole picture is resized to ``int(height * rescale)`` by
``int(width * rescale)`` with Lanczos resampling, so the boxes scale with it.
"""

import math
import numbers

import numpy as np

from tbx._convert import scalar_value

BOX_COLOR = (255, 0, 0)
LABEL_TEXT_COLOR = (255, 255, 255)
LINE_WIDTH = 2


def check_boxes(array, name="box_tensor"):
    """A float64 ``[N, 4]`` copy of validated boxes (N may be 0: nothing to draw).

    Raises:
        TypeError: not real numbers (bool and complex included).
        ValueError: a shape other than [N, 4], or NaN/inf coordinates.
    """
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} has dtype {array.dtype}; expected real (xmin, ymin, xmax, ymax) pixel coordinates")
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name} has shape {array.shape}; expected [N, 4] rows of (xmin, ymin, xmax, ymax)")
    boxes = np.array(array, dtype=np.float64, copy=True)
    if not np.isfinite(boxes).all():
        bad = int(np.flatnonzero(~np.isfinite(boxes).all(axis=1))[0])
        raise ValueError(f"{name} row {bad} is {array[bad].tolist()}; coordinates must be finite")
    return boxes


def check_labels(labels, count, name="labels"):
    """A list of ``count`` label strings, or None.

    A single str is taken as a one-element list (as torch does).

    Raises:
        TypeError: not None, a str or a list/tuple of str.
        ValueError: a number of labels other than the number of boxes.
    """
    if labels is None:
        return None
    if isinstance(labels, str):
        labels = [labels]
    if not isinstance(labels, (list, tuple)):
        raise TypeError(f"{name} must be None or a list of str (one per box), got {type(labels).__name__}")
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(label).__name__} {label!r}")
    if len(labels) != count:
        raise ValueError(f"{name} has {len(labels)} entries but box_tensor has {count} boxes; give one label per box")
    return list(labels)


def scaled_size(height, width, rescale, name="rescale"):
    """(height, width) of the picture after ``rescale``.

    Raises:
        TypeError: not a real number.
        ValueError: not finite and positive, or a side that would shrink below one pixel.
    """
    if isinstance(rescale, numbers.Integral) and not isinstance(rescale, bool) and rescale == 1:
        return height, width
    factor = scalar_value(rescale, name)
    if not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"{name} must be a positive number, got {rescale!r}")
    size = int(height * factor), int(width * factor)
    if min(size) < 1:
        raise ValueError(f"{name} {rescale!r} shrinks the {height}x{width} image to {size[0]}x{size[1]} pixels")
    return size


def _font():
    from PIL import ImageFont

    return ImageFont.load_default()


def _draw_label(draw, font, left, top, text, width):
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    text_w, text_h = x1 - x0, y1 - y0
    margin = max(1, math.ceil(0.1 * text_h))
    band_h = text_h + 2 * margin
    band_top = top - band_h if top - band_h >= 0 else top
    left = min(max(left, 0), max(width - text_w - 2 * margin, 0))
    draw.rectangle([left, band_top, left + text_w + 2 * margin - 1, band_top + band_h - 1], fill=BOX_COLOR)
    draw.text((left + margin - x0, band_top + margin - y0), text, fill=LABEL_TEXT_COLOR, font=font)


def draw_boxes(pixels, boxes, labels=None, size=None):
    """HWC uint8 pixels with ``boxes`` (and ``labels``) drawn, resized to ``size`` (height, width).

    Runs on the encoder pool; ``pixels`` is the caller's snapshot and may be modified.
    """
    from PIL import Image, ImageDraw

    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    height, width = pixels.shape[:2]
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGBA" if pixels.shape[-1] == 4 else "RGB")
    draw = ImageDraw.Draw(image)
    colour = BOX_COLOR + (255,) if image.mode == "RGBA" else BOX_COLOR
    # Cut coordinates a few pixels beyond the border: the outline still falls
    # outside, and Pillow never sees numbers too large for its C integers.
    xs = np.rint(boxes[:, 0::2].clip(-LINE_WIDTH - 1, width + LINE_WIDTH)).astype(int)
    ys = np.rint(boxes[:, 1::2].clip(-LINE_WIDTH - 1, height + LINE_WIDTH)).astype(int)
    font = _font() if labels and any(labels) else None
    for i in range(len(boxes)):
        left, right = sorted(xs[i])
        top, bottom = sorted(ys[i])
        draw.rectangle([left, top, right, bottom], outline=colour, width=LINE_WIDTH)
        if font is not None and labels[i]:
            try:
                _draw_label(draw, font, left, top, labels[i], width)
            except UnicodeError:  # a bitmap default font knows Latin-1 only
                _draw_label(draw, font, left, top, labels[i].encode("latin-1", "replace").decode("latin-1"), width)
    if size is not None and size != (height, width):
        resampling = getattr(Image, "Resampling", Image).LANCZOS
        image = image.resize((size[1], size[0]), resampling)
    return np.asarray(image)
