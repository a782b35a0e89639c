"""Record framing: chooses the C kernel or its pure-Python twin.

``TBX_PURE=1`` forces the twin; otherwise the compiled ``tbx._native`` is used
when it was built. ``IMPLEMENTATION`` says which kernel is active and which
CRC32C code path it runs, e.g. ``"native (crc: sse4.2)"``.

TFRecord framing, little-endian::

    uint64 length | uint32 masked_crc32c(length bytes) | payload | uint32 masked_crc32c(payload)
"""

import os

from tbx import _pure

_kernel = _pure
if os.environ.get("TBX_PURE", "") in ("", "0"):
    try:
        from tbx import _native as _kernel  # type: ignore[no-redef]
    except ImportError:  # not built: the twin gives identical output
        _kernel = _pure

KERNEL = _kernel
IMPLEMENTATION = f"{_kernel.IMPLEMENTATION} (crc: {_kernel.CRC_PATH})"

crc32c = _kernel.crc32c
masked_crc32c = _kernel.masked_crc32c
frame = _kernel.frame
frame_many = _kernel.frame_many
encode_scalar = _kernel.encode_scalar
encode_scalars = _kernel.encode_scalars
split_records = _kernel.split_records
seek_record = _kernel.seek_record
decode_scalars = _kernel.decode_scalars

# Values of the ``status`` returned by split_records and decode_scalars.
STATUS_OK = 0
STATUS_BAD_LENGTH_CRC = 1
STATUS_BAD_DATA_CRC = 2

__all__ = [
    "IMPLEMENTATION", "KERNEL", "crc32c", "masked_crc32c", "frame", "frame_many",
    "encode_scalar", "encode_scalars", "split_records", "seek_record", "decode_scalars",
    "STATUS_OK", "STATUS_BAD_LENGTH_CRC", "STATUS_BAD_DATA_CRC",
]
