"""Graphs: a TorchScript graph (from ``torch.jit.trace``) as a GraphDef for the Graphs dashboard.

TensorBoard reads a graph from ``Event.graph_def`` (the serialized GraphDef)
and shows it under the run's ``__run_graph__`` tag; no summary metadata is
involved. This module turns the graph of a traced module into GraphDef nodes:

- each operation becomes a node named ``<scope>/<op>`` (``_1``, ``_2``...
  appended when an op repeats in one scope), where the scope is the module
  path written as ``Net/Sequential[features]/Conv2d[0]``, so the dashboard
  draws one collapsible group per submodule;
- each parameter or buffer a module reads becomes one node in that module's
  scope (op ``Parameter`` or ``Buffer``), named after the attribute;
- each graph input becomes ``input/<argument name>`` and each output
  ``output/output_<i>`` (op ``IO Node``);
- a node's ``input`` list names the nodes producing its operands, as
  ``name`` for output 0 and ``name:k`` for output k;
- attributes: ``_output_shapes`` (drawn on the edges) when some output is a
  tensor of known rank, ``dtype`` (e.g. ``float32``) of the first tensor
  output, and ``value`` for constants; ``device`` is set from the tensor type.

Submodule calls (``prim::CallMethod``) are followed into the submodule's own
graph, which carries the traced shapes. Control flow (``prim::If``,
``prim::Loop``, only in scripted modules) is drawn as one node whose blocks'
operations go into a sibling group ``<node>_block<i>``.

Only torch's public graph API is used (``graph.nodes()``, ``node.kind()``,
``node.inputs()``/``outputs()``, ``value.type()``, ...). torch itself is
never imported here: tbx.writer_graph traces the model and hands over the
result.
"""

from tbx import record
from tbx.proto import event_pb2, graph_pb2, tensor_pb2

PRODUCER = 22
"""GraphDef.versions.producer written, the value torch.utils.tensorboard writes."""

IO_OP = "IO Node"
MAX_VALUE_CHARS = 200
"""Constant values longer than this (as text) are cut, with '...'."""


def graph_record(graph_def, wall_time, step=0):
    """Framed Event bytes carrying ``graph_def`` (a GraphDef message) in ``Event.graph_def``."""
    event = event_pb2.Event(wall_time=wall_time, step=step, graph_def=graph_def.SerializeToString())
    return record.frame(event.SerializeToString())


class _Module:
    """A module value inside a graph: the (traced) module object and its group name."""

    __slots__ = ("module", "scope")

    def __init__(self, module, scope):
        self.module = module
        self.scope = scope


def class_name(module):
    """The Python class name of a module, also for traced and scripted ones."""
    return getattr(module, "original_name", None) or type(module).__name__


def graph_def_from_traced(traced, root_name=None):
    """The GraphDef of a ``torch.jit.trace`` (or ``torch.jit.script``) result.

    Args:
        traced: a traced/scripted module, or a traced function.
        root_name: name of the outermost group; default the module's class
            name (or the function's name).
    """
    if root_name is None:
        root_name = getattr(traced, "original_name", None) or getattr(traced, "name", None) or "Graph"
    builder = _Builder()
    graph = traced.graph
    args = []
    for value in graph.inputs():
        if _is_module_type(value.type()):
            args.append(_Module(traced, root_name))
        else:
            name = builder.add(f"input/{value.debugName()}", IO_OP, [], [value.type()])
            args.append(name)
    results = builder.walk(graph, root_name, args)
    for index, (value, result) in enumerate(zip(graph.outputs(), results)):
        inputs = [result] if isinstance(result, str) else []
        builder.add(f"output/output_{index}", IO_OP, inputs, [value.type()])
    graph_def = graph_pb2.GraphDef(node=builder.nodes)
    graph_def.versions.producer = PRODUCER
    return graph_def


def _is_module_type(ty):
    return ty.kind() == "ClassType"


class _Builder:
    def __init__(self):
        self.nodes = []
        self._used = set()
        self._attributes = {}  # (group of the owning module, attribute name) -> node name

    def unique(self, name):
        if name not in self._used:
            self._used.add(name)
            return name
        index = 1
        while f"{name}_{index}" in self._used:
            index += 1
        name = f"{name}_{index}"
        self._used.add(name)
        return name

    def add(self, name, op, inputs, output_types, attr=None):
        """Append a NodeDef with a unique version of ``name``; return the name used."""
        node = graph_pb2.NodeDef(name=self.unique(name), op=op, input=inputs)
        _describe_outputs(node, output_types)
        for key, value in (attr or {}).items():
            node.attr[key].s = value.encode("utf-8")
        self.nodes.append(node)
        return node.name

    def walk(self, graph, scope, args, env=None):
        """Add the nodes of ``graph`` (a Graph or Block) whose inputs are bound to ``args``.

        ``args`` hold, per input, a node reference (str), a _Module, or None.
        Returns the same kind of binding for each of the graph's outputs.
        ``env`` (value id -> binding) is shared with the enclosing graph for
        a block, whose nodes may use the enclosing graph's values.
        """
        env = {} if env is None else env
        env.update((value.unique(), arg) for value, arg in zip(graph.inputs(), args))
        for node in graph.nodes():
            self._node(node, scope, env)
        return [env.get(value.unique()) for value in graph.outputs()]

    def _node(self, node, scope, env):
        kind = node.kind()
        operands = [env.get(value.unique()) for value in node.inputs()]
        outputs = list(node.outputs())
        owner = operands[0] if operands else None
        if kind == "prim::GetAttr" and isinstance(owner, _Module):
            env[outputs[0].unique()] = self._attribute(owner, node.s("name"), outputs[0])
            return
        if kind == "prim::CallMethod" and isinstance(owner, _Module):
            method_name = node.s("name")
            # A script module's ``graph`` is its forward method's graph.
            method = owner.module if method_name == "forward" else getattr(owner.module, method_name, None)
            graph = getattr(method, "graph", None)
            if graph is not None:
                results = self.walk(graph, owner.scope, operands)
                for value, result in zip(outputs, results):
                    env[value.unique()] = result
                return
        attr = {}
        if kind == "prim::Constant" and len(outputs) == 1:
            attr["value"] = _constant_text(outputs[0])
        inputs = [operand for operand in operands if isinstance(operand, str)]
        short = kind.split("::")[-1] or kind
        name = self.add(f"{scope}/{short}", kind, inputs, [value.type() for value in outputs], attr)
        for index, value in enumerate(outputs):
            env[value.unique()] = name if index == 0 else f"{name}:{index}"
        for index, block in enumerate(node.blocks()):
            # Inside a block, its parameters come from the control node itself.
            self.walk(block, f"{name}_block{index}", [name] * len(list(block.inputs())), env)

    def _attribute(self, owner, attribute, value):
        """A submodule (_Module) or the node of a parameter/buffer read from ``owner``."""
        obj = getattr(owner.module, attribute, None)
        if _is_module_type(value.type()):
            scope = f"{owner.scope}/{class_name(obj)}[{attribute}]" if obj is not None else f"{owner.scope}/{attribute}"
            return _Module(obj, scope)
        key = (owner.scope, attribute)
        if key in self._attributes:
            return self._attributes[key]
        op = "prim::GetAttr"
        if obj is not None and hasattr(owner.module, "named_parameters"):
            if any(name == attribute for name, _ in owner.module.named_parameters(recurse=False)):
                op = "Parameter"
            elif any(name == attribute for name, _ in owner.module.named_buffers(recurse=False)):
                op = "Buffer"
        node = graph_pb2.NodeDef(name=self.unique(f"{owner.scope}/{attribute}"), op=op)
        if hasattr(obj, "shape") and hasattr(obj, "dtype"):
            node.attr["_output_shapes"].list.shape.add().dim.extend(
                tensor_pb2.TensorShapeProto.Dim(size=int(size)) for size in obj.shape
            )
            node.attr["dtype"].s = _dtype_name(obj.dtype).encode()
            device = getattr(obj, "device", None)
            if device is not None:
                node.device = _device_name(device)
        else:
            _describe_outputs(node, [value.type()])
        self.nodes.append(node)
        self._attributes[key] = node.name
        return node.name


def _describe_outputs(node, output_types):
    """Set ``_output_shapes``, ``dtype`` and ``device`` of ``node`` from its outputs' types."""
    shapes, known, first = [], False, None
    for ty in output_types:
        shape = tensor_pb2.TensorShapeProto()
        rank = _tensor_rank(ty)
        if rank is None:
            shape.unknown_rank = True
        else:
            known = True
            sizes = ty.varyingSizes() or [None] * rank
            shape.dim.extend(tensor_pb2.TensorShapeProto.Dim(size=-1 if s is None else int(s)) for s in sizes)
            if first is None:
                first = ty
        shapes.append(shape)
    if known:
        node.attr["_output_shapes"].list.shape.extend(shapes)
    if first is not None:
        try:
            dtype, device = first.dtype(), first.device()
        except RuntimeError:  # not recorded for this value
            dtype = device = None
        if dtype is not None:
            node.attr["dtype"].s = _dtype_name(dtype).encode()
        if device is not None:
            node.device = _device_name(device)


def _tensor_rank(ty):
    """Rank of a tensor type, or None for other types and tensors of unknown rank."""
    if ty.kind() != "TensorType":
        return None
    try:
        return ty.dim()
    except RuntimeError:
        return None


def _dtype_name(dtype):
    return str(dtype).replace("torch.", "")


def _device_name(device):
    """TensorFlow-style device string, e.g. ``/device:CPU:0`` or ``/device:CUDA:1``."""
    kind = getattr(device, "type", str(device).split(":")[0])
    index = getattr(device, "index", None)
    return f"/device:{kind.upper()}:{index or 0}"


def _constant_text(value):
    """Short text of a constant's value (tensors as dtype and shape)."""
    try:
        obj = value.toIValue()
    except RuntimeError:
        return value.type().str()
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        if obj.numel() == 1:
            text = f"{_dtype_name(obj.dtype)} {obj.item()!r}"
        else:
            text = f"{_dtype_name(obj.dtype)} tensor of shape {list(obj.shape)}"
    else:
        text = repr(obj)
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 3] + "..."
    return text
