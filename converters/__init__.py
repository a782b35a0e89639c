"""tbx.converters: moving runs between TensorBoard logdirs and other trackers.

Installed as ``tbx.converters`` (mapped from the top-level ``converters/``
folder in pyproject.toml). The neutral run model, the sync engine and the
per-tracker backends (tfevents, MLflow, W&B) arrive here.
"""

#: Backends available in this version. Each converter issue adds its module here.
BACKENDS = ()
