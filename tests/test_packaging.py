"""Installing the project: regular and editable installs both provide tbx.converters.

Each install goes into its own fresh virtual environment that sees this
environment's packages (numpy, protobuf, Pillow, setuptools) through a .pth
file, is built without network access (--no-build-isolation), and is imported
from a directory outside the checkout so the source tree cannot mask a broken
install.
"""

import os
import subprocess
import sys
import sysconfig
import venv

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _install(tmp_path, editable):
    env_dir = tmp_path / ("editable" if editable else "regular")
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = str(env_dir / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "parent_env.pth"), "w") as pth:
        pth.write(sysconfig.get_paths()["purelib"] + "\n")
    target = ["-e", ROOT] if editable else [ROOT]
    build_env = dict(os.environ, TBX_REQUIRE_NATIVE="1", PIP_NO_INDEX="1")
    # pip from this interpreter, installing into the new environment.
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
         "--no-build-isolation", *target],
        cwd=str(tmp_path), env=build_env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return python


@pytest.mark.parametrize("editable", [False, True], ids=["regular", "editable"])
def test_install_provides_tbx_converters(tmp_path, editable):
    python = _install(tmp_path, editable)
    code = (
        "import os, tbx, tbx.converters, tbx.record, tbx.cli\n"
        "print(os.path.dirname(tbx.__file__))\n"
        "print(tbx.converters.__name__)\n"
        "print(tbx.record.IMPLEMENTATION)\n"
        "import importlib.util\n"
        "print(importlib.util.find_spec('converters'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TBX_PURE")}
    out = subprocess.run([python, "-c", code], cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    package_dir, name, implementation, top_level = out.stdout.splitlines()
    assert name == "tbx.converters"
    assert top_level == "None", "converters/ must not be installed as a top-level package"
    assert implementation.startswith("native"), implementation
    if editable:
        assert os.path.realpath(package_dir) == os.path.join(os.path.realpath(ROOT), "tbx")
    else:
        assert "site-packages" in package_dir
        cli = subprocess.run([str(tmp_path / "regular" / "bin" / "tbx"), "--help"], capture_output=True, text=True, env=env)
        assert cli.returncode == 0 and "ls" in cli.stdout


def test_import_is_light():
    """`import tbx` and logging every core kind pull in neither torch nor pandas (optional extras)."""
    code = (
        "import sys, tempfile, numpy as np, tbx\n"
        "with tbx.SummaryWriter(tempfile.mkdtemp()) as w:\n"
        "    w.add_scalar('a', 1.0, 0); w.add_histogram('h', np.arange(10.0), 0)\n"
        "    w.add_image('i', np.zeros((3, 4, 4), np.uint8), 0); w.add_text('t', 'x', 0)\n"
        "print(sorted(m for m in ('torch', 'pandas', 'tensorboard', 'PIL') if m in sys.modules))\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
