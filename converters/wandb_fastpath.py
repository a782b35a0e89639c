"""The fast path of the ``.wandb`` reader: records found and decoded without protobuf.

Decoding every record with protobuf and every history value with
``json.loads`` costs tens of microseconds per history row. Here instead:

- :func:`record_fields` finds each record's kind (the field number of
  Record's ``record_type`` oneof) without parsing it: wandb-core writes the
  oneof after the other fields (``num``, and ``control``, ``uuid`` and
  ``_info`` where set), so the common shape, ``num`` then a one-byte tag, is
  read for all records at once with numpy, and the others are scanned one by
  one past those leading fields;
- :func:`fast_rows` turns the items (keys and ``value_json``) of many history
  or summary records into JSON text in a copy — the protobuf framing bytes
  are overwritten with JSON punctuation and spaces — so that one
  ``json.loads`` call decodes all rows.

Every record the fast path cannot prove it understands (typed values, very
long values, odd keys, records split over blocks) is left to protobuf
(:mod:`tbx.converters.wandb_file`), so both paths give the same rows (the
tests compare them). On a 2-core machine a 100,000-row run (40 MB: each row
also writes two summary records) reads in about 0.8 s of CPU, against about
3 s for protobuf plus ``json.loads`` per value, and about 18 s for ``wandb
leet inspect --json`` (wandb 0.31's own reader; its Python ``datastore``
module is gone) plus ``json.loads`` per line.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from tbx.converters.wandb_framing import Records

# Field numbers of Record's ``record_type`` oneof that the fast paths find.
FIELD_HISTORY = 2
FIELD_SUMMARY = 3
# Record's fields outside the oneof: num, control, uuid, _info.
_LEADING_FIELDS = frozenset({1, 16, 19, 200})

_SPACE, _COMMA, _QUOTE, _COLON = 0x20, 0x2C, 0x22, 0x3A


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


def joined_field(payload: bytes) -> int:
    """The ``record_type`` field number of one record's payload (0 if it has none)."""
    return _oneof_field(payload, 0, len(payload))[1]


#: Joins the parts of a nested key in fast-path rows (a key part with a quote goes the slow way).
NEST = '"'


def _varints(a: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Value and size of one- or two-byte varints at ``p`` (size 0: longer, or past the end)."""
    n = len(a)
    b0 = a[np.minimum(p, n - 1)].astype(np.int64)
    b1 = a[np.minimum(p + 1, n - 1)].astype(np.int64)
    size = np.where(b0 < 0x80, 1, np.where(b1 < 0x80, 2, 0))
    return np.where(b0 < 0x80, b0, (b0 & 0x7F) | b1 << 7), size


def fast_rows(recs: Records, rows_idx: np.ndarray, tag_pos: np.ndarray, whole: bool,
               slow: np.ndarray | None = None) -> tuple[list[dict[str, Any]], list[bool], np.ndarray]:
    """Decode the item lists of records ``rows_idx`` with one ``json.loads``.

    The records are History/SummaryRecords whose tag is at ``tag_pos``. A
    record qualifies when each of its items (field 1) is a key (``key``, or
    ``nested_key`` parts shorter than 128 bytes, without quotes or
    backslashes) and a ``value_json`` shorter than 16 KiB, and nothing but
    HistoryRecord.step (nothing at all if ``whole``) follows the items. The
    protobuf framing bytes of the qualifying records are overwritten, in a
    copy, with JSON punctuation and spaces — every record becomes an object,
    a nested key ``["a", "b"]`` the string ``a\\"b`` — and ``json.loads``
    reads them all.

    Returns the rows of the qualifying records in order (nested keys joined
    by :data:`NEST`), whether each row has a nested key, and a mask over
    ``rows_idx`` of the records left for the protobuf path (``slow`` marks
    records known not to qualify).
    """
    data, a = recs.data, np.frombuffer(recs.data, np.uint8)
    n = len(a)
    starts = recs.starts[rows_idx]
    sub_len, size = _varints(a, tag_pos + 1)
    sub_start = tag_pos + 1 + size
    sub_end = sub_start + sub_len
    unfit = (size == 0) | (sub_end > recs.ends[rows_idx]) | (sub_start - starts < 3)
    slow = unfit if slow is None else slow | unfit
    # Walk the items of all records at once: round k finds every record's k-th item.
    rounds = []
    cur = sub_start.copy()
    active = np.flatnonzero(~slow)
    while active.size:
        c = cur[active]
        inside = (c + 1 < sub_end[active]) & (a[np.minimum(c, n - 1)] == 0x0A)
        active, c = active[inside], c[inside]
        length, size = _varints(a, c + 1)
        slow[active[size == 0]] = True
        good = size > 0
        active, c, length, size = active[good], c[good], length[good], size[good]
        rounds.append((active, c, size))
        cur[active] = c + 1 + size + length
    rest = sub_end - cur
    if whole:
        slow |= rest != 0
    else:  # only HistoryRecord.step (field 2) may follow the items
        c = np.minimum(cur, n - 2)
        slow |= (rest != 0) & ((a[c] != 0x12) | (a[c + 1] >= 0x80) | (rest != 2 + a[c + 1]))
    # Items in record order: record r's k-th item goes to first_item[r] + k.
    per_rec = np.zeros(len(rows_idx), np.int64)
    for active, _, _ in rounds:
        per_rec[active] += 1
    first_item = np.cumsum(per_rec) - per_rec
    count = int(per_rec.sum())
    rec, pos, head = np.empty(count, np.int64), np.empty(count, np.int64), np.empty(count, np.int64)
    for k, (active, c, size) in enumerate(rounds):
        at = first_item[active] + k
        rec[at], pos[at], head[at] = active, c, 1 + size
    item_end = np.empty(count, np.int64)
    item_end[:] = pos + head + _varints(a, pos + 1)[0]
    # Key parts: "\x12 len text" (nested_key) repeated, or one "\x0a len text" (key).
    p = pos + head
    ok = np.ones(count, bool)
    seps = []  # headers of the second and later parts: they become \"
    going = np.arange(count)
    for depth in range(16):
        q = p[going]
        t = a[np.minimum(q, n - 1)]
        part = (t == 0x12) | ((t == 0x0A) if depth == 0 else False)
        part &= q + 1 < item_end[going]
        if depth == 0:
            ok[going[~part]] = False
        going, q, t = going[part], q[part], t[part]
        if not going.size:
            break
        plen = a[q + 1].astype(np.int64)
        ok[going[plen >= 0x80]] = False
        if depth:
            seps.append((going, q))
        p[going] = q + 2 + plen
        going = going[t == 0x12]  # a "key" has one part
    else:
        ok[going] = False
    key_start, key_end = pos + head + 2, p
    ke = np.minimum(key_end, n - 4)
    value_len, value_size = _varints(a, ke + 2)
    ok &= (key_end + 4 <= n) & (a[ke] == 0x82) & (a[ke + 1] == 0x01) & (value_size > 0)
    ok &= key_end + 2 + value_size + value_len == item_end
    slow[rec[~ok]] = True
    fast_recs = np.flatnonzero(~slow)
    if not fast_recs.size:
        return [], [], slow
    keep = ~slow[rec]
    # Copy the fast records (from their first byte to their last item) together.
    first = starts[fast_recs]
    last = cur[fast_recs]
    view = memoryview(data)
    buf = bytearray(b"".join(map(view.__getitem__, map(slice, first.tolist(), last.tolist()))))
    size = last - first
    base = np.cumsum(size) - size
    shift = np.zeros(len(rows_idx), np.int64)
    shift[fast_recs] = base - first
    b = np.frombuffer(buf, np.uint8)  # writable: buf is a bytearray
    rec_k = rec[keep]
    q = pos[keep] + shift[rec_k]  # item starts in buf
    ks = key_start[keep] + shift[rec_k]
    k = key_end[keep] + shift[rec_k]
    # A quote or backslash inside a key would not survive as JSON text.
    marks = np.flatnonzero((b == _QUOTE) | (b == 0x5C))
    if marks.size:
        i = np.maximum(np.searchsorted(q, marks, side="right") - 1, 0)
        in_key = (marks >= ks[i]) & (marks < k[i])
        if in_key.any():
            del b
            slow[rec_k[i[in_key]]] = True
            return fast_rows(recs, rows_idx, tag_pos, whole, slow)
    # Each record's prefix (num, tag, length, ...: at least 3 bytes) becomes "},{" and spaces.
    prefix = sub_start[fast_recs] - first
    for j in range(3, int(prefix.max())):
        b[(base + j)[j < prefix]] = _SPACE
    b[base] = ord("}")
    b[base + 1] = _COMMA
    b[base + 2] = ord("{")
    b[0] = _SPACE
    b[1] = ord("[")
    # Each item: its header and the first part's header -> spaces, then "," (" "
    # for a row's first item) and '"'; later parts' headers -> \"; the value's
    # header -> '":' and spaces.
    row_first = np.ones(len(rec_k), bool)
    row_first[1:] = rec_k[1:] != rec_k[:-1]
    b[q] = _SPACE
    b[q + 1] = _SPACE
    b[q + 2] = _SPACE
    b[ks - 2] = np.where(row_first, _SPACE, _COMMA)
    b[ks - 1] = _QUOTE
    nested = np.zeros(len(rows_idx), bool)
    for going, at in seps:
        fast = ~slow[rec[going]]
        at = at[fast] + shift[rec[going[fast]]]
        b[at] = 0x5C
        b[at + 1] = _QUOTE
        nested[rec[going[fast]]] = True
    b[k] = _QUOTE
    b[k + 1] = _COLON
    b[k + 2] = _SPACE
    b[(k + 3)[value_size[keep] == 2]] = _SPACE
    del b
    buf += b"}]"
    try:
        rows = json.loads(buf)
    except ValueError:  # a value that is not JSON: let protobuf sort it out
        slow[:] = True
        return [], [], slow
    if len(rows) != len(fast_recs):
        slow[:] = True
        return [], [], slow
    lens = np.fromiter(map(len, rows), np.int64, count=len(rows))
    repeated = lens != per_rec[fast_recs]
    if repeated.any():  # a key twice in one record: leave the record to protobuf
        slow[fast_recs[repeated]] = True
        rows = [r for r, bad in zip(rows, repeated.tolist()) if not bad]
    return rows, nested[~slow].tolist(), slow
