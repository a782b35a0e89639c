"""Build the optional C kernels ``tbx._native`` and ``tbx.converters._wbscan``.

Everything else about the package lives in pyproject.toml. If an extension
cannot be compiled, the install still succeeds and tbx runs on its pure-Python
twin (``tbx/_pure.py``, ``converters/wandb_fastpath.py``) after printing a warning. Set ``TBX_REQUIRE_NATIVE=1``
(as CI does) to make a failed build an error instead.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _native_required() -> bool:
    return os.environ.get("TBX_REQUIRE_NATIVE", "") not in ("", "0", "false", "no")


class OptionalBuildExt(build_ext):
    """build_ext that degrades to a warning unless TBX_REQUIRE_NATIVE is set."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # distutils raises several unrelated types here
            self._give_up("tbx's C kernels", exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._give_up(f"the C kernel {ext.name}", exc)

    def _give_up(self, what, exc):
        if _native_required():
            raise
        banner = "=" * 72
        sys.stderr.write(
            f"\n{banner}\nWARNING: {what} could not be built ({exc}).\n"
            "tbx will use its pure-Python twin: identical output, slower.\n"
            f"Set TBX_REQUIRE_NATIVE=1 to make this an error.\n{banner}\n\n"
        )


_compile_args = [] if sys.platform == "win32" else ["-O3", "-std=c99", "-fno-strict-aliasing"]

setup(
    ext_modules=[
        Extension("tbx._native", sources=["tbx/_native.c"], extra_compile_args=_compile_args),
        Extension("tbx.converters._wbscan", sources=["converters/_wbscan.c"], extra_compile_args=_compile_args),
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
