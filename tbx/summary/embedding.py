"""Embeddings: the files of TensorBoard's Embedding Projector (it reads no event data).

Layout, as torch.utils.tensorboard writes it, under the writer's log dir::

    projector_config.pbtxt             text-format ProjectorConfig, one entry per embedding
    <step:05>/<tag>/tensors.tsv        the points: N lines of D tab-separated floats
    <step:05>/<tag>/metadata.tsv       optional labels (one per line; a header line first
                                       when there are several columns)
    <step:05>/<tag>/sprite.png         optional thumbnails tiled into a square grid

``<tag>`` has ``%``, ``/`` and ``\\`` written as ``%25``, ``%2f`` and ``%5c``;
the entry's ``tensor_name`` is ``<tag>:<step:05>``. Paths inside the config
are relative to its directory: TensorBoard 2.21 refuses asset paths that
resolve outside it.

The functions here validate and encode (no I/O) except ``update_config`` and
``write_files``.
"""

import math
import os
import threading

import numpy as np
from google.protobuf import text_format

from tbx import _convert
from tbx.proto import projector_config_pb2
from tbx.summary import image as _image

CONFIG_NAME = "projector_config.pbtxt"
TENSORS_NAME = "tensors.tsv"
METADATA_NAME = "metadata.tsv"
SPRITE_NAME = "sprite.png"

_FORBIDDEN_IN_CELL = ("\t", "\n", "\r")


def encode_tag(tag):
    """``tag`` as one directory name: ``%``, ``/`` and ``\\`` percent-encoded, as torch does."""
    return tag.replace("%", "%25").replace("/", "%2f").replace("\\", "%5c")


def subdir(tag, step):
    """The embedding's directory relative to the log dir, with '/' separators."""
    return f"{step:05}/{encode_tag(tag)}"


def tensor_name(tag, step):
    return f"{tag}:{step:05}"


def check_tag(tag):
    tag = _convert.tag_value(tag)
    if tag in ("", ".", ".."):
        raise ValueError(f"tag {tag!r} cannot name the embedding's directory; use a non-empty name such as 'default'")
    return tag


def check_mat(mat):
    """``mat`` as a 2-D numeric numpy array ``[N, D]`` with finite values (not copied)."""
    array = _convert.to_numpy(mat, "mat")
    if array.ndim != 2:
        raise ValueError(f"mat must be 2-D [N points, D dimensions], got shape {tuple(array.shape)}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"mat is empty (shape {tuple(array.shape)}); it needs at least one point of one dimension")
    if array.dtype.kind not in "fiu":
        raise TypeError(f"mat must hold real numbers, got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(f"mat must be finite, got {array[tuple(bad)]} at row {bad[0]}, column {bad[1]}")
    return array


def tensors_tsv(array):
    """TSV bytes of a checked ``[N, D]`` array: one point per line, exact for float32."""
    if array.dtype.kind in "iu":
        fmt = "%d"
    elif array.dtype.itemsize <= 4:
        fmt = "%.9g"  # 9 significant digits round-trip any float32
    else:
        fmt = "%.17g"
    line = "\t".join([fmt] * array.shape[1]) + "\n"
    return "".join([line % tuple(row) for row in array.tolist()]).encode("ascii")


def _cell(value, where):
    text = str(value)
    if any(c in text for c in _FORBIDDEN_IN_CELL):
        raise ValueError(f"{where} is {text!r}; metadata labels cannot contain tabs or line breaks (they split the TSV)")
    return text


def _as_list(value, name):
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a sequence, got {_convert._describe(value)}")
    if isinstance(value, np.ndarray) or _convert.is_torch_tensor(value):
        return _convert.to_numpy(value, name).tolist()
    try:
        return list(value)
    except TypeError:
        raise TypeError(f"{name} must be a sequence, got {_convert._describe(value)}") from None


def metadata_tsv(metadata, num_points, metadata_header=None):
    """TSV bytes of the labels: one per line, or columns under a header line.

    Args:
        metadata: N labels (each written with ``str``), or with a header, N
            rows of one value per header column.
        num_points: N, the number of rows of ``mat``.
        metadata_header: column names, or None for one column without header.
            With a single column no header line is written either, because
            TensorBoard reads a first line without a tab as data.
    """
    labels = _as_list(metadata, "metadata")
    if len(labels) != num_points:
        raise ValueError(f"metadata has {len(labels)} entries but mat has {num_points} rows; give one label per point")
    if metadata_header is None:
        lines = [_cell(label, f"metadata[{i}]") for i, label in enumerate(labels)]
    else:
        header = [_cell(h, f"metadata_header[{i}]") for i, h in enumerate(_as_list(metadata_header, "metadata_header"))]
        if not header:
            raise ValueError("metadata_header is empty; give one name per metadata column, or None")
        lines = ["\t".join(header)] if len(header) > 1 else []
        for i, row in enumerate(labels):
            cells = _as_list(row, f"metadata[{i}]")
            if len(cells) != len(header):
                raise ValueError(
                    f"metadata[{i}] has {len(cells)} values but metadata_header has {len(header)} columns {header}"
                )
            lines.append("\t".join(_cell(c, f"metadata[{i}][{j}]") for j, c in enumerate(cells)))
    return ("\n".join(lines) + "\n").encode("utf-8")


def sprite(label_img, num_points):
    """The thumbnails tiled into a square grid: ``(HWC uint8 canvas, [width, height] of one)``.

    ``label_img`` is ``[N, C, H, W]`` (C = 1, 3 or 4), uint8 or float in
    [0, 1]. Thumbnails go row by row into a ``ceil(sqrt(N))``-square grid;
    unused cells stay black (transparent with 4 channels).
    """
    array = _convert.to_numpy(label_img, "label_img")
    if array.ndim != 4:
        raise ValueError(f"label_img must be 4-D [N, C, H, W], got shape {tuple(array.shape)}")
    if array.shape[0] != num_points:
        raise ValueError(f"label_img has {array.shape[0]} images but mat has {num_points} rows; give one image per point")
    images = np.stack(_image.to_hwc_uint8(array, "NCHW", "label_img"))
    n, height, width, channels = images.shape
    side = math.isqrt(n - 1) + 1
    grid = np.zeros((side * side, height, width, channels), dtype=np.uint8)
    grid[:n] = images
    canvas = grid.reshape(side, side, height, width, channels).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(canvas.reshape(side * height, side * width, channels)), [width, height]


def embedding_info(tag, step, shape, with_metadata, sprite_dim):
    """The config entry for one embedding (paths relative to the config's directory)."""
    folder = subdir(tag, step)
    info = projector_config_pb2.EmbeddingInfo(
        tensor_name=tensor_name(tag, step), tensor_path=f"{folder}/{TENSORS_NAME}", tensor_shape=list(shape)
    )
    if with_metadata:
        info.metadata_path = f"{folder}/{METADATA_NAME}"
    if sprite_dim is not None:
        info.sprite.image_path = f"{folder}/{SPRITE_NAME}"
        info.sprite.single_image_dim.extend(sprite_dim)
    return info


# One lock per config file: embeddings added from several threads (or several
# writers on one log dir) in this process must not lose each other's entries.
_locks = {}
_locks_guard = threading.Lock()


def config_lock(logdir):
    key = os.path.realpath(os.path.join(logdir, CONFIG_NAME))
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def read_config(path):
    """The ProjectorConfig in ``path`` (empty when the file does not exist).

    Raises:
        ValueError: the file exists but is not a text-format ProjectorConfig.
    """
    config = projector_config_pb2.ProjectorConfig()
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return config
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ValueError(f"{path} is not a valid projector config ({exc}); move it away or fix it") from exc
    return config


def merge(config, info):
    """Put ``info`` into ``config``, replacing an entry with the same tensor_name. True if replaced."""
    for entry in config.embeddings:
        if entry.tensor_name == info.tensor_name:
            entry.CopyFrom(info)
            return True
    config.embeddings.append(info)
    return False


def write_atomically(path, data):
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    tmp = f"{path}.tmp.{os.getpid()}.{threading.get_ident()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def config_text(config):
    return text_format.MessageToString(config).encode("utf-8")
