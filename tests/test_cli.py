"""Tests of tbx/cli.py: every subcommand and flag, errors, exit codes."""

import json
import os
import subprocess
import sys

import pytest

import tbx

from tbx import cli, record
from tbx.proto import event_pb2, summary_pb2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCALARS_MD = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR,
).SerializeToString()


def records(tag="loss", steps=(1, 2, 3)):
    out = [record.frame(event_pb2.Event(wall_time=1.0, file_version="brain.Event:2").SerializeToString())]
    for i, s in enumerate(steps):
        out.append(record.encode_scalar(tag, 0.5 * s, s, 2.0 + s, SCALARS_MD if i == 0 else None, False))
    return out


@pytest.fixture
def logdir(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "eval" / "sub").mkdir(parents=True)
    (tmp_path / "train" / "events.out.tfevents.1.h.1.0").write_bytes(b"".join(records("loss", (0, 5, 9))))
    (tmp_path / "eval" / "sub" / "events.out.tfevents.1.h.1.0").write_bytes(b"".join(records("acc", (-2, 4))))
    return tmp_path


def run(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# --- help --------------------------------------------------------------------

def test_no_arguments_prints_help_and_returns_2(capsys):
    rc, out, _ = run(capsys)
    assert rc == 2 and "usage: tbx" in out and "ls" in out and "verify" in out


@pytest.mark.parametrize("argv", [["-h"], ["--help"], ["ls", "-h"], ["verify", "--help"]])
def test_help_everywhere_with_examples(capsys, argv):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: tbx" in out and "examples:" in out and "tbx " in out.split("examples:")[1]


def test_usage_error_returns_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["ls"])  # LOGDIR missing
    assert info.value.code == 2
    assert "LOGDIR" in capsys.readouterr().err


# --- ls ----------------------------------------------------------------------

def test_ls_table(capsys, logdir):
    rc, out, err = run(capsys, "ls", str(logdir))
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["RUN", "TAG", "KIND", "COUNT", "MIN", "STEP", "MAX", "STEP"]
    assert lines[1].split() == ["eval/sub", "acc", "scalars", "2", "-2", "4"]
    assert lines[2].split() == ["train", "loss", "scalars", "3", "0", "9"]
    assert lines[-1] == "2 runs, 2 tags, 2 event files"


def test_ls_json(capsys, logdir):
    rc, out, _ = run(capsys, "ls", str(logdir), "--json")
    assert rc == 0
    data = json.loads(out)
    assert data["logdir"] == str(logdir)
    assert [r["run"] for r in data["runs"]] == ["eval/sub", "train"]
    assert data["runs"][1]["tags"] == [{"tag": "loss", "kind": "scalars", "count": 3, "min_step": 0, "max_step": 9}]
    assert data["runs"][1]["files"] == ["events.out.tfevents.1.h.1.0"]


def test_ls_single_file_and_run_without_tags(capsys, logdir):
    rc, out, _ = run(capsys, "ls", str(logdir / "train" / "events.out.tfevents.1.h.1.0"))
    assert rc == 0 and out.splitlines()[1].split()[:3] == [".", "loss", "scalars"]
    (logdir / "empty").mkdir()
    (logdir / "empty" / "events.out.tfevents.2.h.1.0").write_bytes(b"".join(records(steps=())))
    rc, out, _ = run(capsys, "ls", str(logdir / "empty"))
    assert rc == 0 and "(no tags)" in out


def test_ls_errors_are_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("TBX_DEBUG", raising=False)
    rc, out, err = run(capsys, "ls", str(tmp_path / "missing"))
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("tbx: error: ") and "missing" in err
    rc, _, err = run(capsys, "ls", str(tmp_path))
    assert rc == 1 and "no event files under" in err and err.count("\n") == 1


def test_ls_corrupt_file_reports_offset(capsys, logdir):
    f = logdir / "train" / "events.out.tfevents.1.h.1.0"
    blob = bytearray(f.read_bytes())
    second = len(records()[0])
    blob[second + 13] ^= 1
    f.write_bytes(bytes(blob))
    rc, _, err = run(capsys, "ls", str(logdir))
    assert rc == 1 and str(f) in err and f"byte {second}" in err and "data crc" in err


def test_debug_env_shows_traceback(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TBX_DEBUG", "1")
    rc, _, err = run(capsys, "ls", str(tmp_path / "missing"))
    assert rc == 1 and "Traceback" in err and err.rstrip().splitlines()[-1].startswith("tbx: error: ")


# --- verify ------------------------------------------------------------------

def test_verify_ok(capsys, logdir):
    rc, out, _ = run(capsys, "verify", str(logdir))
    lines = out.splitlines()
    assert rc == 0
    assert lines[0].startswith("OK") and "eval" in lines[0] and "3 records" in lines[0]
    assert lines[1].startswith("OK") and "train" in lines[1] and "4 records" in lines[1]
    assert lines[-1] == "2 files checked: 2 OK, 0 corrupt"


def test_verify_cut_off_last_record_is_a_note(capsys, logdir):
    f = logdir / "train" / "events.out.tfevents.1.h.1.0"
    data = f.read_bytes()
    f.write_bytes(data + records(steps=(10,))[1][:20])
    rc, out, _ = run(capsys, "verify", str(f))
    assert rc == 0
    assert out.splitlines()[0].startswith("OK") and f"cut-off last record at byte {len(data)}" in out


@pytest.mark.parametrize("where, reason", [(13, "data crc"), (2, "length crc")])
def test_verify_corruption(capsys, logdir, where, reason):
    f = logdir / "train" / "events.out.tfevents.1.h.1.0"
    recs = records("loss", (0, 5, 9))
    offset = len(recs[0]) + len(recs[1])
    blob = bytearray(f.read_bytes())
    blob[offset + where] ^= 1
    f.write_bytes(bytes(blob))
    rc, out, _ = run(capsys, "verify", str(logdir))
    assert rc == 1
    bad = [line for line in out.splitlines() if line.startswith("CORRUPT")]
    assert len(bad) == 1 and str(f) in bad[0] and f"byte {offset}: {reason}" in bad[0]
    assert out.splitlines()[-1] == "2 files checked: 1 OK, 1 corrupt"


def test_verify_unparsable_event(capsys, tmp_path):
    f = tmp_path / "events.out.tfevents.1"
    recs = records()
    f.write_bytes(b"".join(recs[:2]) + record.frame(b"\x0a\xff"))
    rc, out, _ = run(capsys, "verify", str(tmp_path))
    assert rc == 1 and f"byte {len(recs[0]) + len(recs[1])}: event proto" in out


def test_verify_no_event_files(capsys, tmp_path):
    rc, _, err = run(capsys, "verify", str(tmp_path))
    assert rc == 1 and "no event files" in err


# --- demo ----------------------------------------------------------------------

def test_demo_writes_a_realistic_run(capsys, tmp_path):
    rc, out, _ = run(capsys, "demo", "--logdir", str(tmp_path), "--name", "d", "--steps", "120")
    assert rc == 0 and f"tensorboard --logdir {tmp_path}" in out
    frame = tbx.read_scalars(str(tmp_path), as_frame=False)
    tags = set(frame["tag"])
    assert {"train/loss", "train/accuracy", "val/loss", "val/accuracy", "lr"} <= tags
    loss = frame["value"][frame["tag"] == "train/loss"]
    assert len(loss) == 120 and loss[-10:].mean() < loss[:10].mean()  # it learns
    kinds = {(e.summary.value[0].tag, e.summary.value[0].metadata.plugin_data.plugin_name)
             for _, e in tbx.read_events(str(tmp_path)) if e.summary.value and e.summary.value[0].HasField("metadata")}
    assert ("weights/w1", "histograms") in kinds and ("decision_boundary", "images") in kinds
    assert ("config/text_summary", "text") in kinds


def test_demo_help_has_example(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["demo", "--help"])
    assert info.value.code == 0 and "tbx demo" in capsys.readouterr().out


# --- the installed entry points -------------------------------------------------

def test_python_dash_m(logdir):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for module in ("tbx.cli", "tbx"):
        proc = subprocess.run([sys.executable, "-m", module, "ls", str(logdir), "--json"],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert [r["run"] for r in json.loads(proc.stdout)["runs"]] == ["eval/sub", "train"]
    proc = subprocess.run([sys.executable, "-m", "tbx.cli", "verify", str(logdir / "nope")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert proc.returncode == 1 and proc.stderr.startswith("tbx: error:")
