"""tbx: TensorBoard event files at memory speed.

``tbx.SummaryWriter`` is a drop-in for torch.utils.tensorboard's and
tensorboardX's writer; ``tbx.read_events`` and ``tbx.read_scalars`` read
event files back. ``tbx.record.IMPLEMENTATION`` names the active kernel.
"""

from tbx.errors import DataLossError, TbxError, WriteError, WriterClosedError
from tbx.writer import SummaryWriter
from tbx.patch import patch, unpatch

__version__ = "0.1.0"

__all__ = [
    "SummaryWriter", "patch", "unpatch", "read_events", "read_scalars", "ReadStats",
    "TbxError", "WriteError", "WriterClosedError", "DataLossError",
]


def __getattr__(name):
    # The reader pulls in more than writing needs; load it on first use.
    if name in ("read_events", "read_scalars", "ReadStats"):
        from tbx import reader

        return getattr(reader, name)
    raise AttributeError(f"module 'tbx' has no attribute {name!r}")
