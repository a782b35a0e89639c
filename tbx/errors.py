"""Exceptions raised by tbx; all derive from TbxError."""


class TbxError(Exception):
    """Base class of every tbx-specific error."""


class Error(TbxError):
    """W&B's ``wandb.Error``: a W&B-style API call made in the wrong state or with bad values."""

    def __init__(self, message, context=None):
        super().__init__(message)
        self.message = message
        self.context = context or {}


class WriterClosedError(TbxError, RuntimeError):
    """An add_*/flush call on a writer after close()."""


class WriteError(TbxError, OSError):
    """The background writer could not write an event file (path and cause in the message)."""


class DataLossError(TbxError):
    """A record in an event file failed its checksum or does not parse.

    Attributes:
        path: the event file.
        offset: byte offset of the bad record.
        reason: which checksum failed.
    """

    def __init__(self, path, offset, reason, message=None):
        self.path = path
        self.offset = offset
        self.reason = reason
        super().__init__(message or f"checksum mismatch in {path} at byte {offset} ({reason})")
