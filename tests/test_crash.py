"""Crash safety: a process killed with SIGKILL loses at most the last 0.1 s of
logging, and its event file reads back cleanly (a torn last record is the
normal end of a file, not an error).

The logging children keep a *ledger*: a memory-mapped array where, right after
``add_scalar(step)`` returns, they store the wall time. The mapping lives in
the page cache, so it survives SIGKILL, and tells the parent exactly which
calls had returned, and when, before the kill.
"""

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import tbx
from tbx import record, reader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATENCY = 0.1  # the design's promise: nothing older than this is lost
PURE = record.KERNEL.__name__.endswith("_pure")

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


# --- helpers -------------------------------------------------------------------

LOGGER = """
import sys, time
import numpy as np
import tbx

logdir, ledger_path, capacity, warm = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
ledger = np.memmap(ledger_path, dtype=np.float64, mode="r+", shape=(capacity,))
w = tbx.SummaryWriter(logdir, flush_secs=10000)
add, now = w.add_scalar, time.time
start = now()
step = 0
announced = False
while step < capacity:
    add("loss", step * 0.5, step)  # wall time = time of the call (the default)
    ledger[step] = now()  # after the call returned
    step += 1
    if not announced and step % 64 == 0 and now() - start >= warm:
        sys.stdout.write("logging\\n")
        sys.stdout.flush()
        announced = True
sys.stdout.write("full\\n")
sys.stdout.flush()
time.sleep(120)
"""

BULK = """
import sys, time
import tbx

w = tbx.SummaryWriter(sys.argv[1])
for step in range(int(sys.argv[2])):
    w.add_scalar("loss", step * 0.25, step)
sys.stdout.write("done\\n")
sys.stdout.flush()
time.sleep(120)  # killed here, without close()
"""

TORN = """
import os, signal, sys
import tbx
from tbx import event_file

# Crash in the middle of a write system call: write a few bytes of the 4th
# buffer (less than one record), then die.
real_write = os.write
calls = [0]

def write(fd, data):
    if os.readlink(f"/proc/self/fd/{fd}").endswith(".torn"):
        calls[0] += 1
        if calls[0] == 4:
            real_write(fd, bytes(data[:21]))
            os.kill(os.getpid(), signal.SIGKILL)
    return real_write(fd, data)

event_file.os.write = write
event_file.os.writev = lambda fd, buffers: write(fd, b"".join(buffers))
w = tbx.SummaryWriter(sys.argv[1], filename_suffix=".torn")
step = 0
while True:
    for _ in range(100):
        w.add_scalar("loss", step * 1.0, step)
        step += 1
    w.flush()
"""


def python_env():
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def start(tmp_path, source, *args):
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(source))
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], env=python_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_line(proc, timeout=30.0):
    """The child's next stdout line; kill it rather than wait forever."""
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        line = proc.stdout.readline().strip()
    finally:
        timer.cancel()
    if not line:
        proc.kill()
        proc.wait()
        pytest.fail(f"child gave no output (rc {proc.returncode}): {proc.stderr.read()}")
    return line


def sigkill(proc):
    kill_time = time.time()  # taken before the signal: conservative
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return kill_time


def only_file(logdir):
    names = sorted(n for n in os.listdir(logdir) if "tfevents" in n)
    assert len(names) == 1, names
    return os.path.join(logdir, names[0])


def check_strict_read(path, all_events=True):
    """Read the file strictly (records, scalars and, if asked, events); nothing raises.

    Returns (number of events, scalar columns, stats of read_records).
    """
    rstats = tbx.ReadStats()
    payloads = list(reader.read_records(path, stats=rstats))
    sstats = tbx.ReadStats()
    cols = tbx.read_scalars(path, as_frame=False, stats=sstats)
    all_stats = [rstats, sstats]
    events = tbx.read_events(path)
    first = next(events)[1]
    assert first.file_version == "brain.Event:2"
    events.close()
    count = len(payloads)
    if all_events:  # parsing every event is slow for big files
        estats = tbx.ReadStats()
        count = sum(1 for _ in tbx.read_events(path, stats=estats))
        all_stats.append(estats)
    size = os.path.getsize(path)
    good = sum(16 + len(p) for p in payloads)
    # The bytes after the last whole record are exactly what is reported as torn.
    for s in all_stats:
        assert s.truncated_bytes == size - good
        assert s.bad_records == 0 and not s.problems
        if size > good:
            assert s.truncations == [(path, good, size - good)]
        else:
            assert s.truncations == []
    assert count == len(payloads) == rstats.records
    return count, cols, rstats


# --- tests ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_a_random_moment_loses_nothing_older_than_0_1_s(tmp_path, seed):
    rng = random.Random(seed)
    capacity = 1 << 21  # steps the ledger can hold (far more than logged)
    ledger_path = tmp_path / "ledger"
    with open(ledger_path, "wb") as f:
        f.truncate(capacity * 8)
    logdir = tmp_path / "run"
    proc = start(tmp_path, LOGGER, logdir, ledger_path, capacity, 0.2)
    assert read_line(proc) == "logging"
    time.sleep(rng.uniform(0.0, 0.3))
    kill_time = sigkill(proc)

    ledger = np.fromfile(ledger_path, dtype=np.float64)
    returned = int(np.count_nonzero(ledger))
    assert 0 < returned < capacity, "the child stopped logging before the kill"
    assert np.all(ledger[:returned] > 0) and np.all(np.diff(ledger[:returned]) >= 0)
    assert ledger[returned - 1] > kill_time - 1.0, "the child was not logging when killed"

    path = only_file(logdir)
    _, cols, _ = check_strict_read(path, all_events=False)
    n = len(cols["step"])
    # A contiguous prefix 0..n-1 of the calls, each once, with the right values.
    assert np.array_equal(cols["step"], np.arange(n))
    assert np.array_equal(cols["value"], np.arange(n) * 0.5)
    assert n <= returned + 1  # at most the call in progress at the kill
    # Every call that had returned more than 0.1 s before the kill is in the file.
    old = int(np.count_nonzero(ledger[:returned] < kill_time - LATENCY))
    assert n >= old, (
        f"{old - n} points logged more than {LATENCY} s before the kill are missing "
        f"(last in file returned {kill_time - ledger[n - 1]:.3f} s before the kill)"
    )
    # Each event's wall time is the time of its call: before the call returned.
    walls = cols["wall_time"]
    assert np.all(np.diff(walls) >= 0)
    assert np.all(walls <= ledger[:n] + 1e-6)
    assert np.all(walls >= ledger[:n] - 1.0)


def test_sigkill_1_s_after_100k_scalars_without_close_loses_nothing(tmp_path):
    total = 100_000
    logdir = tmp_path / "run"
    proc = start(tmp_path, BULK, logdir, total)
    assert read_line(proc) == "done"
    time.sleep(1.0)
    sigkill(proc)
    path = only_file(logdir)
    stats = tbx.ReadStats()
    cols = tbx.read_scalars(path, as_frame=False, stats=stats)  # strict
    assert stats.truncated_bytes == 0 and stats.bad_records == 0
    assert next(tbx.read_events(path))[1].file_version == "brain.Event:2"
    assert np.array_equal(cols["step"], np.arange(total))
    assert np.array_equal(cols["value"], np.arange(total) * 0.25)


def test_crash_in_the_middle_of_a_write_leaves_a_torn_tail_read_cleanly(tmp_path):
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs Linux /proc")
    logdir = tmp_path / "run"
    proc = start(tmp_path, TORN, logdir)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    path = only_file(logdir)
    count, cols, stats = check_strict_read(path)
    assert stats.truncated_bytes == 21
    # The buffers written before the torn one (flushed batches of 100) are whole.
    n = len(cols["step"])
    assert n > 0 and n % 100 == 0
    assert np.array_equal(cols["step"], np.arange(n))
    # Lenient reading agrees.
    lenient = tbx.ReadStats()
    assert len(list(reader.read_records(path, lenient=True, stats=lenient))) == count
    assert lenient.truncated_bytes == 21 and lenient.bad_records == 0


def test_reading_a_file_cut_at_every_kind_of_place(tmp_path):
    logdir = tmp_path / "run"
    with tbx.SummaryWriter(logdir) as w:
        for step in range(30):
            w.add_scalar("loss", float(step), step)
        w.add_text("note", "x" * 200, 30)
        for step in range(31, 40):
            w.add_scalar("loss", float(step), step, new_style=True)
    path = only_file(logdir)
    data = open(path, "rb").read()
    # Record boundaries of the intact file.
    payloads, end, status = record.split_records(data, 0, True)
    assert end == len(data) and status == record.STATUS_OK
    bounds = np.cumsum([0] + [16 + len(p) for p in payloads]).tolist()
    torn = tmp_path / "torn.tfevents"
    cuts = set()
    for i in (1, len(payloads) // 2, len(payloads) - 1):  # header, middle, last
        lo, hi = bounds[i], bounds[i + 1]
        cuts |= {lo + 1, lo + 8, lo + 12, lo + 13, (lo + hi) // 2, hi - 4, hi - 1}
    for cut in sorted(cuts):
        torn.write_bytes(data[:cut])
        whole = max(i for i, b in enumerate(bounds) if b <= cut)  # records kept
        stats = tbx.ReadStats()
        events = [e for _, e in tbx.read_events(str(torn), stats=stats)]
        assert len(events) == whole, cut
        assert stats.truncated_bytes == cut - bounds[whole], cut
        assert stats.truncations == [(str(torn), bounds[whole], cut - bounds[whole])]
        rstats = tbx.ReadStats()
        assert len(list(reader.read_records(str(torn), stats=rstats))) == whole
        assert rstats.truncated_bytes == cut - bounds[whole]
        sstats = tbx.ReadStats()
        steps = tbx.read_scalars(str(torn), as_frame=False, stats=sstats)["step"].tolist()
        assert sstats.truncated_bytes == cut - bounds[whole]
        expected = [e.step for e in events if e.summary.value and e.summary.value[0].tag == "loss"]
        assert steps == expected
