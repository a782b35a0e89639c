"""HParams: the three summaries that make a run a session of the hparams dashboard.

A *session* is a run holding a ``_hparams_/session_start_info`` summary (its
hyperparameter values); ``_hparams_/session_end_info`` records how it ended
and ``_hparams_/experiment`` lists the dashboard's columns: each hparam's name,
type and optional discrete domain, and the metric tags. The metrics themselves
are ordinary scalars in the session's run (their last value is shown).

Every summary is a ``Summary.Value`` with plugin ``hparams``, data class
TENSOR, an ``HParamsPluginData{version: 0}`` as plugin content and
TensorBoard's null tensor (DT_FLOAT, shape ``[0]``) as its value. The content
is the data, so each record carries its metadata.

Value rules, checked by :func:`check` before anything is written:

- hparam values: bool (DATA_TYPE_BOOL), real numbers including numpy and
  one-element torch/numpy values (DATA_TYPE_FLOAT64; NaN and +-inf are
  written but TensorBoard shows them as empty), str (DATA_TYPE_STRING), and
  None, written as the string ``"None"`` (as PyTorch Lightning does) rather
  than dropped (as torch does). Lists, dicts and other objects are refused:
  flatten them or pass ``str(value)``.
- names (hparam keys, metric tags) are non-empty str; names and string values
  are at most :data:`MAX_STRING_BYTES` bytes of UTF-8. Metric tags may not
  start with ``_hparams_/``, the prefix of the three summaries' own tags.
- extra metrics (columns whose values are logged elsewhere) are tags, or
  ``(group, tag)`` pairs where the group is a run below the session's run
  given as a relative path, such as ``"eval"``.
- metric values are real numbers; the step must fit in int32, because the
  dashboard's session table carries metric steps as int32 and fails on
  larger ones.
"""

import math
import numbers
import os
from collections import namedtuple
from collections.abc import Mapping

import numpy as np

from tbx import _convert
from tbx.proto import hparams_pb2, tensor_pb2
from tbx.summary._metadata import TENSOR, metadata, value_record

PLUGIN_NAME = "hparams"
PLUGIN_DATA_VERSION = 0
EXPERIMENT_TAG = "_hparams_/experiment"
SESSION_START_INFO_TAG = "_hparams_/session_start_info"
SESSION_END_INFO_TAG = "_hparams_/session_end_info"
RESERVED_PREFIX = "_hparams_/"

MAX_STRING_BYTES = 65536
"""Longest hparam name, metric name or string value, in UTF-8 bytes.

The dashboard sends every value of every session in one response and shows
them in table cells; longer text belongs in add_text.
"""

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

STRING = hparams_pb2.DATA_TYPE_STRING
BOOL = hparams_pb2.DATA_TYPE_BOOL
FLOAT64 = hparams_pb2.DATA_TYPE_FLOAT64
_TYPE_NAMES = {STRING: "str", BOOL: "bool", FLOAT64: "number"}

NULL_TENSOR = tensor_pb2.TensorProto(dtype=tensor_pb2.DT_FLOAT)
NULL_TENSOR.tensor_shape.dim.add(size=0)

Checked = namedtuple("Checked", "hparams domains metrics metric_names step")
Checked.__doc__ = """Validated add_hparams arguments.

hparams: {name: (data type, value)} in the caller's order; domains: {name:
[values]}; metrics: {tag: float} (logged in the session's run);
metric_names: [(group, tag)], the metric columns (metrics' tags in group "",
then the extra ones); step: int (fits int32).
"""


def _describe(value):
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _check_text(text, what):
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} is not valid Unicode text ({exc.reason} at index {exc.start})") from None
    if size > MAX_STRING_BYTES:
        raise ValueError(
            f"{what} is {size} bytes of UTF-8; hparams strings are limited to {MAX_STRING_BYTES} bytes "
            "(tbx.summary.hparams.MAX_STRING_BYTES): shorten it, or log long text with add_text"
        )
    return text


def check_name(name, what):
    """A valid hparam or metric name (non-empty str of bounded length)."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, got {_describe(name)}")
    if not name:
        raise ValueError(f"{what} is an empty string; give every hparam and metric a name")
    return _check_text(str(name), what)


def hparam_value(value, what):
    """``(data type, python value)`` of one hparam value; see the module docstring."""
    if value is None:
        return STRING, "None"
    if isinstance(value, (bool, np.bool_)):
        return BOOL, bool(value)
    if isinstance(value, str):
        return STRING, _check_text(str(value), what)
    if isinstance(value, numbers.Real):
        try:
            return FLOAT64, float(value)
        except OverflowError:
            raise ValueError(f"{what} = {value!r} is too large for a float64 hparam; pass str({what})") from None
    if isinstance(value, Mapping):
        raise TypeError(
            f"{what} is a {type(value).__name__}; nested dicts are not hparam values: "
            "flatten them into separate keys such as 'optimizer/lr'"
        )
    if isinstance(value, (list, tuple, set, frozenset)):
        raise TypeError(
            f"{what} is a {type(value).__name__}; hparam values must be bool, int, float, str or None: "
            "log one hparam per element, or pass str(value)"
        )
    if _convert.is_torch_tensor(value) or isinstance(value, np.ndarray):
        size = value.numel() if _convert.is_torch_tensor(value) else value.size
        if size != 1:
            raise ValueError(f"{what} must hold exactly one value, got shape {tuple(value.shape)}")
        item = value.item()
        if isinstance(item, (bool, str)) or isinstance(item, numbers.Real):
            return hparam_value(item, what)
    raise TypeError(
        f"{what} must be a bool, int, float, str or None (or a numpy/torch scalar), got {_describe(value)}"
    )


def _check_domain(name, domain, kind, value):
    what = f"hparam_domain_discrete[{name!r}]"
    if not isinstance(domain, (list, tuple)):
        raise TypeError(f"{what} must be a list of the values {name!r} can take, got {_describe(domain)}")
    if not domain:
        raise ValueError(f"{what} is empty; list every value {name!r} can take")
    values = []
    for i, item in enumerate(domain):
        item_kind, item_value = hparam_value(item, f"{what}[{i}]")
        if item_kind != kind:
            raise TypeError(
                f"{what}[{i}] = {item!r} is a {_TYPE_NAMES[item_kind]}, but hparam_dict[{name!r}] = {value!r} "
                f"is a {_TYPE_NAMES[kind]}; a discrete domain holds values of the hparam's own type"
            )
        if kind == FLOAT64 and not math.isfinite(item_value):
            raise ValueError(f"{what}[{i}] = {item!r}; domain values must be finite")
        if item_value not in values:
            values.append(item_value)
    return values


def _check_group(group, what):
    if not isinstance(group, str):
        raise TypeError(f"{what} must be a str (a run below the session's run, e.g. 'eval'), got {_describe(group)}")
    parts = [part for part in group.replace("\\", "/").split("/") if part not in ("", ".")]
    if group.startswith(("/", "\\")) or os.path.isabs(group) or ".." in parts:
        raise ValueError(f"{what} {group!r} must be a relative path below the session's run, such as 'eval'")
    return _check_text("/".join(parts), what)


def _extra_metric_names(extra_metrics):
    if extra_metrics is None:
        return []
    if isinstance(extra_metrics, (str, bytes)) or not isinstance(extra_metrics, (list, tuple)):
        raise TypeError(f"extra_metrics must be a list of tags or (group, tag) pairs, got {_describe(extra_metrics)}")
    names = []
    for i, item in enumerate(extra_metrics):
        what = f"extra_metrics[{i}]"
        if isinstance(item, str):
            group, tag = "", item
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            group, tag = _check_group(item[0], f"{what} group"), item[1]
        else:
            raise TypeError(f"{what} must be a tag or a (group, tag) pair, got {_describe(item)}")
        tag = check_name(tag, f"{what} tag")
        if tag.startswith(RESERVED_PREFIX):
            raise ValueError(f"{what} tag {tag!r} starts with {RESERVED_PREFIX!r}, the prefix of the hparams summaries' own tags")
        names.append((group, tag))
    return names


def check(hparam_dict, metric_dict, hparam_domain_discrete=None, global_step=None, extra_metrics=None):
    """Validate add_hparams' arguments; returns a :data:`Checked`.

    Raises:
        TypeError: a dict argument is not a mapping, or a name or value has an
            unsupported type (a list, a nested dict, an object), a domain
            value's type differs from its hparam's, or an extra_metrics entry
            is neither a tag nor a (group, tag) pair.
        ValueError: an empty, reserved or too long name or string, a value
            outside its discrete domain, a multi-element array, a group that
            is not a relative path, a step outside int32.
    """
    for arg, name in ((hparam_dict, "hparam_dict"), (metric_dict, "metric_dict")):
        if not isinstance(arg, Mapping):
            raise TypeError(f"{name} must be a dict, got {_describe(arg)}")
    if hparam_domain_discrete is not None and not isinstance(hparam_domain_discrete, Mapping):
        raise TypeError(f"hparam_domain_discrete must be a dict of name -> list of values or None, got {_describe(hparam_domain_discrete)}")

    hparams = {}
    for key, value in hparam_dict.items():
        name = check_name(key, "hparam_dict key")
        hparams[name] = hparam_value(value, f"hparam_dict[{name!r}]")

    domains = {}
    for name, domain in (hparam_domain_discrete or {}).items():
        if name not in hparams:
            raise ValueError(
                f"hparam_domain_discrete has the key {name!r}, which is not in hparam_dict "
                f"(hparams: {sorted(map(str, hparams))})"
            )
        kind, value = hparams[name]
        values = _check_domain(name, domain, kind, hparam_dict[name])
        if value not in values:
            raise ValueError(
                f"hparam_dict[{name!r}] = {hparam_dict[name]!r} is not one of its hparam_domain_discrete values "
                f"{list(domain)!r}; a discrete domain lists every value the hparam takes"
            )
        domains[str(name)] = values

    metrics = {}
    for key, value in metric_dict.items():
        tag = check_name(key, "metric_dict key")
        if tag.startswith(RESERVED_PREFIX):
            raise ValueError(f"metric_dict key {tag!r} starts with {RESERVED_PREFIX!r}, the prefix of the hparams summaries' own tags")
        metrics[tag] = _convert.scalar_value(value, f"metric_dict[{tag!r}]")

    metric_names = [("", tag) for tag in metrics]
    for name in _extra_metric_names(extra_metrics):
        if name not in metric_names:
            metric_names.append(name)

    step = _convert.step_value(global_step)
    if not INT32_MIN <= step <= INT32_MAX:
        raise ValueError(
            f"global_step {step} does not fit in int32 ({INT32_MIN}..{INT32_MAX}): the hparams dashboard "
            "carries metric steps as int32 and fails to list sessions with larger ones; "
            "log the metrics at a smaller step (e.g. the epoch)"
        )
    return Checked(hparams, domains, metrics, metric_names, step)


def _set_value(target, kind, value):
    if kind == BOOL:
        target.bool_value = value
    elif kind == FLOAT64:
        target.number_value = value
    else:
        target.string_value = value


def experiment_pb(checked, time_created_secs=0.0):
    """The Experiment: one HParamInfo per hparam (with its discrete domain) and one MetricInfo per metric column."""
    experiment = hparams_pb2.Experiment(time_created_secs=time_created_secs)
    for name, (kind, _value) in checked.hparams.items():
        info = experiment.hparam_infos.add(name=name, type=kind)
        if name in checked.domains:
            info.domain_discrete.SetInParent()
            for item in checked.domains[name]:
                _set_value(info.domain_discrete.values.add(), kind, item)
    for group, tag in checked.metric_names:
        info = experiment.metric_infos.add()
        info.name.group, info.name.tag = group, tag
    return experiment


def session_start_pb(checked, start_time_secs=0.0, group_name=""):
    """The SessionStartInfo holding the hparam values."""
    start = hparams_pb2.SessionStartInfo(start_time_secs=start_time_secs, group_name=group_name)
    for name, (kind, value) in checked.hparams.items():
        _set_value(start.hparams[name], kind, value)
    return start


def session_end_pb(status=hparams_pb2.STATUS_SUCCESS, end_time_secs=0.0):
    return hparams_pb2.SessionEndInfo(status=status, end_time_secs=end_time_secs)


def plugin_data(message):
    """``HParamsPluginData{version: 0}`` wrapping an Experiment, SessionStartInfo or SessionEndInfo."""
    data = hparams_pb2.HParamsPluginData(version=PLUGIN_DATA_VERSION)
    field = {
        hparams_pb2.Experiment: "experiment",
        hparams_pb2.SessionStartInfo: "session_start_info",
        hparams_pb2.SessionEndInfo: "session_end_info",
    }[type(message)]
    getattr(data, field).CopyFrom(message)
    return data


def hparams_record(tag, message, step, wall_time):
    """Framed Event bytes of one hparams summary (``message`` as in :func:`plugin_data`)."""
    md = metadata(PLUGIN_NAME, plugin_data(message).SerializeToString(deterministic=True), TENSOR)

    def fill(value):
        value.metadata.CopyFrom(md)
        value.tensor.CopyFrom(NULL_TENSOR)

    return value_record(tag, step, wall_time, fill)


def session_records(checked, wall_time):
    """The experiment, session-start and session-end records (status SUCCESS) at ``checked.step``."""
    return b"".join((
        hparams_record(EXPERIMENT_TAG, experiment_pb(checked, wall_time), checked.step, wall_time),
        hparams_record(SESSION_START_INFO_TAG, session_start_pb(checked, wall_time), checked.step, wall_time),
        hparams_record(SESSION_END_INFO_TAG, session_end_pb(end_time_secs=wall_time), checked.step, wall_time),
    ))
