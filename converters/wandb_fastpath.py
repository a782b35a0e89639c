"""The fast path of the ``.wandb`` reader: records found and decoded without protobuf.

Decoding every record with protobuf and every history value with
``json.loads`` costs tens of microseconds per history row. Here instead,
with numpy over all records at once:

- :func:`record_fields` finds each record's kind (the field number of
  Record's ``record_type`` oneof) without parsing it: wandb-core writes the
  oneof after the other fields (``num``, and ``control``, ``uuid`` and
  ``_info`` where set), so the common shape, ``num`` then a one-byte tag, is
  read for all records at once, and the others are scanned one by one past
  those leading fields;
- :func:`scan` walks the items (keys and ``value_json``) of many history or
  summary records, item *k* of every record in one step, reading each
  header as a 16- or 32-bit word at any offset;
- :func:`key_codes` tells the keys apart by their bytes (hashed eight bytes
  at a time, then checked), so that each distinct key is decoded once
  (:func:`fast_items`);
- :func:`decode_values` turns the values of many records into one JSON
  array in a copy (the bytes between values become a comma and spaces), so
  that one ``json.loads`` call decodes them all. A summary needs only the
  last value of each key (see :mod:`tbx.converters.wandb_file`).

Every record the fast path cannot prove it understands (typed values, very
long values or keys, keys that are not UTF-8) is left to protobuf
(:mod:`tbx.converters.wandb_file`), so both paths give the same rows (the
tests compare them). On a shared 2-core machine a 100,000-row run (91 MB:
each row also writes two summary records) reads in about 2 s, against
about 4.5 s for wandb 0.22's Python reader (``datastore``) with protobuf
and ``json.loads`` per value, and about 20 s for ``wandb leet inspect
--json`` (wandb 0.31's reader) plus ``json.loads`` per line; most of the
2 s is ``json.loads`` of the 1.4 million history values and numpy's passes
over the items.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from tbx.converters.wandb_framing import Records

# Field numbers of Record's ``record_type`` oneof that the fast paths find.
FIELD_HISTORY = 2
FIELD_SUMMARY = 3
# Record's fields outside the oneof: num, control, uuid, _info.
_LEADING_FIELDS = frozenset({1, 16, 19, 200})

_SPACE, _COMMA, _QUOTE = 0x20, 0x2C, 0x22
_SPACES = np.uint64(0x2020202020202020)


def _uvarint(buf: Any, p: int, end: int) -> tuple[int, int]:
    """A varint at ``p``: ``(value, next position)``; ``(-1, end)`` if it runs past ``end``."""
    value = shift = 0
    while p < end and shift < 64:
        b = buf[p]
        p += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, p
        shift += 7
    return -1, end


def _oneof_field(buf: Any, p: int, end: int) -> tuple[int, int]:
    """``(position of the tag, field number)`` of a Record's ``record_type`` field (0 if none)."""
    while p < end:
        tag, q = _uvarint(buf, p, end)
        if tag < 0:
            break
        field, wire = tag >> 3, tag & 7
        if field not in _LEADING_FIELDS:
            return p, field
        if wire == 0:
            p = _uvarint(buf, q, end)[1]
        elif wire == 2:
            length, q = _uvarint(buf, q, end)
            if length < 0:
                break
            p = q + length
        elif wire in (1, 5):
            p = q + (8 if wire == 1 else 4)
        else:
            break
    return end, 0


def record_fields(recs: Records) -> tuple[np.ndarray, np.ndarray]:
    """Position of the ``record_type`` tag and its field number, for each single-chunk record.

    The common shape, ``num`` then a one-byte tag, is found for all records at
    once; the others (records with ``control`` or ``_info`` first, or a field
    number over 15) are scanned one by one.
    """
    a = np.frombuffer(recs.data, np.uint8)
    starts, ends = recs.starts, recs.ends
    n = len(a)
    has_num = (a[np.minimum(starts, n - 1)] == 0x08) & (ends > starts)
    p = starts + has_num
    more = has_num.copy()
    for _ in range(10):  # a varint has at most 10 bytes
        if not more.any():
            break
        more &= (a[np.minimum(p, n - 1)] & 0x80) != 0
        p += more
    p += has_num  # past the varint's last byte
    tag = np.where(p < ends, a[np.minimum(p, n - 1)], 0)
    field = (tag >> 3).astype(np.int64)
    unsure = ~has_num | (tag >= 0x80) | (p >= ends)
    for i in np.flatnonzero(unsure).tolist():
        p[i], field[i] = _oneof_field(recs.data, int(starts[i]), int(ends[i]))
    return p, field


#: Joins the parts of a nested key in fast-path rows (a key part with a quote goes the slow way).
NEST = '"'


def _varints(a: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Value and size of one- or two-byte varints at ``p`` (size 0: longer)."""
    n = len(a)
    b0 = a[np.minimum(p, n - 1)]
    one = b0 < 0x80
    if one.all():  # the usual case: one pass
        return b0.astype(np.int64), np.ones(len(p), np.int64)
    b0 = b0.astype(np.int64)
    b1 = a[np.minimum(p + 1, n - 1)].astype(np.int64)
    size = np.where(one, 1, np.where(b1 < 0x80, 2, 0))
    return np.where(one, b0, (b0 & 0x7F) | b1 << 7), size


@dataclasses.dataclass
class Scan:
    """Where the items of some History/SummaryRecords are (see :func:`scan`).

    ``slow`` marks the records (of ``rows_idx``) left to protobuf. Per item,
    in record order (items of slow records included: mask them with
    ``slow[rec]``): ``rec``, ``key_head`` (first key part's header),
    ``key_end``, ``value_start`` and ``value_end`` (the ``value_json`` text).
    """

    slow: np.ndarray
    rec: np.ndarray
    key_head: np.ndarray
    key_end: np.ndarray
    value_start: np.ndarray
    value_end: np.ndarray


def _tagged_varints(w: np.ndarray, at: int) -> tuple[np.ndarray, Any]:
    """Value and size of the one- or two-byte varints at byte ``at`` of little-endian words ``w``.

    Size 0: longer. When all are one byte, the size is the scalar 1.
    """
    b0 = (w >> (8 * at)) & 0xFF
    one = b0 < 0x80
    if one.all():  # the usual case
        return b0.astype(np.int64), np.int64(1)
    b1 = ((w >> (8 * at + 8)) & 0xFF).astype(np.int64)
    b0 = b0.astype(np.int64)
    return np.where(one, b0, (b0 & 0x7F) | b1 << 7), np.where(one, 1, np.where(b1 < 0x80, 2, 0))


def scan(recs: Records, rows_idx: np.ndarray, tag_pos: np.ndarray, whole: bool,
         slow: np.ndarray | None = None) -> Scan:
    """Find the items of the History/SummaryRecords ``rows_idx``, whose tag is at ``tag_pos``.

    A record qualifies (is not ``slow``) when each of its items (field 1) is
    a key (``key``, or ``nested_key`` parts shorter than 128 bytes) and a
    non-empty ``value_json`` shorter than 16 KiB, and nothing but
    HistoryRecord.step (nothing at all if ``whole``) follows the items.
    ``slow`` marks records known not to qualify. Headers are read as 16- or
    32-bit words at any offset: one gather reads a tag and the varint after it.
    """
    data = recs.data
    n = len(data)
    a = np.frombuffer(data, np.uint8)
    u16 = np.ndarray((n - 1,), "<u2", data, strides=(1,))
    u32 = np.ndarray((n - 3,), "<u4", data, strides=(1,))
    sub_len, size = _varints(a, tag_pos + 1)
    sub_start = tag_pos + 1 + size
    sub_end = sub_start + sub_len
    unfit = (size == 0) | (sub_end > recs.ends[rows_idx]) | (sub_start - recs.starts[rows_idx] < 3)
    slow = unfit if slow is None else slow | unfit
    # Walk the items of all records at once: round k finds every record's k-th item.
    rounds = []
    cur = sub_start.copy()
    active = np.flatnonzero(~slow)
    while active.size:
        c = cur[active]
        w = u32[np.minimum(c, n - 4)]
        inside = (c + 1 < sub_end[active]) & ((w & 0xFF) == 0x0A)
        if not inside.all():
            active, c, w = active[inside], c[inside], w[inside]
        length, size = _tagged_varints(w, 1)
        bad = size == 0
        if bad.any():
            slow[active[bad]] = True
            active, c, length, size = active[~bad], c[~bad], length[~bad], size[~bad]
        rounds.append((active, c + 1 + size, length))
        cur[active] = c + 1 + size + length
    rest = sub_end - cur
    if whole:
        slow |= rest != 0
    else:  # only HistoryRecord.step (field 2) may follow the items
        w = u16[np.minimum(cur, n - 2)]
        slow |= (rest != 0) & (((w & 0xFF) != 0x12) | (w >= 0x8000) | (rest != 2 + (w >> 8)))
    # Items in record order: record r's k-th item goes to first_item[r] + k.
    per_rec = np.zeros(len(rows_idx), np.int64)
    for active, _, _ in rounds:
        per_rec[active] += 1
    first_item = np.cumsum(per_rec) - per_rec
    count = int(per_rec.sum())
    rec, key_head, item_end = np.empty(count, np.int64), np.empty(count, np.int64), np.empty(count, np.int64)
    for k, (active, body, length) in enumerate(rounds):
        at = first_item[active] + k
        rec[at] = active
        key_head[at] = body
        item_end[at] = body + length
    # Key parts: "\x12 len text" (nested_key) repeated, or one "\x0a len text" (key).
    w = u16[np.minimum(key_head, n - 2)]
    t = w & 0xFF
    ok = ((t == 0x12) | (t == 0x0A)) & (key_head + 1 < item_end) & (w < 0x8000)
    key_end = key_head + 2 + (w >> 8)
    going = np.flatnonzero(ok & (t == 0x12) & (a[np.minimum(key_end, n - 1)] == 0x12))
    for _ in range(15):  # second and later parts
        q = key_end[going]
        w = u16[np.minimum(q, n - 2)]
        more = ((w & 0xFF) == 0x12) & (q + 1 < item_end[going])
        going, q, w = going[more], q[more], w[more]
        if not going.size:
            break
        ok[going[w >= 0x8000]] = False
        key_end[going] = q + 2 + (w >> 8)
    else:
        ok[going[a[np.minimum(key_end[going], n - 1)] == 0x12]] = False  # more than 16 parts
    # The value: "\x82\x01 len json".
    w = u32[np.minimum(key_end, n - 4)]
    value_len, value_size = _tagged_varints(w, 2)
    value_start = key_end + 2 + value_size
    ok &= ((w & 0xFFFF) == 0x0182) & (value_size > 0) & (value_len > 0) & (value_start + value_len == item_end)
    slow[rec[~ok]] = True
    return Scan(slow, rec, key_head, key_end, value_start, item_end)


@dataclasses.dataclass
class Items:
    """The items of the records the fast path takes (see :func:`fast_items`).

    ``slow`` marks the records (of ``rows_idx``) left to protobuf. Per item
    of the other records, in record order: ``rec`` (its record), ``pid``
    (its key's id in ``paths``, the key parts as a tuple), ``value_start``
    and ``value_end`` (its ``value_json`` in the data).
    """

    slow: np.ndarray
    rec: np.ndarray
    pid: np.ndarray
    paths: list[tuple[str, ...]]
    value_start: np.ndarray
    value_end: np.ndarray


def fast_items(recs: Records, rows_idx: np.ndarray, tag_pos: np.ndarray, whole: bool,
               slow: np.ndarray | None = None) -> Items:
    """:func:`scan` the records, then tell their keys apart (:func:`key_codes`) and decode each once.

    A record with a key that is not UTF-8 is left to protobuf (which
    reports it).
    """
    data = recs.data
    while True:
        sc = scan(recs, rows_idx, tag_pos, whole, slow)
        slow = sc.slow
        keep = ~slow[sc.rec]
        rec, head, key_end = sc.rec[keep], sc.key_head[keep], sc.key_end[keep]
        code, first = key_codes(data, head, key_end)
        found = [key_path(data, h, e) for h, e in zip(head[first].tolist(), key_end[first].tolist())]
        bad = [c for c, p in enumerate(found) if p is None]
        if bad:
            slow[rec[np.isin(code, bad)]] = True
            continue
        ids: dict[tuple[str, ...], int] = {}
        pid = np.array([ids.setdefault(p, len(ids)) for p in found], np.int64)[code] if found else code
        return Items(slow, rec, pid, list(ids), sc.value_start[keep], sc.value_end[keep])


def decode_values(recs: Records, items: Items) -> list[Any] | None:
    """Every item's ``value_json``, decoded by one ``json.loads`` (None if one is not JSON).

    The records are copied together (each from the byte before its first
    value to the end of its last value), and everything between two values
    is overwritten with a comma and spaces, eight bytes at a time: the copy
    becomes one JSON array of the values. A value holding a quote or a bracket (a
    string, a list, an object) could run into the next one there, so it is
    replaced by ``0`` and decoded alone; every other value is one JSON
    token, which the count of commas proves.
    """
    n = len(items.rec)
    if not n:
        return []
    data = recs.data
    vs, ve = items.value_start, items.value_end
    # Each record from the byte before its first value (a comma's place) to the end of its last value.
    rec_first = np.flatnonzero(np.concatenate([[True], items.rec[1:] != items.rec[:-1]]))
    rec_last = np.append(rec_first[1:], n) - 1
    lo, hi = vs[rec_first] - 1, ve[rec_last]
    buf = bytearray().join(map(data.__getitem__, map(slice, lo.tolist(), hi.tolist())))
    buf += bytes(8)  # room for the last 8-byte write
    size = hi - lo
    shift = np.repeat(np.cumsum(size) - size - lo, rec_last - rec_first + 1)
    vs, ve = vs + shift, ve + shift  # in buf
    gap_start = np.concatenate([[0], ve[:-1]])
    gap = vs - gap_start
    b = np.frombuffer(buf, np.uint8)
    words = np.ndarray((len(buf) - 7,), "<u8", buf, strides=(1,))  # writable: buf is a bytearray
    short = np.flatnonzero(gap < 8)
    for j in range(1, 7):
        short = short[gap[short] > j]
        b[gap_start[short] + j] = _SPACE
    wide = np.flatnonzero(gap >= 8)
    for k in range(0, int(gap.max(initial=0)) - 7, 8):
        wide = wide[gap[wide] - 8 >= k]
        words[gap_start[wide] + k] = _SPACES
    wide = np.flatnonzero(gap >= 8)
    words[vs[wide] - 8] = _SPACES
    b[gap_start] = _COMMA
    b[0] = ord("[")
    alone = []
    if buf.count(b'"') or buf.count(b"[") > 1 or buf.count(b"{"):
        marks = np.flatnonzero((b == _QUOTE) | (b == ord("[")) | (b == ord("{")))[1:]
        alone = np.unique(np.searchsorted(vs, marks, side="right") - 1).tolist()
        for i in alone:
            b[vs[i]:ve[i]] = _SPACE
            b[vs[i]] = ord("0")
    del b, words
    if buf.count(b",") != n - 1:
        return None
    buf[-8:] = b"]"
    try:
        values = json.loads(buf)
        for i in alone:
            values[i] = json.loads(data[items.value_start[i]:items.value_end[i]])
    except ValueError:
        return None
    return values if len(values) == n else None


def fast_rows(recs: Records, rows_idx: np.ndarray, tag_pos: np.ndarray, whole: bool,
              slow: np.ndarray | None = None) -> tuple[list[dict[str, Any]], list[bool], np.ndarray]:
    """The records :func:`fast_items` takes, as dicts of their items (one per record, in order).

    Nested keys are joined by :data:`NEST` (a key part holding it, or a
    record holding a key twice, is left to protobuf). Returns the rows,
    whether each row has a nested key, and the mask over ``rows_idx`` of the
    records left to protobuf; every record goes to protobuf if a value is
    not JSON.
    """
    items = fast_items(recs, rows_idx, tag_pos, whole, slow)
    slow = items.slow
    values = decode_values(recs, items)
    if values is None:
        slow[:] = True
        return [], [], slow
    names = [NEST.join(p) for p in items.paths]
    odd = {i for i, p in enumerate(items.paths) if any(NEST in part for part in p)}
    counts = np.bincount(items.rec, minlength=len(rows_idx))
    rows, nested = [], []
    at = 0
    for r in np.flatnonzero(~slow).tolist():
        k = int(counts[r])
        ids = items.pid[at:at + k].tolist()
        row = dict(zip([names[i] for i in ids], values[at:at + k]))
        at += k
        if len(row) < k or odd.intersection(ids):
            slow[r] = True
            continue
        rows.append(row)
        nested.append(any(len(items.paths[i]) > 1 for i in ids))
    return rows, nested, slow


# --- keys told apart by their bytes ------------------------------------------------

def key_codes(data: bytearray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the byte strings ``data[lo:hi]``: equal codes for equal bytes.

    Returns ``(code, first)``: the code of each string (0 .. k-1 for k
    distinct strings) and, per code, the index of one string having it. The
    strings are read eight bytes at a time and hashed with numpy; the codes
    are then checked against the bytes, and recomputed with Python's dict
    should two different strings share a hash.
    """
    n = len(data)
    length = hi - lo
    if not len(lo) or int(hi.max()) + 8 > n:  # no 8-byte read may pass the end (framing pads the data)
        return _codes_by_dict(data, lo, hi)
    words = np.ndarray((n - 7,), "<u8", data, strides=(1,))  # the 8 bytes at each offset
    cols = [length.astype(np.uint64)]
    h = cols[0] * np.uint64(0x9E3779B97F4A7C15)
    for k in range(0, int(length.max()), 8):
        if k:  # a string shorter than k + 1 bytes reads none
            w = words[np.minimum(lo + k, hi)] & _MASKS[np.minimum(np.maximum(length - k, 0), 8)]
        else:
            w = words[lo] & _MASKS[np.minimum(length, 8)]
        cols.append(w)
        h ^= w
        h *= np.uint64(0x100000001B3)
    # The distinct hashes: those of the first strings, then of any others (keys repeat).
    uniq = np.unique(h[:4096])
    code = np.minimum(np.searchsorted(uniq, h), len(uniq) - 1)
    new = uniq[code] != h
    if new.any():
        uniq = np.union1d(uniq, h[new])
        code = np.searchsorted(uniq, h)
    first = np.empty(len(uniq), np.int64)
    first[code] = np.arange(len(h))
    rep = first[code]
    if all(np.array_equal(c, c[rep]) for c in cols):
        return code, first
    return _codes_by_dict(data, lo, hi)


_MASKS = np.array([(1 << (8 * i)) - 1 for i in range(8)] + [(1 << 64) - 1], np.uint64)  # the low i bytes


def _codes_by_dict(data: bytearray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    seen: dict[bytes, int] = {}
    code = np.fromiter((seen.setdefault(bytes(data[s:e]), len(seen)) for s, e in zip(lo.tolist(), hi.tolist())),
                       np.int64, count=len(lo))
    first = np.empty(len(seen), np.int64)
    first[code[::-1]] = np.arange(len(code))[::-1]
    return code, first


def key_path(data: bytearray, head: int, end: int) -> tuple[str, ...] | None:
    """The parts of the key whose first part header is at ``head`` (None: not UTF-8)."""
    parts = []
    p = head
    while p < end:
        length = data[p + 1]
        try:
            parts.append(data[p + 2:p + 2 + length].decode())
        except UnicodeDecodeError:
            return None
        p += 2 + length
    return tuple(parts)
