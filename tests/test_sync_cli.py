"""``tbx sync SRC DST``: every flag, the exit statuses, the messages and the progress bar.

Most tests call ``tbx.cli.main`` in-process (the same code as the console
script) on small logdirs; the progress bar tests run the real ``tbx`` command
with stderr on a pseudo-terminal, or on a pipe.
"""

import json
import os
import pty
import select as select_mod
import subprocess
import sys

import pytest

from test_converters_engine import (
    assert_same_columns, columns, corrupt_middle, ledger_rows, snapshot, write_runs,
)
from tbx.cli import main
from tbx.converters.model import KINDS

RUNS = ("alpha", "beta", "gamma", "delta", "eps1", "eps2")


@pytest.fixture(autouse=True)
def _state_dir(tmp_path, monkeypatch):
    """Default ledgers go under the test's own directory, never ~/.local/state."""
    monkeypatch.setenv("TBX_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("TBX_DEBUG", raising=False)


@pytest.fixture
def src(tmp_path):
    return write_runs(str(tmp_path / "src"), names=RUNS, points=20)


def tbx_sync(capsys, *args):
    """``tbx sync ARGS`` in-process: (exit status, stdout, stderr)."""
    code = main(["sync", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_flag_and_examples(capsys):
    with pytest.raises(SystemExit) as done:
        main(["sync", "-h"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--runs", "--workers", "--shard", "--dry-run", "--report", "--quiet", "--ledger", "--strict",
                 "--no-verify"):
        assert flag in out
    assert "examples:" in out and "tbx sync runs/ mlflow --dry-run" in out


def test_sync_then_nothing_new(capsys, src, tmp_path):
    dst = tmp_path / "dst"
    code, out, err = tbx_sync(capsys, src, dst)
    assert code == 0, err
    head = out.splitlines()[0]
    assert "6 runs (6 carried, 0 up to date, 0 failed)" in head
    assert "nothing new" not in err
    assert_same_columns(src, str(dst))
    # the default ledger is per SRC/DST pair under $TBX_STATE_DIR
    (ledger,) = os.listdir(tmp_path / "state" / "sync")
    assert set(ledger_rows(tmp_path / "state" / "sync" / ledger)) == set(RUNS)

    code, out, err = tbx_sync(capsys, src, dst)
    assert code == 0
    assert "6 runs (0 carried, 6 up to date, 0 failed)" in out.splitlines()[0]
    assert "nothing new to carry" in err
    assert_same_columns(src, str(dst))


def test_report_json_schema(capsys, src, tmp_path):
    path = tmp_path / "r.json"
    code, _out, _err = tbx_sync(capsys, src, tmp_path / "dst", "--report", path)
    assert code == 0
    d = json.loads(path.read_text())
    assert d["exit_code"] == 0 and d["dry_run"] is False
    assert d["source"].endswith(os.path.abspath(src)) and d["destination"].endswith(str(tmp_path / "dst"))
    assert {k: d["counts"][k] for k in ("runs", "carried", "up_to_date", "failed", "skipped")} == \
        {"runs": 6, "carried": 6, "up_to_date": 0, "failed": 0, "skipped": 0}
    assert [r["run"] for r in d["runs"]] == sorted(RUNS)
    for run in d["runs"]:
        assert run["status"] == "carried" and run["error"] is None and run["mismatch"] == []
        assert run["destination"] == str(tmp_path / "dst" / run["run"])
        kinds = list(run["kinds"])
        assert {"scalars", "histograms", "text", "params"} <= set(kinds)
        assert kinds == [k for k in KINDS if k in kinds]  # in the model's order
        for k in run["kinds"].values():
            assert set(k) == {"read", "already", "written", "verified", "transformed", "dropped"}
            assert k["read"] == k["written"] == k["verified"]
    assert d["totals"]["scalars"]["written"] == 6 * 41


def test_workers_give_the_same_destination(capsys, src, tmp_path):
    one, three = tmp_path / "one", tmp_path / "three"
    assert tbx_sync(capsys, src, one, "--workers", 1, "-q")[0] == 0
    assert tbx_sync(capsys, src, three, "--workers", 3, "-q", "--report", tmp_path / "r.json")[0] == 0
    assert snapshot(str(one)) == snapshot(str(three))
    assert json.loads((tmp_path / "r.json").read_text())["counts"]["carried"] == 6
    assert_same_columns(src, str(three))


def test_shards_split_the_runs(capsys, src, tmp_path):
    dst = tmp_path / "dst"
    got = []
    for i in range(2):
        report = tmp_path / f"r{i}.json"
        code, _out, _err = tbx_sync(capsys, src, dst, "--shard", f"{i}/2", "--report", report)
        assert code == 0
        d = json.loads(report.read_text())
        got.append({r["run"] for r in d["runs"]})
        assert d["counts"]["skipped"] == len(RUNS) - len(got[-1])
    assert got[0].isdisjoint(got[1]) and got[0] | got[1] == set(RUNS)
    assert all(got)  # six runs over two shards: crc32 puts some in each
    assert_same_columns(src, str(dst))
    code, out, err = tbx_sync(capsys, src, dst)  # the whole sync afterwards: all there already
    assert code == 0 and "nothing new" in err


def test_runs_glob(capsys, src, tmp_path):
    dst = tmp_path / "dst"
    code, out, err = tbx_sync(capsys, src, dst, "--runs", "eps*", "--report", tmp_path / "r.json")
    assert code == 0
    d = json.loads((tmp_path / "r.json").read_text())
    assert [r["run"] for r in d["runs"]] == ["eps1", "eps2"] and d["counts"]["skipped"] == 4
    assert "4 not selected" in out.splitlines()[0]
    assert {run for run, _tag in columns(str(dst))} == {"eps1", "eps2"}
    code, _out, err = tbx_sync(capsys, src, dst, "--runs", "nomatch*")
    assert code == 0 and "no runs selected (6 not selected)" in err


def test_dry_run_writes_nothing(capsys, src, tmp_path):
    dst = tmp_path / "dst"
    code, out, _err = tbx_sync(capsys, src, dst, "--dry-run", "--report", tmp_path / "r.json")
    assert code == 0
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["dry_run"] is True
    assert [r["status"] for r in d["runs"]] == ["would-carry"] * 6
    assert d["totals"]["scalars"]["written"] == 6 * 41 and d["totals"]["scalars"]["verified"] == 0
    assert not os.path.exists(dst) or not os.listdir(dst)  # (test_converters_engine: not even the dir)
    assert "6 would carry" in out.splitlines()[0]


def test_quiet_prints_no_table(capsys, src, tmp_path):
    code, out, err = tbx_sync(capsys, src, tmp_path / "dst", "--quiet")
    assert code == 0 and out == "" and err == ""
    code, out, err = tbx_sync(capsys, src, tmp_path / "dst", "-q")
    assert code == 0 and out == "" and "nothing new" in err


def test_no_verify_skips_the_read_back(capsys, src, tmp_path):
    code, _out, _err = tbx_sync(capsys, src, tmp_path / "dst", "--no-verify", "--report", tmp_path / "r.json")
    assert code == 0
    totals = json.loads((tmp_path / "r.json").read_text())["totals"]
    assert totals["scalars"]["written"] == 6 * 41 and totals["scalars"]["verified"] == 0


# --- bad input ---------------------------------------------------------------------------

def test_not_a_tensorboard_directory(capsys, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    code, out, err = tbx_sync(capsys, tmp_path / "notes", tmp_path / "dst")
    assert code == 2 and out == ""
    assert err.startswith("tbx sync: error:") and "no TensorBoard event files" in err
    assert str(tmp_path / "notes") in err


def test_missing_source(capsys, tmp_path):
    code, _out, err = tbx_sync(capsys, tmp_path / "nope", tmp_path / "dst")
    assert code == 2 and "no such logdir" in err and str(tmp_path / "nope") in err


def test_failed_start_creates_nothing(capsys, tmp_path):
    (tmp_path / "notes").mkdir()
    for source in (tmp_path / "nope", tmp_path / "notes"):
        code, _out, _err = tbx_sync(capsys, source, tmp_path / "dst")
        assert code == 2
        assert not (tmp_path / "dst").exists(), f"a sync of {source} that could not start created its destination"


def test_destination_is_a_file(capsys, src, tmp_path):
    (tmp_path / "afile").write_text("x")
    code, _out, err = tbx_sync(capsys, src, tmp_path / "afile")
    assert code == 2 and "is not a directory" in err and str(tmp_path / "afile") in err
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize("flag, value, message", [
    ("--shard", "2/2", "need 0 <= I < N"),
    ("--shard", "x", "--shard takes I/N"),
    ("--workers", "0", "--workers must be at least 1, got 0"),
    ("--workers", "two", "--workers takes a whole number"),
])
def test_bad_flags_are_usage_errors(capsys, src, tmp_path, flag, value, message):
    with pytest.raises(SystemExit) as done:
        main(["sync", src, str(tmp_path / "dst"), flag, value])
    assert done.value.code == 2
    assert message in capsys.readouterr().err


def test_ledger_of_another_pair(capsys, src, tmp_path):
    ledger = tmp_path / "l.sqlite"
    assert tbx_sync(capsys, src, tmp_path / "dst1", "--ledger", ledger, "-q")[0] == 0
    code, _out, err = tbx_sync(capsys, src, tmp_path / "dst2", "--ledger", ledger)
    assert code == 2
    assert str(ledger) in err and "belongs to the sync" in err and str(tmp_path / "dst1") in err
    assert not (tmp_path / "dst2").exists() or not os.listdir(tmp_path / "dst2")
    (tmp_path / "junk.sqlite").write_bytes(b"not sqlite at all" * 100)
    code, _out, err = tbx_sync(capsys, src, tmp_path / "dst3", "--ledger", tmp_path / "junk.sqlite")
    assert code == 2 and "not a tbx sync ledger" in err


def test_corrupt_source_lenient(capsys, src, tmp_path):
    path, offset = corrupt_middle(os.path.join(src, "beta"))
    code, out, _err = tbx_sync(capsys, src, tmp_path / "dst", "--report", tmp_path / "r.json")
    assert code == 1
    assert f"DROPPED 1: corrupt record in {path} at byte {offset}" in out
    d = json.loads((tmp_path / "r.json").read_text())
    beta = {r["run"]: r for r in d["runs"]}["beta"]
    assert beta["status"] == "carried"
    assert beta["kinds"]["records"]["dropped"] == {f"corrupt record in {path} at byte {offset}": 1}
    assert d["counts"]["carried"] == 6 and d["exit_code"] == 1
    assert len(columns(str(tmp_path / "dst"))) == 18  # every run and tag (loss, acc, hp/score) is there


def test_corrupt_source_strict(capsys, src, tmp_path):
    path, offset = corrupt_middle(os.path.join(src, "beta"))
    ledger = tmp_path / "l.sqlite"
    code, _out, err = tbx_sync(capsys, src, tmp_path / "dst", "--strict", "--ledger", ledger)
    assert code == 1
    assert f"tbx sync: stopped: checksum mismatch in {path} at byte {offset}" in err
    assert ledger_rows(ledger) == {"alpha": "carried"}  # runs are carried in name order: alpha, beta, ...
    assert not (tmp_path / "dst" / "beta").exists()


# --- progress -------------------------------------------------------------------------------

def _tbx(*args, stderr):
    exe = os.path.join(os.path.dirname(sys.executable), "tbx")
    return subprocess.Popen([exe, "sync", *map(str, args)], stdout=subprocess.PIPE, stderr=stderr,
                            env=dict(os.environ, TBX_DEBUG=""))


def _drain(fd, proc):
    data = b""
    while True:
        ready, _, _ = select_mod.select([fd], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        data += chunk
    proc.wait(timeout=60)
    return data.decode("utf-8", "replace")


def test_progress_on_a_terminal(src, tmp_path):
    leader, follower = pty.openpty()
    try:
        proc = _tbx(src, tmp_path / "dst", stderr=follower)
        os.close(follower)
        follower = None
        err = _drain(leader, proc)
        proc.stdout.close()
    finally:
        os.close(leader)
        if follower is not None:
            os.close(follower)
    assert proc.returncode == 0
    assert "runs 6/6" in err and "\r" in err
    assert "items" in err


def test_no_progress_when_stderr_is_not_a_terminal(src, tmp_path):
    proc = _tbx(src, tmp_path / "dst", stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert b"runs " not in err and b"\r" not in err
    assert b"6 carried" in out


@pytest.mark.parametrize("spec, kind", [
    ("runs/", "tfevents"), ("tb:wandb/", "tfevents"), ("http://127.0.0.1:5000#exp", "mlflow"),
    ("sqlite:///m.db", "mlflow"), ("mlflow", "mlflow"), ("wandb:offline", "wandb-offline"),
    ("wandb://team/proj", "wandb-cloud"),
])
def test_every_endpoint_kind_is_a_listed_backend(spec, kind):
    from tbx.converters import BACKENDS
    from tbx.converters.endpoints import kind_of

    assert kind_of(spec)[0] == kind and kind in BACKENDS


@pytest.mark.parametrize("spec", ["", "ftp://host/x", "wandb://only-entity", "wandb://a/b/c"])
def test_bad_endpoints_are_refused_naming_them(spec):
    from tbx.converters.base import UsageError
    from tbx.converters.endpoints import kind_of

    with pytest.raises(UsageError) as err:
        kind_of(spec)
    assert (spec or "empty") in str(err.value)
