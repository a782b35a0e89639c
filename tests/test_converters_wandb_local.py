"""tbx.converters.wandb_local: W&B offline run directories as a sync source.

Every run here is written by the real wandb SDK in offline mode (shared by
the module's tests: ``wandb.init`` takes seconds); the expected values are
what the test logged, the media bytes are the files the SDK wrote.
"""

import glob
import io
import json
import math
import os
import shutil
import wave

import numpy as np
import pytest
from PIL import Image

import tbx
from test_converters_wandb_file import log_file, offline_run, write_log
from tbx.converters import wandb_file as wf
from tbx.converters import wandb_framing as framing
from tbx.converters.base import SyncError
from tbx.converters.engine import sync
from tbx.converters.model import flatten
from tbx.converters.report import RunReport
from tbx.converters.tfevents import TfeventsDestination, TfeventsSource
from tbx.converters.wandb_decode import tb_tag
from tbx.converters.wandb_export import WandbDestination
from tbx.converters.wandb_local import WandbOfflineSource
from tbx.errors import DataLossError

wandb = pytest.importorskip("wandb", reason="the wandb SDK writes the test runs")

# nested dicts (one of them shaped like config.yaml's {"value": v} wrapping) stay as they are
CONFIG = {"lr": 0.1, "model": {"depth": 3, "act": "relu", "opt": {"name": "adam", "betas": [0.9, 0.99]}},
          "layers": [1, 2], "wrapped": {"value": 5}}
PIXELS = (np.arange(4 * 5 * 3) * 7 % 256).astype(np.uint8).reshape(4, 5, 3)
TABLE = [[1, "a|b"], [2.5, None]]


def gif_file(path):
    frames = [Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)) for i in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs in one WANDB_DIR: ``main`` (everything), ``plain`` (no global_step), ``resumed`` (2 fragments)."""
    root = tmp_path_factory.mktemp("wandb_local")
    out = {"root": root}
    with offline_run(root, project="proj", name="display", notes="some notes", tags=["t1", "t2"],
                     group="grp", job_type="train", config=CONFIG) as run:
        run.define_metric("global_step")
        run.define_metric("*", step_metric="global_step")
        for i in range(20):
            run.log({"train/loss": 1.0 / (i + 1), "acc": i / 20, "global_step": 5 * i})
        run.log({"nan": float("nan"), "inf": float("inf"), "global_step": 100})
        run.log({"nest": {"a": 1.5, "b": {"c": 2}}, "flag": True, "note": "hello", "global_step": 101})
        run.log({"hist": wandb.Histogram(np_histogram=([1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 4.0])),
                 "img": wandb.Image(PIXELS), "global_step": 102})
        run.log({"imgs": [wandb.Image(PIXELS, caption="first"), wandb.Image(255 - PIXELS, caption="second")],
                 "table": wandb.Table(columns=["n", "s"], data=TABLE), "global_step": 103})
        run.log({"aud": wandb.Audio(np.linspace(-0.5, 0.5, 800), sample_rate=8000),
                 "vid": wandb.Video(gif_file(root / "v.gif")), "global_step": 104})
        run.log({"none": None, "lst": [1, 2], "page": wandb.Html("<b>x</b>"), "global_step": 105})
        with open(os.path.join(run.dir, "notes.md"), "w") as f:
            f.write("# my notes\n")
        run.config.update({"later": 7})
        run.summary["best"] = 0.5
        run.finish(exit_code=2)
        out["main"] = run.id
        out["main_start"] = run.start_time
        out["main_log"] = log_file(run)
    with offline_run(root, project="proj") as run:
        run.log({"x": 1.0}, step=3)
        run.log({"x": 2.0}, step=7)
        run.log({"p": {"q": 1.0}, "p.q": 2.0}, step=9)
        out["plain"] = run.id
        out["plain_log"] = log_file(run)
    for part in range(2):
        with offline_run(root, project="proj", id="resumeme1", resume="allow",
                         config={f"part{part}": part, "net": {f"k{part}": part}}) as run:
            for i in range(3):
                run.log({"y": 10 * part + i})
    out["resumed"] = "resumeme1"
    return out


def read(source, key):
    (ref,) = [r for r in source.list_runs() if r.key == key]
    report = RunReport(ref.name, ref.key)
    return ref, source.read_run(ref, report), report


def media_bytes(run_log, rel):
    with open(os.path.join(os.path.dirname(run_log), "files", *rel.split("/")), "rb") as f:
        return f.read()


def test_lists_one_run_per_id_from_any_path(runs):
    root = runs["root"]
    refs = WandbOfflineSource(root).list_runs()
    assert sorted(r.key for r in refs) == sorted([runs["main"], runs["plain"], "resumeme1"])
    names = {r.key: r.name for r in refs}
    assert names[runs["main"]] == "display" and names[runs["plain"]] == runs["plain"]
    assert [len(r.extra) for r in refs if r.key == "resumeme1"] == [2]
    assert sorted(r.key for r in WandbOfflineSource(root / "wandb").list_runs()) == sorted(names)
    run_dir = os.path.dirname(runs["main_log"])
    assert [r.key for r in WandbOfflineSource(run_dir).list_runs()] == [runs["main"]]
    assert [r.key for r in WandbOfflineSource(runs["plain_log"]).list_runs()] == [runs["plain"]]


def test_run_metadata_config_and_summary(runs):
    _, data, _ = read(WandbOfflineSource(runs["root"]), runs["main"])
    assert (data.key, data.name, data.project) == (runs["main"], "display", "proj")
    assert (data.notes, data.group, data.job_type, data.labels) == ("some notes", "grp", "train", ["t1", "t2"])
    assert data.start_time == pytest.approx(runs["main_start"], abs=1e-3)
    assert data.status == "FAILED" and data.end_time >= data.start_time
    assert data.params == {**CONFIG, "later": 7}
    assert data.summary["best"] == 0.5 and data.summary["train/loss"] == 1.0 / 20
    assert "_wandb" not in data.summary
    _, plain, _ = read(WandbOfflineSource(runs["root"]), runs["plain"])
    assert plain.status == "FINISHED" and plain.labels == [] and plain.notes is None


def test_scalars_use_global_step_and_timestamps(runs):
    _, data, report = read(WandbOfflineSource(runs["root"]), runs["main"])
    rows = wf.read_history(runs["main_log"])
    s = data.scalars
    assert sorted(s) == ["acc", "flag", "inf", "nan", "nest.a", "nest.b.c", "train/loss"]
    loss = s["train/loss"]
    assert loss.steps.tolist() == [5 * i for i in range(20)]
    assert loss.values.tolist() == [1.0 / (i + 1) for i in range(20)]
    assert loss.wall_times.tolist() == [r["_timestamp"] for r in rows[:20]]
    assert s["acc"].values.tolist() == [i / 20 for i in range(20)]
    assert s["nan"].steps.tolist() == [100] and math.isnan(s["nan"].values[0])
    assert s["inf"].values.tolist() == [math.inf]
    assert (s["nest.a"].steps.tolist(), s["nest.a"].values.tolist()) == ([101], [1.5])
    assert s["nest.b.c"].values.tolist() == [2.0] and s["flag"].values.tolist() == [1.0]
    assert report.kinds["scalars"].transformed == {"boolean logged as 0/1": 1}
    (note,) = data.series["text"]["note"]
    assert (note.step, note.text, note.wall_time) == (101, "hello", rows[21]["_timestamp"])

    _, plain, report = read(WandbOfflineSource(runs["root"]), runs["plain"])
    assert (plain.scalars["x"].steps.tolist(), plain.scalars["x"].values.tolist()) == ([3, 7], [1.0, 2.0])
    # {"p": {"q": 1}} flattens to the tag of the logged key "p.q": the logged key wins.
    assert (plain.scalars["p.q"].steps.tolist(), plain.scalars["p.q"].values.tolist()) == ([9], [2.0])
    assert report.kinds["scalars"].dropped == {"key repeated in a row after flattening nested dicts": 1}


def test_media_histograms_and_tables(runs):
    _, data, report = read(WandbOfflineSource(runs["root"]), runs["main"])
    rows = wf.read_history(runs["main_log"])
    (hist,) = data.series["histograms"]["hist"]
    assert hist.step == 102 and hist.edges.tolist() == [0.0, 1.0, 2.0, 4.0] and hist.counts.tolist() == [1, 2, 3]

    (img,) = data.series["images"]["img"]
    assert (img.step, img.fmt, img.index, img.width, img.height) == (102, "png", 0, 5, 4)
    assert img.data == media_bytes(runs["main_log"], rows[22]["img"]["path"])
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(img.data)).convert("RGB")), PIXELS)
    first, second = data.series["images"]["imgs"]
    assert [(m.index, m.caption, m.step) for m in (first, second)] == [(0, "first", 103), (1, "second", 103)]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(second.data)).convert("RGB")), 255 - PIXELS)

    (table,) = data.series["text"]["table"]
    assert table.text == "| n | s |\n|---|---|\n| 1 | a\\|b |\n| 2.5 |  |"
    assert report.kinds["text"].transformed == {
        "W&B table rendered as a markdown table (its JSON carried as a file)": 1}

    (aud,) = data.series["audio"]["aud"]
    assert (aud.step, aud.fmt, aud.sample_rate) == (104, "wav", 8000.0)
    with wave.open(io.BytesIO(aud.data)) as w:
        assert (w.getframerate(), w.getnframes()) == (8000, 800)
    (vid,) = data.series["video"]["vid"]
    assert (vid.step, vid.fmt) == (104, "gif") and vid.data == (runs["root"] / "v.gif").read_bytes()


def test_files_and_dropped_values(runs):
    _, data, report = read(WandbOfflineSource(runs["root"]), runs["main"])
    files = {f.path: f.data for f in data.files}
    assert files["notes.md"] == b"# my notes\n"
    table_json = [p for p in files if p.startswith("media/table/")]
    assert len(table_json) == 1 and json.loads(files[table_json[0]])["data"] == TABLE
    assert any(p.startswith("media/html/") for p in files)  # the dropped value's file is still carried
    assert not any(p.startswith(("media/images/", "media/audio/", "media/videos/")) for p in files)
    assert not set(files) & {"config.yaml", "wandb-summary.json", "wandb-metadata.json", "requirements.txt"}
    assert report.kinds["scalars"].dropped == {"null value": 1}
    assert report.kinds["tensors"].dropped == {"list value (no TensorBoard kind)": 1,
                                               "W&B value type 'html-file' has no TensorBoard kind": 1}


def test_missing_media_file_is_dropped_and_the_rest_goes_on(runs, tmp_path):
    run_dir = tmp_path / os.path.basename(os.path.dirname(runs["main_log"]))
    shutil.copytree(os.path.dirname(runs["main_log"]), run_dir)
    rel = wf.read_history(runs["main_log"])[22]["img"]["path"]
    os.remove(run_dir / "files" / rel)
    _, data, report = read(WandbOfflineSource(run_dir), runs["main"])
    assert "img" not in data.series["images"] and len(data.series["images"]["imgs"]) == 2
    assert report.kinds["images"].dropped == {f"missing media file {rel}": 1}
    assert len(data.scalars["train/loss"]) == 20


def test_resumed_run_reads_both_fragments_in_order(runs):
    ref, data, report = read(WandbOfflineSource(runs["root"]), "resumeme1")
    assert len(ref.extra) == 2 and ref.extra[0].start <= ref.extra[1].start
    y = data.scalars["y"]
    assert y.values.tolist() == [0, 1, 2, 10, 11, 12]
    assert y.steps.tolist() == [0, 1, 2, 3, 4, 5]
    assert np.all(np.diff(y.wall_times) > 0)
    assert report.kinds["scalars"].transformed == {
        "step of a resumed fragment shifted to follow the previous fragment": 3}
    # merged by top-level key, the later fragment's value winning (W&B replaces a key's whole value)
    assert data.params == {"part0": 0, "part1": 1, "net": {"k1": 1}}
    assert data.status == "FINISHED"


def copy_run(runs, tmp_path, key="main"):
    src = os.path.dirname(runs[f"{key}_log"])
    dst = tmp_path / os.path.basename(src)
    shutil.copytree(src, dst)
    return dst, dst / os.path.basename(runs[f"{key}_log"])


def test_damaged_log_carries_what_is_readable(runs, tmp_path):
    run_dir, log = copy_run(runs, tmp_path)
    data = bytearray(log.read_bytes())
    offsets = [o for o, _ in wf.iter_records(log)]
    cut = offsets[len(offsets) // 2] + 5
    log.write_bytes(bytes(data[:cut]))
    _, short, report = read(WandbOfflineSource(run_dir), runs["main"])
    assert 0 < len(short.scalars["train/loss"]) < 20 and short.status is None
    assert any("cut-off end of" in p for p in report.problems)
    assert not report.lossy  # a cut-off end is how a live run looks

    victim = next(o for o in offsets if o > len(data) // 2)
    data[victim + framing.CHUNK_HEADER_SIZE + 1] ^= 0x55
    log.write_bytes(bytes(data))
    _, hurt, report = read(WandbOfflineSource(run_dir), runs["main"])
    (reason,) = report.kinds["records"].dropped
    assert reason.startswith(f"damaged chunks in {log.name}") and report.lossy
    assert hurt.params["lr"] == 0.1
    with pytest.raises(DataLossError) as err:
        read(WandbOfflineSource(run_dir, strict=True), runs["main"])
    assert err.value.offset == victim and err.value.path == str(log)


def test_unknown_version_fails_that_run_with_a_clear_error(runs, tmp_path):
    run_dir, log = copy_run(runs, tmp_path, "plain")
    data = bytearray(log.read_bytes())
    data[6] = 9
    log.write_bytes(bytes(data))
    source = WandbOfflineSource(run_dir)
    (ref,) = source.list_runs()
    assert ref.key == runs["plain"]
    with pytest.raises(wf.LogFormatError) as err:
        source.read_run(ref, RunReport(ref.name, ref.key))
    assert str(log) in str(err.value) and "version 9" in str(err.value) and "version 0" in str(err.value)


def test_not_a_wandb_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    for path, words in ((tmp_path / "empty", "is not a W&B directory"),
                        (tmp_path / "notes.txt", "is not a W&B transaction log"),
                        (tmp_path / "nowhere", "does not exist")):
        with pytest.raises(SyncError) as err:
            WandbOfflineSource(path).check()
        assert str(path) in str(err.value) and words in str(err.value)
        assert ".wandb" in str(err.value)


def test_sync_to_a_tensorboard_logdir(runs, tmp_path):
    """Through the engine into tfevents: everything read is written and verified by reading back."""
    report = sync(WandbOfflineSource(runs["root"]), TfeventsDestination(tmp_path / "tb"))
    by_key = {r.key: r for r in report.runs}
    assert sorted(by_key) == sorted([runs["main"], runs["plain"], "resumeme1"])
    for run in report.runs:
        assert run.error is None and run.mismatch == [], run.as_dict()
        for kind, count in run.kinds.items():
            if kind != "records":
                assert count.written == count.read == count.verified, (run.name, kind, count)
    assert by_key[runs["main"]].kinds["images"].verified == 3
    assert report.exit_code() == 1  # main's null, list and html values were dropped
    back = TfeventsSource(tmp_path / "tb")
    got = {ref.key: back.read_run(ref, RunReport(ref.name, ref.key)) for ref in back.list_runs()}
    (resumed,) = [d for d in got.values() if "y" in d.scalars]
    assert resumed.scalars["y"].steps.tolist() == [0, 1, 2, 3, 4, 5]


# --- the config, tbx's own metadata key, several paths, odd keys -------------------------

def test_nested_config_reaches_tfevents_exactly(runs, tmp_path):
    """Through the engine: config.yaml holds the config nested as W&B does; the HParams
    dashboard, which needs flat names, gets them joined with '.'."""
    report = sync(WandbOfflineSource(os.path.dirname(runs["main_log"])), TfeventsDestination(tmp_path / "tb"))
    (run,) = report.runs
    params = run.kinds["params"]  # counted per leaf of the nested config
    assert run.mismatch == [] and params.verified == params.read == len(flatten(CONFIG)) + 1
    run_dir = tmp_path / "tb" / "display"
    assert json.loads((run_dir / "config.yaml").read_text()) == {
        k: {"value": v} for k, v in {**CONFIG, "later": 7}.items()}
    hparams_only = tmp_path / "hparams"  # the event files without config.yaml: params from the HParams session
    hparams_only.mkdir()
    for name in os.listdir(run_dir):
        if "tfevents" in name:
            shutil.copy(run_dir / name, hparams_only / name)
    source = TfeventsSource(hparams_only)
    (ref,) = source.list_runs()
    assert source.read_run(ref, RunReport("h", "h")).params == {
        "lr": 0.1, "model.depth": 3, "model.act": "relu", "model.opt.name": "adam",
        "model.opt.betas": "[0.9, 0.99]", "layers": "[1, 2]", "wrapped.value": 5, "later": 7}


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """Every directory the W&B SDK writes to inside ``tmp_path``; offline, quiet."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var, sub in (("WANDB_DIR", "wdir"), ("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache"),
                     ("WANDB_CONFIG_DIR", "config"), ("WANDB_ARTIFACT_DIR", "artifacts")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    return tmp_path


def test_tbx_export_metadata_comes_back_as_tags_and_times(wandb_env):
    """tfevents → W&B offline → tfevents: the key/value tags, times and status that the W&B
    export keeps in the hidden config key ``_tbx`` come back as such, and ``_tbx`` is no param."""
    tmp = wandb_env
    src = tmp / "src" / "exp1"
    with tbx.SummaryWriter(str(src)) as w:
        for i in range(3):
            w.add_scalar("loss", 1.0 / (i + 1), i, walltime=1_700_000_010.0 + i)
    meta = {"kv_tags": {"team": "vision", "ticket": "T-1"}, "start_wall_time": 1_700_000_000.25,
            "end_wall_time": 1_700_000_100.5, "status": "KILLED"}
    (src / "metadata.json").write_text(json.dumps(meta))
    (src / "config.yaml").write_text(json.dumps({"lr": {"value": 0.1}, "opt": {"value": "sgd"}}))

    there = sync(TfeventsSource(tmp / "src"), WandbDestination(directory=str(tmp / "w")), ledger=str(tmp / "1.db"))
    assert there.exit_code() == 0, there.as_dict()
    back = sync(WandbOfflineSource(tmp / "w"), TfeventsDestination(tmp / "back"), ledger=str(tmp / "2.db"))
    assert back.exit_code() == 0, back.as_dict()
    (run,) = back.runs
    assert run.kinds["params"].read == 2 and run.kinds["tags"].verified == 2
    (run_dir,) = [d for d in glob.glob(str(tmp / "back" / "*")) if os.path.isdir(d)]
    got = json.loads(open(os.path.join(run_dir, "metadata.json")).read())
    assert got["kv_tags"] == meta["kv_tags"]
    assert (got["start_wall_time"], got["end_wall_time"], got["status"]) == (1_700_000_000.25, 1_700_000_100.5,
                                                                             "KILLED")
    assert json.loads(open(os.path.join(run_dir, "config.yaml")).read()) == {"lr": {"value": 0.1},
                                                                           "opt": {"value": "sgd"}}


def test_a_list_of_paths_is_one_source(runs, tmp_path):
    main_dir = os.path.dirname(runs["main_log"])
    again = os.path.join(runs["root"], "wandb", "..", "wandb", os.path.basename(main_dir))  # main, once more
    source = WandbOfflineSource([main_dir, runs["plain_log"], again])
    refs = source.list_runs()
    assert sorted(r.key for r in refs) == sorted([runs["main"], runs["plain"]])
    assert [len(r.extra) for r in refs] == [1, 1]
    _, data, _ = read(source, runs["main"])
    assert len(data.scalars["train/loss"]) == 20
    # the fragments of a resumed run, given one by one (what the W&B export's read-back does)
    fragments = sorted(glob.glob(os.path.join(runs["root"], "wandb", "offline-run-*-resumeme1*")))
    assert len(fragments) == 2
    _, resumed, _ = read(WandbOfflineSource(fragments), "resumeme1")
    assert resumed.scalars["y"].values.tolist() == [0, 1, 2, 10, 11, 12]
    with pytest.raises(SyncError, match="empty list"):
        WandbOfflineSource([])
    with pytest.raises(SyncError) as err:
        WandbOfflineSource([main_dir, tmp_path / "nowhere"]).check()
    assert str(tmp_path / "nowhere") in str(err.value)


def test_keys_that_are_not_tensorboard_tags_are_renamed(tmp_path):
    """Empty, only '/', NUL: renamed, each item counted with the new name; everything verified."""
    with offline_run(tmp_path, project="p") as run:
        for i in range(3):
            run.log({"/": 2.0 + i, "//": 3.0, "a\0b": 4.0, "trail\0": 5.0, "t\0": "text", "ok": 1.0})
        run.log({"(/)": 9.0})  # a valid key with the name "/" was given: it must not merge with it
    pb = wf.proto()
    handmade = tmp_path / "wandb" / "offline-run-20260101_000000-handmade"
    handmade.mkdir()
    rows = [pb.Record(num=1, run=pb.RunRecord(run_id="handmade", project="p")).SerializeToString()]
    rows += [pb.Record(num=2 + i, history=pb.HistoryRecord(item=[
        pb.HistoryItem(key="", value_json=str(0.5 * i)),
        pb.HistoryItem(key="_step", value_json=str(i))])).SerializeToString() for i in range(4)]
    write_log(handmade / "run-handmade.wandb", rows)

    report = sync(WandbOfflineSource(tmp_path), TfeventsDestination(tmp_path / "tb"))
    assert report.exit_code() == 0, report.as_dict()
    by_key = {r.key: r for r in report.runs}
    for r in report.runs:
        for kind, count in r.kinds.items():
            assert count.read == count.written == count.verified and not count.dropped, (r.key, kind)

    def renamed(key, tag, why="is not a valid TensorBoard tag"):
        return f"W&B key {key!r} {why}: renamed {tag!r}"

    assert by_key[run.id].kinds["scalars"].transformed == {
        renamed("/", "(/)"): 3, renamed("//", "(//)"): 3, renamed("a\0b", "a\\0b"): 3,
        renamed("trail\0", "trail\\0"): 3, renamed("(/)", "(/) (2)", "names a tag taken by a renamed key"): 1}
    assert by_key[run.id].kinds["text"].transformed == {renamed("t\0", "t\\0"): 3}
    assert by_key["handmade"].kinds["scalars"].transformed == {renamed("", "(empty)"): 4}
    back = TfeventsSource(tmp_path / "tb")
    got = {ref.key: back.read_run(ref, RunReport(ref.name, ref.key)) for ref in back.list_runs()}
    scalars = {tag: s.values.tolist() for d in got.values() for tag, s in d.scalars.items()}
    assert scalars == {"(/)": [2.0, 3.0, 4.0], "(//)": [3.0] * 3, "a\\0b": [4.0] * 3, "trail\\0": [5.0] * 3,
                       "ok": [1.0] * 3, "(/) (2)": [9.0], "(empty)": [0.0, 0.5, 1.0, 1.5]}
    assert [t.text for d in got.values() for t in d.series["text"].get("t\\0", [])] == ["text"] * 3
    assert (tb_tag("x/y"), tb_tag("/x")) == ("x/y", "/x")  # valid tags are kept
