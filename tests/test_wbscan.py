"""tbx.converters._wbscan, the C kernel of the ``.wandb`` reader, against its pure twins, byte for byte:
property tests over well-formed and damaged inputs, hand-written edge cases, and one file read end to end
through each (walk_chunks_pure in wandb_framing; record_fields_pure, scan_items_pure, json_numbers_pure)."""

import json
import os
import math
import struct
import zlib
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

_wbscan = pytest.importorskip(
    "tbx.converters._wbscan",
    reason="the C kernel tbx.converters._wbscan is not built (python setup.py build_ext --inplace)")

from tbx.converters import wandb_fastpath as fastpath  # noqa: E402
from tbx.converters import wandb_file as wf  # noqa: E402
from tbx.converters import wandb_framing as framing  # noqa: E402

BLOCK, CHUNK = framing.BLOCK_SIZE, framing.CHUNK_HEADER_SIZE
FULL, FIRST, MIDDLE, LAST = framing.FULL, framing.FIRST, framing.MIDDLE, framing.LAST
I64, U8 = np.int64, np.uint8
WALK_TYPES = (I64, I64, U8, U8, I64, U8, I64)
SCAN_TYPES = (U8, I64, I64, I64, I64, I64, I64, np.float64, U8)


def examples(n):
    return settings(deadline=None, max_examples=n,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def i64(xs):
    return np.ascontiguousarray(xs, np.int64)


def assert_same(name, c, twin, dtypes, what=""):
    """The kernel's and the twin's outputs, byte for byte (shown decoded when they differ)."""
    assert len(c) == len(twin) == len(dtypes)
    for i, (x, y, dtype) in enumerate(zip(c, twin, dtypes)):
        assert isinstance(x, bytearray) and isinstance(y, bytearray), (name, i, type(x), type(y))
        assert bytes(x) == bytes(y), (f"{name}: output {i} differs {what}\n  C:    {np.frombuffer(x, dtype)!r}"
                                      f"\n  twin: {np.frombuffer(y, dtype)!r}")


def varint(v):
    out = b""
    while v > 0x7F:
        out, v = out + bytes([v & 0x7F | 0x80]), v >> 7
    return out + bytes([v])


def ld(tag, body):
    """A length-delimited field: its tag byte(s), length and body."""
    return tag + varint(len(body)) + body


def spans(parts, sep=b""):
    """The parts joined (by ``sep``): the data and each part's [start, end)."""
    data, starts, ends = bytearray(), [], []
    for p in parts:
        data += sep
        starts.append(len(data))
        data += p
        ends.append(len(data))
    return data, i64(starts), i64(ends)


# --- walk_chunks ------------------------------------------------------------------

def append_record(out, payload):
    """Frame one record at the end of ``out`` (FULL, or FIRST, MIDDLE... LAST), as wandb-core's writer does."""
    kind = None
    while kind not in (FULL, LAST):
        left = BLOCK - len(out) % BLOCK
        if left < CHUNK:  # a block tail too short for a chunk header: zero padding
            out += bytes(left)
            continue
        part, payload = payload[:left - CHUNK], payload[left - CHUNK:]
        kind = (FIRST if payload else FULL) if kind is None else (MIDDLE if payload else LAST)
        out += struct.pack("<IHB", zlib.crc32(bytes([kind]) + part), len(part), kind) + part


def walk_both(data, lo, hi, what=""):
    c = _wbscan.walk_chunks(data, lo, hi)
    assert_same("walk_chunks", c, framing.walk_chunks_pure(data, lo, hi), WALK_TYPES, what)
    return [np.frombuffer(x, t) for x, t in zip(c, WALK_TYPES)]


def nblocks(data):
    return (len(data) + BLOCK - 1) // BLOCK


# A record: ("size", n) bytes, or ("tail", gap) sized to end gap (0..6) bytes before its block's end.
record_specs = st.lists(st.one_of(
    st.tuples(st.just("size"), st.integers(0, 300) | st.integers(BLOCK // 2, 3 * BLOCK)),
    st.tuples(st.just("tail"), st.integers(0, CHUNK - 1))), min_size=1, max_size=8)
damage = st.lists(st.tuples(st.sampled_from(["flip", "type", "length", "zero", "cut", "zeros"]),
                            st.integers(0, 2 ** 32), st.integers(0, 0xFFFF)), max_size=3)


def frame_log(payloads):
    out = bytearray(framing.HEADER)
    for p in payloads:
        append_record(out, p)
    return out


def build_log(specs, seed):
    rng = np.random.default_rng(seed)
    out, sizes = bytearray(framing.HEADER), []
    for kind, n in specs:
        sizes.append(n if kind == "size" else max(BLOCK - len(out) % BLOCK - CHUNK - n, 0))
        append_record(out, rng.bytes(sizes[-1]))
    return out, sizes


def damaged(data, ops):
    data = bytearray(data)
    off = np.frombuffer(framing.walk_chunks_pure(data, 0, nblocks(data))[0], np.int64)
    for op, at, v in ops:
        p, o = at % len(data), int(off[at % len(off)])
        if o + CHUNK > len(data):  # cut off by an earlier op
            continue
        if op == "flip":
            data[p] ^= v % 255 + 1  # the checksum fails (or a header changes)
        elif op == "type":
            data[o + 6] = v & 0xFF
        elif op == "length":
            data[o + 4:o + 6] = struct.pack("<H", v)
        elif op == "zero":
            data[o:o + CHUNK] = bytes(CHUNK)
        elif op == "cut":
            del data[max(p, len(framing.HEADER)):]
        else:  # space never filled: zeros at the end, maybe with a stray byte after them
            data += bytes(v % 3000) + (b"\x01" if v & 1 else b"")
    return data


@examples(60)
@given(specs=record_specs, seed=st.integers(0, 2 ** 32), ops=damage, lo=st.integers(-3, 12), hi=st.integers(-3, 12))
def test_walk_chunks(specs, seed, ops, lo, hi):
    data, sizes = build_log(specs, seed)
    off, length, kind, ok, stop_off, _, _ = walk_both(data, 0, nblocks(data), "(intact)")
    assert ok.all() and not len(stop_off)
    assert np.count_nonzero((kind == FULL) | (kind == FIRST)) == len(sizes) and length.sum() == sum(sizes)
    bad = damaged(data, ops)
    walk_both(bad, 0, nblocks(bad), f"(damaged by {ops})")
    walk_both(bytes(bad), lo, hi, f"(damaged by {ops}, blocks {lo}..{hi})")


def test_walk_chunks_edges():
    one = frame_log([b"r" * (BLOCK - CHUNK - len(framing.HEADER) - 3), b"after the 3-byte padding"])
    assert one[BLOCK - 3:BLOCK] == bytes(3)
    x, head = bytes(frame_log([b"x"])), bytes(framing.HEADER)
    cut, zeroed, too_long, bad_type = (framing.STOP_CUT, framing.STOP_ZEROED, framing.STOP_TOO_LONG,
                                       framing.STOP_BAD_TYPE)
    cases = {  # file -> why each block stopped
        b"": [], head: [], head + b"\x01\x02\x03": [cut], bytes(frame_log([b"a" * 70_000])): [],
        bytes(one): [], bytes(one[:BLOCK]): [cut], bytes(one[:BLOCK - 1]): [cut],  # padding at the end: cut
        x + bytes(500): [cut], x + bytes(500) + b"\x01": [zeroed], x + bytes(BLOCK) + b"\x01": [zeroed, zeroed],
        x + b"\0\0\0\0\xff\xff\x01": [cut], x + b"\0\0\0\0\xff\xff\x01" + bytes(BLOCK): [too_long, cut],
        x + b"\0\0\0\0\x00\x00\x09": [bad_type]}
    for data, whys in cases.items():
        for lo, hi in ((0, nblocks(data)), (-5, 10 ** 6), (1, 2), (3, 1), (10 ** 6, 10 ** 6 + 2)):
            got = walk_both(data, lo, hi, f"(file of {len(data)} bytes, blocks {lo}..{hi})")
            if (lo, hi) == (0, nblocks(data)):
                assert got[5].tolist() == whys, data[-20:]
    fig = frame_log([b"a" * 70_000])
    kinds = walk_both(fig, 0, nblocks(fig))[2]
    assert kinds.tolist() == [FIRST, MIDDLE, LAST]


# --- record_fields ------------------------------------------------------------------

tails = st.binary(max_size=12)
nums = st.integers(0, 2 ** 64 - 1).map(lambda v: b"\x08" + varint(v))
oneof_tags = st.integers(2, 300).map(lambda f: varint(f << 3 | 2))
leading = st.sampled_from([16, 19, 200]).flatmap(lambda f: st.one_of(
    st.binary(max_size=5).map(lambda b: ld(varint(f << 3 | 2), b)),  # the usual: a message
    st.integers(0, 2 ** 64 - 1).map(lambda v: varint(f << 3) + varint(v)),
    st.binary(min_size=8, max_size=8).map(lambda b: varint(f << 3 | 1) + b),
    st.binary(min_size=4, max_size=4).map(lambda b: varint(f << 3 | 5) + b),
    st.sampled_from([3, 4, 6, 7]).map(lambda w: varint(f << 3 | w)),  # groups, bad wire types
    st.just(varint(f << 3 | 2) + b"\x7f")))  # a length past the end
records = st.one_of(
    st.tuples(nums, oneof_tags, tails).map(b"".join),  # the common shape
    st.tuples(nums | st.just(b""), st.lists(leading, max_size=3).map(b"".join), oneof_tags, tails).map(b"".join),
    st.binary(max_size=24),
    st.just(b"\x08" + b"\xff" * 11 + b"\x12"),  # a varint of over 10 bytes
    st.just(b""))


@examples(200)
@given(recs=st.lists(records, min_size=1, max_size=12), cut=st.lists(st.integers(0, 4)), extra=st.data())
@example(recs=[b"\x08\x01\x12\x00", b"\x08\x96"], cut=[], extra=None)  # num running off the end of the data
def test_record_fields(recs, cut, extra):
    data, starts, ends = spans(recs, b"\x08")
    ends = np.maximum(starts, ends - i64((cut + [0] * len(recs))[:len(recs)]))  # records cut short
    if extra is not None:  # and any ranges of the data
        pairs = extra.draw(st.lists(st.tuples(st.integers(0, len(data)), st.integers(0, len(data))), max_size=4))
        starts = i64(starts.tolist() + [min(p) for p in pairs])
        ends = i64(ends.tolist() + [max(p) for p in pairs])
    fields_both(bytes(data), starts, ends)


def fields_both(data, starts, ends):
    c = _wbscan.record_fields(data, starts, ends)
    assert_same("record_fields", c, fastpath.record_fields_pure(data, starts, ends), (I64, I64), f"for {data!r}")
    return [np.frombuffer(x, I64) for x in c]


def test_record_fields_edges():
    pb = wf.schema()
    summary = pb.Record(summary=pb.SummaryRecord()).SerializeToString()
    recs = [pb.Record(num=7, history=pb.HistoryRecord()).SerializeToString(),  # 08 07 12 00
            pb.Record(num=300).SerializeToString() + b"\xc2\x0c\x02\x0a\x00" + summary,  # _info first
            b"\x82\x01\x00\x9a\x01\x01u" + summary,  # control and uuid, no num
            pb.Record(num=1, exit=pb.RunExitRecord(exit_code=3)).SerializeToString(),  # field 18: a 2-byte tag
            b"", b"\x08\x05", b"\xff\xff"]
    data, starts, ends = spans(recs)
    pos, field = fields_both(data, starts, ends)
    assert field.tolist() == [2, 3, 3, 18, 0, 0, 0]
    assert (pos - starts).tolist() == [2, 8, 7, 2, 0, 2, 2]


def test_record_fields_of_empty_data():
    """Empty data: no field anywhere (once a twin bug: it indexed a[-1] and raised)."""
    assert [x.tolist() for x in fields_both(b"", i64([0]), i64([0]))] == [[0], [0]]


# --- scan_items ---------------------------------------------------------------------

NAMES = [b"x", b"y", b"loss", b"a" * 7, b"b" * 8, b"c" * 9, b"d" * 16, b"k" * 127, b"m" * 128, b"", b"\xc3\xa9"]
VALUE_SIZES = [0, 1, 2, 7, 127, 128, 200, 16_300, 16_383, 16_384]


def sized(n):
    """A value_json of n bytes: digits, or a string when long (json.loads refuses ints of over 4300 digits)."""
    return b"7" * n if n < 100 else b'"' + b"s" * (n - 2) + b'"'


def key_bytes(key):
    """A key: ``b"x"`` as field ``key``, a tuple as ``nested_key`` parts."""
    return ld(b"\x0a", key) if isinstance(key, bytes) else b"".join(ld(b"\x12", p) for p in key)


def item_bytes(key, value, odd=0):
    body = key_bytes(key) + ld(b"\x82\x01", value)
    if odd == 1:  # the value before the key
        body = ld(b"\x82\x01", value) + key_bytes(key)
    elif odd == 2:  # a typed value too (HistoryItem.number)
        body += b"\x31" + struct.pack("<d", 1.5)
    return ld(b"\x0a", body)


def record_bytes(num, field, items, step=None, extra=b"", info=False):
    sub = b"".join(items) + (ld(b"\x12", b"\x08" + varint(step)) if step is not None else b"") + extra
    return b"\x08" + varint(num) + (b"\xc2\x0c\x02\x0a\x00" if info else b"") + ld(bytes([field << 3 | 2]), sub)


keys = st.one_of(st.sampled_from(NAMES),
                 st.lists(st.sampled_from(NAMES), min_size=1, max_size=17).map(tuple) | st.just((b"x",)))


def rarely(usual, *odd):
    return st.sampled_from([usual] * (8 * len(odd)) + list(odd))


@st.composite
def scan_inputs(draw):
    pool = draw(st.lists(keys, min_size=1, max_size=6))  # keys repeat across records, in any order
    recs, cuts = [], []
    for num in range(draw(st.integers(0, 8))):
        items = [item_bytes(draw(st.sampled_from(pool)),
                            draw(st.one_of((st.sampled_from(VALUE_SIZES) | st.integers(1, 40)).map(sized),
                                           texts.map(str.encode))),
                            draw(rarely(0, 1, 2)))
                 for _ in range(draw(st.integers(0, 5)))]
        step = draw(rarely(None, 0, 2 ** 40))
        extra = draw(rarely(b"", b"\x12", b"\x12\x05\x08", b"\x1a\x00", b"\x0a", b"\x0a\x00", b"\x00"))
        recs.append(record_bytes(num, draw(st.sampled_from([2, 3])), items, step, extra, draw(st.booleans()))
                    + draw(rarely(b"", b"\x28\x01")))  # a field of Record after the oneof
        cuts.append(draw(rarely(0, 1, 2, 3, 10)))
    data, starts, ends = spans(recs, draw(st.sampled_from([b"", b"\x00", b"\xff\x82"])))
    ends = np.maximum(starts, ends - i64(cuts))  # records cut short
    tag_pos = np.frombuffer(fastpath.record_fields_pure(data, starts, ends)[0], I64).copy()
    slow = draw(st.none() | st.lists(rarely(False, True), min_size=len(recs), max_size=len(recs)).map(
        lambda m: np.array(m, draw(st.sampled_from([bool, np.uint8])))))
    return data, starts, ends, tag_pos, draw(st.booleans()), slow, draw(st.booleans()), draw(st.booleans())


def scan_both(data, starts, ends, tag_pos, whole, slow, last, numbers=True):
    args = (data, i64(starts), i64(ends), i64(tag_pos), whole, slow, last, numbers)
    c = _wbscan.scan_items(*args)
    assert_same("scan_items", c, fastpath.scan_items_pure(*args), SCAN_TYPES,
                f"(whole={whole}, slow={slow}, last={last}, numbers={numbers}, {len(starts)} records)")
    got = [np.frombuffer(x, t) for x, t in zip(c, SCAN_TYPES)]
    # the values as json_numbers reads them, with numbers (and not last); else nothing
    expect = _wbscan.json_numbers(data, got[3], got[4]) if numbers and not last else (b"", b"")
    assert (bytes(c[7]), bytes(c[8])) == tuple(map(bytes, expect))
    return got


@examples(150)
@given(scan_inputs())
# Regression: the kernel once gave a code (and key_head/key_end) to the key of a record found slow
# after its items (here: a trailing byte); only the keys of the records taken get codes.
@example((b"\x08\x00\x12\x0a\x0a\x07\x0a\x01x\x82\x01\x017\x12", [0], [14], [2], False, None, False, False))
def test_scan_items(args):
    scan_both(*args)


def scan_records(recs, whole=True, slow=None, last=False, numbers=True):
    data, starts, ends = spans(recs)
    tag_pos = np.frombuffer(fastpath.record_fields_pure(data, starts, ends)[0], I64)
    return scan_both(data, starts, ends, tag_pos, whole, slow, last, numbers)


@pytest.mark.parametrize("whole", [True, False])
def test_scan_items_shapes(whole):
    """Which records the kernel takes: each of these is fast (0) or slow (1)."""
    v = b"1.5"
    cases = [
        (record_bytes(1, 2, [item_bytes(b"x", v)]), 0),
        (record_bytes(1, 2, [item_bytes((b"p",) * 16, v)]), 0),
        (record_bytes(1, 2, [item_bytes((b"p",) * 17, v)]), 1),  # more than 16 parts
        (record_bytes(1, 2, [item_bytes((b"k" * 127, b"q"), v)]), 0),
        (record_bytes(1, 2, [item_bytes((b"q", b"k" * 128), v)]), 1),  # a part of 128 bytes
        (record_bytes(1, 2, [item_bytes(b"x", b"")]), 1),  # an empty value_json
        (record_bytes(1, 2, [item_bytes(b"x", sized(16_000))]), 0),
        (record_bytes(1, 2, [item_bytes(b"x", sized(16_384))]), 1),  # a 3-byte length
        (record_bytes(1, 2, [item_bytes(b"x", v, odd=1)]), 1),
        (record_bytes(1, 2, [item_bytes(b"x", v, odd=2)]), 1),
        (record_bytes(1, 2, [item_bytes(b"x", v)], step=5), int(whole)),  # HistoryRecord.step
        (record_bytes(1, 2, [item_bytes(b"x", v)], extra=b"\x12\x01"), 1),
        (record_bytes(1, 2, []), 0),
        (record_bytes(1, 3, [item_bytes(b"x", v)], info=True), 0),
        (record_bytes(1, 2, [item_bytes(b"x", v)])[:-1], 1),  # cut short
    ]
    got = scan_records([r for r, _ in cases], whole)
    assert got[0].tolist() == [s for _, s in cases]


def test_scan_items_key_and_one_part_nested_key_share_a_code():
    recs = [record_bytes(0, 2, [item_bytes(b"x", b"1")]), record_bytes(1, 3, [item_bytes((b"x",), b"2")]),
            record_bytes(2, 2, [item_bytes((b"x", b"y"), b"3"), item_bytes(b"x", b"4")])]
    slow, rec, code, vs, ve, head, end, number, _ = scan_records(recs)
    assert not slow.any() and rec.tolist() == [0, 1, 2, 2] and code.tolist() == [0, 0, 1, 0]
    data = spans(recs)[0]
    assert [bytes(data[h:e]) for h, e in zip(head, end)] == [b"\x0a\x01x", b"\x12\x01x\x12\x01y"]
    assert [bytes(data[s:e]) for s, e in zip(vs, ve)] == [b"1", b"2", b"3", b"4"] and number.tolist() == [1, 2, 3, 4]


def test_scan_items_many_keys_in_random_order():
    """Thousands of distinct keys (the key table grows, its cache misses), repeated in random order."""
    rng = np.random.default_rng(5)
    names = [f"key/{i}/{'z' * (i % 20)}".encode() for i in range(3000)]
    recs = [record_bytes(r, 2, [item_bytes(names[k] if k % 3 else (names[k], b"n"), b"%d" % k)
                                for k in rng.integers(0, len(names), 40)]) for r in range(300)]
    for last, numbers in ((False, False), (False, True), (True, True)):
        slow = (rng.random(len(recs)) < 0.05).astype(np.uint8)
        got = scan_records(recs, slow=slow, last=last, numbers=numbers)
        assert (got[0] == slow).all() and len(got[5]) > 2000


def test_scan_items_last():
    """With ``last``: each key's last item per segment (records between slow ones), in order of first appearance."""
    recs = [record_bytes(0, 3, [item_bytes(b"a", b"1"), item_bytes(b"b", b"2")]),
            record_bytes(1, 3, [item_bytes(b"a", b"3")]),
            record_bytes(2, 3, [item_bytes(b"a", b"")]),  # slow: ends the segment
            record_bytes(3, 3, [item_bytes(b"b", b"4"), item_bytes(b"c", b"5"), item_bytes(b"b", b"6")])]
    slow, rec, code = scan_records(recs, last=True)[:3]
    assert slow.tolist() == [0, 0, 1, 0]
    assert list(zip(rec.tolist(), code.tolist())) == [(1, 0), (0, 1), (3, 1), (3, 2)]
    none = scan_records(recs, slow=np.ones(4, bool), last=True)
    assert none[0].tolist() == [1, 1, 1, 1] and not len(none[1])
    assert not any(len(x) for x in scan_records([])[1:])


# --- json_numbers -------------------------------------------------------------------

INVALID = ["01", "1.", ".5", "-", "1e", "+1", " 1", "1 ", "nan", "inf", "true", '"1"', "[1]", "", "-0x1", "1e+",
           "1.e5", "--1", "1_0", "0.5.5", "\u0661", "NaN ", "infinity", "-NaN", "1E5e", "0x10", "1e5.0"]


texts = st.one_of(
    st.floats().map(json.dumps),  # NaN, Infinity, -0.0, subnormals, huge and tiny exponents
    st.floats(width=32).map(lambda f: (json.dumps(f), str(np.float32(f)))).flatmap(st.sampled_from),
    st.floats(min_value=-1e-300, max_value=1e-300).map(repr),
    st.integers(-2 ** 53 - 4, -2 ** 53 + 4).map(str) | st.integers(2 ** 53 - 4, 2 ** 53 + 4).map(str),
    st.integers(-2 ** 80, 2 ** 80).map(str),
    st.from_regex(r"\A-?(0|[1-9][0-9]{0,22})(\.[0-9]{1,22})?([eE][-+]?[0-9]{1,3})?\Z", fullmatch=True),
    st.builds(lambda x, n: format((Decimal(x) + Decimal(math.nextafter(x, math.inf))) / 2, f".{n}e"),
              st.floats(min_value=1e-300, max_value=1e300), st.integers(14, 18)),  # halfway between doubles
    st.sampled_from(INVALID),
    st.text(alphabet="0123456789+-.eE ", max_size=10),
)  # all under 64 characters: long texts are below
digits = st.integers(1, 90).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n))
long_texts = st.tuples(st.sampled_from(["", "-"]), st.just("0") | digits.map("1".__add__),
                       st.just("") | digits.map(".".__add__), st.just("") | st.integers(-400, 400).map("e{}".format)
                       ).map("".join)  # long runs of digits, many leading or trailing zeros, over 64 characters


def check_meaning(text, value, kind):
    """The kind and value as json.loads reads the text."""
    try:
        loaded = json.loads(text)
    except ValueError:
        loaded = ValueError
    if kind == fastpath.FLOAT:
        assert type(loaded) is float, (text, loaded)
        assert math.isnan(value) if math.isnan(loaded) else struct.pack("<d", value) == struct.pack("<d", loaded)
    elif kind == fastpath.INT:
        assert type(loaded) is int and abs(loaded) <= 2 ** 53 and value == loaded, (text, loaded)
    else:
        assert kind == fastpath.OTHER, (text, kind)
        exact = type(loaded) is float or (type(loaded) is int and abs(loaded) <= 2 ** 53)
        assert not exact or text != text.strip(" \t\n\r"), (text, loaded)  # json.loads skips spaces


def numbers_both(items, sep=b'"'):
    data, starts, ends = spans([t.encode() for t in items], sep)
    c = _wbscan.json_numbers(bytes(data), starts, ends)
    assert_same("json_numbers", c, fastpath.json_numbers_pure(data, starts, ends), (np.float64, U8),
                f"for {items!r}")
    for t, v, k in zip(items, np.frombuffer(c[0]).tolist(), np.frombuffer(c[1], U8).tolist()):
        check_meaning(t, v, k)


@examples(300)
@given(st.lists(texts, min_size=1, max_size=8), st.sampled_from([b"", b'"', b", "]))
def test_json_numbers(items, sep):
    numbers_both(items, sep)


@pytest.mark.parametrize("text", [
    "0", "-0", "-0.0", "0e5", "-0e-5", "0.000", "1E5", "1e+5", "1.5e-0", "5e-324", "2.4703282292062327e-324",
    "2.4703282292062328e-324", "1.7976931348623157e308", "1.7976931348623159e308", "1e309", "-1e999999",
    "9007199254740992", "-9007199254740992", "9007199254740993", "9223372036854775808", "18446744073709551616",
    "0.1", "0.30000000000000004", "9007199254740993.0", "1e23", "8.589973e9", "123456789012345678901234567890",
    "1.00000000000000011102230246251565404236316680908203125", "1." + "0" * 60 + "1", "NaN", "Infinity",
    "-Infinity", *INVALID])
def test_json_numbers_edges(text):
    numbers_both([text])


@examples(200)
@given(st.lists(long_texts, min_size=1, max_size=4))
@example(["0." + "0" * 70 + "1"])  # regression: the kernel once called texts of 64+ characters OTHER
@example(["1." + "1" * 70])
@example(["1" * 64 + "e-5"])
def test_json_numbers_long_texts(items):
    """Texts of up to 160 characters: over 19 significant digits, many leading zeros, over 64 characters."""
    numbers_both(items)


def test_json_numbers_huge_integer():
    """An integer of over 4300 digits is OTHER for both (the twin's int() once raised ValueError there:
    Python's int max_str_digits; json.loads raises too, and the reader reports it)."""
    numbers_both(["7" * 4301])


# --- the reader, end to end -----------------------------------------------------------

KERNELS = [(framing, "walk_chunks", _wbscan.walk_chunks, framing.walk_chunks_pure),  # (module, name, C, twin)
           (fastpath, "_record_fields", _wbscan.record_fields, fastpath.record_fields_pure),
           (fastpath, "scan_items", _wbscan.scan_items, fastpath.scan_items_pure),
           (fastpath, "json_numbers", _wbscan.json_numbers, fastpath.json_numbers_pure)]


def sample_log():
    """A small run: config, history (plain, nested, typed and split over blocks), summaries (one with _info first)."""
    pb = wf.schema()
    H, S = pb.HistoryItem, pb.SummaryItem
    recs = [pb.Record(num=1, run=pb.RunRecord(run_id="r", project="p", config=pb.ConfigRecord(
        update=[pb.ConfigItem(key="lr", value_json="0.5")])))]
    for i in range(40):
        items = [H(key="loss", value_json=repr(1 / (i + 1))), H(key="step", value_json=str(i)),
                 H(nested_key=["opt", "m"], value_json=json.dumps([i, "a"])), H(key="big", value_json=str(2 ** 60)),
                 H(key="nan", value_json="NaN"), H(key="s", value_json=json.dumps("x" * (i * 50)))]
        if i % 7 == 3:
            items.append(H(key="typed", number=2.5))
        if i == 20:
            items.append(H(key="long", value_json=json.dumps("L" * 70_000)))  # FIRST, MIDDLE, LAST
        recs.append(pb.Record(num=2 + i, history=pb.HistoryRecord(item=items, step=pb.HistoryStep(num=i))))
        summary = pb.Record(summary=pb.SummaryRecord(update=[S(key="loss", value_json=repr(1 / (i + 1))),
                                                             S(nested_key=["best", "acc"], value_json=str(i))]))
        recs.append(pb.Record(num=100 + i).SerializeToString() + (b"\xc2\x0c\x02\x0a\x00" if i % 2 else b"")
                    + summary.SerializeToString())
    recs.append(pb.Record(num=200, config=pb.ConfigRecord(update=[pb.ConfigItem(nested_key=["opt", "name"],
                                                                                 value_json='"adam"')])))
    return frame_log([r if isinstance(r, bytes) else r.SerializeToString() for r in recs])


def read_with(monkeypatch, path, pure, columns=False):
    """read_log with every kernel function the C one, or every one its twin, whatever TBX_PURE says."""
    with monkeypatch.context() as m:
        for module, name, c, twin in KERNELS:
            m.setattr(module, name, twin if pure else c)
        return wf.read_log(path, columns=columns)


def outcome(log):
    cols = log.columns
    return {"history": json.dumps(log.history, sort_keys=True), "summary": json.dumps(log.summary, sort_keys=True),
            "config": json.dumps(log.config, sort_keys=True), "run": log.run.run_id,
            "stats": (log.stats.records, log.stats.bad_chunks, log.stats.truncated_bytes, log.stats.first_bad_offset),
            "columns": cols and (cols.rows, cols.keys, cols.row.tolist(), cols.code.tolist(),
                                 json.dumps(cols.values.tolist()), cols.number.tobytes(), cols.numeric.tolist())}


def test_reader_agrees_end_to_end(tmp_path, monkeypatch):
    raw = sample_log()
    assert nblocks(raw) >= 3
    raw[2 * BLOCK + 20_000] ^= 0x40  # a checksum fails: the rest of block 2 is lost, orphaning a LAST in 3
    raw = raw[:-3]  # and the last record is being written
    frames = []
    for walk in (_wbscan.walk_chunks, framing.walk_chunks_pure):
        monkeypatch.setattr(framing, "walk_chunks", walk)
        r = framing.frame(bytearray(raw), "run.wandb", True, stats := framing.LogStats())  # joins records in place
        frames.append((bytes(r.data), r.offsets.tolist(), r.starts.tolist(), r.ends.tolist(), repr(stats)))
    assert frames[0] == frames[1]
    path = tmp_path / "run-e2e.wandb"
    path.write_bytes(raw)
    for columns in (False, True):
        log, twin = (read_with(monkeypatch, path, pure, columns) for pure in (False, True))
        assert outcome(log) == outcome(twin)
    assert log.stats.bad_chunks >= 1 and log.stats.truncated_bytes > 0 and log.columns.rows > 25
    log = read_with(monkeypatch, path, False)
    assert 25 < len(log.history) < 40 and log.history[0]["opt"] == {"m": [0, "a"]} and log.history[0]["big"] == 2 ** 60
    assert any(len(row.get("long", "")) == 70_000 for row in log.history)
    assert log.config["lr"] == 0.5 and log.summary["best"]["acc"] >= 20


def test_walk_chunks_crc_table_path(tmp_path):
    """With TBX_CRC_TABLE=1 the kernel checks chunks with its table, not carry-less multiplication: same results."""
    import subprocess
    import sys

    script = (
        "import os, random, zlib, numpy as np\n"
        "from tbx.converters import _wbscan\n"
        "from tbx.converters.wandb_framing import HEADER, walk_chunks_pure\n"
        "rng = random.Random(7); parts = [HEADER]; pos = len(HEADER)\n"
        "while pos < 200000:\n"
        "    room = 32768 - pos % 32768\n"
        "    if room < 7:\n"
        "        parts.append(bytes(room)); pos += room; continue\n"
        "    n = min(rng.randrange(0, 3000), room - 7); data = os.urandom(n)\n"
        "    crc = zlib.crc32(data, zlib.crc32(b'\\x01')) ^ (rng.random() < 0.1)\n"
        "    parts.append(crc.to_bytes(4, 'little') + n.to_bytes(2, 'little') + b'\\x01' + data); pos += 7 + n\n"
        "blob = b''.join(parts); nb = (len(blob) + 32767) // 32768\n"
        "c, p = _wbscan.walk_chunks(blob, 0, nb), walk_chunks_pure(blob, 0, nb)\n"
        "assert all(bytes(x) == bytes(y) for x, y in zip(c, p))\n"
        "ok = np.frombuffer(c[3], np.uint8); assert 0 < ok.sum() < len(ok)\n"
        "print('same', len(ok))\n")
    env = dict(os.environ, TBX_CRC_TABLE="1")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("same ")
