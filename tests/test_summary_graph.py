"""SummaryWriter.add_graph / add_onnx_graph, tbx.summary.graph and the GraphDef protos.

The written graph is read back with TensorBoard's own loaders (both event
accumulators' ``Graph()``), served through TensorBoard's Graphs plugin
in-process, and compared with what torch.utils.tensorboard writes for the
same model (same module groups, same aten operations).
"""

import importlib
import inspect
import math

import pytest
import torch
from google.protobuf import text_format
from tensorboard.compat.proto import attr_value_pb2 as tb_attr_value_pb2
from tensorboard.compat.proto import graph_pb2 as tb_graph_pb2
from tensorboard.compat.proto import node_def_pb2 as tb_node_def_pb2
from tensorboard.compat.proto import versions_pb2 as tb_versions_pb2
from torch import nn
from torch.utils.tensorboard import SummaryWriter as TorchWriter

import tbx
from tbx import SummaryWriter
from tbx.proto import graph_pb2, tensor_pb2
from tbx.summary import graph as graph_summary
from writer_util import legacy_accumulator, plugin_accumulator, run_events, values_by_tag


JIT_DEPRECATION = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")
"""For tests that call torch.jit themselves (deprecated since torch 2.9; add_graph silences it)."""


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.fc = nn.Linear(4 * 6 * 6, 10)
        self.head = nn.Sequential(nn.Linear(10, 5), nn.ReLU())

    def forward(self, x, y):
        out = self.head(self.fc(self.block(x).flatten(1)))
        return out + y, out.max(dim=1)


def net_inputs():
    return torch.randn(2, 3, 8, 8), torch.randn(2, 5)


def _graph(logdir):
    acc = legacy_accumulator(logdir)
    return acc.Graph()


def _by_name(graph):
    return {node.name: node for node in graph.node}


def _shapes(node):
    return [[d.size for d in s.dim] for s in node.attr["_output_shapes"].list.shape]


def _source(reference):
    """The node name an input reference points at ("name", "name:k" or "^name")."""
    name = reference.lstrip("^")
    head, sep, tail = name.rpartition(":")
    return head if sep and tail.isdigit() else name


# --- signatures -----------------------------------------------------------------

@pytest.mark.parametrize("method", ["add_graph", "add_onnx_graph"])
def test_signature_matches_torch(method):
    ours = inspect.signature(getattr(SummaryWriter, method))
    theirs = inspect.signature(getattr(TorchWriter, method))
    assert list(ours.parameters) == list(theirs.parameters)
    for name, param in theirs.parameters.items():
        assert ours.parameters[name].default == param.default, name
        assert ours.parameters[name].kind == param.kind, name


# --- the written graph --------------------------------------------------------------

def test_graph_read_by_both_accumulators(tmp_path):
    model = Net()
    with SummaryWriter(tmp_path) as writer:
        writer.add_graph(model, net_inputs())
    legacy = legacy_accumulator(tmp_path).Graph()
    plugin = plugin_accumulator(tmp_path).Graph()
    assert legacy.SerializeToString() == plugin.SerializeToString()
    nodes = _by_name(legacy)
    assert len(nodes) == len(legacy.node), "node names are unique"
    for name in [
        "input/x", "input/y", "output/output_0",
        "Net/Block[block]/Conv2d[conv]/weight", "Net/Block[block]/Conv2d[conv]/bias",
        "Net/Block[block]/Conv2d[conv]/_convolution",
        "Net/Block[block]/BatchNorm2d[bn]/running_mean", "Net/Block[block]/BatchNorm2d[bn]/batch_norm",
        "Net/Block[block]/relu", "Net/flatten", "Net/Linear[fc]/linear",
        "Net/Sequential[head]/Linear[0]/linear", "Net/Sequential[head]/ReLU[1]/relu", "Net/add", "Net/max",
    ]:
        assert name in nodes, name
    # every input reference resolves to a node
    for node in legacy.node:
        for reference in node.input:
            assert _source(reference) in nodes, (node.name, reference)
    # ops, edges, shapes, parameters
    conv = nodes["Net/Block[block]/Conv2d[conv]/_convolution"]
    assert conv.op == "aten::_convolution"
    assert list(conv.input[:3]) == [
        "input/x", "Net/Block[block]/Conv2d[conv]/weight", "Net/Block[block]/Conv2d[conv]/bias",
    ]
    assert _shapes(conv) == [[2, 4, 6, 6]]
    assert conv.attr["dtype"].s == b"float32"
    assert conv.device == "/device:CPU:0"
    assert _shapes(nodes["input/x"]) == [[2, 3, 8, 8]] and nodes["input/x"].op == "IO Node"
    assert _shapes(nodes["Net/max"]) == [[2], [2]]
    for name, param in model.named_parameters():
        path = {"block.conv": "Net/Block[block]/Conv2d[conv]", "block.bn": "Net/Block[block]/BatchNorm2d[bn]",
                "fc": "Net/Linear[fc]", "head.0": "Net/Sequential[head]/Linear[0]"}
        module, attribute = name.rsplit(".", 1)
        node = nodes[f"{path[module]}/{attribute}"]
        assert node.op == "Parameter"
        assert _shapes(node) == [list(param.shape)]
    assert nodes["Net/Block[block]/BatchNorm2d[bn]/running_var"].op == "Buffer"
    # second output of max feeds the tuple as "name:1"
    assert "Net/max:1" in [r for n in legacy.node for r in n.input]
    # the output node is fed by the last tuple
    assert list(nodes["output/output_0"].input) == ["Net/TupleConstruct_1"]
    assert legacy.versions.producer == graph_summary.PRODUCER


def test_graph_event_in_file(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_scalar("loss", 1.0, 0)
        writer.add_graph(Net(), net_inputs())
    events = run_events(tmp_path)["."]
    graph_events = [e for e in events if e.WhichOneof("what") == "graph_def"]
    assert len(graph_events) == 1
    event = graph_events[0]
    assert event.step == 0 and math.isfinite(event.wall_time) and event.wall_time > 0
    ours = [e for _run, e in tbx.read_events(tmp_path) if e.WhichOneof("what") == "graph_def"]
    assert [e.graph_def for e in ours] == [event.graph_def]
    # our GraphDef and TensorBoard's parse the same bytes to the same content
    mine = graph_pb2.GraphDef.FromString(event.graph_def)
    theirs = tb_graph_pb2.GraphDef.FromString(event.graph_def)
    assert [n.name for n in mine.node] == [n.name for n in theirs.node]
    assert mine.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True)


def _serve(logdir, path):
    """GET ``path`` from TensorBoard's Graphs plugin, run in-process on the Python loader."""
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.graph.graphs_plugin import GraphsPlugin
    from werkzeug import Request
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    plugin = GraphsPlugin(base_plugin.TBContext(logdir=str(logdir), data_provider=provider, multiplexer=mux))
    apps = plugin.get_plugin_apps()
    client = Client(lambda environ, start: apps[Request(environ).path](environ, start), Response)
    return client.get(path)


def test_graphs_plugin_serves_the_graph(tmp_path):
    with SummaryWriter(tmp_path / "run") as writer:
        writer.add_graph(Net(), net_inputs())
    info = _serve(tmp_path, "/info").get_json()
    assert info["run"]["run_graph"] is True
    response = _serve(tmp_path, "/graph?run=run&conceptual=false")
    assert response.status_code == 200
    served = text_format.Parse(response.get_data(as_text=True), tb_graph_pb2.GraphDef())
    assert [n.name for n in served.node] == [n.name for n in _graph(tmp_path / "run").node]


@JIT_DEPRECATION
def test_same_groups_and_ops_as_torch(tmp_path):
    """torch names nodes differently, but the module groups and aten ops must agree."""
    torch.manual_seed(0)
    model = Net()
    inputs = net_inputs()
    with SummaryWriter(tmp_path / "tbx") as writer:
        writer.add_graph(model, inputs)
    with TorchWriter(str(tmp_path / "torch")) as writer:
        writer.add_graph(model, inputs)

    def aten(graph):
        return {(n.name.rsplit("/", 1)[0], n.op) for n in graph.node if n.op.startswith("aten::")}

    ours, theirs = aten(_graph(tmp_path / "tbx")), aten(_graph(tmp_path / "torch"))
    assert ours == theirs
    assert ("Net/Block[block]/Conv2d[conv]", "aten::_convolution") in ours


def test_training_flags_restored_and_state_untouched(tmp_path):
    model = Net()
    model.train()
    model.block.bn.eval()  # a frozen BatchNorm inside a training model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with SummaryWriter(tmp_path) as writer:
        writer.add_graph(model, net_inputs())
    assert model.training and model.block.training and model.fc.training and model.head[0].training
    assert not model.block.bn.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "tracing ran in eval mode"
    assert _graph(tmp_path).node


def test_shared_module_has_one_parameter_node(tmp_path):
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            return self.lin(self.lin(x))

    with SummaryWriter(tmp_path) as writer:
        writer.add_graph(Twice(), torch.randn(1, 3))
    nodes = _by_name(_graph(tmp_path))
    assert [n for n in nodes if n.endswith("/weight")] == ["Twice/Linear[lin]/weight"]
    assert {"Twice/Linear[lin]/linear", "Twice/Linear[lin]/linear_1"} <= set(nodes)
    consumers = [n for n in nodes.values() if "Twice/Linear[lin]/weight" in n.input]
    assert len(consumers) == 2
    assert list(nodes["Twice/Linear[lin]/linear_1"].input)[0] == "Twice/Linear[lin]/linear"


def test_single_tensor_list_and_no_input(tmp_path):
    class NoInput(nn.Module):
        def forward(self):
            return torch.ones(3) * 2

    class TwoArgs(nn.Module):
        def forward(self, a, b):
            return a - b

    with SummaryWriter(tmp_path / "a") as writer:
        writer.add_graph(nn.Linear(4, 2), torch.randn(5, 4))
    with SummaryWriter(tmp_path / "b") as writer:
        writer.add_graph(TwoArgs(), [torch.randn(2), torch.randn(2)])  # a list: one tensor per argument
    with SummaryWriter(tmp_path / "c") as writer:
        writer.add_graph(NoInput())
    a = _by_name(_graph(tmp_path / "a"))
    assert _shapes(a["Linear/linear"]) == [[5, 2]] and _shapes(a["Linear/weight"]) == [[2, 4]]
    b = _by_name(_graph(tmp_path / "b"))
    assert {"input/a", "input/b"} <= set(b) and list(b["TwoArgs/sub"].input[:2]) == ["input/a", "input/b"]
    c = _by_name(_graph(tmp_path / "c"))
    assert not [n for n in c if n.startswith("input/")]
    assert _shapes(c["NoInput/mul"]) == [[3]]


@JIT_DEPRECATION
def test_traced_function_and_scripted_module(tmp_path):
    def affine(a, b):
        return a * b + 1

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x):
            if bool(x.sum() > 0):
                return self.lin(x)
            return x

    traced_fn = torch.jit.trace(affine, (torch.randn(2), torch.randn(2)))
    with SummaryWriter(tmp_path / "fn") as writer:
        writer.add_graph(traced_fn)
    fn = _by_name(_graph(tmp_path / "fn"))
    assert {"input/a", "input/b", "affine/mul", "affine/add", "output/output_0"} <= set(fn)

    scripted = torch.jit.script(Branchy())
    with SummaryWriter(tmp_path / "script") as writer:
        writer.add_graph(scripted, torch.randn(1, 2))
    nodes = _by_name(_graph(tmp_path / "script"))
    assert nodes["Branchy/If"].op == "prim::If"
    # the Linear call inside the first branch is followed into the submodule
    assert "Branchy/Linear[lin]/linear" in nodes
    assert "Branchy/Linear[lin]/weight" in nodes
    for node in nodes.values():
        for reference in node.input:
            assert _source(reference) in nodes


def test_strict_trace_flag(tmp_path):
    class DictOut(nn.Module):
        def forward(self, x):
            return {"double": x * 2}

    with SummaryWriter(tmp_path) as writer:
        with pytest.raises(ValueError, match=r"DictOut.*dict"):
            writer.add_graph(DictOut(), torch.randn(2))
        writer.add_graph(DictOut(), torch.randn(2), use_strict_trace=False)
    assert "DictOut/mul" in _by_name(_graph(tmp_path))


def test_verbose_output(tmp_path, capsys):
    with SummaryWriter(tmp_path) as writer:
        writer.add_graph(nn.Linear(2, 2), torch.randn(1, 2))
        assert capsys.readouterr().out == ""
        writer.add_graph(nn.Linear(2, 2), torch.randn(1, 2), verbose=True)
    out = capsys.readouterr().out
    assert "graph(" in out and "aten::linear" in out


def test_graph_of_a_model_on_another_dtype(tmp_path):
    model = nn.Linear(3, 1).double()
    with SummaryWriter(tmp_path) as writer:
        writer.add_graph(model, torch.randn(4, 3, dtype=torch.float64))
    nodes = _by_name(_graph(tmp_path))
    assert nodes["Linear/linear"].attr["dtype"].s == b"float64"
    assert nodes["Linear/weight"].attr["dtype"].s == b"float64"


# --- add_onnx_graph -------------------------------------------------------------------

def test_add_onnx_graph_not_supported(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_scalar("before", 1.0, 0)
        with pytest.raises(NotImplementedError, match=r"onnx.*add_graph") as info:
            writer.add_onnx_graph("model.onnx")
        assert "model.onnx" in str(info.value)
        writer.add_scalar("after", 2.0, 1)
    tags = values_by_tag(tmp_path)
    assert [s for s, _w, _v in tags[".", "before"]] == [0]
    assert [s for s, _w, _v in tags[".", "after"]] == [1]


# --- bad input: clear errors, nothing lost --------------------------------------------

class Broken(nn.Module):
    def forward(self, x):
        raise RuntimeError("forward exploded")


class NeedsTwo(nn.Module):
    def forward(self, a, b):
        return a + b


BAD_CALLS = [
    # (id, kwargs, exception, message pattern)
    ("not_callable", dict(model=42, input_to_model=torch.randn(2)), TypeError, r"model must be a torch.nn.Module.*int"),
    ("forward_raises", dict(model=Broken(), input_to_model=torch.randn(2)), ValueError,
     r"could not trace the model Broken: RuntimeError: forward exploded"),
    ("missing_argument", dict(model=NeedsTwo(), input_to_model=torch.randn(2)), ValueError,
     r"could not trace the model NeedsTwo"),
    ("non_tensor_input", dict(model=nn.Linear(2, 2), input_to_model="text"), ValueError,
     r"could not trace the model Linear"),
    ("strict_flag", dict(model=nn.Linear(2, 2), input_to_model=torch.randn(2), use_strict_trace="yes"), TypeError,
     r"use_strict_trace must be a bool, got .yes."),
]


@pytest.mark.parametrize("case", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises_and_keeps_data(tmp_path, case):
    _id, kwargs, exc_type, pattern = case
    with SummaryWriter(tmp_path) as writer:
        writer.add_scalar("loss", 1.0, 0)
        with pytest.raises(exc_type, match=pattern):
            writer.add_graph(**kwargs)
        writer.add_scalar("loss", 2.0, 1)
        writer.add_graph(nn.Linear(2, 2), torch.randn(1, 2))
    assert [s for s, _w, _v in values_by_tag(tmp_path)[".", "loss"]] == [0, 1]
    assert "Linear/linear" in _by_name(_graph(tmp_path))


def test_trace_failure_is_chained(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        with pytest.raises(ValueError) as info:
            writer.add_graph(Broken(), torch.randn(2))
    assert isinstance(info.value.__cause__, RuntimeError)


def test_add_graph_after_close_raises(tmp_path):
    writer = SummaryWriter(tmp_path)
    writer.close()
    with pytest.raises(tbx.errors.WriterClosedError):
        writer.add_graph(nn.Linear(2, 2), torch.randn(1, 2))


# --- the GraphDef protos: wire compatibility with TensorBoard ----------------------------

def _field_table(desc):
    return {
        f.name: (
            f.number, f.type, f.is_repeated, f.is_packed if f.is_repeated else False,
            f.containing_oneof.name if f.containing_oneof else None,
            f.message_type.name if f.message_type else None,
            f.enum_type.name if f.enum_type else None,
        )
        for f in desc.fields
    }


PROTO_PAIRS = [
    (graph_pb2.GraphDef, tb_graph_pb2.GraphDef, {"library", "version", "debug_info"}),
    (graph_pb2.NodeDef, tb_node_def_pb2.NodeDef, {"experimental_debug_info", "experimental_type"}),
    (graph_pb2.NodeDef.AttrEntry, tb_node_def_pb2.NodeDef.AttrEntry, set()),
    (graph_pb2.AttrValue, tb_attr_value_pb2.AttrValue, set()),
    (graph_pb2.AttrValue.ListValue, tb_attr_value_pb2.AttrValue.ListValue, set()),
    (graph_pb2.NameAttrList, tb_attr_value_pb2.NameAttrList, set()),
    (graph_pb2.NameAttrList.AttrEntry, tb_attr_value_pb2.NameAttrList.AttrEntry, set()),
    (graph_pb2.VersionDef, tb_versions_pb2.VersionDef, set()),
]


@pytest.mark.parametrize("ours, theirs, omitted", PROTO_PAIRS, ids=[p[0].DESCRIPTOR.full_name for p in PROTO_PAIRS])
def test_graph_fields_match_tensorboard(ours, theirs, omitted):
    mine, tb = _field_table(ours.DESCRIPTOR), _field_table(theirs.DESCRIPTOR)
    assert set(tb) - set(mine) == omitted
    assert set(mine) <= set(tb)
    for name, row in mine.items():
        assert row == tb[name], name


def _sample_graph(module, tensor_module, types):
    """A GraphDef using every AttrValue kind, built with either set of classes."""
    graph = module.GraphDef()
    graph.versions.producer = 22
    graph.versions.min_consumer = 3
    graph.versions.bad_consumers.extend([5, 7])
    node = graph.node.add(name="scope/a", op="Op", input=["x", "y:1", "^z"], device="/device:CPU:0")
    node.attr["s"].s = b"\xff\x00bytes"
    node.attr["i"].i = -(2**40)
    node.attr["f"].f = 0.25
    node.attr["b"].b = True
    node.attr["type"].type = types.Value("DT_DOUBLE")
    shape = node.attr["shape"].shape
    shape.dim.add(size=-1)
    shape.dim.add(size=3, name="c")
    tensor = node.attr["tensor"].tensor
    tensor.dtype = types.Value("DT_FLOAT")
    tensor.tensor_shape.dim.add(size=2)
    tensor.float_val.extend([1.5, -2.0])
    lst = node.attr["list"].list
    lst.s.extend([b"a", b"b"])
    lst.i.extend([1, -2, 2**40])
    lst.f.extend([0.5, -1.0])
    lst.b.extend([True, False])
    lst.type.extend([types.Value("DT_INT64"), types.Value("DT_STRING")])
    lst.shape.add().unknown_rank = True
    lst.shape.add().dim.add(size=4)
    lst.tensor.add().dtype = types.Value("DT_INT32")
    lst.func.add(name="g")
    func = node.attr["func"].func
    func.name = "f"
    func.attr["k"].i = 9
    node.attr["placeholder"].placeholder = "T"
    node.attr["empty_list"].list.SetInParent()
    graph.node.add(name="x", op="IO Node")
    return graph


def test_graph_round_trip_both_ways():
    from tensorboard.compat.proto import types_pb2 as tb_types_pb2

    ours = _sample_graph(graph_pb2, tensor_pb2, tensor_pb2.DataType)
    theirs = _sample_graph(tb_graph_pb2, None, tb_types_pb2.DataType)
    a = ours.SerializeToString(deterministic=True)
    b = theirs.SerializeToString(deterministic=True)
    assert a == b
    assert tb_graph_pb2.GraphDef.FromString(a) == theirs
    assert graph_pb2.GraphDef.FromString(b) == ours
    parsed = tb_graph_pb2.GraphDef.FromString(a)
    node = parsed.node[0]
    assert {k: v.WhichOneof("value") for k, v in node.attr.items()} == {
        "s": "s", "i": "i", "f": "f", "b": "b", "type": "type", "shape": "shape", "tensor": "tensor",
        "list": "list", "func": "func", "placeholder": "placeholder", "empty_list": "list",
    }
    assert node.attr["i"].i == -(2**40) and list(node.attr["list"].list.i) == [1, -2, 2**40]
    assert list(parsed.versions.bad_consumers) == [5, 7]
    # the text format (what the Graphs plugin serves) is identical too
    assert text_format.MessageToString(ours) == text_format.MessageToString(theirs)


def test_tensorflow_fields_we_omit_survive_a_round_trip():
    theirs = tb_graph_pb2.GraphDef()
    theirs.node.add(name="n").experimental_debug_info.original_node_names.append("orig")
    theirs.library.function.add().signature.name = "fn"
    theirs.version = 12
    data = theirs.SerializeToString(deterministic=True)
    ours = graph_pb2.GraphDef.FromString(data)
    assert ours.node[0].name == "n"
    assert tb_graph_pb2.GraphDef.FromString(ours.SerializeToString()) == theirs


def test_generated_module_is_importable_standalone():
    module = importlib.import_module("tbx.proto.graph_pb2")
    assert module.DESCRIPTOR.package == "tbx.proto"
    assert [d.name for d in module.DESCRIPTOR.dependencies] == ["tbx/proto/tensor.proto"]


def test_graph_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, tbx.summary.graph, tbx.writer_graph; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@JIT_DEPRECATION
def test_constant_values():
    """Constants carry their value as text; tensors are summarised, long text is cut."""
    table = torch.linspace(0, 1, 300)
    offset = torch.tensor(2.5)
    long_list = list(range(500))

    class WithConstants(nn.Module):
        def forward(self, x):
            return x.sum(dim=long_list[:1]) + table.sum() + offset + len(long_list)

    traced = torch.jit.trace(WithConstants(), torch.randn(3, 300))
    graph = graph_summary.graph_def_from_traced(traced)
    assert graph.node[1].name.startswith("WithConstants/"), "root group named after the module class"
    values = [n.attr["value"].s.decode() for n in graph.node if n.op == "prim::Constant"]
    assert "float32 tensor of shape [300]" in values
    assert "float32 2.5" in values
    assert "None" in values or "500" in values
    assert all(len(v) <= graph_summary.MAX_VALUE_CHARS for v in values)


def test_no_jit_deprecation_warning_from_add_graph(tmp_path):
    import warnings

    with SummaryWriter(tmp_path) as writer, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        writer.add_graph(nn.Linear(2, 2), torch.randn(1, 2))
    assert not [w for w in caught if "torch.jit" in str(w.message)]
