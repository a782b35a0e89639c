"""Event files: naming, the background writer thread, flush/close/fork/atexit.

An :class:`EventFileWriter` owns one ``events.out.tfevents.*`` file. Callers
hand it framed records (:meth:`EventFileWriter.write`, a lock-free deque
append) or encoding jobs (:meth:`EventFileWriter.submit`, run on a small
shared thread pool and written in submission order). A daemon thread moves
everything to the file with one ``write`` system call per cycle, at most
``WRITE_INTERVAL`` seconds after it was handed over, so a killed process
loses at most that much; the file is also fsynced every ``flush_secs``.

Thread-safety: every public method may be called from any thread.
"""

import atexit
import collections
import itertools
import os
import queue
import socket
import threading
import time
import weakref

from tbx import _snapshot, record
from tbx.errors import WriteError, WriterClosedError
from tbx.proto import event_pb2

WRITE_INTERVAL = 0.02
"""Seconds between writer-thread cycles: the most a record waits before it reaches the OS."""

IDLE_WAIT = 1.0
"""Seconds an idle writer thread sleeps; a record handed to an empty queue wakes it at once."""

MAX_PENDING_RECORDS = 1 << 18
"""Records queued but not yet written before ``write`` blocks the caller."""

MAX_PENDING_JOB_BYTES = 256 << 20
"""Input bytes held by unfinished encoding jobs before ``submit`` blocks the caller."""

_RETRY_AFTER_ERROR = 0.5
_IOV_MAX = 1024
_file_counter = itertools.count()
_live_writers = weakref.WeakSet()


def event_file_name(suffix=""):
    """``events.out.tfevents.<10-digit seconds>.<host>.<pid>.<counter><suffix>``.

    The counter is zero-padded so that files of one process sort in creation
    order even when several are opened within the same second.
    """
    return "events.out.tfevents.%010d.%s.%d.%06d%s" % (
        int(time.time()), socket.gethostname(), os.getpid(), next(_file_counter), suffix,
    )


def header_record(wall_time=None):
    """The framed first record of every event file: ``file_version: brain.Event:2``."""
    event = event_pb2.Event(wall_time=time.time() if wall_time is None else wall_time,
                            file_version="brain.Event:2")
    event.source_metadata.writer = "tbx"
    return record.frame(event.SerializeToString())


class _Job:
    __slots__ = ("fn", "args", "nbytes", "result", "error", "done", "writer", "buffer")

    def __init__(self, fn, args, nbytes, writer, buffer=None):
        self.buffer = buffer  # a tbx._snapshot buffer among the args, recycled after the run
        self.writer = writer  # woken when idle, so a finished job is written at once
        self.fn = fn
        self.args = args
        self.nbytes = nbytes
        self.result = None
        self.error = None
        self.done = threading.Event()

    def run(self):
        try:
            self.result = self.fn(*self.args)
        except BaseException as exc:  # re-raised on the caller's next call
            self.error = exc
        finally:
            self.fn = self.args = None
            _snapshot.recycle(self.buffer)
            self.buffer = None
            self.done.set()
            if self.writer._idle:  # a busy writer takes the result on its next cycle
                self.writer._wake.set()
            self.writer = None


class _Pool:
    """Daemon worker threads shared by every writer of the process.

    Daemon threads keep running while atexit handlers close writers, and a
    forked child gets a fresh pool (see _after_fork_in_child).
    """

    def __init__(self):
        self._queue = queue.SimpleQueue()  # C-level put/get: a cheap hand-over from the caller
        self._threads = []
        self._lock = threading.Lock()
        # One core is left to the training loop: on small machines, encoders on
        # every core slow the caller's own (GIL-bound) work more than they gain.
        self.size = max(1, min(4, (os.cpu_count() or 2) - 1))

    def submit(self, job):
        if len(self._threads) < self.size:
            with self._lock:
                if len(self._threads) < self.size:
                    thread = threading.Thread(target=self._work, name="tbx-encoder", daemon=True)
                    self._threads.append(thread)
                    thread.start()
        self._queue.put(job)

    def _work(self):
        get = self._queue.get
        while True:
            get().run()


_pool = _Pool()


class EventFileWriter:
    """Writes framed records to one event file from a background thread.

    Args:
        logdir: directory of the run; created if missing.
        filename_suffix: appended to the file name.
        flush_secs: how often written data is also fsynced to the device.
        purge_step: if not None, a ``SessionLog START`` at this step follows
            the header, so TensorBoard drops older points at or after it.

    Raises:
        WriteError: the directory or file cannot be created.
    """

    def __init__(self, logdir, filename_suffix="", flush_secs=120, purge_step=None):
        self.logdir = os.fspath(logdir)
        self.filename_suffix = filename_suffix
        self.flush_secs = flush_secs
        self._purge_step = purge_step
        self._closed = False
        self._init_state()
        self._open()
        self._start()
        _live_writers.add(self)

    # -- state ---------------------------------------------------------------

    def _init_state(self):
        self.seen = set()  # tags whose metadata is already in this file
        self.max_records = MAX_PENDING_RECORDS
        self._records = collections.deque()
        self._jobs = collections.deque()
        self._job_bytes = 0
        self._job_lock = threading.Lock()
        self._cv = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._flush_requested = 0
        self._flush_done = 0
        self._fsync_requested = False
        self._close_lock = threading.Lock()
        self._error = None
        self._stop = False
        self._fd = None
        self._unwritten = b""
        self._head = b""  # header records of a newly opened file: always written first
        self._dirty = False
        self._wrote = False
        self._idle = False  # the writer thread is (about to be) in its long sleep
        self._last_sync = time.monotonic()
        self._thread = None
        self.path = None

    def _open(self):
        try:
            os.makedirs(self.logdir, exist_ok=True)
            path = os.path.join(self.logdir, event_file_name(self.filename_suffix))
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise WriteError(f"cannot create an event file in {self.logdir!r}: {exc.strerror or exc}") from exc
        self.path = path
        head = header_record()
        if self._purge_step is not None:
            # TensorBoard's Python loader ignores the first SessionLog START of a
            # run and purges steps >= s at every later one. Earlier files of the
            # run may hold no START (torch's do not), so write it twice: the
            # second always purges. The Rust loader ignores SessionLog and drops
            # re-logged steps on its own.
            event = event_pb2.Event(wall_time=time.time(), step=self._purge_step)
            event.session_log.status = event_pb2.SessionLog.START
            head += record.frame(event.SerializeToString()) * 2
        self._head = head

    def _start(self):
        self._thread = threading.Thread(target=self._run, name="tbx-event-writer", daemon=True)
        self._thread.start()

    # -- caller side ---------------------------------------------------------

    def write(self, data):
        """Queue framed record bytes; they reach the OS within WRITE_INTERVAL.

        Raises:
            WriterClosedError: after close().
            WriteError, or an encoding job's exception: a background failure
                since the last call. Either way ``data`` is not queued.
        """
        if self._closed or self._error is not None:
            self._check()
        records = self._records
        records.append(data)
        if self._idle:
            self._wake.set()
        if len(records) > self.max_records:
            self._wait_for_room()

    def submit(self, fn, *args, nbytes=0, buffer=None):
        """Run ``fn(*args) -> bytes`` on the encoder pool; its records are written in submission order.

        ``nbytes`` is the memory the job holds until it finishes (for the bound);
        ``buffer``, a tbx._snapshot buffer that the args use, is recycled after
        the run (``fn`` must not return anything that still refers to it).
        """
        if self._closed or self._error is not None:
            self._check()
        job = _Job(fn, args, nbytes, self, buffer)
        with self._job_lock:
            self._job_bytes += nbytes
            over = self._job_bytes > MAX_PENDING_JOB_BYTES
            self._jobs.append(job)
        _pool.submit(job)
        if over:
            self._wait_for_jobs(job)

    # -- torch's FileWriter methods, for code that reaches into the writer --------

    def get_logdir(self):
        return self.logdir

    def add_event(self, event, step=None, walltime=None):
        """Write an Event message (tbx's, TensorBoard's, torch's: any wire-compatible one).

        ``step`` and ``walltime``, when given, replace the event's own; a missing
        wall time becomes now.
        """
        ours = event_pb2.Event.FromString(event.SerializeToString())
        if step is not None:
            ours.step = int(step)
        if walltime is not None:
            ours.wall_time = float(walltime)
        elif not ours.wall_time:
            ours.wall_time = time.time()
        self.write(record.frame(ours.SerializeToString()))

    def add_summary(self, summary, global_step=None, walltime=None):
        """Write a Summary message (any wire-compatible one) as an Event."""
        event = event_pb2.Event(wall_time=time.time() if walltime is None else float(walltime))
        event.summary.ParseFromString(summary.SerializeToString())
        if global_step is not None:
            event.step = int(global_step)
        self.write(record.frame(event.SerializeToString()))

    def flush(self):
        """Return once everything written or submitted before this call is in the file."""
        self._check()
        self._sync_to_writer(fsync=False)

    def close(self):
        """Write everything, fsync and close the file. Idempotent.

        Raises:
            WriteError: the background thread failed and the error was not yet reported.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        _live_writers.discard(self)
        error = None
        try:
            self._sync_to_writer(fsync=True)
        except Exception as exc:  # a write or encoding failure: still close the file, then raise
            error = exc
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._wake.set()
        self._thread.join()
        # A record appended concurrently with close() may have missed the last cycle.
        if self._records or self._unwritten:
            self._write_cycle()
        if self._fd is not None:
            try:
                if self._dirty:
                    os.fsync(self._fd)
            except OSError as exc:
                self._error = self._error or self._wrap(exc)
            os.close(self._fd)
            self._fd = None
        error = error or self._error
        self._error = None
        if error is not None:
            raise error

    @property
    def closed(self):
        return self._closed

    def _check(self):
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if self._closed:
            raise WriterClosedError(f"the event file writer for {self.logdir!r} is closed")

    def _wait_jobs_done(self):
        for job in list(self._jobs):
            job.done.wait()

    def _wait_for_jobs(self, newest):
        for job in list(self._jobs):
            job.done.wait()
            if job is newest or self._job_bytes <= MAX_PENDING_JOB_BYTES:
                return

    def _sync_to_writer(self, fsync):
        self._wait_jobs_done()
        with self._cv:
            self._flush_requested += 1
            target = self._flush_requested
            self._fsync_requested = fsync
            self._wake.set()
            while self._flush_done < target and self._error is None and self._thread.is_alive():
                self._cv.wait(0.5)
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if self._flush_done < target:
                raise WriteError(f"the writer thread of {self.path!r} stopped before writing everything")

    def _wait_for_room(self):
        with self._cv:
            self._wake.set()
            while len(self._records) > self.max_records // 2 and self._error is None and self._thread.is_alive():
                self._cv.wait(0.5)
        if self._error is not None:
            self._check()

    # -- writer thread -------------------------------------------------------

    def _run(self):
        busy = True
        while True:
            # Busy: poll every WRITE_INTERVAL. Idle (nothing written last cycle and
            # no job pending): announce it, look at the queue once more, and sleep
            # until a caller wakes us. A caller appends first and then reads
            # _idle, so either we see its record here or it sees _idle and wakes us.
            if busy or self._jobs:
                self._wake.wait(WRITE_INTERVAL)
            else:
                self._idle = True
                if not self._records and not self._jobs:
                    self._wake.wait(IDLE_WAIT)
                self._idle = False
            self._wake.clear()
            with self._cv:
                target = self._flush_requested
                stop = self._stop
            try:
                ok = self._write_cycle()
                busy = self._wrote
                if ok and self._dirty and (
                    self._fsync_requested
                    or time.monotonic() - self._last_sync >= self.flush_secs
                ):
                    ok = self._fsync()
            except Exception as exc:  # never let the thread die silently
                ok = busy = False
                if self._error is None:
                    self._error = exc
            with self._cv:
                if ok:
                    self._flush_done = max(self._flush_done, target)
                    self._fsync_requested = False
                self._cv.notify_all()
            if stop:
                return
            if not ok:
                time.sleep(_RETRY_AFTER_ERROR)

    def _collect(self):
        """Everything queued, as a list of chunks to write in order.

        Small records are joined (in C) into one chunk; a pool job's result
        (an image, a clip: often hundreds of KB) stays a chunk of its own, so
        writev sends it without another copy under the GIL.
        """
        chunks = [self._unwritten] if self._unwritten else []
        if self._head:
            chunks.append(self._head)
            self._head = b""
        jobs = self._jobs
        while jobs and jobs[0].done.is_set():
            job = jobs.popleft()
            with self._job_lock:
                self._job_bytes -= job.nbytes
            if job.error is not None:
                if self._error is None:
                    self._error = job.error
            elif job.result:
                chunks.append(job.result)
        records = self._records
        if records:
            chunks.append(b"".join([records.popleft() for _ in range(len(records))]))
        return chunks

    def _write_cycle(self):
        """Write everything queued; True on success (False: error recorded, data kept)."""
        chunks = self._collect()
        self._wrote = bool(chunks)
        if not chunks:
            return True
        done = 0  # chunks[:done] are in the file; chunks[done] may be partly
        try:
            if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
                # Records already encoded lack the metadata a new file needs on each
                # tag's first value, so they go the way of the deleted file.
                self._reopen_deleted(sum(map(len, chunks)))
                self._wrote = False
                return False
            if self._fd is None:  # first write in a forked child, or after a deletion
                self._open()
                chunks.insert(0, self._head)
                self._head = b""
            while done < len(chunks):
                if hasattr(os, "writev"):
                    written = os.writev(self._fd, chunks[done:done + _IOV_MAX])
                else:  # Windows: one chunk at a time
                    written = os.write(self._fd, chunks[done])
                while done < len(chunks) and written >= len(chunks[done]):
                    written -= len(chunks[done])
                    done += 1
                if written:
                    chunks[done] = memoryview(chunks[done])[written:]
            self._unwritten = b""
            self._dirty = True
            return True
        except Exception as exc:  # disk full, vanished file system, even MemoryError
            self._unwritten = b"".join(chunks[done:])
            if self._error is None:
                self._error = exc if isinstance(exc, WriteError) else self._wrap(exc)
            return False

    def _reopen_deleted(self, dropped):
        """The file was unlinked (its directory removed?): report it; the next write opens a new one."""
        deleted = self.path
        os.close(self._fd)
        self._fd = None
        self._unwritten = b""
        self.seen = set()  # the new file needs every tag's metadata again
        if self._error is None:
            self._error = WriteError(
                f"event file {deleted!r} was deleted while in use (was its directory removed?); "
                f"its data and {dropped} bytes queued for it are gone; logging continues in a new file"
            )

    def _fsync(self):
        try:
            os.fsync(self._fd)
        except OSError as exc:
            if self._error is None:
                self._error = self._wrap(exc)
            return False
        self._dirty = False
        self._last_sync = time.monotonic()
        return True

    def _wrap(self, exc):
        where = self.path or self.logdir
        pending = len(self._unwritten)
        error = WriteError(
            f"cannot write event file {where!r}: {getattr(exc, 'strerror', None) or exc!r}"
            f" ({pending} bytes kept in memory and retried)"
        )
        error.__cause__ = exc
        return error

    # -- fork ------------------------------------------------------------------

    def _after_fork_in_child(self):
        """A forked child gets its own file, opened when it first writes."""
        fd = self._fd
        self._init_state()
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
        if not self._closed:
            self._start()


def _after_fork_in_child():
    global _pool
    _pool = _Pool()
    for writer in list(_live_writers):
        writer._after_fork_in_child()


def _close_all_at_exit():
    for writer in list(_live_writers):
        try:
            writer.close()
        except Exception as exc:  # nothing left to raise to at exit
            import sys

            sys.stderr.write(f"tbx: while closing {writer.path}: {exc}\n")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all_at_exit)
