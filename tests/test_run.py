"""tbx.run: W&B's init/log/finish offline, checked through tbx's and TensorBoard's loaders."""

import glob
import importlib
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from tbx.run import Error, Run, UsageError, get_run, init

runmod = importlib.import_module("tbx.run")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _clean(tmp_path, monkeypatch):
    for var in ("WANDB_PROJECT", "WANDB_NAME", "WANDB_RUN_ID", "WANDB_DIR", "WANDB_MODE", "WANDB_RESUME",
                "WANDB_TAGS", "WANDB_NOTES", "WANDB_RUN_GROUP", "WANDB_JOB_TYPE", "WANDB_ENTITY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    yield
    for run in list(runmod._live_runs):
        run.finish()
    runmod._unset_globals()


def scalars(run_dir):
    """{tag: {step: value}} read with tbx.read_scalars."""
    import tbx.reader

    cols = tbx.reader.read_scalars(run_dir, as_frame=False)
    out = {}
    for tag, step, value in zip(cols["tag"], cols["step"], cols["value"]):
        out.setdefault(str(tag), {})[int(step)] = float(value)
    return out


def accumulator(run_dir):
    from tensorboard.backend.event_processing import plugin_event_accumulator as pea

    acc = pea.EventAccumulator(run_dir, size_guidance={pea.TENSORS: 0},
                               tensor_size_guidance={"scalars": 0, "histograms": 0, "text": 0, "images": 0})
    acc.Reload()
    return acc


def tb_scalars(run_dir, tag):
    return {e.step: float(np.asarray(__import__("tensorboard").util.tensor_util.make_ndarray(e.tensor_proto)))
            for e in accumulator(run_dir).Tensors(tag)}


# -- step rules (WANDB.md §4) ----------------------------------------------------------

STEP_CASES = [
    ("implicit", [({"a": 1}, {}), ({"a": 2}, {}), ({"a": 3}, {})], {"a": {0: 1, 1: 2, 2: 3}}, 3),
    ("commit_false_accumulates", [({"b": 2}, {"commit": False}), ({"c": 3}, {})], {"b": {0: 2}, "c": {0: 3}}, 1),
    ("explicit_step_then_higher", [({"x": 1}, {"step": 2}), ({"x": 2}, {"step": 4})], {"x": {2: 1, 4: 2}}, 4),
    ("same_step_last_wins", [({"d": 4}, {"step": 10}), ({"d": 5}, {"step": 10}), ({"e": 1}, {"step": 11})],
     {"d": {10: 5}, "e": {11: 1}}, 11),
    ("implicit_after_explicit_merges", [({"a": 1}, {"step": 5}), ({"a": 3}, {})], {"a": {5: 3}}, 6),
    ("lower_step_dropped", [({"a": 1}, {"step": 5}), ({"a": 9}, {"step": 3}), ({"a": 2}, {})], {"a": {5: 2}}, 6),
    ("explicit_commit_true", [({"a": 1}, {"step": 3, "commit": True}), ({"a": 2}, {})], {"a": {3: 1, 4: 2}}, 5),
    ("commit_false_then_explicit_higher", [({"a": 1}, {"commit": False}), ({"b": 1}, {"step": 7})],
     {"a": {0: 1}, "b": {7: 1}}, 7),
    ("commit_true_without_data", [({"a": 1}, {"commit": False}), ({}, {"commit": True}), ({"a": 2}, {})],
     {"a": {0: 1, 1: 2}}, 2),
    ("empty_log_advances", [({}, {}), ({"a": 1}, {})], {"a": {1: 1}}, 2),
]


@pytest.mark.parametrize("name,calls,expected,next_step", STEP_CASES, ids=[c[0] for c in STEP_CASES])
def test_step_rules(tmp_path, name, calls, expected, next_step, recwarn):
    run = init(project="p", dir=tmp_path)
    for data, kwargs in calls:
        run.log(data, **kwargs)
    assert run.step == next_step
    run_dir = run.run_dir
    run.finish()
    got = {k: v for k, v in scalars(run_dir).items() if not k.startswith("summary/")}
    assert got == {k: {s: float(v) for s, v in d.items()} for k, d in expected.items()}
    # TensorBoard's own loader sees the same points
    for tag, points in expected.items():
        assert tb_scalars(run_dir, tag) == {s: float(v) for s, v in points.items()}


def test_lower_step_warning_text(tmp_path, capsys):
    run = init(project="p", dir=tmp_path)
    run.log({"a": 1}, step=5)
    with pytest.warns(UserWarning, match="Tried to log to step 3 that is less than the current step 5"):
        run.log({"a": 2}, step=3)
    assert ("wandb: WARNING Tried to log to step 3 that is less than the current step 5. Steps must be "
            "monotonically increasing, so this data will be ignored. See https://wandb.me/define-metric to log "
            "data out of order.") in capsys.readouterr().err


def test_summary_follows_committed_rows(tmp_path):
    run = init(project="p", dir=tmp_path)
    run.log({"acc": 0.5})
    run.summary["acc"] = 0.99
    run.log({"acc": 0.3, "nest": {"y": {"z": 1}}})
    assert run.summary["acc"] == 0.3
    assert run.summary["nest/y/z"] == 1
    run.log({"b": 7}, commit=False)
    assert "b" not in run.summary  # not committed yet
    run_dir = run.run_dir
    run.finish()  # the open row is flushed at finish
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["b"] == 7 and summary["acc"] == 0.3 and summary["_step"] == 2
    assert scalars(run_dir)["b"] == {2: 7.0}


def test_define_metric_summary_and_step_metric(tmp_path):
    run = init(project="p", dir=tmp_path)
    run.define_metric("loss", summary="min")
    run.define_metric("epoch")
    run.define_metric("val/*", step_metric="epoch")
    for i, loss in enumerate([3.0, 1.0, 2.0]):
        run.log({"loss": loss, "epoch": i * 10})
        run.log({"val/acc": 0.1 * i})  # epoch is synced into this row
    run_dir = run.run_dir
    run.finish()
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["loss"] == {"min": 1.0}
    got = scalars(run_dir)
    assert got["val/acc"] == pytest.approx({0: 0.0, 10: 0.1, 20: 0.2})  # x axis = epoch
    assert sorted(got["loss"]) == [0, 2, 4]


# -- values --------------------------------------------------------------------------------


def test_value_kinds_reach_tensorboard(tmp_path):
    torch = pytest.importorskip("torch")
    run = init(project="p", dir=tmp_path)
    run.log({"py": 1.5, "np": np.float32(2.5), "t": torch.tensor(3.5), "flag": True, "one": np.array([4.0]),
             "nan": float("nan"), "inf": float("inf"), "none": None, "text": "hello",
             "hist": np.arange(100, dtype=np.float32), "thist": torch.arange(64.0),
             "small": np.arange(5.0), "list": [1, 2, 3], "nested": {"a": {"b": 1}}})
    run_dir = run.run_dir
    run.finish()
    got = scalars(run_dir)
    assert got["py"] == {0: 1.5} and got["np"] == {0: 2.5} and got["t"] == {0: 3.5} and got["flag"] == {0: 1.0}
    assert got["one"] == {0: 4.0} and got["nested/a/b"] == {0: 1.0}
    assert math.isnan(got["nan"][0]) and got["inf"][0] == math.inf
    assert "none" not in got and "list" not in got
    acc = accumulator(run_dir)
    tags = acc.Tags()["tensors"]
    assert {"hist", "thist", "text/text_summary"} <= set(tags)
    assert "small" not in tags  # <= 32 elements: a list in the summary, as W&B keeps it, not a histogram
    hist = __import__("tensorboard").util.tensor_util.make_ndarray(acc.Tensors("hist")[0].tensor_proto)
    assert hist.shape == (32, 3) and hist[:, 2].sum() == 100
    assert acc.Tensors("hist")[0].step == 0
    assert acc.SummaryMetadata("hist").plugin_data.plugin_name == "histograms"
    assert acc.SummaryMetadata("text/text_summary").plugin_data.plugin_name == "text"
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["none"] is None and summary["small"] == [0.0, 1.0, 2.0, 3.0, 4.0] and summary["list"] == [1, 2, 3]
    assert summary["hist"]["_type"] == "histogram" and len(summary["hist"]["bins"]) == 33


def test_bad_input_keeps_logged_data(tmp_path):
    run = init(project="p", dir=tmp_path)
    run.log({"a": 1})
    with pytest.raises(TypeError, match="must be passed a dictionary"):
        run.log([("a", 1)])
    with pytest.raises(TypeError, match="must be strings"):
        run.log({1: 2})
    with pytest.raises(TypeError, match="'obj'"):
        run.log({"a": 5, "obj": object()})  # nothing of this call is logged
    run.log({"a": 2})
    run_dir = run.run_dir
    run.finish()
    assert scalars(run_dir)["a"] == {0: 1.0, 1: 2.0}
    with pytest.raises(UsageError, match=r"is finished. The call to `log` will be ignored"):
        run.log({"a": 3})


def test_media_objects(tmp_path):
    media = pytest.importorskip("tbx.media")
    run = init(project="p", dir=tmp_path)
    img = np.zeros((8, 6, 3), np.uint8)
    run.log({"img": media.Image(img, caption="c"), "imgs": [media.Image(img), media.Image(img)]}, step=3)
    run.log({"tab": media.Table(columns=["a"], data=[[1]])})
    run_dir = run.run_dir
    run.finish()
    acc = accumulator(run_dir)
    assert [e.step for e in acc.Tensors("img")] == [3]
    assert acc.SummaryMetadata("img").plugin_data.plugin_name == "images"
    assert [e.step for e in acc.Tensors("imgs")] == [3]
    assert [e.step for e in acc.Tensors("tab/text_summary")] == [3]
    assert not [t for t in acc.Tags()["tensors"] if t.startswith("summary/")]  # media are no hparams metrics
    assert glob.glob(os.path.join(run_dir, "files", "media", "table", "tab_3_*.table.json"))


def test_queue_histogram_lands_at_next_committed_step(tmp_path):
    run = init(project="p", dir=tmp_path)
    run.log({"a": 1})
    rows = np.array([[0.0, 1.0, 3.0], [1.0, 2.0, 5.0]])
    run._queue_histogram("gradients/w", rows)
    run.log({"a": 2}, commit=False)
    run.log({"a": 3})
    run_dir = run.run_dir
    run.finish()
    acc = accumulator(run_dir)
    events = acc.Tensors("gradients/w")
    assert [e.step for e in events] == [1]
    got = __import__("tensorboard").util.tensor_util.make_ndarray(events[0].tensor_proto)
    np.testing.assert_allclose(got, rows)


# -- layout, metadata, hparams ------------------------------------------------------------


def test_layout_and_sidecars(tmp_path):
    run = init(project="proj", name="my run", config={"lr": 0.1, "opt": {"name": "adam"}}, dir=tmp_path,
               tags=["t1"], notes="n", group="g", job_type="train")
    assert isinstance(run, Run) and get_run() is run
    assert len(run.id) == 8 and set(run.id) <= set("0123456789abcdefghijklmnopqrstuvwxyz")
    assert run.run_dir == os.path.join(str(tmp_path), "proj", f"my_run-{run.id}")
    assert run.dir == os.path.join(run.run_dir, "files") and os.path.isdir(run.dir)
    assert run.name == "my run" and run.tags == ("t1",) and run.url is None and run.path.endswith(f"proj/{run.id}")
    cfg = json.load(open(os.path.join(run.run_dir, "config.yaml")))
    assert cfg == {"lr": {"value": 0.1}, "opt": {"value": {"name": "adam"}}}
    run.config.update({"bs": 32})
    assert json.load(open(os.path.join(run.run_dir, "config.yaml")))["bs"] == {"value": 32}
    yaml = pytest.importorskip("yaml")
    assert yaml.safe_load(open(os.path.join(run.run_dir, "config.yaml")))["bs"] == {"value": 32}
    run.log({"loss": 0.5})
    run_dir = run.run_dir
    run.finish()
    assert get_run() is None
    meta = json.load(open(os.path.join(run_dir, "metadata.json")))
    assert meta["id"] == run.id and meta["project"] == "proj" and meta["tags"] == ["t1"]
    assert meta["notes"] == "n" and meta["group"] == "g" and meta["job_type"] == "train"
    assert meta["exit_code"] == 0 and meta["end_time"] and meta["start_time"] and meta["host"] and meta["python"]
    assert isinstance(meta["command"], list)
    assert json.load(open(os.path.join(run_dir, "summary.json")))["loss"] == 0.5


def test_defaults_and_generated_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = init()
    assert run.project == "uncategorized" and run.run_dir.startswith(os.path.join(str(tmp_path), "uncategorized"))
    assert run.name and os.path.basename(run.run_dir) == f"{run.name}-{run.id}"
    run.finish()
    monkeypatch.setenv("WANDB_PROJECT", "envproj")
    run = init(dir=tmp_path)
    assert run.project == "envproj"


def test_hparams_written_at_finish(tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    run = init(project="p", dir=tmp_path, config={"lr": 0.1, "opt": {"name": "adam"}, "layers": [1, 2]})
    for i in range(3):
        run.log({"loss": 1.0 / (i + 1)})
    run_dir = run.run_dir
    run.finish()
    acc = accumulator(run_dir)
    content = acc.PluginTagToContent("hparams")
    start = [plugin_data_pb2.HParamsPluginData.FromString(c) for c in content.values()]
    session = [d.session_start_info for d in start if d.HasField("session_start_info")][0]
    assert session.hparams["lr"].number_value == 0.1
    assert session.hparams["opt.name"].string_value == "adam"
    assert session.hparams["layers"].string_value == "[1, 2]"
    experiment = [d.experiment for d in start if d.HasField("experiment")][0]
    assert {m.name.tag for m in experiment.metric_infos} == {"summary/loss"}
    assert scalars(run_dir)["summary/loss"] == {2: pytest.approx(1 / 3)}
    assert scalars(run_dir)["loss"] == pytest.approx({0: 1.0, 1: 0.5, 2: 1 / 3})


# -- module functions, reinit, disabled ------------------------------------------------------


def test_module_functions_before_and_after_init(tmp_path):
    with pytest.raises(Error, match=r"You must call wandb.init\(\) before wandb.log\(\)"):
        runmod.log({"a": 1})
    with pytest.raises(Error, match=r"before wandb.define_metric\(\)"):
        runmod.define_metric("a")
    runmod.finish()  # no run: nothing happens, as W&B
    with pytest.raises(Error, match=r"before wandb.config.lr"):
        runmod.PREINIT_CONFIG.lr
    run = init(project="p", dir=tmp_path)
    runmod.log({"a": 1})
    runmod.log({"a": 2})
    runmod.finish()
    assert get_run() is None and run.finished
    assert scalars(run.run_dir)["a"] == {0: 1.0, 1: 2.0}


def test_package_globals(tmp_path):
    import tbx

    run = init(project="p", dir=tmp_path)
    assert tbx.run is run and tbx.config is run.config and tbx.summary is run.summary
    run.finish()
    assert tbx.run is None and tbx.config is runmod.PREINIT_CONFIG


def test_reinit(tmp_path):
    first = init(project="p", dir=tmp_path)
    assert init(project="p", dir=tmp_path) is first
    second = init(project="p", dir=tmp_path, reinit="finish_previous")
    assert second is not first and first.finished and get_run() is second
    third = init(project="p", dir=tmp_path, reinit="create_new")
    assert third is not second and get_run() is second and not third.finished
    with pytest.raises(UsageError, match="reinit"):
        init(reinit="sometimes")


def test_disabled_mode(tmp_path):
    run = init(project="p", dir=tmp_path, mode="disabled", config={"lr": 1})
    assert run.disabled and run.config.lr == 1
    run.config.b = 2
    run.summary["y"] = 3
    assert run.summary["y"] == 3
    run.log({"a": 1})
    run.log({"a": 1}, step=10)
    run.define_metric("a", summary="max")
    run.finish()
    run.finish()
    assert not os.path.exists(tmp_path / "p")


def test_bad_init_arguments(tmp_path):
    with pytest.raises(UsageError, match="mode"):
        init(mode="sideways", dir=tmp_path)
    with pytest.raises(UsageError, match="resume"):
        init(resume="maybe", dir=tmp_path)
    with pytest.raises(UsageError, match="id"):
        init(id="a/b", dir=tmp_path)
    with pytest.raises(UsageError, match="project"):
        init(project="a:b", dir=tmp_path)
    assert get_run() is None


def test_context_manager_exit_codes(tmp_path):
    with init(project="p", dir=tmp_path) as run:
        run.log({"a": 1})
    assert run.exit_code == 0 and get_run() is None
    with pytest.raises(RuntimeError):
        with init(project="p", dir=tmp_path) as run2:
            raise RuntimeError("boom")
    meta = json.load(open(os.path.join(run2.run_dir, "metadata.json")))
    assert meta["exit_code"] == 1 and meta["state"] == "failed"
    run3 = init(project="p", dir=tmp_path)
    run3.finish(exit_code=2)
    run3.finish(exit_code=5)  # idempotent
    assert json.load(open(os.path.join(run3.run_dir, "metadata.json")))["exit_code"] == 2


SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from tbx.run import init
run = init(project="p", dir={dir!r}, id="abc12345")
for i in range(50):
    run.log({{"a": i}})
run.log({{"b": 1}}, commit=False)
{ending}
"""


@pytest.mark.parametrize("ending,rc,exit_code", [
    ("", 0, 0),
    ("raise ValueError('x')", 1, 1),
    ("sys.exit(3)", 3, 3),
    ("sys.exit()", 0, 0),
])
def test_exit_codes_at_interpreter_exit(tmp_path, ending, rc, exit_code):
    code = SCRIPT.format(root=ROOT, dir=str(tmp_path), ending=ending)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == rc, proc.stderr
    run_dir = glob.glob(os.path.join(str(tmp_path), "p", "*-abc12345"))[0]
    meta = json.load(open(os.path.join(run_dir, "metadata.json")))
    assert meta["exit_code"] == exit_code
    got = scalars(run_dir)
    assert got["a"] == {i: float(i) for i in range(50)} and got["b"] == {50: 1.0}  # nothing lost
    assert json.load(open(os.path.join(run_dir, "summary.json")))["b"] == 1


# -- resume -----------------------------------------------------------------------------------


def test_resume_continues_one_series(tmp_path):
    run = init(project="p", dir=tmp_path, id="resume01", name="r", config={"lr": 0.1})
    for i in range(5):
        run.log({"a": i})
    run.finish()
    run_dir = run.run_dir
    run = init(project="p", dir=tmp_path, id="resume01", resume="must")
    assert run.resumed and run.run_dir == run_dir and run.step == 5 and run.name == "r"
    assert run.config.lr == 0.1
    for i in range(5, 8):
        run.log({"a": i})
    run.finish()
    assert len(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))) == 2
    assert scalars(run_dir)["a"] == {i: float(i) for i in range(8)}
    assert tb_scalars(run_dir, "a") == {i: float(i) for i in range(8)}
    meta = json.load(open(os.path.join(run_dir, "metadata.json")))
    assert len(meta["sessions"]) == 2 and meta["resumed"]


def test_resume_after_crash_purges_unfinished_tail(tmp_path):
    # a crashed session: no finish, so the next step comes from the event files
    code = SCRIPT.format(root=ROOT, dir=str(tmp_path), ending="import os; os._exit(0)")
    code = code.replace('run.log({"b": 1}, commit=False)', "run._writer.flush()")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    run = init(project="p", dir=tmp_path, id="abc12345", resume="allow")
    assert run.step == 50
    run.log({"a": 100})
    run_dir = run.run_dir
    run.finish()
    assert tb_scalars(run_dir, "a")[50] == 100.0 and len(tb_scalars(run_dir, "a")) == 51


def test_resume_must_and_never(tmp_path):
    with pytest.raises(UsageError, match="must"):
        init(project="p", dir=tmp_path, id="nothere1", resume="must")
    run = init(project="p", dir=tmp_path, id="exists01")
    run.finish()
    with pytest.raises(UsageError, match="never"):
        init(project="p", dir=tmp_path, id="exists01", resume="never")
    assert get_run() is None


def test_resume_auto(tmp_path):
    run = init(project="p", dir=tmp_path, resume="auto")
    run.log({"a": 1})
    run.finish(exit_code=1)  # failed: the next auto init resumes it
    again = init(project="p", dir=tmp_path, resume="auto")
    assert again.id == run.id and again.resumed and again.step == 1
    again.finish()  # exit code 0: forgotten
    fresh = init(project="p", dir=tmp_path, resume="auto")
    assert fresh.id != run.id
