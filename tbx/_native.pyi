"""Typed stub of the C kernel; tbx/_pure.py implements the same functions."""

from collections.abc import Buffer, Sequence

IMPLEMENTATION: str
"""'native' here, 'pure' in the twin."""

CRC_PATH: str
"""Which CRC32C code path runs: 'sse4.2', 'armv8-crc' or 'table'."""

def crc32c(data: Buffer, value: int = 0, /) -> int:
    """CRC32C (Castagnoli) of ``data``, continuing from a previous ``value``."""

def masked_crc32c(data: Buffer, /) -> int:
    """The TFRecord mask of crc32c(data): rotate right 15, add 0xA282EAD8."""

def frame(payload: Buffer, /) -> bytes:
    """One TFRecord: <Q len, <I masked crc(len), payload, <I masked crc(payload)."""

def frame_many(payloads: Sequence[Buffer], /) -> bytes:
    """Concatenation of frame(p) for every p, built in one buffer."""

def encode_scalar(
    tag: str,
    value: float,
    step: int,
    wall_time: float,
    metadata: bytes | None,
    legacy: bool,
    /,
) -> bytes:
    """A framed Event{wall_time, step, summary{value{tag, ...}}} record.

    ``legacy`` writes ``simple_value``; otherwise a rank-0 DT_FLOAT tensor
    (``float_val``). ``metadata`` is a serialized SummaryMetadata or None.
    The value is rounded to float32 (out-of-range becomes +-inf). Fields are
    emitted in field-number order and zero scalars are omitted, exactly as
    protobuf serializes the same message.
    """

def encode_scalars(
    tag: str,
    values: Buffer,
    steps: Buffer,
    wall_times: Buffer,
    metadata: bytes | None,
    legacy: bool,
    /,
) -> bytes:
    """``encode_scalar`` of every point, concatenated, built in one buffer.

    ``values`` and ``wall_times`` are C-contiguous float64 buffers, ``steps``
    an int64 one (e.g. numpy arrays), all of the same length. ``metadata``
    goes with the first point only, as a writer sends a tag's metadata once.
    The native kernel releases the GIL while it encodes a batch of 64 KiB or
    more.
    """

def split_records(
    buf: Buffer, offset: int = 0, verify: bool = True, /
) -> tuple[list[bytes], int, int]:
    """Split ``buf[offset:]`` into record payloads.

    Returns ``(payloads, end, status)``: ``end`` is the offset just after the
    last complete record taken. ``status`` is 0 when the rest of the buffer
    (``buf[end:]``) is empty or an incomplete record, 1 when the record at
    ``end`` has a bad length checksum, 2 when its payload checksum is bad.
    """

def seek_record(buf: Buffer, offset: int, target: int, /) -> int:
    """Offset of the first record at or after ``target``, walking record lengths from ``offset``.

    Only the length checksums are checked. Returns -1 if one fails, or if the
    records run past the end of ``buf`` before reaching ``target``.
    """

def decode_scalars(
    buf: Buffer, offset: int = 0, verify: bool = True, /
) -> tuple[int, int, list[tuple[str, str | None]], bytes, bytes, bytes, bytes, int]:
    """Split records like split_records and decode every scalar-looking point.

    Returns ``(end, status, tags, tag_index, steps, wall_times, values, records)``,
    ``records`` being how many records were read (whatever they hold).
    ``tags`` lists each tag met in this buffer once, in order of first
    appearance, with the plugin name of the first SummaryMetadata seen for it
    here ("scalars" for legacy simple_value points), or None if none was seen.
    The four byte strings are little-endian arrays, one entry per point:
    int32 index into ``tags``, int64 step, float64 wall time, float64 value.
    A point is a simple_value, or a rank-0 DT_FLOAT/DT_DOUBLE tensor value.
    Records whose payload does not parse as an Event are skipped.
    """
