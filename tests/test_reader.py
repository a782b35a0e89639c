"""Tests of tbx/reader.py: logdir walking, chunked record reading, defects, scalars."""

import math
import sys

import numpy as np
import pytest

from tbx import reader, record
from tbx.errors import DataLossError
from tbx.proto import event_pb2, summary_pb2, tensor_pb2

# --- helpers that write event files with the kernel -------------------------

SCALARS_MD = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR,
).SerializeToString()


def header(wall_time=1700000000.0):
    return record.frame(event_pb2.Event(wall_time=wall_time, file_version="brain.Event:2").SerializeToString())


def scalar(tag, value, step, wall=1700000001.0, first=False, legacy=False):
    return record.encode_scalar(tag, value, step, wall, SCALARS_MD if first and not legacy else None, legacy)


def plugin_md(name):
    return summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=name))


def tensor_event(tag, tensor, step, plugin=None, wall=1700000002.0):
    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor)
    if plugin:
        value.metadata.CopyFrom(plugin_md(plugin))
    event = event_pb2.Event(wall_time=wall, step=step, summary=summary_pb2.Summary(value=[value]))
    return record.frame(event.SerializeToString())


def histogram_tensor(k=4):
    t = tensor_pb2.TensorProto(dtype=tensor_pb2.DT_DOUBLE)
    t.tensor_shape.dim.add(size=k)
    t.tensor_shape.dim.add(size=3)
    t.tensor_content = np.arange(3 * k, dtype="<f8").tobytes()
    return t


def double_scalar_tensor(v):
    return tensor_pb2.TensorProto(dtype=tensor_pb2.DT_DOUBLE, double_val=[v])


def write(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(records))
    return path


def record_offsets(records):
    out, pos = [], 0
    for r in records:
        out.append(pos)
        pos += len(r)
    return out


def payload(framed):
    return framed[12:-4]


def f32(v):
    return float(np.float32(v))


@pytest.fixture(params=[None, 7, 100], ids=["chunk-default", "chunk-7", "chunk-100"])
def chunk(request, monkeypatch):
    """Runs a test with the default chunk size and with tiny ones."""
    if request.param is not None:
        monkeypatch.setattr(reader, "_CHUNK_SIZE", request.param)
    return request.param


# --- iter_event_files --------------------------------------------------------

def test_iter_event_files_runs_and_order(tmp_path):
    for rel in ["events.out.tfevents.2.h.1.0", "events.out.tfevents.1.h.1.0",
                "b/events.out.tfevents.1.h.1.0", "a/x/events.out.tfevents.1.h.1.0",
                "a/events.out.tfevents.1.h.1.0", "a/events.out.tfevents.1.h.1.0.profile-empty",
                "a/notes.txt", "empty/readme", "c/d/e/my.tfevents.file"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    got = [(run, p[len(str(tmp_path)) + 1:]) for run, p in reader.iter_event_files(tmp_path)]
    assert got == [
        (".", "events.out.tfevents.1.h.1.0"),
        (".", "events.out.tfevents.2.h.1.0"),
        ("a", "a/events.out.tfevents.1.h.1.0"),
        ("a/x", "a/x/events.out.tfevents.1.h.1.0"),
        ("b", "b/events.out.tfevents.1.h.1.0"),
        ("c/d/e", "c/d/e/my.tfevents.file"),
    ]


def test_iter_event_files_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such logdir"):
        list(reader.iter_event_files(tmp_path / "missing"))
    f = write(tmp_path / "events.out.tfevents.1", [header()])
    with pytest.raises(NotADirectoryError):
        list(reader.iter_event_files(f))
    assert list(reader.iter_event_files(tmp_path / ".")) == [(".", str(tmp_path / "." / f.name))]


# --- read_records ------------------------------------------------------------

def test_read_records_across_chunks(tmp_path, chunk):
    big = record.frame(b"\x0a" + bytes(range(256)) * 5)  # larger than a small chunk
    recs = [header(), scalar("a", 1.0, 1, first=True), big, record.frame(b""), scalar("a", 2.0, 2), big]
    f = write(tmp_path / "events.out.tfevents.1", recs)
    stats = reader.ReadStats()
    assert list(reader.read_records(f, stats=stats)) == [payload(r) for r in recs]
    assert (stats.files, stats.records, stats.bad_records, stats.truncated_bytes) == (1, 6, 0, 0)


def test_read_records_empty_file(tmp_path):
    f = write(tmp_path / "events.out.tfevents.1", [])
    assert list(reader.read_records(f)) == []


@pytest.mark.parametrize("chunk_size", [None, 7])
def test_truncated_last_record_every_cut(tmp_path, monkeypatch, chunk_size):
    if chunk_size:
        monkeypatch.setattr(reader, "_CHUNK_SIZE", chunk_size)
    recs = [header(), scalar("loss", 0.5, 1, first=True), scalar("loss", 0.25, 2)]
    last = scalar("loss", 0.125, 3)
    f = tmp_path / "events.out.tfevents.1"
    for cut in range(1, len(last)):
        write(f, recs + [last[:cut]])
        stats = {}
        assert list(reader.read_records(f, stats=stats)) == [payload(r) for r in recs], cut
        assert stats["truncated_bytes"] == cut
        assert stats["truncations"] == [(str(f), len(b"".join(recs)), cut)]
        assert [e.step for _, e in reader.read_events(f)] == [0, 1, 2]
        cols = reader.read_scalars(f, as_frame=False)
        assert cols["step"].tolist() == [1, 2]
        assert cols["value"].tolist() == [0.5, 0.25]


@pytest.mark.parametrize("which", ["data", "length"])
def test_bad_crc_mid_file_raises_with_offset(tmp_path, chunk, which):
    recs = [header()] + [scalar("x", float(i), i, first=i == 0) for i in range(6)]
    bad = 3
    offset = record_offsets(recs)[bad]
    blob = bytearray(b"".join(recs))
    blob[offset + (14 if which == "data" else 2)] ^= 0x40  # a payload byte, or a length byte
    f = tmp_path / "events.out.tfevents.1"
    f.write_bytes(bytes(blob))
    reason = "data crc" if which == "data" else "length crc"
    for read in (lambda: list(reader.read_records(f)), lambda: list(reader.read_events(f)),
                 lambda: reader.read_scalars(f, as_frame=False)):
        with pytest.raises(DataLossError) as info:
            read()
        err = info.value
        assert (err.path, err.offset, err.reason) == (str(f), offset, reason)
        assert str(f) in str(err) and str(offset) in str(err)


def test_lenient_skips_bad_data_crc_and_counts(tmp_path, chunk):
    recs = [header()] + [scalar("x", float(i), i, first=i == 0) for i in range(6)]
    offsets = record_offsets(recs)
    blob = bytearray(b"".join(recs))
    for bad in (2, 5):
        blob[offsets[bad] + len(recs[bad]) - 1] ^= 0x01  # the stored payload crc itself
    f = tmp_path / "events.out.tfevents.1"
    f.write_bytes(bytes(blob))
    stats = reader.ReadStats()
    got = list(reader.read_records(f, lenient=True, stats=stats))
    assert got == [payload(r) for i, r in enumerate(recs) if i not in (2, 5)]
    assert stats.bad_records == 2 and stats.records == 5
    assert [(p.offset, p.reason) for p in stats.problems] == [(offsets[2], "data crc"), (offsets[5], "data crc")]
    cols = reader.read_scalars(f, lenient=True, as_frame=False)
    assert cols["step"].tolist() == [0, 2, 3, 5]
    stats = {}
    assert [e.step for _, e in reader.read_events(f, lenient=True, stats=stats)] == [0, 0, 2, 3, 5]
    assert stats["bad_records"] == 2


def test_lenient_stops_file_at_bad_length_crc(tmp_path, chunk):
    recs = [header()] + [scalar("x", float(i), i, first=i == 0) for i in range(4)]
    offsets = record_offsets(recs)
    blob = bytearray(b"".join(recs))
    blob[offsets[3] + 9] ^= 0x80  # the stored length crc
    f = tmp_path / "events.out.tfevents.1"
    f.write_bytes(bytes(blob))
    stats = reader.ReadStats()
    assert list(reader.read_records(f, lenient=True, stats=stats)) == [payload(r) for r in recs[:3]]
    assert stats.bad_records == 1 and stats.problems[0].offset == offsets[3]
    assert stats.problems[0].reason == "length crc"


def test_unparsable_event_with_good_crc(tmp_path):
    recs = [header(), scalar("x", 1.0, 1, first=True), record.frame(b"\x0a\xff"), scalar("x", 2.0, 2)]
    f = write(tmp_path / "events.out.tfevents.1", recs)
    with pytest.raises(DataLossError) as info:
        list(reader.read_events(f))
    assert info.value.offset == record_offsets(recs)[2] and str(f) in str(info.value)
    stats = reader.ReadStats()
    assert [e.step for _, e in reader.read_events(f, lenient=True, stats=stats)] == [0, 1, 2]
    assert stats.bad_records == 1
    assert reader.read_scalars(f, as_frame=False)["step"].tolist() == [1, 2]  # the kernel skips it


# --- read_events -------------------------------------------------------------

def test_read_events_logdir_and_file(tmp_path):
    write(tmp_path / "events.out.tfevents.1", [header(), scalar("a", 1.0, 1, first=True)])
    write(tmp_path / "train" / "events.out.tfevents.1", [header(), scalar("b", 2.0, 7, first=True)])
    got = [(run, e.WhichOneof("what"), e.step) for run, e in reader.read_events(tmp_path)]
    assert got == [(".", "file_version", 0), (".", "summary", 1), ("train", "file_version", 0), ("train", "summary", 7)]
    (run, event), = [x for x in reader.read_events(tmp_path / "train" / "events.out.tfevents.1") if x[1].step]
    assert run == "." and isinstance(event, event_pb2.Event)
    assert event.summary.value[0].tag == "b" and event.summary.value[0].tensor.float_val == [2.0]


def test_read_events_matches_tensorboard_loader(tmp_path):
    loader = pytest.importorskip("tensorboard.backend.event_processing.event_file_loader")
    recs = [header(), scalar("a", 1.5, 1, first=True), scalar("s", -2.0, 2, legacy=True),
            tensor_event("h", histogram_tensor(), 3, plugin="histograms"), scalar("a", 3.0, 4)]
    f = write(tmp_path / "events.out.tfevents.1", recs + [recs[1][:10]])
    ours = list(reader.read_records(f))
    assert ours == [bytes(r) for r in loader.RawEventFileLoader(str(f)).Load()]
    theirs = [e.SerializeToString() for e in loader.LegacyEventFileLoader(str(f)).Load()]
    assert [e.SerializeToString() for _, e in reader.read_events(f)] == theirs


# --- read_scalars ------------------------------------------------------------

SPECIAL = [0.0, -1.5, 3.25, float("nan"), float("inf"), float("-inf"), 1e-3, 123456.789]


def test_read_scalars_values_steps_and_forms(tmp_path, chunk):
    steps = [0, -5, 2 ** 40, 1, -(2 ** 40), 7, 2 ** 62, 9]
    recs = [header()]
    for i, (v, s) in enumerate(zip(SPECIAL, steps)):
        recs.append(scalar("tensor", v, s, wall=1000.0 + i, first=i == 0))
        recs.append(scalar("legacy", v, s, wall=2000.0 + i, legacy=True))
    recs.append(tensor_event("hist", histogram_tensor(), 5, plugin="histograms"))
    recs.append(tensor_event("dbl", double_scalar_tensor(0.1), 6, plugin="scalars"))
    recs.append(tensor_event("nometa", double_scalar_tensor(0.2), 6))
    recs.append(tensor_event("other", double_scalar_tensor(0.3), 6, plugin="custom"))
    recs.append(tensor_event("text", tensor_pb2.TensorProto(dtype=tensor_pb2.DT_STRING, string_val=[b"hi"]), 6,
                             plugin="text"))
    f = write(tmp_path / "events.out.tfevents.1", recs)
    cols = reader.read_scalars(f, as_frame=False)
    n = len(SPECIAL)
    assert cols["tag"].tolist() == ["tensor", "legacy"] * n + ["dbl"]
    assert cols["run"].tolist() == ["."] * (2 * n + 1)
    assert cols["step"].dtype == np.int64 and cols["step"].tolist() == [s for s in steps for _ in (0, 1)] + [6]
    assert cols["wall_time"].dtype == np.float64
    assert cols["wall_time"].tolist() == [w for i in range(n) for w in (1000.0 + i, 2000.0 + i)] + [1700000002.0]
    assert cols["value"].dtype == np.float64
    expected = [f32(v) for v in SPECIAL for _ in (0, 1)] + [0.1]  # float32 on disk; DT_DOUBLE exact
    np.testing.assert_array_equal(cols["value"], np.array(expected))
    assert math.isnan(cols["value"][6]) and cols["value"][8] == math.inf and cols["value"][10] == -math.inf


def test_read_scalars_logdir_runs_files_and_metadata_merge(tmp_path, chunk):
    # Metadata only in the first file of a run: later files' points still count.
    write(tmp_path / "events.out.tfevents.1.h.1.0",
          [header(), scalar("loss", 1.0, 1, first=True), scalar("acc", 0.5, 1, first=True)])
    write(tmp_path / "events.out.tfevents.2.h.1.0", [header(), scalar("loss", 0.9, 2), scalar("acc", 0.6, 2)])
    write(tmp_path / "b" / "events.out.tfevents.1.h.1.0", [header(), scalar("loss", 5.0, 10, first=True)])
    write(tmp_path / "a" / "x" / "events.out.tfevents.1.h.1.0", [header(), scalar("acc", 0.7, 3, legacy=True)])
    write(tmp_path / "c" / "events.out.tfevents.1.h.1.0",  # a run with no scalars
          [header(), tensor_event("h", histogram_tensor(), 1, plugin="histograms")])
    cols = reader.read_scalars(tmp_path, as_frame=False)
    assert list(zip(cols["run"], cols["tag"], cols["step"].tolist(), cols["value"].tolist())) == [
        (".", "loss", 1, 1.0), (".", "acc", 1, 0.5), (".", "loss", 2, f32(0.9)), (".", "acc", 2, f32(0.6)),
        ("a/x", "acc", 3, f32(0.7)), ("b", "loss", 10, 5.0),
    ]
    assert cols["run"].dtype == object and cols["tag"].dtype == object


def test_read_scalars_plugin_is_per_run(tmp_path):
    # "v" is a scalar in run a but a custom plugin's tensor in run b.
    write(tmp_path / "a" / "events.out.tfevents.1", [header(), scalar("v", 1.0, 1, first=True)])
    write(tmp_path / "b" / "events.out.tfevents.1",
          [header(), tensor_event("v", double_scalar_tensor(2.0), 1, plugin="custom"), scalar("v", 3.0, 2)])
    cols = reader.read_scalars(tmp_path, as_frame=False)
    assert cols["run"].tolist() == ["a"] and cols["value"].tolist() == [1.0]


def test_read_scalars_pandas_frame(tmp_path):
    pd = pytest.importorskip("pandas")
    write(tmp_path / "r" / "events.out.tfevents.1", [header(), scalar("loss", 1.0, 1, first=True),
                                                     scalar("loss", 2.0, 2)])
    write(tmp_path / "s" / "events.out.tfevents.1", [header(), scalar("acc", 3.0, 1, legacy=True)])
    df = reader.read_scalars(tmp_path)
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["run", "tag", "step", "wall_time", "value"]
    assert isinstance(df["run"].dtype, pd.CategoricalDtype) and isinstance(df["tag"].dtype, pd.CategoricalDtype)
    assert list(df["tag"].cat.categories) == ["loss", "acc"]
    assert df["step"].dtype == np.int64 and df["value"].dtype == np.float64 and df["wall_time"].dtype == np.float64
    assert df["run"].tolist() == ["r", "r", "s"] and df["value"].tolist() == [1.0, 2.0, 3.0]
    assert (df["tag"] == "loss").sum() == 2
    assert isinstance(reader.read_scalars(tmp_path, as_frame=True), pd.DataFrame)
    assert isinstance(reader.read_scalars(tmp_path, as_frame=False), dict)


def test_read_scalars_without_pandas(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # makes `import pandas` fail
    write(tmp_path / "events.out.tfevents.1", [header(), scalar("loss", 1.0, 1, first=True)])
    cols = reader.read_scalars(tmp_path)
    assert isinstance(cols, dict) and cols["value"].tolist() == [1.0]
    with pytest.raises(ImportError, match="pip install pandas"):
        reader.read_scalars(tmp_path, as_frame=True)


def test_read_scalars_empty(tmp_path):
    cols = reader.read_scalars(tmp_path, as_frame=False)
    assert set(cols) == {"run", "tag", "step", "wall_time", "value"}
    assert all(len(c) == 0 for c in cols.values())
    assert cols["step"].dtype == np.int64 and cols["value"].dtype == np.float64
    pd = pytest.importorskip("pandas")
    assert len(reader.read_scalars(tmp_path)) == 0 and isinstance(reader.read_scalars(tmp_path), pd.DataFrame)
    with pytest.raises(FileNotFoundError):
        reader.read_scalars(tmp_path / "missing")


def test_read_scalars_many_points_columns_match_events(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "_CHUNK_SIZE", 1000)
    rng = np.random.default_rng(0)
    tags = ["t0", "t1", "t2"]
    values = rng.standard_normal(600).astype(np.float32)
    recs = [header()] + [scalar(tags[i % 3], float(v), i // 3, wall=1e9 + i, first=i < 3)
                         for i, v in enumerate(values)]
    f = write(tmp_path / "events.out.tfevents.1", recs)
    stats = reader.ReadStats()
    cols = reader.read_scalars(f, as_frame=False, stats=stats)
    assert stats.points == 600
    np.testing.assert_array_equal(cols["value"], values.astype(np.float64))
    assert cols["tag"].tolist() == [tags[i % 3] for i in range(600)]
    assert cols["step"].tolist() == [i // 3 for i in range(600)]
    np.testing.assert_array_equal(cols["wall_time"], 1e9 + np.arange(600.0))


# --- summarize ---------------------------------------------------------------

def test_summarize_kinds_counts_and_steps(tmp_path):
    img = summary_pb2.Summary.Value(tag="img", image=summary_pb2.Summary.Image(height=1, width=1))
    aud = summary_pb2.Summary.Value(tag="aud", audio=summary_pb2.Summary.Audio(sample_rate=8000.0))
    his = summary_pb2.Summary.Value(tag="lh", histo=summary_pb2.HistogramProto(min=0.0, max=1.0))
    legacy = event_pb2.Event(step=4, summary=summary_pb2.Summary(value=[img, aud, his]))
    graph = event_pb2.Event(step=0, graph_def=b"\x0a\x00")
    tagged = event_pb2.Event(step=2, tagged_run_metadata=event_pb2.TaggedRunMetadata(tag="step2", run_metadata=b""))
    text = tensor_pb2.TensorProto(dtype=tensor_pb2.DT_STRING, string_val=[b"x"])
    write(tmp_path / "events.out.tfevents.1", [
        header(), scalar("loss", 1.0, -3, first=True), scalar("loss", 1.0, 10), scalar("loss", 1.0, 4),
        scalar("old", 2.0, 5, legacy=True), tensor_event("h", histogram_tensor(), 8, plugin="histograms"),
        tensor_event("t", text, 1, plugin="text"), tensor_event("raw", double_scalar_tensor(1.0), 1),
        tensor_event("g", text, 1, plugin="graph_keras_model"),
        record.frame(legacy.SerializeToString()), record.frame(graph.SerializeToString()),
        record.frame(tagged.SerializeToString()),
    ])
    write(tmp_path / "run2" / "events.out.tfevents.1", [header()])
    (root, run2) = reader.summarize(tmp_path)
    assert root["run"] == "." and root["files"] == ["events.out.tfevents.1"]
    assert run2 == {"run": "run2", "files": ["events.out.tfevents.1"], "tags": []}
    got = {t["tag"]: (t["kind"], t["count"], t["min_step"], t["max_step"]) for t in root["tags"]}
    assert got == {
        "loss": ("scalars", 3, -3, 10), "old": ("scalars", 1, 5, 5), "h": ("histograms", 1, 8, 8),
        "t": ("text", 1, 1, 1), "raw": ("tensor", 1, 1, 1), "g": ("graph", 1, 1, 1),
        "img": ("images", 1, 4, 4), "aud": ("audio", 1, 4, 4), "lh": ("histograms", 1, 4, 4),
        "graph_def": ("graph", 1, 0, 0), "step2": ("run_metadata", 1, 2, 2),
    }
    assert [t["tag"] for t in root["tags"]] == sorted(got)


def test_stats_dataclass_defaults():
    s = reader.ReadStats()
    assert (s.files, s.records, s.points, s.bad_records, s.truncated_bytes, s.problems) == (0, 0, 0, 0, 0, [])


# --- big files: mapped rather than read, and decoded in two halves ---------------

def _damaged_file(tmp_path, n=3000, bad_at=1234, cut=True):
    recs = [header()] + [scalar(f"t{i % 3}", float(i), i, first=i < 3) for i in range(n)]
    bad = bytearray(recs[bad_at])
    bad[-1] ^= 0xFF  # its payload checksum
    recs[bad_at] = bytes(bad)
    data = b"".join(recs)
    if cut:
        data += recs[5][:20]  # a cut-off record being written
    path = tmp_path / "events.out.tfevents.1"
    path.write_bytes(data)
    return path


def test_mapped_reads_equal_chunked_reads(tmp_path, monkeypatch):
    """A file read through a map (as big ones are) gives the same points, records, defects and stats."""
    path = _damaged_file(tmp_path)
    mapped = []  # (scans through a map) per setting
    scan_buffer = reader._scan_buffer

    def spy(*args):
        mapped[-1] += 1
        return scan_buffer(*args)

    monkeypatch.setattr(reader, "_scan_buffer", spy)
    results = []
    for map_min in (1 << 40, 1):  # never mapped, always mapped
        mapped.append(0)
        monkeypatch.setattr(reader, "_MAP_MIN", map_min)
        monkeypatch.setattr(reader, "_CHUNK_SIZE", 4096 if map_min > 1 else 1)
        st_s, st_r = reader.ReadStats(), reader.ReadStats()
        scalars = reader.read_scalars(path, lenient=True, as_frame=False, stats=st_s)
        payloads = list(reader.read_records(path, lenient=True, stats=st_r))
        results.append((scalars, payloads, st_s, st_r))
    assert mapped == [0, 2]  # read_scalars and read_records each mapped the file once
    (a, pa, sa, ra), (b, pb, sb, rb) = results
    assert list(a["value"]) == list(b["value"]) and list(a["tag"]) == list(b["tag"])
    assert len(a["value"]) == 3000 - 1 and pa == pb
    assert ra.bad_records == 1 and ra.truncated_bytes == 20 and "data crc" in str(rb.problems[0])
    for x, y in ((sa, sb), (ra, rb)):
        assert [str(e) for e in x.problems] == [str(e) for e in y.problems]
        x.problems = y.problems = []
        assert x == y


def test_verification_reads_big_files_in_two_halves(tmp_path, monkeypatch):
    """read_run_dir splits a big event file at a record boundary and decodes both halves: same run, same defects."""
    from tbx.converters import tfevents

    path = _damaged_file(tmp_path)
    monkeypatch.setattr(tfevents.os, "cpu_count", lambda: 2)  # the split needs two CPUs
    starts = []  # where each scan of the file began

    def scan(path, kernel, lenient, stats, start=0, stop=None):
        starts.append(start)
        return reader._scan(path, kernel, lenient, stats, start, stop)

    monkeypatch.setattr(tfevents, "_scan", scan)
    runs = []
    for split_min in (1 << 40, 1):
        monkeypatch.setattr(tfevents, "SPLIT_MIN", split_min)
        report = tfevents.RunReport("r", "r")
        data = tfevents.read_run_dir(str(tmp_path), [str(path)], "r", "r", False, report)
        runs.append((data, report))
    assert starts[0] == 0 and len(starts) == 3 and 0 < max(starts) < path.stat().st_size  # one pass, then halves
    (a, ra), (b, rb) = runs
    assert sorted(a.scalars) == sorted(b.scalars) == ["t0", "t1", "t2"]
    for tag in a.scalars:
        assert list(a.scalars[tag].values) == list(b.scalars[tag].values)
        assert list(a.scalars[tag].steps) == list(b.scalars[tag].steps)
    assert sum(len(s.values) for s in b.scalars.values()) == 3000 - 1
    assert ra.as_dict() == rb.as_dict()
    assert "corrupt record" in str(rb.as_dict())
