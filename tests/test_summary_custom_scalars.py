"""Custom scalars: the Layout proto, the layout record, merging, and TensorBoard reading it.

Oracles: TensorBoard's compiled ``layout_pb2`` (wire compatibility), torch's
``custom_scalars`` summary (same dict, same bytes), TensorBoard's loaders and
its custom scalars plugin serving ``/layout`` in-process.
"""

import json

import pytest
from tensorboard.backend.event_processing import data_provider as tb_data_provider
from tensorboard.backend.event_processing import plugin_event_accumulator as plugin_acc
from tensorboard.backend.event_processing import plugin_event_multiplexer as tb_multiplexer
from tensorboard.compat.proto import summary_pb2 as tb_summary_pb2
from tensorboard.compat.proto import types_pb2 as tb_types_pb2
from tensorboard.plugins import base_plugin
from tensorboard.plugins.custom_scalar import custom_scalars_plugin
from tensorboard.plugins.custom_scalar import layout_pb2 as tb_layout_pb2
from torch.utils.tensorboard import summary as torch_summary
from werkzeug.test import EnvironBuilder

from tbx import SummaryWriter
from tbx.proto import custom_scalar_pb2
from tbx.summary import custom_scalars as cs
from writer_util import tbx_values_by_tag, to_ndarray, values_by_tag

TORCH_LAYOUT = {
    "Taiwan": {"twse": ["Multiline", ["twse/0050", "twse/2330"]]},
    "USA": {
        "dow": ["Margin", ["dow/aaa", "dow/bbb", "dow/ccc"]],
        "nasdaq": ["Margin", ["nasdaq/aaa", "nasdaq/bbb", "nasdaq/ccc"]],
    },
}


# --- wire compatibility of tbx.proto.custom_scalar_pb2 ------------------------------------

def _fields(desc):
    return {
        f.name: (f.number, f.type, f.is_repeated, f.containing_oneof.name if f.containing_oneof else None,
                 f.message_type.name if f.message_type else None)
        for f in desc.fields
    }


@pytest.mark.parametrize("path", ["Layout", "Category", "Chart", "MultilineChartContent", "MarginChartContent",
                                  "MarginChartContent.Series"])
def test_fields_match_tensorboard(path):
    ours = custom_scalar_pb2.DESCRIPTOR.message_types_by_name[path.split(".")[0]]
    theirs = tb_layout_pb2.DESCRIPTOR.message_types_by_name[path.split(".")[0]]
    for nested in path.split(".")[1:]:
        ours, theirs = ours.nested_types_by_name[nested], theirs.nested_types_by_name[nested]
    assert _fields(ours) == _fields(theirs)
    assert custom_scalar_pb2.DESCRIPTOR.package == "tbx.proto"


def _full_layout(module):
    layout = module.Layout(version=3)
    cat = layout.category.add(title="losses", closed=True)
    cat.chart.add(title="all", multiline=module.MultilineChartContent(tag=["loss/.*", r"val\d"]))
    series = [module.MarginChartContent.Series(value="v", lower="lo", upper="hi"),
              module.MarginChartContent.Series(value="ü", lower="", upper="x")]
    cat.chart.add(title="band", margin=module.MarginChartContent(series=series))
    layout.category.add(title="empty")
    layout.category[1].chart.add(title="no content")
    return layout


def test_layout_round_trips_both_ways_byte_identical():
    ours, theirs = _full_layout(custom_scalar_pb2), _full_layout(tb_layout_pb2)
    a, b = ours.SerializeToString(deterministic=True), theirs.SerializeToString(deterministic=True)
    assert a == b
    assert tb_layout_pb2.Layout.FromString(a) == theirs
    back = custom_scalar_pb2.Layout.FromString(b)
    assert back == ours
    assert back.category[0].closed is True and back.version == 3
    assert back.category[0].chart[1].margin.series[1].value == "ü"
    assert [c.WhichOneof("content") for c in back.category[0].chart] == ["multiline", "margin"]
    assert back.category[1].chart[0].WhichOneof("content") is None


# --- the record -------------------------------------------------------------------------------

def _layout_events(logdir):
    """[(step, Layout, metadata or None)] of the config tag, read with TensorBoard's protos."""
    out = []
    for step, _w, value in values_by_tag(logdir)[".", cs.CONFIG_TAG]:
        assert value.tensor.dtype == tb_types_pb2.DT_STRING and not value.tensor.tensor_shape.dim
        [content] = value.tensor.string_val
        out.append((step, tb_layout_pb2.Layout.FromString(content), value.metadata if value.HasField("metadata") else None))
    return out


def test_record_matches_torch(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_custom_scalars(TORCH_LAYOUT)
    [(step, layout, md)] = _layout_events(tmp_path)
    theirs = torch_summary.custom_scalars(TORCH_LAYOUT).value[0]
    assert theirs.tag == cs.CONFIG_TAG == "custom_scalars__config__"
    assert step == 0
    assert layout.SerializeToString() == theirs.tensor.string_val[0]
    assert md.plugin_data.plugin_name == "custom_scalars" and md.plugin_data.content == b""
    assert md.data_class == tb_summary_pb2.DATA_CLASS_TENSOR
    [(_s, _w, value)] = tbx_values_by_tag(tmp_path)[".", cs.CONFIG_TAG]
    assert custom_scalar_pb2.Layout.FromString(value.tensor.string_val[0]).category[1].chart[0].margin.series[0].upper == "dow/ccc"
    assert to_ndarray(value.tensor).shape == ()


def _serve_layout(logdir):
    """TensorBoard's custom scalars plugin answering /layout in-process (Python loader)."""
    multiplexer = tb_multiplexer.EventMultiplexer(tensor_size_guidance={"custom_scalars": 100})
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = tb_data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    plugin = custom_scalars_plugin.CustomScalarsPlugin(
        base_plugin.TBContext(data_provider=provider, multiplexer=multiplexer, logdir=str(logdir))
    )
    status = []
    body = b"".join(plugin.get_plugin_apps()["/layout"](EnvironBuilder(path="/layout").get_environ(),
                                                         lambda s, h, e=None: status.append(s)))
    assert status == ["200 OK"], body
    return json.loads(body)


def _titles(layout_json):
    return [(c["title"], [ch["title"] for ch in c.get("chart", [])]) for c in layout_json.get("category", [])]


def test_repeated_calls_merge_and_tensorboard_shows_all(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_custom_scalars_multilinechart(["loss/train", "loss/val"], category="losses", title="both")
        writer.add_custom_scalars_marginchart(["acc", "acc_lo", "acc_hi"], category="accuracy", title="band")
        writer.add_custom_scalars_multilinechart(["lr"])  # default category and title
        writer.add_custom_scalars(TORCH_LAYOUT)
        writer.add_custom_scalars_multilinechart(["loss/.*"], category="losses", title="both")  # replaces
        writer.add_scalar("loss/train", 1.0)
    events = _layout_events(tmp_path)
    assert [md is not None for _s, _l, md in events] == [True, False, False, False, False]
    assert [step for step, _l, _m in events] == [0, 1, 2, 3, 4]
    final = events[-1][1]
    assert [(c.title, [ch.title for ch in c.chart]) for c in final.category] == [
        ("losses", ["both"]), ("accuracy", ["band"]), ("default", ["untitled"]),
        ("Taiwan", ["twse"]), ("USA", ["dow", "nasdaq"]),
    ]
    assert list(final.category[0].chart[0].multiline.tag) == ["loss/.*"]
    # every record holds the whole layout so far
    assert [len(layout.category) for _s, layout, _m in events] == [1, 2, 3, 5, 5]
    served = _serve_layout(tmp_path)
    assert _titles(served) == [(c.title, [ch.title for ch in c.chart]) for c in final.category]
    assert served["category"][1]["chart"][0]["margin"]["series"] == [{"value": "acc", "lower": "acc_lo", "upper": "acc_hi"}]
    assert served["category"][0]["chart"][0]["multiline"]["tag"] == ["loss/.*"]


def test_layout_message_accepted_with_closed_categories(tmp_path):
    layout = tb_layout_pb2.Layout()
    cat = layout.category.add(title="hidden", closed=True)
    cat.chart.add(title="c", multiline=tb_layout_pb2.MultilineChartContent(tag=["x"]))
    ours = custom_scalar_pb2.Layout()
    ours.category.add(title="mine").chart.add(
        title="m", margin=custom_scalar_pb2.MarginChartContent(series=[{"value": "a", "lower": "b", "upper": "c"}]))
    with SummaryWriter(tmp_path) as writer:
        writer.add_custom_scalars(layout)
        writer.add_custom_scalars(ours)
    served = _serve_layout(tmp_path)
    assert _titles(served) == [("hidden", ["c"]), ("mine", ["m"])]
    assert served["category"][0]["closed"] is True


def test_merge_rules():
    into = cs.to_layout({"a": {"x": ["Multiline", ["1"]], "y": ["Multiline", ["2"]]}})
    cs.merge(into, cs.to_layout({"b": {"z": ["Multiline", ["3"]]}, "a": {"y": ["Margin", ["4", "5", "6"]], "w": ["Multiline", ["7"]]}}))
    assert [(c.title, [(ch.title, ch.WhichOneof("content")) for ch in c.chart]) for c in into.category] == [
        ("a", [("x", "multiline"), ("y", "margin"), ("w", "multiline")]),
        ("b", [("z", "multiline")]),
    ]


def test_layout_per_writer_and_file(tmp_path):
    """Two writers (two runs) hold separate layouts; TensorBoard concatenates them by run."""
    with SummaryWriter(tmp_path / "a") as one, SummaryWriter(tmp_path / "b") as two:
        one.add_custom_scalars_multilinechart(["x"], category="shared", title="from a")
        two.add_custom_scalars_multilinechart(["y"], category="shared", title="from b")
        two.add_custom_scalars_multilinechart(["z"], category="only b", title="z")
    assert _titles(_serve_layout(tmp_path)) == [("shared", ["from a", "from b"]), ("only b", ["z"])]


def test_accumulator_sees_latest_layout(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_custom_scalars_multilinechart(["a"], title="1")
        writer.add_custom_scalars_multilinechart(["b"], title="2")
    acc = plugin_acc.EventAccumulator(str(tmp_path), size_guidance={plugin_acc.TENSORS: 0},
                                      tensor_size_guidance={"custom_scalars": 0})
    acc.Reload()
    assert acc.PluginTagToContent("custom_scalars") == {cs.CONFIG_TAG: b""}
    latest = tb_layout_pb2.Layout.FromString(to_ndarray(acc.Tensors(cs.CONFIG_TAG)[-1].tensor_proto).item())
    assert [ch.title for ch in latest.category[0].chart] == ["1", "2"]
