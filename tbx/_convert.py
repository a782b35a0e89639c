"""One path from user values (Python, numpy, torch, PIL) to what the writer needs.

torch is never imported here: a tensor is recognised by its type's module and
converted through its own methods, so ``import tbx`` stays light.
"""

import math
import numbers
import operator
import time

import numpy as np

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


def is_torch_tensor(value):
    """True for torch.Tensor (and subclasses) without importing torch."""
    for klass in type(value).__mro__:
        if klass.__name__ == "Tensor" and klass.__module__ == "torch":
            return True
    return False


def _describe(value):
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def scalar_value(value, name="scalar_value"):
    """A Python float from a Python/numpy/torch real number or 1-element array.

    Raises:
        TypeError: None, bool, str, complex or another non-numeric value.
        ValueError: an array or tensor with more than one element.
    """
    if isinstance(value, bool) or isinstance(value, np.bool_):
        raise TypeError(f"{name} must be a real number, got bool {value!r}; pass float({value!r}) to log it as 0/1")
    if isinstance(value, numbers.Real):
        return float(value)
    if is_torch_tensor(value) or isinstance(value, np.ndarray):
        if value.dtype == bool or str(value.dtype) == "torch.bool":
            raise TypeError(f"{name} must be a real number, got a boolean {type(value).__name__}")
        size = value.numel() if is_torch_tensor(value) else value.size
        if size != 1:
            raise ValueError(f"{name} must hold exactly one value, got shape {tuple(value.shape)}")
        if value.is_complex() if is_torch_tensor(value) else np.iscomplexobj(value):
            raise TypeError(f"{name} must be a real number, got a complex {type(value).__name__}")
        return float(value.item())
    raise TypeError(f"{name} must be a real number (int, float, numpy or torch scalar), got {_describe(value)}")


def step_value(step, name="global_step"):
    """An int64 step from None (0), int, numpy integer or integer torch scalar."""
    if step is None:
        return 0
    if isinstance(step, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got bool {step!r}")
    try:
        step = operator.index(step)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {_describe(step)}") from None
    if not _INT64_MIN <= step <= _INT64_MAX:
        raise ValueError(f"{name} {step} does not fit in a signed 64-bit integer")
    return step


def wall_time_value(walltime, name="walltime"):
    """Seconds since the epoch: now for None, else a finite real number."""
    if walltime is None:
        return time.time()
    value = scalar_value(walltime, name)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite seconds since the epoch, got {value!r}")
    return value


def tag_value(tag, name="tag"):
    if type(tag) is not str:
        raise TypeError(f"{name} must be a str, got {_describe(tag)}")
    return tag


def to_numpy(value, name="values"):
    """A numpy array view of an array-like (numpy, torch on any device, PIL, lists)."""
    if isinstance(value, np.ndarray):
        return value
    if is_torch_tensor(value):
        return value.detach().cpu().numpy()
    if type(value).__module__.startswith("PIL.") and hasattr(value, "getbands"):
        return np.asarray(value)
    if value is None:
        raise TypeError(f"{name} must be an array, tensor or sequence of numbers, got None")
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array, tensor or sequence of numbers, got {_describe(value)}") from exc
    if array.dtype == object:
        raise TypeError(f"{name} must be numeric, got {_describe(value)}")
    return array
