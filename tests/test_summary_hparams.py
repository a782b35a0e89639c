"""add_hparams and tbx.summary.hparams.

Read back with TensorBoard's own code: the plugin event accumulator, the
hparams plugin's metadata parsers, and the plugin's experiment and
session-group handlers run in-process on a MultiplexerDataProvider (what the
dashboard's /experiment and /session_groups endpoints call with the Python
loader). Also: the tbx hparams protos against TensorBoard's compiled ones,
and torch's add_hparams as the reference for layout and content.
"""

import inspect
import math
import os
import time

import numpy as np
import pytest
import torch
from google.protobuf import json_format
from tensorboard import context as tb_context
from tensorboard.backend.event_processing import data_provider as tb_data_provider
from tensorboard.backend.event_processing import plugin_event_multiplexer as tb_mux
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2 as tb_api_pb2
from tensorboard.plugins.hparams import backend_context, get_experiment, list_session_groups
from tensorboard.plugins.hparams import metadata as tb_hp_metadata
from tensorboard.plugins.hparams import plugin_data_pb2 as tb_hp_pd
from torch.utils.tensorboard import SummaryWriter as TorchWriter

from tbx import SummaryWriter
from tbx.errors import WriterClosedError
from tbx.proto import hparams_pb2, summary_pb2
from tbx.summary import hparams as hp
from writer_util import KEEP_ALL, event_files, plugin_acc, tbx_values_by_tag, values_by_tag

HPARAM_TAGS = (hp.EXPERIMENT_TAG, hp.SESSION_START_INFO_TAG, hp.SESSION_END_INFO_TAG)


# --- readers -----------------------------------------------------------------

def accumulator(run_dir):
    acc = plugin_acc.EventAccumulator(
        os.fspath(run_dir),
        size_guidance={plugin_acc.TENSORS: KEEP_ALL},
        tensor_size_guidance={"hparams": KEEP_ALL, "scalars": KEEP_ALL},
    )
    acc.Reload()
    return acc


def session(run_dir):
    """(Experiment, SessionStartInfo, SessionEndInfo) parsed by TensorBoard's hparams metadata module."""
    content = accumulator(run_dir).PluginTagToContent("hparams")
    assert set(content) == set(HPARAM_TAGS), content.keys()
    return (
        tb_hp_metadata.parse_experiment_plugin_data(content[hp.EXPERIMENT_TAG]),
        tb_hp_metadata.parse_session_start_info_plugin_data(content[hp.SESSION_START_INFO_TAG]),
        tb_hp_metadata.parse_session_end_info_plugin_data(content[hp.SESSION_END_INFO_TAG]),
    )


def scalars(run_dir, tag):
    """[(step, value)] of a scalar tag, through TensorBoard's accumulator (legacy values migrated)."""
    return [(e.step, float(e.tensor_proto.float_val[0])) for e in accumulator(run_dir).Tensors(tag)]


def dashboard(logdir):
    """JSON-like dicts of the hparams plugin's /experiment and /session_groups answers (Python loader)."""
    mux = tb_mux.EventMultiplexer(tensor_size_guidance={"hparams": KEEP_ALL, "scalars": KEEP_ALL})
    mux.AddRunsFromDirectory(os.fspath(logdir))
    mux.Reload()
    provider = tb_data_provider.MultiplexerDataProvider(mux, os.fspath(logdir))
    context = backend_context.Context(base_plugin.TBContext(logdir=os.fspath(logdir), multiplexer=mux, data_provider=provider))
    request = tb_context.RequestContext()
    experiment = get_experiment.Handler(request, context, "", tb_api_pb2.GetExperimentRequest()).run()
    groups_request = json_format.ParseDict(
        {"allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
         "startIndex": 0, "sliceSize": 100},
        tb_api_pb2.ListSessionGroupsRequest(),
    )
    groups = list_session_groups.Handler(request, context, "", groups_request).run()
    # proto -> JSON text is what the HTTP endpoints send; it fails on what the browser could not parse
    as_json = lambda message: json_format.MessageToDict(message)  # noqa: E731
    return as_json(experiment), as_json(groups)


def group_by_name(groups):
    return {g["name"]: g for g in groups.get("sessionGroups", [])}


def metric_values(group):
    return {m["name"]["tag"]: (m["value"], m.get("trainingStep", 0)) for m in group.get("metricValues", [])}


def hparams_tags(run_dir):
    """Tags of the hparams plugin in one run (empty when the run has none)."""
    acc = accumulator(run_dir)
    return set(acc.PluginTagToContent("hparams")) if "hparams" in acc.ActivePlugins() else set()


def subdirs(path):
    return sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))


# --- the protos ----------------------------------------------------------------

def _field_table(desc):
    return {
        f.name: (
            f.number, f.type, f.is_repeated,
            f.containing_oneof.name if f.containing_oneof else None,
            f.message_type.full_name.rsplit(".", 1)[-1] if f.message_type else None,
            f.enum_type.name if f.enum_type else None,
        )
        for f in desc.fields
    }


def _tb_descriptor(name):
    for module in (tb_hp_pd, tb_api_pb2):
        if name in module.DESCRIPTOR.message_types_by_name:
            return module.DESCRIPTOR.message_types_by_name[name]
    raise KeyError(name)


@pytest.mark.parametrize("name", sorted(hparams_pb2.DESCRIPTOR.message_types_by_name))
def test_message_fields_match_tensorboard(name):
    ours = hparams_pb2.DESCRIPTOR.message_types_by_name[name]
    theirs = _tb_descriptor(name)
    assert _field_table(ours) == _field_table(theirs)
    for nested in ours.nested_types:  # the map entry of SessionStartInfo.hparams
        assert _field_table(nested) == _field_table(theirs.nested_types_by_name[nested.name])
    # map values are google.protobuf.Value, domains google.protobuf.ListValue
    for field in ours.fields:
        if field.message_type is not None and field.message_type.full_name.startswith("google."):
            assert field.message_type.full_name == theirs.fields_by_name[field.name].message_type.full_name


@pytest.mark.parametrize("name", ["DataType", "DatasetType", "Status"])
def test_enums_match_tensorboard(name):
    ours = hparams_pb2.DESCRIPTOR.enum_types_by_name[name]
    theirs = tb_api_pb2.DESCRIPTOR.enum_types_by_name[name]
    assert [(v.name, v.number) for v in ours.values] == [(v.name, v.number) for v in theirs.values]


def _plugin_datas(pd, api):
    """One HParamsPluginData per oneof case with every field set, built with either set of classes."""
    experiment = pd.HParamsPluginData(version=0)
    e = experiment.experiment
    e.name, e.description, e.user, e.time_created_secs = "exp", "desc ü", "me", 1700000000.5
    info = e.hparam_infos.add(name="opt", display_name="Optimizer", description="d", type=api.DATA_TYPE_STRING, differs=True)
    info.domain_discrete.values.add(string_value="adam")
    info.domain_discrete.values.add(string_value="sgd")
    info = e.hparam_infos.add(name="lr", type=api.DATA_TYPE_FLOAT64)
    info.domain_interval.min_value, info.domain_interval.max_value = 1e-5, 0.5
    info = e.hparam_infos.add(name="flag", type=api.DATA_TYPE_BOOL)
    info.domain_discrete.values.add(bool_value=True)
    metric = e.metric_infos.add(display_name="Accuracy", description="top-1", dataset_type=api.DATASET_VALIDATION)
    metric.name.group, metric.name.tag = "eval", "acc"

    start = pd.HParamsPluginData(version=0)
    s = start.session_start_info
    s.hparams["lr"].number_value = 0.25
    s.hparams["opt"].string_value = "adam"
    s.hparams["flag"].bool_value = False
    s.model_uri, s.monitor_url, s.group_name, s.start_time_secs = "gs://m", "http://x", "g1", 12.5

    end = pd.HParamsPluginData(version=0)
    end.session_end_info.status = api.STATUS_FAILURE
    end.session_end_info.end_time_secs = 99.25
    return [experiment, start, end]


def test_plugin_data_is_wire_identical_both_ways():
    ours = _plugin_datas(hparams_pb2, hparams_pb2)
    theirs = _plugin_datas(tb_hp_pd, tb_api_pb2)
    for mine, tb in zip(ours, theirs):
        data = mine.SerializeToString(deterministic=True)
        assert data == tb.SerializeToString(deterministic=True)
        assert tb_hp_pd.HParamsPluginData.FromString(data) == tb
        assert hparams_pb2.HParamsPluginData.FromString(tb.SerializeToString()) == mine
        assert mine.WhichOneof("data") == tb.WhichOneof("data")
    # TensorBoard's own parsers accept our bytes
    experiment = tb_hp_metadata.parse_experiment_plugin_data(ours[0].SerializeToString())
    assert [i.name for i in experiment.hparam_infos] == ["opt", "lr", "flag"]
    assert experiment.hparam_infos[1].domain_interval.max_value == 0.5
    assert experiment.metric_infos[0].name.group == "eval"
    start = tb_hp_metadata.parse_session_start_info_plugin_data(ours[1].SerializeToString())
    assert start.hparams["opt"].string_value == "adam" and start.hparams["flag"].HasField("bool_value")
    end = tb_hp_metadata.parse_session_end_info_plugin_data(ours[2].SerializeToString())
    assert end.status == tb_api_pb2.STATUS_FAILURE and end.end_time_secs == 99.25


def test_tensorboard_hparams_pb_parses_with_ours():
    """Summaries from TensorBoard's own hparams writer parse with tbx's messages."""
    from tensorboard.plugins.hparams import summary_v2

    summary = summary_v2.hparams_pb({"lr": 0.5, "opt": "sgd", "flag": True}, trial_id="t1", start_time_secs=5.0)
    (value,) = summary.value
    data = hparams_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    assert data.version == 0
    start = data.session_start_info
    assert start.group_name == "t1" and start.start_time_secs == 5.0
    assert dict(start.hparams)["opt"].string_value == "sgd"
    assert start.hparams["flag"].bool_value is True and start.hparams["lr"].number_value == 0.5
    assert value.tensor.SerializeToString() == hp.NULL_TENSOR.SerializeToString()


def test_null_tensor_matches_tensorboard():
    assert hp.NULL_TENSOR.SerializeToString() == tb_hp_metadata.NULL_TENSOR.SerializeToString()


# --- signature and torch compatibility ------------------------------------------

def test_signature_is_torchs_plus_keyword_only_extra_metrics():
    ours = [(p.name, p.default, p.kind) for p in inspect.signature(SummaryWriter.add_hparams).parameters.values()]
    theirs = [(p.name, p.default, p.kind) for p in inspect.signature(TorchWriter.add_hparams).parameters.values()]
    assert ours[-1] == ("extra_metrics", None, inspect.Parameter.KEYWORD_ONLY)
    assert ours[:-1] == theirs


def test_same_session_as_torch(tmp_path):
    """torch's and tbx's add_hparams give the same runs, tags, hparams and metrics."""
    args = ({"lr": 0.01, "batch": 64, "opt": "adam"}, {"hparam/acc": 0.875, "hparam/loss": 0.25})
    kwargs = dict(hparam_domain_discrete={"opt": ["adam", "sgd"], "batch": [32, 64]}, run_name="trial", global_step=7)
    with TorchWriter(tmp_path / "torch") as writer:
        writer.add_hparams(*args, **kwargs)
    with SummaryWriter(tmp_path / "tbx") as writer:
        writer.add_hparams(*args, **kwargs)
    theirs, ours = values_by_tag(tmp_path / "torch"), values_by_tag(tmp_path / "tbx")
    assert sorted(ours) == sorted(theirs) == sorted([("trial", t) for t in HPARAM_TAGS + tuple(args[1])])
    for tag in args[1]:
        assert [(s, v.simple_value) for s, _w, v in ours["trial", tag]] == [(s, v.simple_value) for s, _w, v in theirs["trial", tag]]
    (t_exp, t_start, t_end), (o_exp, o_start, o_end) = session(tmp_path / "torch" / "trial"), session(tmp_path / "tbx" / "trial")
    # tbx also fills the times; everything else is what torch writes
    assert o_exp.time_created_secs > 0 and o_start.start_time_secs > 0 and o_end.end_time_secs > 0
    for message in (o_exp, o_start, o_end):
        for field in ("time_created_secs", "start_time_secs", "end_time_secs"):
            if field in message.DESCRIPTOR.fields_by_name:
                message.ClearField(field)
    assert o_exp == t_exp
    assert o_start == t_start
    assert o_end == t_end
    for tag in HPARAM_TAGS:
        assert ours["trial", tag][0][0] == theirs["trial", tag][0][0] == 7


def test_default_run_name_is_a_timestamp_like_torch(tmp_path):
    before = time.time()
    with SummaryWriter(tmp_path) as writer:
        writer.add_scalar("loss", 1.0, 0)
        writer.add_hparams({"lr": 0.1}, {"hparam/acc": 0.5})
        time.sleep(0.001)
        writer.add_hparams({"lr": 0.2}, {"hparam/acc": 0.25}, run_name="")  # torch: empty means a timestamp too
    after = time.time()
    name, second = subdirs(tmp_path)
    assert before <= float(name) < float(second) <= after and name == str(float(name))
    assert scalars(tmp_path / second, "hparam/acc") == [(0, 0.25)]
    assert event_files(tmp_path).keys() == {".", name, second}
    assert scalars(tmp_path / name, "hparam/acc") == [(0, 0.5)]
    # the writer's own run holds no hparams
    assert not hparams_tags(tmp_path)


# --- reading back -----------------------------------------------------------------

def test_values_types_and_metrics_read_back(tmp_path):
    hparams = {
        "lr": 3e-4, "layers": 12, "np_int": np.int64(7), "np_float": np.float32(0.5), "torch": torch.tensor(2.5),
        "torch_1elem": torch.tensor([4]), "opt": "adamw", "np_str": np.str_("x"), "flag": True, "np_flag": np.bool_(False),
        "torch_flag": torch.tensor(True), "none": None, "unicode": "ünï €",
    }
    with SummaryWriter(tmp_path) as writer:
        writer.add_hparams(hparams, {"m/acc": np.float64(0.75), "m/loss": torch.tensor(0.125)}, run_name="run0", global_step=5)
    experiment, start, end = session(tmp_path / "run0")
    types = {i.name: i.type for i in experiment.hparam_infos}
    assert [i.name for i in experiment.hparam_infos] == list(hparams)
    F, S, B = tb_api_pb2.DATA_TYPE_FLOAT64, tb_api_pb2.DATA_TYPE_STRING, tb_api_pb2.DATA_TYPE_BOOL
    assert types == {"lr": F, "layers": F, "np_int": F, "np_float": F, "torch": F, "torch_1elem": F, "opt": S, "np_str": S,
                     "flag": B, "np_flag": B, "torch_flag": B, "none": S, "unicode": S}
    values = json_format.MessageToDict(start)["hparams"]
    assert values == {"lr": 3e-4, "layers": 12.0, "np_int": 7.0, "np_float": 0.5, "torch": 2.5, "torch_1elem": 4.0,
                      "opt": "adamw", "np_str": "x", "flag": True, "np_flag": False, "torch_flag": True, "none": "None",
                      "unicode": "ünï €"}
    assert [m.name.tag for m in experiment.metric_infos] == ["m/acc", "m/loss"]
    assert all(m.name.group == "" for m in experiment.metric_infos)
    assert end.status == tb_api_pb2.STATUS_SUCCESS
    assert scalars(tmp_path / "run0", "m/acc") == [(5, 0.75)]
    assert scalars(tmp_path / "run0", "m/loss") == [(5, 0.125)]
    # tbx's reader agrees; every hparams record carries its metadata, class TENSOR
    ours = tbx_values_by_tag(tmp_path)
    for tag in HPARAM_TAGS:
        ((step, _wall, value),) = ours["run0", tag]
        assert step == 5
        assert value.metadata.plugin_data.plugin_name == "hparams"
        assert value.metadata.data_class == summary_pb2.DATA_CLASS_TENSOR
        assert value.HasField("tensor")


def test_dashboard_lists_each_trial_with_its_metrics(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        for i, (lr, opt) in enumerate([(0.1, "adam"), (0.01, "sgd"), (0.001, "adam")]):
            writer.add_hparams({"lr": lr, "opt": opt, "wide": i % 2 == 0}, {"hparam/acc": 0.5 + i / 10},
                               hparam_domain_discrete={"opt": ["adam", "sgd"]}, run_name=f"trial_{i}", global_step=100 * i)
    experiment, groups = dashboard(tmp_path)
    infos = {i["name"]: i for i in experiment["hparamInfos"]}
    assert infos["opt"]["type"] == "DATA_TYPE_STRING" and infos["opt"]["domainDiscrete"] == ["adam", "sgd"]
    assert infos["lr"]["type"] == "DATA_TYPE_FLOAT64" and infos["wide"]["type"] == "DATA_TYPE_BOOL"
    assert [m["name"]["tag"] for m in experiment["metricInfos"]] == ["hparam/acc"]
    by_name = group_by_name(groups)
    assert groups["totalSize"] == 3 and set(by_name) == {"trial_0", "trial_1", "trial_2"}
    for i, (lr, opt) in enumerate([(0.1, "adam"), (0.01, "sgd"), (0.001, "adam")]):
        group = by_name[f"trial_{i}"]
        assert group["hparams"] == {"lr": lr, "opt": opt, "wide": i % 2 == 0}
        value, step = metric_values(group)["hparam/acc"]
        assert value == pytest.approx(0.5 + i / 10) and step == 100 * i
        assert group["sessions"][0]["status"] == "STATUS_SUCCESS"


def test_int32_step_limit_is_exactly_what_the_dashboard_handles(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_hparams({"a": 1}, {"m": 1.0}, run_name="max", global_step=hp.INT32_MAX)
        writer.add_hparams({"a": 2}, {"m": 2.0}, run_name="min", global_step=hp.INT32_MIN)
        with pytest.raises(ValueError, match=r"global_step 2147483648 does not fit in int32"):
            writer.add_hparams({"a": 3}, {"m": 3.0}, run_name="over", global_step=hp.INT32_MAX + 1)
        with pytest.raises(ValueError, match=r"global_step -2147483649 does not fit in int32"):
            writer.add_hparams({"a": 3}, {"m": 3.0}, run_name="under", global_step=np.int64(hp.INT32_MIN - 1))
    assert subdirs(tmp_path) == ["max", "min"]
    _experiment, groups = dashboard(tmp_path)
    by_name = group_by_name(groups)
    assert metric_values(by_name["max"])["m"] == (1.0, hp.INT32_MAX)
    assert metric_values(by_name["min"])["m"] == (2.0, hp.INT32_MIN)


def test_nan_hparam_is_written_and_shown_as_unset(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_hparams({"lr": math.nan, "wd": math.inf, "k": 1}, {"m": math.nan}, run_name="r")
    _experiment, start, _end = session(tmp_path / "r")
    assert math.isnan(start.hparams["lr"].number_value) and start.hparams["wd"].number_value == math.inf
    _experiment, groups = dashboard(tmp_path)  # no JSON failure
    assert group_by_name(groups)["r"]["hparams"] == {"k": 1.0}
    assert metric_values(group_by_name(groups)["r"])["m"][0] == "NaN"  # protobuf JSON spelling


# --- the writer's own run -------------------------------------------------------------

@pytest.mark.parametrize("run_name", [".", "./", os.path.join("sub", ".."), "<absolute log_dir>"])
def test_own_run_puts_the_session_into_the_writers_run(tmp_path, run_name, monkeypatch):
    if run_name == "<absolute log_dir>":
        run_name = str(tmp_path)
        monkeypatch.chdir(tmp_path.parent)
    with SummaryWriter(tmp_path.name if run_name == str(tmp_path) else tmp_path) as writer:
        for step in range(3):
            writer.add_scalar("train/loss", 1.0 / (step + 1), step)
        writer.add_hparams({"lr": 0.5, "opt": "sgd"}, {"hparam/acc": 0.9}, run_name=run_name, global_step=3)
        writer.add_scalar("train/loss", 0.1, 3)
    assert subdirs(tmp_path) == []
    assert list(event_files(tmp_path)) == ["."]
    assert len(event_files(tmp_path)["."]) == 1  # the writer's own file, no second writer in the run
    experiment, start, end = session(tmp_path)
    assert [i.name for i in experiment.hparam_infos] == ["lr", "opt"]
    assert start.hparams["opt"].string_value == "sgd" and end.status == tb_api_pb2.STATUS_SUCCESS
    assert scalars(tmp_path, "train/loss") == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3)), (3, pytest.approx(0.1))]
    _experiment, groups = dashboard(tmp_path)
    (group,) = groups["sessionGroups"]
    assert group["name"] == "." and group["hparams"] == {"lr": 0.5, "opt": "sgd"}
    assert metric_values(group)["hparam/acc"] == (pytest.approx(0.9), 3)


def test_extra_metrics_list_the_runs_other_scalars_and_sub_run_metrics(tmp_path):
    # The session is "run", not the logdir root: TensorBoard looks up group
    # metrics of a root session "." in "./eval", which matches no run.
    run = tmp_path / "run"
    with SummaryWriter(run) as writer:
        for step in range(4):
            writer.add_scalar("train/loss", 1.0 / (step + 1), step)
        writer.add_hparams({"lr": 0.1}, {"hparam/acc": 0.5}, run_name=".", global_step=3,
                           extra_metrics=["train/loss", ("eval", "acc"), ("eval/", "acc"), "hparam/acc", ("deep/er", "x")])
        with SummaryWriter(run / "eval") as evaluation:  # e.g. a separate evaluation job
            evaluation.add_scalar("acc", 0.25, 1)
            evaluation.add_scalar("acc", 0.75, 3)
    experiment, _start, _end = session(run)
    assert [(m.name.group, m.name.tag) for m in experiment.metric_infos] == [
        ("", "hparam/acc"), ("", "train/loss"), ("eval", "acc"), ("deep/er", "x")]
    served, groups = dashboard(tmp_path)
    assert [m["name"] for m in served["metricInfos"]] == [
        {"tag": "hparam/acc"}, {"tag": "train/loss"}, {"group": "eval", "tag": "acc"}, {"group": "deep/er", "tag": "x"}]
    (group,) = groups["sessionGroups"]
    assert group["name"] == "run"
    values = {(m["name"].get("group", ""), m["name"]["tag"]): (m["value"], m["trainingStep"]) for m in group["metricValues"]}
    assert values == {("", "hparam/acc"): (0.5, 3), ("", "train/loss"): (0.25, 3), ("eval", "acc"): (0.75, 3)}


def test_run_name_reuses_a_run_the_writer_keeps_open(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_scalars("loss", {"train": 1.0}, 0)  # opens the run loss_train
        writer.add_hparams({"lr": 0.5}, {"hparam/acc": 0.25}, run_name="loss_train")
        writer.add_scalars("loss", {"train": 0.5}, 1)
    assert len(event_files(tmp_path)["loss_train"]) == 1
    _experiment, start, _end = session(tmp_path / "loss_train")
    assert start.hparams["lr"].number_value == 0.5
    assert scalars(tmp_path / "loss_train", "loss") == [(0, 1.0), (1, 0.5)]


def test_nested_run_name_and_pathlike(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_hparams({"a": "x"}, {"m": 1.0}, run_name=os.path.join("sweep", "t1"))
        writer.add_hparams({"a": "y"}, {"m": 2.0}, run_name=type(tmp_path)("sweep") / "t2")
    assert set(event_files(tmp_path)) == {".", "sweep/t1", "sweep/t2"}
    assert set(group_by_name(dashboard(tmp_path)[1])) == {"sweep/t1", "sweep/t2"}


def test_domain_values_are_deduplicated_in_order(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        writer.add_hparams({"n": 2, "b": False}, {}, hparam_domain_discrete={"n": [4, 2, 4.0, np.int32(1)], "b": (True, False)},
                           run_name="r")
    experiment, _start, _end = session(tmp_path / "r")
    domains = {i.name: json_format.MessageToDict(i.domain_discrete) for i in experiment.hparam_infos}
    assert domains == {"n": [4.0, 2.0, 1.0], "b": [True, False]}
    assert list(experiment.metric_infos) == []


def test_string_limit_is_in_utf8_bytes():
    limit = hp.MAX_STRING_BYTES
    assert hp.check({"a" * limit: "é" * (limit // 2)}, {"m" * limit: 1.0}).hparams["a" * limit] == (hp.STRING, "é" * (limit // 2))
    with pytest.raises(ValueError, match=rf"hparam_dict\['s'\] is {limit + 1} bytes of UTF-8.*{limit}"):
        hp.check({"s": "é" * (limit // 2) + "x"}, {})


# --- bad input -----------------------------------------------------------------------

LONG = "x" * (hp.MAX_STRING_BYTES + 1)

BAD_CALLS = [
    ("hparams_not_dict", dict(hparam_dict=[("lr", 0.1)]), TypeError, r"hparam_dict must be a dict"),
    ("metrics_not_dict", dict(metric_dict=0.5), TypeError, r"metric_dict must be a dict"),
    ("metrics_none", dict(metric_dict=None), TypeError, r"metric_dict must be a dict"),
    ("domain_not_dict", dict(hparam_domain_discrete=["adam"]), TypeError, r"hparam_domain_discrete must be a dict"),
    ("nested_dict", dict(hparam_dict={"opt": {"lr": 0.1}}), TypeError, r"hparam_dict\['opt'\].*nested dicts.*flatten"),
    ("list_value", dict(hparam_dict={"layers": [64, 64]}), TypeError, r"hparam_dict\['layers'\] is a list.*str\(value\)"),
    ("tuple_value", dict(hparam_dict={"shape": (1, 2)}), TypeError, r"hparam_dict\['shape'\] is a tuple"),
    ("object_value", dict(hparam_dict={"fn": print}), TypeError, r"hparam_dict\['fn'\] must be a bool, int, float, str or None"),
    ("complex_value", dict(hparam_dict={"c": 1j}), TypeError, r"hparam_dict\['c'\]"),
    ("array_value", dict(hparam_dict={"w": np.zeros(3)}), ValueError, r"hparam_dict\['w'\] must hold exactly one value.*\(3,\)"),
    ("tensor_value", dict(hparam_dict={"w": torch.zeros(2, 2)}), ValueError, r"hparam_dict\['w'\].*\(2, 2\)"),
    ("huge_int", dict(hparam_dict={"n": 10**400}), ValueError, r"hparam_dict\['n'\].*too large"),
    ("key_not_str", dict(hparam_dict={1: 0.5}), TypeError, r"hparam_dict key must be a str, got int 1"),
    ("key_empty", dict(hparam_dict={"": 0.5}), ValueError, r"hparam_dict key is an empty string"),
    ("key_long", dict(hparam_dict={LONG: 0.5}), ValueError, r"hparam_dict key is 65537 bytes"),
    ("value_long", dict(hparam_dict={"notes": LONG}), ValueError, r"hparam_dict\['notes'\] is 65537 bytes.*add_text"),
    ("value_surrogate", dict(hparam_dict={"s": "a\ud800"}), ValueError, r"hparam_dict\['s'\] is not valid Unicode"),
    ("metric_key_long", dict(metric_dict={LONG: 1.0}), ValueError, r"metric_dict key is 65537 bytes"),
    ("metric_key_type", dict(metric_dict={("a",): 1.0}), TypeError, r"metric_dict key must be a str"),
    ("metric_reserved", dict(metric_dict={hp.EXPERIMENT_TAG: 1.0}), ValueError, r"metric_dict key '_hparams_/experiment' starts with"),
    ("metric_str", dict(metric_dict={"acc": "high"}), TypeError, r"metric_dict\['acc'\] must be a real number"),
    ("metric_bool", dict(metric_dict={"acc": True}), TypeError, r"metric_dict\['acc'\] must be a real number"),
    ("metric_array", dict(metric_dict={"acc": np.ones(2)}), ValueError, r"metric_dict\['acc'\] must hold exactly one value"),
    ("domain_unknown_key", dict(hparam_domain_discrete={"momentum": [0.9]}), ValueError,
     r"hparam_domain_discrete has the key 'momentum', which is not in hparam_dict"),
    ("domain_not_list", dict(hparam_domain_discrete={"opt": "adam"}), TypeError, r"hparam_domain_discrete\['opt'\] must be a list"),
    ("domain_empty", dict(hparam_domain_discrete={"opt": []}), ValueError, r"hparam_domain_discrete\['opt'\] is empty"),
    ("domain_type_mismatch", dict(hparam_domain_discrete={"lr": ["0.1", "0.01"]}), TypeError,
     r"hparam_domain_discrete\['lr'\]\[0\] = '0.1' is a str, but hparam_dict\['lr'\] = 0.1 is a number"),
    ("domain_bool_for_number", dict(hparam_domain_discrete={"lr": [0.1, True]}), TypeError,
     r"hparam_domain_discrete\['lr'\]\[1\] = True is a bool"),
    ("domain_value_missing", dict(hparam_domain_discrete={"opt": ["sgd", "rmsprop"]}), ValueError,
     r"hparam_dict\['opt'\] = 'adam' is not one of its hparam_domain_discrete values \['sgd', 'rmsprop'\]"),
    ("domain_nan", dict(hparam_domain_discrete={"lr": [0.1, math.nan]}), ValueError,
     r"hparam_domain_discrete\['lr'\]\[1\] = nan; domain values must be finite"),
    ("domain_list_item", dict(hparam_domain_discrete={"opt": ["adam", ["sgd"]]}), TypeError,
     r"hparam_domain_discrete\['opt'\]\[1\] is a list"),
    ("extra_not_list", dict(extra_metrics="train/loss"), TypeError, r"extra_metrics must be a list of tags or \(group, tag\) pairs"),
    ("extra_item_type", dict(extra_metrics=[3]), TypeError, r"extra_metrics\[0\] must be a tag or a \(group, tag\) pair, got int 3"),
    ("extra_triple", dict(extra_metrics=[("a", "b", "c")]), TypeError, r"extra_metrics\[0\] must be a tag or a \(group, tag\) pair"),
    ("extra_group_type", dict(extra_metrics=[(None, "acc")]), TypeError, r"extra_metrics\[0\] group must be a str"),
    ("extra_group_abs", dict(extra_metrics=[("/eval", "acc")]), ValueError, r"extra_metrics\[0\] group '/eval' must be a relative path"),
    ("extra_group_up", dict(extra_metrics=[("../other", "acc")]), ValueError, r"extra_metrics\[0\] group '../other' must be a relative path"),
    ("extra_tag_empty", dict(extra_metrics=[("eval", "")]), ValueError, r"extra_metrics\[0\] tag is an empty string"),
    ("extra_tag_reserved", dict(extra_metrics=["_hparams_/x"]), ValueError, r"extra_metrics\[0\] tag '_hparams_/x' starts with"),
    ("step_int64", dict(global_step=2**40), ValueError, r"global_step 1099511627776 does not fit in int32"),
    ("step_float", dict(global_step=1.5), TypeError, r"global_step must be an integer"),
    ("step_bool", dict(global_step=True), TypeError, r"global_step must be an integer"),
    ("run_name_type", dict(run_name=3), TypeError, r"run_name must be a str or None, got int 3"),
]


def _good_args(**override):
    args = dict(hparam_dict={"lr": 0.1, "opt": "adam"}, metric_dict={"hparam/acc": 0.5},
                hparam_domain_discrete=None, run_name="bad_run", global_step=1)
    args.update(override)
    return args


@pytest.mark.parametrize("override, exc, match", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
@pytest.mark.parametrize("own_run", [False, True], ids=["sub_run", "own_run"])
def test_bad_input_raises_and_loses_nothing(tmp_path, override, exc, match, own_run):
    args = _good_args(**override)
    if own_run and "run_name" not in override:
        args["run_name"] = "."
    with SummaryWriter(tmp_path) as writer:
        writer.add_scalar("good", 1.0, 0)
        writer.add_hparams({"lr": 0.2}, {"hparam/acc": 0.25}, run_name="good_run", global_step=0)
        with pytest.raises(exc, match=match):
            writer.add_hparams(**args)
        writer.add_scalar("good", 2.0, 1)
        writer.add_hparams({"lr": 0.3}, {"hparam/acc": 0.75}, run_name="good_run2", global_step=2)
    assert subdirs(tmp_path) == ["good_run", "good_run2"]  # nothing of the bad call
    assert scalars(tmp_path, "good") == [(0, 1.0), (1, 2.0)]
    assert not hparams_tags(tmp_path)
    assert scalars(tmp_path / "good_run", "hparam/acc") == [(0, 0.25)]
    assert scalars(tmp_path / "good_run2", "hparam/acc") == [(2, 0.75)]
    assert session(tmp_path / "good_run2")[1].hparams["lr"].number_value == 0.3


def test_closed_writer_raises_and_writes_no_sub_run(tmp_path):
    writer = SummaryWriter(tmp_path)
    writer.add_scalar("good", 1.0, 0)
    writer.close()
    with pytest.raises(WriterClosedError):
        writer.add_hparams({"lr": 0.1}, {"m": 1.0}, run_name="late")
    assert subdirs(tmp_path) == []
    assert scalars(tmp_path, "good") == [(0, 1.0)]
