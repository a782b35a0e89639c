"""Run stock TensorBoard on a logdir and query its HTTP API (test helper).

``TensorBoardServer(logdir, load_fast)`` starts ``python -m tensorboard.main``
exactly as FORMATS.md section 7 step 3 prescribes, waits until the chosen
loader has finished its single load cycle (step 4), and on exit kills
TensorBoard and checks that no Rust data server child outlived it (step 19).

Only the standard library is used, so the helper works wherever TensorBoard
itself does.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

# Every plugin with a retention limit, set high so nothing is downsampled.
# Never 0: the loaders read 0 as "keep all" but the plugins then return [].
SAMPLE_PLUGINS = (
    "scalars",
    "images",
    "audio",
    "histograms",
    "text",
    "pr_curves",
    "mesh",
    "hparams",
    "custom_scalars",
)
SAMPLES_PER_PLUGIN = ",".join("%s=100000" % name for name in SAMPLE_PLUGINS)

DATA_SERVER_MARKER = os.path.join("tensorboard_data_server", "bin", "server")
RUST_LOAD_DONE = "Finished load cycle"
READY_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 30.0


class TensorBoardError(AssertionError):
    """TensorBoard failed to start, answered an error, or left a process behind."""


def loads(text):
    """Decode TensorBoard's JSON, which may contain bare NaN, Infinity and -Infinity."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    # float() understands all three names; being explicit keeps a future json
    # default from silently breaking the scalar comparisons.
    return json.loads(text, parse_constant=float)


def free_port():
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _proc_table():
    """Map pid -> (ppid, argv) for every process visible in /proc ({} elsewhere)."""
    table = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return table
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                stat = f.read().decode("utf-8", "replace")
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        # The command name may contain spaces and parentheses; fields follow the last ")".
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) < 2 or fields[0] == "Z":
            continue  # zombies are already dead
        table[int(entry)] = (int(fields[1]), argv)
    return table


def _descendants(root_pid, table):
    children = {}
    for pid, (ppid, _argv) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root_pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def _is_data_server(argv):
    return bool(argv) and argv[0].endswith(DATA_SERVER_MARKER)


class TensorBoardServer:
    """Stock TensorBoard on ``logdir`` with the Python (``load_fast=False``) or Rust loader.

    Use as a context manager; ``__enter__`` returns once all data is loaded.
    """

    def __init__(self, logdir, load_fast, ready_timeout=READY_TIMEOUT_S, extra_flags=()):
        self.logdir = os.path.abspath(os.fspath(logdir))
        self.load_fast = bool(load_fast)
        self.ready_timeout = ready_timeout
        self.extra_flags = list(extra_flags)
        self.port = None
        self.proc = None
        self.environment = None
        self._stderr_file = None
        self._data_server_pids = set()

    @property
    def loader(self):
        return "rust" if self.load_fast else "python"

    @property
    def base_url(self):
        return "http://127.0.0.1:%d" % self.port

    # -- lifecycle -----------------------------------------------------------------

    def command(self):
        cmd = [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            self.logdir,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--load_fast=%s" % ("true" if self.load_fast else "false"),
            "--reload_interval=0",
            "--verbosity",
            "0",
            "--samples_per_plugin=%s" % SAMPLES_PER_PLUGIN,
        ]
        if not self.load_fast:
            cmd.append("--reload_task=blocking")
        return cmd + self.extra_flags

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        # A leftover data server is reported even when the test body failed,
        # but never masks that failure.
        try:
            self.stop()
        except TensorBoardError:
            if exc_type is None:
                raise
        return False

    def start(self):
        for attempt in range(3):
            self.port = free_port()
            self._stderr_file = tempfile.NamedTemporaryFile(
                prefix="tensorboard-%s-" % self.loader, suffix=".stderr", delete=False
            )
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.PIPE,  # the Rust data server exits once its parent's pipe closes
                stdout=subprocess.DEVNULL,
                stderr=self._stderr_file,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )
            try:
                self._wait_ready()
                return
            except _PortTaken as taken:
                self._kill_quietly()
                if attempt == 2:
                    raise TensorBoardError("could not bind a free port; stderr tail:\n%s" % taken) from None
            except BaseException:
                self._kill_quietly()
                raise

    def _wait_ready(self):
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.proc.poll() is not None:
                tail = self.stderr_tail()
                if "Address already in use" in tail or "could not bind to port" in tail.lower():
                    raise _PortTaken(tail)
                raise TensorBoardError(
                    "TensorBoard (%s loader) exited with %s before it was ready; stderr tail:\n%s"
                    % (self.loader, self.proc.returncode, tail)
                )
            if self.environment is None:
                self.environment = self._try_environment()
            if self.environment is not None and (not self.load_fast or RUST_LOAD_DONE in self.stderr()):
                break
            if time.monotonic() > deadline:
                raise TensorBoardError(
                    "TensorBoard (%s loader) not ready after %.1f s (environment answered: %s); "
                    "stderr tail:\n%s"
                    % (self.loader, self.ready_timeout, self.environment is not None, self.stderr_tail())
                )
            time.sleep(0.05)
        self._check_environment()
        self._data_server_pids.update(self._find_data_servers())
        if self.load_fast and not self._data_server_pids and os.path.isdir("/proc"):
            raise TensorBoardError("Rust loader is active but no data server process was found")

    def _try_environment(self):
        try:
            with urllib.request.urlopen(self.base_url + "/data/environment", timeout=5) as resp:
                if resp.status == 200:
                    return loads(resp.read())
        except (urllib.error.URLError, ConnectionError, socket.timeout, OSError):
            pass
        return None

    def _check_environment(self):
        debug = self.environment.get("debug", {})
        want_flag = "true" if self.load_fast else "false"
        got_flag = debug.get("flags", {}).get("load_fast")
        want_provider = "GrpcDataProvider" if self.load_fast else "MultiplexerDataProvider"
        provider = debug.get("data_provider", "")
        if got_flag != want_flag or not provider.startswith(want_provider):
            raise TensorBoardError(
                "wrong loader active: debug.flags.load_fast=%r (want %r), debug.data_provider=%r "
                "(want prefix %r)" % (got_flag, want_flag, provider, want_provider)
            )

    def _find_data_servers(self):
        table = _proc_table()
        pids = {p for p in _descendants(self.proc.pid, table) if _is_data_server(table[p][1])}
        return pids | self._orphans(table)

    def stop(self):
        """Kill TensorBoard; raise if a data server process survives it."""
        if self.proc is None:
            return
        self._data_server_pids.update(self._find_data_servers())
        self._kill_quietly()
        deadline = time.monotonic() + 10
        while True:
            table = _proc_table()
            survivors = {p for p in self._data_server_pids if p in table and _is_data_server(table[p][1])}
            survivors.update(self._orphans(table))
            if not survivors or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for pid in survivors:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self._data_server_pids.clear()
        if survivors:
            raise TensorBoardError(
                "tensorboard_data_server process(es) %s outlived TensorBoard (killed them now)"
                % sorted(survivors)
            )

    def _orphans(self, table):
        """Data servers for our logdir, even those reparented to init."""
        logdir_arg = "--logdir=%s" % self.logdir
        return {p for p, (_pp, argv) in table.items() if _is_data_server(argv) and logdir_arg in argv}

    def _kill_quietly(self):
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc.stdin:
            proc.stdin.close()
        if self._stderr_file is not None:
            self._stderr_file.close()
            os.unlink(self._stderr_file.name)
            self._stderr_file = None

    # -- captured output -----------------------------------------------------------

    def stderr(self):
        if self._stderr_file is None:
            return ""
        with open(self._stderr_file.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr_tail(self, chars=4000):
        return self.stderr()[-chars:]

    # -- HTTP ------------------------------------------------------------------------

    def url(self, path, params=None):
        if not path.startswith("/"):
            path = "/" + path
        query = urllib.parse.urlencode(params, doseq=True) if params else ""
        return self.base_url + path + ("?" + query if query else "")

    def _open(self, request):
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as resp:
                return resp.read(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as err:
            body = err.read()[:2000].decode("utf-8", "replace")
            raise TensorBoardError(
                "%s %s -> HTTP %d (%s loader): %s"
                % (request.get_method(), request.full_url, err.code, self.loader, body)
            ) from None

    def get_bytes(self, path, **params):
        """GET path; return (body bytes, Content-Type header)."""
        return self._open(urllib.request.Request(self.url(path, params)))

    def get_text(self, path, **params):
        body, _ctype = self.get_bytes(path, **params)
        return body.decode("utf-8")

    def get_json(self, path, **params):
        body, _ctype = self.get_bytes(path, **params)
        return loads(body)

    def post_form(self, path, data):
        """POST form-encoded ``data`` (dict or list of pairs; list values repeat the key)."""
        body = urllib.parse.urlencode(data, doseq=True).encode("ascii")
        request = urllib.request.Request(
            self.url(path),
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        return loads(self._open(request)[0])

    def post_json(self, path, payload):
        """POST a JSON body (the hparams plugin's protobuf-JSON requests)."""
        request = urllib.request.Request(
            self.url(path),
            data=json.dumps(payload).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        return loads(self._open(request)[0])

    def time_series(self, requests):
        """POST /data/plugin/timeseries/timeSeries with a list of request dicts."""
        return self.post_form("/data/plugin/timeseries/timeSeries", {"requests": json.dumps(requests)})


class _PortTaken(Exception):
    pass


def fetched_once(fetch):
    """``get(key)`` calling ``fetch(key)`` the first time only (e.g. one server start per loader)."""
    cache = {}

    def get(key):
        if key not in cache:
            cache[key] = fetch(key)
        return cache[key]

    return get
