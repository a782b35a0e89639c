"""Turning ``tbx sync``'s SRC and DST arguments into backends.

=================================  =============================================
endpoint                           meaning
=================================  =============================================
``runs/`` (a path)                 a TensorBoard logdir; a directory that holds
                                   W&B runs (``offline-run-*``/``run-*`` with a
                                   ``.wandb`` file), or a ``.wandb`` file, is
                                   read as W&B offline data instead
``tb:PATH``, ``tfevents:PATH``     a TensorBoard logdir, whatever it holds
``wandb:DIR``                      W&B offline run directories (``DIR`` is a
                                   ``wandb/`` dir, a run dir or a ``.wandb``
                                   file; as a destination, the dir that receives
                                   ``wandb/offline-run-*``)
``wandb://ENTITY/PROJECT``         the W&B cloud (``wandb.Api()`` to read; an
                                   online run to write)
``http://HOST:PORT``, ``https://…`` an MLflow tracking server
``sqlite:///FILE.db``              a local MLflow store (no server)
``mlflow``                         ``$MLFLOW_TRACKING_URI``, else
                                   ``sqlite:///mlflow.db``: MLflow's own default
``mlflow:URI``                     any other tracking URI the client takes
=================================  =============================================

An MLflow endpoint names its experiment with ``--experiment`` (or
``--experiment-id``), ``$MLFLOW_EXPERIMENT_NAME``, or a ``#NAME`` suffix:
``http://127.0.0.1:5000#my-exp``. Exporting to MLflow without one uses the
source logdir's name.
"""

from __future__ import annotations

import glob
import os
from typing import Any

from tbx.converters.base import Destination, Source, UsageError

_MLFLOW_SCHEMES = ("http://", "https://", "sqlite://", "postgresql://", "mysql://", "mssql://",
                   "databricks", "file://", "mlflow:")


def _is_wandb_dir(path: str) -> bool:
    if path.endswith(".wandb") and os.path.isfile(path):
        return True
    if not os.path.isdir(path):
        return False
    pats = ("*.wandb", "*/*.wandb", "*/run-*/*.wandb", "*/offline-run-*/*.wandb", "wandb/*/*.wandb")
    return any(glob.glob(os.path.join(glob.escape(path), p)) for p in pats)


def kind_of(spec: str) -> tuple[str, str, str | None]:
    """``(kind, location, fragment)`` with kind ``tfevents``, ``wandb-offline``, ``wandb-cloud`` or ``mlflow``."""
    if not spec:
        raise UsageError("an endpoint is empty; give a logdir, an MLflow tracking URI or a wandb: endpoint")
    fragment = None
    if spec.startswith("wandb://"):
        rest = spec[len("wandb://"):].strip("/")
        if rest.count("/") != 1 or not all(rest.split("/")):
            raise UsageError(f"{spec!r}: a W&B cloud endpoint is wandb://ENTITY/PROJECT")
        return "wandb-cloud", rest, None
    for prefix in ("tb:", "tfevents:"):
        if spec.startswith(prefix):
            return "tfevents", spec[len(prefix):], None
    if spec.startswith("wandb:"):
        loc = spec[len("wandb:"):]
        if "#" in loc:
            loc, fragment = loc.rsplit("#", 1)
        return "wandb-offline", loc or ".", fragment
    if spec == "mlflow" or spec.startswith("mlflow#"):
        uri = os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
        return "mlflow", uri, spec.partition("#")[2] or None
    if spec.startswith(_MLFLOW_SCHEMES):
        uri = spec[len("mlflow:"):] if spec.startswith("mlflow:") else spec
        if "#" in uri:
            uri, fragment = uri.rsplit("#", 1)
        return "mlflow", uri, fragment
    if "://" in spec:
        raise UsageError(f"{spec!r}: unknown endpoint scheme; expected a path, http(s)://, sqlite:///, "
                         "mlflow:URI, wandb:DIR or wandb://ENTITY/PROJECT")
    if _is_wandb_dir(spec):
        return "wandb-offline", spec, None
    return "tfevents", spec, None


def _experiment(fragment: str | None, opts: dict[str, Any], default: str | None) -> tuple[str | None, str | None]:
    name = opts.get("experiment") or fragment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or None
    exp_id = opts.get("experiment_id") or os.environ.get("MLFLOW_EXPERIMENT_ID") or None
    if name is None and exp_id is None:
        name = default
    return name, exp_id


def make_source(spec: str, opts: dict[str, Any]) -> Source:
    kind, loc, fragment = kind_of(spec)
    strict = bool(opts.get("strict"))
    if kind == "tfevents":
        from tbx.converters.tfevents import TfeventsSource
        return TfeventsSource(loc, strict=strict)
    if kind == "mlflow":
        from tbx.converters.mlflow import MlflowSource
        name, exp_id = _experiment(fragment, opts, None)
        if name is None and exp_id is None:
            raise UsageError(f"which MLflow experiment of {loc}? give --experiment NAME (or --experiment-id, "
                             "or URI#NAME)")
        return MlflowSource(loc, experiment=name, experiment_id=exp_id, filter_string=opts.get("filter"))
    if kind == "wandb-offline":
        from tbx.converters.wandb_local import WandbOfflineSource
        return WandbOfflineSource(loc, strict=strict)
    from tbx.converters.wandb_cloud import WandbCloudSource
    entity, project = loc.split("/")
    return WandbCloudSource(entity, project, filters=opts.get("filter"))


def make_destination(spec: str, opts: dict[str, Any], source: Source | None = None) -> Destination:
    kind, loc, fragment = kind_of(spec)
    if kind == "tfevents":
        from tbx.converters.tfevents import TfeventsDestination
        return TfeventsDestination(loc)
    default_name = None
    if source is not None and getattr(source, "logdir", None):
        default_name = os.path.basename(os.path.abspath(source.logdir))
    if kind == "mlflow":
        from tbx.converters.mlflow import MlflowDestination
        name, exp_id = _experiment(fragment, opts, default_name)
        if exp_id and not name:
            raise UsageError("exporting to MLflow needs an experiment name (--experiment), not only an id")
        return MlflowDestination(loc, name)
    from tbx.converters.wandb_export import WandbDestination
    if kind == "wandb-offline":
        return WandbDestination(directory=loc, project=opts.get("project") or fragment, mode="offline")
    entity, project = loc.split("/")
    return WandbDestination(entity=entity, project=project, mode="online")
