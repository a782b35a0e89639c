"""tbx.run_summary: W&B 0.31 summary and define_metric semantics, checked against wandb offline."""

import json
import math

import numpy as np
import pytest

from wandb_oracle import offline_run

from tbx.errors import TbxError
from tbx.run_summary import MetricDefinition, MetricError, MetricTypeError, Summary

NAN = float("nan")


def same(a, b):
    """Equal as W&B shows them: NaN equals NaN, 1 equals 1.0, dict order ignored."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and isinstance(a, str) == isinstance(b, str)


def feed(summary, rows):
    for row in rows:
        summary.update_from_log(row)


# --------------------------------------------------------------------------- oracle


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory):
    """One offline wandb run for the module; scenarios use disjoint key names."""
    with offline_run(tmp_path_factory.mktemp("wandb_oracle")) as run:
        yield run


# Each scenario: definitions, then a list of actions: a dict is a committed row,
# ("set", key, value) a summary override. Keys are unique across scenarios.
SCENARIOS = {
    "default_last": ([], [{"dl": 3}, {"dl": 1.5}, {"dl": "s"}]),
    "min": ([("a_min", {"summary": "min"})], [{"a_min": x} for x in (3, 1, 2)]),
    "all_ops": ([("a_all", {"summary": "max,last,mean,first"})], [{"a_all": x} for x in (0.2, 0.9, 0.5, 0.4)]),
    "upper_case_ops": ([("a_uc", {"summary": "MIN,Max"})], [{"a_uc": x} for x in (2, 5, 1)]),
    "none": ([("a_none", {"summary": "none"})], [{"a_none": 1}, ("set", "a_none", 9), {"a_none": 2}]),
    "min_none": ([("a_mn", {"summary": "min,none"})], [{"a_mn": 1}, {"a_mn": 0}]),
    "copy": ([("a_cp", {"summary": "copy"})], [{"a_cp": 1}, {"a_cp": 4}]),
    "merge_union": ([("a_mu", {"summary": "min"}), ("a_mu", {"summary": "max"})], [{"a_mu": x} for x in (3, 1, 2)]),
    "overwrite": ([("a_ow", {"summary": "min"}), ("a_ow", {"summary": "max", "overwrite": True})],
                  [{"a_ow": x} for x in (3, 1, 2)]),
    "hidden_keeps_summary": ([("a_hs", {"summary": "min"}), ("a_hs", {"hidden": True})], [{"a_hs": 2}, {"a_hs": 1}]),
    "hidden_alone": ([("a_hid", {"hidden": True})], [{"a_hid": 1}, {"a_hid": 2}]),
    "strings_and_bools": ([("a_sb", {"summary": "min,max,mean,first,last"})],
                          [{"a_sb": "x"}, {"a_sb": True}, {"a_sb": "y"}]),
    "non_numbers_skipped": ([("a_ns", {"summary": "min,mean"})], [{"a_ns": None}, {"a_ns": 5}, {"a_ns": "x"}, {"a_ns": 3}]),
    "nan_sticks": ([("a_nan", {"summary": "min,max,mean"})], [{"a_nan": 3.0}, {"a_nan": NAN}, {"a_nan": 1.0}]),
    "inf": ([("a_inf", {"summary": "min,max"})], [{"a_inf": 3.0}, {"a_inf": float("inf")}, {"a_inf": -float("inf")}]),
    "numpy": ([("a_np", {"summary": "max,mean"})], [{"a_np": np.float32(2.5)}, {"a_np": np.int64(7)}]),
    "glob": ([("gv/*", {"summary": "max"})], [{"gv/a": 1, "gv/b": 5}, {"gv/a": 4, "gv/b": 2}]),
    "exact_beats_glob": ([("ge/*", {"summary": "max"}), ("ge/x", {"summary": "min"})],
                         [{"ge/x": 1, "ge/y": 1}, {"ge/x": 3, "ge/y": 3}]),
    "glob_expansion_merges": ([("gm/*", {"summary": "max"})],
                              [{"gm/k": 1}, {"gm/k": 5}, ("define", "gm/k", {"summary": "min"}), {"gm/k": 3}]),
    "override_then_log": ([("o_min", {"summary": "min"}), ("o_ml", {"summary": "min,last"})],
                          [{"o_min": 3, "o_ml": 3, "o_plain": 3}, ("set", "o_min", 9), ("set", "o_ml", 9),
                           ("set", "o_plain", 9), {"o_min": 1, "o_ml": 1, "o_plain": 1}, {"o_min": 5, "o_ml": 5}]),
    "override_unlogged": ([], [("set", "best", 0.9), {"other_key": 1}]),
    "define_after_log": ([], [{"late": 5}, ("define", "late", {"summary": "max"}), {"late": 3}, {"late": 1}]),
}


def _apply(target, defs, actions, define):
    for name, kw in defs:
        define(name, **kw)
    for act in actions:
        if isinstance(act, dict):
            target(act)
        elif act[0] == "set":
            target(("set", act[1], act[2]))
        else:
            define(act[1], **act[2])


def _keys_of(defs, actions):
    keys = set()
    for act in actions:
        if isinstance(act, dict):
            keys |= set(act)
        elif act[0] == "set":
            keys.add(act[1])
    return keys


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_matches_wandb(scenario, wandb_run):
    defs, actions = SCENARIOS[scenario]
    ours = Summary()

    def ours_target(act):
        if isinstance(act, dict):
            ours.update_from_log(act)
        else:
            ours[act[1]] = act[2]

    def wb_target(act):
        if isinstance(act, dict):
            wandb_run.log(act)
        else:
            wandb_run.summary[act[1]] = act[2]

    _apply(ours_target, defs, actions, ours.define_metric)
    _apply(wb_target, defs, actions, wandb_run.define_metric)
    theirs = wandb_run.summary._as_dict()
    mine = ours.as_dict()
    for key in _keys_of(defs, actions):
        assert (key in mine) == (key in theirs), (key, mine, theirs)
        if key in theirs:
            assert same(mine[key], theirs[key]), (key, mine[key], theirs[key])


# --------------------------------------------------------------------------- core rules


def test_default_is_last_and_override_holds_until_next_log():
    s = Summary()
    feed(s, [{"acc": 0.1, "loss": 2.0}, {"acc": 0.3}])
    assert dict(s) == {"acc": 0.3, "loss": 2.0}
    s["acc"] = 0.99
    assert s["acc"] == 0.99 and s.acc == 0.99
    s.update_from_log({"loss": 1.0})
    assert s["acc"] == 0.99
    s.update_from_log({"acc": 0.4})
    assert s["acc"] == 0.4


def test_summary_ops():
    s = Summary()
    s.define_metric("loss", summary="min")
    s.define_metric("acc", summary="max,last,mean,first")
    s.define_metric("hidden_one", summary="none")
    feed(s, [{"loss": l, "acc": a, "hidden_one": 1} for l, a in [(1, 0.2), (3, 0.9), (2, 0.5), (4, 0.4)]])
    assert s["loss"] == {"min": 1}
    assert s["acc"] == pytest.approx({"first": 0.2, "max": 0.9, "mean": 0.5, "last": 0.4})
    assert "hidden_one" not in s and "hidden_one" not in s.as_dict()
    with pytest.raises(KeyError):
        s["hidden_one"]
    assert set(s) == {"loss", "acc"} and len(s) == 2


def test_non_numbers_nan_and_no_numbers():
    s = Summary()
    s.define_metric("m", summary="min,max,mean,first,last")
    s.define_metric("t", summary="min,max,mean")
    feed(s, [{"m": None, "t": "a"}, {"m": 5, "t": True}, {"m": "x"}, {"m": 3}])
    assert s["m"] == {"min": 3, "max": 5, "mean": 4.0, "first": None, "last": 3}
    t = s["t"]
    assert t["min"] == 0 and t["max"] == 0 and math.isnan(t["mean"])
    s.update_from_log({"m": NAN})
    s.update_from_log({"m": 1})
    assert all(math.isnan(s["m"][k]) for k in ("min", "max", "mean"))


def test_globs():
    s = Summary()
    s.define_metric("val/*", summary="max", step_metric="epoch")
    s.define_metric("*", summary="min")
    s.define_metric("val/exact", summary="first")
    feed(s, [{"val/a": 1, "val/exact": 1, "train/x": 4, "_step": 0}, {"val/a": 3, "val/exact": 2, "train/x": 2, "_step": 1}])
    assert s["val/a"] == {"max": 3}  # matches "val/*" and "*": the first-defined glob wins
    assert s["val/exact"] == {"first": 1}
    assert s["train/x"] == {"min": 2}
    assert s["_step"] == 1  # globs never match "_" keys
    assert s.step_metric_of("val/a") == "epoch" and s.step_metric_of("val/b") == "epoch"
    assert s.step_metric_of("val/exact") is None and s.step_metric_of("other") is None
    assert s.definition_of("val/zz").name == "val/*"


def test_glob_expansion_is_the_base_of_a_later_exact_definition():
    s = Summary()
    s.define_metric("g/*", summary="max")
    feed(s, [{"g/k": 1}, {"g/k": 5}])
    s.define_metric("g/k", summary="min")
    s.update_from_log({"g/k": 3})
    assert s["g/k"] == {"max": 5, "min": 1}
    s.define_metric("g/k", summary="last", overwrite=True)
    assert s["g/k"] == {"last": 3}


def test_merge_and_overwrite():
    s = Summary()
    s.define_metric("x", step_metric="t", hidden=True, summary="min")
    s.define_metric("x", summary="max", hidden=False)
    d = s.definition_of("x")
    assert d.summary == ("min", "max") and d.step_metric == "t" and d.hidden is True and d.step_sync is True
    s.define_metric("x", summary="mean", overwrite=True)
    d = s.definition_of("x")
    assert d.summary == ("mean",) and d.step_metric is None and not d.hidden and d.step_sync is False


def test_override_turns_aggregates_into_plain_values():
    s = Summary()
    s.define_metric("m", summary="min")
    feed(s, [{"m": 3}, {"m": 1}])
    assert s["m"] == {"min": 1}
    s["m"] = 9
    assert s["m"] == 9
    feed(s, [{"m": 5}, {"m": 7}])
    assert s["m"] == 7
    del s["m"]
    assert "m" not in s
    feed(s, [{"m": 4}, {"m": 6}])
    assert s["m"] == {"min": 4}


def test_define_after_log_starts_from_current_value():
    s = Summary()
    feed(s, [{"late": 1}, {"late": 5}])
    s.define_metric("late", summary="max,first")
    assert s["late"] == {"max": 5, "first": 5}
    feed(s, [{"late": 3}, {"late": 7}])
    assert s["late"] == {"max": 7, "first": 5}


def test_hidden_keys():
    s = Summary()
    s.define_metric("h", hidden=True)
    s.define_metric("hid/*", hidden=True)
    s.define_metric("shown", hidden=False)
    feed(s, [{"h": 1, "hid/a": 2, "shown": 3, "other": 4}])
    assert s.hidden_keys() == {"h", "hid/a"}
    assert s["h"] == 1 and s["hid/a"] == 2  # hidden keys keep their summary


# --------------------------------------------------------------------------- define_metric API


def test_define_metric_returns_the_call():
    s = Summary()
    m = s.define_metric("y", step_metric="x")
    assert isinstance(m, MetricDefinition)
    assert (m.name, m.step_metric, m.step_sync, m.hidden, m.summary) == ("y", "x", True, None, None)
    m2 = s.define_metric("z", step_metric=m, summary="MIN,max", goal="max")
    assert (m2.step_metric, m2.summary, m2.goal, m2.step_sync) == ("y", ("min", "max"), "maximize", True)
    assert s.define_metric("w", summary="").summary is None
    assert s.define_metric("v").step_sync is False
    assert "step_metric='y'" in repr(m2)


@pytest.mark.parametrize(
    "kwargs, exc, msg",
    [
        ({"name": ""}, MetricError, "define_metric() requires non-empty name argument"),
        ({"name": None}, MetricError, "define_metric() requires non-empty name argument"),
        ({"name": "a*b"}, MetricError, "Unhandled define_metric() arg: name (glob suffixes only): a*b"),
        ({"name": "**"}, MetricError, "Unhandled define_metric() arg: name (glob suffixes only): **"),
        ({"name": "x", "summary": "min,foo"}, MetricError, "Unhandled define_metric() arg: summary op: foo"),
        ({"name": "x", "summary": " min"}, MetricError, "Unhandled define_metric() arg: summary op:  min"),
        ({"name": "x", "hidden": 1}, MetricTypeError, "Unhandled define_metric() arg: hidden type: int"),
        ({"name": 3}, MetricTypeError, "Unhandled define_metric() arg: name type: int"),
        ({"name": "x", "step_metric": 3}, MetricTypeError, "Unhandled define_metric() arg: step_metric type: int"),
        ({"name": "x", "step_sync": "yes"}, MetricTypeError, "Unhandled define_metric() arg: step_sync type: str"),
        ({"name": "x", "overwrite": 0}, MetricTypeError, "Unhandled define_metric() arg: overwrite type: int"),
        ({"name": "x", "summary": ["min"]}, MetricTypeError, "Unhandled define_metric() arg: summary type: list"),
        ({"name": "x", "goal": "up"}, MetricError, "Unhandled define_metric() arg: goal: up"),
    ],
)
def test_define_metric_validation(kwargs, exc, msg):
    s = Summary()
    s.define_metric("keep", summary="max")
    s.update_from_log({"keep": 1})
    with pytest.raises(exc) as info:
        s.define_metric(**kwargs)
    assert str(info.value) == msg
    assert isinstance(info.value, TbxError) and isinstance(info.value, ValueError)
    s.update_from_log({"keep": 2})
    assert dict(s) == {"keep": {"max": 2}}


def test_validation_messages_match_wandb(wandb_run):
    import wandb

    for kwargs in ({"name": ""}, {"name": "a*b"}, {"name": "x", "summary": "min,foo"}, {"name": "x", "hidden": 1}):
        with pytest.raises(wandb.Error) as theirs:
            wandb_run.define_metric(**kwargs)
        with pytest.raises(MetricError) as mine:
            Summary().define_metric(**kwargs)
        assert str(mine.value) == str(theirs.value)
    m_theirs = wandb_run.define_metric("vy", step_metric="vx", summary="MIN,max")
    m_mine = Summary().define_metric("vy", step_metric="vx", summary="MIN,max")
    for attr in ("name", "step_metric", "step_sync", "hidden", "summary"):
        assert getattr(m_mine, attr) == getattr(m_theirs, attr), attr


# --------------------------------------------------------------------------- mapping API, JSON


def test_mapping_api():
    s = Summary()
    s.update({"a": 1, "b": 2})
    s.c = 3
    assert s.get("a") == 1 and s.get("zz", 5) == 5 and s.c == 3
    assert "a" in s and "zz" not in s and 3 not in s
    del s["a"]
    del s.b
    assert dict(s) == {"c": 3} and s == {"c": 3}
    with pytest.raises(AttributeError, match="no attribute 'zz'"):
        s.zz
    with pytest.raises(AttributeError):
        del s.zz
    with pytest.raises(KeyError):
        del s["zz"]
    with pytest.raises(TypeError, match="summary key must be a str, got 1"):
        s[1] = 2
    assert s.pop("c") == 3 and len(s) == 0


def test_as_dict_is_json_ready():
    torch = pytest.importorskip("torch")
    s = Summary()
    s.define_metric("m", summary="min,max")
    feed(s, [{"m": np.float32(0.5), "n": NAN, "i": float("inf"), "arr": np.arange(3), "t": torch.tensor(1.5),
              "tv": torch.tensor([1.0, 2.0]), "np_i": np.int64(4), "tup": (1, np.float64(2)),
              "nested": {"a": np.int32(1)}, "obj": object}])
    s.update_from_log({"m": -np.inf})
    d = s.as_dict()
    text = json.dumps(d)
    assert json.loads(text, parse_constant=lambda c: c) == {
        "m": {"min": "-Infinity", "max": 0.5}, "n": "NaN", "i": "Infinity", "arr": [0, 1, 2], "t": 1.5,
        "tv": [1.0, 2.0], "np_i": 4, "tup": [1, 2.0], "nested": {"a": 1}, "obj": "<class 'object'>",
    }
    assert type(d["np_i"]) is int and type(d["m"]["max"]) is float


def test_update_from_log_is_cheap_without_definitions():
    import time

    s = Summary()
    row = {"loss": 0.5, "acc": 0.9}
    t0 = time.perf_counter()
    for _ in range(20000):
        s.update_from_log(row)
    per_call = (time.perf_counter() - t0) / 20000
    assert per_call < 5e-6, per_call


def test_restore_is_not_an_override():
    s = Summary()
    s.define_metric("loss", summary="min,last")
    feed(s, [{"loss": 3, "acc": 0.5}, {"loss": 1, "acc": 0.7}])
    saved = json.loads(json.dumps(s.as_dict()))
    resumed = Summary()
    resumed.restore(saved)
    assert resumed["acc"] == 0.7 and resumed["loss"] == 1  # no rule yet: the saved last value
    resumed.define_metric("loss", summary="min,last")
    assert resumed["loss"] == {"min": 1, "last": 1}
    resumed.update_from_log({"loss": 2})
    assert resumed["loss"] == {"min": 1, "last": 2}
    resumed.update_from_log({"loss": 0.5})
    assert resumed["loss"] == {"min": 0.5, "last": 0.5}
