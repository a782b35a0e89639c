"""Checks for the tbx.proto messages.

1. The committed tbx/proto/*_pb2.py modules are what proto/generate.py
   produces from proto/tbx/proto/*.proto (compared as parsed descriptors, so
   cosmetic differences between protoc releases do not matter).
2. The messages are wire-compatible with TensorBoard's own compiled protos,
   in both directions.
"""

from __future__ import annotations

import ast
import importlib
import math
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from tbx.proto import event_pb2, plugin_data_pb2, summary_pb2, tensor_pb2

from tensorboard.compat.proto import event_pb2 as tb_event_pb2
from tensorboard.compat.proto import summary_pb2 as tb_summary_pb2
from tensorboard.compat.proto import types_pb2 as tb_types_pb2
from tensorboard.plugins.audio import plugin_data_pb2 as tb_audio_pd
from tensorboard.plugins.histogram import plugin_data_pb2 as tb_histogram_pd
from tensorboard.plugins.image import plugin_data_pb2 as tb_image_pd
from tensorboard.plugins.pr_curve import plugin_data_pb2 as tb_pr_curve_pd
from tensorboard.plugins.scalar import plugin_data_pb2 as tb_scalar_pd
from tensorboard.plugins.text import plugin_data_pb2 as tb_text_pd

REPO = Path(__file__).resolve().parents[1]
GENERATE = REPO / "proto" / "generate.py"
COMMITTED_DIR = REPO / "tbx" / "proto"


# --------------------------------------------------------------------------
# 1. Generated code is up to date
# --------------------------------------------------------------------------


def _generated_files(directory: Path) -> set[str]:
    return {p.name for p in directory.glob("*_pb2.py")} | {
        p.name for p in directory.glob("*_pb2.pyi")
    }


def _serialized_descriptor_in_source(path: Path) -> bytes:
    """The bytes literal passed to AddSerializedFile in a generated module.

    Read from the source rather than imported: importing a second copy of
    the same .proto file into the default descriptor pool is not allowed.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "AddSerializedFile"
        ):
            (arg,) = node.args
            assert isinstance(arg, ast.Constant) and isinstance(arg.value, bytes)
            found.append(arg.value)
    assert len(found) == 1, f"{path}: expected one AddSerializedFile call"
    return found[0]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("regen")
    subprocess.run(
        [sys.executable, str(GENERATE), "--out", str(out)],
        check=True,
        cwd=str(out),
        capture_output=True,
    )
    return out / "tbx" / "proto"


def test_regenerated_module_set_matches_committed(regenerated):
    generated = _generated_files(regenerated)
    assert generated, "generate.py produced nothing"
    assert generated == _generated_files(COMMITTED_DIR)
    protos = {p.stem for p in (REPO / "proto" / "tbx" / "proto").glob("*.proto")}
    assert {n.split(".")[0][: -len("_pb2")] for n in generated} == protos


def test_regenerated_descriptors_match_committed(regenerated):
    for path in sorted(regenerated.glob("*_pb2.py")):
        fresh = descriptor_pb2.FileDescriptorProto.FromString(
            _serialized_descriptor_in_source(path)
        )
        module = importlib.import_module(f"tbx.proto.{path.stem}")
        committed = descriptor_pb2.FileDescriptorProto.FromString(
            module.DESCRIPTOR.serialized_pb
        )
        assert fresh == committed, (
            f"tbx/proto/{path.name} is stale; run: python proto/generate.py"
        )


def test_package_and_imports():
    for module in (tensor_pb2, summary_pb2, event_pb2, plugin_data_pb2):
        assert module.DESCRIPTOR.package == "tbx.proto"
        assert module.DESCRIPTOR.name.startswith("tbx/proto/")
    assert [d.name for d in event_pb2.DESCRIPTOR.dependencies] == [
        "tbx/proto/summary.proto"
    ]
    assert [d.name for d in summary_pb2.DESCRIPTOR.dependencies] == [
        "tbx/proto/tensor.proto"
    ]


# --------------------------------------------------------------------------
# 2. Wire compatibility with TensorBoard
# --------------------------------------------------------------------------


def _field_table(desc):
    """{name: (number, type, repeated, packed, oneof)} for a message."""
    return {
        f.name: (
            f.number,
            f.type,
            f.is_repeated,
            f.is_packed if f.is_repeated else False,
            f.containing_oneof.name if f.containing_oneof else None,
            f.message_type.name if f.message_type else None,
            f.enum_type.name if f.enum_type else None,
        )
        for f in desc.fields
    }


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (tensor_pb2.TensorShapeProto, "tensorboard.compat.proto.tensor_shape_pb2"),
        (tensor_pb2.TensorShapeProto.Dim, "tensorboard.compat.proto.tensor_shape_pb2"),
        (tensor_pb2.TensorProto, "tensorboard.compat.proto.tensor_pb2"),
        (summary_pb2.HistogramProto, "tensorboard.compat.proto.histogram_pb2"),
        (summary_pb2.SummaryMetadata, "tensorboard.compat.proto.summary_pb2"),
        (summary_pb2.SummaryMetadata.PluginData, "tensorboard.compat.proto.summary_pb2"),
        (summary_pb2.Summary, "tensorboard.compat.proto.summary_pb2"),
        (summary_pb2.Summary.Image, "tensorboard.compat.proto.summary_pb2"),
        (summary_pb2.Summary.Audio, "tensorboard.compat.proto.summary_pb2"),
        (summary_pb2.Summary.Value, "tensorboard.compat.proto.summary_pb2"),
        (event_pb2.Event, "tensorboard.compat.proto.event_pb2"),
        (event_pb2.SourceMetadata, "tensorboard.compat.proto.event_pb2"),
        (event_pb2.LogMessage, "tensorboard.compat.proto.event_pb2"),
        (event_pb2.SessionLog, "tensorboard.compat.proto.event_pb2"),
        (event_pb2.TaggedRunMetadata, "tensorboard.compat.proto.event_pb2"),
        (plugin_data_pb2.ScalarPluginData, "tensorboard.plugins.scalar.plugin_data_pb2"),
        (plugin_data_pb2.HistogramPluginData, "tensorboard.plugins.histogram.plugin_data_pb2"),
        (plugin_data_pb2.ImagePluginData, "tensorboard.plugins.image.plugin_data_pb2"),
        (plugin_data_pb2.AudioPluginData, "tensorboard.plugins.audio.plugin_data_pb2"),
        (plugin_data_pb2.TextPluginData, "tensorboard.plugins.text.plugin_data_pb2"),
        (plugin_data_pb2.PrCurvePluginData, "tensorboard.plugins.pr_curve.plugin_data_pb2"),
    ],
    ids=lambda x: x.DESCRIPTOR.full_name if hasattr(x, "DESCRIPTOR") else None,
)
def test_fields_match_tensorboard_descriptor(ours, theirs):
    """Every field we declare has TensorBoard's number, type and packing."""
    module = importlib.import_module(theirs)
    # Resolve e.g. "tbx.proto.Summary.Value" to tensorboard's "Summary.Value".
    path = ours.DESCRIPTOR.full_name.split(".")[2:]
    theirs_desc = module.DESCRIPTOR.message_types_by_name[path[0]]
    for name in path[1:]:
        theirs_desc = theirs_desc.nested_types_by_name[name]
    mine = _field_table(ours.DESCRIPTOR)
    tb = _field_table(theirs_desc)
    # We may omit fields TensorBoard has (TensorProto), never add or change.
    assert set(mine) <= set(tb)
    for name, row in mine.items():
        assert row == tb[name], name
    if not ours.DESCRIPTOR.full_name.endswith("TensorProto"):
        assert set(mine) == set(tb)


def test_enum_values_match_tensorboard():
    tb_dtypes = dict(tb_types_pb2.DataType.items())
    for name, number in tensor_pb2.DataType.items():
        assert tb_dtypes[name] == number, name
    assert dict(summary_pb2.DataClass.items()) == dict(
        tb_summary_pb2.DataClass.items()
    )
    assert dict(event_pb2.LogMessage.Level.items()) == dict(
        tb_event_pb2.LogMessage.Level.items()
    )
    assert dict(event_pb2.SessionLog.SessionStatus.items()) == dict(
        tb_event_pb2.SessionLog.SessionStatus.items()
    )
    assert dict(plugin_data_pb2.AudioPluginData.Encoding.items()) == dict(
        tb_audio_pd.AudioPluginData.Encoding.items()
    )


def _summary_event(ev_module, sm_module, tn_module, pd_module_scalar, DataClass):
    """Build the same summary Event with either set of classes."""
    ev = ev_module.Event(wall_time=1700000000.25, step=-(2**40) - 3)
    ev.source_metadata.writer = "tbx"
    s = ev.summary

    v = s.value.add(tag="loss", simple_value=0.5)
    v.metadata.display_name = "Loss"
    v.metadata.summary_description = "*training* loss"
    v.metadata.plugin_data.plugin_name = "scalars"
    v.metadata.plugin_data.content = pd_module_scalar(version=0).SerializeToString()
    v.metadata.data_class = DataClass.Value("DATA_CLASS_SCALAR")

    s.value.add(node_name="legacy_node", obsolete_old_style_histogram=b"\x00\x01old")

    v = s.value.add(tag="img")
    v.image.height = 2
    v.image.width = 3
    v.image.colorspace = 4
    v.image.encoded_image_string = b"\x89PNG\r\n\x1a\n" + bytes(range(256))

    v = s.value.add(tag="hist")
    h = v.histo
    h.min, h.max, h.num, h.sum, h.sum_squares = -1.5, 2.5, 7.0, 3.25, 11.0
    h.bucket_limit.extend([-1.0, 0.0, 2.5])
    h.bucket.extend([1.0, 4.0, 2.0])

    v = s.value.add(tag="snd")
    a = v.audio
    a.sample_rate = 44100.0
    a.num_channels = 2
    a.length_frames = 2**33
    a.encoded_audio_string = b"RIFF\x00\x00WAVE"
    a.content_type = "audio/wav"

    v = s.value.add(tag="images/tensor")
    v.metadata.plugin_data.plugin_name = "images"
    v.metadata.data_class = DataClass.Value("DATA_CLASS_BLOB_SEQUENCE")
    t = v.tensor
    t.dtype = tn_module.DataType.Value("DT_STRING")
    d = t.tensor_shape.dim.add()
    d.size = 4
    d.name = "blobs"
    t.string_val.extend([b"3", b"2", b"\xff\x00img0", "ü".encode()])

    v = s.value.add(tag="mat")
    t = v.tensor
    t.dtype = tn_module.DataType.Value("DT_DOUBLE")
    t.tensor_shape.dim.add(size=2)
    t.tensor_shape.dim.add(size=3)
    t.double_val.extend([0.0, -0.0, 1e300, -1e-300, math.inf, -math.inf])

    v = s.value.add(tag="ints")
    t = v.tensor
    t.dtype = tn_module.DataType.Value("DT_INT64")
    t.tensor_shape.dim.add(size=3)
    t.int64_val.extend([-(2**63), 0, 2**63 - 1])

    v = s.value.add(tag="raw")
    t = v.tensor
    t.dtype = tn_module.DataType.Value("DT_FLOAT")
    t.tensor_content = b"\x00\x00\x80\x3f"
    t.float_val.append(2.0)
    t.int_val.extend([-1, 7])
    t.half_val.append(0x3C00)
    t.bool_val.extend([True, False])
    t.scomplex_val.extend([1.0, -1.0])
    t.dcomplex_val.extend([0.5, 0.25])
    t.tensor_shape.unknown_rank = True
    t.version_number = 3

    # Default-valued tensor (rank 0): should survive as a set oneof.
    s.value.add(tag="empty_tensor").tensor.SetInParent()
    return ev


def _check_summary_event(ev, DataType):
    assert ev.wall_time == 1700000000.25
    assert ev.step == -(2**40) - 3
    assert ev.source_metadata.writer == "tbx"
    assert ev.WhichOneof("what") == "summary"
    vals = ev.summary.value
    kinds = [v.WhichOneof("value") for v in vals]
    assert kinds == [
        "simple_value",
        "obsolete_old_style_histogram",
        "image",
        "histo",
        "audio",
        "tensor",
        "tensor",
        "tensor",
        "tensor",
        "tensor",
    ]

    v = vals[0]
    assert (v.tag, v.simple_value) == ("loss", 0.5)
    assert v.metadata.display_name == "Loss"
    assert v.metadata.summary_description == "*training* loss"
    assert v.metadata.plugin_data.plugin_name == "scalars"
    assert v.metadata.plugin_data.content == b""  # version 0 encodes empty
    assert v.metadata.data_class == 1

    v = vals[1]
    assert (v.tag, v.node_name) == ("", "legacy_node")
    assert v.obsolete_old_style_histogram == b"\x00\x01old"
    assert not v.HasField("metadata")

    img = vals[2].image
    assert (img.height, img.width, img.colorspace) == (2, 3, 4)
    assert img.encoded_image_string == b"\x89PNG\r\n\x1a\n" + bytes(range(256))

    h = vals[3].histo
    assert (h.min, h.max, h.num, h.sum, h.sum_squares) == (-1.5, 2.5, 7.0, 3.25, 11.0)
    assert list(h.bucket_limit) == [-1.0, 0.0, 2.5]
    assert list(h.bucket) == [1.0, 4.0, 2.0]

    a = vals[4].audio
    assert a.sample_rate == 44100.0
    assert (a.num_channels, a.length_frames) == (2, 2**33)
    assert a.encoded_audio_string == b"RIFF\x00\x00WAVE"
    assert a.content_type == "audio/wav"

    v = vals[5]
    assert v.tag == "images/tensor"
    assert v.metadata.plugin_data.plugin_name == "images"
    assert v.metadata.data_class == 3
    t = v.tensor
    assert t.dtype == DataType.Value("DT_STRING") == 7
    assert [(d.size, d.name) for d in t.tensor_shape.dim] == [(4, "blobs")]
    assert list(t.string_val) == [b"3", b"2", b"\xff\x00img0", "ü".encode()]

    t = vals[6].tensor
    assert t.dtype == 2
    assert [d.size for d in t.tensor_shape.dim] == [2, 3]
    got = list(t.double_val)
    assert got == [0.0, 0.0, 1e300, -1e-300, math.inf, -math.inf]
    assert math.copysign(1.0, got[1]) == -1.0

    t = vals[7].tensor
    assert t.dtype == 9
    assert list(t.int64_val) == [-(2**63), 0, 2**63 - 1]

    t = vals[8].tensor
    assert t.dtype == 1
    assert t.tensor_content == b"\x00\x00\x80\x3f"
    assert list(t.float_val) == [2.0]
    assert list(t.int_val) == [-1, 7]
    assert list(t.half_val) == [0x3C00]
    assert list(t.bool_val) == [True, False]
    assert list(t.scomplex_val) == [1.0, -1.0]
    assert list(t.dcomplex_val) == [0.5, 0.25]
    assert t.tensor_shape.unknown_rank is True
    assert t.version_number == 3

    v = vals[9]
    assert v.tag == "empty_tensor"
    assert v.HasField("tensor")
    assert v.tensor.dtype == 0 and len(v.tensor.tensor_shape.dim) == 0


def _build_ours():
    return _summary_event(
        event_pb2,
        summary_pb2,
        tensor_pb2,
        plugin_data_pb2.ScalarPluginData,
        summary_pb2.DataClass,
    )


def _build_theirs():
    return _summary_event(
        tb_event_pb2,
        tb_summary_pb2,
        tb_types_pb2,
        tb_scalar_pd.ScalarPluginData,
        tb_summary_pb2.DataClass,
    )


def test_summary_event_tbx_to_tensorboard():
    data = _build_ours().SerializeToString()
    parsed = tb_event_pb2.Event.FromString(data)
    _check_summary_event(parsed, tb_types_pb2.DataType)
    # Nothing was left over as unknown fields and bytes are identical.
    assert parsed.SerializeToString() == data
    assert parsed == _build_theirs()


def test_summary_event_tensorboard_to_tbx():
    data = _build_theirs().SerializeToString()
    parsed = event_pb2.Event.FromString(data)
    _check_summary_event(parsed, tensor_pb2.DataType)
    assert parsed.SerializeToString() == data
    assert parsed == _build_ours()


def test_serialization_is_byte_identical():
    assert (
        _build_ours().SerializeToString(deterministic=True)
        == _build_theirs().SerializeToString(deterministic=True)
    )


def _other_events(ev, sl_status, level):
    """The non-summary oneof kinds, built with either set of classes."""
    out = [
        ev.Event(wall_time=1.5, file_version="brain.Event:2"),
        ev.Event(wall_time=2.0, step=9, graph_def=b"\x0a\x03abc"),
        ev.Event(wall_time=3.0, step=5, meta_graph_def=b"\x12\x00meta"),
    ]
    e = ev.Event(wall_time=4.0, step=5)
    e.session_log.status = sl_status("START")
    e.session_log.checkpoint_path = "/ckpt/model-5"
    e.session_log.msg = "resumed"
    out.append(e)
    e = ev.Event(wall_time=5.0, step=6)
    e.session_log.status = sl_status("CHECKPOINT")
    out.append(e)
    e = ev.Event(wall_time=6.0, step=7)
    e.log_message.level = level("WARN")
    e.log_message.message = "careful"
    out.append(e)
    e = ev.Event(wall_time=7.0, step=8)
    e.tagged_run_metadata.tag = "step_8"
    e.tagged_run_metadata.run_metadata = b"\x01\x02\x03"
    out.append(e)
    # A session_log with every field at its default still selects the oneof.
    e = ev.Event(wall_time=8.0)
    e.session_log.SetInParent()
    out.append(e)
    return out


def _check_other_events(events):
    assert [e.WhichOneof("what") for e in events] == [
        "file_version",
        "graph_def",
        "meta_graph_def",
        "session_log",
        "session_log",
        "log_message",
        "tagged_run_metadata",
        "session_log",
    ]
    fv, gd, mg, start, ckpt, log, trm, empty = events
    assert (fv.wall_time, fv.file_version) == (1.5, "brain.Event:2")
    assert (gd.step, gd.graph_def) == (9, b"\x0a\x03abc")
    assert mg.meta_graph_def == b"\x12\x00meta"
    assert start.session_log.status == 1
    assert start.session_log.checkpoint_path == "/ckpt/model-5"
    assert start.session_log.msg == "resumed"
    assert ckpt.session_log.status == 3
    assert (log.log_message.level, log.log_message.message) == (30, "careful")
    assert trm.tagged_run_metadata.tag == "step_8"
    assert trm.tagged_run_metadata.run_metadata == b"\x01\x02\x03"
    assert empty.session_log.status == 0


def test_other_events_tbx_to_tensorboard():
    for e in _other_events(
        event_pb2,
        event_pb2.SessionLog.SessionStatus.Value,
        event_pb2.LogMessage.Level.Value,
    ):
        data = e.SerializeToString()
        parsed = tb_event_pb2.Event.FromString(data)
        assert parsed.SerializeToString() == data
    _check_other_events(
        [
            tb_event_pb2.Event.FromString(e.SerializeToString())
            for e in _other_events(
                event_pb2,
                event_pb2.SessionLog.SessionStatus.Value,
                event_pb2.LogMessage.Level.Value,
            )
        ]
    )


def test_other_events_tensorboard_to_tbx():
    _check_other_events(
        [
            event_pb2.Event.FromString(e.SerializeToString())
            for e in _other_events(
                tb_event_pb2,
                tb_event_pb2.SessionLog.SessionStatus.Value,
                tb_event_pb2.LogMessage.Level.Value,
            )
        ]
    )


def test_tensorboard_writer_output_parses():
    """An Event built by TensorBoard's own summary helpers parses with ours."""
    from tensorboard.plugins.histogram import summary_v2 as hist_v2
    from tensorboard.plugins.scalar import summary_v2 as scalar_v2

    tb_ev = tb_event_pb2.Event(wall_time=12.0, step=3)
    tb_ev.summary.MergeFrom(scalar_v2.scalar_pb("acc", 0.75))
    tb_ev.summary.MergeFrom(hist_v2.histogram_pb("w", [1.0, 2.0, 2.0, 5.0], buckets=3))
    ev = event_pb2.Event.FromString(tb_ev.SerializeToString())
    acc, w = ev.summary.value
    assert acc.tag == "acc"
    assert acc.metadata.plugin_data.plugin_name == "scalars"
    assert acc.tensor.dtype == tensor_pb2.DT_FLOAT
    assert list(acc.tensor.float_val) == [0.75]
    assert w.metadata.plugin_data.plugin_name == "histograms"
    assert [d.size for d in w.tensor.tensor_shape.dim] == [3, 3]
    assert ev.SerializeToString() == tb_ev.SerializeToString()


# --------------------------------------------------------------------------
# Plugin data
# --------------------------------------------------------------------------

PLUGIN_CASES = [
    (plugin_data_pb2.ScalarPluginData, tb_scalar_pd.ScalarPluginData, [{}, {"version": 0}, {"version": 7}, {"version": -1}]),
    (plugin_data_pb2.HistogramPluginData, tb_histogram_pd.HistogramPluginData, [{}, {"version": 2}]),
    (
        plugin_data_pb2.ImagePluginData,
        tb_image_pd.ImagePluginData,
        [{}, {"version": 1, "converted_to_tensor": True}, {"converted_to_tensor": True}],
    ),
    (
        plugin_data_pb2.AudioPluginData,
        tb_audio_pd.AudioPluginData,
        [{}, {"version": 0, "encoding": 11}, {"version": 3, "encoding": 11, "converted_to_tensor": True}],
    ),
    (plugin_data_pb2.TextPluginData, tb_text_pd.TextPluginData, [{}, {"version": 5}]),
    (
        plugin_data_pb2.PrCurvePluginData,
        tb_pr_curve_pd.PrCurvePluginData,
        [{}, {"version": 0, "num_thresholds": 201}, {"num_thresholds": 2**32 - 1}],
    ),
]


@pytest.mark.parametrize(
    "ours, theirs, cases",
    PLUGIN_CASES,
    ids=[c[0].DESCRIPTOR.name for c in PLUGIN_CASES],
)
def test_plugin_data_both_ways(ours, theirs, cases):
    for kwargs in cases:
        mine = ours(**kwargs)
        tb = theirs(**kwargs)
        a = mine.SerializeToString(deterministic=True)
        b = tb.SerializeToString(deterministic=True)
        assert a == b, kwargs
        assert theirs.FromString(a) == tb
        assert ours.FromString(b) == mine
        for name, value in kwargs.items():
            assert getattr(theirs.FromString(a), name) == value
            assert getattr(ours.FromString(b), name) == value


def test_plugin_data_against_tensorboard_metadata():
    """Content produced by TensorBoard's metadata helpers parses with ours."""
    from tensorboard.plugins.audio import metadata as audio_md
    from tensorboard.plugins.pr_curve import metadata as pr_md

    md = audio_md.create_summary_metadata(
        display_name="a", description="d", encoding=tb_audio_pd.AudioPluginData.WAV
    )
    ours_md = summary_pb2.SummaryMetadata.FromString(md.SerializeToString())
    assert ours_md.plugin_data.plugin_name == "audio"
    content = plugin_data_pb2.AudioPluginData.FromString(ours_md.plugin_data.content)
    assert content.encoding == plugin_data_pb2.AudioPluginData.WAV

    md = pr_md.create_summary_metadata(display_name="p", description="", num_thresholds=13)
    ours_md = summary_pb2.SummaryMetadata.FromString(md.SerializeToString())
    assert ours_md.plugin_data.plugin_name == "pr_curves"
    content = plugin_data_pb2.PrCurvePluginData.FromString(ours_md.plugin_data.content)
    assert content.num_thresholds == 13
