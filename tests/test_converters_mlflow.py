"""The MLflow backend of ``tbx sync`` against a real MLflow (server and sqlite store).

- Export: a run with every kind (NaN, ±inf, repeated points, keys MLflow
  refuses, long params and tags, histograms, media, text, tensors, files)
  goes through the destination run's steps by hand; reading it back must
  equal ``expected()`` exactly, and MLflow's own client must see the
  documented layout (keys, cut params, ±DBL_MAX, artifacts).
- Import: runs made with ``MlflowClient`` directly (metrics, params, notes,
  ``log_image(key=, step=)``, loose images and files).
- End to end through the engine with the tfevents backend, including a
  server restart in the middle of a sync.
- Bad input: unreachable or foreign servers, missing experiments, bad URIs,
  changed params, vanished runs.

One server serves the whole module; each test uses its own experiment.
"""

from __future__ import annotations

import http.server
import io
import math
import os
import sys
import threading
import time
import uuid

import numpy as np
import pytest

from mlflow_server import MlflowServer, free_port

mlflow = pytest.importorskip("mlflow", reason="the MLflow backend needs mlflow (pip install tbx-board[mlflow])")
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow.utils.uri import validate_path_is_safe  # noqa: E402
from mlflow.utils.validation import _validate_metric_name  # noqa: E402
from PIL import Image  # noqa: E402

import tbx  # noqa: E402
from tbx.converters import mlflow as mlb  # noqa: E402
from tbx.converters.base import ConnectError, SyncError, UsageError  # noqa: E402
from tbx.converters.engine import sync  # noqa: E402
from tbx.converters.model import File, Histogram, Media, RawValue, RunData, Scalars, Text, same_float  # noqa: E402
from tbx.converters.report import RunReport  # noqa: E402
from tbx.converters.tfevents import TfeventsDestination, TfeventsSource  # noqa: E402

WALL0 = 1_700_000_000.0
INF = math.inf
NAN = math.nan
DBL_MAX = 1.7976931348623157e308


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with MlflowServer(tmp_path_factory.mktemp("mlflow-server")) as s:
        yield s


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    """A local MLflow database shared by the module (making one runs MLflow's migrations, ~2 s)."""
    return tmp_path_factory.mktemp("mlflow-sqlite") / "mlflow.db"


def _name(prefix="exp"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _png(w, h, color):
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, "PNG")
    return buf.getvalue()


def rich_run(key="run/one"):
    """A run with something of every kind, and every value MLflow has trouble with."""
    run = RunData(key=key, name="run one", start_time=WALL0 + 0.0004, end_time=WALL0 + 99.5,
                  params={"lr": 0.01, "layers": 3, "use bn": True, "long": "p" * 7000, "bad|key": "x"},
                  tags={"team": "vision", "odd,tag": "1", "long tag": "t" * 6000, "mlflow.user": "someone"},
                  labels=["baseline", "v2!"],
                  notes="first try", group="g1", job_type="train")
    run.scalars["loss"] = Scalars(
        [0, 1, 2, 2, 3, 4, 5],
        [WALL0 + 1.0004, WALL0 + 2.0, WALL0 + 3.0, WALL0 + 3.0, WALL0 + 4.0, WALL0 + 5.0, WALL0 + 6.0],
        [0.5, NAN, INF, INF, -INF, DBL_MAX, -0.0])
    run.scalars["acc@top1"] = Scalars([0, 1], [WALL0, WALL0 + 1], [0.1, 0.2])
    run.scalars["../up"] = Scalars([0], [WALL0], [1.0])
    run.scalars["a/" + "x" * 300] = Scalars([0], [WALL0], [2.0])
    run.scalars["acc_top1"] = Scalars([0], [WALL0], [3.0])  # what acc@top1 would become
    run.scalars["late"] = Scalars([5, 1], [WALL0 + 9, WALL0 + 1], [1.0, 2.0])  # time order differs from source
    for step in range(3):
        run.add("histograms", "w/layer 1", Histogram(step, WALL0 + step, [-INF, 0.0, 1.5, 3.0], [1, 2 + step, 3]))
    run.add("images", "img/sample", Media(1, WALL0 + 1, _png(4, 3, "red"), "png", 0, 4, 3, caption="red"))
    run.add("images", "img/sample", Media(1, WALL0 + 1, _png(4, 3, "blue"), "png", 1, 4, 3))
    run.add("images", "img/sample", Media(1, WALL0 + 2, _png(4, 3, "green"), "png", 0, 4, 3))  # step 1 again
    run.add("images", "weird:tag?", Media(2, WALL0 + 2, _png(2, 2, "white"), "png", 0, 2, 2))
    run.add("audio", "snd", Media(3, WALL0 + 3, b"RIFF\x00\x00\x00\x00WAVEdata", "wav", 0, sample_rate=8000.0))
    run.add("video", "vid", Media(4, WALL0 + 4, b"GIF89a...", "gif", 0, 8, 8))
    run.add("text", "note", Text(5, WALL0 + 5, "hello **world** ü"))
    run.add("tensors", "pr", RawValue(6, WALL0 + 6, "pr_curves", bytes(range(256))))
    run.files.append(File("projector/config.pbtxt", b"embeddings {}"))
    run.files.append(File("odd dir/na:me?.txt", b"\x00\x01"))
    return run


def carry(dest, run, state=None, split=None):
    """The engine's steps by hand; ``split`` writes only that fraction of each tag."""
    report = RunReport(run.name, run.key)
    d = dest.open_run(run, state)
    exp = d.expected(run, report)
    d.write_meta(exp)
    for kind in ("scalars", "histograms", "images", "audio", "video", "text", "tensors"):
        for tag, items in exp.items(kind):
            n = len(items) if split is None else int(len(items) * split)
            if n:
                d.write(kind, tag, items[:n])
    for f in exp.files:
        d.write("files", f.path, [f])
    d.commit()
    if split is None:
        d.finish(exp)
    return d, exp, report


def assert_same_run(back, exp):
    assert set(back.scalars) == set(exp.scalars)
    for tag, s in exp.scalars.items():
        b = back.scalars[tag]
        assert b.steps.tolist() == s.steps.tolist(), tag
        assert same_float(b.values, s.values).all(), (tag, b.values, s.values)
        assert b.wall_times.tolist() == s.wall_times.tolist(), tag
    for kind in ("histograms", "images", "audio", "video", "text", "tensors"):
        assert set(back.series.get(kind, {})) == set(exp.series.get(kind, {})), kind
        for tag, items in exp.items(kind):
            got = back.series[kind][tag]
            assert len(got) == len(items), (kind, tag)
            for a, b in zip(items, got):
                assert a.same(b), (kind, tag, a.step)
                assert a.wall_time == b.wall_time
                if kind in ("images", "audio", "video"):
                    assert (a.fmt, a.width, a.height, a.sample_rate, a.caption) == \
                        (b.fmt, b.width, b.height, b.sample_rate, b.caption)
    assert back.params == exp.params
    assert back.tags.items() >= exp.tags.items()
    assert (back.labels, back.notes, back.group, back.job_type) == (exp.labels, exp.notes, exp.group, exp.job_type)
    assert sorted((f.path, f.data) for f in back.files) == sorted((f.path, f.data) for f in exp.files)


# --- names -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["loss", "../x", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "..x/y",
                                  "x" * 300, "ä/中文", "loss@top1", "", "a\\b", "tab\there", "a/" + "/" * 300])
def test_keys_pass_mlflows_own_validation(name):
    key = mlb.mlflow_key(name)
    _validate_metric_name(key)
    assert len(key) <= 250
    if name in ("loss", "ä/中文"):
        assert key == name  # valid names are kept


def test_key_assignment_is_unique_deterministic_and_keeps_earlier_choices():
    names = ["a(b)", "a[b]", "a_b_", "ok"]
    keys = mlb.assign_keys(names)
    assert keys["a_b_"] == "a_b_" and keys["ok"] == "ok"
    assert len(set(keys.values())) == 4
    assert mlb.assign_keys(list(reversed(names))) == keys
    # A manifest from an earlier sync gave a(b) the plain key: it keeps it, the newcomer moves.
    again = mlb.assign_keys(names, fixed={"a(b)": "a_b_"})
    assert again["a(b)"] == "a_b_" and again["a_b_"] != "a_b_"


@pytest.mark.parametrize("name", ["img/x", "../../etc/passwd", "/abs", "a:b?c", "中文", "a//b/", "."])
def test_artifact_paths_are_safe(name):
    path = mlb.safe_path(name)
    assert validate_path_is_safe(path) == path
    assert not path.startswith("/") and ".." not in path.split("/")


# --- export ------------------------------------------------------------------------------------------

def _check_export(uri, experiment):
    run = rich_run()
    dest = mlb.MlflowDestination(uri, experiment)
    dest.check()
    d, exp, report = carry(dest, run)
    assert not d.existing
    back = d.read_back()
    assert_same_run(back, exp)

    # What expected() promised: ms wall times, MLflow's order, repeats once, inf kept.
    loss = exp.scalars["loss"]
    assert loss.steps.tolist() == [0, 1, 2, 3, 4, 5]
    assert loss.wall_times[0] == WALL0 + 1.0
    assert np.isinf(loss.values[2:5]).tolist() == [True, True, True]
    assert exp.scalars["late"].steps.tolist() == [1, 5]
    sc = report.kinds["scalars"].transformed
    assert sc["exact repeat of a point (same step, ms and value): stored once"] == 1
    assert sc["±inf stored as ±DBL_MAX, restored on import"] == 3
    assert sc["±DBL_MAX reads back as ±inf (MLflow stores ±inf as ±DBL_MAX)"] == 1
    assert sc["key changed to fit MLflow's rules"] == 4  # acc@top1 (2 points), ../up, the long one
    assert sc["logged out of time order: MLflow keeps it at its time"] == 1  # late's second point
    assert report.kinds["params"].transformed == {
        "key changed to fit MLflow's rules": 1,
        "value over 6000 characters: cut in MLflow, full text in tbx/manifest.json": 1}
    assert report.kinds["tags"].transformed["value over 5000 characters: cut in MLflow, full text in "
                                            "tbx/manifest.json"] == 1
    assert report.kinds["tags"].dropped == {"name reserved for MLflow's and tbx's own tags (mlflow.*, tbx.*)": 1}
    assert "mlflow.user" not in exp.tags

    # What MLflow itself holds.
    client = MlflowClient(uri)
    raw = client.get_run(d.run_id)
    assert raw.info.run_name == "run one" and raw.info.status == "FINISHED"
    assert raw.info.start_time == round((WALL0 + 0.0004) * 1000) and raw.info.end_time == (WALL0 + 99.5) * 1000
    assert raw.data.tags["tbx.source_key"] == "run/one"
    keys = set(raw.data.metrics)
    assert {"loss", "late", "acc_top1"} <= keys and "acc@top1" not in keys and len(keys) == 6
    for key in keys:
        _validate_metric_name(key)
    hist = client.get_metric_history(d.run_id, "loss")
    assert [m.step for m in hist] == [0, 1, 2, 3, 4, 5]
    assert [m.value for m in hist][2:5] == [DBL_MAX, -DBL_MAX, DBL_MAX]
    assert len(raw.data.params["long"]) == 6000 and raw.data.params["lr"] == "0.01"
    assert len(raw.data.tags["long tag"]) == 5000
    assert raw.data.tags["mlflow.note.content"] == "first try"
    assert raw.data.tags["tbx.label.v2_"] == "v2!" and raw.data.tags["tbx.group"] == "g1"
    listed = {f.path for f in client.list_artifacts(d.run_id, "tbx")}
    assert {"tbx/manifest.json", "tbx/images", "tbx/histograms", "tbx/audio", "tbx/video", "tbx/text",
            "tbx/tensors"} <= listed
    images = {f.path for f in client.list_artifacts(d.run_id, "tbx/images/img/sample")}
    assert images == {"tbx/images/img/sample/1_0.png", "tbx/images/img/sample/1_1.png",
                      "tbx/images/img/sample/1_0_1.png"}
    assert client.list_artifacts(d.run_id, "files/projector")[0].path == "files/projector/config.pbtxt"
    return d, exp


def test_export_reads_back_exactly_and_mlflow_holds_the_layout(server):
    _check_export(server.uri, _name())


def test_export_to_sqlite_store_without_server(sqlite_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d, _exp = _check_export(f"sqlite:///{sqlite_store}", "local")
    assert not os.listdir(tmp_path)  # no ./mlruns: artifacts live beside the database
    assert (sqlite_store.parent / "mlartifacts" / "local" / d.run_id / "artifacts" / "tbx" / "manifest.json").exists()


def test_interrupted_export_resumes_into_the_same_run(server):
    uri, experiment = server.uri, _name()
    dest = mlb.MlflowDestination(uri, experiment)
    first = rich_run()
    del first.scalars["acc_top1"]  # joins later and must not steal acc@top1's key
    d1, _exp1, _ = carry(dest, first, split=0.5)
    d1.close()

    run = rich_run()
    report = RunReport(run.name, run.key)
    d2 = mlb.MlflowDestination(uri, experiment).open_run(run, None)  # no ledger: found by its tag
    assert d2.existing and d2.run_id == d1.run_id
    exp = d2.expected(run, report)
    have = d2.read_back()
    d2.write_meta(exp)
    for kind in ("scalars", "histograms", "images", "audio", "video", "text", "tensors"):
        for tag, items in exp.items(kind):
            done = len(have.series.get(kind, {}).get(tag, []))
            assert done <= len(items)
            if done < len(items):
                d2.write(kind, tag, items[done:])
    for f in exp.files:
        d2.write("files", f.path, [f])
    d2.commit()
    d2.finish(exp)
    assert_same_run(d2.read_back(), exp)

    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    assert len(client.search_runs([exp_id])) == 1
    raw = client.get_run(d1.run_id).data.metrics
    # acc@top1 got the key acc_top1 first and keeps it; the later plain acc_top1 takes a hashed key.
    assert raw["acc_top1"] == 0.2
    assert [v for k, v in raw.items() if k.startswith("acc_top1_")] == [3.0]
    assert len(client.get_metric_history(d1.run_id, "loss")) == 6
    # Resuming with the ledger's state opens the same run without searching.
    d3 = mlb.MlflowDestination(uri, experiment).open_run(run, d2.state)
    assert d3.run_id == d1.run_id and not d3.existing


def test_changed_param_is_refused_naming_it(server):
    dest = mlb.MlflowDestination(server.uri, _name())
    carry(dest, RunData(key="k", name="k", params={"lr": 0.1}))
    with pytest.raises(mlb.MlflowError, match="lr"):
        carry(dest, RunData(key="k", name="k", params={"lr": 0.2}))


def test_parallel_syncs_share_one_new_experiment(server):
    name = _name()
    barrier = threading.Barrier(4)
    ids = []

    def resolve():
        dest = mlb.MlflowDestination(server.uri, name)
        barrier.wait()
        ids.append(dest.experiment_id())

    threads = [threading.Thread(target=resolve) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 4 and len(set(ids)) == 1


def test_deleted_experiment_is_named(server):
    name = _name()
    client = MlflowClient(server.uri)
    client.delete_experiment(client.create_experiment(name))
    with pytest.raises(SyncError, match=f"experiment '{name}' at {server.uri} is deleted"):
        mlb.MlflowDestination(server.uri, name).check()
    with pytest.raises(SyncError, match=f"experiment '{name}' at {server.uri} is deleted"):
        mlb.MlflowDestination(server.uri, name).open_run(RunData(key="k", name="k"), None)
    with pytest.raises(SyncError, match=f"experiment '{name}' is deleted"):
        mlb.MlflowSource(server.uri, experiment=name).list_runs()


def test_ledger_state_naming_a_vanished_run_is_an_error(server):
    dest = mlb.MlflowDestination(server.uri, _name())
    with pytest.raises(mlb.MlflowError, match="gone from"):
        dest.open_run(RunData(key="k", name="k"), {"run_id": "0" * 32})


# --- import ------------------------------------------------------------------------------------------

def _foreign_run(uri, experiment, tmp_path):
    """A run as MLflow users make them, with MLflow's client only."""
    client = MlflowClient(uri)
    exp_id = client.create_experiment(experiment)
    run = client.create_run(exp_id, run_name="foreign", start_time=1_700_000_000_000)
    rid = run.info.run_id
    t0 = 1_700_000_000_000
    client.log_batch(rid, metrics=[Metric("loss", 1.0 / (i + 1), t0 + 10 * i, i) for i in range(30)]
                     + [Metric("loss", 9.0, t0, 0), Metric("sentinel", INF, t0, 0)],
                     params=[Param("lr", "0.1")],
                     tags=[RunTag("team", "x"), RunTag("mlflow.note.content", "notes!")])
    pixels = [np.full((4, 5, 3), v, np.uint8) for v in (10, 20, 30)]
    client.log_image(rid, pixels[0], key="samples/a", step=3, timestamp=t0 + 1)
    client.log_image(rid, pixels[1], key="samples/a", step=3, timestamp=t0 + 2)
    client.log_image(rid, pixels[2], key="samples/a", step=5, timestamp=t0 + 3)
    png = tmp_path / "cm.png"
    Image.new("RGB", (6, 2), "red").save(png)
    client.log_artifact(rid, str(png), "plots")
    client.log_text(rid, "hello", "docs/readme.txt")
    client.set_terminated(rid, "FINISHED", end_time=t0 + 5000)
    return rid, pixels


def _check_import(uri, tmp_path):
    experiment = _name("foreign")
    rid, pixels = _foreign_run(uri, experiment, tmp_path)
    source = mlb.MlflowSource(uri, experiment=experiment)
    source.check()
    refs = source.list_runs()
    assert [(r.key, r.name) for r in refs] == [(rid, "foreign")]
    report = RunReport("foreign", rid)
    run = source.read_run(refs[0], report)

    assert (run.name, run.project, run.status) == ("foreign", experiment, "FINISHED")
    assert (run.start_time, run.end_time) == (1_700_000_000.0, 1_700_000_005.0)
    assert run.params == {"lr": "0.1"} and run.tags == {"team": "x"} and run.notes == "notes!"
    loss = run.scalars["loss"]
    assert len(loss) == 31  # every point: a history is never sampled
    assert loss.steps[:2].tolist() == [0, 0] and loss.values[:2].tolist() == [1.0, 9.0]
    assert loss.wall_times[-1] == 1_700_000_000.29
    assert run.scalars["sentinel"].values.tolist() == [DBL_MAX]  # not written by tbx: kept as stored
    assert any("±1.797e308" in p for p in report.problems)

    images = run.series["images"]["samples/a"]
    assert [(m.step, m.index, m.width, m.height) for m in images] == [(3, 0, 5, 4), (3, 1, 5, 4), (5, 0, 5, 4)]
    assert images[0].wall_time == 1_700_000_000.001
    for m, want in zip(images, pixels):
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(m.data))), want)
    assert report.kinds["images"].transformed == {
        "MLflow's compressed preview not imported (the full image is)": 3}
    plot = run.series["images"]["plots/cm"]
    assert [(m.step, m.fmt, m.width, m.height) for m in plot] == [(0, "png", 6, 2)]
    assert [(f.path, f.data) for f in run.files] == [("docs/readme.txt", b"hello")]

    exp_id = MlflowClient(uri).get_experiment_by_name(experiment).experiment_id
    assert [r.key for r in mlb.MlflowSource(uri, experiment_id=exp_id).list_runs()] == [rid]
    assert [r.key for r in mlb.MlflowSource(uri, experiment=experiment, experiment_id=exp_id).list_runs()] == [rid]
    with pytest.raises(UsageError, match=f"has id {exp_id}, not 12345"):
        mlb.MlflowSource(uri, experiment=experiment, experiment_id="12345").list_runs()


def test_import_of_runs_made_with_mlflows_client(server, tmp_path):
    _check_import(server.uri, tmp_path)


def test_import_from_sqlite_store(sqlite_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's own client puts artifacts under ./mlruns here
    _check_import(f"sqlite:///{sqlite_store}", tmp_path)


def test_import_filter_string_and_round_trip_of_a_tbx_run(server):
    uri, experiment = server.uri, _name()
    dest = mlb.MlflowDestination(uri, experiment)
    _d, exp, _ = carry(dest, rich_run("a"))
    carry(dest, RunData(key="b", name="other", params={"lr": 5}))
    source = mlb.MlflowSource(uri, experiment=experiment, filter_string="params.lr = '0.01'")
    refs = source.list_runs()
    assert [r.name for r in refs] == ["run one"]
    back = source.read_run(refs[0], RunReport("run one", refs[0].key))
    assert_same_run(back, exp)  # restored names, full params and tags, ±inf, every media field


# --- bad input -----------------------------------------------------------------------------------------

def test_unreachable_server_fails_fast_naming_the_uri(monkeypatch):
    monkeypatch.setattr(mlb, "CHECK_BUDGET_S", 0.5)
    uri = f"http://127.0.0.1:{free_port()}"
    for endpoint in (mlb.MlflowSource(uri, experiment="e"), mlb.MlflowDestination(uri, "e")):
        with pytest.raises(ConnectError, match=f"MLflow at {uri} could not be reached.*Connection refused"):
            endpoint.check()


def test_a_server_that_is_not_mlflow_is_named():
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b"nothing here")

        do_POST = do_GET

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        uri = f"http://127.0.0.1:{httpd.server_port}"
        with pytest.raises(SyncError, match=f"{uri} does not answer like an MLflow tracking server"):
            mlb.MlflowDestination(uri, "e").check()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_missing_experiment_is_named_with_some_that_exist(server):
    known = _name("known")
    MlflowClient(server.uri).create_experiment(known)
    with pytest.raises(SyncError, match=f"experiment 'nope' not found at {server.uri}.*'{known}'"):
        mlb.MlflowSource(server.uri, experiment="nope").check()
    with pytest.raises(SyncError, match="experiment id '987654' not found"):
        mlb.MlflowSource(server.uri, experiment_id="987654").list_runs()


@pytest.mark.parametrize("uri", ["runs/", "mlflow.db", "http://", "sqlite://", "C:\\mlflow.db"])
def test_bad_tracking_uris_are_refused(uri):
    with pytest.raises(UsageError, match="is not supported: expected http"):
        mlb.MlflowDestination(uri, "e")


def test_missing_mlflow_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # what an absent package looks like to import
    with pytest.raises(SyncError, match=r'pip install "tbx-board\[mlflow\]"'):
        mlb.MlflowDestination("http://127.0.0.1:5000", "e").check()


def test_bad_endpoint_arguments(tmp_path):
    with pytest.raises(UsageError, match="by name or by id"):
        mlb.MlflowSource("http://127.0.0.1:5000")
    with pytest.raises(UsageError, match="name of the MLflow experiment"):
        mlb.MlflowDestination("http://127.0.0.1:5000", "")
    missing = tmp_path / "none.db"
    with pytest.raises(SyncError, match=f"no MLflow database at {missing}"):
        mlb.MlflowSource(f"sqlite:///{missing}", experiment="e").check()
    assert not missing.exists()  # checking must not create an empty store
    with pytest.raises(SyncError, match="does not exist"):
        mlb.MlflowDestination(f"sqlite:///{tmp_path}/no/such/dir/m.db", "e").check()


# --- end to end through the engine -----------------------------------------------------------------------

def _logdir(root, steps=range(5), scalars_only=False):
    w = tbx.SummaryWriter(str(root))
    for step in steps:
        w.add_scalar("loss", 1.0 / (step + 1), step, walltime=WALL0 + step)
        w.add_scalar("acc@top1", step / 10, step, walltime=WALL0 + step)
    if not scalars_only:
        w.add_scalar("loss", NAN, 100, walltime=WALL0 + 100)
        w.add_scalar("loss", INF, 101, walltime=WALL0 + 101)
        w.add_histogram("w", np.arange(20.0), 1, walltime=WALL0 + 1)
        w.add_image("img", np.zeros((3, 4, 5), np.uint8), 2, walltime=WALL0 + 2)
        w.add_text("note", "hi", 3, walltime=WALL0 + 3)
    w.close()


def test_sync_tfevents_to_mlflow_incrementally_and_back(server, tmp_path):
    logdir, back_dir = tmp_path / "logs", tmp_path / "back"
    _logdir(logdir / "r1")
    experiment = _name()
    dest = mlb.MlflowDestination(server.uri, experiment)
    ledger = str(tmp_path / "ledger.sqlite")

    report = sync(TfeventsSource(str(logdir)), dest, ledger=ledger)
    assert report.exit_code() == 0, report.as_dict()
    totals = report.as_dict()["totals"]
    assert totals["scalars"]["verified"] == totals["scalars"]["read"] == 12
    for kind in ("histograms", "images", "text"):
        assert totals[kind]["verified"] == 1

    again = sync(TfeventsSource(str(logdir)), mlb.MlflowDestination(server.uri, experiment), ledger=ledger)
    assert again.as_dict()["counts"]["up_to_date"] == 1

    _logdir(logdir / "r1", steps=range(200, 203), scalars_only=True)  # the run grows
    grown = sync(TfeventsSource(str(logdir)), mlb.MlflowDestination(server.uri, experiment), ledger=ledger)
    assert grown.exit_code() == 0, grown.as_dict()
    assert grown.as_dict()["totals"]["scalars"]["written"] == 6
    client = MlflowClient(server.uri)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 10

    home = sync(mlb.MlflowSource(server.uri, experiment=experiment), TfeventsDestination(str(back_dir)),
                ledger=str(tmp_path / "ledger2.sqlite"))
    assert home.exit_code() == 0, home.as_dict()
    original = TfeventsSource(str(logdir))
    (ref,) = original.list_runs()
    want = original.read_run(ref, RunReport("", ""))
    copy = TfeventsSource(str(back_dir))
    (ref2,) = copy.list_runs()
    got = copy.read_run(ref2, RunReport("", ""))
    for tag in ("loss", "acc@top1"):
        a, b = want.scalars[tag], got.scalars[tag]
        assert b.steps.tolist() == a.steps.tolist()
        assert same_float(b.values, a.values).all()
        assert np.abs(b.wall_times - a.wall_times).max() <= 0.0005
    for kind in ("histograms", "images", "text"):
        for tag, items in want.items(kind):
            assert all(x.same(y) for x, y in zip(items, got.series[kind][tag]))


def test_sync_survives_a_server_restart_midway(server, tmp_path):
    logdir = tmp_path / "logs"
    _logdir(logdir / "big", steps=range(5_000), scalars_only=True)
    experiment = _name()
    client = MlflowClient(server.uri)
    result = {}

    def run_sync():
        try:
            result["report"] = sync(TfeventsSource(str(logdir)), mlb.MlflowDestination(server.uri, experiment),
                                    ledger=str(tmp_path / "ledger.sqlite"), commit_every=1_000)
        except BaseException as exc:  # handed to the test thread
            result["error"] = exc

    thread = threading.Thread(target=run_sync)
    thread.start()
    try:
        while not result:  # wait for the first points to land, then pull the plug
            exp = client.get_experiment_by_name(experiment)
            runs = client.search_runs([exp.experiment_id]) if exp else []
            if runs and runs[0].data.metrics:
                break
            thread.join(0.05)
        server.stop()
        assert thread.is_alive(), "the sync finished before the server went down"
        server.start()
    finally:
        thread.join(120)
    assert "error" not in result, result.get("error")
    report = result["report"]
    assert report.exit_code() == 0, report.as_dict()
    totals = report.as_dict()["totals"]["scalars"]
    assert totals["read"] == totals["verified"] == 10_000
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    (run,) = client.search_runs([exp_id])
    for key in ("loss", "acc_top1"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == list(range(5_000))  # each point exactly once


def test_nested_config_is_flattened_and_summary_kept(server):
    """W&B-style nested config becomes dotted params; the summary survives in the manifest."""
    run = RunData(key="nested", name="nested", params={"opt": {"lr": 0.1, "betas": [0.9, 0.99]}, "epochs": 3},
                  summary={"best_acc": 0.93, "note": "ok", "nan": float("nan")})
    run.scalars["acc"] = Scalars([0, 1], [1.7e9, 1.7e9 + 1], [0.5, 0.93])
    dest = mlb.MlflowDestination(server.uri, _name())
    d, exp, report = carry(dest, run)
    try:
        assert exp.params == {"opt.lr": "0.1", "opt.betas": "[0.9, 0.99]", "epochs": "3"}
        assert report.kinds["params"].transformed == {"nested config flattened to dotted keys (a.b)": 2}
        held = MlflowClient(server.uri).get_run(d.run_id).data.params
        assert held == {"opt.lr": "0.1", "opt.betas": "[0.9, 0.99]", "epochs": "3"}
        back = d.read_back()
        assert back.summary["best_acc"] == 0.93 and back.summary["note"] == "ok"
        assert back.summary["nan"] != back.summary["nan"]
    finally:
        d.close()


_KILLABLE_SYNC = """
import sys
from tbx.converters.engine import sync
from tbx.converters.mlflow import MlflowDestination
from tbx.converters.tfevents import TfeventsSource
report = sync(TfeventsSource(sys.argv[1]), MlflowDestination(sys.argv[2], sys.argv[3]), ledger=sys.argv[4],
              commit_every=500)
sys.exit(report.exit_code())
"""


def test_sync_killed_midway_resumes_with_every_point_once(server, tmp_path):
    """SIGKILL a `tbx sync` to MLflow after its first commits, run it again: no gap, no duplicate."""
    import signal
    import sqlite3
    import subprocess

    logdir = tmp_path / "logs"
    for name in ("r1", "r2", "r3"):
        _logdir(logdir / name, steps=range(3_000), scalars_only=True)
    experiment, ledger = _name(), str(tmp_path / "ledger.sqlite")
    args = [sys.executable, "-c", _KILLABLE_SYNC, str(logdir), server.uri, experiment, ledger]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if os.path.exists(ledger):
                try:
                    with sqlite3.connect(ledger) as db:
                        if db.execute("SELECT count(*) FROM runs").fetchone()[0]:
                            break  # at least one commit recorded: the sync is mid-way
                except sqlite3.Error:
                    pass
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL, "the sync ended before it could be killed mid-way"
    finally:
        if proc.poll() is None:
            proc.kill()
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    client = MlflowClient(server.uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["r1", "r2", "r3"]  # no run created twice
    for run in runs:
        for key in ("loss", "acc_top1"):
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(3_000)), (run.info.run_name, key)
