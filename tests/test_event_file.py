"""Tests of tbx/event_file.py through SummaryWriter: naming, the background
writer thread, flush/fsync, the memory bound, error reporting, close, atexit,
threads and fork.

Faults (disk full, slow disk, a failing encoder) are injected by wrapping
``os.write`` / ``os.fsync`` / encoders with pytest's monkeypatch. The wrappers
only touch file descriptors that point at the event file under test (looked up
in /proc/self/fd), so pytest and other writers are unaffected.
"""

import collections
import errno
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import warnings

import numpy as np
import pytest

import tbx
from tbx import event_file, record
from tbx.summary import histogram as summary_histogram
from tbx.summary import image as summary_image
from tbx.errors import TbxError, WriteError, WriterClosedError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATENCY = 0.1  # the design's promise: data reaches the OS this soon after add_* returns

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")


# --- helpers -------------------------------------------------------------------

def event_files(logdir):
    return sorted(n for n in os.listdir(logdir) if "tfevents" in n)


def only_file(logdir):
    names = event_files(logdir)
    assert len(names) == 1, names
    return os.path.join(logdir, names[0])


def wait_for_file(logdir, timeout=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = event_files(logdir)
        if names and os.path.getsize(os.path.join(logdir, names[0])) > 0:
            return os.path.join(logdir, names[0])
        time.sleep(0.002)
    raise AssertionError(f"no event file appeared in {logdir} within {timeout} s")


def fd_target(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def open_fds_to(path):
    path = os.path.realpath(path)
    return [int(fd) for fd in os.listdir("/proc/self/fd") if fd_target(fd) == path]


def scalars_of(path):
    """{tag: [(step, value), ...]} in file order (strict reading)."""
    cols = tbx.read_scalars(path, as_frame=False)
    out = {}
    for tag, step, value in zip(cols["tag"].tolist(), cols["step"].tolist(), cols["value"].tolist()):
        out.setdefault(tag, []).append((step, value))
    return out


def steps_of(path, tag):
    return [step for step, _ in scalars_of(path).get(tag, [])]


def events_of(path):
    return [event for _, event in tbx.read_events(path)]


def call_with_timeout(fn, timeout=10.0):
    """Run fn() on a watchdog thread; fail (instead of hanging the suite) if it takes longer."""
    result = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:  # re-raised on the test's thread
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{getattr(fn, '__name__', fn)} did not return within {timeout} s (hang)"
    if "error" in result:
        raise result["error"]
    return result.get("value")


def count_records(data):
    payloads, _, _ = record.split_records(bytes(data), 0, True)
    return len(payloads)


class WriteFaults:
    """Wraps os.write and os.writev for the file descriptors of one event file.

    A writev is modelled as the write of its buffers' concatenation.
    """

    def __init__(self, monkeypatch, path):
        self.path = os.path.realpath(path)
        self.real_write = os.write
        self.mode = None  # None: pass through; "enospc"; "short-then-enospc"; "slow"; "memory"
        self.delay = 0.0
        self.records_written = 0
        self.calls = 0
        monkeypatch.setattr(event_file.os, "write", self.write)
        monkeypatch.setattr(event_file.os, "writev", self.writev)

    def writev(self, fd, buffers):
        return self.write(fd, b"".join(buffers))

    def ours(self, fd):
        return fd_target(fd) == self.path

    def write(self, fd, data):
        if self.mode is None or not self.ours(fd):
            n = self.real_write(fd, data)
            if self.ours(fd):
                self.records_written += count_records(memoryview(data)[:n])
            return n
        self.calls += 1
        if self.mode == "short-then-enospc":
            # A disk filling up: a short write that ends mid-record, then ENOSPC.
            self.mode = "enospc"
            return self.real_write(fd, memoryview(data)[:min(len(data) - 1, 21)])
        if self.mode == "enospc":
            raise OSError(errno.ENOSPC, "No space left on device")
        if self.mode == "memory":
            raise MemoryError("simulated memory exhaustion in the writer thread")
        if self.mode == "slow":
            time.sleep(self.delay)
            n = self.real_write(fd, data)
            self.records_written += count_records(memoryview(data)[:n])
            return n
        raise AssertionError(self.mode)


def python_env():
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run_script(tmp_path, source, *args, timeout=60):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, str(script), *map(str, args)], env=python_env(),
                          capture_output=True, text=True, timeout=timeout)


def wait_child(pid, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"forked child {pid} did not exit within {timeout} s (hang)")
        time.sleep(0.005)


def fork(child):
    """Fork; the child runs child() and leaves with os._exit (0 on success)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:
        code = 1
        try:
            child()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def name_fields(name, suffix=""):
    """(seconds, host, pid, counter) of an event file name."""
    assert name.startswith("events.out.tfevents."), name
    assert name.endswith(suffix), name
    core = name[len("events.out.tfevents."):len(name) - len(suffix)]
    seconds, rest = core.split(".", 1)
    host, pid, counter = rest.rsplit(".", 2)
    return seconds, host, pid, counter


# --- naming and header -------------------------------------------------------------

def test_file_name_header_and_suffix(tmp_path):
    before = int(time.time())
    with tbx.SummaryWriter(tmp_path, filename_suffix=".my-suffix") as w:
        w.add_scalar("x", 1.0, 0)
    after = int(time.time())
    names = event_files(tmp_path)
    assert len(names) == 1
    seconds, host, pid, counter = name_fields(names[0], ".my-suffix")
    assert len(seconds) == 10 and seconds.isdigit()
    assert before <= int(seconds) <= after
    assert host == socket.gethostname()
    assert pid == str(os.getpid())
    assert counter.isdigit()
    events = events_of(os.path.join(tmp_path, names[0]))
    assert events[0].file_version == "brain.Event:2"
    assert not events[0].HasField("summary")
    assert [e.step for e in events[1:]] == [0]


def test_two_writers_same_dir_get_distinct_files_in_creation_order(tmp_path):
    w1 = tbx.SummaryWriter(tmp_path)
    name1 = os.path.basename(wait_for_file(tmp_path))
    w2 = tbx.SummaryWriter(tmp_path)
    w1.add_scalar("a", 1.0, 0)
    w2.add_scalar("b", 2.0, 0)
    w1.close()
    w2.close()
    names = event_files(tmp_path)
    assert len(names) == 2
    name2 = (set(names) - {name1}).pop()
    assert names == [name1, name2]  # lexicographic order == creation order
    for name, tag in ((name1, "a"), (name2, "b")):
        path = os.path.join(tmp_path, name)
        assert events_of(path)[0].file_version == "brain.Event:2"
        assert list(scalars_of(path)) == [tag]


def test_files_sort_in_creation_order_when_the_counter_gains_a_digit(tmp_path, monkeypatch):
    # The per-process counter goes 9 -> 10 after ten writers (or 99 -> 100, ...).
    # Two writers created in the same second must still sort in creation order,
    # since readers (tbx's and TensorBoard's) read a run's files in name order.
    for _ in range(5):
        monkeypatch.setattr(event_file, "_file_counter", itertools.count(9))
        logdir = tmp_path / f"try{_}"
        w1 = tbx.SummaryWriter(logdir)
        w1.add_scalar("x", 1.0, 1)
        w1.close()
        w2 = tbx.SummaryWriter(logdir)
        w2.add_scalar("x", 2.0, 2)
        w2.close()
        created = [os.path.basename(w1.file_writer.path), os.path.basename(w2.file_writer.path)]
        if name_fields(created[0])[0] == name_fields(created[1])[0]:  # same second
            break
    else:
        pytest.skip("could not create two writers within one second")
    assert event_files(logdir) == created
    assert steps_of(str(logdir), "x") == [1, 2]


# --- the background writer -------------------------------------------------------

def _log_one(w, kind, step):
    if kind == "scalar":
        w.add_scalar("loss", float(step), step)
    elif kind == "histogram":
        w.add_histogram("hist", np.arange(100.0) + step, step)
    elif kind == "image":
        w.add_image("img", np.full((3, 8, 8), step, np.uint8), step)
    else:
        w.add_text("note", f"text {step}", step)


def _seconds_until_written(path, size, limit):
    start = time.monotonic()
    while os.path.getsize(path) == size and time.monotonic() - start < limit:
        time.sleep(0.001)
    return time.monotonic() - start if os.path.getsize(path) != size else None


def test_data_reaches_the_os_within_0_1_s_whatever_flush_secs(tmp_path):
    """Each add_* call's record is visible to another reader of the file within 0.1 s.

    Calls come both right after one another (the writer thread is busy) and
    after a pause (the writer thread has gone idle), for every kind of record:
    direct (scalar, text) and encoded on the pool (histogram, image).
    """
    kinds = ["scalar", "histogram", "image", "text"]
    plan = [(kind, pause) for pause in (0.08, 0.0) for kind in kinds]
    attempts = 3  # a loaded machine may stall once; not three times in a row
    for attempt in range(attempts):
        last = attempt == attempts - 1
        logdir = tmp_path / f"attempt{attempt}"
        w = tbx.SummaryWriter(logdir, flush_secs=10000)
        try:
            path = wait_for_file(logdir)
            late = []
            for step, (kind, pause) in enumerate(plan):
                time.sleep(pause)
                size = os.path.getsize(path)
                _log_one(w, kind, step)
                if _seconds_until_written(path, size, LATENCY) is None:
                    late.append((kind, pause, _seconds_until_written(path, size, 1.5) if last else None))
                    if not last:
                        break  # try again
            if late and not last:
                continue
            # Everything is readable by another reader before flush() or close().
            found = [(v.tag, e.step) for e in events_of(path) for v in e.summary.value]
            tags = {"scalar": "loss", "histogram": "hist", "image": "img", "text": "note/text_summary"}
            assert sorted(found) == sorted((tags[k], step) for step, (k, _) in enumerate(plan))
        finally:
            w.close()
        if not late:
            return
    pytest.fail(f"records not in the file within {LATENCY} s of add_* returning, {attempts} tries "
                f"(kind, pause before the call, seconds it took): {late}")


class PreemptibleEvent(threading.Event):
    """threading.Event whose set() can lose the CPU right after setting, on one thread."""

    preempt_ident = None  # thread id of the caller to preempt

    def set(self):
        super().set()
        if threading.get_ident() == PreemptibleEvent.preempt_ident:
            time.sleep(0.03)  # the OS schedules another thread here


@pytest.mark.parametrize("kind", ["scalar", "text"])
def test_no_lost_wakeup_when_the_caller_is_preempted(tmp_path, monkeypatch, kind):
    # The writer thread sleeps while idle and the caller wakes it. If the
    # caller loses the CPU just after waking it but before its record is
    # queued, the writer finds nothing, goes back to sleep, and must still
    # not leave the record waiting for longer than 0.1 s.
    with monkeypatch.context() as m:
        m.setattr(event_file.threading, "Event", PreemptibleEvent)
        w = tbx.SummaryWriter(tmp_path, flush_secs=10000)
    try:
        path = wait_for_file(tmp_path)
        PreemptibleEvent.preempt_ident = threading.get_ident()
        late = []
        for step in range(3):
            time.sleep(0.08)  # let the writer go idle
            size = os.path.getsize(path)
            _log_one(w, kind, step)
            # (0.03 s of the budget went to the simulated preemption)
            if _seconds_until_written(path, size, LATENCY) is None:
                late.append((step, _seconds_until_written(path, size, 1.0)))
                break
        assert not late, f"records reached the OS late (step, seconds): {late}"
    finally:
        PreemptibleEvent.preempt_ident = None
        w.close()


class PreemptibleDeque(collections.deque):
    """deque whose append() can lose the CPU right after appending, on one thread."""

    preempt_ident = None
    appended = None  # threading.Event set just before the simulated preemption

    def append(self, item):
        super().append(item)
        if threading.get_ident() == PreemptibleDeque.preempt_ident:
            PreemptibleDeque.appended.set()
            time.sleep(0.05)  # the OS schedules another thread here


@pytest.mark.parametrize("kind", ["scalar", "text"])
def test_no_lost_wakeup_when_two_callers_interleave(tmp_path, monkeypatch, kind):
    # Two threads log to an idle writer. Thread A queues its record and loses
    # the CPU before it can wake the writer; thread B queues its record
    # meanwhile. Whatever each of them concludes from the queue's length, one
    # of them must wake the writer: both records reach the OS within 0.1 s.
    with monkeypatch.context() as m:
        m.setattr(event_file.collections, "deque", PreemptibleDeque)
        w = tbx.SummaryWriter(tmp_path, flush_secs=10000)
    try:
        path = wait_for_file(tmp_path)
        time.sleep(0.1)  # let the writer go idle
        PreemptibleDeque.appended = threading.Event()
        size = os.path.getsize(path)
        def run_a():
            PreemptibleDeque.preempt_ident = threading.get_ident()
            _log_one(w, kind, 0)

        thread_a = threading.Thread(target=run_a)
        thread_a.start()
        assert PreemptibleDeque.appended.wait(5)
        _log_one(w, kind, 1)  # thread B, while A is preempted
        start = time.monotonic()
        took = _seconds_until_written(path, size, LATENCY)
        thread_a.join(5)
        if took is None:
            _seconds_until_written(path, size, 1.5)
            pytest.fail(f"the records reached the OS {time.monotonic() - start:.2f} s after "
                        f"thread B's call returned (limit {LATENCY} s)")
        w.flush()
        assert len(events_of(path)) == 3  # header and both records
    finally:
        PreemptibleDeque.preempt_ident = None
        w.close()


def _fsyncs_while_logging(tmp_path, monkeypatch, flush_secs):
    w = tbx.SummaryWriter(tmp_path, flush_secs=flush_secs)
    path = os.path.realpath(wait_for_file(tmp_path))
    real_fsync = os.fsync
    count = [0]

    def fsync(fd):
        if fd_target(fd) == path:
            count[0] += 1
        return real_fsync(fd)

    monkeypatch.setattr(event_file.os, "fsync", fsync)
    deadline = time.monotonic() + 0.3
    step = 0
    while time.monotonic() < deadline:
        w.add_scalar("x", float(step), step)
        step += 1
        time.sleep(0.005)
    time.sleep(0.05)
    during = count[0]
    w.close()
    assert steps_of(path, "x") == list(range(step))
    return during, count[0] - during


def test_flush_secs_sets_the_fsync_period(tmp_path, monkeypatch):
    during, at_close = _fsyncs_while_logging(tmp_path, monkeypatch, flush_secs=0.05)
    assert during >= 3  # about every 0.05 s over 0.3 s of logging


def test_no_fsync_before_close_with_a_long_flush_secs(tmp_path, monkeypatch):
    during, at_close = _fsyncs_while_logging(tmp_path, monkeypatch, flush_secs=10000)
    assert during == 0
    assert at_close >= 1  # close() fsyncs


def test_flush_returns_after_everything_including_pool_encodings_is_written(tmp_path):
    rng = np.random.default_rng(0)
    w = tbx.SummaryWriter(tmp_path, flush_secs=10000)
    expected = set()
    for round_ in range(2):
        for step in range(round_ * 10, round_ * 10 + 10):
            w.add_scalar("loss", float(step), step)
            w.add_histogram("weights", rng.normal(size=200_000), step)
            w.add_image("picture", rng.integers(0, 256, size=(3, 96, 96), dtype=np.uint8), step)
            w.add_images("batch", rng.random((4, 3, 16, 16)), step)
            w.add_text("note", f"step {step}", step)
            expected |= {(tag, step) for tag in ("loss", "weights", "picture", "batch", "note/text_summary")}
        w.flush()
        path = only_file(tmp_path)  # read with another reader while the writer is open
        found = [(v.tag, e.step) for e in events_of(path) for v in e.summary.value]
        assert len(found) == len(set(found))
        assert set(found) == expected
    w.close()


def test_eight_threads_on_one_writer_every_point_exactly_once(tmp_path):
    threads_n, per_thread = 8, 5000
    w = tbx.SummaryWriter(tmp_path)
    barrier = threading.Barrier(threads_n)
    errors = []

    def log(k):
        try:
            barrier.wait()
            for step in range(per_thread):
                w.add_scalar(f"thread{k}", float(step * 10 + k), step)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=log, args=(k,)) for k in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    call_with_timeout(w.close)
    got = scalars_of(only_file(tmp_path))
    assert sorted(got) == [f"thread{k}" for k in range(threads_n)]
    for k in range(threads_n):
        points = got[f"thread{k}"]
        assert [s for s, _ in points] == list(range(per_thread))  # each once, in order
        assert [v for _, v in points] == [float(s * 10 + k) for s in range(per_thread)]


# --- bounded memory ---------------------------------------------------------------

@pytest.mark.parametrize("method", ["add_text", "add_scalar"])
def test_callers_block_when_the_disk_cannot_keep_up(tmp_path, monkeypatch, method):
    bound, total = 64, 1500
    monkeypatch.setattr(event_file, "MAX_PENDING_RECORDS", bound)
    w = tbx.SummaryWriter(tmp_path, flush_secs=10000)
    w.flush()
    path = only_file(tmp_path)
    faults = WriteFaults(monkeypatch, path)
    faults.mode, faults.delay = "slow", 0.01  # each write system call takes 10 ms
    add = getattr(w, method)
    queue = w.file_writer._records
    max_queue = max_unwritten = 0
    for step in range(total):
        add("tag", "v" if method == "add_text" else float(step), step)
        max_queue = max(max_queue, len(queue))
        max_unwritten = max(max_unwritten, step + 1 - faults.records_written)
    # The queue of records waiting for the writer stays at the bound (+ a
    # record per racing caller); with one batch in flight in the write system
    # call, at most twice the bound is held in memory.
    assert max_queue <= bound + 4, f"queue reached {max_queue} records (bound {bound})"
    assert max_unwritten <= 2 * bound + 4, f"{max_unwritten} records handed over but not written"
    faults.mode = None
    call_with_timeout(w.close)
    if method == "add_text":
        assert [e.step for e in events_of(path)[1:]] == list(range(total))
    else:
        assert steps_of(path, "tag") == list(range(total))


# --- errors -------------------------------------------------------------------------

def test_disk_full_is_raised_with_path_and_cause_and_nothing_is_lost(tmp_path, monkeypatch):
    w = tbx.SummaryWriter(tmp_path, flush_secs=10000)
    w.flush()
    path = only_file(tmp_path)
    faults = WriteFaults(monkeypatch, path)
    logged = []
    step = 0

    def log_until_error(deadline_s):
        nonlocal step
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            try:
                w.add_scalar("loss", float(step), step)
            except WriteError as exc:
                return exc  # that call was refused: its point is not logged
            logged.append(step)
            step += 1
            time.sleep(0.0005)
        return None

    for _ in range(50):
        w.add_scalar("loss", float(step), step)
        logged.append(step)
        step += 1
    w.flush()
    faults.mode = "short-then-enospc"
    err = log_until_error(3.0)
    assert err is not None, "add_scalar never reported the failed writes"
    assert isinstance(err, OSError) and isinstance(err, TbxError)
    assert path in str(err) and "No space left on device" in str(err)
    # The fault persists: flush() reports it too, and does not hang.
    with pytest.raises(WriteError, match="No space left on device") as info:
        call_with_timeout(w.flush)
    assert path in str(info.value)
    for _ in range(20):
        w.add_scalar("loss", float(step), step)
        logged.append(step)
        step += 1
    # The disk has room again: everything kept in memory is written, once.
    faults.mode = None
    for attempt in range(2):
        try:
            call_with_timeout(w.flush)
            break
        except WriteError:  # a retry that failed just before the fault cleared
            assert attempt == 0
    assert steps_of(path, "loss") == logged
    for _ in range(20):
        w.add_scalar("loss", float(step), step)
        logged.append(step)
        step += 1
    call_with_timeout(w.close)
    assert steps_of(path, "loss") == logged
    assert faults.calls >= 2


def test_close_with_a_persistent_disk_full_raises_and_does_not_hang(tmp_path, monkeypatch):
    w = tbx.SummaryWriter(tmp_path, flush_secs=10000)
    w.flush()
    path = only_file(tmp_path)
    faults = WriteFaults(monkeypatch, path)
    faults.mode = "enospc"
    for step in range(10):
        w.add_scalar("loss", float(step), step)
    with pytest.raises(WriteError, match="No space left on device") as info:
        call_with_timeout(w.close, timeout=10)
    assert path in str(info.value)
    assert open_fds_to(path) == []  # the file is closed even though close() raised
    w.close()  # idempotent, nothing more to report
    with pytest.raises(WriterClosedError):
        w.add_scalar("loss", 1.0, 99)


def test_unexpected_exception_in_the_writer_thread_is_not_swallowed(tmp_path, monkeypatch):
    # E.g. MemoryError while joining a large batch: the writer thread must not
    # die silently, leaving flush()/close() to return as if all was written.
    w = tbx.SummaryWriter(tmp_path, flush_secs=10000)
    w.flush()
    path = only_file(tmp_path)
    faults = WriteFaults(monkeypatch, path)
    try:
        faults.mode = "memory"
        for step in range(10):
            w.add_scalar("loss", float(step), step)
        with pytest.raises(Exception) as info:
            call_with_timeout(w.flush)
        assert path in str(info.value) or path in str(info.value.__cause__)
        faults.mode = None
        for step in range(10, 20):
            w.add_scalar("loss", float(step), step)
        for attempt in range(2):
            try:
                call_with_timeout(w.flush)
                break
            except Exception:
                assert attempt == 0
        assert steps_of(path, "loss") == list(range(20))  # nothing lost
    finally:
        faults.mode = None
        try:
            call_with_timeout(w.close)
        except Exception:
            pass


def test_cannot_create_under_a_regular_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    logdir = blocker / "sub"
    with pytest.raises(WriteError) as info:
        tbx.SummaryWriter(logdir)
    assert str(logdir) in str(info.value)
    assert isinstance(info.value.__cause__, NotADirectoryError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions (see the next test)")
def test_cannot_create_in_a_read_only_directory(tmp_path):
    logdir = tmp_path / "ro"
    logdir.mkdir()
    logdir.chmod(0o500)
    try:
        with pytest.raises(WriteError, match="Permission denied") as info:
            tbx.SummaryWriter(logdir)
        assert str(logdir) in str(info.value)
    finally:
        logdir.chmod(0o700)


def test_permission_denied_at_creation(tmp_path, monkeypatch):
    # Works as root too: os.open of the event file is refused with EACCES.
    logdir = tmp_path / "denied"
    logdir.mkdir()
    real_open = os.open

    def deny(path, *args, **kwargs):
        if os.fspath(path).startswith(str(logdir)):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(event_file.os, "open", deny)
    with pytest.raises(WriteError, match="Permission denied") as info:
        tbx.SummaryWriter(logdir)
    assert str(logdir) in str(info.value)
    assert event_files(logdir) == []


def _failing(*args, **kwargs):
    raise ValueError("encoder exploded")


def test_encoding_error_surfaces_on_the_next_add(tmp_path, monkeypatch):
    monkeypatch.setattr(summary_image, "image_record", _failing)
    w = tbx.SummaryWriter(tmp_path)
    w.add_scalar("loss", 0.0, 0)
    w.add_image("img", np.zeros((3, 8, 8), np.uint8), 0)
    deadline = time.monotonic() + 3
    step, logged = 1, [0]
    with pytest.raises(ValueError, match="encoder exploded"):
        while time.monotonic() < deadline:
            w.add_scalar("loss", float(step), step)
            logged.append(step)
            step += 1
            time.sleep(0.001)
    assert time.monotonic() < deadline, "the encoding error was never raised"
    # Reported once; the writer goes on working.
    w.add_scalar("loss", 1e6, step)
    logged.append(step)
    call_with_timeout(w.close)
    assert steps_of(only_file(tmp_path), "loss") == logged


def test_encoding_error_surfaces_on_flush(tmp_path, monkeypatch):
    monkeypatch.setattr(summary_histogram, "compute_bins", _failing)
    w = tbx.SummaryWriter(tmp_path)
    w.add_histogram("h", np.arange(10.0), 0)
    w.add_scalar("loss", 0.0, 0)
    with pytest.raises(ValueError, match="encoder exploded"):
        call_with_timeout(w.flush)
    w.flush()  # reported once
    call_with_timeout(w.close)
    assert steps_of(only_file(tmp_path), "loss") == [0]


def test_encoding_error_on_close_still_closes_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(summary_image, "image_record", _failing)
    w = tbx.SummaryWriter(tmp_path)
    path = wait_for_file(tmp_path)
    w.add_scalar("loss", 0.0, 0)
    w.add_image("img", np.zeros((3, 8, 8), np.uint8), 0)
    w.add_scalar("loss", 1.0, 1)
    with pytest.raises(ValueError, match="encoder exploded"):
        call_with_timeout(w.close)
    # close() reported the error, but it must still have written, fsynced and
    # closed the file: the writer is closed and a second close() is a no-op.
    assert open_fds_to(path) == [], "close() raised and left the event file open"
    assert steps_of(path, "loss") == [0, 1]
    call_with_timeout(w.close)
    with pytest.raises(WriterClosedError):
        w.add_scalar("loss", 2.0, 2)


# --- close -------------------------------------------------------------------------

def test_writing_after_close_raises_and_close_is_idempotent(tmp_path):
    w = tbx.SummaryWriter(tmp_path)
    w.add_scalar("x", 1.0, 0)
    path = wait_for_file(tmp_path)
    w.close()
    w.close()
    assert open_fds_to(path) == []
    calls = [
        lambda: w.add_scalar("x", 2.0, 1),
        lambda: w.add_scalar("x", 2.0, 1, new_style=True),
        lambda: w.add_histogram("h", np.arange(5.0), 1),
        lambda: w.add_image("i", np.zeros((3, 4, 4), np.uint8), 1),
        lambda: w.add_text("t", "late", 1),
        lambda: w.add_histogram_raw("r", 0, 1, 1, 0.5, 0.25, [1.0], [1.0], 1),
        w.file_writer.flush,
    ]
    for call in calls:
        with pytest.raises(WriterClosedError):
            call()
    w.flush()  # SummaryWriter.flush after close is a no-op, as torch's (Lightning relies on it)
    assert issubclass(WriterClosedError, TbxError)
    assert steps_of(path, "x") == [0]


def test_context_manager_closes_even_on_error(tmp_path):
    with pytest.raises(KeyError):
        with tbx.SummaryWriter(tmp_path) as w:
            for step in range(100):
                w.add_scalar("x", float(step), step)
            w.add_histogram("h", np.arange(1000.0), 0)
            raise KeyError("training failed")
    path = only_file(tmp_path)
    assert open_fds_to(path) == []
    with pytest.raises(WriterClosedError):
        w.add_scalar("x", 0.0, 100)
    assert steps_of(path, "x") == list(range(100))
    assert [v.tag for e in events_of(path) for v in e.summary.value if v.tag == "h"] == ["h"]


def test_close_runs_at_interpreter_exit(tmp_path):
    logdir = tmp_path / "run"
    proc = run_script(tmp_path, """
        import sys
        import numpy as np
        import tbx
        w = tbx.SummaryWriter(sys.argv[1], flush_secs=10000)
        for i in range(5000):
            w.add_scalar("loss", i * 0.5, i)
        w.add_histogram("hist", np.arange(300000.0), 1)
        w.add_image("img", np.full((3, 64, 64), 7, np.uint8), 2)
        w.add_text("note", "bye", 3)
        # no close(): the atexit handler must write everything
    """, logdir)
    assert proc.returncode == 0, proc.stderr
    assert "tbx:" not in proc.stderr
    path = only_file(logdir)
    stats = tbx.ReadStats()
    tags = [(v.tag, e.step) for _, e in tbx.read_events(path, stats=stats) for v in e.summary.value]
    assert stats.truncated_bytes == 0
    assert sorted(t for t in tags if t[0] != "loss") == [("hist", 1), ("img", 2), ("note/text_summary", 3)]
    points = scalars_of(path)["loss"]
    assert [s for s, _ in points] == list(range(5000))
    assert [v for _, v in points] == [i * 0.5 for i in range(5000)]


# --- fork ---------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_that_logs_writes_its_own_file(tmp_path):
    w = tbx.SummaryWriter(tmp_path, flush_secs=10000)
    for step in range(100):  # some of these are still queued at the fork
        w.add_scalar("parent", float(step), step)

    def child():
        for step in range(50):
            w.add_scalar("child", float(-step), step)
        w.add_histogram("child_hist", np.arange(100.0), 0)  # the encoder pool works in the child
        w.close()

    pid = fork(child)
    for step in range(100, 200):  # the parent keeps logging during and after the fork
        w.add_scalar("parent", float(step), step)
    assert wait_child(pid) == 0
    for step in range(200, 300):
        w.add_scalar("parent", float(step), step)
    w.close()

    names = event_files(tmp_path)
    assert len(names) == 2, names
    by_pid = {name_fields(n)[2]: os.path.join(tmp_path, n) for n in names}
    assert set(by_pid) == {str(os.getpid()), str(pid)}
    parent_file, child_file = by_pid[str(os.getpid())], by_pid[str(pid)]
    for path in (parent_file, child_file):
        events = events_of(path)
        assert events[0].file_version == "brain.Event:2"
        assert [e.file_version for e in events[1:] if e.file_version] == []  # one header each
    parent = scalars_of(parent_file)
    assert list(parent) == ["parent"]
    assert [s for s, _ in parent["parent"]] == list(range(300))
    child_points = scalars_of(child_file)
    assert list(child_points) == ["child"]  # none of the parent's queued records
    assert child_points["child"] == [(s, float(-s)) for s in range(50)]
    assert [v.tag for e in events_of(child_file) for v in e.summary.value if v.tag == "child_hist"] == ["child_hist"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_that_does_not_log_creates_no_file(tmp_path):
    w = tbx.SummaryWriter(tmp_path)
    for step in range(10):
        w.add_scalar("x", float(step), step)

    def child():
        w.flush()
        w.close()

    pid = fork(child)
    assert wait_child(pid) == 0
    w.add_scalar("x", 10.0, 10)
    w.close()
    names = event_files(tmp_path)
    assert [name_fields(n)[2] for n in names] == [str(os.getpid())]
    assert steps_of(os.path.join(tmp_path, names[0]), "x") == list(range(11))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_exiting_normally_creates_no_file(tmp_path):
    # Like a DataLoader worker: forked, never logs, exits through atexit.
    logdir = tmp_path / "run"
    proc = run_script(tmp_path, """
        import os, sys
        import tbx
        w = tbx.SummaryWriter(sys.argv[1])
        for i in range(10):
            w.add_scalar("x", float(i), i)
        pid = os.fork()
        if pid == 0:
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        for i in range(10, 20):
            w.add_scalar("x", float(i), i)
        w.close()
        print(pid)
    """, logdir)
    assert proc.returncode == 0, proc.stderr
    assert "tbx:" not in proc.stderr
    names = event_files(logdir)
    assert len(names) == 1, names
    assert name_fields(names[0])[2] != proc.stdout.strip()
    assert steps_of(os.path.join(logdir, names[0]), "x") == list(range(20))


def test_removed_log_directory_is_reported_and_logging_continues(tmp_path):
    logdir = tmp_path / "run"
    w = tbx.SummaryWriter(logdir, flush_secs=10000)
    try:
        w.add_scalar("loss", 1.0, 0, new_style=True)
        w.flush()
        first = only_file(logdir)
        shutil.rmtree(logdir)
        w.add_scalar("loss", 2.0, 1, new_style=True)
        with pytest.raises(tbx.WriteError, match="was deleted") as info:
            call_with_timeout(w.flush)
        assert first in str(info.value)
        w.add_scalar("loss", 3.0, 2, new_style=True)
        call_with_timeout(w.flush)
        second = only_file(logdir)
        assert second != first
        events = events_of(second)
        assert events[0].file_version == "brain.Event:2"
        scalars = [(e.step, e.summary.value[0]) for e in events if e.HasField("summary")]
        # The point queued at the deletion went with the deleted file (the error said so);
        # the new file starts with the tag's metadata, so TensorBoard shows the tag.
        assert [s for s, _ in scalars] == [2]
        assert scalars[0][1].metadata.plugin_data.plugin_name == "scalars"
    finally:
        call_with_timeout(w.close)


def test_torch_file_writer_methods_accept_foreign_protos(tmp_path):
    """Frameworks (Lightning's log_hyperparams) call _get_file_writer().add_summary with torch's protos."""
    from tensorboard.compat.proto import event_pb2 as tb_event_pb2, summary_pb2 as tb_summary_pb2

    w = tbx.SummaryWriter(tmp_path)
    fw = w._get_file_writer()
    assert fw.get_logdir() == str(tmp_path)
    summary = tb_summary_pb2.Summary()
    summary.value.add(tag="x", simple_value=2.5)
    fw.add_summary(summary, 7)
    fw.add_summary(summary, 8, walltime=123.0)
    event = tb_event_pb2.Event(step=3)
    event.summary.value.add(tag="y", simple_value=1.5)
    fw.add_event(event)
    fw.add_event(event, step=4, walltime=456.0)
    w.close()
    events = [e for e in events_of(only_file(tmp_path)) if e.HasField("summary")]
    got = [(e.summary.value[0].tag, e.step, e.summary.value[0].simple_value) for e in events]
    assert got == [("x", 7, 2.5), ("x", 8, 2.5), ("y", 3, 1.5), ("y", 4, 1.5)]
    assert events[1].wall_time == 123.0 and events[3].wall_time == 456.0
    assert events[0].wall_time > 1e9 and events[2].wall_time > 1e9
