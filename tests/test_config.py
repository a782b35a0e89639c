"""tbx.config.Config: W&B 0.31 config semantics, checked against the real wandb SDK where installed."""

import argparse
import copy
import dataclasses
import datetime
import enum
import gc
import json
import math
import pathlib
import pickle
import sys
import warnings

import numpy as np
import pytest

from wandb_oracle import offline_run

from tbx.config import Config, ConfigError, load_defaults
from tbx.errors import TbxError

CHANGE_MSG = (
    'Attempted to change value of key "lr" from 0.1 to 0.2\n'
    "If you really want to do this, pass allow_val_change=True to config.update()"
)


# --------------------------------------------------------------------------- oracle


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory):
    """One offline wandb run for the whole module (an init costs ~0.5 s)."""
    with offline_run(tmp_path_factory.mktemp("wandb_oracle"), config=argparse.Namespace(lr=0.1, batch_size=32)) as run:
        yield run


def same(a, b):
    """Equal values and types, up to int/float, with NaN equal to NaN."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    num = (int, float)
    return a == b and (type(a) is type(b) or (isinstance(a, num) and isinstance(b, num)))


class Color(enum.Enum):
    RED = 1


@dataclasses.dataclass
class Opt:
    x: int = 1
    y: tuple = (1, 2)


def _values():
    import torch

    return {
        "tuple": ((1, 2), [1, 2]),
        "nan": (float("nan"), None),
        "np_nan": (np.float32("nan"), None),
        "inf": (float("inf"), float("inf")),
        "set": ({3}, [3]),
        "path": (pathlib.Path("/a/b"), "/a/b"),
        "small_array": (np.arange(3), [0, 1, 2]),
        "one_array": (np.array([[7]]), 7),
        "big_array": (np.arange(40), str(np.arange(40))),
        "i64": (np.int64(5), 5),
        "f32": (np.float32(0.5), 0.5),
        "np_bool": (np.bool_(True), True),
        "torch_0d": (torch.tensor(2.5), 2.5),
        "torch_vec": (torch.tensor([1, 2]), [1, 2]),
        "enum": (Color.RED, "RED"),
        "dataclass": (Opt(), {"x": 1, "y": [1, 2]}),
        "slice": (slice(1, 5), {"slice_start": 1, "slice_step": None, "slice_stop": 5}),
        "bytes": (b"xy", "xy"),
        "nested": ({"a": (1, np.int64(2)), 3: "x"}, {"a": [1, 2], 3: "x"}),
        "callable": (len, "builtins.len"),
        "none": (None, None),
        "date": (datetime.date(2024, 1, 2), "2024-01-02"),
        "str": ("adam", "adam"),
    }


@pytest.mark.parametrize("key", sorted(_values()))
def test_value_normalisation(key):
    raw, expected = _values()[key]
    c = Config()
    c[key] = raw
    assert same(c[key], expected), (c[key], expected)
    json.dumps(c.as_dict())  # JSON-ready


# W&B turns a 1-element array into a numpy scalar and then into its str ('7');
# tbx gives the number, as W&B does for numpy scalars and 0-d tensors.
DELIBERATE_DEVIATIONS = {"one_array"}


def test_value_normalisation_matches_wandb(wandb_run):
    ours = Config()
    for key, (raw, _) in _values().items():
        if key in DELIBERATE_DEVIATIONS:
            continue
        ours[key] = raw
        wandb_run.config[key] = raw
        assert same(ours[key], wandb_run.config[key]), (key, ours[key], wandb_run.config[key])


def test_from_namespace_and_change_rule_match_wandb(wandb_run):
    ours = Config()
    ours.update(argparse.Namespace(lr=0.1, batch_size=32))
    assert dict(ours) == {"lr": 0.1, "batch_size": 32}
    assert {k: wandb_run.config[k] for k in ("lr", "batch_size")} == dict(ours)
    from wandb.sdk.lib.config_util import ConfigError as WandbConfigError

    with pytest.raises(WandbConfigError) as theirs:
        wandb_run.config.lr = 0.2
    with pytest.raises(ConfigError) as mine:
        ours.lr = 0.2
    assert str(mine.value) == str(theirs.value) == CHANGE_MSG
    # dash stripping and same-value updates agree too
    ours.update({"--dash-key": 1, "lr": np.float64(0.1)})
    wandb_run.config.update({"--dash-key": 1, "lr": np.float64(0.1)})
    assert ours["dash-key"] == wandb_run.config["dash-key"] == 1
    assert ("_priv" in ours.keys()) is False


# --------------------------------------------------------------------------- access


def test_attribute_and_item_access_are_the_same():
    c = Config()
    c.lr = 0.1
    c["epochs"] = 3
    assert c["lr"] == c.lr == 0.1
    assert c.epochs == 3 and c.get("epochs") == 3
    assert c.get("missing") is None and c.get("missing", 7) == 7
    with pytest.raises(AttributeError, match="has no attribute 'missing'"):
        c.missing
    with pytest.raises(KeyError):
        c["missing"]
    assert "lr" in c and "missing" not in c
    assert len(c) == 2 and list(c) == ["lr", "epochs"]
    assert c.keys() == ["lr", "epochs"] and c.values() == [0.1, 3]
    assert c.items() == [("lr", 0.1), ("epochs", 3)]
    assert dict(c) == c.as_dict() == {"lr": 0.1, "epochs": 3}
    assert repr(c) == "{'lr': 0.1, 'epochs': 3}"


def test_as_dict_is_a_copy():
    c = Config()
    c.update({"a": 1})
    d = c.as_dict()
    d["a"] = 2
    assert c.a == 1


def test_nested_dicts_stay_plain_dicts():
    c = Config()
    c.update({"opt": {"name": "adam", "betas": (0.9, 0.99)}})
    assert c["opt"] == {"name": "adam", "betas": [0.9, 0.99]}
    assert type(c.opt) is dict


def test_underscore_keys_are_stored_but_hidden():
    c = Config()
    c._wandb = {"x": 1}
    c.update({"a": 1})
    assert "_wandb" in c and c._wandb == {"x": 1}
    assert c.keys() == ["a"] and dict(c) == {"a": 1} and len(c) == 1 and list(c) == ["a"]


def test_dashes_are_stripped_from_keys():
    c = Config()
    c.update({"--batch-size": 8})
    c["-x-"] = 1
    assert dict(c) == {"batch-size": 8, "x": 1}


# --------------------------------------------------------------------------- change rule


@pytest.mark.parametrize("how", ["attr", "item", "update"])
def test_changing_a_value_raises_w_and_b_message(how):
    c = Config()
    c.update({"lr": 0.1})
    with pytest.raises(ConfigError) as exc:
        if how == "attr":
            c.lr = 0.2
        elif how == "item":
            c["lr"] = 0.2
        else:
            c.update({"lr": 0.2})
    assert str(exc.value) == CHANGE_MSG
    assert isinstance(exc.value, TbxError) and isinstance(exc.value, ValueError)
    assert c.lr == 0.1


def test_same_value_and_allow_val_change():
    c = Config()
    c.update({"lr": 0.1, "bs": 1})
    c.lr = 0.1
    c.update({"lr": np.float64(0.1), "bs": True})  # equal values are no change
    c.update({"lr": 0.2}, allow_val_change=True)
    assert c.lr == 0.2
    with pytest.raises(ConfigError):
        c.update({"lr": 0.3}, allow_val_change=False)


def test_failed_update_changes_nothing():
    calls = []
    c = Config(on_change=calls.append)
    c.update({"lr": 0.1})
    with pytest.raises(ConfigError):
        c.update({"new": 1, "lr": 0.5})
    with pytest.raises(TypeError):
        c.update({"other": 2, "bad": 1 + 2j})
    assert dict(c) == {"lr": 0.1}
    assert calls == [{"lr": 0.1}]


def test_setdefaults_keeps_existing():
    c = Config()
    c.update({"bs": 64})
    c.setdefaults({"bs": 1, "--new": (2,)})
    assert dict(c) == {"bs": 64, "new": [2]}


# --------------------------------------------------------------------------- callback


def test_on_change_receives_changed_items_only():
    calls = []
    c = Config(on_change=calls.append)
    c.update({"a": 1, "b": np.int64(2)})
    c.a = 1  # unchanged: no call
    c.c = (3,)
    c.update({"a": 5, "b": 2}, allow_val_change=True)
    c.setdefaults({"a": 9, "d": 4})
    c.setdefaults({"a": 9})  # nothing new: no call
    assert calls == [{"a": 1, "b": 2}, {"c": [3]}, {"a": 5}, {"d": 4}]
    assert type(calls[0]["b"]) is int
    c.persist()
    assert calls[-1] == {"a": 5, "b": 2, "c": [3], "d": 4}
    c.set_on_change(None)
    c.e = 1
    assert len(calls) == 5


# --------------------------------------------------------------------------- bad values


class FakeMedia:
    def _tb_log(self, writer, tag, step):
        raise AssertionError("never called")


@pytest.mark.parametrize(
    "value, match",
    [
        (1 + 2j, r"key 'bad'.*complex"),
        (bytearray(b"x"), r"key 'bad'.*bytearray"),
        ({"a": [1, 2j]}, r"key 'bad'\['a'\]\[1\]"),
        ({(1, 2): 3}, r"key 'bad'.*dict key \(1, 2\)"),
        (FakeMedia(), r"^WBValue objects cannot be added to the run config.*key 'bad'.*FakeMedia"),
        ({"img": FakeMedia()}, r"^WBValue objects cannot be added to the run config"),
    ],
)
def test_unserializable_values_raise_typeerror_naming_the_key(value, match):
    c = Config()
    c.update({"good": 1})
    with pytest.raises(TypeError, match=match):
        c.update({"bad": value})
    with pytest.raises(TypeError, match=match):
        c["bad"] = value
    assert dict(c) == {"good": 1}


def test_non_str_key_raises_typeerror():
    c = Config()
    with pytest.raises(TypeError, match=r"config key must be a str, got 3 \(type int\)"):
        c.update({3: 1})
    with pytest.raises(TypeError, match="config key must be a str"):
        c[None] = 1
    assert len(c) == 0


# --------------------------------------------------------------------------- sources


def test_from_source_kinds(tmp_path):
    ns = argparse.Namespace(lr=0.1, batch_size=32)
    assert Config.from_source(None) == {}
    assert Config.from_source(ns) == {"lr": 0.1, "batch_size": 32}
    d = {"a": 1}
    out = Config.from_source(d)
    assert out == d and out is not d
    c = Config()
    c.update({"a": 1, "_hidden": 2})
    assert Config.from_source(c) == {"a": 1}
    with pytest.raises(TypeError, match=r"config must be a dict or have a __dict__ attribute; got \[\('a', 1\)\]"):
        Config.from_source([("a", 1)])
    with pytest.raises(TypeError, match="config must be a dict"):
        Config().update(5)


def test_yaml_files_both_formats(tmp_path):
    wb = tmp_path / "wb.yaml"
    wb.write_text("wandb_version: 1\n\nlr:\n  desc: null\n  value: 0.1\nlayers:\n  value: [1, 2]\n")
    plain = tmp_path / "plain.yaml"
    plain.write_text("lr: 0.1\nopt:\n  name: adam\n  value: 3\n")
    bare_wb = tmp_path / "bare.yaml"
    bare_wb.write_text("lr:\n  value: 0.01\n")
    assert Config.from_source(str(wb)) == {"lr": 0.1, "layers": [1, 2]}
    assert Config.from_source(plain) == {"lr": 0.1, "opt": {"name": "adam", "value": 3}}
    assert Config.from_source(str(bare_wb)) == {"lr": 0.01}
    c = Config()
    c.update(str(wb))
    assert dict(c) == {"lr": 0.1, "layers": [1, 2]}
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert Config.from_source(str(empty)) == {}


def test_yaml_file_errors(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=f"^config file {missing} doesn't exist$"):
        Config.from_source(str(missing))
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="Invalid YAML in config yaml .*bad.yaml"):
        Config.from_source(str(bad))
    seq = tmp_path / "seq.yaml"
    seq.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping.*got a list"):
        Config.from_source(str(seq))
    v2 = tmp_path / "v2.yaml"
    v2.write_text("wandb_version: 2\na:\n  value: 1\n")
    with pytest.raises(ConfigError, match="Unknown config version 2"):
        Config.from_source(str(v2))
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text("wandb_version: 1\na: 1\n")
    with pytest.raises(ConfigError, match="key 'a' must be a mapping with a 'value' entry"):
        Config.from_source(str(mixed))


def test_yaml_file_without_pyyaml(tmp_path, monkeypatch):
    f = tmp_path / "c.yaml"
    f.write_text("a: 1\n")
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(ImportError, match="needs PyYAML.*pip install pyyaml"):
        Config.from_source(str(f))
    # no file, no import needed
    assert load_defaults(tmp_path / "elsewhere") == {}


def test_load_defaults(tmp_path):
    assert load_defaults(tmp_path) == {}
    (tmp_path / "config-defaults.yaml").write_text("epochs:\n  desc: Number of epochs\n  value: 100\nbs:\n  value: 32\n")
    assert load_defaults(tmp_path) == {"epochs": 100, "bs": 32}
    (tmp_path / "config-defaults.yaml").write_text("epochs: 10\n")
    assert load_defaults(str(tmp_path)) == {"epochs": 10}
    (tmp_path / "config-defaults.yaml").write_text("")
    assert load_defaults(tmp_path) == {}


def test_load_defaults_matches_wandb_reader(tmp_path):
    config_util = pytest.importorskip("wandb.sdk.lib.config_util", reason="wandb not installed")
    f = tmp_path / "config-defaults.yaml"
    f.write_text("wandb_version: 1\nepochs:\n  desc: null\n  value: 100\nopt:\n  value: {name: adam}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # wandb's reader leaves the file open
        theirs = config_util.dict_from_config_file(str(f))
        gc.collect()
    assert load_defaults(tmp_path) == theirs


# --------------------------------------------------------------------------- sweeps, copies


def test_locked_keys_ignore_updates_with_warning():
    calls = []
    c = Config(on_change=calls.append)
    c.update({"lr": 0.1, "opt": {"name": "adam", "beta": 0.9}})
    c.merge_locked({"lr": 0.5, "opt": {"beta": 0.99}}, user="sweep")
    assert c.lr == 0.5 and c.opt == {"name": "adam", "beta": 0.99}
    with pytest.warns(UserWarning, match=r"^Config item 'lr' was locked by 'sweep' \(ignored update\)\.$"):
        c.lr = 0.7
    with pytest.warns(UserWarning, match="locked by 'sweep'"):
        c.update({"lr": 0.8, "new": 1})
    assert c.lr == 0.5 and c.new == 1
    assert calls[1] == {"lr": 0.5, "opt": {"name": "adam", "beta": 0.99}}


def test_copy_and_pickle():
    c = Config(on_change=lambda changed: None)
    c.update({"a": [1, 2], "b": {"c": 1}})
    for clone in (copy.deepcopy(c), pickle.loads(pickle.dumps(c)), copy.copy(c)):
        assert dict(clone) == dict(c) and isinstance(clone, Config)
        with pytest.raises(ConfigError):
            clone.a = 3
