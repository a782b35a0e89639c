"""W&B-style run summary and ``define_metric``, offline.

A :class:`Summary` holds one value per key, as ``run.summary`` in wandb 0.31
(WANDB.md §3 and the ``define_metric`` part of §4); the run feeds it every
committed history row through :meth:`Summary.update_from_log`.

Rules, as observed on wandb 0.31 in offline mode:

* By default a key's summary is its **last** logged value.
* ``define_metric(name, summary="min,max,mean,first,last")`` replaces the
  value by a dict of the listed aggregates, e.g. ``{"min": 0.1}`` (the last
  value is kept only when ``last`` is listed); ``"none"`` (alone or with
  others) removes the key from the summary, even one set by hand; the
  deprecated ``"copy"`` means the plain value.
* ``min``/``max``/``mean`` count numbers only (``bool``, ``str``, ``None``
  are skipped; with no number at all W&B reports ``0`` for min/max and
  ``NaN`` for mean); one NaN makes min, max and mean NaN from then on.
  ``first`` and ``last`` take any value.
* A name ending in ``*`` is a prefix glob; it never matches keys starting
  with ``_``. An exact definition wins over globs. A key matched by a glob
  when first seen keeps that glob's definition as the base of later
  definitions of the key (a later ``define_metric(key, ...)`` merges with it).
  Among several matching globs W&B's choice is not deterministic (it iterates
  a Go map); tbx takes the one defined first, W&B's most frequent outcome.
* A second ``define_metric`` of the same name merges with the first unless
  ``overwrite=True``: summary operations add up, ``step_metric`` and
  ``goal`` replace when given, ``hidden``/``step_sync`` can be turned on but
  not off.
* ``summary[k] = v`` sets ``k`` to ``v`` until the next log of ``k``. After
  such an override a key with aggregates shows plain last values from then on
  (W&B 0.31 does the same).
* ``hidden`` does not remove a key from the summary; it only hides its
  charts (see :meth:`Summary.hidden_keys`).

One difference: W&B keeps statistics for every key from the start, so a
``define_metric`` after some logs still sees all earlier values; tbx, to keep
``log`` cheap, starts the statistics of a key when a rule with aggregates
first applies to it, seeded with the key's current value.

Not thread-safe: the run calls it from one thread.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from tbx.errors import Error

__all__ = ["Summary", "MetricDefinition", "MetricError", "MetricTypeError", "SUMMARY_OPS"]

SUMMARY_OPS = ("min", "max", "mean", "last", "copy", "none", "first")
_AGGREGATES = ("min", "max", "mean", "first", "last")
_GOALS = {"min": "minimize", "max": "maximize", "minimize": "minimize", "maximize": "maximize"}


class MetricError(Error, ValueError):
    """A ``define_metric`` argument that W&B rejects (W&B raises ``wandb.Error``)."""


class MetricTypeError(MetricError, TypeError):
    """A ``define_metric`` argument of the wrong type."""


class MetricDefinition:
    """What one ``define_metric`` call (or the merge of several) says about a metric.

    Attributes mirror wandb's ``Metric``: ``name``, ``step_metric``,
    ``step_sync`` (defaults to ``step_metric is not None``), ``hidden``,
    ``summary`` (tuple of operations or ``None``), ``goal``
    (``"minimize"``/``"maximize"``/``None``) and ``overwrite``.
    """

    __slots__ = ("name", "step_metric", "step_sync", "hidden", "summary", "goal", "overwrite")

    def __init__(
        self,
        name: str,
        step_metric: str | None = None,
        step_sync: bool | None = None,
        hidden: bool | None = None,
        summary: tuple[str, ...] | None = None,
        goal: str | None = None,
        overwrite: bool | None = None,
    ) -> None:
        self.name = name
        self.step_metric = step_metric
        self.step_sync = step_sync if step_sync is not None else step_metric is not None
        self.hidden = hidden
        self.summary = summary
        self.goal = goal
        self.overwrite = overwrite

    @property
    def is_glob(self) -> bool:
        return self.name.endswith("*")

    def merged_into(self, base: MetricDefinition | None) -> MetricDefinition:
        """This call applied over ``base`` (W&B's merge unless ``overwrite``)."""
        if base is None or self.overwrite:
            return self
        ops: tuple[str, ...] | None = base.summary
        if self.summary:
            ops = tuple(dict.fromkeys((base.summary or ()) + self.summary))
        return MetricDefinition(
            self.name,
            step_metric=self.step_metric or base.step_metric,
            step_sync=bool(self.step_sync or base.step_sync),
            hidden=True if (self.hidden or base.hidden) else (self.hidden if self.hidden is not None else base.hidden),
            summary=ops,
            goal=self.goal or base.goal,
            overwrite=self.overwrite,
        )

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__ if getattr(self, k) is not None)
        return f"MetricDefinition({fields})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MetricDefinition):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None  # type: ignore[assignment]


class _Rule:
    """How a key's summary is displayed, resolved from its definition."""

    __slots__ = ("ops", "none", "definition")

    def __init__(self, definition: MetricDefinition | None) -> None:
        self.definition = definition
        ops = definition.summary if definition is not None and definition.summary else ()
        self.none = "none" in ops
        self.ops = tuple(op for op in _AGGREGATES if op in ops)


_PLAIN = _Rule(None)


class _Stats:
    __slots__ = ("first", "min", "max", "total", "count", "nan")

    def __init__(self, value: Any) -> None:
        self.first = value
        self.min: Any = None
        self.max: Any = None
        self.total = 0.0
        self.count = 0
        self.nan = False
        self.add(value)

    def add(self, value: Any) -> None:
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or type(value).__name__ == "bool_":
            return
        if not isinstance(value, (int, float)):
            value = value.item() if hasattr(value, "item") else float(value)
        if value != value:  # NaN
            self.nan = True
            return
        self.count += 1
        self.total += value
        if self.min is None or value < self.min:
            self.min = value
        if self.max is None or value > self.max:
            self.max = value

    def view(self, ops: tuple[str, ...], last: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        nan = math.nan
        for op in ops:
            if op == "min":
                out["min"] = nan if self.nan else (0 if self.min is None else self.min)
            elif op == "max":
                out["max"] = nan if self.nan else (0 if self.max is None else self.max)
            elif op == "mean":
                out["mean"] = nan if self.nan or not self.count else self.total / self.count
            elif op == "first":
                out["first"] = self.first
            else:
                out["last"] = last
        return out


def _check_type(arg: str, value: Any, expected: type) -> None:
    if value is not None and not isinstance(value, expected):
        raise MetricTypeError(f"Unhandled define_metric() arg: {arg} type: {type(value).__name__}")


class Summary(MutableMapping[str, Any]):
    """The run summary: last values, ``define_metric`` aggregates and overrides.

    Item and attribute access both work (``summary["acc"]``, ``summary.acc``).
    Reading gives what W&B would show; :meth:`as_dict` gives all of it in a
    JSON-ready form.
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_values", {})       # key -> last logged or set value
        object.__setattr__(self, "_stats", {})        # key -> _Stats (keys with aggregates)
        object.__setattr__(self, "_overridden", set())  # keys set by hand: plain from then on
        object.__setattr__(self, "_exact", {})        # name -> MetricDefinition
        object.__setattr__(self, "_globs", {})        # glob name -> MetricDefinition, in order
        object.__setattr__(self, "_expanded", {})     # key -> glob name it matched first
        object.__setattr__(self, "_rules", {})        # key -> _Rule cache

    # -- define_metric -------------------------------------------------------------

    def define_metric(
        self,
        name: str,
        step_metric: str | MetricDefinition | None = None,
        summary: str | None = None,
        hidden: bool | None = None,
        goal: str | None = None,
        step_sync: bool | None = None,
        overwrite: bool | None = None,
    ) -> MetricDefinition:
        """Declare how metric ``name`` (or a ``prefix*`` glob) is summarised.

        Args:
            name: a key, or a prefix ending in ``*``.
            step_metric: the key (or definition) to use as x axis.
            summary: comma-separated operations among ``min, max, mean,
                first, last, none`` (and the deprecated ``copy``); case-insensitive.
            hidden: hide the metric's charts.
            goal: ``"min"``/``"minimize"`` or ``"max"``/``"maximize"``
                (pre-0.17 wandb; kept for old code).
            step_sync: insert the last ``step_metric`` value into rows
                lacking it (defaults to true when ``step_metric`` is given).
            overwrite: replace an earlier definition of ``name`` instead of
                merging with it.

        Returns:
            The :class:`MetricDefinition` of this call.

        Raises:
            MetricError: empty name, ``*`` not at the end, unknown operation
                or goal (W&B's ``wandb.Error`` texts).
            MetricTypeError: an argument of the wrong type.
        """
        if not name:
            raise MetricError("define_metric() requires non-empty name argument")
        if isinstance(step_metric, MetricDefinition):
            step_metric = step_metric.name
        for arg, val, typ in (
            ("name", name, str), ("step_metric", step_metric, str), ("step_sync", step_sync, bool),
            ("hidden", hidden, bool), ("summary", summary, str), ("goal", goal, str),
            ("overwrite", overwrite, bool),
        ):
            _check_type(arg, val, typ)
        if "*" in (name[:-1] if name.endswith("*") else name):
            raise MetricError(f"Unhandled define_metric() arg: name (glob suffixes only): {name}")
        ops: tuple[str, ...] | None = None
        if summary:
            items = [s.lower() for s in summary.split(",")]
            for op in items:
                if op not in SUMMARY_OPS:
                    raise MetricError(f"Unhandled define_metric() arg: summary op: {op}")
            ops = tuple(dict.fromkeys(items))
        goal_norm = None
        if goal:
            goal_norm = _GOALS.get(goal.lower())
            if goal_norm is None:
                raise MetricError(f"Unhandled define_metric() arg: goal: {goal}")
        call = MetricDefinition(
            name, step_metric=step_metric or None, step_sync=step_sync, hidden=hidden,
            summary=ops, goal=goal_norm, overwrite=overwrite,
        )
        if call.is_glob:
            self._globs[name] = call.merged_into(self._globs.get(name))
        else:
            base = self._exact.get(name)
            if base is None and name in self._expanded:
                base = self._globs.get(self._expanded[name])
            self._exact[name] = call.merged_into(base)
        self._rules.clear()
        # Keys already in the summary that now get aggregates start their
        # statistics from their current value.
        for key, value in self._values.items():
            if key not in self._stats and key not in self._overridden and self._rule(key).ops:
                self._stats[key] = _Stats(value)
        return call

    def _definition(self, key: str) -> MetricDefinition | None:
        d = self._exact.get(key)
        if d is not None:
            return d
        glob = self._expanded.get(key)
        if glob is not None:
            return self._globs.get(glob)
        if key.startswith("_"):
            return None
        for gname, gdef in self._globs.items():
            if key.startswith(gname[:-1]):
                self._expanded[key] = gname
                return gdef
        return None

    def _rule(self, key: str) -> _Rule:
        rule = self._rules.get(key)
        if rule is None:
            d = self._definition(key)
            rule = _PLAIN if d is None else _Rule(d)
            self._rules[key] = rule
        return rule

    def definition_of(self, key: str) -> MetricDefinition | None:
        """The effective definition that applies to ``key`` (exact or glob), if any."""
        return self._definition(key)

    def step_metric_of(self, key: str) -> str | None:
        """The ``step_metric`` defined for ``key`` (exact or through a glob), if any."""
        d = self._definition(key)
        return d.step_metric if d is not None else None

    def hidden_keys(self) -> set[str]:
        """Keys seen so far, and exactly defined names, whose definition sets ``hidden``."""
        names = set(self._values) | set(self._exact)
        return {k for k in names if (d := self._definition(k)) is not None and d.hidden}

    # -- feeding -------------------------------------------------------------------

    def update_from_log(self, flat: Mapping[str, Any]) -> None:
        """Apply one committed history row (flat ``key -> value``)."""
        values = self._values
        if not self._exact and not self._globs:
            values.update(flat)
            return
        rules = self._rules
        stats = self._stats
        for key, value in flat.items():
            values[key] = value
            rule = rules.get(key) or self._rule(key)
            if rule.ops and key not in self._overridden:
                st = stats.get(key)
                if st is None:
                    stats[key] = _Stats(value)
                else:
                    st.add(value)

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Load a summary written by :meth:`as_dict` (a resumed run).

        Unlike ``summary[k] = v`` this is not an override: aggregate entries
        such as ``{"min": 1, "last": 3}`` seed the key's statistics, so a
        ``define_metric`` repeated after resuming carries on from them (the
        mean restarts with the saved mean as one sample).
        """
        for key, value in saved.items():
            if isinstance(value, dict) and value and set(value) <= set(_AGGREGATES):
                st = _Stats(value.get("first"))
                st.first = value.get("first")
                for op in ("min", "max", "mean"):
                    if op in value:
                        st.add(value[op])
                self._stats[key] = st
                self._values[key] = value["last"] if "last" in value else value
            else:
                self._values[key] = value

    # -- mapping -------------------------------------------------------------------

    def _display(self, key: str) -> Any:
        """The value shown for ``key``; raises KeyError when absent or ``none``."""
        value = self._values[key]
        rule = self._rules.get(key) or self._rule(key)
        if rule is _PLAIN:
            return value
        if rule.none:
            raise KeyError(key)
        if not rule.ops or key in self._overridden:
            return value
        st = self._stats.get(key)
        if st is None:
            st = self._stats[key] = _Stats(value)
        return st.view(rule.ops, value)

    def __getitem__(self, key: str) -> Any:
        return self._display(key)

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"summary key must be a str, got {key!r} (type {type(key).__name__})")
        self._values[key] = value
        self._overridden.add(key)
        self._stats.pop(key, None)

    def __delitem__(self, key: str) -> None:
        del self._values[key]
        self._stats.pop(key, None)
        self._overridden.discard(key)

    def __iter__(self) -> Iterator[str]:
        for key in list(self._values):
            rule = self._rules.get(key) or self._rule(key)
            if not rule.none:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str) or key not in self._values:
            return False
        return not self._rule(key).none

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._display(key)
        except KeyError:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        if key.startswith("_"):
            object.__setattr__(self, key, value)
        else:
            self[key] = value

    def __delattr__(self, key: str) -> None:
        try:
            del self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __repr__(self) -> str:
        return f"Summary({self.as_dict()!r})"

    def as_dict(self) -> dict[str, Any]:
        """Everything shown, as plain JSON-ready Python values.

        numpy and torch values become Python numbers or lists, tuples become
        lists; NaN and infinities stay floats, which ``json.dumps`` writes as
        ``NaN`` / ``Infinity`` like W&B's ``wandb-summary.json``. Other objects
        are written as their ``str``.
        """
        return {key: _json_ready(self._display(key)) for key in self}


def _json_ready(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    mod = type(value).__module__
    if mod.startswith("torch") and hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
        mod = "numpy"
    if mod == "numpy" and hasattr(value, "tolist"):
        return _json_ready(value.tolist())
    return str(value)
