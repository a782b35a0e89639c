"""``wandb.watch`` / ``wandb.unwatch`` for tbx runs: histograms of a torch model's
parameters and gradients, written to the run's TensorBoard event files.

Semantics follow W&B's (WANDB.md §6):

* ``log="gradients"`` puts a hook on every parameter that requires grad; each
  parameter counts its own backward passes and, on every ``log_freq``-th one,
  logs ``gradients/<prefix><name>``.
* ``log="parameters"`` puts one forward hook on the model passed in; it counts
  forward calls and, on every ``log_freq``-th one, logs
  ``parameters/<prefix><name>`` for every ``named_parameters()`` entry.
* ``log="all"`` does both; ``log=None`` neither.
* ``<prefix>`` is empty for the run's first watched model and ``graph_<i>``
  (no separator, as W&B writes it: ``gradients/graph_1weight``) for the i-th
  after it, or for ``idx + position`` when ``idx`` is given.

One difference from W&B: the model counter belongs to the run, not to the
process, so every run of a process (sweeps, ``reinit``) names its first model's
tags the same way and the runs stay comparable in TensorBoard.

Histograms have 64 bins computed with ``torch.histc`` on the tensor's own
device; only the counts (and one min/max pair) move to the CPU. Each is handed
to ``run._queue_histogram(tag, rows)``, rows being a float64 ``[k, 3]`` array of
(left edge, right edge, count), which the run writes with the user's next
committed step. torch is imported only when a function here is called.

Thread-safety: ``watch``/``unwatch`` of one run must not race each other; the
hooks themselves run wherever torch runs them (the autograd engine calls
gradient hooks on its own threads) and only call ``run._queue_histogram``.
"""

import math
import operator
import warnings
import weakref

import numpy as np

NUM_BINS = 64
LOG_CHOICES = ("gradients", "parameters", "all", None)
# torch.histc returns counts in the input's dtype, and float32 holds integers
# exactly only up to 2**24 (one bin of 19_999_999 reads back as 20_000_000), so
# larger tensors are binned in chunks of this size and summed in float64.
_CHUNK = 1 << 24


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise ImportError("watch() hooks into torch models and needs torch (pip install torch)") from exc
    return torch


class _WatchState:
    """What one run has hooked: hook name -> torch handle, plus the model counter."""

    def __init__(self):
        self.next_idx = 0
        self.handles = {}
        self.models = weakref.WeakSet()
        self.tracing = False


def _state(run):
    state = getattr(run, "_watch_state", None)
    if state is None:
        state = _WatchState()
        run._watch_state = state
    return state


def _handle_alive(handle):
    hooks = handle.hooks_dict_ref()
    return hooks is not None and handle.id in hooks


def tensor_histogram(tensor, bins=NUM_BINS):
    """Histogram of a tensor's finite values, as TensorBoard's histogram rows.

    NaN and +-inf are left out. A sparse tensor's implicit zeros are counted.
    Integer, bool and half-precision tensors are binned as float32; a complex
    tensor by its real part.

    Args:
        tensor: a ``torch.Tensor`` on any device.
        bins: number of equal-width bins between the finite min and max.

    Returns:
        A float64 numpy array ``[bins, 3]`` of (left, right, count); a single
        row ``[[v, v, n]]`` when all n finite values equal v; None when the
        tensor holds no finite value.

    Raises:
        TypeError: ``tensor`` is not a torch tensor or ``bins`` not an int.
        ValueError: ``bins`` is smaller than 1.
    """
    torch = _torch()
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    if isinstance(bins, bool) or not isinstance(bins, int):
        raise TypeError(f"bins must be an int, got {bins!r}")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    if tensor.device.type == "meta":
        return None
    with torch.no_grad():
        flat = tensor.detach()
        implicit_zeros = 0
        if flat.layout != torch.strided:
            if flat.layout == torch.sparse_coo:
                flat = flat.coalesce()
            values = flat.values()
            implicit_zeros = flat.numel() - values.numel()
            flat = values
        flat = flat.reshape(-1)
        if flat.is_complex():
            flat = flat.real
        if flat.dtype not in (torch.float32, torch.float64):
            flat = flat.float()
        n = flat.numel()
        if n:
            # One device->host transfer in the common, all-finite case: min and
            # max propagate NaN, and inf shows up as an infinite bound.
            lo, hi = torch.stack(torch.aminmax(flat)).tolist()
            if not (math.isfinite(lo) and math.isfinite(hi)):
                flat = flat[torch.isfinite(flat)]
                n = flat.numel()
                if n:
                    lo, hi = torch.stack(torch.aminmax(flat)).tolist()
        if n == 0:
            if implicit_zeros == 0:
                return None
            return np.array([[0.0, 0.0, float(implicit_zeros)]])
        if implicit_zeros:
            lo, hi = min(lo, 0.0), max(hi, 0.0)
        if lo == hi:
            return np.array([[lo, hi, float(n + implicit_zeros)]])
        counts = _histc(torch, flat, bins, lo, hi)
    edges = np.linspace(lo, hi, bins + 1)
    if implicit_zeros:
        zero_bin = int(np.searchsorted(edges, 0.0, side="right")) - 1
        counts[min(max(zero_bin, 0), bins - 1)] += implicit_zeros
    return np.column_stack([edges[:-1], edges[1:], counts])


def _histc(torch, flat, bins, lo, hi):
    """Counts of ``flat`` in ``bins`` bins over [lo, hi] as float64 numpy, binned on flat's device."""
    try:
        parts = [torch.histc(chunk, bins=bins, min=lo, max=hi) for chunk in flat.split(_CHUNK)]
    except (RuntimeError, NotImplementedError):
        # A backend without histc for this dtype: bin on the CPU instead.
        flat = flat.cpu()
        parts = [torch.histc(chunk, bins=bins, min=lo, max=hi) for chunk in flat.split(_CHUNK)]
    counts = parts[0] if len(parts) == 1 else torch.stack(parts)
    counts = counts.cpu().numpy().astype(np.float64)
    return counts if counts.ndim == 1 else counts.sum(axis=0)


def _log_tensor(run, tag, tensor):
    rows = tensor_histogram(tensor)
    if rows is not None:
        run._queue_histogram(tag, rows)


def _every(log_freq):
    """A counter that says True on every log_freq-th call (W&B: 0 means every call)."""
    count = 0

    def tick():
        nonlocal count
        count += 1
        if count < log_freq:
            return False
        count = 0
        return True

    return tick


def _check_int(name, value, minimum):
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return value


def watch(run, models, criterion=None, log="gradients", log_freq=1000, idx=None, log_graph=False):
    """Log histograms of a torch model's gradients and/or parameters every ``log_freq`` batches.

    Args:
        run: the tbx Run the histograms go to.
        models: a ``torch.nn.Module``, or a list or tuple of them.
        criterion: accepted for W&B compatibility; not used.
        log: ``"gradients"`` (default), ``"parameters"``, ``"all"`` or None.
        log_freq: log on every ``log_freq``-th backward pass (per parameter)
            and forward call (per model); 0 behaves like 1, as in W&B.
        idx: number of the first model in ``models`` for its tag prefix
            (``graph_<idx>``; none for 0); default: the run's model count.
        log_graph: also write each model's graph (GRAPHS tab) once, traced
            by ``run._writer.add_graph`` with the inputs of the model's first
            forward call after this one. TensorBoard shows one graph per run:
            the last one written.

    Returns:
        None, as W&B's ``run.watch``.

    Raises:
        ValueError: ``log`` is not one of the four values; ``log_freq`` or
            ``idx`` is negative; a hook name is already in use in this run
            (the same model watched twice under the same ``idx``).
        TypeError: a model is not a ``torch.nn.Module``; ``log_freq`` or
            ``idx`` is not an int.

    Example::

        run.watch(model, log="all", log_freq=100)
    """
    if log not in LOG_CHOICES:
        raise ValueError(f"log must be one of 'gradients', 'parameters', 'all', or None, got {log!r}")
    torch = _torch()
    if not isinstance(models, (list, tuple)):
        models = (models,)
    for model in models:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"models: expected a pytorch model (torch.nn.Module), received {type(model)}")
    log_freq = _check_int("log_freq", log_freq, 0)
    if idx is not None:
        idx = _check_int("idx", idx, 0)
    state = _state(run)
    if idx is None:
        idx = state.next_idx

    plans = []
    for position, model in enumerate(models):
        number = idx + position
        prefix = f"graph_{number}" if number > 0 else ""
        names = []
        if log in ("parameters", "all"):
            names.append(("parameters/" + prefix, None))
        if log in ("gradients", "all"):
            names += [("gradients/" + prefix + n, p) for n, p in model.named_parameters() if p.requires_grad]
        if log_graph:
            names.append((f"topology/{prefix or 'graph_0'}", None))
        plans.append((model, prefix, names))
    seen = set()
    for _, _, names in plans:
        for name, _ in names:
            handle = state.handles.get(name)
            if name in seen or (handle is not None and _handle_alive(handle)):
                raise ValueError(
                    f"watch: a hook named {name!r} is already set in this run; call unwatch(model) first "
                    "or pass a different idx"
                )
            seen.add(name)

    for model, prefix, names in plans:
        state.next_idx += 1
        hook_names = model.__dict__.setdefault("_wandb_hook_names", [])
        for name, param in names:
            if name.startswith("parameters/"):
                handle = model.register_forward_hook(_parameters_hook(run, state, prefix, _every(log_freq)))
            elif name.startswith("gradients/"):
                handle = param.register_hook(_gradient_hook(run, name, _every(log_freq)))
            else:
                handle = model.register_forward_hook(_graph_hook(run, state, name), with_kwargs=True)
            state.handles[name] = handle
            hook_names.append(name)
        state.models.add(model)
    return None


def _parameters_hook(run, state, prefix, tick):
    def hook(module, inputs, output):
        if state.tracing or _torch().jit.is_tracing() or not tick():
            return
        for name, param in module.named_parameters():
            _log_tensor(run, "parameters/" + prefix + name, param)

    return hook


def _gradient_hook(run, tag, tick):
    def hook(grad):
        if tick():
            _log_tensor(run, tag, grad)

    return hook


def _graph_hook(run, state, name):
    def hook(module, args, kwargs, output):
        torch = _torch()
        if state.tracing or torch.jit.is_tracing():
            return
        handle = state.handles.pop(name, None)
        if handle is not None:
            handle.remove()
        if kwargs:
            warnings.warn(
                f"watch(log_graph=True): {type(module).__name__} was called with keyword arguments "
                f"{sorted(kwargs)}; add_graph traces positional inputs only, so no graph was logged",
                stacklevel=2,
            )
            return
        state.tracing = True
        try:
            run._writer.add_graph(module, tuple(args))
        except ValueError as exc:
            warnings.warn(f"watch(log_graph=True): no graph logged: {exc}", stacklevel=2)
        finally:
            state.tracing = False

    return hook


def unwatch(run, models=None):
    """Remove the hooks ``watch`` set in this run: on ``models``, or on every model when None.

    Args:
        run: the tbx Run.
        models: a ``torch.nn.Module``, a list or tuple of them, or None.

    A model that this run never watched gets a warning, as in W&B. Calling it
    again, or on a run that watched nothing, does nothing.
    """
    state = _state(run)
    if models is None:
        for handle in state.handles.values():
            handle.remove()
        state.handles.clear()
        for model in list(state.models):
            model.__dict__.pop("_wandb_hook_names", None)
        state.models = weakref.WeakSet()
        return
    if not isinstance(models, (list, tuple)):
        models = (models,)
    for model in models:
        hook_names = getattr(model, "__dict__", {}).get("_wandb_hook_names")
        if hook_names is None:
            warnings.warn(f"unwatch: {type(model).__name__} model has not been watched", stacklevel=2)
            continue
        for name in hook_names:
            handle = state.handles.pop(name, None)
            if handle is not None:
                handle.remove()
        del model.__dict__["_wandb_hook_names"]
        state.models.discard(model)
