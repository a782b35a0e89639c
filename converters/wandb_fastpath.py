"""The fast path of the ``.wandb`` reader: records found and decoded without protobuf.

Decoding every record with protobuf and every history value with
``json.loads`` costs tens of microseconds per history row. Here instead the
reader's C kernel (``converters/_wbscan.c``, module
``tbx.converters._wbscan``) takes all records of a kind in one call:

- :func:`record_fields` finds each record's kind (the field number of
  Record's ``record_type`` oneof) without parsing it: wandb-core writes the
  oneof after the other fields (``num``, and ``control``, ``uuid`` and
  ``_info`` where set), so the common shape is ``num`` then a one-byte tag;
  others are scanned past those leading fields;
- :func:`scan_items` walks the items (keys and ``value_json``) of history or
  summary records, gives every distinct key a code (so that each is
  decoded once, :func:`fast_items`) and, for the history, reads each value
  that is a plain JSON number while its bytes are in the cache; for a
  summary it keeps only the last item of each key (a run writes one or two
  summary records per history row, each repeating most keys);
- :func:`json_numbers` reads JSON numbers exactly as ``json.loads`` does
  (a correctly rounded conversion; the rare hard case goes to Python's own
  ``float``); every other value (text, objects, big ints) is decoded by
  ``json.loads`` (:func:`decode_values`).

Each kernel function has a pure twin here (``*_pure``: numpy and Python,
slower) that returns the same bytes; ``TBX_PURE=1``, or a kernel that was
not built, runs the twins (``tests/test_wbscan.py`` compares them).

Every record the fast path cannot prove it understands (typed values, very
long values or keys, keys that are not UTF-8) is left to protobuf
(:mod:`tbx.converters.wandb_file`), so both paths give the same rows (the
tests compare them). A 100,000-row run (91 MB) is read in about 0.2 s on a
shared 2-core machine, against about 4.4 s for wandb 0.22's Python reader
(``datastore``) with protobuf and ``json.loads`` per value
(``benchmarks/sync_wandb.py``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any

import numpy as np

from tbx.converters.wandb_framing import Records, _kernel

# Field numbers of Record's ``record_type`` oneof that the fast paths find.
FIELD_HISTORY = 2
FIELD_SUMMARY = 3
# Record's fields outside the oneof: num, control, uuid, _info.
_LEADING_FIELDS = frozenset({1, 16, 19, 200})



def _uvarint(buf: Any, p: int, end: int) -> tuple[int, int]:
    """A varint at ``p``: ``(value, next position)``; ``(-1, end)`` if it runs past ``end``."""
    value = shift = 0
    while p < end and shift < 64:
        b = buf[p]
        p += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value & 0x7FFFFFFFFFFFFFFF, p  # as the C kernel keeps it
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
            if length < 0 or length > end - q:
                break
            p = q + length
        elif wire in (1, 5):
            p = q + (8 if wire == 1 else 4)
        else:
            break
    return end, 0


def record_fields(recs: Records) -> tuple[np.ndarray, np.ndarray]:
    """Position of the ``record_type`` tag and its field number, for each record (see :func:`record_fields_pure`)."""
    pos, field = _record_fields(recs.data, np.ascontiguousarray(recs.starts, np.int64),
                                np.ascontiguousarray(recs.ends, np.int64))
    return np.frombuffer(pos, np.int64), np.frombuffer(field, np.int64)


def record_fields_pure(data: Any, starts: np.ndarray, ends: np.ndarray) -> tuple[bytearray, bytearray]:
    """The twin of the C ``record_fields``: where each record's ``record_type`` tag is, and its field number.

    The common shape, ``num`` then a one-byte tag, is found for all records at
    once; the others (records with ``control`` or ``_info`` first, or a field
    number over 15) are scanned one by one. Bytes (int64 arrays) out.
    """
    a = np.frombuffer(data, np.uint8)
    n = len(a)
    if not len(starts):
        return bytearray(), bytearray()
    if not n:  # no bytes: no field anywhere (records can only be empty)
        return bytearray(np.asarray(ends, np.int64).tobytes()), bytearray(bytes(8 * len(starts)))
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
        p[i], field[i] = _oneof_field(data, int(starts[i]), int(ends[i]))
    return bytearray(p.astype(np.int64).tobytes()), bytearray(field.tobytes())


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


def scan(data: bytearray, starts: np.ndarray, ends: np.ndarray, tag_pos: np.ndarray, whole: bool,
         slow: np.ndarray | None = None) -> Scan:
    """Find the items of the History/SummaryRecords ``data[starts[r]:ends[r]]``, whose tag is at ``tag_pos[r]``.

    A record qualifies (is not ``slow``) when each of its items (field 1) is
    a key (``key``, or ``nested_key`` parts shorter than 128 bytes) and a
    non-empty ``value_json`` shorter than 16 KiB, and nothing but
    HistoryRecord.step (nothing at all if ``whole``) follows the items.
    ``slow`` marks records known not to qualify. Headers are read as 16- or
    32-bit words at any offset: one gather reads a tag and the varint after it.
    """
    n = len(data)
    a = np.frombuffer(data, np.uint8)
    u16 = np.ndarray((n - 1,), "<u2", data, strides=(1,))
    u32 = np.ndarray((n - 3,), "<u4", data, strides=(1,))
    sub_len, size = _varints(a, tag_pos + 1)
    sub_start = tag_pos + 1 + size
    sub_end = sub_start + sub_len
    unfit = (size == 0) | (sub_end > ends) | (sub_start - starts < 3)
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
    per_rec = np.zeros(len(starts), np.int64)
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
    and ``value_end`` (its ``value_json`` in the data), and ``numbers``
    when the scan read them.
    """

    slow: np.ndarray
    rec: np.ndarray
    pid: np.ndarray
    paths: list[tuple[str, ...]]
    value_start: np.ndarray
    value_end: np.ndarray
    numbers: tuple[np.ndarray, np.ndarray] | None = None  # (number, kind) of json_numbers, if asked for


def fast_items(recs: Records, rows_idx: np.ndarray, tag_pos: np.ndarray, whole: bool,
               slow: np.ndarray | None = None, last: bool = False, numbers: bool = False) -> Items:
    """:func:`scan_items` over the records ``rows_idx``, then each distinct key decoded once.

    A record with a key that is not UTF-8 is left to protobuf (which
    reports it). With ``last``, only the last item of each key in each
    segment (the records between two left to protobuf), a segment's keys in
    order of first appearance. With ``numbers`` (not with ``last``), the
    items' values as :func:`json_numbers` reads them come too.
    """
    data = recs.data
    starts, ends = recs.starts[rows_idx], recs.ends[rows_idx]
    tag_pos = np.ascontiguousarray(tag_pos, np.int64)
    while True:
        out = scan_items(data, starts, ends, tag_pos, whole, None if slow is None else slow.view(np.uint8), last,
                         numbers)
        slow = np.frombuffer(out[0], np.uint8).view(bool)
        rec, code, value_start, value_end, heads, key_ends = (np.frombuffer(o, np.int64) for o in out[1:7])
        found = [key_path(data, h, e) for h, e in zip(heads.tolist(), key_ends.tolist())]
        bad = [c for c, p in enumerate(found) if p is None]
        if bad:
            slow[rec[np.isin(code, bad)]] = True
            continue
        ids: dict[tuple[str, ...], int] = {}
        pids = [ids.setdefault(p, len(ids)) for p in found]
        # Distinct key bytes are distinct paths (the kernel gives "key" and one-part "nested_key" one
        # code), so codes usually are the path ids already.
        pid = code if pids == list(range(len(pids))) else np.array(pids, np.int64)[code]
        decoded = (np.frombuffer(out[7], np.float64), np.frombuffer(out[8], np.uint8)) if numbers and not last else None
        return Items(slow, rec, pid, list(ids), value_start, value_end, decoded)


#: Kinds of decoded values (:func:`json_numbers`): not a plain JSON number, a float, an int within ±2**53.
OTHER, FLOAT, INT = 0, 1, 2
_MAX_EXACT_INT = 2 ** 53
_NAN = json.loads("NaN")  # json's own NaN object, so that rows compare equal as json.loads' do


class Values:
    """Decoded ``value_json`` of many items, mostly as arrays; ``values[i]`` is ``json.loads`` of item i.

    ``number`` and ``kind`` come from :func:`json_numbers`; ``other`` holds
    the decoded values of the items of kind :data:`OTHER` (strings, objects,
    booleans, ints beyond float64, ...), by item.
    """

    def __init__(self, number: np.ndarray, kind: np.ndarray, other: dict[int, Any]) -> None:
        self.number, self.kind, self.other = number, kind, other

    @classmethod
    def of_list(cls, values: list[Any]) -> Values:
        """Values already decoded (e.g. by protobuf's path), classified as :func:`json_numbers` would."""
        number = np.zeros(len(values))
        kind = np.zeros(len(values), np.uint8)
        other: dict[int, Any] = {}
        for i, v in enumerate(values):
            t = type(v)
            if t is float:
                number[i], kind[i] = v, FLOAT
            elif t is int and -_MAX_EXACT_INT <= v <= _MAX_EXACT_INT:
                number[i], kind[i] = v, INT
            else:
                other[i] = v
        return cls(number, kind, other)

    def __len__(self) -> int:
        return len(self.kind)

    def __getitem__(self, i: int) -> Any:
        k = self.kind[i]
        if k == FLOAT:
            v = float(self.number[i])
            return _NAN if v != v else v
        if k == INT:
            return int(self.number[i])
        return self.other[i]

    def tolist(self) -> list[Any]:
        out = self.number.tolist()
        for i in np.flatnonzero(np.isnan(self.number)).tolist():
            out[i] = _NAN
        for i in np.flatnonzero(self.kind == INT).tolist():
            out[i] = int(out[i])
        for i, v in self.other.items():
            out[i] = v
        return out

    def take(self, at: np.ndarray) -> Values:
        """The values of items ``at``, in that order."""
        where = np.full(len(self.kind), -1, np.int64)
        where[at] = np.arange(len(at))
        other = {int(where[i]): v for i, v in self.other.items() if where[i] >= 0}
        return Values(self.number[at], self.kind[at], other)

    def concat(self, more: Values) -> Values:
        n = len(self.kind)
        other = dict(self.other)
        other.update((n + i, v) for i, v in more.other.items())
        return Values(np.concatenate([self.number, more.number]), np.concatenate([self.kind, more.kind]), other)


def decode_values(recs: Records, items: Items) -> tuple[Values, list[int]]:
    """Every item's ``value_json``: plain numbers by :func:`json_numbers`, the rest by ``json.loads``.

    Returns the values and the items whose text is not JSON (their records
    should go to protobuf, which reports them).
    """
    data = recs.data
    if items.numbers is not None:
        number, kind = items.numbers
    else:
        raw_number, raw_kind = json_numbers(data, items.value_start, items.value_end)
        number, kind = np.frombuffer(raw_number, np.float64), np.frombuffer(raw_kind, np.uint8)
    other: dict[int, Any] = {}
    bad = []
    vs, ve = items.value_start, items.value_end
    for i in np.flatnonzero(kind == OTHER).tolist():
        try:
            other[i] = json.loads(data[vs[i]:ve[i]])
        except ValueError:
            bad.append(i)
    return Values(number, kind, other), bad


def fast_rows(recs: Records, rows_idx: np.ndarray, tag_pos: np.ndarray, whole: bool,
              slow: np.ndarray | None = None) -> tuple[list[dict[str, Any]], list[bool], np.ndarray]:
    """The records :func:`fast_items` takes, as dicts of their items (one per record, in order).

    Nested keys are joined by :data:`NEST` (a key part holding it, or a
    record holding a key twice, is left to protobuf). Returns the rows,
    whether each row has a nested key, and the mask over ``rows_idx`` of the
    records left to protobuf, as are records with a value that is not JSON.
    """
    while True:
        items = fast_items(recs, rows_idx, tag_pos, whole, slow)
        slow = items.slow
        decoded, bad = decode_values(recs, items)
        if not bad:
            break
        slow[items.rec[bad]] = True
    values = decoded.tolist()
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


# --- the kernel: C, or the twin below -----------------------------------------------

def scan_items_pure(data: bytearray, starts: np.ndarray, ends: np.ndarray, tag_pos: np.ndarray, whole: bool,
                    slow: np.ndarray | None, last: bool, numbers: bool) -> tuple[bytearray, ...]:
    """The twin of the C ``scan_items``: :func:`scan`, then :func:`key_codes`, codes renumbered
    in order of first appearance (then, with ``last``, :func:`last_items`; with ``numbers``,
    :func:`json_numbers_pure`); the same bytes out."""
    data = bytearray(data) + bytes(16)  # the C kernel reads zeros past the end; numpy's reads clamp
    sc = scan(data, np.asarray(starts, np.int64), np.asarray(ends, np.int64), np.asarray(tag_pos, np.int64),
              bool(whole), None if slow is None else np.asarray(slow).astype(bool))
    keep = ~sc.slow[sc.rec]
    rec, head, key_end = sc.rec[keep], sc.key_head[keep], sc.key_end[keep]
    if len(rec):
        code, _ = key_codes(data, head + 1, key_end)  # after the first tag: key "x" is nested_key ["x"]
        _, first = np.unique(code, return_index=True)  # first item of each code
        order = np.argsort(first)
        renumber = np.empty(len(order), np.int64)
        renumber[order] = np.arange(len(order))
        code, firsts = renumber[code], first[order]
    else:
        code = firsts = np.empty(0, np.int64)
    value_start, value_end = sc.value_start[keep], sc.value_end[keep]
    if last:
        at = last_items(sc.slow, rec, code)
        rec, code, value_start, value_end = rec[at], code[at], value_start[at], value_end[at]
    number, kind = (json_numbers_pure(data, value_start, value_end) if numbers and not last
                    else (bytearray(), bytearray()))
    return tuple(bytearray(np.ascontiguousarray(x, dtype).tobytes()) for x, dtype in (
        (sc.slow, np.uint8), (rec, np.int64), (code, np.int64), (value_start, np.int64),
        (value_end, np.int64), (head[firsts], np.int64), (key_end[firsts], np.int64))) + (number, kind)


def last_items(slow: np.ndarray, rec: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Of items ``rec``/``code`` (in record order), the last of each code in each segment of
    records between two ``slow`` ones: segments in order, a segment's codes by first appearance."""
    if not len(rec):
        return np.empty(0, np.int64)
    seg = np.cumsum(slow)[rec]
    key = seg * (int(code.max()) + 1) + code
    order = np.argsort(key, kind="stable")
    k = key[order]
    starts = np.flatnonzero(np.concatenate([[True], k[1:] != k[:-1]]))
    ends = np.append(starts[1:], len(k))
    first, lastof = order[starts], order[ends - 1]
    return lastof[np.argsort(first, kind="stable")]


_JSON_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_CONSTANTS = {b"NaN": math.nan, b"Infinity": math.inf, b"-Infinity": -math.inf}


def json_numbers_pure(data: bytearray, starts: np.ndarray, ends: np.ndarray) -> tuple[bytearray, bytearray]:
    """The twin of the C ``json_numbers``: each text's (value, kind) as ``json.loads`` reads it.

    Kind :data:`FLOAT` (value: ``float(text)``) for a JSON number with a
    fraction or an exponent and for ``NaN``/``±Infinity``; :data:`INT` for
    an integer within ±2**53 (exact as float64); :data:`OTHER` (value 0.0)
    for anything else, left to ``json.loads``.
    """
    number = np.zeros(len(starts))
    kind = np.zeros(len(starts), np.uint8)
    for i, (s, e) in enumerate(zip(np.asarray(starts).tolist(), np.asarray(ends).tolist())):
        text = bytes(data[s:e])
        if text in _CONSTANTS:
            number[i], kind[i] = _CONSTANTS[text], FLOAT
            continue
        m = _JSON_NUMBER.fullmatch(text)
        if m is None:
            continue
        if m.group(1) is None and m.group(2) is None:
            if len(text.lstrip(b"-")) > 16:  # beyond 2**53 (and int() refuses over 4300 digits)
                continue
            v = int(text)
            if abs(v) <= _MAX_EXACT_INT:
                number[i], kind[i] = v, INT
        else:
            number[i], kind[i] = float(text), FLOAT
    return bytearray(number.tobytes()), bytearray(kind.tobytes())


scan_items = _kernel.scan_items if _kernel is not None else scan_items_pure
_record_fields = _kernel.record_fields if _kernel is not None else record_fields_pure
json_numbers = _kernel.json_numbers if _kernel is not None else json_numbers_pure


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
