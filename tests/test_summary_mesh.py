"""SummaryWriter.add_mesh: MeshPluginData, the three component tensors, and TensorBoard reading them.

Oracles: TensorBoard's compiled mesh ``plugin_data_pb2`` and its
``metadata.create_summary_metadata``, torch's ``mesh`` summary, TensorBoard's
loaders and its mesh plugin serving ``/tags``, ``/meshes`` and ``/data``
in-process.
"""

import json

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing import data_provider as tb_data_provider
from tensorboard.backend.event_processing import plugin_event_accumulator as plugin_acc
from tensorboard.backend.event_processing import plugin_event_multiplexer as tb_multiplexer
from tensorboard.compat.proto import summary_pb2 as tb_summary_pb2
from tensorboard.compat.proto import types_pb2 as tb_types_pb2
from tensorboard.plugins import base_plugin
from tensorboard.plugins.mesh import mesh_plugin
from tensorboard.plugins.mesh import metadata as tb_mesh_metadata
from tensorboard.plugins.mesh import plugin_data_pb2 as tb_mesh_pd
from torch.utils.tensorboard import summary as torch_summary
from werkzeug.test import EnvironBuilder

from tbx import SummaryWriter
from tbx.proto import mesh_pb2
from tbx.summary import mesh as mesh_summary
from writer_util import tbx_values_by_tag, to_ndarray, values_by_tag

RNG = np.random.default_rng(3)
# A tetrahedron, two samples (the second scaled).
VERTS = np.array([[[1, 1, 1], [-1, -1, 1], [-1, 1, -1], [1, -1, -1]]], dtype=np.float32)
VERTS = np.concatenate([VERTS, VERTS * 2])
FACES = np.array([[[0, 2, 3], [0, 3, 1], [0, 1, 2], [1, 3, 2]]] * 2, dtype=np.int32)
COLORS = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 0, 255]]] * 2, dtype=np.uint8)
CONFIG = {"camera": {"cls": "PerspectiveCamera", "fov": 75}, "lights": [{"cls": "AmbientLight"}]}


# --- wire compatibility of tbx.proto.mesh_pb2 ---------------------------------------------

def test_fields_and_enum_match_tensorboard():
    def fields(desc):
        return {f.name: (f.number, f.type, f.is_repeated, f.is_packed if f.is_repeated else False,
                         f.enum_type.name if f.enum_type else None) for f in desc.fields}

    ours = mesh_pb2.MeshPluginData.DESCRIPTOR
    theirs = tb_mesh_pd.MeshPluginData.DESCRIPTOR
    assert fields(ours) == fields(theirs)
    assert dict(mesh_pb2.MeshPluginData.ContentType.items()) == dict(tb_mesh_pd.MeshPluginData.ContentType.items())
    assert mesh_pb2.DESCRIPTOR.package == "tbx.proto"


@pytest.mark.parametrize("kwargs", [
    {},
    {"version": 0, "name": "cloud", "content_type": 1, "components": 14, "shape": [2, 1000, 3], "json_config": "{}"},
    {"name": "ü/mesh", "content_type": 3, "components": 2**32 - 1, "shape": [2**31 - 1, 0, 3]},
    {"version": 7, "content_type": 2, "shape": [1]},
])
def test_plugin_data_both_ways(kwargs):
    ours, theirs = mesh_pb2.MeshPluginData(**kwargs), tb_mesh_pd.MeshPluginData(**kwargs)
    a, b = ours.SerializeToString(deterministic=True), theirs.SerializeToString(deterministic=True)
    assert a == b
    assert tb_mesh_pd.MeshPluginData.FromString(a) == theirs
    assert mesh_pb2.MeshPluginData.FromString(b) == ours


def test_metadata_equals_tensorboard_helper():
    for content_type, shape in ((1, [2, 4, 3]), (2, [2, 5, 3]), (3, [2, 4, 3])):
        ours = mesh_summary.summary_metadata("m", content_type, 14, shape, '{"a": 1}')
        theirs = tb_mesh_metadata.create_summary_metadata("m", None, content_type, 14, shape, json_config='{"a": 1}')
        assert ours.plugin_data.plugin_name == theirs.plugin_data.plugin_name == "mesh"
        assert ours.plugin_data.content == theirs.plugin_data.content
        assert ours.data_class == tb_summary_pb2.DATA_CLASS_TENSOR


# --- the records -----------------------------------------------------------------------------

def _written(logdir, tag):
    """[(step, array, MeshPluginData or None)] of one component tag, read with TensorBoard's protos."""
    out = []
    for step, _w, value in values_by_tag(logdir)[".", tag]:
        md = tb_mesh_pd.MeshPluginData.FromString(value.metadata.plugin_data.content) if value.HasField("metadata") else None
        out.append((step, to_ndarray(value.tensor), md))
    return out


def test_records_match_torch(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_mesh("tetra", torch.from_numpy(VERTS), colors=torch.from_numpy(COLORS),
                        faces=torch.from_numpy(FACES), config_dict=CONFIG, global_step=4)
    theirs = {v.tag: v for v in torch_summary.mesh("tetra", VERTS, COLORS, FACES, CONFIG).value}
    assert set(theirs) == {"tetra_VERTEX", "tetra_FACE", "tetra_COLOR"}
    events = values_by_tag(tmp_path)
    wall_times = set()
    for tag, want, dtype in (("tetra_VERTEX", VERTS, tb_types_pb2.DT_FLOAT), ("tetra_FACE", FACES, tb_types_pb2.DT_INT32),
                             ("tetra_COLOR", COLORS, tb_types_pb2.DT_UINT8)):
        [(step, wall_time, value)] = events[".", tag]
        wall_times.add(wall_time)
        assert step == 4 and value.tensor.dtype == dtype
        got = to_ndarray(value.tensor)
        assert got.dtype == want.dtype and np.array_equal(got, want)
        assert np.array_equal(got, to_ndarray(theirs[tag].tensor))  # torch writes every part as float
        assert value.metadata.plugin_data.content == theirs[tag].metadata.plugin_data.content
        assert value.metadata.data_class == tb_summary_pb2.DATA_CLASS_TENSOR
        [(_s, _w, tbx_value)] = tbx_values_by_tag(tmp_path)[".", tag]
        assert np.array_equal(to_ndarray(tbx_value.tensor), want)
    assert len(wall_times) == 1  # one event holds all three


@pytest.mark.parametrize("colors, faces, mask, tags", [
    (None, None, 2, ["m_VERTEX"]),
    (COLORS, None, 10, ["m_VERTEX", "m_COLOR"]),
    (None, FACES, 6, ["m_VERTEX", "m_FACE"]),
    (COLORS, FACES, 14, ["m_VERTEX", "m_FACE", "m_COLOR"]),
])
def test_components_present(tmp_path, colors, faces, mask, tags):
    with SummaryWriter(tmp_path) as writer:
        writer.add_mesh("m", VERTS, colors=colors, faces=faces)
    written = sorted(tag for _run, tag in values_by_tag(tmp_path))
    assert written == sorted(tags)
    for tag in tags:
        [(_s, data, md)] = _written(tmp_path, tag)
        assert md.components == mask and md.name == "m" and md.version == 0
        assert tag.endswith("_" + tb_mesh_pd.MeshPluginData.ContentType.Name(md.content_type))
        assert list(md.shape) == list(data.shape)
        assert md.json_config == "{}"


def test_metadata_once_per_component_tag(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        for step in range(3):
            writer.add_mesh("m", VERTS + step, faces=FACES, global_step=step)
    for tag in ("m_VERTEX", "m_FACE"):
        points = _written(tmp_path, tag)
        assert [s for s, _d, _m in points] == [0, 1, 2]
        assert [md is not None for _s, _d, md in points] == [True, False, False]
    assert np.array_equal(_written(tmp_path, "m_VERTEX")[2][1], VERTS + 2)


def test_conversions(tmp_path):
    verts = RNG.normal(size=(1, 50, 3))  # float64 -> float32
    colors = RNG.uniform(0, 255, size=(1, 50, 3))  # floats are rounded
    faces = np.array([[[0, 1, 2], [47, 48, 49]]], dtype=np.int64)
    with SummaryWriter(tmp_path) as writer:
        writer.add_mesh("m", verts, colors=colors, faces=faces, config_dict={"b": 2, "a": [1, 2]})
        writer.add_mesh("ints", np.arange(6).reshape(1, 2, 3), colors=np.full((1, 2, 3), 7, np.int16),
                        faces=np.array([[[0.0, 1.0, 1.0]]]))
    [(_s, v, md)] = _written(tmp_path, "m_VERTEX")
    assert v.dtype == np.float32 and np.array_equal(v, verts.astype(np.float32))
    assert md.json_config == '{"a": [1, 2], "b": 2}'
    [(_s, c, _md)] = _written(tmp_path, "m_COLOR")
    assert c.dtype == np.uint8 and np.array_equal(c, np.rint(colors).astype(np.uint8))
    [(_s, f, _md)] = _written(tmp_path, "m_FACE")
    assert f.dtype == np.int32 and np.array_equal(f, faces)
    assert _written(tmp_path, "ints_VERTEX")[0][1].tolist() == [[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]]
    assert _written(tmp_path, "ints_COLOR")[0][1].tolist() == [[[7, 7, 7]] * 2]
    assert _written(tmp_path, "ints_FACE")[0][1].tolist() == [[[0, 1, 1]]]


def test_input_is_snapshotted_at_the_call(tmp_path):
    verts, colors, faces = VERTS.copy(), COLORS.copy(), FACES.copy()
    config = {"a": 1}
    with SummaryWriter(tmp_path) as writer:
        writer.add_mesh("m", verts, colors=colors, faces=faces, config_dict=config)
        verts[:] = 0
        colors[:] = 0
        faces[:] = 0
        config["a"] = 2
    assert np.array_equal(_written(tmp_path, "m_VERTEX")[0][1], VERTS)
    assert np.array_equal(_written(tmp_path, "m_COLOR")[0][1], COLORS)
    assert np.array_equal(_written(tmp_path, "m_FACE")[0][1], FACES)
    assert _written(tmp_path, "m_VERTEX")[0][2].json_config == '{"a": 1}'


def test_accumulator_reads_it(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_mesh("m", VERTS, colors=COLORS, faces=FACES, global_step=1)
    acc = plugin_acc.EventAccumulator(str(tmp_path), size_guidance={plugin_acc.TENSORS: 0},
                                      tensor_size_guidance={"mesh": 0})
    acc.Reload()
    assert set(acc.PluginTagToContent("mesh")) == {"m_VERTEX", "m_FACE", "m_COLOR"}
    for tag, want in (("m_VERTEX", VERTS), ("m_FACE", FACES), ("m_COLOR", COLORS)):
        [event] = acc.Tensors(tag)
        assert event.step == 1 and np.array_equal(to_ndarray(event.tensor_proto), want)
        assert acc.SummaryMetadata(tag).data_class == tb_summary_pb2.DATA_CLASS_TENSOR


def _serve(logdir, path, **query):
    """TensorBoard's mesh plugin answering ``path`` in-process (Python loader): (status, body bytes)."""
    multiplexer = tb_multiplexer.EventMultiplexer(tensor_size_guidance={"mesh": 0})
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = tb_data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    plugin = mesh_plugin.MeshPlugin(base_plugin.TBContext(data_provider=provider, logdir=str(logdir)))
    status = []
    environ = EnvironBuilder(path=path, query_string=query).get_environ()
    body = b"".join(plugin.get_plugin_apps()[path](environ, lambda s, h, e=None: status.append(s)))
    return status[0], body


def test_mesh_plugin_serves_it(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        for step in (0, 5):
            writer.add_mesh("tetra", VERTS * (step + 1), colors=COLORS, faces=FACES, config_dict=CONFIG, global_step=step)
    status, body = _serve(tmp_path, "/tags")
    assert status == "200 OK" and json.loads(body) == {".": {"tetra": {"samples": 2}}}
    status, body = _serve(tmp_path, "/meshes", run=".", tag="tetra", sample=1)
    entries = json.loads(body)
    assert sorted((e["step"], e["content_type"], tuple(e["data_shape"])) for e in entries) == [
        (0, 1, (2, 4, 3)), (0, 2, (2, 4, 3)), (0, 3, (2, 4, 3)), (5, 1, (2, 4, 3)), (5, 2, (2, 4, 3)), (5, 3, (2, 4, 3)),
    ]
    assert {e["components"] for e in entries} == {14}
    assert {json.dumps(json.loads(e["config"]), sort_keys=True) for e in entries} == {json.dumps(CONFIG, sort_keys=True)}
    for content_type, want in (("VERTEX", (VERTS * 6)[1]), ("FACE", FACES[1]), ("COLOR", COLORS[1])):
        status, body = _serve(tmp_path, "/data", run=".", tag="tetra", sample=1, content_type=content_type, step=5)
        assert status == "200 OK" and body == want.tobytes()
