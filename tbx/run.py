"""W&B's run API, offline: ``init``, ``Run.log``, ``finish``, written as TensorBoard event files.

``import tbx as wandb`` then ``wandb.init(...)``, ``wandb.log({...})``,
``wandb.finish()`` behave as W&B 0.31 does (see WANDB.md §1, §4, §9), with no
network and no background process.

Layout. A project is a TensorBoard logdir and each run one run directory in it::

    <dir or $WANDB_DIR or cwd>/<project>/<name>-<id>/
        events.out.tfevents.*   history (scalars, histograms, text, media) at W&B's steps
        config.yaml             {key: {value: v}}, JSON text (valid YAML), rewritten on change
        summary.json            the run summary (W&B's wandb-summary.json), at finish
        metadata.json           id, name, project, tags, notes, group, job_type, host,
                                python, command, git commit, start/end time, exit code,
                                and one entry per session (a resume adds one)
        files/                  ``run.dir``: files the user saves for a later sync

so ``tensorboard --logdir <dir>/<project>`` compares every run of the project.

Steps follow W&B exactly: a committed row gets ``_step``; ``commit=False``
accumulates into the open row; an explicit ``step`` greater than the current one
flushes the open row; the same step merges (last value per key wins); a lower
step is dropped with W&B's warning. Rows are written when they are committed,
so each key has one point per step in TensorBoard.

Value mapping (per row, at its step): Python/numpy/torch real scalars and bools
→ ``add_scalar(new_style=True)`` (NaN/inf kept); ``None`` → summary only;
arrays/tensors of more than 32 elements → a 32-bin histogram (W&B keeps
shorter arrays as lists: so does the summary, and they are not charted);
``str`` → ``add_text``; nested dicts → ``/``-joined keys; tbx.media objects →
their own ``_tb_log``; lists of media → ``tbx.media.log_media_list``; Python
lists → summary only. Keys whose ``define_metric`` has a ``step_metric`` are
written at that metric's (integral) value, so TensorBoard's x axis is W&B's.

HParams. At finish the flattened config (nested keys joined with ``.``, as W&B
shows them) is written once with ``add_hparams(run_name=".")``; its metrics are
the numeric summary values under ``summary/<key>`` (dict summaries such as
``{"min": ..}`` as ``summary/<key>/min``), at the run's last step. TensorBoard
keeps the first hparams of a run, so a resumed run shows its first session's
config (config.yaml always has the latest) and the latest summary metrics.
A run killed before finish has no hparams session.
"""

import atexit
import datetime as _dt
import getpass
import glob
import importlib
import json
import math
import numbers
import os
import platform
import re
import secrets
import socket
import sys
import tempfile
import threading
import time
import warnings

import numpy as np

from tbx import _convert
from tbx.errors import Error

# tbx.config (W&B's config object) is not the module once tbx is imported:
# reach the modules by their full names.
_config_mod = importlib.import_module("tbx.config")
_summary_mod = importlib.import_module("tbx.run_summary")

__all__ = ["init", "Run", "log", "finish", "define_metric", "watch", "unwatch", "get_run", "Error", "UsageError"]

HISTOGRAM_BINS = 32
"""Bins of the histogram an array of more than LIST_MAX elements becomes (W&B: 32)."""
LIST_MAX = 32
"""Arrays of at most this many elements are kept as lists in the summary (W&B's rule)."""

_ID_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"
_BAD_ID_CHARS = set("/\\#?%:")
_MODES = {"online": "offline", "offline": "offline", "dryrun": "offline", "shared": "offline", "run": "offline",
          "disabled": "disabled"}
_RESUME = {None: None, False: None, True: "auto", "auto": "auto", "allow": "allow", "must": "must", "never": "never"}
_REINIT = {None: "default", "default": "default", False: "default", True: "finish_previous",
           "return_previous": "return_previous", "finish_previous": "finish_previous", "create_new": "create_new"}
_INT32_MAX = (1 << 31) - 1

_ADJECTIVES = ("amber", "bold", "brisk", "calm", "clever", "cosmic", "crisp", "dainty", "dashing", "deep", "eager",
               "fancy", "fiery", "gentle", "glad", "golden", "grateful", "hardy", "honest", "icy", "jolly", "kind",
               "lively", "lucky", "misty", "noble", "olive", "proud", "quiet", "rare", "rosy", "royal", "silver",
               "smooth", "solar", "stellar", "swift", "tidy", "vivid", "warm", "wild", "wise", "young", "zesty")
_NOUNS = ("aurora", "breeze", "brook", "canyon", "cloud", "comet", "dawn", "dew", "dream", "dust", "field", "fire",
          "flower", "forest", "frost", "galaxy", "glade", "grass", "haze", "hill", "lake", "leaf", "meadow", "moon",
          "mountain", "night", "ocean", "paper", "pine", "planet", "rain", "river", "sea", "shadow", "sky", "smoke",
          "snow", "sound", "star", "sun", "sunset", "surf", "thunder", "tree", "violet", "water", "wave", "wind")


class UsageError(Error):
    """W&B's ``wandb.errors.UsageError``: bad arguments, or a call on a finished run."""


class _PreInit:
    """``tbx.config`` / ``tbx.summary`` before init(): any public access raises, as W&B's PreInitObject."""

    def __init__(self, name):
        object.__setattr__(self, "_name", name)

    def __getitem__(self, key):
        raise Error(f"You must call wandb.init() before {self._name}[{key!r}]")

    def __setitem__(self, key, value):
        raise Error(f"You must call wandb.init() before {self._name}[{key!r}]")

    def __getattr__(self, key):
        if key.startswith("_"):
            raise AttributeError(key)
        raise Error(f"You must call wandb.init() before {self._name}.{key}")

    def __setattr__(self, key, value):
        if key.startswith("_"):
            object.__setattr__(self, key, value)
            return
        raise Error(f"You must call wandb.init() before {self._name}.{key}")

    def __repr__(self):
        return f"<{self._name} before wandb.init()>"


PREINIT_CONFIG = _PreInit("wandb.config")
PREINIT_SUMMARY = _PreInit("wandb.summary")

# -- module state ------------------------------------------------------------------

_active = None  # the run the module-level functions act on
_live_runs = []  # every unfinished run (also reinit="create_new" ones), finished at exit
_state_lock = threading.RLock()
_hooks_installed = False
_exit_code = None  # recorded by the sys.exit / excepthook wrappers


def get_run():
    """The active run (``wandb.run``), or None before init() and after finish()."""
    return _active


def _set_globals(run):
    global _active
    _active = run
    pkg = sys.modules.get("tbx")
    if pkg is not None:
        setattr(pkg, "run", run)
        setattr(pkg, "config", run.config)
        setattr(pkg, "summary", run.summary)


def _unset_globals():
    """Restore the pre-init ``tbx.run/config/summary`` (None and W&B's pre-init objects)."""
    global _active
    _active = None
    pkg = sys.modules.get("tbx")
    if pkg is not None:
        setattr(pkg, "run", None)
        setattr(pkg, "config", PREINIT_CONFIG)
        setattr(pkg, "summary", PREINIT_SUMMARY)


def _require(name):
    run = _active
    if run is None:
        raise Error(f"You must call wandb.init() before wandb.{name}()")
    return run


def log(data, step=None, commit=None):
    """``wandb.log``: log a row on the active run (see Run.log)."""
    return _require("log").log(data, step=step, commit=commit)


def finish(exit_code=None, quiet=None):
    """``wandb.finish``: finish the active run; nothing happens without one."""
    run = _active
    if run is not None:
        run.finish(exit_code=exit_code, quiet=quiet)


def define_metric(name, step_metric=None, step_sync=None, hidden=None, summary=None, goal=None, overwrite=None):
    """``wandb.define_metric`` on the active run (see Run.define_metric)."""
    return _require("define_metric").define_metric(name, step_metric=step_metric, step_sync=step_sync, hidden=hidden,
                                                   summary=summary, goal=goal, overwrite=overwrite)


def watch(models, criterion=None, log="gradients", log_freq=1000, idx=None, log_graph=False):
    """``wandb.watch`` on the active run (see tbx.watch.watch)."""
    return _require("watch").watch(models, criterion=criterion, log=log, log_freq=log_freq, idx=idx,
                                   log_graph=log_graph)


def unwatch(models=None):
    """``wandb.unwatch`` on the active run."""
    return _require("unwatch").unwatch(models)


def _watch_module():
    # Importing tbx.watch for the first time sets the package attribute
    # tbx.watch to the module; keep W&B's tbx.watch function in place.
    pkg = sys.modules.get("tbx")
    before = getattr(pkg, "watch", None) if pkg is not None else None
    module = importlib.import_module("tbx.watch")
    if pkg is not None and before is not None and before is not module:
        setattr(pkg, "watch", before)
    return module


def _media_module():
    return importlib.import_module("tbx.media")


# -- exit hooks ----------------------------------------------------------------------


def _install_exit_hooks():
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    original_exit = sys.exit
    original_hook = sys.excepthook

    def exit_wrapper(code=None):
        global _exit_code
        if code is None:
            _exit_code = 0
        elif isinstance(code, int) and not isinstance(code, bool):
            _exit_code = code
        else:
            _exit_code = 1
        original_exit(code)

    def excepthook(exc_type, exc, tb):
        global _exit_code
        _exit_code = 255 if issubclass(exc_type, KeyboardInterrupt) else 1
        original_hook(exc_type, exc, tb)

    exit_wrapper.__wrapped__ = original_exit
    sys.exit = exit_wrapper
    sys.excepthook = excepthook
    atexit.register(_finish_all_at_exit)


def _finish_all_at_exit():
    code = 0 if _exit_code is None else _exit_code
    for run in list(_live_runs):
        try:
            run.finish(exit_code=code)
        except Exception as exc:  # nothing left to raise to at exit
            sys.stderr.write(f"tbx: while finishing run {run.id}: {exc}\n")


# -- helpers -------------------------------------------------------------------------


def _generate_id(length=8):
    return "".join(secrets.choice(_ID_CHARS) for _ in range(length))


def _check_str(value, name):
    if value is not None and not isinstance(value, str):
        raise TypeError(f"init: {name} must be a str or None, got {type(value).__name__} {value!r}")
    return value


def _dir_part(name):
    """A run name made safe as one path component."""
    part = re.sub(r"[^\w.\-]+", "_", name).strip("._") or "run"
    return part[:100]


def _iso(ts):
    return None if ts is None else _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat()


def _write_atomic(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _dumps(value):
    return json.dumps(value, indent=2, default=_json_default, allow_nan=True)


def _git_info(start):
    """{commit, branch} of the git checkout holding ``start``, read from .git without running git."""
    path = os.path.abspath(start)
    while True:
        dot_git = os.path.join(path, ".git")
        if os.path.exists(dot_git):
            break
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    try:
        if os.path.isfile(dot_git):  # a worktree or submodule: "gitdir: <path>"
            with open(dot_git, encoding="utf-8") as f:
                line = f.read().strip()
            dot_git = os.path.normpath(os.path.join(path, line.split(":", 1)[1].strip()))
        with open(os.path.join(dot_git, "HEAD"), encoding="utf-8") as f:
            head = f.read().strip()
        info = {"root": path, "commit": None, "branch": None}
        if not head.startswith("ref:"):
            info["commit"] = head
            return info
        ref = head.split(":", 1)[1].strip()
        info["branch"] = ref.rsplit("/", 1)[-1] if ref.startswith("refs/heads/") else ref
        common = dot_git
        common_file = os.path.join(dot_git, "commondir")
        if os.path.isfile(common_file):
            with open(common_file, encoding="utf-8") as f:
                common = os.path.normpath(os.path.join(dot_git, f.read().strip()))
        for base in (dot_git, common):
            ref_path = os.path.join(base, *ref.split("/"))
            if os.path.isfile(ref_path):
                with open(ref_path, encoding="utf-8") as f:
                    info["commit"] = f.read().strip()
                return info
        packed = os.path.join(common, "packed-refs")
        if os.path.isfile(packed):
            with open(packed, encoding="utf-8") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 2 and parts[1] == ref:
                        info["commit"] = parts[0]
        return info
    except (OSError, IndexError, UnicodeDecodeError):
        return None


def _flatten_config(config, prefix=""):
    """Config as hparams: nested dicts joined with '.', lists as JSON text."""
    out = {}
    for key, value in config.items():
        if not isinstance(key, str) or key.startswith("_"):
            continue
        name = prefix + key
        if isinstance(value, dict):
            out.update(_flatten_config(value, name + "."))
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value, default=_json_default)
    return out


def _summary_metrics(summary):
    out = {}
    for key, value in summary.items():
        if not isinstance(key, str) or key.startswith("_"):
            continue
        if isinstance(value, dict):
            if "_type" in value:  # media and histograms: no metric
                continue
            for sub, v in value.items():
                if isinstance(v, numbers.Real) and not isinstance(v, bool) and not isinstance(sub, bool):
                    out[f"summary/{key}/{sub}"] = float(v)
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            out[f"summary/{key}"] = float(value)
    return out


def _histogram_json(counts, edges):
    return {"_type": "histogram", "values": [int(c) for c in counts], "bins": [float(e) for e in edges]}


# Prepared values of a row: (kind, payload, summary value).
_SCALAR, _NONE, _TEXT, _HIST, _MEDIA, _MEDIA_LIST, _OTHER = range(7)


def _prepare(key, value, out):
    """Validate and snapshot one logged value into ``out[key]``; nested dicts recurse with '/'."""
    if isinstance(value, dict):
        for sub, v in value.items():
            if not isinstance(sub, str):
                raise TypeError("Key values passed to `wandb.log` must be strings.")
            _prepare(f"{key}/{sub}", v, out)
        return
    kind = type(value)
    if kind is float or kind is int:
        out[key] = (_SCALAR, value, value)
        return
    if kind is bool:
        out[key] = (_SCALAR, float(value), value)
        return
    if value is None:
        out[key] = (_NONE, None, None)
        return
    if kind is str:
        out[key] = (_TEXT, value, value)
        return
    if isinstance(value, (np.generic, np.ndarray)) or _convert.is_torch_tensor(value):
        _prepare_array(key, value, out)
        return
    if isinstance(value, numbers.Real):
        out[key] = (_SCALAR, value, float(value) if not isinstance(value, numbers.Integral) else int(value))
        return
    if hasattr(value, "_tb_log"):
        out[key] = (_MEDIA, value, None)
        return
    if isinstance(value, (list, tuple)):
        if value and all(hasattr(v, "_tb_log") for v in value):
            kinds = {type(v) for v in value}
            if len(kinds) > 1:
                names = sorted(k.__name__ for k in kinds)
                raise TypeError(f"log: the list logged under {key!r} mixes media types {names}; log one type per key")
            out[key] = (_MEDIA_LIST, list(value), None)
            return
        out[key] = (_OTHER, None, json.loads(json.dumps(list(value), default=_json_default)))
        return
    module = type(value).__module__ or ""
    if module.startswith("pandas") and kind.__name__ == "DataFrame":
        out[key] = (_MEDIA, _media_module().Table(dataframe=value), None)
        return
    if module.startswith("matplotlib") and hasattr(value, "savefig"):
        out[key] = (_MEDIA, _media_module().Image(value), None)
        return
    raise TypeError(f"log: the value of key {key!r} is a {kind.__name__}, which tbx cannot log; log numbers, "
                    "strings, numpy arrays, torch tensors, dicts of these, or tbx media objects (Image, Histogram, ...)")


def _prepare_array(key, value, out):
    if _convert.is_torch_tensor(value):
        value = value.detach()
        if value.numel() == 1:
            item = value.item()
            out[key] = (_SCALAR, float(item), item)
            return
        array = value.cpu().numpy()
    else:
        array = np.asarray(value)
    if array.size == 1:
        item = array.reshape(()).item()
        if isinstance(item, (bool, int, float)):
            out[key] = (_SCALAR, float(item), item)
            return
        raise TypeError(f"log: the value of key {key!r} is a one-element array of {array.dtype}, not a number")
    if array.dtype.kind not in "biuf":
        if array.dtype.kind in "USO" and array.size <= LIST_MAX:
            out[key] = (_OTHER, None, array.tolist())
            return
        raise TypeError(f"log: the value of key {key!r} is an array of {array.dtype}; only numeric arrays are logged")
    if array.size <= LIST_MAX:  # W&B keeps short arrays as lists: in the summary, not charted
        out[key] = (_OTHER, None, array.tolist())
        return
    data = array.astype(np.float64, copy=False).ravel()
    finite = data[np.isfinite(data)]
    if finite.size:
        counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS)
    else:
        counts, edges = np.zeros(0, np.int64), np.zeros(0)
    out[key] = (_HIST, (counts, edges, finite), _histogram_json(counts, edges))


def _write_histogram(writer, tag, counts, edges, finite, step, walltime):
    if len(counts) == 0 or counts.sum() == 0:
        return
    writer.add_histogram_raw(tag, min=float(edges[0]), max=float(edges[-1]), num=int(counts.sum()),
                             sum=float(finite.sum()) if finite is not None else 0.0,
                             sum_squares=float(np.dot(finite, finite)) if finite is not None else 0.0,
                             bucket_limits=edges[1:], bucket_counts=counts, global_step=step, walltime=walltime)


# -- runs on disk ---------------------------------------------------------------------


def _find_run_dir(project_dir, run_id):
    for path in sorted(glob.glob(os.path.join(glob.escape(project_dir), f"*-{glob.escape(run_id)}"))):
        if os.path.isdir(path):
            return path
    return None


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _next_step_on_disk(run_dir, metadata):
    """The step a resumed run continues at: one past the last step written."""
    steps = [int(metadata.get("step") or 0)] if metadata else [0]
    end = (metadata or {}).get("end_wall_time")
    events = glob.glob(os.path.join(glob.escape(run_dir), "events.out.tfevents.*"))
    clean = end is not None and all(os.path.getmtime(p) <= end + 1 for p in events)
    if not clean:
        from tbx.reader import read_events

        last = -1
        for path in events:
            try:
                for _, event in read_events(path):
                    if event.HasField("summary") and event.step > last:
                        last = event.step
            except Exception:  # a damaged file: use what was read
                pass
        steps.append(last + 1)
    return max(steps)


# -- the run -----------------------------------------------------------------------------


class Run:
    """One W&B-style run: a TensorBoard run directory plus config, summary and metadata sidecars.

    Create it with ``tbx.init()``. Attributes as W&B's Run: ``id, name, project,
    entity, path, dir`` (the ``files/`` directory, as W&B's ``run.dir``),
    ``run_dir`` (the TensorBoard run directory), ``step`` (the step of the open
    row, i.e. of the next implicit ``log``), ``config, summary, tags, notes,
    group, job_type, resumed, offline, disabled, url`` (None), ``start_time``.

    Thread-safety: ``log`` and ``finish`` may be called from several threads.
    """

    def __init__(self, *, project, name, run_id, root, entity, tags, notes, group, job_type, disabled, resume,
                 config, config_exclude_keys, config_include_keys, allow_val_change, settings):
        self._lock = threading.RLock()
        self._finished = False
        self._row = {}
        self._row_open = False
        self._pending_hist = {}  # tag -> [k, 3] rows queued by tbx.watch for the next committed row
        self._last_values = {}
        self._step_metrics = False
        self._hidden = False
        self._writer = None
        self._resume_file = None
        self.id = run_id
        self.project = project
        self.entity = entity
        self.tags = tuple(tags or ())
        self.notes = notes
        self.group = group
        self.job_type = job_type
        self.url = None
        self.sweep_id = None
        self.settings = settings
        self.disabled = disabled
        self.offline = not disabled
        self.resumed = False
        self.start_time = time.time()
        self._start_monotonic = time.monotonic()
        self._step = 0
        self.starting_step = 0
        self.exit_code = None
        self.summary = _summary_mod.Summary()
        self.config = _config_mod.Config(on_change=self._config_changed)
        self._config_ready = False

        user_config = _config_mod.Config.from_source(config)
        if config_exclude_keys:
            user_config = {k: v for k, v in user_config.items() if k not in set(config_exclude_keys)}
        if config_include_keys:
            user_config = {k: v for k, v in user_config.items() if k in set(config_include_keys)}

        if disabled:
            self.name = name or "dummy"
            self.run_dir = os.path.join(tempfile.gettempdir(), "wandb", f"{_dir_part(self.name)}-{run_id}")
            self.dir = os.path.join(self.run_dir, "files")
            self._metadata = {}
            self.config.update(user_config, allow_val_change=True)
            self._config_ready = True
            return

        project_dir = os.path.join(root, project)
        existing = _find_run_dir(project_dir, run_id) if os.path.isdir(project_dir) else None
        if resume == "must" and existing is None:
            raise UsageError(f"You provided an invalid value for the `resume` argument: resume='must' but run "
                             f"({run_id}) doesn't exist in {project_dir!r}")
        if resume == "never" and existing is not None:
            raise UsageError(f"resume='never' but run ({run_id}) already exists: {existing!r}; "
                             "pass resume='allow' to continue it or choose another id")
        previous = _read_json(os.path.join(existing, "metadata.json")) or {} if existing else {}
        prior_config = {}
        if existing:
            self.resumed = True
            self.run_dir = existing
            self.name = name or previous.get("name") or os.path.basename(existing)[: -len(run_id) - 1]
            self.tags = tuple(tags) if tags is not None else tuple(previous.get("tags") or ())
            self.notes = notes if notes is not None else previous.get("notes")
            self.group = group if group is not None else previous.get("group")
            self.job_type = job_type if job_type is not None else previous.get("job_type")
            self._step = _next_step_on_disk(existing, previous)
            self.starting_step = self._step
            raw = _read_json(os.path.join(existing, "config.yaml")) or {}
            prior_config = {k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in raw.items()
                            if k != "wandb_version"}
            # restore(), not item assignment: a manual override would switch off
            # define_metric aggregation for every restored key
            self.summary.restore(_read_json(os.path.join(existing, "summary.json")) or {})
        else:
            self.name = name or self._generated_name(project_dir)
            self.run_dir = os.path.join(project_dir, f"{_dir_part(self.name)}-{run_id}")
        self.dir = os.path.join(self.run_dir, "files")
        os.makedirs(self.dir, exist_ok=True)

        defaults = _config_mod.load_defaults(os.getcwd()) or {}
        merged = dict(defaults)
        merged.update(prior_config)
        merged.update(user_config)
        self.config.update(merged, allow_val_change=True)
        self._config_ready = True

        from tbx.writer import SummaryWriter

        self._writer = SummaryWriter(self.run_dir, purge_step=self._step if self.resumed else None)
        self._metadata = self._new_metadata(previous)
        self._write_config()
        self._write_metadata()

    # -- identity ----------------------------------------------------------------

    @staticmethod
    def _generated_name(project_dir):
        count = 0
        if os.path.isdir(project_dir):
            count = sum(1 for e in os.scandir(project_dir) if e.is_dir())
        return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{count + 1}"

    @property
    def path(self):
        """``entity/project/id`` (entity "local" when none was given)."""
        return f"{self.entity or 'local'}/{self.project}/{self.id}"

    @property
    def step(self):
        """The W&B step of the open row: where the next implicit ``log`` goes."""
        return self._step

    @property
    def finished(self):
        return self._finished

    def __repr__(self):
        return f"<tbx.Run {self.path} name={self.name!r} dir={self.run_dir!r}>"

    # -- sidecars -----------------------------------------------------------------

    def _new_metadata(self, previous):
        argv = list(sys.argv)
        session = {"start_time": _iso(self.start_time), "start_wall_time": self.start_time, "end_time": None,
                   "exit_code": None, "pid": os.getpid(), "starting_step": self._step}
        try:
            user = getpass.getuser()
        except Exception:
            user = None
        meta = {
            "id": self.id, "name": self.name, "project": self.project, "entity": self.entity,
            "tags": list(self.tags), "notes": self.notes, "group": self.group, "job_type": self.job_type,
            "start_time": previous.get("start_time", _iso(self.start_time)),
            "start_wall_time": previous.get("start_wall_time", self.start_time),
            "end_time": None, "end_wall_time": None, "exit_code": None, "state": "running", "step": self._step,
            "host": socket.gethostname(), "username": user, "os": platform.platform(),
            "python": platform.python_version(), "executable": sys.executable,
            "program": argv[0] if argv else None, "args": argv[1:], "command": argv, "cwd": os.getcwd(),
            "pid": os.getpid(), "git": _git_info(os.getcwd()),
            "tbx_version": getattr(sys.modules.get("tbx"), "__version__", None),
            "resumed": self.resumed, "sessions": list(previous.get("sessions") or []) + [session],
        }
        return meta

    def _write_metadata(self):
        _write_atomic(os.path.join(self.run_dir, "metadata.json"), _dumps(self._metadata) + "\n")

    def _write_config(self):
        data = {key: {"value": value} for key, value in self.config.as_dict().items()}
        _write_atomic(os.path.join(self.run_dir, "config.yaml"), _dumps(data) + "\n")

    def _write_summary(self):
        _write_atomic(os.path.join(self.run_dir, "summary.json"), _dumps(self.summary.as_dict()) + "\n")

    def _config_changed(self, changed=None):
        if self._config_ready and not self.disabled and not self._finished:
            self._write_config()

    # -- log ------------------------------------------------------------------------

    def log(self, data, step=None, commit=None):
        """Log one row of values, with W&B's step rules (WANDB.md §4).

        Args:
            data: {str: value}; see the module docstring for how values map to
                TensorBoard. Nested dicts become '/'-joined keys.
            step: explicit W&B step. Lower than the current step: the data is
                dropped with W&B's warning. Then ``commit`` defaults to False.
            commit: False keeps the row open (later calls merge into it); True
                or None (without ``step``) writes it and advances the step.

        Raises:
            TypeError: ``data`` is not a mapping, a key is not a str, or a value cannot be logged.
            UsageError: the run is finished.
        """
        if self._finished:
            raise UsageError(f"Run ({self.id}) is finished. The call to `log` will be ignored. "
                             "Please make sure that you are using an active run.")
        if not isinstance(data, dict):
            from collections.abc import Mapping

            if not isinstance(data, Mapping):
                raise TypeError("wandb.log must be passed a dictionary")
        prepared = {}
        for key, value in data.items():
            if type(key) is not str:
                raise TypeError("Key values passed to `wandb.log` must be strings.")
            kind = type(value)
            if kind is float or kind is int:  # the common case, inlined
                prepared[key] = (_SCALAR, value, value)
            else:
                _prepare(key, value, prepared)
        if step is not None:
            step = _convert.step_value(step, "step")
        if self.disabled:
            return
        with self._lock:
            if self._finished:
                raise UsageError(f"Run ({self.id}) is finished. The call to `log` will be ignored. "
                                 "Please make sure that you are using an active run.")
            if step is not None:
                if step < self._step:
                    warnings.warn(f"Tried to log to step {step} that is less than the current step {self._step}. "
                                  "Steps must be monotonically increasing, so this data will be ignored. See "
                                  "https://wandb.me/define-metric to log data out of order.", stacklevel=2)
                    sys.stderr.write(f"wandb: WARNING Tried to log to step {step} that is less than the current "
                                     f"step {self._step}. Steps must be monotonically increasing, so this data will "
                                     "be ignored. See https://wandb.me/define-metric to log data out of order.\n")
                    return
                if step > self._step:
                    if self._row_open:
                        self._flush_row()
                    self._step = step
                if commit is None:
                    commit = False
            self._row.update(prepared)
            self._row_open = True
            if commit is None or commit:
                self._flush_row()

    def _flush_row(self):
        """Write the open row at the current step, update the summary, advance the step."""
        step = self._step
        row, self._row, self._row_open = self._row, {}, False
        self._step = step + 1
        walltime = time.time()
        writer = self._writer
        files_dir = self.dir
        flat = {}
        media = []
        for key, (kind, payload, summary_value) in row.items():
            if kind == _MEDIA:
                if hasattr(payload, "_save"):
                    payload._save(files_dir, key, step)
                summary_value = payload._summary_json() if hasattr(payload, "_summary_json") else {
                    "_type": type(payload).__name__.lower()}
                media.append((key, kind, payload))
            elif kind == _MEDIA_LIST:
                summary_value = {"_type": f"{type(payload[0]).__name__.lower()}s/separated", "count": len(payload)}
                media.append((key, kind, payload))
            elif kind == _SCALAR:
                self._last_values[key] = summary_value
            flat[key] = summary_value
        pending, self._pending_hist = self._pending_hist, {}
        for tag, rows in pending.items():
            flat[tag] = _histogram_json(rows[:, 2], np.append(rows[:, 0], rows[-1, 1]))
        summary = self.summary
        steps = {}
        if self._step_metrics:
            for key in list(row):
                metric = summary.step_metric_of(key)
                if metric is None:
                    continue
                if metric not in flat and metric in self._last_values:
                    flat[metric] = self._last_values[metric]  # W&B's step_sync
                value = flat.get(metric)
                if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) \
                        and float(value).is_integer():
                    steps[key] = int(value)
        flat["_step"] = step
        flat["_runtime"] = walltime - self.start_time
        flat["_timestamp"] = walltime
        summary.update_from_log(flat)
        hidden = summary.hidden_keys() if self._hidden else ()
        add_scalar = writer.add_scalar
        for key, (kind, payload, _) in row.items():
            if kind == _SCALAR:
                if key not in hidden:
                    add_scalar(key, payload, steps.get(key, step) if steps else step, walltime, True)
                continue
            if kind == _NONE or kind == _OTHER or kind == _MEDIA or kind == _MEDIA_LIST or key in hidden:
                continue
            at = steps.get(key, step)
            if kind == _TEXT:
                writer.add_text(key, payload, at, walltime)
            elif kind == _HIST:
                _write_histogram(writer, key, payload[0], payload[1], payload[2], at, walltime)
        for key, kind, payload in media:
            if key in hidden:
                continue
            at = steps.get(key, step)
            if kind == _MEDIA:
                payload._tb_log(writer, key, at)
            else:
                _media_module().log_media_list(writer, key, payload, at)
        for tag, rows in pending.items():
            writer._add_histogram_rows(tag, rows, step, walltime)

    def _queue_histogram(self, tag, rows):
        """Queue a histogram (float64 [k, 3] rows: left, right, count) for the next committed row (tbx.watch)."""
        if self.disabled or self._finished:
            return
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != 3 or rows.shape[0] == 0:
            return
        with self._lock:
            self._pending_hist[tag] = rows

    # -- metrics, watch ---------------------------------------------------------------

    def define_metric(self, name, step_metric=None, step_sync=None, hidden=None, summary=None, goal=None,
                      overwrite=None):
        """W&B's define_metric: summary rules, hidden metrics, and a custom x axis (``step_metric``).

        Keys with a ``step_metric`` are written to TensorBoard at that metric's
        value (when it is an integer), so the chart's x axis is the step metric.
        """
        if self._finished:
            raise UsageError(f"Run ({self.id}) is finished. The call to `define_metric` will be ignored. "
                             "Please make sure that you are using an active run.")
        result = self.summary.define_metric(name, step_metric=step_metric, summary=summary, hidden=hidden,
                                            goal=goal, step_sync=step_sync, overwrite=overwrite)
        if step_metric:
            self._step_metrics = True
        if hidden:
            self._hidden = True
        return result

    def watch(self, models, criterion=None, log="gradients", log_freq=1000, idx=None, log_graph=False):
        """W&B's ``run.watch``: histograms of parameters and/or gradients at the next committed step."""
        if self._finished:
            raise UsageError(f"Run ({self.id}) is finished. The call to `watch` will be ignored. "
                             "Please make sure that you are using an active run.")
        if self.disabled:
            return None
        return _watch_module().watch(self, models, criterion=criterion, log=log, log_freq=log_freq, idx=idx,
                                     log_graph=log_graph)

    def unwatch(self, models=None):
        """Remove the hooks that watch() installed."""
        if self.disabled:
            return None
        return _watch_module().unwatch(self, models)

    # -- finish ---------------------------------------------------------------------------

    def finish(self, exit_code=None, quiet=None):
        """Write the open row, hparams, summary.json and metadata.json, and close the event file.

        Idempotent; also called at interpreter exit with the process's exit
        code. Never waits on anything but the local disk.
        """
        with self._lock:
            if self._finished:
                return
            error = None
            if not self.disabled:
                try:
                    if self._row_open:
                        self._flush_row()
                    elif self._pending_hist:
                        self._flush_row()
                except Exception as exc:  # still close the files, then report
                    error = exc
            self._finished = True
            code = 0 if exit_code is None else exit_code
            self.exit_code = code
            if not self.disabled:
                for step in (self._write_hparams, self._write_summary, self._close_writer):
                    try:
                        step()
                    except Exception as exc:
                        error = error or exc
                end = time.time()
                meta = self._metadata
                meta.update(end_time=_iso(end), end_wall_time=end, exit_code=code, step=self._step,
                            state="finished" if code == 0 else "failed", runtime=end - self.start_time)
                meta["sessions"][-1].update(end_time=_iso(end), exit_code=code, end_step=self._step)
                try:
                    self._write_metadata()
                except Exception as exc:
                    error = error or exc
                _forget_resume_file(self)
        with _state_lock:
            if self in _live_runs:
                _live_runs.remove(self)
            if _active is self:
                _unset_globals()
        if error is not None:
            raise error

    def _write_hparams(self):
        hparams = _flatten_config(self.config.as_dict())
        metrics = _summary_metrics(self.summary.as_dict())
        if not hparams and not metrics:
            return
        step = min(max(self._step - 1, 0), _INT32_MAX)
        try:
            self._writer.add_hparams(hparams, metrics, run_name=".", global_step=step)
        except (TypeError, ValueError) as exc:
            warnings.warn(f"tbx: the config of run {self.id} could not be written to the HParams dashboard: {exc}",
                          stacklevel=3)

    def _close_writer(self):
        if self._writer is not None:
            self._writer.close()

    # -- context manager -------------------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            import traceback

            traceback.print_exception(exc_type, exc, tb)
        self.finish(exit_code=0 if exc_type is None else 1)
        return False


# -- init -------------------------------------------------------------------------------------


def init(project=None, name=None, config=None, dir=None, id=None, resume=None, mode=None, tags=None, notes=None,
         group=None, job_type=None, reinit=None, entity=None, config_exclude_keys=None, config_include_keys=None,
         allow_val_change=None, settings=None, **ignored):
    """Start (or resume) a run: W&B's ``wandb.init``, offline, as a TensorBoard run directory.

    The run directory is ``<dir>/<project>/<name>-<id>/`` (see the module
    docstring). Environment variables as W&B's: WANDB_PROJECT, WANDB_NAME,
    WANDB_RUN_ID, WANDB_DIR, WANDB_MODE, WANDB_RESUME, WANDB_TAGS,
    WANDB_NOTES, WANDB_RUN_GROUP, WANDB_JOB_TYPE, WANDB_ENTITY.

    Args:
        project: the project (a TensorBoard logdir); default "uncategorized".
        name: display name; default a generated ``<adjective>-<noun>-<n>``.
        config: dict, argparse.Namespace or YAML file path (see tbx.config).
        dir: root directory; default the current directory.
        id: 8 random base-36 characters by default; may not contain ``/\\#?%:``.
        resume: "allow" (continue the run with this id if it exists), "must"
            (it must exist), "never" (it must not), "auto"/True (continue the
            project's last run that did not finish with exit code 0), None/False.
            A resumed run continues in a new event file at its next step.
        mode: "online", "offline" (both write locally) or "disabled" (a
            no-op run whose config and summary still work).
        reinit: what a second init() does while a run is active: "default" /
            "return_previous" (return it), "finish_previous" (or True),
            "create_new" (a new run; ``tbx.run`` stays the first).
        tags, notes, group, job_type, entity: recorded in metadata.json.
        config_exclude_keys, config_include_keys: filter ``config``.
        allow_val_change: accepted; init's own config merge always allows changes.
        settings, other W&B arguments: accepted and ignored.

    Returns:
        the Run.

    Example::

        import tbx as wandb
        with wandb.init(project="mnist", config={"lr": 1e-3}) as run:
            for step in range(100):
                run.log({"loss": 1 / (step + 1)})
    """
    env = os.environ
    mode = mode if mode is not None else env.get("WANDB_MODE") or "offline"
    if mode not in _MODES:
        raise UsageError(f"Invalid mode {mode!r}: expected one of 'online', 'offline', 'disabled', 'shared'")
    disabled = _MODES[mode] == "disabled"
    if reinit not in _REINIT:
        raise UsageError(f"Invalid reinit {reinit!r}: expected 'default', 'return_previous', 'finish_previous', "
                         "'create_new' or a bool")
    reinit = _REINIT[reinit]
    if resume is None and env.get("WANDB_RESUME"):
        resume = env["WANDB_RESUME"]
    if not isinstance(resume, (str, bool, type(None))) or resume not in _RESUME:
        raise UsageError(f"Invalid resume {resume!r}: expected 'allow', 'must', 'never', 'auto', True, False or None")
    resume = _RESUME[resume]
    for arg, label in ((project, "project"), (name, "name"), (notes, "notes"), (group, "group"),
                       (job_type, "job_type"), (entity, "entity")):
        _check_str(arg, label)
    if id is not None and not isinstance(id, str):
        raise TypeError(f"init: id must be a str or None, got {type(id).__name__} {id!r}")
    if isinstance(tags, str):
        raise TypeError(f"init: tags must be a sequence of str, got the str {tags!r}")

    with _state_lock:
        previous = _active
        if previous is not None and reinit in ("default", "return_previous"):
            return previous
        if previous is not None and reinit == "finish_previous":
            previous.finish()

        project = project or env.get("WANDB_PROJECT") or "uncategorized"
        if any(c in project for c in "/\\#?%:") or project in (".", ".."):
            raise UsageError(f"Invalid project name {project!r}: cannot contain characters /,\\,#,?,%,:")
        name = name or env.get("WANDB_NAME") or None
        entity = entity or env.get("WANDB_ENTITY") or None
        notes = notes if notes is not None else env.get("WANDB_NOTES")
        group = group if group is not None else env.get("WANDB_RUN_GROUP")
        job_type = job_type if job_type is not None else env.get("WANDB_JOB_TYPE")
        if tags is None and env.get("WANDB_TAGS"):
            tags = [t for t in env["WANDB_TAGS"].split(",") if t]
        tags = tuple(tags or ())
        for tag in tags:
            if not isinstance(tag, str):
                raise TypeError(f"init: every tag must be a str, got {type(tag).__name__} {tag!r}")
        root = os.fspath(dir) if dir is not None else env.get("WANDB_DIR") or os.getcwd()
        project_dir = os.path.join(root, project)
        resume_file = os.path.join(project_dir, "wandb-resume.json")
        run_id = id or env.get("WANDB_RUN_ID") or None
        if run_id is None and resume == "auto" and not disabled:
            saved = _read_json(resume_file)
            if isinstance(saved, dict) and isinstance(saved.get("run_id"), str):
                run_id = saved["run_id"]
        if run_id is None:
            if resume == "must":
                raise UsageError("resume='must' needs the id of the run to resume: pass id=...")
            run_id = _generate_id()
        if not run_id or any(c in _BAD_ID_CHARS for c in run_id) or run_id in (".", ".."):
            raise UsageError(f"Invalid run id {run_id!r}: it cannot contain the characters /,\\,#,?,%,:")

        run = Run(project=project, name=name, run_id=run_id, root=root, entity=entity, tags=tags, notes=notes,
                  group=group, job_type=job_type, disabled=disabled, resume=None if resume == "auto" else resume,
                  config=config, config_exclude_keys=config_exclude_keys, config_include_keys=config_include_keys,
                  allow_val_change=allow_val_change, settings=settings)
        run._resume_file = resume_file if resume == "auto" and not disabled else None
        if run._resume_file:
            _write_atomic(resume_file, json.dumps({"run_id": run_id}) + "\n")
        if not disabled:
            _install_exit_hooks()
            _live_runs.append(run)
        if reinit != "create_new" or _active is None:
            _set_globals(run)
        return run


def _forget_resume_file(run):
    path = getattr(run, "_resume_file", None)
    if path and run.exit_code == 0:
        try:
            os.remove(path)
        except OSError:
            pass
