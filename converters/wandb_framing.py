"""The framing of W&B's ``.wandb`` transaction log: blocks, chunks, records.

The layout, checked against files written by wandb 0.31 (TRACKERS.md §1b):

- a 7-byte header: ``b":W&B"``, the magic ``0xBEE1`` (uint16 LE) and the
  format version ``0`` (uint8);
- then LevelDB's log format: 32 KiB blocks counted from the start of the file
  (so the first block holds 7 bytes less), each a run of chunks
  ``crc32 (uint32 LE) | length (uint16 LE) | type (uint8) | data``, where the
  checksum is zlib's IEEE CRC-32 of the type byte and the data. A record too
  big for what is left of a block is split into FIRST, MIDDLE… and LAST
  chunks; a FULL chunk holds a whole record. A block tail shorter than a chunk
  header is zero padding.

Damage is handled as wandb-core's Go reader does, and counted in
:class:`LogStats`: a chunk that fails its checksum or whose header makes no
sense loses the rest of its block (reading resumes at the next block, since
every block starts with a chunk header); a cut-off end of file is the normal
end of a run still being written. With ``lenient=False`` damage raises
:class:`tbx.errors.DataLossError` instead (a cut-off end still does not).

Framing walks the blocks of a file and checks every checksum with the
reader's C kernel (``walk_chunks``, two halves of a big file on two threads;
its twin walks all blocks at once with numpy and maps ``zlib.crc32`` over
the chunks); the records stay slices of the
file's bytes (:class:`Records`) until a decoder needs them. A record split
over chunks is joined once and appended to those bytes, so that every record
is a slice of one buffer and the fast paths treat all records alike.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Union

import numpy as np

from tbx.errors import DataLossError, TbxError

PathLike = Union[str, "os.PathLike[str]"]

MAGIC = b":W&B"
IDENT = 0xBEE1
VERSION = 0
HEADER = MAGIC + struct.pack("<HB", IDENT, VERSION)
BLOCK_SIZE = 32 * 1024
CHUNK_HEADER_SIZE = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4

_CRC_OF_TYPE = [zlib.crc32(bytes([t])) for t in range(256)]

# The C kernel of the reader (converters/_wbscan.c), unless TBX_PURE=1 or it was not built;
# its twins are walk_chunks_pure here and the *_pure functions of tbx.converters.wandb_fastpath.
_kernel: Any = None
if os.environ.get("TBX_PURE", "") in ("", "0"):
    try:
        from tbx.converters import _wbscan as _kernel
    except ImportError:  # not built: the twins give the same results
        _kernel = None

#: Which kernel the ``.wandb`` reader runs: "native" (the C extension) or "pure".
KERNEL = "native" if _kernel is not None else "pure"




class LogFormatError(TbxError, ValueError):
    """The file is not a W&B transaction log, or one of a version we cannot read."""


@dataclasses.dataclass
class LogStats:
    """What reading one or more ``.wandb`` files found; pass one as ``stats=``.

    Attributes:
        records: records read whole with good checksums.
        bad_chunks: chunks that failed their checksum or made no sense (each
            loses the rest of its block), and record fragments orphaned by them.
        truncated_bytes: bytes of a cut-off end of file (a record being written).
        first_bad_offset: file offset of the first bad chunk, or None.
        problems: one DataLossError per bad chunk or undecodable record.
    """

    records: int = 0
    bad_chunks: int = 0
    truncated_bytes: int = 0
    first_bad_offset: int | None = None
    problems: list[DataLossError] = dataclasses.field(default_factory=list)

    def bad(self, err: DataLossError) -> None:
        self.bad_chunks += 1
        self.problems.append(err)
        if self.first_bad_offset is None or err.offset < self.first_bad_offset:
            self.first_bad_offset = err.offset



def _check_header(path: str, data: bytes | bytearray) -> None:
    head = bytes(data[:len(HEADER)])
    if len(head) < len(HEADER) or head[:4] != MAGIC:
        raise LogFormatError(
            f"{path} is not a W&B transaction log: it starts with {head!r}, expected {HEADER!r} "
            f"(':W&B', magic 0x{IDENT:X}, version {VERSION})")
    ident, version = struct.unpack_from("<HB", data, 4)
    if ident != IDENT or version != VERSION:
        raise LogFormatError(
            f"{path}: unsupported .wandb format (magic 0x{ident:X}, version {version}); "
            f"this reader supports magic 0x{IDENT:X} version {VERSION}")


#: Whole files at least this big are mapped (copy-on-write) rather than read.
MAP_MIN = 1 << 20

Buffer = Union[bytearray, mmap.mmap]


def read_file(path: str, limit: int = -1) -> Buffer:
    """The first ``limit`` bytes of ``path`` (all: -1), once the header says it is a log we read.

    Writable, so that :func:`frame` can join records split over chunks in
    place: a whole file of :data:`MAP_MIN` bytes or more is mapped
    copy-on-write (nothing is copied but the few pages a join writes, and
    the file itself is never written); anything else is read into a
    bytearray.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if limit < 0 and size >= MAP_MIN:
            data: Buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        else:
            buf = bytearray(size if limit < 0 else min(size, limit))
            n = f.readinto(buf)
            del buf[n:]  # the file shrank while being read
            data = buf
    _check_header(path, data)
    return data


@dataclasses.dataclass
class Records:
    """The records of one file in file order, each a slice ``data[starts[i]:ends[i]]``.

    ``data`` is the file's bytes (:func:`read_file`), where each record that
    was split over chunks has been joined in place: its parts moved up
    against its last part, over the chunk headers between them. ``offsets``
    are file offsets of each record's first chunk.
    """

    data: Buffer
    offsets: np.ndarray
    starts: np.ndarray
    ends: np.ndarray


# Why a block stops making sense (walk_chunks' stop_why); a cut-off end of file is not damage.
STOP_CUT, STOP_ZEROED, STOP_BAD_TYPE, STOP_TOO_LONG = 0, 1, 2, 3


def _why(code: int, value: int) -> str:
    if code == STOP_ZEROED:
        return "zeroed chunk header"
    if code == STOP_BAD_TYPE:
        return f"bad chunk type {value}"
    if code == STOP_TOO_LONG:
        return f"chunk length {value} runs past its block"
    return "cut"


def walk_chunks_pure(data: Buffer, block_lo: int, block_hi: int) -> tuple[bytearray, ...]:
    """The twin of the C ``walk_chunks``: the chunks of blocks ``block_lo`` .. ``block_hi - 1``, all walked at once.

    Returns the chunks whose header makes sense, in file order (offset,
    data length, type, whether the stored CRC-32 matches), and each place
    where a block stops making sense (offset, why: ``STOP_*``, the type or
    length at fault). Every array is returned as bytes, as the kernel does.
    """
    a = np.frombuffer(data, np.uint8)
    n = len(a)
    nblocks = (n + BLOCK_SIZE - 1) // BLOCK_SIZE
    pos = np.arange(max(block_lo, 0), min(block_hi, nblocks), dtype=np.int64) * BLOCK_SIZE
    pos[pos == 0] = len(HEADER)
    end = np.minimum(pos - pos % BLOCK_SIZE + BLOCK_SIZE, n)
    active = np.arange(len(pos))
    offsets, lengths, types, stops = [], [], [], []
    while active.size:
        p, e = pos[active], end[active]
        room = e - p
        fits = room >= CHUNK_HEADER_SIZE
        # A short block tail is padding, except at the end of the file, where
        # it is the start of a chunk header being written.
        for i in np.flatnonzero(~fits & (room > 0) & (e == n)):
            stops.append((int(p[i]), STOP_CUT, 0))
        active, p, e = active[fits], p[fits], e[fits]
        if not active.size:
            break
        length = a[p + 4].astype(np.int64) | a[p + 5].astype(np.int64) << 8
        kind = a[p + 6]
        nxt = p + CHUNK_HEADER_SIZE + length
        good = (nxt <= e) & (kind >= FULL) & (kind <= LAST)
        for i in np.flatnonzero(~good):
            if nxt[i] > e[i] and e[i] == n and FULL <= kind[i] <= LAST:
                stops.append((int(p[i]), STOP_CUT, 0))
            elif kind[i] == 0 and length[i] == 0 and not a[p[i]:p[i] + 4].any():
                # Zeros up to the end of the file: space the writer never filled.
                cut = e[i] == n and not a[p[i]:].any()
                stops.append((int(p[i]), STOP_CUT if cut else STOP_ZEROED, 0))
            elif not FULL <= kind[i] <= LAST:
                stops.append((int(p[i]), STOP_BAD_TYPE, int(kind[i])))
            else:
                stops.append((int(p[i]), STOP_TOO_LONG, int(length[i])))
        offsets.append(p[good])
        lengths.append(length[good])
        types.append(kind[good])
        pos[active] = nxt
        active = active[good]
    off = np.concatenate(offsets) if offsets else np.empty(0, np.int64)
    order = np.argsort(off, kind="stable")
    off = off[order]
    length = (np.concatenate(lengths) if lengths else np.empty(0, np.int64))[order]
    kind = (np.concatenate(types) if types else np.empty(0, np.uint8))[order]
    view = memoryview(data)
    computed = np.fromiter(
        map(zlib.crc32, map(view.__getitem__, map(slice, (off + CHUNK_HEADER_SIZE).tolist(),
                                                  (off + CHUNK_HEADER_SIZE + length).tolist())),
            map(_CRC_OF_TYPE.__getitem__, kind.tolist())),
        dtype=np.uint32, count=len(off))
    view.release()
    stored = np.frombuffer(a[(off[:, None] + np.arange(4)).ravel()].tobytes(), "<u4")
    stops.sort()
    return tuple(bytearray(np.asarray(x, dtype).tobytes()) for x, dtype in (
        (off, np.int64), (length, np.int64), (kind, np.uint8), (stored == computed, np.uint8),
        ([s[0] for s in stops], np.int64), ([s[1] for s in stops], np.uint8), ([s[2] for s in stops], np.int64)))


walk_chunks = _kernel.walk_chunks if _kernel is not None else walk_chunks_pure


def _walk(data: Buffer) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """Every chunk of the file: offsets, lengths, types, checksum good; and where blocks stop making sense.

    A big file's blocks are walked in two halves on two threads (the kernel
    checks checksums without the GIL).
    """
    nblocks = (len(data) + BLOCK_SIZE - 1) // BLOCK_SIZE
    if nblocks >= 256 and _kernel is not None and (os.cpu_count() or 1) >= 2:
        half = nblocks // 2
        with ThreadPoolExecutor(max_workers=1) as pool:
            second = pool.submit(walk_chunks, data, half, nblocks)
            parts = [walk_chunks(data, 0, half), second.result()]
    else:
        parts = [walk_chunks(data, 0, nblocks)]
    cols = [np.concatenate([np.frombuffer(p[i], dtype) for p in parts])
            for i, dtype in enumerate((np.int64, np.int64, np.uint8, np.uint8, np.int64, np.uint8, np.int64))]
    off, length, kind, crc_ok, stop_off, stop_why, stop_value = cols
    stops = [(o, _why(w, v)) for o, w, v in zip(stop_off.tolist(), stop_why.tolist(), stop_value.tolist())]
    return off, length, kind, crc_ok.view(bool), stops


def frame(data: Buffer, path: str, lenient: bool, stats: LogStats) -> Records:
    """Split a whole file into records, checking every chunk's checksum (joins records in ``data``, see :class:`Records`)."""
    off, length, kind, crc_ok, stops = _walk(data)
    start = off + CHUNK_HEADER_SIZE
    stop = start + length
    for i in np.flatnonzero(~crc_ok):
        stops.append((int(off[i]), "chunk checksum"))
    cut = None
    bad: list[tuple[int, str]] = []
    for offset, why in sorted(stops):
        if why == "cut":
            cut = offset if cut is None else min(cut, offset)
        else:
            bad.append((offset, why))
    # Every chunk at or after a bad one in the same block is lost (so a later
    # bad chunk of that block is not counted again).
    keep = np.ones(len(off), bool)
    lost_until = -1
    for offset, why in bad:
        if offset < lost_until:
            continue
        err = DataLossError(path, offset, why)
        if not lenient:
            raise err
        stats.bad(err)
        lost_until = offset - offset % BLOCK_SIZE + BLOCK_SIZE
        keep[(off >= offset) & (off < lost_until)] = False
    if cut is not None:
        keep &= off < cut
    if not keep.all():
        off, start, stop, kind = off[keep], start[keep], stop[keep], kind[keep]

    single = kind == FULL
    joined: list[tuple[int, int, int]] = []  # (offset, start, end) of records joined in place
    pending: tuple[int, list[tuple[int, int]]] | None = None  # (offset, parts) of a FIRST..LAST run
    prev_stop = -1

    def orphan(offset: int) -> None:
        err = DataLossError(path, offset, "record fragment without its start or end")
        if not lenient:
            raise err
        stats.bad(err)

    for i in np.flatnonzero(~single).tolist():
        o, k = int(off[i]), int(kind[i])
        follows = i > 0 and _adjacent(prev_stop, o) and prev_stop == int(stop[i - 1])
        if pending is not None and not (k in (MIDDLE, LAST) and follows):
            orphan(pending[0])
            pending = None
        part = (int(start[i]), int(stop[i]))
        if k == FIRST:
            pending = (o, [part])
        elif pending is None:
            orphan(o)
        else:
            pending[1].append(part)
            if k == LAST:
                joined.append((pending[0], _join(data, pending[1]), part[1]))
                pending = None
        prev_stop = int(stop[i])
    truncated_from = None
    if pending is not None:
        # A record still being written when the file ended is a cut-off end.
        at_end = prev_stop == int(stop[-1]) and (
            _adjacent(prev_stop, len(data)) or (cut is not None and _adjacent(prev_stop, cut)))
        if at_end:
            truncated_from = pending[0]
        else:
            orphan(pending[0])
    if cut is not None:
        truncated_from = cut if truncated_from is None else min(truncated_from, cut)
    if truncated_from is not None:
        stats.truncated_bytes += len(data) - truncated_from
    offsets, starts, ends = off[single], start[single], stop[single]
    if joined:
        j = np.array(joined, np.int64).reshape(-1, 3)
        offsets = np.concatenate([offsets, j[:, 0]])
        starts = np.concatenate([starts, j[:, 1]])
        ends = np.concatenate([ends, j[:, 2]])
        order = np.argsort(offsets, kind="stable")
        offsets, starts, ends = offsets[order], starts[order], ends[order]
    stats.records += len(offsets)
    return Records(data, offsets, starts, ends)


def _join(data: Buffer, parts: list[tuple[int, int]]) -> int:
    """Move the ``(start, stop)`` parts of one record up against its last part; returns where it starts.

    Each part lands just before the (moved) part after it, over the chunk
    headers and block padding between them, which have been read already.
    """
    to = parts[-1][0]
    for s, e in reversed(parts[:-1]):
        data[to - (e - s):to] = data[s:e]  # the right side is a copy: overlap is safe
        to -= e - s
    return to


def _adjacent(stop: int, offset: int) -> bool:
    """True if a chunk at ``offset`` comes right after one ending at ``stop``."""
    if stop == offset:
        return True
    tail = BLOCK_SIZE - stop % BLOCK_SIZE
    return tail < CHUNK_HEADER_SIZE and offset == stop + tail


def load(path: PathLike, lenient: bool, stats: LogStats | None) -> tuple[str, Records, LogStats]:
    """``(path, records, stats)`` of a whole file; damage is counted in ``stats`` (a new one if None)."""
    path = os.fspath(path)
    stats = stats if stats is not None else LogStats()
    return path, frame(read_file(path), path, lenient, stats), stats


def in_order(recs: Records, mask: np.ndarray | None = None) -> Iterator[tuple[int, memoryview]]:
    """``(offset, payload)`` of records (those of ``mask`` if given) in file order."""
    view = memoryview(recs.data)
    idx = np.arange(len(recs.offsets)) if mask is None else np.flatnonzero(mask)
    for o, s, e in zip(recs.offsets[idx].tolist(), recs.starts[idx].tolist(), recs.ends[idx].tolist()):
        yield o, view[s:e]
