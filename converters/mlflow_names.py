"""MLflow key and artifact-path rules, and the names of tbx's own tags and manifest.

The rules are those of the mapping in :mod:`tbx.converters.mlflow`'s module
doc: keys changed as little as possible, kept unique by a hash of the
original name, artifact paths ASCII and free of empty or dot parts.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections import Counter

from tbx.converters.model import Media

KEY_MAX = 250

SOURCE_KEY_TAG = "tbx.source_key"
SOURCE_TAG = "tbx.source"
NOTE_TAG = "mlflow.note.content"
LABEL_PREFIX = "tbx.label."
GROUP_TAG = "tbx.group"
JOB_TYPE_TAG = "tbx.job_type"
RESERVED_TAG_PREFIXES = ("mlflow.", "tbx.")
MANIFEST = "tbx/manifest.json"
MANIFEST_FORMAT = "tbx-mlflow/1"

_KEY_BAD = re.compile(r"[^\w\-. :/]")
_PATH_BAD = re.compile(r"[^A-Za-z0-9_\-. ]")


def _hash8(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def mlflow_key(name: str, limit: int = KEY_MAX) -> str:
    """``name`` changed as little as possible to pass MLflow's key rules (see :mod:`tbx.converters.mlflow`)."""
    parts = [p for p in _KEY_BAD.sub("_", name).split("/") if p]
    parts = ["_" * len(p) if p in (".", "..") else p for p in parts]
    if parts and parts[0].startswith(".."):
        parts[0] = "_" + parts[0][1:]
    key = "/".join(parts) or "_"
    if len(key) > limit:
        key = key[:limit - 9].rstrip("/") + "_" + _hash8(name)
    return key


def assign_keys(names: list[str], fixed: dict[str, str] | None = None, limit: int = KEY_MAX) -> dict[str, str]:
    """``{name: MLflow key}``, unique and deterministic.

    Keys already given to names (``fixed``, from the run's manifest) stay;
    then valid names keep themselves; then renamed names take their
    sanitized form, or that plus a hash of the name when it is taken.
    """
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in sorted(names):
        if fixed and name in fixed and fixed[name] not in used:
            out[name] = fixed[name]
            used.add(out[name])
    for name in sorted(names):
        if name not in out and name not in used and mlflow_key(name, limit) == name:
            out[name] = name
            used.add(name)
    for name in sorted(names):
        if name not in out:
            key = mlflow_key(name, limit)
            if key in used:
                key = key[:limit - 9].rstrip("/") + "_" + _hash8(name)
            out[name] = key
            used.add(key)
    return out


def safe_path(name: str, keep_ext: bool = False) -> str:
    """An artifact path for ``name`` (ASCII, no empty or dot parts); a hash keeps changed names apart."""
    parts = [_PATH_BAD.sub("_", p) for p in name.split("/") if p]
    parts = ["_" * len(p) if p in (".", "..") else p for p in parts] or ["_"]
    if "/".join(parts) != name:
        stem, ext = posixpath.splitext(parts[-1]) if keep_ext else (parts[-1], "")
        parts[-1] = f"{stem}_{_hash8(name)}{ext}"
    return "/".join(parts)


def _series_path(kind: str, tag: str) -> str:
    return f"tbx/{kind}/{safe_path(tag)}.json"


def _media_paths(kind: str, tag: str, items: list[Media]) -> list[str]:
    """Artifact paths of a tag's media items, stable as the tag grows."""
    folder = f"tbx/{kind}/{safe_path(tag)}"
    seen: Counter = Counter()
    paths = []
    for m in items:
        fmt = re.sub(r"[^A-Za-z0-9]", "", m.fmt) or "bin"
        repeat = seen[(m.step, m.index)]
        seen[(m.step, m.index)] += 1
        paths.append(f"{folder}/{m.step}_{m.index}{f'_{repeat}' if repeat else ''}.{fmt}")
    return paths
