"""The real wandb SDK, offline, as an oracle for tbx's W&B-style API (tests skip without it)."""

import contextlib
import os

import pytest


@contextlib.contextmanager
def offline_run(directory, settings=None, **init_kwargs):
    """A ``wandb.init(mode="offline")`` run in ``directory`` (made if missing); the environment is restored after."""
    saved = {k: os.environ.get(k) for k in ("WANDB_MODE", "WANDB_SILENT", "WANDB_DIR")}
    os.makedirs(directory, exist_ok=True)
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(directory))
    try:
        wandb = pytest.importorskip("wandb", reason="wandb not installed: no oracle to compare with")
        run = wandb.init(mode="offline", dir=str(directory), reinit="create_new",
                         settings={"console": "off", **(settings or {})}, **init_kwargs)
        try:
            yield run
        finally:
            run.finish()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
