"""Meshes and point clouds: up to three tensors per mesh, one tag each.

A mesh named ``name`` is written as ``<name>_VERTEX`` (float32 ``[B, N, 3]``
x, y, z), ``<name>_FACE`` (int32 ``[B, F, 3]`` vertex indices of triangles)
and ``<name>_COLOR`` (uint8 ``[B, N, 3]`` r, g, b per vertex), all three as
values of one event. Each tag's metadata is a MeshPluginData naming the mesh,
its component, the bit mask of the components present and the three.js scene
settings as JSON. ``B`` is the number of samples the dashboard offers.

TensorBoard keeps the metadata of a tag's first value only, so the shape it
reports and the components it fetches are those of the first call: keep the
components of a mesh the same from step to step.
"""

import json

import numpy as np

from tbx import record
from tbx.proto import event_pb2, mesh_pb2, tensor_pb2
from tbx.summary._metadata import TENSOR, metadata

PLUGIN_NAME = "mesh"
VERTEX = mesh_pb2.MeshPluginData.VERTEX
FACE = mesh_pb2.MeshPluginData.FACE
COLOR = mesh_pb2.MeshPluginData.COLOR
_SUFFIX = {VERTEX: "_VERTEX", FACE: "_FACE", COLOR: "_COLOR"}
_DTYPE = {VERTEX: (np.dtype("<f4"), tensor_pb2.DT_FLOAT), FACE: (np.dtype("<i4"), tensor_pb2.DT_INT32),
          COLOR: (np.dtype("u1"), tensor_pb2.DT_UINT8)}
_INT32_MAX = 2**31 - 1


def component_tag(name, content_type):
    """The tag of one component, e.g. ``'cloud_VERTEX'``."""
    return name + _SUFFIX[content_type]


def json_config(config_dict):
    """The JSON text of ``config_dict`` ("{}" for None); keys sorted, NaN/inf refused."""
    if config_dict is None:
        return "{}"
    if not isinstance(config_dict, dict):
        raise TypeError(f"config_dict must be a dict of three.js settings or None, got {type(config_dict).__name__}")
    try:
        return json.dumps(config_dict, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config_dict must be JSON-serializable without NaN or infinity: {exc}") from None


def _shape_b_n_3(array, name, what):
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.ndim != 3 or array.shape[2] != 3:
        hint = f" (for a single mesh pass {name}[None])" if array.ndim == 2 and array.shape[-1] == 3 else ""
        raise ValueError(f"{name} must have shape [B, N, 3] (batch, {what}, 3), got {array.shape}{hint}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); it needs at least one sample and one of its {what}")


def _vertices(array):
    _shape_b_n_3(array, "vertices", "vertices")
    with np.errstate(over="ignore", invalid="ignore"):  # too large for float32: reported below
        out = np.array(array, dtype=_DTYPE[VERTEX][0], copy=True)
    if not np.isfinite(out).all():
        raise ValueError("vertices contains NaN or infinite coordinates (after conversion to float32)")
    return out


def _colors(array, vertices_shape):
    _shape_b_n_3(array, "colors", "vertices")
    if array.shape != vertices_shape:
        raise ValueError(f"colors has shape {array.shape} but vertices has {vertices_shape}; they must match (one color per vertex)")
    if array.dtype == np.uint8:
        return np.array(array, copy=True)
    lo, hi = array.min(), array.max()
    if not (lo >= 0 and hi <= 255):
        raise ValueError(f"colors must be in [0, 255] (uint8 r, g, b), got values from {lo!r} to {hi!r}")
    return np.rint(array).astype(np.uint8) if array.dtype.kind == "f" else array.astype(np.uint8)


def _faces(array, vertices_shape):
    _shape_b_n_3(array, "faces", "triangles")
    batch, n = vertices_shape[:2]
    if array.shape[0] != batch:
        raise ValueError(f"faces has {array.shape[0]} samples (shape {array.shape}) but vertices has {batch}; they must match")
    if array.dtype.kind == "f" and not np.array_equal(array, np.floor(array)):
        raise ValueError("faces must hold whole vertex indices, got fractional or non-finite values")
    lo, hi = array.min(), array.max()
    if not (lo >= 0 and hi < n):
        raise ValueError(f"faces must index the {n} vertices (0 to {n - 1}), got indices from {lo!r} to {hi!r}")
    return np.array(array, dtype=_DTYPE[FACE][0], copy=True)


def check_mesh(vertices, colors, faces):
    """Validate add_mesh's arrays on the caller's thread; returns fresh wire-dtype copies.

    Args:
        vertices, colors, faces: numpy arrays; colors and faces may be None.

    Returns:
        ``[(content_type, array), ...]`` in the order VERTEX, FACE, COLOR.
    """
    parts = [(VERTEX, _vertices(vertices))]
    shape = vertices.shape
    if shape[1] > _INT32_MAX:
        raise ValueError(f"vertices has {shape[1]} vertices; face indices are int32, so at most {_INT32_MAX}")
    if faces is not None:
        parts.append((FACE, _faces(faces, shape)))
    if colors is not None:
        parts.append((COLOR, _colors(colors, shape)))
    return parts


def components_mask(parts):
    """Bit mask ``1 << content_type`` of the components present."""
    mask = 0
    for content_type, _array in parts:
        mask |= 1 << content_type
    return mask


def summary_metadata(name, content_type, components, shape, config):
    """SummaryMetadata of one component tag."""
    content = mesh_pb2.MeshPluginData(
        version=0, name=name, content_type=content_type, components=components, shape=list(shape), json_config=config,
    ).SerializeToString()
    return metadata(PLUGIN_NAME, content, TENSOR)


def mesh_record(name, parts, config, step, wall_time, with_metadata):
    """Framed bytes of one Event holding every component of the mesh.

    ``with_metadata`` is a sequence of bools, one per part.
    """
    components = components_mask(parts)
    event = event_pb2.Event(wall_time=wall_time, step=step)
    for (content_type, array), first in zip(parts, with_metadata):
        value = event.summary.value.add(tag=component_tag(name, content_type))
        tensor = value.tensor
        tensor.dtype = _DTYPE[content_type][1]
        for size in array.shape:
            tensor.tensor_shape.dim.add(size=size)
        tensor.tensor_content = array.tobytes()
        if first:
            value.metadata.CopyFrom(summary_metadata(name, content_type, components, array.shape, config))
    return record.frame(event.SerializeToString())

