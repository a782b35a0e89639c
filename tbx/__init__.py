"""tbx: TensorBoard event files at memory speed, and W&B's run API offline.

``tbx.SummaryWriter`` is a drop-in for torch.utils.tensorboard's and
tensorboardX's writer; ``tbx.read_events`` and ``tbx.read_scalars`` read
event files back; ``tbx.record.IMPLEMENTATION`` names the active kernel.
``import tbx as wandb`` gives ``init``, ``log``, ``config``, ``summary``,
``Image``, ``watch``, ``finish``... written as TensorBoard runs (tbx.run).
"""

import sys as _sys
import types as _types


class _Package(_types.ModuleType):
    """W&B's ``tbx.run``, ``tbx.config``, ``tbx.summary`` and ``tbx.watch`` are
    objects, not the same-named submodules: importing a submodule must not
    replace them (``from tbx.run import ...`` still reaches the module)."""

    def __setattr__(self, name, value):
        if name in ("run", "config", "summary", "watch") and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package

from tbx.errors import DataLossError, TbxError, WriteError, WriterClosedError  # noqa: E402
from tbx.writer import SummaryWriter  # noqa: E402
from tbx.patch import patch, unpatch  # noqa: E402
from tbx.media import Audio, Histogram, Image, Table, Video  # noqa: E402
from tbx.run import (  # noqa: E402
    Error, Run, UsageError, define_metric, finish, get_run, init, log, unwatch, watch,
    _unset_globals as _unset_run_globals,
)

join = finish
_unset_run_globals()  # tbx.run = None; tbx.config / tbx.summary say "call init() first"

__version__ = "0.1.0"

__all__ = [
    "SummaryWriter", "patch", "unpatch", "read_events", "read_scalars", "ReadStats",
    "TbxError", "WriteError", "WriterClosedError", "DataLossError",
    "init", "log", "finish", "join", "define_metric", "watch", "unwatch", "get_run", "Run", "Error", "UsageError",
    "run", "config", "summary", "Image", "Histogram", "Audio", "Video", "Table",
]


def __getattr__(name):
    # The reader pulls in more than writing needs; load it on first use.
    if name in ("read_events", "read_scalars", "ReadStats"):
        from tbx import reader

        return getattr(reader, name)
    raise AttributeError(f"module 'tbx' has no attribute {name!r}")
