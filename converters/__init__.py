"""tbx.converters: moving runs between TensorBoard logdirs and other trackers.

Installed as ``tbx.converters`` (mapped from the top-level ``converters/``
folder in pyproject.toml).

- :mod:`~tbx.converters.model`: the neutral run model every backend reads
  into and writes from;
- :mod:`~tbx.converters.engine`: the sync engine (selection, ledger,
  incremental writes, parallel runs, verification by reading back);
- :mod:`~tbx.converters.report`: the fidelity report;
- backends, one module each: :mod:`~tbx.converters.tfevents`,
  :mod:`~tbx.converters.mlflow`, :mod:`~tbx.converters.wandb_local` (W&B
  offline runs, read), :mod:`~tbx.converters.wandb_export` (W&B through its
  SDK, written), :mod:`~tbx.converters.wandb_cloud` (the W&B cloud, read);
- :mod:`~tbx.converters.endpoints` and :mod:`~tbx.converters.cli`: ``tbx sync``.
"""

#: Endpoint kinds ``tbx sync`` understands (see :mod:`tbx.converters.endpoints`).
BACKENDS = ("tfevents", "mlflow", "wandb-offline", "wandb-cloud")
