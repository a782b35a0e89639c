"""Make ``torch.utils.tensorboard`` and ``tensorboardX`` hand out tbx's SummaryWriter.

After :func:`patch`, code that looks the writer up from those modules gets
tbx's, without being edited::

    import tbx
    tbx.patch()
    import lightning.pytorch as pl   # its TensorBoardLogger now writes with tbx

The names replaced are ``SummaryWriter`` in ``torch.utils.tensorboard``,
``torch.utils.tensorboard.writer``, ``tensorboardX`` and ``tensorboardX.writer``.
Only look-ups made after the call are affected: a module that ran
``from torch.utils.tensorboard import SummaryWriter`` before :func:`patch`
keeps torch's class, and writers created before keep working as they were.
Frameworks that import the writer when they create it (PyTorch Lightning's
``TensorBoardLogger``, Hugging Face's ``TensorBoardCallback``) pick up tbx's.

``torch.utils.tensorboard`` gets :class:`tbx.SummaryWriter` itself;
``tensorboardX`` gets :class:`TensorboardXSummaryWriter`, a subclass that also
accepts tensorboardX's spellings (``logdir=``, ``add_hparams(..., name=)``,
``add_scalar(..., display_name=, summary_description=)``). Either way
``isinstance(writer, tbx.SummaryWriter)`` holds, while ``isinstance`` checks
against a class captured before patching (torch's or tensorboardX's own) fail
for tbx's writers.

:func:`patch` imports the modules it patches (torch and tensorboardX are
imported if they are installed; a package that is not installed, or fails to
import for want of a dependency, is skipped). It is idempotent, and
:func:`unpatch` puts the original classes back.

Thread-safety: patch and unpatch may be called from any thread; they hold a
lock while they change module attributes.
"""

import importlib
import importlib.util
import sys
import threading

from tbx import _convert, record
from tbx.proto import summary_pb2
from tbx.summary import scalar as _scalar
from tbx.writer import SummaryWriter

__all__ = ["patch", "unpatch", "is_patched", "TensorboardXSummaryWriter"]


class TensorboardXSummaryWriter(SummaryWriter):
    """tbx's SummaryWriter with tensorboardX's constructor and argument names.

    Args:
        logdir: run directory (tensorboardX's name; ``log_dir`` also works).
        comment, purge_step, max_queue, flush_secs, filename_suffix: as in
            :class:`tbx.SummaryWriter`.
        write_to_disk: must be True; tbx has no writer that discards data.
        log_dir: alias of ``logdir``.
        comet_config: accepted when Comet is disabled (the default); tbx does
            not log to Comet.
    """

    def __init__(self, logdir=None, comment="", purge_step=None, max_queue=10, flush_secs=120,
                 filename_suffix="", write_to_disk=True, log_dir=None, comet_config=None, **kwargs):
        if kwargs:
            raise TypeError(f"SummaryWriter got unexpected keyword arguments {sorted(kwargs)}")
        if not write_to_disk:
            raise ValueError(
                "write_to_disk=False is not supported by tbx's SummaryWriter: "
                "create the writer only in the process that should write (e.g. rank 0)"
            )
        if comet_config is not None and not (isinstance(comet_config, dict) and comet_config.get("disabled", False)):
            raise ValueError(f"comet_config {comet_config!r}: tbx does not log to Comet; pass comet_config={{'disabled': True}}")
        if logdir is None:
            logdir = log_dir
        super().__init__(logdir, comment, purge_step, max_queue, flush_secs, filename_suffix)
        self.logdir = self.log_dir

    def add_scalar(self, tag, scalar_value, global_step=None, walltime=None, display_name="", summary_description=""):
        """Log one scalar; ``display_name`` / ``summary_description`` set the tag's title and description.

        With either of them the value is written in the tensor form with full
        ``scalars`` metadata on the tag's first point in the file.
        """
        if not display_name and not summary_description:
            return SummaryWriter.add_scalar(self, tag, scalar_value, global_step, walltime)
        for name, text in (("display_name", display_name), ("summary_description", summary_description)):
            if not isinstance(text, str):
                raise TypeError(f"{name} must be a str, got {type(text).__name__} {text!r}")
        tag, step, walltime = self._point(tag, global_step, walltime)
        value = _convert.scalar_value(scalar_value)
        md = None
        if self._first_use(tag):
            meta = summary_pb2.SummaryMetadata()
            meta.CopyFrom(_scalar.METADATA)
            meta.display_name = display_name
            meta.summary_description = summary_description
            md = meta.SerializeToString()
        self.file_writer.write(record.encode_scalar(tag, value, step, walltime, md, False))

    def add_hparams(self, hparam_dict, metric_dict, name=None, global_step=None):
        """tensorboardX's add_hparams: ``name`` is the session's run (tbx's ``run_name``)."""
        return SummaryWriter.add_hparams(self, hparam_dict, metric_dict, run_name=name, global_step=global_step)


# (module, attribute, distribution that provides the module, replacement)
_TARGETS = (
    ("torch.utils.tensorboard", "SummaryWriter", "torch", SummaryWriter),
    ("torch.utils.tensorboard.writer", "SummaryWriter", "torch", SummaryWriter),
    ("tensorboardX", "SummaryWriter", "tensorboardX", TensorboardXSummaryWriter),
    ("tensorboardX.writer", "SummaryWriter", "tensorboardX", TensorboardXSummaryWriter),
)
_REPLACEMENTS = (SummaryWriter, TensorboardXSummaryWriter)

_lock = threading.Lock()
_originals = {}  # (module name, attribute) -> the object patch() replaced


def _installed(distribution):
    if distribution in sys.modules:
        return True
    try:
        return importlib.util.find_spec(distribution) is not None
    except (ImportError, ValueError):
        return False


def patch():
    """Point the peers' ``SummaryWriter`` names at tbx's writer.

    Returns:
        The names now patched, e.g. ``["torch.utils.tensorboard.SummaryWriter",
        ...]``; empty if neither torch (with tensorboard) nor tensorboardX
        can be imported. Calling it again patches nothing twice.
    """
    done = []
    with _lock:
        for module_name, attribute, distribution, replacement in _TARGETS:
            if not _installed(distribution):
                continue
            try:
                module = importlib.import_module(module_name)
            except ImportError:  # e.g. torch without the tensorboard package
                continue
            key = (module_name, attribute)
            if key not in _originals:
                _originals[key] = getattr(module, attribute)
            setattr(module, attribute, replacement)
            done.append(f"{module_name}.{attribute}")
    return done


def unpatch():
    """Put back the classes :func:`patch` replaced.

    A name that someone else re-assigned after patch() is left as they set it.

    Returns:
        The names restored.
    """
    done = []
    with _lock:
        for (module_name, attribute), original in list(_originals.items()):
            module = sys.modules.get(module_name)
            if module is not None and getattr(module, attribute, None) in _REPLACEMENTS:
                setattr(module, attribute, original)
                done.append(f"{module_name}.{attribute}")
            del _originals[(module_name, attribute)]
    return done


def is_patched():
    """True while any name is patched."""
    with _lock:
        return bool(_originals)
