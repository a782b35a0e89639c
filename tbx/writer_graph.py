"""SummaryWriter methods: add_graph, add_onnx_graph.

A mixin of tbx.writer.SummaryWriter; it writes through the writer's
`file_writer`. torch is imported only inside add_graph.
"""

import time
import warnings

from tbx.summary import graph as _graph


class GraphMethods:
    """add_graph, add_onnx_graph."""

    def add_graph(self, model, input_to_model=None, verbose=False, use_strict_trace=True):
        """Trace a torch model and show its graph in the GRAPHS tab.

        The model runs once, in eval mode (every submodule's train/eval state
        is restored afterwards), through ``torch.jit.trace``. Operations are
        grouped by submodule (``Net/Sequential[features]/Conv2d[0]/...``);
        parameters, buffers, inputs and outputs are nodes too, and edges carry
        the traced tensor shapes. The graph is written at step 0. Tracing runs
        on the caller's thread; writing is queued like any record.

        Args:
            model: a ``torch.nn.Module`` (or a function, or an already traced
                or scripted module, which is used as it is).
            input_to_model: the example input: one tensor, or a tuple or list
                of the forward arguments; None when forward takes none.
            verbose: print the traced TorchScript graph.
            use_strict_trace: ``strict`` of ``torch.jit.trace``; False lets the
                model return mutable containers (lists, dicts).

        Raises:
            TypeError: ``model`` is not callable.
            ValueError: the model cannot be traced with this input (the
                message names the model's class and torch's reason).

        Example::

            writer.add_graph(model, torch.zeros(1, 3, 224, 224))
        """
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - torch is installed wherever models exist
            raise ImportError("add_graph traces torch models and needs torch (pip install torch)") from exc
        if not callable(model):
            raise TypeError(f"model must be a torch.nn.Module (or a function), got {type(model).__name__}")
        if use_strict_trace not in (True, False):
            raise TypeError(f"use_strict_trace must be a bool, got {use_strict_trace!r}")
        if isinstance(model, torch.nn.Module):
            name = _graph.class_name(model)
        else:
            name = getattr(model, "__name__", None) or getattr(model, "name", None) or type(model).__name__
        if isinstance(model, (torch.jit.ScriptModule, torch.jit.ScriptFunction)):
            traced = model
        else:
            example = () if input_to_model is None else input_to_model
            modes = [(m, m.training) for m in model.modules()] if isinstance(model, torch.nn.Module) else []
            try:
                if modes:
                    model.eval()
                with warnings.catch_warnings():
                    # torch 2.9+ deprecates torch.jit.trace; add_graph is the API callers use.
                    warnings.filterwarnings("ignore", r".*torch\.jit\.trace", DeprecationWarning)
                    traced = torch.jit.trace(model, example, strict=bool(use_strict_trace), check_trace=False)
            except Exception as exc:
                raise ValueError(f"add_graph could not trace the model {name}: {type(exc).__name__}: {exc}") from exc
            finally:
                for module, training in modes:
                    module.training = training
        if verbose:
            print(traced.graph)
        graph_def = _graph.graph_def_from_traced(traced, name)
        self.file_writer.write(_graph.graph_record(graph_def, time.time()))

    def add_onnx_graph(self, prototxt):
        """Not supported: reading ONNX needs the ``onnx`` package, which tbx does not depend on.

        Raises:
            NotImplementedError: always. For a torch module, use
                ``add_graph(model, example_input)``.
        """
        raise NotImplementedError(
            f"add_onnx_graph({prototxt!r}) is not supported by tbx: reading ONNX models needs the heavy "
            "'onnx' package, which tbx does not depend on. For a torch module, call "
            "add_graph(model, example_input) instead; it traces the model with torch.jit."
        )
