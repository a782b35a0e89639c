"""The sync engine (tbx.converters.engine) with its ledger and report, on real logdirs.

Sources are logdirs written by ``tbx.SummaryWriter``; the destination is a
real TensorBoard logdir (the tfevents backend). Points are checked by reading
the destination back with ``tbx.reader.read_scalars``, not through the engine.

The crash tests run the engine in a child process and SIGKILL it: once at a
moment found by polling the ledger, and at exact points (after a write that
was not committed, after a commit not yet recorded in the ledger) through a
destination subclass that kills its own process there.

Helpers at the top (``write_runs``, ``columns``, ``snapshot``, ``carry``) are
also used by tests/test_sync_cli.py.
"""

import json
import math
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest

import tbx
from tbx.converters.base import RunRef, SyncError
from tbx.converters.engine import select, sync
from tbx.converters.ledger import Entry, Ledger, default_path
from tbx.converters.model import RunData
from tbx.converters.report import RunReport, SyncReport
from tbx.converters.tfevents import TfeventsDestination, TfeventsRun, TfeventsSource
from tbx.reader import read_scalars

WALL0 = 1_700_000_000.0


# --- helpers (shared with test_sync_cli.py) ------------------------------------

def value(run_index, tag_index, step):
    """A float32-exact value, distinct per run, tag and step."""
    return float(np.float32(run_index * 1000 + tag_index * 100 + step * 0.25))


def write_runs(root, names=("a", "b", "c"), points=40, first_step=0, hparams=True, extras=True):
    """Write one small run per name (two scalar tags, and a histogram, text and hparams)."""
    for r, name in enumerate(names):
        with tbx.SummaryWriter(os.path.join(root, name)) as w:
            for step in range(first_step, first_step + points):
                for t, tag in enumerate(("loss", "acc")):
                    w.add_scalar(tag, value(r, t, step), step, walltime=WALL0 + step * 0.125 + r)
            if extras:
                w.add_histogram("weights", np.arange(10.0) + first_step, first_step, walltime=WALL0 + r)
                w.add_text("note", f"run {name} from step {first_step}", first_step, walltime=WALL0 + r)
            if hparams and first_step == 0:
                w.add_hparams({"lr": 0.1 * (r + 1), "opt": "adam"}, {"hp/score": float(r)}, run_name=".")
    return root


def columns(logdir):
    """``{(run, tag): (steps, wall_times, values)}`` of every scalar point under ``logdir``."""
    c = read_scalars(logdir, as_frame=False)
    out = {}
    for run in np.unique(c["run"].astype(str)):
        in_run = c["run"] == run
        for tag in np.unique(c["tag"][in_run].astype(str)):
            sel = in_run & (c["tag"] == tag)
            out[run, tag] = (c["step"][sel], c["wall_time"][sel], c["value"][sel])
    return out


def assert_same_columns(src, dst):
    """Every (run, tag) of ``src`` is in ``dst`` with exactly the same points, once each."""
    a, b = columns(src), columns(dst)
    assert sorted(a) == sorted(b)
    for key in a:
        for name, x, y in zip(("steps", "wall_times", "values"), a[key], b[key]):
            assert len(x) == len(y), f"{key} {name}: {len(y)} points in the destination, {len(x)} in the source"
            assert np.array_equal(x, y, equal_nan=name == "values"), f"{key} {name} differ"


def _item(x):
    if hasattr(x, "counts"):
        return ("hist", x.step, x.wall_time, x.edges.tolist(), x.counts.tolist())
    if hasattr(x, "data"):
        return ("media", x.step, x.wall_time, x.data, x.fmt, x.index)
    if hasattr(x, "text"):
        return ("text", x.step, x.wall_time, x.text)
    return ("raw", x.step, x.wall_time, x.plugin, x.value)


def snapshot(logdir):
    """A destination logdir as plain data (every item of every run), for comparing two of them."""
    out = {}
    src = TfeventsSource(logdir)
    for ref in src.list_runs():
        data = src.read_run(ref, RunReport(ref.name, ref.key))
        run = {"params": data.params, "files": {f.path: f.data for f in data.files}}
        for kind, per_tag in data.series.items():
            for tag, items in per_tag.items():
                if kind == "scalars":
                    run[kind, tag] = (items.steps.tolist(), items.wall_times.tolist(),
                                      [repr(v) for v in items.values.tolist()])
                else:
                    run[kind, tag] = [_item(x) for x in items]
        out[ref.key] = run
    return out


def carry(src, dst, ledger, **options):
    return sync(TfeventsSource(src, strict=options.pop("source_strict", False)), TfeventsDestination(dst),
                ledger=os.fspath(ledger), **options)


def record_offsets(path):
    """``[(offset, payload length)]`` of every record of an event file."""
    with open(path, "rb") as f:
        data = f.read()
    out, pos = [], 0
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        out.append((pos, length))
        pos += 16 + length
    return out


def corrupt_middle(run_dir, part="data"):
    """Flip one byte of the middle record of the run's (only) event file.

    ``part="data"`` breaks the record's payload (that record alone is lost);
    ``part="length"`` breaks its length field (nothing after it can be found).
    Returns the file's path and the record's offset.
    """
    (name,) = [n for n in os.listdir(run_dir) if "tfevents" in n]
    path = os.path.join(run_dir, name)
    records = record_offsets(path)
    offset, length = records[len(records) // 2]
    where = offset + 12 + length // 2 if part == "data" else offset + 1
    with open(path, "r+b") as f:
        f.seek(where)
        byte = f.read(1)[0]
        f.seek(where)
        f.write(bytes([byte ^ 0xFF]))
    return path, offset


def ledger_rows(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return dict(db.execute("SELECT key, status FROM runs").fetchall())
    finally:
        db.close()


def by_name(report):
    return {r.name: r for r in report.runs}


# --- ledger ---------------------------------------------------------------------

def test_ledger_default_path_is_per_pair_under_state_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TBX_STATE_DIR", str(tmp_path / "state"))
    p1 = default_path("tfevents:/a", "tfevents:/b")
    p2 = default_path("tfevents:/a", "tfevents:/c")
    assert p1 != p2
    assert p1 == default_path("tfevents:/a", "tfevents:/b")
    assert os.path.dirname(p1) == str(tmp_path / "state" / "sync") and p1.endswith(".sqlite")
    monkeypatch.delenv("TBX_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_path("x", "y").startswith(str(tmp_path / "xdg" / "tbx" / "sync") + os.sep)


def test_ledger_round_trip_and_reopen(tmp_path):
    path = str(tmp_path / "sub" / "l.sqlite")
    led = Ledger(path, "S", "D")
    assert led.get("run1") is None
    led.save("run2", "two", Entry(None, {"scalars": {"x": 3}}, None, "partial"))
    led.save("run1", "one", Entry({"dir": "one", "files": {"f": 10}}, {"scalars": {"x": 5}, "files": {"p": 7}},
                                  "digest", "carried"))
    led.close()
    led = Ledger(path, "S", "D")  # a later sync of the same pair sees it all
    e = led.get("run1")
    assert e.state == {"dir": "one", "files": {"f": 10}}
    assert e.counts == {"scalars": {"x": 5}, "files": {"p": 7}}
    assert (e.meta, e.status) == ("digest", "carried")
    assert e.count("scalars", "x") == 5 and e.count("scalars", "y") == 0 and e.count("text", "x") == 0
    e2 = led.get("run2")
    assert e2.state is None and e2.meta is None and e2.status == "partial"
    led.save("run2", "two", Entry(None, {"scalars": {"x": 9}}, None, "carried"))  # replaces
    assert led.get("run2").counts == {"scalars": {"x": 9}}
    assert led.keys() == ["run1", "run2"]
    led.close()


def test_ledger_of_another_pair_is_refused_naming_both(tmp_path):
    path = str(tmp_path / "l.sqlite")
    Ledger(path, "tfevents:/src", "tfevents:/dst").close()
    with pytest.raises(ValueError) as err:
        Ledger(path, "tfevents:/src", "tfevents:/other")
    msg = str(err.value)
    assert path in msg and "tfevents:/dst" in msg and "tfevents:/other" in msg and "--ledger" in msg


def test_ledger_refuses_a_file_that_is_not_sqlite(tmp_path):
    path = tmp_path / "l.sqlite"
    path.write_bytes(b"this is not a database, just some text that is long enough" * 20)
    with pytest.raises(ValueError, match="not a tbx sync ledger"):
        Ledger(str(path), "S", "D")


def test_ledger_concurrent_saves_all_land(tmp_path):
    led = Ledger(str(tmp_path / "l.sqlite"), "S", "D")

    def work(i):
        for j in range(25):
            led.save(f"r{i}-{j}", "n", Entry({"i": i}, {"scalars": {"t": j}}, None, "carried"))
            assert led.get(f"r{i}-{j}").counts == {"scalars": {"t": j}}

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(led.keys()) == 150
    led.close()


# --- report -------------------------------------------------------------------------

def _report(*runs, dry_run=False):
    rep = SyncReport("tfevents:/s", "tfevents:/d", dry_run)
    rep.runs = list(runs)
    return rep


def _run(name, status="carried"):
    rr = RunReport(name, name)
    rr.status = status
    k = rr.kind("scalars")
    k.read = k.written = k.verified = 10
    return rr


def test_report_exit_codes():
    assert _report().exit_code() == 0
    assert _report(_run("a"), _run("b", "up-to-date")).exit_code() == 0
    transformed = _run("a")
    transformed.transformed("scalars", "value rounded to float32", 3)
    assert _report(transformed).exit_code() == 0  # a documented change is not a loss
    dropped = _run("a")
    dropped.dropped("images", "format not supported", 2)
    assert _report(_run("x"), dropped).exit_code() == 1
    mism = _run("a")
    mism.mismatch.append("scalars 'x': 9 items in the destination, 10 expected")
    assert _report(mism).exit_code() == 1
    failed = _run("a", "failed")
    failed.error = "DataLossError: checksum"
    assert _report(failed).exit_code() == 1
    aborted = _report(_run("a"))
    aborted.aborted = "checksum mismatch"
    assert aborted.exit_code() == 1
    fatal = _report(_run("a"))
    fatal.fatal = ConnectionError("refused")
    assert fatal.exit_code() == 2
    # counting nothing is no loss
    quiet = _run("a")
    quiet.dropped("images", "format not supported", 0)
    assert _report(quiet).exit_code() == 0


def test_report_table_lists_every_loss_and_totals():
    a = _run("a")
    a.transformed("scalars", "value rounded to float32", 3)
    a.dropped("records", "corrupt record in /x/events.out.tfevents.1 at byte 1995", 1)
    a.problem("checksum mismatch in /x/events.out.tfevents.1 at byte 1995 (data crc)")
    b = _run("b" * 40)
    b.mismatch.append("scalars 'loss': 2 points differ")
    c = _run("c", "failed")
    c.error = "OSError: gone"
    rep = _report(a, b, c)
    rep.aborted = "stopped early"
    out = _capture_table(rep)
    assert "3 value rounded to float32" in out
    assert "DROPPED 1: corrupt record in /x/events.out.tfevents.1 at byte 1995" in out
    assert "problem: checksum mismatch" in out
    assert "MISMATCH: scalars 'loss': 2 points differ" in out
    assert "FAILED: OSError: gone" in out
    assert "…" + "b" * 31 in out  # long names are shortened from the left
    assert "stopped: stopped early" in out
    total = [line for line in out.splitlines() if line.startswith("TOTAL") and " scalars " in line]
    assert len(total) == 1 and total[0].split()[2:6] == ["30", "0", "30", "30"]
    assert "3 runs (2 carried, 0 up to date, 1 failed)" in out.splitlines()[0]


def _capture_table(rep):
    import io

    buf = io.StringIO()
    rep.write_table(buf)
    return buf.getvalue()


def test_report_as_dict_schema(tmp_path):
    a = _run("a")
    a.dropped("images", "too big", 2)
    rep = _report(a, _run("b", "up-to-date"))
    rep.skipped_runs = 4
    path = tmp_path / "r.json"
    rep.write_json(str(path))
    d = json.loads(path.read_text())
    assert set(d) >= {"source", "destination", "dry_run", "runs", "totals", "counts", "exit_code", "aborted"}
    assert {k: d["counts"][k] for k in ("runs", "carried", "up_to_date", "failed", "skipped")} == \
        {"runs": 2, "carried": 1, "up_to_date": 1, "failed": 0, "skipped": 4}
    assert d["exit_code"] == 1
    run = d["runs"][0]
    assert set(run) >= {"run", "key", "destination", "status", "error", "mismatch", "problems", "kinds"}
    assert list(run["kinds"]) == ["scalars", "images"]  # the model's kind order
    assert run["kinds"]["images"] == {"read": 0, "already": 0, "written": 0, "verified": 0,
                                      "transformed": {}, "dropped": {"too big": 2}}
    assert d["totals"]["scalars"]["written"] == 20


def test_report_dry_run_header_counts_would_carry():
    rep = _report(_run("a", "would-carry"), _run("b", "would-carry"), _run("c", "up-to-date"), dry_run=True)
    head = _capture_table(rep).splitlines()[0]
    assert "3 runs (2 would carry, 1 up to date, 0 failed)" in head, head


# --- selection ------------------------------------------------------------------------

def _refs(n):
    return [RunRef(f"exp/run{i:02d}", f"exp/run{i:02d}") for i in range(n)] + [RunRef("k-xyz", "named")]


def test_select_glob_matches_name_or_key():
    refs = _refs(12)
    chosen, left = select(refs, "exp/run0*", None)
    assert [r.key for r in chosen] == [f"exp/run0{i}" for i in range(10)] and left == 3
    chosen, left = select(refs, "k-*", None)  # by key
    assert [r.name for r in chosen] == ["named"] and left == 12
    assert select(refs, None, None) == (refs, 0)


def test_select_shards_partition_the_runs():
    refs = _refs(40)
    shards = [select(refs, None, (i, 3))[0] for i in range(3)]
    keys = [set(r.key for r in s) for s in shards]
    assert set().union(*keys) == {r.key for r in refs}
    assert sum(len(k) for k in keys) == len(refs)
    assert all(keys)  # 41 runs over 3 shards: none empty
    for i, s in enumerate(shards):  # stable: a function of the key only
        assert all(zlib.crc32(r.key.encode()) % 3 == i for r in s)


def test_engine_rejects_bad_options(tmp_path):
    src = write_runs(str(tmp_path / "src"), names=("a",), points=2, extras=False, hparams=False)
    with pytest.raises(SyncError, match="workers must be at least 1, got 0"):
        carry(src, tmp_path / "dst", tmp_path / "l.sqlite", workers=0)
    with pytest.raises(SyncError, match="shard must be I/N"):
        carry(src, tmp_path / "dst", tmp_path / "l.sqlite", shard=(2, 2))


# --- incremental -------------------------------------------------------------------------

def test_second_sync_carries_nothing(tmp_path):
    src = write_runs(str(tmp_path / "src"))
    dst, led = str(tmp_path / "dst"), tmp_path / "l.sqlite"
    first = carry(src, dst, led)
    assert first.exit_code() == 0, first.as_dict()
    assert [r.status for r in first.runs] == ["carried"] * 3
    for r in first.runs:
        assert not r.mismatch and not r.problems
        for kind in ("scalars", "histograms", "text", "params"):
            k = r.kinds[kind]
            assert k.read == k.written == k.verified > 0, (r.name, kind, k)
    assert first.runs[0].kinds["scalars"].read == 81  # 2 tags x 40 + the hparams metric
    assert_same_columns(src, dst)
    before = {n: os.path.getsize(os.path.join(dst, "a", n)) for n in os.listdir(os.path.join(dst, "a"))}

    second = carry(src, dst, led)
    assert second.exit_code() == 0
    assert [r.status for r in second.runs] == ["up-to-date"] * 3
    for r in second.runs:
        for kind in ("scalars", "histograms", "text"):
            assert r.kinds[kind].written == 0 and r.kinds[kind].already == r.kinds[kind].read
    assert sum(k.written for k in second.totals().values()) == 0
    after = {n: os.path.getsize(os.path.join(dst, "a", n)) for n in os.listdir(os.path.join(dst, "a"))}
    assert after == before  # not a byte written
    assert_same_columns(src, dst)


def test_up_to_date_report_accounts_for_every_item(tmp_path):
    """read == already + written + dropped for every kind, params included."""
    src = write_runs(str(tmp_path / "src"), names=("a",))
    carry(src, tmp_path / "dst", tmp_path / "l.sqlite")
    again = carry(src, tmp_path / "dst", tmp_path / "l.sqlite")
    for kind, k in again.runs[0].kinds.items():
        assert k.read == k.already + k.written + sum(k.dropped.values()), (kind, k)


def test_grown_source_sends_only_new_points(tmp_path):
    src = write_runs(str(tmp_path / "src"))
    dst, led = str(tmp_path / "dst"), tmp_path / "l.sqlite"
    carry(src, dst, led)
    # the runs go on: new writers append to the same run dirs (a new event file each)
    write_runs(src, names=("a", "b"), points=15, first_step=40)
    with tbx.SummaryWriter(os.path.join(src, "c")) as w:  # c: only a brand-new tag
        w.add_scalar("lr", 0.5, 99, walltime=WALL0)
    rep = carry(src, dst, led)
    assert rep.exit_code() == 0, rep.as_dict()
    runs = by_name(rep)
    for name in ("a", "b"):
        k = runs[name].kinds["scalars"]
        assert (k.read, k.already, k.written, k.verified) == (111, 81, 30, 111)
        assert (runs[name].kinds["histograms"].already, runs[name].kinds["histograms"].written) == (1, 1)
        assert (runs[name].kinds["text"].already, runs[name].kinds["text"].written) == (1, 1)
    k = runs["c"].kinds["scalars"]
    assert (k.read, k.already, k.written) == (82, 81, 1)
    assert_same_columns(src, dst)  # every point exactly once, in order
    assert snapshot(dst)["a"]["histograms", "weights"] == snapshot(src)["a"]["histograms", "weights"]
    third = carry(src, dst, led)
    assert [r.status for r in third.runs] == ["up-to-date"] * 3


def test_lost_ledger_does_not_duplicate_points(tmp_path):
    """Without a ledger entry the engine reads the destination run back and skips what is there."""
    src = write_runs(str(tmp_path / "src"), names=("a", "b"))
    dst = str(tmp_path / "dst")
    carry(src, dst, tmp_path / "l1.sqlite")
    write_runs(src, names=("a",), points=5, first_step=40, extras=False)
    rep = carry(src, dst, tmp_path / "l2.sqlite")  # a new ledger: nothing recorded
    assert rep.exit_code() == 0, rep.as_dict()
    runs = by_name(rep)
    assert (runs["a"].kinds["scalars"].already, runs["a"].kinds["scalars"].written) == (81, 10)
    assert (runs["b"].kinds["scalars"].already, runs["b"].kinds["scalars"].written) == (81, 0)
    assert runs["a"].kinds["histograms"].written == 0
    assert_same_columns(src, dst)


def test_rewritten_source_is_reported(tmp_path):
    src = write_runs(str(tmp_path / "src"), names=("a",), hparams=False, extras=False)
    carry(src, tmp_path / "dst", tmp_path / "l.sqlite")
    for n in os.listdir(os.path.join(src, "a")):
        os.remove(os.path.join(src, "a", n))
    write_runs(src, names=("a",), points=10, hparams=False, extras=False)
    rep = carry(src, tmp_path / "dst", tmp_path / "l.sqlite")
    problems = " ".join(rep.runs[0].problems)
    assert "'loss'" in problems and "10 items" in problems and "40 were carried" in problems


# --- dry run, failures, verification ----------------------------------------------------------

def test_dry_run_writes_nothing(tmp_path):
    src = write_runs(str(tmp_path / "src"))
    dst, led = tmp_path / "dst", tmp_path / "l.sqlite"
    dry = carry(src, dst, led, dry_run=True)
    assert [r.status for r in dry.runs] == ["would-carry"] * 3
    assert ledger_rows(led) == {}
    assert not dst.exists(), f"a dry run created {sorted(os.listdir(dst))!r} in {dst}"


def test_dry_run_counts_what_a_real_sync_writes(tmp_path):
    src = write_runs(str(tmp_path / "src"))
    dst, led = tmp_path / "dst", tmp_path / "l.sqlite"
    dry = carry(src, dst, led, dry_run=True)
    real = carry(src, dst, led)
    for d, r in zip(dry.runs, real.runs):
        assert {k: v.written for k, v in d.kinds.items() if k not in ("params", "tags")} == \
            {k: v.written for k, v in r.kinds.items() if k not in ("params", "tags")}, d.name


class _FailingSource(TfeventsSource):
    """A real logdir source whose run ``b`` cannot be read (an unexpected error)."""

    def read_run(self, ref, report):
        if ref.key == "b":
            raise RuntimeError("disk on fire")
        return super().read_run(ref, report)


def test_a_failing_run_does_not_stop_the_others(tmp_path):
    src = write_runs(str(tmp_path / "src"))
    led = tmp_path / "l.sqlite"
    rep = sync(_FailingSource(src), TfeventsDestination(str(tmp_path / "dst")), ledger=str(led))
    runs = by_name(rep)
    assert runs["b"].status == "failed" and runs["b"].error == "RuntimeError: disk on fire"
    assert runs["a"].status == runs["c"].status == "carried"
    assert rep.exit_code() == 1 and rep.aborted is None
    assert ledger_rows(led) == {"a": "carried", "c": "carried"}


class _LossyRun(TfeventsRun):
    """A destination run that silently loses every 7th scalar: verification must notice."""

    def write(self, kind, tag, items):
        if kind == "scalars":
            keep = np.arange(len(items)) % 7 != 3
            items = type(items)(items.steps[keep], items.wall_times[keep], items.values[keep])
        super().write(kind, tag, items)


class _LossyDestination(TfeventsDestination):
    def open_run(self, run, state):
        return _LossyRun(self, run, state)


def test_verification_reads_the_destination(tmp_path):
    src = write_runs(str(tmp_path / "src"), names=("a",))
    rep = sync(TfeventsSource(src), _LossyDestination(str(tmp_path / "dst")), ledger=str(tmp_path / "l.sqlite"))
    run = rep.runs[0]
    assert rep.exit_code() == 1
    assert any("'loss'" in m and "items in the destination" in m for m in run.mismatch), run.mismatch
    assert run.kinds["scalars"].verified < run.kinds["scalars"].written
    unverified = sync(TfeventsSource(src), _LossyDestination(str(tmp_path / "dst2")),
                      ledger=str(tmp_path / "l2.sqlite"), verify=False)
    assert unverified.runs[0].kinds["scalars"].verified == 0 and not unverified.runs[0].mismatch


# --- corrupt sources ------------------------------------------------------------------------------

def test_corrupt_record_lenient_carries_the_rest(tmp_path):
    src = write_runs(str(tmp_path / "src"), hparams=False)
    path, offset = corrupt_middle(os.path.join(src, "b"))
    dst, led = str(tmp_path / "dst"), tmp_path / "l.sqlite"
    rep = carry(src, dst, led)
    runs = by_name(rep)
    assert rep.exit_code() == 1
    assert [runs[n].status for n in "abc"] == ["carried"] * 3
    assert dict(runs["b"].kinds["records"].dropped) == {f"corrupt record in {path} at byte {offset}": 1}
    assert any(path in p and str(offset) in p for p in runs["b"].problems)
    assert runs["b"].kinds["scalars"].written == 79  # one of 80 points lost
    assert runs["b"].kinds["scalars"].verified == 79 and not runs["b"].mismatch
    assert runs["b"].kinds["histograms"].written == runs["b"].kinds["text"].written == 1
    assert ledger_rows(led) == {"a": "carried", "b": "carried", "c": "carried"}
    cols = columns(dst)
    assert len(cols["b", "loss"][0]) + len(cols["b", "acc"][0]) == 79
    assert len(cols["c", "loss"][0]) == 40


def test_corrupt_length_reports_the_unread_rest_of_the_file(tmp_path):
    """A bad length checksum hides every later record: the report must say so, not "1 record"."""
    src = write_runs(str(tmp_path / "src"), names=("b",), hparams=False)
    path, offset = corrupt_middle(os.path.join(src, "b"), part="length")
    rep = carry(src, tmp_path / "dst", tmp_path / "l.sqlite")
    run = rep.runs[0]
    assert rep.exit_code() == 1 and run.status == "carried"
    lost = 80 - run.kinds["scalars"].written
    assert lost > 1  # everything from the bad record on
    (reason,) = run.kinds["records"].dropped
    assert path in reason and str(offset) in reason
    unread = os.path.getsize(path) - offset
    assert f"{unread} bytes" in reason, (
        f"{lost} points after byte {offset} were not read, but the report says only: "
        f"{dict(run.kinds['records'].dropped)}")


def test_corrupt_record_strict_stops_with_nothing_half_recorded(tmp_path):
    src = write_runs(str(tmp_path / "src"), hparams=False)
    path, offset = corrupt_middle(os.path.join(src, "b"))
    dst, led = tmp_path / "dst", tmp_path / "l.sqlite"
    rep = carry(src, dst, led, strict=True, source_strict=True)
    assert rep.exit_code() == 1
    assert rep.aborted and f"{path} at byte {offset}" in rep.aborted
    runs = by_name(rep)
    assert runs["a"].status == "carried"
    assert runs["b"].status == "failed" and path in runs["b"].error
    assert "c" not in runs  # the sync stopped
    assert ledger_rows(led) == {"a": "carried"}
    assert not (dst / "b").exists() and not (dst / "c").exists()
    assert set(columns(str(dst))) == {("a", "loss"), ("a", "acc")}


# --- crash and resume ---------------------------------------------------------------------------

CHILD = """
import sys
from tbx.converters.engine import sync
from tbx.converters.tfevents import TfeventsSource, TfeventsDestination
report = sync(TfeventsSource(sys.argv[1]), TfeventsDestination(sys.argv[2]), ledger=sys.argv[3],
              commit_every=int(sys.argv[4]))
sys.exit(report.exit_code())
"""

# The same sync through a destination that SIGKILLs its own process at one exact point.
KILLER = """
import os, signal, sys
from tbx.converters.engine import sync
from tbx.converters.tfevents import TfeventsSource, TfeventsDestination, TfeventsRun
where, at = sys.argv[5], int(sys.argv[6])
calls = {"write": 0, "commit": 0}

class Run(TfeventsRun):
    def write(self, kind, tag, items):
        super().write(kind, tag, items)
        calls["write"] += 1
        if where == "write" and calls["write"] == at:
            self.writer.flush()  # the bytes are in the file, not committed
            os.kill(os.getpid(), signal.SIGKILL)

    def commit(self):
        super().commit()
        calls["commit"] += 1
        if where == "commit" and calls["commit"] == at:
            os.kill(os.getpid(), signal.SIGKILL)  # committed, not yet in the ledger

class Dest(TfeventsDestination):
    def open_run(self, run, state):
        return Run(self, run, state)

sync(TfeventsSource(sys.argv[1]), Dest(sys.argv[2]), ledger=sys.argv[3], commit_every=int(sys.argv[4]))
sys.exit(3)  # never reached when the kill point is hit
"""


def _scalars_only(root, runs, tags, points):
    for r in range(runs):
        with tbx.SummaryWriter(os.path.join(root, f"run{r:02d}")) as w:
            for step in range(points):
                for t in range(tags):
                    w.add_scalar(f"tag{t}", value(r, t, step), step, walltime=WALL0 + step * 0.001 + r)
    return root


def _poll_kill(args, led, enough):
    """Start the sync and SIGKILL it once ``enough(rows)`` holds for the ledger's rows."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, *args])
    try:
        while proc.poll() is None:
            if os.path.exists(led) and enough(_readable_rows(led)):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.001)
    finally:
        proc.wait(timeout=120)
    return proc.returncode


def _readable_rows(led):
    try:
        return ledger_rows(led)
    except sqlite3.Error:
        return {}


def test_killed_sync_resumes_without_duplicates(tmp_path):
    src = _scalars_only(str(tmp_path / "src"), runs=20, tags=5, points=8000)
    dst, led = str(tmp_path / "dst"), str(tmp_path / "l.sqlite")
    args = [src, dst, led, "5000"]
    for runs_done in (1, 8, 15):  # kill in the middle of a run's writes, twice, further each time
        def enough(rows, runs_done=runs_done):
            return (sum(s == "carried" for s in rows.values()) >= runs_done
                    and "partial" in rows.values())

        code = _poll_kill(args, led, enough)
        assert code == -signal.SIGKILL, "the sync ended before it could be killed mid-run"
    done = subprocess.run([sys.executable, "-c", CHILD, *args], timeout=300)
    assert done.returncode == 0
    assert set(ledger_rows(led).values()) == {"carried"} and len(ledger_rows(led)) == 20
    assert_same_columns(src, dst)


@pytest.mark.parametrize("where, at", [
    ("write", 1),    # before the first commit: no ledger entry, a partial run in the destination
    ("write", 5),    # mid-run: bytes past the last committed size
    ("commit", 3),   # committed but not recorded: the ledger's sizes are older than the files
    ("commit", 8),   # the second run's first commit
], ids=["first-write", "mid-write", "commit-unrecorded", "second-run"])
def test_kill_at_exact_points_resumes_without_duplicates(tmp_path, where, at):
    src = _scalars_only(str(tmp_path / "src"), runs=2, tags=2, points=2600)
    dst, led = str(tmp_path / "dst"), str(tmp_path / "l.sqlite")
    args = [src, dst, led, "1000"]
    killed = subprocess.run([sys.executable, "-c", KILLER, *args, where, str(at)], timeout=120)
    assert killed.returncode == -signal.SIGKILL
    done = subprocess.run([sys.executable, "-c", CHILD, *args], timeout=120)
    assert done.returncode == 0
    assert ledger_rows(led) == {"run00": "carried", "run01": "carried"}
    assert_same_columns(src, dst)


def test_resume_truncates_uncommitted_bytes(tmp_path):
    """The destination run cuts its event files back to the sizes in the ledger state."""
    src = write_runs(str(tmp_path / "src"), names=("a",), hparams=False, extras=False)
    dst = tmp_path / "dst"
    carry(src, dst, tmp_path / "l.sqlite")
    (name,) = [n for n in os.listdir(dst / "a") if "tfevents" in n]
    size = os.path.getsize(dst / "a" / name)
    with open(dst / "a" / name, "ab") as f:
        f.write(b"uncommitted garbage")
    (dst / "a" / "events.out.tfevents.0.stray").write_bytes(b"x")
    run = RunData("a", "a")
    TfeventsDestination(str(dst)).open_run(run, {"dir": "a", "files": {name: size}}).close()
    assert os.path.getsize(dst / "a" / name) == size
    assert not (dst / "a" / "events.out.tfevents.0.stray").exists()


def test_nan_and_extreme_values_survive_incremental_sync(tmp_path):
    src = str(tmp_path / "src")
    special = [math.nan, math.inf, -math.inf, -0.0, 3.4028234663852886e38, 1e-45]
    with tbx.SummaryWriter(os.path.join(src, "r")) as w:
        for i, v in enumerate(special):
            w.add_scalar("x", v, [-(2 ** 40), -1, 0, 7, 2 ** 31, 2 ** 40][i], walltime=WALL0 + i / 3)
    carry(src, tmp_path / "dst", tmp_path / "l.sqlite")
    with tbx.SummaryWriter(os.path.join(src, "r")) as w:
        w.add_scalar("x", math.nan, 2 ** 41, walltime=WALL0 + 9)
    rep = carry(src, tmp_path / "dst", tmp_path / "l.sqlite")
    assert rep.exit_code() == 0 and rep.runs[0].kinds["scalars"].written == 1
    assert_same_columns(src, str(tmp_path / "dst"))
