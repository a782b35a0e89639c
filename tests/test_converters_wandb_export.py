"""tfevents → W&B offline runs through the real wandb SDK (0.31), checked three ways.

The runs are written by :class:`WandbDestination` (``wandb.init(mode="offline")``)
and read back (1) by the engine's verification through our
``WandbOfflineSource``, (2) by W&B's own reader of the transaction log,
``wandb leet inspect --json`` (wandb-core's Go decoder, the code ``wandb sync``
replays from), whose history rows we decode ourselves, and (3) by a round trip
back to tfevents. No network: ``WANDB_MODE=offline`` and every W&B directory
is a temporary one.
"""

import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tbx
from tbx.converters.base import SyncError
from tbx.converters.engine import WALL_TOLERANCE, sync
from tbx.converters.model import Histogram, Media, RunData, Scalars, Text
from tbx.converters.report import RunReport
from tbx.converters.tfevents import TfeventsDestination, TfeventsSource
from tbx.converters.wandb_export import (
    MARKER, STEP_KEY, WandbDestination, _Series, history_rows, media_groups, rebin, run_id,
)

wandb = pytest.importorskip("wandb", reason="wandb not installed")

FILES = {"assets/info.txt": b"labels\n", "output.log": b"console\n"}  # W&B writes output.log itself
EXPECTED_DROPS = {"tensors": {"custom_scalars has no W&B equivalent": 1}}
WANDB_ENV = ("WANDB_MODE", "WANDB_SILENT", "WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR",
             "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR")


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    """A module-wide directory, with every W&B directory (staging, cache, config) inside it."""
    root = tmp_path_factory.mktemp("wandb_export")
    saved = {k: os.environ.get(k) for k in WANDB_ENV}
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(root / "wdir"),
                      WANDB_DATA_DIR=str(root / "data"), WANDB_CACHE_DIR=str(root / "cache"),
                      WANDB_CONFIG_DIR=str(root / "config"), WANDB_ARTIFACT_DIR=str(root / "artifacts"))
    yield root
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def write_logdir(logdir):
    """Run ``a``: every kind; run ``b``: scalars whose steps restart at 0 (a resumed job)."""
    rng = np.random.default_rng(7)
    w = tbx.SummaryWriter(os.path.join(logdir, "a"))
    for s in range(6):
        w.add_scalar("loss", 1.0 / (s + 1), s, walltime=1000.0 + s)
        w.add_scalar("acc", float("nan") if s == 3 else s / 10, s, walltime=1000.0 + s + 0.0001)
        w.add_scalar("val/acc", s / 20, s, walltime=1000.5 + s)  # logged later: its own row
    w.add_scalar("global_step", 99, 2, walltime=1002.0)  # a W&B-reserved name: renamed tb/global_step
    w.add_histogram("weights", rng.normal(size=2000), 1, bins=1000, walltime=1001.0)
    w.add_histogram("weights", rng.normal(size=2000), 2, bins=20, walltime=1002.0)
    w.add_image("img", rng.integers(0, 255, (3, 8, 6)).astype(np.uint8), 1, walltime=1001.0)
    w.add_images("batch", rng.integers(0, 255, (3, 3, 5, 5)).astype(np.uint8), 2, walltime=1002.0, as_grid=False)
    w.add_audio("clip", rng.uniform(-1, 1, 800).astype(np.float32), 1, sample_rate=8000, walltime=1001.0)
    w.add_video("movie", rng.integers(0, 255, (1, 4, 3, 8, 8)).astype(np.uint8), 1, walltime=1001.0)
    w.add_text("note", "hello *markdown*", 2, walltime=1002.0)
    w.add_pr_curve("pr", rng.integers(0, 2, 50), rng.uniform(size=50), 3, num_thresholds=11, walltime=1003.0)
    w.add_hparams({"lr": 0.1, "opt": "sgd"}, {"hp/score": 1.0}, run_name=".")
    w.add_custom_scalars_multilinechart(["loss", "acc"])  # no W&B equivalent: dropped, counted
    w.close()
    os.makedirs(os.path.join(logdir, "a", "assets"))
    for rel, data in FILES.items():
        with open(os.path.join(logdir, "a", rel), "wb") as f:
            f.write(data)
    w = tbx.SummaryWriter(os.path.join(logdir, "b"))
    for i, s in enumerate([0, 1, 2, 3, 4, 0, 1, 2]):
        w.add_scalar("x", float(i), s, walltime=2000.0 + i)
    w.close()


@pytest.fixture(scope="module")
def first(tmp):
    logdir, out = str(tmp / "logs"), str(tmp / "out")
    write_logdir(logdir)
    report = sync(TfeventsSource(logdir), WandbDestination(directory=out), ledger=str(tmp / "ledger.db"), workers=2)
    return logdir, out, report


def source_run(logdir, name):
    src = TfeventsSource(logdir)
    ref = next(r for r in src.list_runs() if r.name == name)
    return src.read_run(ref, RunReport(name, name))


def expected_run(out, run):
    return WandbDestination(directory=out).open_run(run, None).expected(run, RunReport(run.name, run.key))


def fragments(out, run):
    """The run's offline directories in order (wandb adds -1, -2, ... to names made within a second)."""
    rid = run_id(run.project, run.key)
    found = glob.glob(os.path.join(out, "wandb", f"offline-run-*-{rid}*"))
    return sorted(found, key=lambda d: (os.path.basename(d)[:27], int(d.rpartition(rid)[2][1:] or -1)))


def inspect(fragment):
    """W&B's own decoding of a fragment's transaction log: one dict per record."""
    path = glob.glob(os.path.join(fragment, "run-*.wandb"))[0]
    done = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", path],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def history(records):
    return [r["history"]["item"] for r in records if r["type"] == "history"]


def as_float(v):
    return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}.get(v, v)


# --- the sync and its report --------------------------------------------------------

def test_report_carries_and_verifies_everything_but_the_documented_drops(first):
    _, _, report = first
    d = report.as_dict()
    assert [r["status"] for r in d["runs"]] == ["carried", "carried"], d["runs"]
    assert all(not r["mismatch"] and not r["error"] for r in d["runs"]), d["runs"]
    totals = d["totals"]
    assert {k: t["dropped"] for k, t in totals.items() if t["dropped"]} == EXPECTED_DROPS
    for kind in ("scalars", "histograms", "images", "audio", "video", "text", "params", "files"):
        assert totals[kind]["written"] > 0 and totals[kind]["verified"] == totals[kind]["written"], kind
    # the PR curve is written as a W&B table, which readers give back as a markdown text table
    assert totals["tensors"]["transformed"] == {
        "PR curve carried as a W&B table (recall, precision), read back as a markdown table": 1,
        "hparams experiment: the params are the W&B config, its value domains are not kept": 1}
    assert totals["text"]["written"] == 2
    assert totals["files"]["transformed"] == {"path W&B writes itself: stored under tbx-files/": 1}
    assert totals["histograms"]["transformed"] == {"re-binned to at most 512 bins (W&B's limit), "
                                                   "adjacent bins summed": 1}
    assert report.exit_code() == 1  # exactly the custom_scalars drop


def test_each_run_is_one_finished_fragment_with_a_marker(first):
    logdir, out, _ = first
    for name in ("a", "b"):
        run = source_run(logdir, name)
        (frag,) = fragments(out, run)
        with open(os.path.join(frag, MARKER)) as f:
            assert json.load(f)["key"] == run.key
        records = inspect(frag)
        assert [r["exit"]["exit_code"] if "exit_code" in r["exit"] else 0
                for r in records if r["type"] == "exit"] == [0]


# --- W&B's own reader as the oracle ----------------------------------------------------

def test_history_rows_as_wandb_reads_them(first):
    logdir, out, _ = first
    run = source_run(logdir, "a")
    exp = expected_run(out, run)
    (frag,) = fragments(out, run)
    records = inspect(frag)
    rows = history(records)
    assert [r["_step"] for r in rows] == list(range(len(rows)))  # W&B's step: every row, in order
    steps = [r[STEP_KEY] for r in rows]
    for tag, s in exp.scalars.items():
        got = [(r[STEP_KEY], as_float(r[tag]), r["_timestamp"]) for r in rows if tag in r]
        assert [g[0] for g in got] == s.steps.tolist(), tag
        np.testing.assert_array_equal(np.array([g[1] for g in got], dtype=np.float64), s.values)
        assert np.all(np.abs(np.array([g[2] for g in got]) - s.wall_times) <= WALL_TOLERANCE), tag
    assert "tb/global_step" in exp.scalars and sorted(steps) == steps  # the TB step drives the rows
    # several tags of one step share a row; a tag logged half a second later has its own
    row0 = next(r for r in rows if r[STEP_KEY] == 0 and "loss" in r)
    assert "acc" in row0 and "val/acc" not in row0
    # histogram: 1000 bins summed pairwise into 500, counts exact
    hist = [(r[STEP_KEY], r["weights.values"], r["weights.bins"]) for r in rows if "weights.values" in r]
    src = run.series["histograms"]["weights"]
    assert [h[0] for h in hist] == [1, 2] and len(hist[0][1]) == 500 and len(src[0].counts) == 1000
    assert sum(hist[0][1]) == src[0].counts.sum() == 2000
    np.testing.assert_array_equal(hist[0][1], src[0].counts.reshape(500, 2).sum(axis=1))
    np.testing.assert_array_equal(hist[0][2], np.append(src[0].edges[:-1:2], src[0].edges[-1]))
    np.testing.assert_array_equal(hist[1][1], src[1].counts)
    np.testing.assert_array_equal(hist[1][2], src[1].edges)
    # media: the files W&B keeps are the source's bytes
    files = os.path.join(frag, "files")

    def read(rel):
        with open(os.path.join(files, rel), "rb") as f:
            return f.read()

    (img,) = [r for r in rows if "img._type" in r]
    assert img["img._type"] == "image-file" and read(img["img.path"]) == run.series["images"]["img"][0].data
    (batch,) = [r for r in rows if "batch._type" in r]
    assert batch["batch._type"] == "images/separated" and batch[STEP_KEY] == 2
    assert [read(p) for p in batch["batch.filenames"]] == [m.data for m in run.series["images"]["batch"]]
    (clip,) = [r for r in rows if "clip._type" in r]
    assert read(clip["clip.path"]) == run.series["audio"]["clip"][0].data
    (movie,) = [r for r in rows if "movie._type" in r]
    assert movie["movie._type"] == "video-file" and read(movie["movie.path"]) == run.series["video"]["movie"][0].data
    (note,) = [t for t in exp.series["text"] if t.startswith("note")]  # TensorBoard's "note/text_summary"
    assert [(r[STEP_KEY], r[note]) for r in rows if note in r] == [(2, "hello *markdown*")]
    (pr,) = [r for r in rows if "pr._type" in r]
    assert pr["pr._type"] == "table-file" and pr[STEP_KEY] == 3
    table = json.loads(read(pr["pr.path"]))
    assert table["columns"] == ["recall", "precision"] and len(table["data"]) == 11
    assert read("assets/info.txt") == FILES["assets/info.txt"] and read("tbx-files/output.log") == b"console\n"
    saved = {f["path"] for r in records if r["type"] == "files" for f in r["files"]["files"]}
    assert {"assets/info.txt", "tbx-files/output.log"} <= saved  # wandb sync uploads them
    (run_rec,) = [r["run"] for r in records if r["type"] == "run"]
    config = run_rec["config"]["update"]
    assert (config["lr"], config["opt"], run_rec["display_name"]) == (0.1, "sgd", "a")
    assert config["_tbx"]["key"] == "a" and run_rec["run_id"] == run_id(run.project, run.key)


def test_restarted_steps_stay_in_order(first):
    logdir, out, _ = first
    run = source_run(logdir, "b")
    rows = history(inspect(fragments(out, run)[0]))
    assert [(r[STEP_KEY], r["x"]) for r in rows] == [
        (0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (0, 5.0), (1, 6.0), (2, 7.0)]
    assert [r["_step"] for r in rows] == list(range(8))


# --- round trips -------------------------------------------------------------------------

def test_round_trip_back_to_tfevents(first, tmp):
    from tbx.converters.wandb_local import WandbOfflineSource

    logdir, out, _ = first
    back_dir = str(tmp / "back")
    report = sync(WandbOfflineSource(out), TfeventsDestination(back_dir), ledger=str(tmp / "back.db"))
    assert not any(r.error or r.mismatch for r in report.runs), report.as_dict()
    for name in ("a", "b"):
        exp = expected_run(out, source_run(logdir, name))
        got = source_run(back_dir, name)
        for tag, s in exp.scalars.items():
            g = got.scalars[tag]
            assert g.steps.tolist() == s.steps.tolist(), tag
            np.testing.assert_array_equal(g.values, s.values)
        for kind in ("histograms", "images", "audio", "video", "text"):
            for tag, items in exp.series[kind].items():
                assert all(a.same(b) for a, b in zip(items, got.series[kind][tag])), (kind, tag)
                assert len(items) == len(got.series[kind][tag]), (kind, tag)
        assert {k: got.params[k] for k in exp.params} == exp.params


def test_tbx_wandb_style_run_carries_history_config_and_status(tmp):
    from tbx.converters.wandb_local import WandbOfflineSource

    src_dir, out = str(tmp / "tbx_style"), str(tmp / "tbx_style_out")
    run = tbx.init(dir=src_dir, project="proj", name="style", config={"lr": 0.01, "net": {"depth": 3}},
                   tags=["baseline"], notes="a note", group="g1", job_type="train")
    for i in range(5):
        run.log({"loss": 1.0 / (i + 1), "acc": i / 5})
    run.summary["best"] = 0.8
    run.finish(exit_code=1)  # a failed run stays failed
    report = sync(TfeventsSource(src_dir), WandbDestination(directory=out), ledger=str(tmp / "style.db"))
    assert report.exit_code() == 0, report.as_dict()
    original = TfeventsSource(src_dir)
    (ref,) = original.list_runs()
    orig = original.read_run(ref, RunReport("x", "x"))
    back_src = WandbOfflineSource(out)
    (bref,) = back_src.list_runs()
    back = back_src.read_run(bref, RunReport("y", "y"))
    for tag in ("loss", "acc"):
        assert back.scalars[tag].values.tolist() == orig.scalars[tag].values.tolist()
    assert back.params["lr"] == 0.01 and back.params.get("net", {}).get("depth", back.params.get("net.depth")) == 3
    assert (back.name, back.labels, back.notes, back.group, back.job_type) == ("style", ["baseline"], "a note",
                                                                              "g1", "train")
    # the summary set after the history, as W&B's own reader sees it
    (frag,) = glob.glob(os.path.join(out, "wandb", "offline-run-*"))
    summary = {}
    for r in inspect(frag):
        if r["type"] == "summary":
            summary.update(r["summary"]["update"])
    assert (summary["best"], summary["loss"]) == (0.8, 0.2)
    assert [r["exit"].get("exit_code") for r in inspect(frag) if r["type"] == "exit"] == [1]
    assert orig.status == back.status == "FAILED"


# --- incremental syncs and crash safety --------------------------------------------------

def test_second_sync_writes_nothing(first, tmp):
    logdir, out, _ = first
    before = sorted(glob.glob(os.path.join(out, "wandb", "offline-run-*")))
    report = sync(TfeventsSource(logdir), WandbDestination(directory=out), ledger=str(tmp / "ledger.db"))
    assert [r.status for r in report.runs] == ["up-to-date", "up-to-date"]
    assert sorted(glob.glob(os.path.join(out, "wandb", "offline-run-*"))) == before


def test_grown_source_adds_a_fragment_with_only_the_new_points(first, tmp):
    logdir, out, _ = first
    run = source_run(logdir, "b")
    (frag1,) = fragments(out, run)
    # a fragment a killed sync left behind (not in the ledger): removed before writing
    stale = os.path.join(os.path.dirname(frag1), f"offline-run-19990101_000000-{run_id(run.project, run.key)}")
    shutil.copytree(frag1, stale)
    os.remove(os.path.join(stale, MARKER))
    w = tbx.SummaryWriter(os.path.join(logdir, "b"))
    for i, s in enumerate([3, 4, 5]):
        w.add_scalar("x", 8.0 + i, s, walltime=3000.0 + i)
    w.close()
    report = sync(TfeventsSource(logdir), WandbDestination(directory=out), ledger=str(tmp / "ledger.db"))
    rb = next(r for r in report.runs if r.name == "b")
    assert rb.status == "carried" and not rb.mismatch, rb.as_dict()
    assert (rb.kinds["scalars"].already, rb.kinds["scalars"].written, rb.kinds["scalars"].verified) == (8, 3, 11)
    assert next(r for r in report.runs if r.name == "a").status == "up-to-date"
    assert not os.path.exists(stale)
    frag1_again, frag2 = fragments(out, run)
    assert frag1_again == frag1
    rows = history(inspect(frag2))
    assert [(r["_step"], r[STEP_KEY], r["x"]) for r in rows] == [(8, 3, 8.0), (9, 4, 9.0), (10, 5, 10.0)]


def test_each_commit_is_a_fragment_and_steps_run_on(tmp):
    logdir, out = str(tmp / "small"), str(tmp / "small_out")
    w = tbx.SummaryWriter(os.path.join(logdir, "c"))
    for s in range(10):
        w.add_scalar("y", s * 2.0, s, walltime=5000.0 + s)
    w.close()
    report = sync(TfeventsSource(logdir), WandbDestination(directory=out), ledger=str(tmp / "small.db"),
                  commit_every=4)
    (rc,) = report.runs
    assert rc.status == "carried" and not rc.mismatch and rc.kinds["scalars"].verified == 10, rc.as_dict()
    frags = fragments(out, source_run(logdir, "c"))
    rows = [[(r["_step"], r[STEP_KEY]) for r in history(inspect(f))] for f in frags]
    assert rows == [[(i, i) for i in range(0, 4)], [(i, i) for i in range(4, 8)], [(8, 8), (9, 9)]]


def test_a_lost_ledger_finds_the_runs_already_there(first, tmp):
    logdir, out, _ = first
    report = sync(TfeventsSource(logdir), WandbDestination(directory=out), runs="a", ledger=str(tmp / "fresh.db"))
    (ra,) = report.runs
    assert not ra.mismatch and not ra.error, ra.as_dict()
    sc = ra.kinds["scalars"]
    assert sc.written == 0 and sc.already == sc.read == sc.verified


# --- the batched history path ---------------------------------------------------------------

def export_counting_logs(tmp, name, logdir, fast, monkeypatch):
    """Export ``logdir`` with the batched path on or off; returns (out dir, run.log calls)."""
    from wandb.sdk.wandb_run import Run

    from tbx.converters import wandb_export

    calls = []
    real_log = Run.log

    def counting_log(self, *args, **kwargs):
        calls.append(1)
        return real_log(self, *args, **kwargs)

    monkeypatch.setattr(Run, "log", counting_log)
    monkeypatch.setattr(wandb_export, "FAST_HISTORY", fast)
    out = str(tmp / name)
    report = sync(TfeventsSource(logdir), WandbDestination(directory=out), ledger=str(tmp / f"{name}.db"))
    assert report.exit_code() == 0, report.as_dict()
    return out, len(calls)


def test_batched_rows_are_the_records_run_log_writes(tmp, monkeypatch):
    logdir = str(tmp / "batched")
    w = tbx.SummaryWriter(os.path.join(logdir, "r"))
    odd = [0.1, -0.0, 1e300, 5e-324, float("nan"), float("inf"), float("-inf"), 3.0, 1 / 3, 2.0 ** 60]
    for s in range(2500):  # more than one batch
        for t in range(3):
            w.add_scalar(f"m/{t}", odd[(s + t) % len(odd)] * (s + 1), s, walltime=100.0 + s + t * 1e-5)
        if s % 1000 == 999:
            w.add_histogram("h", np.arange(10.0), s, walltime=100.0 + s)  # a row through run.log, in between
    w.add_scalar("global_step", 7.0, 3, walltime=200.0)  # renamed tb/global_step, its own row
    w.close()
    fast_out, fast_calls = export_counting_logs(tmp, "batched_fast", logdir, True, monkeypatch)
    slow_out, slow_calls = export_counting_logs(tmp, "batched_slow", logdir, False, monkeypatch)
    assert (fast_calls, slow_calls) == (2, 2501)  # only the histogram rows went through run.log

    def records(out):
        (frag,) = glob.glob(os.path.join(out, "wandb", "offline-run-*"))
        recs = inspect(frag)
        rows = [{k: v for k, v in r.items() if k != "_runtime"} for r in history(recs)]
        summary = {}
        for r in recs:
            if r["type"] == "summary":
                summary.update(r["summary"].get("update", {}))
        return rows, {k: v for k, v in summary.items() if not k.startswith("_")}

    fast_rows, fast_summary = records(fast_out)
    slow_rows, slow_summary = records(slow_out)
    assert len(fast_rows) == 2501 and fast_rows == slow_rows
    assert fast_summary == slow_summary and fast_summary["m/0"] == fast_rows[-1]["m/0"] == 2.0 ** 60 * 2500


def test_log_finished_needs_the_exit_record(first, tmp):
    from tbx.converters.wandb_export import log_finished, wait_for_log

    _, out, _ = first
    path = glob.glob(os.path.join(out, "wandb", "offline-run-*", "*.wandb"))[0]
    with open(path, "rb") as f:
        data = f.read()
    assert log_finished(path)
    cut = str(tmp / "cut.wandb")
    for size in (len(data) - 1, len(data) // 2, 7, 0):  # what wandb-core has not written yet
        with open(cut, "wb") as f:
            f.write(data[:size])
        assert not log_finished(cut), size
    with pytest.raises(SyncError, match="exit record"):
        wait_for_log(cut, timeout=0.05)
    assert not log_finished(str(tmp / "missing.wandb"))


# --- pieces ------------------------------------------------------------------------------------

def test_rebin_keeps_every_count():
    edges = np.linspace(-1, 1, 1301)
    counts = np.arange(1300, dtype=np.float64)
    h = rebin(Histogram(4, 1.0, edges, counts))
    assert len(h.counts) == 434 and h.counts.sum() == counts.sum()  # groups of ceil(1300/512) = 3
    assert h.edges[0] == -1 and h.edges[-1] == 1 and h.counts[0] == 0 + 1 + 2 and h.counts[-1] == 1299
    small = Histogram(1, 1.0, np.linspace(0, 1, 513), np.ones(512))
    assert rebin(small) is small


def seq(key, points):
    steps, walls, values = zip(*points)
    return _Series(key, np.array(steps), np.array(walls), list(values))


def rows_of(series):
    return [(step, wall, dict(zip(keys, values))) for step, wall, keys, values in history_rows(series)]


def test_history_rows_group_by_step_and_keep_each_tag_in_order():
    assert rows_of([
        seq("a", [(0, 10.0, 1.0), (1, 11.0, 2.0), (1, 11.0, 3.0), (0, 20.0, 4.0)]),  # a repeat, then a restart
        seq("b", [(0, 10.0002, 5.0), (1, 12.0, 6.0)]),  # same step, 0.2 ms later / 1 s later
    ]) == [(0, 10.0, {"a": 1.0, "b": 5.0}), (1, 11.0, {"a": 2.0}), (1, 12.0, {"b": 6.0}),
           (1, 11.0, {"a": 3.0}), (0, 20.0, {"a": 4.0})]
    assert rows_of([]) == []


def test_history_rows_split_what_one_row_cannot_hold():
    # two series with one key (a renamed tag meeting its namesake): a second row, same time
    # wall times spread over more than the tolerance: a chunk per 0.5 ms, rows in time order
    rows = rows_of([
        seq("k", [(0, 1.0, 1.0), (1, 2.0, 2.0), (2, 3.0, 3.0)]),
        seq("k", [(0, 1.0001, 9.0)]),
        seq("x", [(1, 2.0004, 4.0), (2, 3.0, 5.0)]),
        seq("y", [(1, 2.0006, 6.0), (1, 2.0011, 7.0)]),  # y twice at step 1 (a repeat): its own group
    ])
    assert rows == [(0, 1.0, {"k": 1.0}), (0, 1.0, {"k": 9.0}),
                    (1, 2.0, {"k": 2.0, "x": 4.0}), (1, 2.0006, {"y": 6.0}),
                    (1, 2.0011, {"y": 7.0}),
                    (2, 3.0, {"k": 3.0, "x": 5.0})]


def reference_rows(series):
    """The row rule spelled out item by item (what the vectorized history_rows must match)."""
    groups = {}
    for s in series:
        rnd, rep, prev = 0, 0, None
        for step, wall, value in zip(s.steps.tolist(), s.walls.tolist(), s.values):
            if prev is not None:
                rnd, rep = (rnd + 1, 0) if step < prev else (rnd, rep + 1 if step == prev else 0)
            prev = step
            groups.setdefault((rnd, step, rep), []).append((wall, s.key, value))
    out = []
    for pos in sorted(groups):
        members = sorted(groups[pos], key=lambda m: m[0])
        i = 0
        while i < len(members):
            start, rows = members[i][0], []
            while i < len(members) and members[i][0] - start <= WALL_TOLERANCE:
                row = next((r for r in rows if members[i][1] not in r), None)
                if row is None:
                    rows.append(row := {})
                row[members[i][1]] = members[i][2]
                i += 1
            out += [(pos[1], start, row) for row in rows]
    return out


def test_history_rows_match_the_item_by_item_rule():
    rng = np.random.default_rng(3)
    for _ in range(300):
        series = []
        for _ in range(rng.integers(0, 5)):
            n = int(rng.integers(0, 9))
            walls = rng.choice([1.0, 1.0003, 1.0006, 1.001, 2.0], n) + rng.choice([0.0, 0.0002], n)
            series.append(_Series(str(rng.choice(list("abc"))), rng.integers(0, 4, n), walls,
                                  rng.integers(0, 100, n).astype(float).tolist()))
        assert rows_of(series) == reference_rows(series)


def test_media_groups_follow_the_event_index():
    m = [Media(1, 1.0, b"x", "png", 0), Media(1, 1.0, b"y", "png", 1), Media(1, 1.0, b"z", "png", 0),
         Media(2, 2.0, b"w", "png", 0)]
    assert [[x.data for x in g] for g in media_groups(m)] == [[b"x", b"y"], [b"z"], [b"w"]]


def test_expected_counts_what_wandb_cannot_hold(tmp):
    run = RunData("k", "n", params={"--lr": 0.1, "_wandb": 1}, labels=["ok", "x" * 65], tags={"team": "t"})
    run.scalars["_hidden"] = Scalars([0], [1.0], [2.0])
    run.add("images", "img", Media(0, 1.0, b"raw", "bin"))
    run.add("text", "t", Text(0, 1.0, "hi"))
    rr = RunReport("n", "k")
    exp = WandbDestination(directory=str(tmp / "unused")).open_run(run, None).expected(run, rr)
    assert exp.params == {"lr": 0.1} and exp.labels == ["ok"] and exp.tags == {"team": "t"}
    assert list(exp.scalars) == ["tb/_hidden"] and "img" not in exp.series["images"]
    assert exp.series["text"]["t"][0].text == "hi"
    d = rr.as_dict()["kinds"]
    assert d["images"]["dropped"] == {"not a png, jpeg, gif or bmp image": 1}
    assert d["params"]["dropped"] and d["params"]["transformed"] and d["tags"]["dropped"]
    assert not os.path.exists(tmp / "unused")  # expected() creates nothing


def test_cli_exports_to_a_named_project(tmp):
    logdir, out = str(tmp / "cli_logs"), str(tmp / "cli_out")
    w = tbx.SummaryWriter(os.path.join(logdir, "r"))
    w.add_scalar("loss", 0.5, 1, walltime=10.0)
    w.close()

    def tbx_sync(*extra):
        return subprocess.run([sys.executable, "-m", "tbx", "sync", logdir, f"wandb:{out}", "--project", "my-proj",
                               "--ledger", str(tmp / "cli.db"), "--quiet", *extra],
                              capture_output=True, text=True, timeout=300)

    done = tbx_sync("--dry-run")
    assert done.returncode == 0 and not os.path.exists(out), done.stderr  # a dry run creates nothing
    done = tbx_sync("--report", str(tmp / "cli.json"))
    assert done.returncode == 0, done.stderr
    with open(tmp / "cli.json") as f:
        assert json.load(f)["runs"][0]["kinds"]["scalars"]["verified"] == 1
    (frag,) = glob.glob(os.path.join(out, "wandb", "offline-run-*"))
    (run_rec,) = [r["run"] for r in inspect(frag) if r["type"] == "run"]
    assert run_rec["project"] == "my-proj"


def test_missing_sdk_names_the_install(monkeypatch, tmp):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(SyncError, match="pip install wandb"):
        WandbDestination(directory=str(tmp / "none")).check()
