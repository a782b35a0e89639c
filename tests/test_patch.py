"""tbx.patch(): torch's and tensorboardX's SummaryWriter names hand out tbx's writer.

Every test checks that the data really went through tbx: the first event of
each file carries ``source_metadata.writer == "tbx"`` (torch's writer puts
TensorBoard's module name there), read with TensorBoard's protos and loaders.
"""

import importlib
import os
import sys
import warnings

import numpy as np
import pytest
import tensorboardX
import tensorboardX.writer
import torch
import torch.utils.tensorboard
import torch.utils.tensorboard.writer

import tbx
from test_summary_hparams import dashboard, metric_values, scalars, session
from writer_util import event_files, tb_events, values_by_tag

# the module: once tbx/__init__ exports the patch() function, the name tbx.patch is that function
tbx_patch = importlib.import_module("tbx.patch")

TORCH_WRITER = torch.utils.tensorboard.SummaryWriter
TENSORBOARDX_WRITER = tensorboardX.SummaryWriter
ALL_NAMES = [
    "torch.utils.tensorboard.SummaryWriter",
    "torch.utils.tensorboard.writer.SummaryWriter",
    "tensorboardX.SummaryWriter",
    "tensorboardX.writer.SummaryWriter",
]


@pytest.fixture
def patched():
    names = tbx_patch.patch()
    try:
        yield names
    finally:
        tbx_patch.unpatch()


def writers_of(logdir):
    """{run: [source_metadata.writer of the first event of each file]}."""
    out = {}
    for run, files in event_files(logdir).items():
        out[run] = [tb_events(path)[0].source_metadata.writer for path in files]
    return out


def originals_in_place():
    return (
        torch.utils.tensorboard.SummaryWriter is TORCH_WRITER
        and torch.utils.tensorboard.writer.SummaryWriter is TORCH_WRITER
        and tensorboardX.SummaryWriter is TENSORBOARDX_WRITER
        and tensorboardX.writer.SummaryWriter is TENSORBOARDX_WRITER
    )


def test_patch_and_unpatch_swap_the_names():
    assert originals_in_place() and not tbx_patch.is_patched()
    assert tbx_patch.patch() == ALL_NAMES
    try:
        assert tbx_patch.is_patched()
        from torch.utils.tensorboard import SummaryWriter as FromTorch
        from torch.utils.tensorboard.writer import SummaryWriter as FromTorchWriter
        from tensorboardX import SummaryWriter as FromX
        from tensorboardX.writer import SummaryWriter as FromXWriter

        assert FromTorch is FromTorchWriter is tbx.SummaryWriter
        assert FromX is FromXWriter is tbx_patch.TensorboardXSummaryWriter
        assert issubclass(FromX, tbx.SummaryWriter)
    finally:
        assert tbx_patch.unpatch() == ALL_NAMES
    assert originals_in_place() and not tbx_patch.is_patched()


def test_patch_is_idempotent_and_unpatch_restores_the_originals():
    tbx_patch.patch()
    tbx_patch.patch()
    tbx_patch.patch()
    assert torch.utils.tensorboard.SummaryWriter is tbx.SummaryWriter
    assert tbx_patch.unpatch() == ALL_NAMES
    assert originals_in_place()
    assert tbx_patch.unpatch() == []  # nothing left to restore
    assert originals_in_place()


def test_unpatch_leaves_a_name_someone_else_reassigned(monkeypatch):
    tbx_patch.patch()
    try:
        class Theirs:
            pass

        monkeypatch.setattr(tensorboardX, "SummaryWriter", Theirs)
        assert "tensorboardX.SummaryWriter" not in tbx_patch.unpatch()
        assert tensorboardX.SummaryWriter is Theirs
        assert torch.utils.tensorboard.SummaryWriter is TORCH_WRITER
    finally:
        tbx_patch.unpatch()


def test_a_package_that_cannot_be_imported_is_skipped(monkeypatch):
    # None in sys.modules makes "import tensorboardX" raise ImportError
    for name in ("tensorboardX", "tensorboardX.writer"):
        monkeypatch.setitem(sys.modules, name, None)
    try:
        assert tbx_patch.patch() == ALL_NAMES[:2]
    finally:
        assert tbx_patch.unpatch() == ALL_NAMES[:2]


def test_a_package_that_is_not_installed_is_not_imported(monkeypatch):
    imported = []
    real_import = importlib.import_module
    monkeypatch.setattr(tbx_patch, "_installed", lambda dist: dist != "torch")
    monkeypatch.setattr(tbx_patch.importlib, "import_module", lambda name: imported.append(name) or real_import(name))
    try:
        assert tbx_patch.patch() == ALL_NAMES[2:]
    finally:
        tbx_patch.unpatch()
    assert not [name for name in imported if name.startswith("torch")]
    assert torch.utils.tensorboard.SummaryWriter is TORCH_WRITER


def test_code_importing_torch_writer_after_patch_writes_with_tbx(tmp_path, patched):
    # what Hugging Face's TensorBoardCallback does when it is created
    def make_writer(log_dir):
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=log_dir)

    writer = make_writer(str(tmp_path))
    assert isinstance(writer, tbx.SummaryWriter)
    for step in range(5):
        writer.add_scalar("train/loss", 1.0 / (step + 1), step)
    writer.add_text("args", "lr: 0.1", 0)
    writer.add_hparams({"learning_rate": 0.1, "output_dir": "out"}, metric_dict={})  # as the callback does
    writer.flush()
    writer.close()
    files = event_files(tmp_path)
    assert all(w == ["tbx"] for w in writers_of(tmp_path).values()), writers_of(tmp_path)
    assert len(files) == 2  # the run and add_hparams' timestamped session run
    assert scalars(tmp_path, "train/loss") == [(s, pytest.approx(1.0 / (s + 1))) for s in range(5)]
    (session_run,) = [run for run in files if run != "."]
    _experiment, start, _end = session(tmp_path / session_run)
    assert start.hparams["output_dir"].string_value == "out"


def test_class_captured_before_patch_is_unaffected(tmp_path, patched):
    with TORCH_WRITER(str(tmp_path)) as writer:  # torch's own, imported before patch()
        writer.add_scalar("x", 1.0, 0)
    assert writers_of(tmp_path) == {".": ["tensorboard.summary.writer.event_file_writer"]}


def test_tensorboardx_spelling(tmp_path, patched):
    from tensorboardX import SummaryWriter

    with SummaryWriter(logdir=str(tmp_path / "a"), flush_secs=5) as writer:
        assert writer.logdir == writer.get_logdir() == str(tmp_path / "a")
        writer.add_scalar("plain", 1.0, 0)
        writer.add_scalar("titled", 2.0, 0, display_name="Nice title", summary_description="**what** it is")
        writer.add_scalar("titled", 3.0, 1, display_name="Nice title")
        writer.add_hparams({"lr": 0.5}, {"hparam/acc": 0.5}, "trial_a", 3)  # tensorboardX's positional name
    with SummaryWriter(log_dir=str(tmp_path / "b"), comet_config={"disabled": True}) as writer:
        writer.add_scalar("plain", 1.0, 0)
    assert set(event_files(tmp_path)) == {"a", "a/trial_a", "b"}
    assert {w for ws in writers_of(tmp_path).values() for w in ws} == {"tbx"}
    values = values_by_tag(tmp_path)
    first = values["a", "titled"][0][2]
    assert first.metadata.display_name == "Nice title"
    assert first.metadata.summary_description == "**what** it is"
    assert first.metadata.plugin_data.plugin_name == "scalars"
    assert not values["a", "titled"][1][2].HasField("metadata")  # once per tag and file
    assert scalars(tmp_path / "a", "titled") == [(0, 2.0), (1, 3.0)]
    assert scalars(tmp_path / "a", "plain") == [(0, 1.0)]
    assert scalars(tmp_path / "a" / "trial_a", "hparam/acc") == [(3, 0.5)]
    from tensorboard.backend.event_processing import plugin_event_accumulator as pea

    acc = pea.EventAccumulator(str(tmp_path / "a"), size_guidance={pea.TENSORS: 0})
    acc.Reload()
    assert acc.SummaryMetadata("titled").display_name == "Nice title"


@pytest.mark.parametrize("method", ["__init__", "add_scalar", "add_hparams"])
def test_tensorboardx_writer_signatures_match_tensorboardx(method):
    import inspect

    ours = inspect.signature(getattr(tbx_patch.TensorboardXSummaryWriter, method)).parameters
    theirs = inspect.signature(getattr(TENSORBOARDX_WRITER, method)).parameters
    assert list(ours) == list(theirs)
    for name, param in ours.items():
        if name != "comet_config":  # tensorboardX's default is {"disabled": True}; tbx's None means the same
            assert (param.default, param.kind) == (theirs[name].default, theirs[name].kind), name


def test_tensorboardx_spelling_bad_input(tmp_path, patched):
    from tensorboardX import SummaryWriter

    with pytest.raises(ValueError, match=r"write_to_disk=False is not supported"):
        SummaryWriter(str(tmp_path / "x"), write_to_disk=False)
    with pytest.raises(ValueError, match=r"comet_config"):
        SummaryWriter(str(tmp_path / "x"), comet_config={"disabled": False, "api_key": "k"})
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['bogus'\]"):
        SummaryWriter(str(tmp_path / "x"), bogus=1)
    assert not os.path.exists(tmp_path / "x")
    with SummaryWriter(str(tmp_path / "y")) as writer:
        writer.add_scalar("t", 1.0, 0)
        with pytest.raises(TypeError, match=r"display_name must be a str"):
            writer.add_scalar("t2", 1.0, 0, display_name=5)
        with pytest.raises(TypeError, match=r"scalar_value"):
            writer.add_scalar("t2", "x", 0, display_name="T")
        writer.add_scalar("t", 2.0, 1)
    assert scalars(tmp_path / "y", "t") == [(0, 1.0), (1, 2.0)]
    assert ("y", "t2") not in values_by_tag(tmp_path)


def test_file_writer_add_summary_takes_torch_protos(tmp_path, patched):
    """Lightning's log_hyperparams: torch's hparams() summaries through _get_file_writer().add_summary."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams, scalar

    exp, ssi, sei = hparams({"lr": 0.01, "opt": "adam"}, {"hp_metric": -1})
    with SummaryWriter(str(tmp_path)) as writer:
        file_writer = writer._get_file_writer()
        assert file_writer.get_logdir() == str(tmp_path)
        writer.add_scalar("hp_metric", -1, 0)
        for summary in (exp, ssi, sei):
            file_writer.add_summary(summary, 4)
        file_writer.add_summary(scalar("direct", 1.5), 2, walltime=1234.5)
        writer.add_scalar("hp_metric", 0.5, 5)
    _experiment, start, _end = session(tmp_path)
    assert start.hparams["opt"].string_value == "adam"
    assert scalars(tmp_path, "hp_metric") == [(0, -1.0), (5, 0.5)]
    ((step, wall, value),) = values_by_tag(tmp_path)[".", "direct"]
    assert (step, wall, value.simple_value) == (2, 1234.5, 1.5)
    assert writers_of(tmp_path) == {".": ["tbx"]}
    (group,) = dashboard(tmp_path)[1]["sessionGroups"]
    assert metric_values(group)["hp_metric"] == (0.5, 5)


def test_lightning_trains_and_logs_through_tbx(tmp_path, patched):
    pl = pytest.importorskip("lightning.pytorch", reason="PyTorch Lightning is not installed (pip install lightning)")
    from lightning.pytorch.loggers import TensorBoardLogger

    class Tiny(pl.LightningModule):
        def __init__(self, lr=0.05, hidden=3, optimizer="sgd", scheduler=None):
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.Linear(2, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(24, 2), torch.randn(24, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    logger = TensorBoardLogger(str(tmp_path), name="tiny")
    trainer = pl.Trainer(
        max_steps=5, logger=logger, log_every_n_steps=1, accelerator="cpu", devices=1,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice about DataLoader workers
        trainer.fit(Tiny(), loader)

    assert isinstance(logger.experiment, tbx.SummaryWriter)
    run = tmp_path / "tiny" / "version_0"
    assert set(event_files(tmp_path)) == {"tiny/version_0"}  # hparams in the run itself, no sub-run
    assert writers_of(run) == {".": ["tbx"]}
    losses = scalars(run, "train_loss")
    assert [step for step, _value in losses] == [0, 1, 2, 3, 4]
    assert all(np.isfinite(value) for _step, value in losses)
    experiment, start, _end = session(run)
    values = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    assert values == {"lr": 0.05, "hidden": 3.0, "optimizer": "sgd", "scheduler": "None"}
    assert [m.name.tag for m in experiment.metric_infos] == ["hp_metric"]
    assert scalars(run, "hp_metric") == [(0, -1.0)]
    (group,) = dashboard(tmp_path)[1]["sessionGroups"]
    assert group["name"] == "tiny/version_0"
    assert group["hparams"] == {"lr": 0.05, "hidden": 3.0, "optimizer": "sgd", "scheduler": "None"}
    assert os.path.isfile(run / "hparams.yaml")


def test_tbx_patch_names_the_function():
    assert tbx.patch is importlib.import_module("tbx.patch").patch
    assert tbx.unpatch is importlib.import_module("tbx.patch").unpatch
