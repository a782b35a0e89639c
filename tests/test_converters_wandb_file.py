"""tbx.converters.wandb_file: our reader of W&B's ``.wandb`` transaction log.

The files are written by the real wandb SDK (offline). The oracle is wandb's
own reader: wandb 0.31 dropped the Python ``datastore`` module, and its
reader is now ``wandb leet inspect --json`` (Go, in wandb-core), which prints
every record as JSON; we compare record by record. The fast history path is
compared with decoding every record through protobuf. Framing edge cases
(block tails, records across blocks) use files written by a minimal writer
in this module, also checked against the oracle; damage is made by cutting
and overwriting copies of SDK-written files.
"""

import glob
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import wandb_oracle

from tbx.converters import wandb_fastpath as fastpath
from tbx.converters import wandb_file as wf
from tbx.converters import wandb_framing as framing
from tbx.errors import DataLossError

wandb = pytest.importorskip("wandb", reason="the wandb SDK writes the test runs and is the oracle")
WANDB_CLI = os.path.join(os.path.dirname(sys.executable), "wandb")


# --- helpers (also used by test_converters_wandb_local.py) ---------------------

offline_run = wandb_oracle.offline_run  # a real wandb.init(mode="offline") run under a directory

def log_file(run):
    """The ``.wandb`` file of a finished run."""
    (path,) = glob.glob(os.path.join(os.path.dirname(run.dir), "*.wandb"))
    return path


def oracle_records(path):
    """wandb's own reading of a ``.wandb`` file: one dict per record."""
    out = subprocess.run([WANDB_CLI, "leet", "inspect", "--json", str(path)], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def plain(value):
    """A value as the oracle prints it (non-finite floats are strings in JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def items_as_oracle(items):
    return {".".join(wf.item_path(it)): plain(wf.item_value(it)) for it in items}


def rows_via_protobuf(path):
    """History rows decoded record by record through protobuf (the slow path)."""
    rows = []
    for _, record in wf.iter_records(path):
        if record.WhichOneof("record_type") == "history":
            row = {}
            for item in record.history.item:
                wf.set_path(row, wf.item_path(item), wf.item_value(item))
            rows.append(row)
    return rows


def same_rows(a, b):
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# --- runs written by the SDK -------------------------------------------------------

LONG_TEXT = "".join(chr(0x41 + i % 26) for i in range(100_000))  # a record over three blocks


@pytest.fixture(scope="module")
def sdk_logs(tmp_path_factory):
    """Two offline runs: ``plain`` (JSON values) and ``typed`` (wandb's typed history values too)."""
    root = tmp_path_factory.mktemp("wandb_file")
    with offline_run(root / "plain", project="p", config={"lr": 0.5, "opt": {"name": "adam"}}) as run:
        run.define_metric("global_step")
        run.define_metric("*", step_metric="global_step")
        for i in range(2500):
            run.log({"loss": 1.0 / (i + 1), "acc": i * 0.25, "global_step": 10 * i})
        run.log({"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"), "global_step": 25000})
        run.log({"nested": {"a": 1, "b": {"c": "deep"}}, 'q"k': 1, "b\\k": 2, "text": "x" * 200})
        run.log({"long": LONG_TEXT})
        run.log({"h": wandb.Histogram(np.arange(20.0))})
        run.log({"img": wandb.Image(np.zeros((3, 4, 3), np.uint8))})
        run.config.update({"later": [1, 2]})
        run.summary["best"] = 0.125
        run.finish(exit_code=3)
        plain_log = log_file(run)
    with offline_run(root / "typed", project="p", settings={"x_history_value_encoding": "json,typed"}) as run:
        for i in range(50):
            run.log({"i": i, "f": i + 0.5, "s": f"row {i}", "b": i % 2 == 0, "none": None, "big": 2 ** 70})
        typed_log = log_file(run)
    return {"plain": plain_log, "typed": typed_log}


def test_records_match_wandb_own_reader(sdk_logs):
    for path in sdk_logs.values():
        ours = list(wf.iter_records(path))
        theirs = oracle_records(path)
        assert [(r.num, r.WhichOneof("record_type")) for _, r in ours] == \
            [(j["num"], j["type"]) for j in theirs]
        compared = 0
        for (_, r), j in zip(ours, theirs):
            kind = j["type"]
            if kind == "history":
                assert items_as_oracle(r.history.item) == j["history"]["item"]
            elif kind in ("summary", "config"):
                assert items_as_oracle(getattr(r, kind).update) == j[kind].get("update", {})
            elif kind == "exit":
                assert r.exit.exit_code == j["exit"].get("exit_code", 0)
            elif kind == "run":
                assert (r.run.run_id, r.run.project) == (j["run"]["run_id"], j["run"]["project"])
                assert items_as_oracle(r.run.config.update) == j["run"]["config"]["update"]
            else:
                continue
            compared += 1
        assert compared > 100


def test_offsets_are_chunk_headers(sdk_logs):
    path = sdk_logs["plain"]
    with open(path, "rb") as f:
        data = f.read()
    for offset, record in list(wf.iter_records(path))[:50]:
        crc, length, kind = struct.unpack_from("<IHB", data, offset)
        assert kind in (framing.FULL, framing.FIRST)
        assert zlib.crc32(data[offset + 6:offset + 7 + length]) == crc


def test_history_fast_path_equals_protobuf_path(sdk_logs):
    for path in sdk_logs.values():
        assert same_rows(wf.read_history(path), rows_via_protobuf(path))


def test_history_values(sdk_logs):
    rows = wf.read_history(sdk_logs["plain"])
    assert len(rows) == 2505
    for i in (0, 1, 7, 2499):
        row = rows[i]
        assert row["loss"] == 1.0 / (i + 1) and row["acc"] == i * 0.25
        assert row["global_step"] == 10 * i and row["_step"] == i
        assert isinstance(row["_timestamp"], float) and isinstance(row["_runtime"], float)
    special = rows[2500]
    assert math.isnan(special["nan"]) and special["inf"] == math.inf and special["ninf"] == -math.inf
    mixed = rows[2501]
    assert mixed["nested"] == {"a": 1, "b": {"c": "deep"}}
    assert mixed['q"k'] == 1 and mixed["b\\k"] == 2 and mixed["text"] == "x" * 200
    assert rows[2502]["long"] == LONG_TEXT
    hist = rows[2503]["h"]
    assert hist["_type"] == "histogram" and sum(hist["values"]) == 20
    assert rows[2504]["img"]["_type"] == "image-file"
    assert rows[2504]["img"]["path"].startswith("media/images/img_")

    typed = wf.read_history(sdk_logs["typed"])
    assert [r["i"] for r in typed] == list(range(50))
    assert {k: typed[3][k] for k in ("i", "f", "s", "b", "none", "big")} == \
        {"i": 3, "f": 3.5, "s": "row 3", "b": False, "none": None, "big": 2.0 ** 70}


def test_fast_path_takes_the_common_rows(sdk_logs):
    """The JSON fast path (not protobuf) decodes every plain scalar row."""
    path, recs, _ = framing.load(sdk_logs["plain"], True, None)
    tag_pos, field = fastpath.record_fields(recs)
    idx = np.flatnonzero(field == fastpath.FIELD_HISTORY)
    rows, _, slow = fastpath.fast_rows(recs, idx, tag_pos[idx], False)
    assert len(rows) >= 2400 and len(rows) + int(slow.sum()) == len(idx)


def test_read_log(sdk_logs):
    log = wf.read_log(sdk_logs["plain"])
    assert log.run.project == "p"
    assert log.config == {"_wandb": log.config["_wandb"], "lr": 0.5, "opt": {"name": "adam"}, "later": [1, 2]}
    assert log.summary["best"] == 0.125 and log.summary["loss"] == 1.0 / 2500
    assert math.isnan(log.summary["nan"]) and log.summary["h"]["_type"] == "histogram"
    assert log.exit.exit_code == 3
    assert [(m.name, m.glob_name, m.step_metric) for m in log.metrics] == \
        [("global_step", "", ""), ("", "*", "global_step")]
    assert any(f.startswith("media/images/img_") for f in log.files)
    assert log.history == wf.read_history(sdk_logs["plain"])
    assert log.stats.records == len(oracle_records(sdk_logs["plain"]))
    assert (log.stats.bad_chunks, log.stats.truncated_bytes, log.stats.first_bad_offset) == (0, 0, None)


def test_summary_records_with_info_first_are_read(tmp_path):
    """With two runs open in one process, wandb-core writes ``_info`` (field 200) right after
    ``num``, before the record's kind: such summary updates must still reach the summary."""
    with offline_run(tmp_path, project="p") as first, offline_run(tmp_path, project="p") as second:
        first.log({"loss": 1.0})
        first.summary["best"] = 0.8
        second.summary["best"] = 0.9
    for run, best in ((first, 0.8), (second, 0.9)):
        path = log_file(run)
        with open(path, "rb") as f:
            data = f.read()
        (offset,) = [o for o, r in wf.iter_records(path) if r.WhichOneof("record_type") == "summary"
                     and [i.key for i in r.summary.update] == ["best"]]
        payload = data[offset + framing.CHUNK_HEADER_SIZE:]
        assert payload[0] == 0x08 and payload[2:4] == b"\xc2\x0c"  # num, then _info: the case under test
        assert wf.read_log(path).summary["best"] == best


# --- framing edge cases, with files we write ---------------------------------------

def write_log(path, payloads):
    """Frame ``payloads`` as a ``.wandb`` file (our own minimal writer)."""
    out = bytearray(wf.HEADER)
    for payload in payloads:
        first = True
        while True:
            left = framing.BLOCK_SIZE - len(out) % framing.BLOCK_SIZE
            if left < framing.CHUNK_HEADER_SIZE:
                out += bytes(left)
                continue
            take = min(len(payload), left - framing.CHUNK_HEADER_SIZE)
            part, payload = payload[:take], payload[take:]
            last = not payload
            kind = (framing.FULL if last else framing.FIRST) if first else (framing.LAST if last else framing.MIDDLE)
            out += struct.pack("<IHB", zlib.crc32(bytes([kind]) + part), len(part), kind) + part
            first = False
            if last:
                break
    with open(path, "wb") as f:
        f.write(out)
    return bytes(out)


def history_record(num, size):
    pb = wf.proto()
    r = pb.Record(num=num)
    item = r.history.item.add()
    item.nested_key.append("v")
    item.value_json = json.dumps("y" * size)
    return r.SerializeToString()


def test_block_tails_and_split_records(tmp_path):
    """Records that end at, just before and across block ends read back whole, as wandb reads them."""
    sizes = []
    # Fill block 0 so that 0..6 bytes are left at its end, then records over several blocks.
    probe = len(history_record(1, 0))
    room = framing.BLOCK_SIZE - len(wf.HEADER) - framing.CHUNK_HEADER_SIZE - probe
    sizes.append(room - 3)  # leaves 3 bytes: padding
    sizes += [0, 70_000, 5, framing.BLOCK_SIZE - 2 * framing.CHUNK_HEADER_SIZE - probe, 1, 40_000, 0]
    payloads = [history_record(i + 1, s) for i, s in enumerate(sizes)]
    path = tmp_path / "run-edge.wandb"
    write_log(path, payloads)
    got = list(wf.iter_records(path))
    assert [r.SerializeToString() for _, r in got] == payloads
    rows = wf.read_history(path)
    assert [len(r["v"]) for r in rows] == sizes
    assert [(j["num"], j["type"]) for j in oracle_records(path)] == [(i + 1, "history") for i in range(len(sizes))]


def test_zero_length_and_empty_records(tmp_path):
    pb = wf.proto()
    payloads = [b"", pb.Record(num=1, history=pb.HistoryRecord()).SerializeToString(), b""]
    path = tmp_path / "run-empty.wandb"
    write_log(path, payloads)
    assert [r.num for _, r in wf.iter_records(path)] == [0, 1, 0]
    assert wf.read_history(path) == [{}]


def info_first(pb, num, **kind):
    """A Record's bytes as wandb-core orders them: ``num``, ``_info``, then the oneof."""
    info = pb.Record()
    getattr(info, "_info").stream_id = "stream"
    return pb.Record(num=num).SerializeToString() + info.SerializeToString() + pb.Record(**kind).SerializeToString()


def test_info_first_records_of_every_shape(tmp_path):
    """Single-chunk and split summary and history records with ``_info`` first, ``num`` of 1 and 2 bytes."""
    pb = wf.proto()

    def summary(key, value):
        return pb.SummaryRecord(update=[pb.SummaryItem(key=key, value_json=json.dumps(value))])

    payloads = [info_first(pb, 5, summary=summary("best", 0.8)),
                info_first(pb, 300, summary=summary("big", "z" * 50_000)),  # split over two blocks
                info_first(pb, 301, history=pb.HistoryRecord(item=[pb.HistoryItem(key="x", value_json="1.5")])),
                info_first(pb, 302, summary=pb.SummaryRecord(
                    update=[pb.SummaryItem(nested_key=["deep", "k"], value_json="2")])),
                info_first(pb, 303, config=pb.ConfigRecord(update=[pb.ConfigItem(key="lr", value_json="0.1")]))]
    path = tmp_path / "run-info.wandb"
    write_log(path, payloads)
    assert [j["type"] for j in oracle_records(path)] == ["summary", "summary", "history", "summary", "config"]
    assert [r.num for _, r in wf.iter_records(path)] == [5, 300, 301, 302, 303]
    log = wf.read_log(path)
    assert log.summary == {"best": 0.8, "big": "z" * 50_000, "deep": {"k": 2}}
    assert log.history == [{"x": 1.5}] and log.config == {"lr": 0.1}


# --- damage ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def intact(sdk_logs):
    path = sdk_logs["plain"]
    with open(path, "rb") as f:
        data = f.read()
    return path, data, [(o, r.SerializeToString()) for o, r in wf.iter_records(path)]


def surviving(records, data, start, stop):
    """Offsets of the records that do not touch the bytes ``[start, stop)``."""
    offsets = [o for o, _ in records]
    ends = offsets[1:] + [len(data)]
    return [o for o, e in zip(offsets, ends) if e <= start or o >= stop]


def damaged(tmp_path, data, name="run-x.wandb"):
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return str(path)


def test_truncated_file_gives_every_whole_record(tmp_path, intact):
    _, data, records = intact
    offsets = [o for o, _ in records]
    ends = offsets[1:] + [len(data)]
    spanning = next(i for i, (o, p) in enumerate(records) if len(p) > 2 * framing.BLOCK_SIZE)
    cuts = [offsets[10] + 3, offsets[200] + 9, offsets[spanning] + 40_000, ends[spanning] - 1, offsets[300]]
    for cut in cuts:
        path = damaged(tmp_path, data[:cut])
        stats = wf.LogStats()
        got = [(o, r.SerializeToString()) for o, r in wf.iter_records(path, stats=stats)]
        whole = [rec for rec, end in zip(records, ends) if end <= cut]
        assert got == whole
        assert stats.truncated_bytes == cut - (offsets[len(whole)] if len(whole) < len(records) else cut)
        assert (stats.bad_chunks, stats.first_bad_offset) == (0, None)
        assert stats.records == len(whole)
        # A cut-off end is not an error even in strict mode.
        assert len(list(wf.iter_records(path, lenient=False))) == len(whole)


def test_bad_checksum_skips_to_the_next_block(tmp_path, intact):
    _, data, records = intact
    offsets = [o for o, _ in records]
    victim = next(o for o in offsets if o > 2 * framing.BLOCK_SIZE + 1000)
    block_end = victim - victim % framing.BLOCK_SIZE + framing.BLOCK_SIZE
    broken = bytearray(data)
    broken[victim + framing.CHUNK_HEADER_SIZE + 2] ^= 0xFF
    path = damaged(tmp_path, broken)
    stats = wf.LogStats()
    got = [(o, r.SerializeToString()) for o, r in wf.iter_records(path, stats=stats)]
    keep = set(surviving(records, data, victim, block_end))
    assert got == [(o, p) for o, p in records if o in keep]
    assert stats.first_bad_offset == victim and stats.bad_chunks >= 1
    assert stats.problems[0].path == path and stats.problems[0].reason == "chunk checksum"
    with pytest.raises(DataLossError) as err:
        list(wf.iter_records(path, lenient=False))
    assert (err.value.path, err.value.offset) == (path, victim)
    # The fast history path loses the same rows.
    assert same_rows(wf.read_history(path), rows_via_protobuf(path))
    assert len(wf.read_history(path)) < len(wf.read_history(intact[0]))


def test_nonsense_headers_and_zeroed_blocks(tmp_path, intact):
    _, data, records = intact
    offsets = [o for o, _ in records]
    # A length that runs past its block.
    victim = next(o for o in offsets if o > framing.BLOCK_SIZE + 500)
    broken = bytearray(data)
    broken[victim + 4:victim + 6] = struct.pack("<H", 60_000)
    stats = wf.LogStats()
    got = [o for o, _ in wf.iter_records(damaged(tmp_path, broken), stats=stats)]
    block_end = victim - victim % framing.BLOCK_SIZE + framing.BLOCK_SIZE
    assert got == surviving(records, data, victim, block_end)
    assert stats.first_bad_offset == victim and "past its block" in stats.problems[0].reason
    # A block of zeros in the middle (a lost page).
    broken = bytearray(data)
    broken[3 * framing.BLOCK_SIZE:4 * framing.BLOCK_SIZE] = bytes(framing.BLOCK_SIZE)
    stats = wf.LogStats()
    got = [o for o, _ in wf.iter_records(damaged(tmp_path, broken, "run-z.wandb"), stats=stats)]
    assert got == surviving(records, data, 3 * framing.BLOCK_SIZE, 4 * framing.BLOCK_SIZE)
    assert (3 * framing.BLOCK_SIZE, "zeroed chunk header") in [(p.offset, p.reason) for p in stats.problems]
    assert stats.first_bad_offset <= 3 * framing.BLOCK_SIZE


def test_unknown_version_and_not_a_log(tmp_path, intact):
    _, data, _ = intact
    newer = bytearray(data)
    newer[6] = 1
    path = damaged(tmp_path, newer)
    with pytest.raises(wf.LogFormatError) as err:
        wf.read_history(path)
    assert path in str(err.value) and "version 1" in str(err.value) and "version 0" in str(err.value)
    for content in (b"", b"hello world", b"\x00" * 64):
        path = damaged(tmp_path, content, "run-y.wandb")
        with pytest.raises(wf.LogFormatError, match="not a W&B transaction log"):
            list(wf.iter_records(path))


def test_missing_sdk_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb.proto", None)
    with pytest.raises(ImportError, match="pip install wandb"):
        wf.proto()


def test_run_record_from_the_head(sdk_logs, tmp_path):
    run = wf.read_run_record(sdk_logs["plain"], limit=4096)
    assert run.project == "p" and run.run_id
    copy = tmp_path / "copy.wandb"
    shutil.copy(sdk_logs["typed"], copy)
    assert wf.read_run_record(copy).run_id == wf.read_log(sdk_logs["typed"]).run.run_id
