"""W&B-style run config: ``run.config`` / ``wandb.config`` semantics, offline.

``Config`` behaves as wandb 0.31's ``wandb.sdk.wandb_config.Config`` (see
WANDB.md §2):

* attribute and item access are the same thing (``config.lr`` is
  ``config["lr"]``); a missing attribute raises ``AttributeError``, a missing
  item ``KeyError``;
* setting an existing key to a *different* value raises :class:`ConfigError`
  with W&B's message, unless ``update(..., allow_val_change=True)``;
* keys lose leading and trailing ``-`` (``"--lr"`` -> ``"lr"``); keys starting
  with ``_`` are stored but hidden from ``keys()``, ``items()``, iteration and
  ``dict(config)``;
* values are made JSON-friendly the way W&B does it: numpy / torch scalars
  become Python numbers, small arrays (up to 32 elements) lists, larger
  arrays their ``str``; tuples and sets become lists, dataclasses and slices
  dicts, enums their name, bytes are decoded, callables become
  ``"module.qualname"``, NaN becomes ``None``, and any other object that is
  not a builtin becomes ``str(obj)``. What is still not JSON-serializable
  after that (complex numbers, ``bytearray``, tuple dict keys, ...) raises
  ``TypeError`` naming the key. Media objects (``tbx.Image`` ...) raise
  ``TypeError`` as in W&B.

Differences from W&B, on purpose: iteration and ``len()`` cover the visible
(non-``_``) keys only, so ``Config`` is a well-behaved read-only mapping;
``config-defaults.yaml`` is not read by the constructor (the run calls
:func:`load_defaults` for its directory); a non-``str`` key raises
``TypeError`` rather than W&B's ``AttributeError``.

Not thread-safe: use one thread per run, as with W&B.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import math
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from tbx.errors import Error

__all__ = ["ConfigError", "Config", "load_defaults", "DEFAULTS_FILE"]

DEFAULTS_FILE = "config-defaults.yaml"

# W&B turns numpy arrays with more elements than this into their str().
_ARRAY_LIST_LIMIT = 32


class ConfigError(Error, ValueError):
    """A config value change without ``allow_val_change``, or a bad config file."""


# --------------------------------------------------------------------------- values


def _is_media(val: Any) -> bool:
    # tbx.media objects (Image, Histogram, ...) know how to log themselves;
    # W&B refuses its WBValue objects in the config.
    return callable(getattr(type(val), "_tb_log", None))


def _scalar_from_array(val: Any) -> Any:
    """numpy array (or torch tensor converted to one) -> W&B's config form."""
    if val.size == 1:
        return _friendly_leaf(val.reshape(-1)[0].item())
    if val.size <= _ARRAY_LIST_LIMIT:
        return val.tolist()
    return str(val)


def _friendly_leaf(val: Any) -> Any:
    """One value through W&B's ``json_friendly`` rules (no container recursion)."""
    mod = type(val).__module__
    if mod.startswith("torch") and hasattr(val, "detach") and hasattr(val, "dim"):
        t = val.detach()
        if t.dim() == 0:
            return _friendly_leaf(t.item())
        return _scalar_from_array(t.cpu().numpy())
    if mod == "numpy" or mod.startswith("numpy."):
        import numpy as np  # already imported: the value is a numpy object

        if isinstance(val, np.ndarray):
            return _scalar_from_array(val)
        if isinstance(val, np.generic):
            return _friendly_leaf(val.item())
    if isinstance(val, float):
        return None if math.isnan(val) else val
    if isinstance(val, bytes):
        return val.decode("utf-8")
    if isinstance(val, (datetime.datetime, datetime.date)):
        return val.isoformat()
    if isinstance(val, enum.Enum):
        return val.name
    if isinstance(val, (set, frozenset)):
        return list(val)
    if callable(val) and not _is_media(val):
        qual = getattr(val, "__qualname__", None)
        modname = getattr(val, "__module__", None)
        return f"{modname}.{qual}" if qual is not None and modname is not None else str(val)
    return val


def _friendly_key(key: Any, where: str) -> Any:
    if isinstance(key, (str, int, float, bool)) or key is None:
        return key
    if type(key).__module__ == "numpy":
        return key.item()
    raise TypeError(
        f"config value for {where} has a dict key {key!r} of type {type(key).__name__}; "
        "expected str, int, float, bool or None keys (JSON object keys)"
    )


def _friendly(val: Any, where: str) -> Any:
    """Make ``val`` JSON-friendly as W&B's config does; raise TypeError where it can't."""
    if _is_media(val):
        raise TypeError(
            "WBValue objects cannot be added to the run config "
            f"({where} holds a {type(val).__name__}; log it with run.log instead)"
        )
    if isinstance(val, Mapping):
        return {_friendly_key(k, where): _friendly(v, f"{where}[{k!r}]") for k, v in val.items()}
    if isinstance(val, slice):
        return {"slice_start": val.start, "slice_step": val.step, "slice_stop": val.stop}
    val = _friendly_leaf(val)
    if isinstance(val, (list, tuple)) or (
        isinstance(val, Sequence) and not isinstance(val, (str, bytes, bytearray, memoryview))
    ):
        return [_friendly(v, f"{where}[{i}]") for i, v in enumerate(val)]
    if dataclasses.is_dataclass(val) and not isinstance(val, type):
        return _friendly(dataclasses.asdict(val), where)
    if val is None or isinstance(val, (bool, int, float, str)):
        return val
    if type(val).__module__ not in ("builtins", "__builtin__"):
        return str(val)
    raise TypeError(
        f"config value for {where} is not JSON-serializable: {val!r} "
        f"(type {type(val).__name__}); expected numbers, strings, booleans, None, "
        "lists or dicts of them"
    )


def _normalize_key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(
            f"config key must be a str, got {key!r} (type {type(key).__name__})"
        )
    return key.strip("-")


# --------------------------------------------------------------------------- sources


def _load_yaml_file(path: str | os.PathLike[str], *, must_exist: bool = True) -> dict[str, Any] | None:
    """Read a config YAML file: W&B's ``{key: {value: v}}`` format or a plain mapping."""
    filename = os.fspath(path)
    if not os.path.exists(filename):
        if must_exist:
            raise ConfigError(f"config file {filename} doesn't exist")
        return None
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - exercised with a patched import
        raise ImportError(
            f"reading the config file {filename!r} needs PyYAML; install it with "
            "`pip install pyyaml` or pass the config as a dict"
        ) from exc
    try:
        with open(filename, encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"Couldn't read config file: {filename} ({exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"Invalid YAML in config yaml {filename}: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"config file {filename} must hold a mapping of keys to values, "
            f"got a {type(loaded).__name__}"
        )
    version = loaded.pop("wandb_version", None)
    if version is not None and version != 1:
        raise ConfigError(f"Unknown config version {version!r} in {filename} (expected 1)")
    wandb_format = version is not None or (
        bool(loaded)
        and all(isinstance(v, dict) and "value" in v and set(v) <= {"value", "desc"} for v in loaded.values())
    )
    if not wandb_format:
        return loaded
    out: dict[str, Any] = {}
    for key, entry in loaded.items():
        if not (isinstance(entry, dict) and "value" in entry):
            raise ConfigError(
                f"config file {filename}: key {key!r} must be a mapping with a 'value' entry "
                f"in the W&B format (wandb_version: 1), got {entry!r}"
            )
        out[key] = entry["value"]
    return out


def load_defaults(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``<directory>/config-defaults.yaml`` if it exists.

    Args:
        directory: where to look (W&B looks in the current directory).

    Returns:
        The defaults as a plain dict (W&B's ``{key: {value: v}}`` entries
        unwrapped), ``{}`` when the file is absent or empty.

    Raises:
        ConfigError: the file is not valid YAML or not a mapping.
        ImportError: the file exists and PyYAML is not installed.
    """
    return _load_yaml_file(os.path.join(os.fspath(directory), DEFAULTS_FILE), must_exist=False) or {}


def _absl_flags(source: Any) -> dict[str, Any] | None:
    mod = type(source).__module__
    if mod.startswith("absl.flags"):
        return {name: source[name].value for name in dir(source)}
    return None


# --------------------------------------------------------------------------- Config

_SLOTS = ("_items", "_locked", "_on_change")


class Config:
    """A run's hyperparameters, with W&B's config semantics (see the module docstring).

    Args:
        on_change: called as ``on_change(changed)`` after every change, with a
            dict of the keys whose value is new or different (never empty).
    """

    __slots__ = _SLOTS

    def __init__(self, on_change: Callable[[dict[str, Any]], None] | None = None) -> None:
        object.__setattr__(self, "_items", {})
        object.__setattr__(self, "_locked", {})
        object.__setattr__(self, "_on_change", on_change)

    # -- construction helpers -------------------------------------------------

    @staticmethod
    def from_source(source: Any) -> dict[str, Any]:
        """Turn what ``wandb.init(config=...)`` accepts into a plain dict.

        Args:
            source: ``None``; a mapping; a :class:`Config`; a ``str`` or
                path-like naming a YAML file (W&B's ``{key: {value: v}}``
                format, optionally with ``wandb_version: 1``, or a plain
                mapping); absl flags; or any object with a ``__dict__``
                (``argparse.Namespace``), read with ``vars()``.

        Returns:
            A new dict (values not yet normalised).

        Raises:
            TypeError: ``source`` is none of these.
            ConfigError: the YAML file is missing or malformed.
            ImportError: a YAML path was given and PyYAML is not installed.
        """
        if source is None:
            return {}
        if isinstance(source, Config):
            return source.as_dict()
        if isinstance(source, Mapping):
            return dict(source)
        if isinstance(source, (str, os.PathLike)):
            return _load_yaml_file(source) or {}
        flags = _absl_flags(source)
        if flags is not None:
            return flags
        if not hasattr(source, "__dict__"):
            raise TypeError(
                f"config must be a dict or have a __dict__ attribute; got {source!r} "
                f"(type {type(source).__name__})"
            )
        return dict(vars(source))

    def set_on_change(self, on_change: Callable[[dict[str, Any]], None] | None) -> None:
        """Replace the change callback (``None`` removes it)."""
        object.__setattr__(self, "_on_change", on_change)

    # -- normalisation --------------------------------------------------------

    def _sanitize(self, key: Any, val: Any, allow_val_change: bool | None) -> tuple[str, Any]:
        key = _normalize_key(key)
        val = _friendly(val, f"key {key!r}")
        items = self._items
        if not allow_val_change and key in items and items[key] != val:
            raise ConfigError(
                f'Attempted to change value of key "{key}" from {items[key]} to {val}\n'
                "If you really want to do this, pass allow_val_change=True to config.update()"
            )
        return key, val

    def _is_locked(self, key: str) -> bool:
        user = self._locked.get(key)
        if user is None:
            return False
        warnings.warn(f"Config item '{key}' was locked by '{user}' (ignored update).", stacklevel=4)
        return True

    def _apply(self, sanitized: dict[str, Any]) -> None:
        items = self._items
        changed = {}
        for k, v in sanitized.items():
            if k not in items or items[k] != v or type(items[k]) is not type(v):
                changed[k] = v
            items[k] = v
        if changed and self._on_change is not None:
            self._on_change(changed)

    # -- mutation ---------------------------------------------------------------

    def __setitem__(self, key: str, val: Any) -> None:
        if isinstance(key, str) and self._is_locked(key.strip("-")):
            return
        k, v = self._sanitize(key, val, None)
        self._apply({k: v})

    __setattr__ = __setitem__

    def update(self, d: Any, allow_val_change: bool | None = False) -> None:
        """Add or change several keys at once.

        All values are checked before any is applied, so a failing update
        changes nothing. Keys locked by a sweep are skipped with a warning.

        Args:
            d: anything :meth:`from_source` accepts.
            allow_val_change: allow changing existing keys to new values.

        Raises:
            ConfigError: an existing key would change and ``allow_val_change``
                is false.
            TypeError: a key is not a str or a value cannot be made JSON-friendly.
        """
        parsed = self.from_source(d)
        sanitized: dict[str, Any] = {}
        for key, val in parsed.items():
            if isinstance(key, str) and self._is_locked(key.strip("-")):
                continue
            k, v = self._sanitize(key, val, allow_val_change)
            sanitized[k] = v
        self._apply(sanitized)

    def setdefaults(self, d: Any) -> None:
        """Add the keys of ``d`` that are not set yet; existing keys are left alone."""
        parsed = self.from_source(d)
        sanitized: dict[str, Any] = {}
        for key, val in parsed.items():
            k = _normalize_key(key)
            if k in self._items:
                continue
            sanitized[k] = _friendly(val, f"key {k!r}")
        self._apply(sanitized)

    def merge_locked(self, d: Mapping[str, Any], user: str = "sweep") -> None:
        """Set (nested dicts merged recursively) and lock keys for ``user`` (a sweep).

        A later ``config.x = ...`` or ``update`` of a locked key is ignored
        with a warning, as in W&B.
        """
        sanitized: dict[str, Any] = {}
        for key, val in d.items():
            k = _normalize_key(key)
            v = _friendly(val, f"key {k!r}")
            cur = self._items.get(k)
            if isinstance(cur, dict) and isinstance(v, dict):
                v = _merge_dicts(dict(cur), v)
            self._locked[k] = user
            sanitized[k] = v
        self._apply(sanitized)

    def persist(self) -> None:
        """Call the change callback with every item (W&B's ``persist``)."""
        if self._on_change is not None and self._items:
            self._on_change(dict(self._items))

    # -- reading ----------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __getattr__(self, key: str) -> Any:
        if key in _SLOTS or key.startswith("__"):
            raise AttributeError(key)
        try:
            return self._items[key]
        except KeyError:
            raise AttributeError(f"{type(self)!r} object has no attribute {key!r}") from None

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when it is not set."""
        return self._items.get(key, default)

    def keys(self) -> list[str]:
        """Visible keys (those not starting with ``_``), in insertion order."""
        return [k for k in self._items if not k.startswith("_")]

    def items(self) -> list[tuple[str, Any]]:
        """``(key, value)`` pairs of the visible keys."""
        return [(k, v) for k, v in self._items.items() if not k.startswith("_")]

    def values(self) -> list[Any]:
        """Values of the visible keys."""
        return [v for k, v in self._items.items() if not k.startswith("_")]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return sum(1 for k in self._items if not k.startswith("_"))

    def as_dict(self) -> dict[str, Any]:
        """A shallow copy of the visible items (the same as ``dict(config)``)."""
        return dict(self.items())

    def __repr__(self) -> str:
        return repr(self.as_dict())

    # -- copying and pickling (``__setattr__`` is item assignment) -----------------

    def __getstate__(self) -> dict[str, Any]:
        return {"items": self._items, "locked": self._locked}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_items", dict(state["items"]))
        object.__setattr__(self, "_locked", dict(state["locked"]))
        object.__setattr__(self, "_on_change", None)


def _merge_dicts(dest: dict[str, Any], src: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in src.items():
        cur = dest.get(key)
        if isinstance(value, dict) and isinstance(cur, dict):
            dest[key] = _merge_dicts(dict(cur), value)
        else:
            dest[key] = value
    return dest
