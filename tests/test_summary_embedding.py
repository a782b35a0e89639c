"""SummaryWriter.add_embedding, tbx.summary.embedding and the ProjectorConfig protos.

What is written is read back with TensorBoard's own code: the config is
parsed into TensorBoard's ProjectorConfig, and TensorBoard's projector plugin
runs in-process (its ``/info``, ``/tensor``, ``/metadata`` and
``/sprite_image`` routes). Files are compared with what
torch.utils.tensorboard writes for the same call.
"""

import inspect
import io
import os
import threading

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from PIL import Image
from tensorboard.plugins.projector import projector_config_pb2 as tb_projector_pb2
from torch.utils.tensorboard import SummaryWriter as TorchWriter

import tbx
from tbx import SummaryWriter
from tbx.proto import projector_config_pb2
from tbx.summary import embedding as embedding_summary
from writer_util import values_by_tag

RNG = np.random.default_rng(7)
CONFIG = embedding_summary.CONFIG_NAME


def read_tb_config(logdir):
    """The config file parsed with TensorBoard's own ProjectorConfig."""
    with open(os.path.join(logdir, CONFIG), encoding="utf-8") as f:
        return text_format.Parse(f.read(), tb_projector_pb2.ProjectorConfig())


def read_tsv_floats(path):
    """A tensors.tsv as TensorBoard's projector reads it (float32)."""
    with open(path, encoding="utf-8") as f:
        rows = [list(map(float, line.rstrip("\n").split("\t"))) for line in f if line.rstrip("\n")]
    return np.array(rows, dtype=np.float32)


class Projector:
    """TensorBoard's projector plugin, served in-process (``logdir`` as run '.', or runs of a multiplexer)."""

    def __init__(self, logdir, with_runs=False):
        from tensorboard.plugins import base_plugin
        from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin
        from werkzeug import Request
        from werkzeug.test import Client
        from werkzeug.wrappers import Response

        provider = None
        if with_runs:
            from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer

            mux = plugin_event_multiplexer.EventMultiplexer()
            mux.AddRunsFromDirectory(str(logdir))
            mux.Reload()
            provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
        plugin = ProjectorPlugin(base_plugin.TBContext(logdir=str(logdir), data_provider=provider))
        apps = plugin.get_plugin_apps()
        self.client = Client(lambda environ, start: apps[Request(environ).path](environ, start), Response)

    def get(self, route, **params):
        response = self.client.get(route, query_string=params)
        assert response.status_code == 200, (route, params, response.get_data(as_text=True))
        return response


def _embeddings(config):
    return {e.tensor_name: e for e in config.embeddings}


# --- signature ------------------------------------------------------------------

def test_signature_matches_torch():
    ours = inspect.signature(SummaryWriter.add_embedding)
    theirs = inspect.signature(TorchWriter.add_embedding)
    assert list(ours.parameters) == list(theirs.parameters)
    for name, param in theirs.parameters.items():
        assert ours.parameters[name].default == param.default, name


# --- what is written ----------------------------------------------------------------

def test_files_config_and_projector_plugin(tmp_path):
    mat = RNG.standard_normal((10, 4)).astype(np.float32)
    labels = [f"point {i}" for i in range(10)]
    images = RNG.uniform(size=(10, 3, 8, 6)).astype(np.float32)
    with SummaryWriter(tmp_path) as writer:
        writer.add_embedding(mat, metadata=labels, label_img=images)
    folder = tmp_path / "00000" / "default"
    assert sorted(os.listdir(folder)) == ["metadata.tsv", "sprite.png", "tensors.tsv"]
    assert np.array_equal(read_tsv_floats(folder / "tensors.tsv"), mat)
    assert (folder / "metadata.tsv").read_text() == "".join(f"{label}\n" for label in labels)

    config = read_tb_config(tmp_path)
    (entry,) = config.embeddings
    assert entry.tensor_name == "default:00000"
    assert entry.tensor_path == "00000/default/tensors.tsv"
    assert entry.metadata_path == "00000/default/metadata.tsv"
    assert entry.sprite.image_path == "00000/default/sprite.png"
    assert list(entry.sprite.single_image_dim) == [6, 8]  # width, height
    assert list(entry.tensor_shape) == [10, 4]

    projector = Projector(tmp_path)
    assert projector.get("/runs").get_json() == ["."]
    info = projector.get("/info", run=".").get_json()
    (served,) = info["embeddings"]
    assert served["tensorName"] == "default:00000" and served["tensorShape"] == [10, 4]
    tensor = projector.get("/tensor", run=".", name="default:00000").get_data()
    assert tensor == mat.astype("<f4").tobytes()
    metadata = projector.get("/metadata", run=".", name="default:00000").get_data(as_text=True)
    assert metadata.splitlines() == labels
    sprite = projector.get("/sprite_image", run=".", name="default:00000")
    assert sprite.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(sprite.get_data())).size == (4 * 6, 4 * 8)


def test_config_in_a_run_directory(tmp_path):
    """`tensorboard --logdir runs` with the writer in runs/exp: the run's own config is used."""
    mat = RNG.standard_normal((3, 2)).astype(np.float32)
    with SummaryWriter(tmp_path / "exp") as writer:
        writer.add_scalar("loss", 1.0, 0)  # the run exists for TensorBoard
        writer.add_embedding(mat, tag="emb", global_step=2)
    projector = Projector(tmp_path, with_runs=True)
    assert "exp" in projector.get("/runs").get_json()
    info = projector.get("/info", run="exp").get_json()
    assert [e["tensorName"] for e in info["embeddings"]] == ["emb:00002"]
    assert projector.get("/tensor", run="exp", name="emb:00002").get_data() == mat.tobytes()


def test_same_files_as_torch(tmp_path):
    mat = torch.randn(7, 3)
    labels = [f"w{i}" for i in range(7)]
    columns = [[f"w{i}", i % 2, i * 0.5] for i in range(7)]
    header = ["word", "parity", "half"]
    images = torch.rand(7, 3, 5, 5)  # square thumbnails: torch pads the sprite the same way
    gray = torch.rand(7, 1, 4, 4)
    calls = [
        dict(mat=mat, metadata=labels, label_img=images, global_step=3, tag="a/b%c\\d"),
        dict(mat=mat, metadata=columns, metadata_header=header, tag="cols"),
        dict(mat=mat, label_img=gray, global_step=12345678, tag="gray"),
        dict(mat=mat),
    ]
    with SummaryWriter(tmp_path / "tbx") as writer:
        for call in calls:
            writer.add_embedding(**call)
    with TorchWriter(str(tmp_path / "torch")) as writer:
        for call in calls:
            writer.add_embedding(**call)

    def files(root):
        out = set()
        for dirpath, _dirs, names in os.walk(root):
            out.update(os.path.relpath(os.path.join(dirpath, n), root) for n in names if "tfevents" not in n)
        return out

    assert files(tmp_path / "tbx") == files(tmp_path / "torch")
    ours, theirs = read_tb_config(tmp_path / "tbx"), read_tb_config(tmp_path / "torch")
    assert len(ours.embeddings) == len(theirs.embeddings) == len(calls)
    for mine, torchs in zip(ours.embeddings, theirs.embeddings):
        mine_copy = tb_projector_pb2.EmbeddingInfo()
        mine_copy.CopyFrom(mine)
        del mine_copy.tensor_shape[:]  # tbx also records [N, D]
        assert mine_copy == torchs
    for rel in files(tmp_path / "tbx"):
        a, b = tmp_path / "tbx" / rel, tmp_path / "torch" / rel
        if rel.endswith("tensors.tsv"):
            assert np.array_equal(read_tsv_floats(a), read_tsv_floats(b)), rel
        elif rel.endswith("metadata.tsv"):
            assert a.read_bytes() == b.read_bytes(), rel
        elif rel.endswith("sprite.png"):
            mine_px = np.asarray(Image.open(a).convert("RGB"))
            torch_px = np.asarray(Image.open(b).convert("RGB"))
            assert np.array_equal(mine_px, torch_px), rel


def test_numbers_written_exactly(tmp_path):
    f64 = np.array([[0.1, 1 / 3, -2.5e-300], [1e300, -0.0, 123456789.123456789]])
    f32 = RNG.standard_normal((50, 3)).astype(np.float32) * np.float32(1e6)
    ints = np.array([[-(2**40), 0], [7, 2**31]], dtype=np.int64)
    with SummaryWriter(tmp_path) as writer:
        writer.add_embedding(f64, tag="f64")
        writer.add_embedding(torch.from_numpy(f32), tag="f32")
        writer.add_embedding(ints, tag="ints")
        writer.add_embedding([[1.5, 2], [3, 4]], tag="lists")
        writer.add_embedding(torch.ones(2, 2, dtype=torch.float16), tag="half")
    base = tmp_path / "00000"
    text = (base / "f64" / "tensors.tsv").read_text().splitlines()
    assert np.array_equal(np.array([[float(v) for v in line.split("\t")] for line in text]), f64)
    assert np.array_equal(read_tsv_floats(base / "f32" / "tensors.tsv"), f32)
    assert (base / "ints" / "tensors.tsv").read_text() == "-1099511627776\t0\n7\t2147483648\n"
    assert np.array_equal(read_tsv_floats(base / "lists" / "tensors.tsv"), [[1.5, 2], [3, 4]])
    assert np.array_equal(read_tsv_floats(base / "half" / "tensors.tsv"), np.ones((2, 2)))


def test_metadata_forms(tmp_path):
    mat = np.zeros((3, 2))
    with SummaryWriter(tmp_path) as writer:
        writer.add_embedding(mat, metadata=np.array([1, 2, 3]), tag="numpy")
        writer.add_embedding(mat, metadata=torch.tensor([4, 5, 6]), tag="torch")
        writer.add_embedding(mat, metadata=("a", "ü", ""), tag="tuple")
        writer.add_embedding(mat, metadata=[(1, "x"), (2, "y"), (3, "z")], metadata_header=("id", "name"), tag="two")
        writer.add_embedding(mat, metadata=[["x"], ["y"], ["z"]], metadata_header=["only"], tag="one")
    base = tmp_path / "00000"
    assert (base / "numpy" / "metadata.tsv").read_text() == "1\n2\n3\n"
    assert (base / "torch" / "metadata.tsv").read_text() == "4\n5\n6\n"  # not "tensor(4)"
    assert (base / "tuple" / "metadata.tsv").read_text(encoding="utf-8") == "a\nü\n\n"
    assert (base / "two" / "metadata.tsv").read_text() == "id\tname\n1\tx\n2\ty\n3\tz\n"
    # one column: a header line would be read as a label by TensorBoard, so none is written
    assert (base / "one" / "metadata.tsv").read_text() == "x\ny\nz\n"
    projector = Projector(tmp_path)
    served = projector.get("/metadata", run=".", name="two:00000").get_data(as_text=True)
    assert served == "id\tname\n1\tx\n2\ty\n3\tz\n"


def test_sprite_layout(tmp_path):
    n, h, w = 5, 3, 4
    colors = RNG.integers(1, 256, size=(n, 3), dtype=np.uint8)
    images = np.broadcast_to(colors[:, :, None, None], (n, 3, h, w)).copy()
    with SummaryWriter(tmp_path) as writer:
        writer.add_embedding(np.zeros((n, 2)), label_img=images, tag="rgb")
        writer.add_embedding(np.zeros((n, 2)), label_img=images[:, :1] / 255.0, tag="gray")
        rgba = np.concatenate([images, np.full((n, 1, h, w), 255, np.uint8)], axis=1)
        writer.add_embedding(np.zeros((n, 2)), label_img=rgba, tag="rgba")
    sprite = np.asarray(Image.open(tmp_path / "00000" / "rgb" / "sprite.png"))
    side = 3  # ceil(sqrt(5))
    assert sprite.shape == (side * h, side * w, 3)
    for i in range(side * side):
        row, col = divmod(i, side)
        cell = sprite[row * h:(row + 1) * h, col * w:(col + 1) * w]
        expected = colors[i] if i < n else np.zeros(3, np.uint8)
        assert (cell == expected).all(), i
    gray = np.asarray(Image.open(tmp_path / "00000" / "gray" / "sprite.png"))
    assert gray.shape == (side * h, side * w)
    assert gray[0, 0] == colors[0, 0]
    rgba_px = np.asarray(Image.open(tmp_path / "00000" / "rgba" / "sprite.png"))
    assert rgba_px.shape == (side * h, side * w, 4)
    assert rgba_px[0, 0, 3] == 255 and rgba_px[-1, -1, 3] == 0  # unused cells are transparent


def test_entries_accumulate_and_replace(tmp_path):
    mat = RNG.standard_normal((4, 2)).astype(np.float32)
    # an entry written earlier by another program (torch) is kept
    with TorchWriter(str(tmp_path)) as writer:
        writer.add_embedding(torch.zeros(2, 2), tag="from_torch")
    with SummaryWriter(tmp_path) as writer:
        writer.add_embedding(mat, tag="a")
        writer.add_embedding(mat, tag="a", global_step=1)
        writer.add_embedding(mat, tag="b")
        with pytest.warns(UserWarning, match=r"replaced the embedding 'a:00000'"):
            writer.add_embedding(mat * 2, metadata=list("wxyz"), tag="a")
    config = read_tb_config(tmp_path)
    assert [e.tensor_name for e in config.embeddings] == ["from_torch:00000", "a:00000", "a:00001", "b:00000"]
    replaced = _embeddings(config)["a:00000"]
    assert replaced.metadata_path == "00000/a/metadata.tsv"
    assert np.array_equal(read_tsv_floats(tmp_path / "00000" / "a" / "tensors.tsv"), mat * 2)
    # a second writer on the same log dir adds to the same config
    with SummaryWriter(tmp_path) as other:
        other.add_embedding(mat, tag="c")
    assert "c:00000" in _embeddings(read_tb_config(tmp_path))
    info = Projector(tmp_path).get("/info", run=".").get_json()
    assert len(info["embeddings"]) == 5


def test_concurrent_calls_lose_no_entry(tmp_path):
    mat = np.ones((3, 2))
    with SummaryWriter(tmp_path) as writer_a, SummaryWriter(tmp_path) as writer_b:
        threads = [
            threading.Thread(target=(writer_a if i % 2 else writer_b).add_embedding, args=(mat,), kwargs={"tag": f"t{i}"})
            for i in range(16)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    names = {e.tensor_name for e in read_tb_config(tmp_path).embeddings}
    assert names == {f"t{i}:00000" for i in range(16)}
    assert not [n for n in os.listdir(tmp_path) if ".tmp." in n]


def test_arrays_are_not_kept(tmp_path):
    """add_embedding writes before it returns: later changes to the caller's arrays do not matter."""
    mat = np.ones((2, 2), dtype=np.float32)
    labels = ["a", "b"]
    with SummaryWriter(tmp_path) as writer:
        writer.add_embedding(mat, metadata=labels)
        mat[:] = 5
        labels[0] = "changed"
    assert np.array_equal(read_tsv_floats(tmp_path / "00000" / "default" / "tensors.tsv"), np.ones((2, 2)))
    assert (tmp_path / "00000" / "default" / "metadata.tsv").read_text() == "a\nb\n"


# --- bad input: a clear error, nothing written for that call, nothing lost -----------------

MAT = np.arange(6, dtype=np.float32).reshape(3, 2)

BAD_CALLS = [
    # (id, kwargs, exception, message pattern)
    ("mat_1d", dict(mat=np.zeros(3)), ValueError, r"mat must be 2-D.*\(3,\)"),
    ("mat_3d", dict(mat=np.zeros((2, 2, 2))), ValueError, r"mat must be 2-D.*\(2, 2, 2\)"),
    ("mat_empty", dict(mat=np.zeros((0, 4))), ValueError, r"mat is empty"),
    ("mat_nan", dict(mat=np.array([[0.0, np.nan]])), ValueError, r"mat must be finite.*nan.*row 0, column 1"),
    ("mat_inf", dict(mat=torch.tensor([[1.0], [float("inf")]])), ValueError, r"mat must be finite.*row 1"),
    ("mat_bool", dict(mat=np.ones((2, 2), dtype=bool)), TypeError, r"mat must hold real numbers.*bool"),
    ("mat_complex", dict(mat=np.ones((2, 2), dtype=complex)), TypeError, r"mat must hold real numbers.*complex"),
    ("mat_strings", dict(mat=[["a", "b"]]), TypeError, r"mat must hold real numbers"),
    ("mat_none", dict(mat=None), TypeError, r"mat must be an array"),
    ("metadata_length", dict(mat=MAT, metadata=["a", "b"]), ValueError, r"metadata has 2 entries but mat has 3 rows"),
    ("metadata_str", dict(mat=MAT, metadata="abc"), TypeError, r"metadata must be a sequence, got str"),
    ("metadata_tab", dict(mat=MAT, metadata=["a", "b\tc", "d"]), ValueError, r"metadata\[1\] is 'b\\tc'.*tabs or line breaks"),
    ("metadata_newline", dict(mat=MAT, metadata=["a", "b", "c\n"]), ValueError, r"metadata\[2\]"),
    ("header_without_metadata", dict(mat=MAT, metadata_header=["x"]), ValueError, r"metadata_header was given without metadata"),
    ("header_row_length", dict(mat=MAT, metadata=[[1, 2], [3, 4], [5]], metadata_header=["a", "b"]), ValueError,
     r"metadata\[2\] has 1 values but metadata_header has 2 columns"),
    ("header_row_not_sequence", dict(mat=MAT, metadata=[1, 2, 3], metadata_header=["a", "b"]), TypeError,
     r"metadata\[0\] must be a sequence, got int"),
    ("header_empty", dict(mat=MAT, metadata=[[1], [2], [3]], metadata_header=[]), ValueError, r"metadata_header is empty"),
    ("header_cell_tab", dict(mat=MAT, metadata=[[1, 2]] * 3, metadata_header=["a\tb", "c"]), ValueError,
     r"metadata_header\[0\]"),
    ("label_img_3d", dict(mat=MAT, label_img=np.zeros((3, 4, 4))), ValueError, r"label_img must be 4-D \[N, C, H, W\]"),
    ("label_img_count", dict(mat=MAT, label_img=np.zeros((2, 3, 4, 4))), ValueError,
     r"label_img has 2 images but mat has 3 rows"),
    ("label_img_channels", dict(mat=MAT, label_img=np.zeros((3, 2, 4, 4))), ValueError, r"label_img has 2 channels"),
    ("label_img_nan", dict(mat=MAT, label_img=np.full((3, 1, 2, 2), np.nan)), ValueError, r"label_img contains NaN"),
    ("label_img_dtype", dict(mat=MAT, label_img=np.zeros((3, 1, 2, 2), dtype=np.int64)), TypeError, r"label_img has dtype int64"),
    ("tag_type", dict(mat=MAT, tag=3), TypeError, r"tag must be a str, got int"),
    ("tag_empty", dict(mat=MAT, tag=""), ValueError, r"tag '' cannot name"),
    ("tag_dotdot", dict(mat=MAT, tag=".."), ValueError, r"tag '\.\.' cannot name"),
    ("step_float", dict(mat=MAT, global_step=1.5), TypeError, r"global_step must be an integer"),
    ("step_bool", dict(mat=MAT, global_step=True), TypeError, r"global_step must be an integer, got bool"),
]


@pytest.mark.parametrize("case", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_input_raises_and_keeps_data(tmp_path, case):
    _id, kwargs, exc_type, pattern = case
    with SummaryWriter(tmp_path) as writer:
        writer.add_scalar("loss", 1.0, 0)
        writer.add_embedding(MAT, metadata=["a", "b", "c"], tag="before")
        before = sorted(os.listdir(tmp_path))
        config_before = (tmp_path / CONFIG).read_bytes()
        with pytest.raises(exc_type, match=pattern):
            writer.add_embedding(**kwargs)
        assert sorted(os.listdir(tmp_path)) == before, "nothing written for the bad call"
        assert (tmp_path / CONFIG).read_bytes() == config_before
        writer.add_scalar("loss", 2.0, 1)
        writer.add_embedding(MAT, tag="after", global_step=1)
    assert [s for s, _w, _v in values_by_tag(tmp_path)[".", "loss"]] == [0, 1]
    config = read_tb_config(tmp_path)
    assert [e.tensor_name for e in config.embeddings] == ["before:00000", "after:00001"]
    assert np.array_equal(read_tsv_floats(tmp_path / "00000" / "before" / "tensors.tsv"), MAT)
    assert (tmp_path / "00000" / "before" / "metadata.tsv").read_text() == "a\nb\nc\n"


def test_corrupt_config_is_not_overwritten(tmp_path):
    (tmp_path / CONFIG).write_text("this is { not a config")
    with SummaryWriter(tmp_path) as writer:
        with pytest.raises(ValueError, match=r"projector_config.pbtxt is not a valid projector config"):
            writer.add_embedding(MAT)
        writer.add_scalar("loss", 1.0, 0)
    assert (tmp_path / CONFIG).read_text() == "this is { not a config"
    assert not (tmp_path / "00000").exists()
    assert [s for s, _w, _v in values_by_tag(tmp_path)[".", "loss"]] == [0]


def test_unwritable_directory_raises_write_error(tmp_path):
    with SummaryWriter(tmp_path) as writer:
        (tmp_path / "00000").write_text("a file where the step directory goes")
        with pytest.raises(tbx.errors.WriteError, match=r"add_embedding could not write"):
            writer.add_embedding(MAT)
        writer.add_embedding(MAT, global_step=1)
    assert [e.tensor_name for e in read_tb_config(tmp_path).embeddings] == ["default:00001"]


def test_after_close_raises(tmp_path):
    writer = SummaryWriter(tmp_path)
    writer.close()
    with pytest.raises(tbx.errors.WriterClosedError, match="closed"):
        writer.add_embedding(MAT)
    assert not (tmp_path / CONFIG).exists()


# --- the ProjectorConfig protos: wire and text compatibility with TensorBoard ------------

def _field_table(desc):
    return {
        f.name: (
            f.number, f.type, f.is_repeated, f.is_packed if f.is_repeated else False,
            f.message_type.name if f.message_type else None,
        )
        for f in desc.fields
    }


@pytest.mark.parametrize("name", ["ProjectorConfig", "EmbeddingInfo", "SpriteMetadata"])
def test_projector_fields_match_tensorboard(name):
    ours = getattr(projector_config_pb2, name).DESCRIPTOR
    theirs = getattr(tb_projector_pb2, name).DESCRIPTOR
    assert _field_table(ours) == _field_table(theirs)


def _sample_config(module):
    config = module.ProjectorConfig(model_checkpoint_path="ckpt/model", model_checkpoint_dir="ckpt")
    entry = config.embeddings.add(
        tensor_name="e:00001", metadata_path="m.tsv", bookmarks_path="b.json", tensor_path="t.tsv"
    )
    entry.tensor_shape.extend([2**32 - 1, 3])
    entry.sprite.image_path = "s.png"
    entry.sprite.single_image_dim.extend([28, 14])
    config.embeddings.add(tensor_name="ü")
    return config


def test_projector_config_both_ways():
    ours, theirs = _sample_config(projector_config_pb2), _sample_config(tb_projector_pb2)
    a, b = ours.SerializeToString(deterministic=True), theirs.SerializeToString(deterministic=True)
    assert a == b
    assert tb_projector_pb2.ProjectorConfig.FromString(a) == theirs
    assert projector_config_pb2.ProjectorConfig.FromString(b) == ours
    # text format, which is what the file holds
    text = text_format.MessageToString(ours)
    assert text == text_format.MessageToString(theirs)
    assert text_format.Parse(text, tb_projector_pb2.ProjectorConfig()) == theirs
    assert text_format.Parse(text_format.MessageToString(theirs), projector_config_pb2.ProjectorConfig()) == ours


def test_tag_encoding_and_names():
    assert embedding_summary.encode_tag("a/b%c\\d") == "a%2fb%25c%5cd"
    assert embedding_summary.subdir("x", 7) == "00007/x"
    assert embedding_summary.subdir("x", 1234567) == "1234567/x"
    assert embedding_summary.subdir("x", -3) == "-0003/x"
    assert embedding_summary.tensor_name("x", 7) == "x:00007"
