"""Tests of tbx/converters/wandb_cloud.py: reading W&B cloud projects.

The W&B cloud cannot be reached from here and no real W&B server runs
locally, so these tests use a STAND-IN (``tests/wandb_standin.py``): an
HTTP server speaking the part of W&B's GraphQL API (and file and parquet
downloads) that wandb 0.31.0 uses for these calls. The client side is
real: ``wandb.Api()`` and wandb-core run unchanged against it, so the SDK's
paging, history scan (parquet export plus live rows), file downloads,
credential check and its own retries are all exercised.
"""

from __future__ import annotations

import io
import json
import math
import os
import wave

import numpy as np
import pytest

pytest.importorskip("wandb", reason="the wandb SDK is not installed (pip install wandb)")

from PIL import Image  # noqa: E402

from tbx.converters.base import ConnectError, SyncError, UsageError  # noqa: E402
from tbx.converters.engine import sync  # noqa: E402
from tbx.converters.report import RunReport  # noqa: E402
from tbx.converters.tfevents import TfeventsDestination  # noqa: E402
from tbx.converters.wandb_cloud import WandbCloudSource, clean_row, retry  # noqa: E402
from wandb_standin import API_KEY, StandInRun, StandInWandbServer  # noqa: E402

T0 = 1_714_557_600.0  # 2024-05-01T10:00:00Z


def png(color: int, size: tuple[int, int] = (4, 3)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (color, 255 - color, 7)).save(buf, format="PNG")
    return buf.getvalue()


def gif() -> bytes:
    buf = io.BytesIO()
    frames = [Image.new("P", (4, 4), i * 60) for i in range(3)]
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


def wav(rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.arange(64, dtype="<i2").tobytes())
    return buf.getvalue()


@pytest.fixture
def server():
    with StandInWandbServer() as s:
        yield s


def source(server: StandInWandbServer, project: str, **kw) -> WandbCloudSource:
    return WandbCloudSource(server.entity, project, api=server.api(), **kw)


def read(src: WandbCloudSource, report: RunReport | None = None):
    refs = src.list_runs()
    assert len(refs) == 1
    return src.read_run(refs[0], report or RunReport(refs[0].name, refs[0].key))


def scalars_run() -> StandInRun:
    rows = [
        {"_step": 0, "_timestamp": T0, "_runtime": 0.1, "loss": 1.0, "acc": 0.25},
        {"_step": 1, "_timestamp": T0 + 1, "loss": 0.5},
        {"_step": 2, "_timestamp": T0 + 2, "acc": 0.5, "lr": "NaN", "done": True},
        {"_step": 3, "_timestamp": T0 + 3, "loss": math.inf, "note": "hello", "opt": {"beta": 0.9}},
    ]
    return StandInRun(
        "abc123", "first-run", config={"lr": 0.1, "model": {"depth": 3, "act": "relu"}},
        summary={"loss": 0.5, "best": {"acc": 0.5}}, rows=rows, tags=["baseline", "v2"], notes="some notes",
        group="sweep-a", job_type="train", state="crashed",
        created_at="2024-05-01T10:00:00", heartbeat_at="2024-05-01T10:30:00Z")


def test_metadata_and_sparse_scalars(server):
    server.add_run("p", scalars_run())
    report = RunReport("first-run", "abc123")
    data = read(source(server, "p"), report)

    assert (data.key, data.name, data.project) == ("abc123", "first-run", "p")
    assert data.params == {"lr": 0.1, "model": {"depth": 3, "act": "relu"}}  # nested kept, _wandb gone
    assert data.summary == {"loss": 0.5, "best": {"acc": 0.5}}
    assert data.labels == ["baseline", "v2"]
    assert (data.notes, data.group, data.job_type, data.status) == ("some notes", "sweep-a", "train", "FAILED")
    assert data.start_time == T0 and data.end_time == T0 + 1800

    # rows hold only some keys: each tag has exactly the points logged for it
    s = data.scalars
    assert s["loss"].steps.tolist() == [0, 1, 3]
    assert s["loss"].values.tolist() == [1.0, 0.5, math.inf]
    assert s["loss"].wall_times.tolist() == [T0, T0 + 1, T0 + 3]
    assert s["acc"].steps.tolist() == [0, 2] and s["acc"].values.tolist() == [0.25, 0.5]
    assert math.isnan(s["lr"].values[0]) and s["lr"].steps.tolist() == [2]
    assert s["done"].values.tolist() == [1.0]
    assert s["opt.beta"].steps.tolist() == [3]
    assert set(s) == {"loss", "acc", "lr", "done", "opt.beta"}
    assert [(t.step, t.text) for t in data.series["text"]["note"]] == [(3, "hello")]
    assert report.kinds["scalars"].transformed == {"boolean logged as 0/1": 1}
    assert data.files == []


def test_tbx_export_metadata_is_restored(server):
    """The hidden config key ``_tbx`` of a run tbx exported to W&B gives back the source run's
    key/value tags, times and status (W&B's own are the export's), and is no param."""
    meta = {"key": "exp1", "tags": {"team": "vision", "ticket": "T-1"}, "start_time": T0 - 100.5,
            "end_time": T0 + 50.25, "status": "KILLED"}
    rows = [{"_step": 0, "_timestamp": T0, "loss": 1.0}]
    server.add_run("p", StandInRun("tbx1", "exp1", config={"lr": 0.1, "_tbx": meta}, rows=rows, state="finished",
                                   created_at="2024-05-01T10:00:00Z", heartbeat_at="2024-05-01T10:30:00Z"))
    data = read(source(server, "p"))
    assert data.params == {"lr": 0.1}
    assert data.tags == {"team": "vision", "ticket": "T-1"}
    assert (data.start_time, data.end_time, data.status) == (T0 - 100.5, T0 + 50.25, "KILLED")


def test_global_step_is_the_x_axis(server):
    rows = [{"_step": i, "_timestamp": T0 + i, "global_step": 100 * (i + 1), "loss": float(i)} for i in range(3)]
    rows.append({"_step": 3, "_timestamp": T0 + 3, "val": 7.0})  # no global_step: takes the last one
    server.add_run("p", StandInRun("gs1", "tb-export", rows=rows))
    data = read(source(server, "p"))
    assert data.scalars["loss"].steps.tolist() == [100, 200, 300]
    assert data.scalars["val"].steps.tolist() == [300]
    assert "global_step" not in data.scalars


def test_exported_and_live_history_rows(server):
    pytest.importorskip("pyarrow", reason="the stand-in writes history exports with pyarrow")
    hist = {"_type": "histogram", "values": [1, 2, 3], "bins": [0.0, 0.5, 1.0, 1.5]}
    rows = [{"_step": i, "_timestamp": T0 + i, "loss": 0.5 * i, "h": hist if i % 2 == 0 else None}
            for i in range(6)]
    rows[1]["loss"] = math.nan
    rows[0]["acc"] = rows[5]["acc"] = 0.75  # the export holds nulls where a row lacks a key
    server.add_run("p", StandInRun("mix", "mixed", rows=rows, exported=4))
    report = RunReport("mixed", "mix")
    data = read(source(server, "p", page_size=2), report)
    assert not any(k.dropped for k in report.kinds.values())  # an export's nulls are absent keys, not losses

    assert set(data.scalars) == {"loss", "acc"}
    assert data.scalars["acc"].steps.tolist() == [0, 5]

    assert data.scalars["loss"].steps.tolist() == [0, 1, 2, 3, 4, 5]
    got = data.scalars["loss"].values
    assert math.isnan(got[1]) and got[[0, 2, 3, 4, 5]].tolist() == [0.0, 1.0, 1.5, 2.0, 2.5]
    assert [h.step for h in data.series["histograms"]["h"]] == [0, 2, 4]
    h = data.series["histograms"]["h"][0]
    assert h.counts.tolist() == [1, 2, 3] and h.edges.tolist() == [0.0, 0.5, 1.0, 1.5]
    assert any("parquet" in d for d in server.downloads)  # the export was read, not only live rows
    history_pages = [v for op, v in server.requests if op == "HistoryPage"]
    assert history_pages and min(v["maxStep"] for v in history_pages) > 4  # live rows only past the export


def media_run() -> StandInRun:
    images = [png(10), png(90), png(200)]
    table = {"columns": ["id", "pred"], "data": [[1, "cat"], [2, "d|og"]]}
    files = {
        "media/images/img_0_aa.png": images[0], "media/images/b_1_0.png": images[1],
        "media/images/b_1_1.png": images[2], "media/table/t_2_cc.table.json": json.dumps(table).encode(),
        "media/audio/a_3.wav": wav(8000), "media/videos/v_4.gif": gif(),
        "media/object3D/o_5.obj": b"v 0 0 0\n",
        "output.log": b"epoch 1\n", "notes/extra.txt": b"kept",
        "config.yaml": b"lr: 0.1", "wandb-summary.json": b"{}", "wandb-metadata.json": b"{}",
        "requirements.txt": b"numpy",
    }
    rows = [
        {"_step": 0, "_timestamp": T0, "img": {"_type": "image-file", "path": "media/images/img_0_aa.png",
                                                "format": "png", "width": 4, "height": 3, "caption": "first"},
         "h": {"_type": "histogram", "values": [4, 5], "bins": [-1.0, 0.0, 1.0]}},
        {"_step": 1, "_timestamp": T0 + 1, "batch": {
            "_type": "images/separated", "width": 4, "height": 3, "format": "png", "count": 2,
            "filenames": ["media/images/b_1_0.png", "media/images/b_1_1.png"], "captions": ["x", "y"]},
         "h": {"_type": "histogram", "values": [1, 1, 2], "packedBins": {"min": 0.0, "size": 0.5, "count": 3}}},
        {"_step": 2, "_timestamp": T0 + 2, "preds": {"_type": "table-file", "path": "media/table/t_2_cc.table.json",
                                                      "ncols": 2, "nrows": 2}},
        {"_step": 3, "_timestamp": T0 + 3, "clip": {"_type": "audio-file", "path": "media/audio/a_3.wav"}},
        {"_step": 4, "_timestamp": T0 + 4, "anim": {"_type": "video-file", "path": "media/videos/v_4.gif",
                                                     "format": "gif", "width": 4, "height": 4},
         "gone": {"_type": "image-file", "path": "media/images/missing.png"}},
        {"_step": 5, "_timestamp": T0 + 5, "mesh": {"_type": "object3D-file", "path": "media/object3D/o_5.obj"}},
    ]
    return StandInRun("med1", "media", rows=rows, files=files)


def test_histograms_media_tables_and_files(server):
    run = media_run()
    server.add_run("p", run)
    report = RunReport("media", "med1")
    data = read(source(server, "p"), report)

    hs = data.series["histograms"]["h"]
    assert [h.step for h in hs] == [0, 1]
    assert hs[0].counts.tolist() == [4, 5] and hs[0].edges.tolist() == [-1.0, 0.0, 1.0]
    assert hs[1].edges.tolist() == [0.0, 0.5, 1.0, 1.5]

    (img,) = data.series["images"]["img"]
    assert (img.step, img.data, img.fmt, img.width, img.height, img.caption) == (
        0, run.files["media/images/img_0_aa.png"], "png", 4, 3, "first")
    batch = data.series["images"]["batch"]
    assert [(m.step, m.index, m.caption) for m in batch] == [(1, 0, "x"), (1, 1, "y")]
    assert [m.data for m in batch] == [run.files["media/images/b_1_0.png"], run.files["media/images/b_1_1.png"]]

    (table,) = data.series["text"]["preds"]
    assert table.step == 2
    assert table.text == "| id | pred |\n|---|---|\n| 1 | cat |\n| 2 | d\\|og |"
    (clip,) = data.series["audio"]["clip"]
    assert (clip.step, clip.fmt, clip.sample_rate, clip.data) == (3, "wav", 8000.0, run.files["media/audio/a_3.wav"])
    (anim,) = data.series["video"]["anim"]
    assert (anim.step, anim.fmt, anim.data) == (4, "gif", run.files["media/videos/v_4.gif"])

    assert report.kinds["images"].dropped == {"missing media file media/images/missing.png": 1}
    assert list(report.kinds["tensors"].dropped.values()) == [1]
    assert "object3D-file" in next(iter(report.kinds["tensors"].dropped))
    # W&B's own files and the media the rows used are not carried again; the rest are (the
    # table's JSON too: the text holds it only as markdown)
    assert sorted(f.path for f in data.files) == [
        "media/object3D/o_5.obj", "media/table/t_2_cc.table.json", "notes/extra.txt", "output.log"]
    assert {f.path: f.data for f in data.files}["output.log"] == b"epoch 1\n"


def test_clean_row():
    row = {"_step": 1, "a": None, "b": "NaN", "c": "-Infinity", "d": "text", "e": {"x": None, "y": "Infinity"},
           "h": {"_type": "histogram", "values": [1], "bins": [0, 1]}}
    got = clean_row(row)
    assert set(got) == {"_step", "b", "c", "d", "e", "h"} and got["e"] == {"y": math.inf}
    assert math.isnan(got["b"]) and got["c"] == -math.inf and got["d"] == "text" and got["h"] is row["h"]


def test_filters_are_passed_to_the_server(server):
    for i, (lr, state) in enumerate([(0.1, "finished"), (0.2, "finished"), (0.1, "running")]):
        server.add_run("p", StandInRun(f"r{i}", f"run-{i}", config={"lr": lr}, state=state,
                                       created_at=f"2024-05-01T10:0{i}:00"))
    flt = '{"config.lr": 0.1, "state": "finished"}'
    assert [r.key for r in source(server, "p", filters=flt).list_runs()] == ["r0"]
    sent = [v["filters"] for op, v in server.requests if op == "Runs"]
    assert json.loads(sent[-1]) == {"config.lr": 0.1, "state": "finished"}

    either = {"$or": [{"displayName": "run-1"}, {"state": "running"}]}
    assert [r.key for r in source(server, "p", filters=either).list_runs()] == ["r1", "r2"]
    assert [r.key for r in source(server, "p", per_page=2).list_runs()] == ["r0", "r1", "r2"]  # two pages

    with pytest.raises(UsageError, match="not valid JSON"):
        WandbCloudSource("e", "p", filters="{state: finished}")
    with pytest.raises(UsageError, match="must be a JSON object"):
        WandbCloudSource("e", "p", filters="[1, 2]")
    with pytest.raises(UsageError, match="wandb://ENTITY/PROJECT"):
        WandbCloudSource("e/x", "p")


def test_transient_errors_are_retried(server):
    server.add_run("p", scalars_run())
    # a server slower than the client's timeout: wandb-core gives up, tbx retries
    server.fail("Runs", status=503, stall_s=3)
    src = WandbCloudSource(server.entity, "p", api=server.api(timeout=1), retry_s=30)
    assert [r.key for r in src.list_runs()] == ["abc123"]
    # rate limited, then fine: the read goes through (wandb-core waits and retries itself)
    server.fail("RunFiles", status=429, headers={"RateLimit-Reset": "1"})
    src = source(server, "p")
    data = read(src)
    assert data.scalars["loss"].steps.tolist() == [0, 1, 3]
    assert [op for op in server.operations() if op == "RunFiles"] == ["RunFiles", "RunFiles"]


def test_history_read_resumes_after_a_failed_page(server):
    rows = [{"_step": i, "_timestamp": T0 + i, "loss": float(i)} for i in range(6)]
    server.add_run("p", StandInRun("long", "long", rows=rows))
    # the second page fails with a server error wandb-core does not retry itself (it retries
    # 429 and most 5xx for minutes, so those rarely reach tbx)
    server.fail("HistoryPage", status=501, skip=1)
    data = read(source(server, "p", page_size=2))
    assert data.scalars["loss"].steps.tolist() == [0, 1, 2, 3, 4, 5]  # every row once
    scans = [v["minStep"] for op, v in server.requests if op == "HistoryPage"]
    assert scans == [0, 2, 2, 4]  # the new scan went on from step 2, not from 0
    assert server.operations().count("RunParquetHistory") == 2


def wandb_failure(status: int | None, message: str = "boom", answered: bool = True) -> Exception:
    """The error wandb-core's API client raises (the SDK's own class and response message);
    ``answered=False``: no response at all (a timeout)."""
    from wandb.proto import wandb_api_pb2
    from wandb.sdk.lib.service.service_connection import WandbApiFailedError

    response = wandb_api_pb2.ApiErrorResponse(message=message, http_status=status or 0)
    return WandbApiFailedError(message, response if answered else None)


def test_retry_policy():
    waits: list[float] = []
    failures = [wandb_failure(429), wandb_failure(None, "no reply in time", answered=False), wandb_failure(502)]

    def flaky() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    assert retry(flaky, "listing", 60, sleep=waits.append) == "ok"
    assert waits == [0.5, 1.0, 2.0]  # exponential backoff

    with pytest.raises(ConnectError, match="refused the API key.*HTTP 401"):
        retry(lambda: (_ for _ in ()).throw(wandb_failure(401, "user is not logged in")), "x", 60,
              sleep=waits.append)
    core_says = 'returned error 401: {"errors":[{"message":"user is not logged in"}]}'  # no status field
    with pytest.raises(ConnectError, match="refused the API key.*HTTP 401"):
        retry(lambda: (_ for _ in ()).throw(wandb_failure(None, core_says)), "x", 60, sleep=waits.append)
    with pytest.raises(SyncError, match="HTTP 400: bad query") as info:
        retry(lambda: (_ for _ in ()).throw(wandb_failure(400, "bad query")), "x", 60, sleep=waits.append)
    assert not isinstance(info.value, ConnectError)
    with pytest.raises(KeyError):  # not a W&B failure: not retried, not disguised
        retry(lambda: {}["x"], "x", 60, sleep=waits.append)

    with pytest.raises(ConnectError, match="giving up"):
        retry(lambda: (_ for _ in ()).throw(wandb_failure(503)), "x", 0.2, sleep=lambda s: None)


def test_auth_failure_and_unreachable(server, monkeypatch, tmp_path):
    server.add_run("p", scalars_run())
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_BASE_URL", server.url)
    monkeypatch.setenv("WANDB_API_KEY", "f" * 40)  # the default wandb.Api() reads these
    with pytest.raises(ConnectError, match="refused the API key.*401"):
        WandbCloudSource(server.entity, "p").check()

    monkeypatch.setenv("WANDB_API_KEY", API_KEY)
    WandbCloudSource(server.entity, "p").check()
    with pytest.raises(SyncError, match="no such W&B project"):
        WandbCloudSource(server.entity, "nope").check()

    monkeypatch.delenv("WANDB_API_KEY")
    with pytest.raises(ConnectError, match="no W&B API key"):
        WandbCloudSource(server.entity, "p").check()

    monkeypatch.setenv("WANDB_API_KEY", API_KEY)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(ConnectError, match="giving up"):
        WandbCloudSource(server.entity, "p", timeout=1, retry_s=1).check()


def test_sync_to_tfevents(server, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    run = media_run()
    for row in run.rows:  # only what TensorBoard can hold: the sync must be lossless
        row.pop("gone", None)
        row.pop("mesh", None)
    run.rows += [{"_step": 6 + i, "_timestamp": T0 + 6 + i, "loss": 1.0 / (i + 1)} for i in range(3)]
    server.add_run("p", run)
    server.add_run("p", scalars_run())
    logdir = str(tmp_path / "logs")
    ledger = str(tmp_path / "ledger.sqlite")

    report = sync(source(server, "p"), TfeventsDestination(logdir), ledger=ledger)
    assert report.exit_code() == 0, report.as_dict()
    assert [r.status for r in report.runs] == ["carried", "carried"]
    assert report.runs[0].kinds["video"].verified == 1

    # TensorBoard's own loader sees the steps, values, wall times and media bytes
    acc = EventAccumulator(os.path.join(logdir, "media"), size_guidance={"tensors": 0})
    acc.Reload()
    loss = acc.Tensors("loss")
    assert [(e.step, float(make_ndarray(e.tensor_proto))) for e in loss] == [
        (6, 1.0), (7, 0.5), (8, pytest.approx(1 / 3))]
    assert loss[0].wall_time == pytest.approx(T0 + 6)
    (img,) = acc.Tensors("img")
    assert img.step == 0 and make_ndarray(img.tensor_proto)[2] == run.files["media/images/img_0_aa.png"]
    (batch,) = acc.Tensors("batch")
    assert batch.step == 1 and len(make_ndarray(batch.tensor_proto)) == 4  # width, height, 2 images
    (anim,) = acc.Tensors("anim")
    assert make_ndarray(anim.tensor_proto)[2] == run.files["media/videos/v_4.gif"]
    hist = [make_ndarray(e.tensor_proto) for e in acc.Tensors("h")]
    assert hist[0][:, 2].tolist() == [4, 5] and hist[1][:, 2].tolist() == [1, 1, 2]
    with open(os.path.join(logdir, "media", "output.log"), "rb") as f:
        assert f.read() == b"epoch 1\n"

    acc = EventAccumulator(os.path.join(logdir, "first-run"), size_guidance={"tensors": 0})
    acc.Reload()
    assert [e.step for e in acc.Tensors("acc")] == [0, 2]

    again = sync(source(server, "p"), TfeventsDestination(logdir), ledger=ledger)
    assert [r.status for r in again.runs] == ["up-to-date", "up-to-date"]


def test_tbx_sync_cli_reads_the_cloud_endpoint(server, tmp_path):
    """``tbx sync wandb://ENTITY/PROJECT DIR --filter JSON``, in a fresh process with its own wandb-core."""
    import subprocess
    import sys

    server.add_run("p", scalars_run())
    server.add_run("p", StandInRun("zz", "other-run", config={"lr": 0.2}))
    env = dict(os.environ, WANDB_BASE_URL=server.url, WANDB_API_KEY=API_KEY, HOME=str(tmp_path),
               WANDB_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-m", "tbx.cli", "sync", f"wandb://{server.entity}/p",
                          str(tmp_path / "logs"), "--filter", '{"config.lr": 0.1}'],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "first-run" in out.stdout and "other-run" not in out.stdout
    assert os.listdir(tmp_path / "logs") == ["first-run"]
