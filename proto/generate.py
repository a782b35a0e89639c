#!/usr/bin/env python3
"""Regenerate tbx/proto/*_pb2.py and *_pb2.pyi from proto/tbx/proto/*.proto.

Usage (from anywhere):

    python proto/generate.py [--out DIR]

DIR defaults to the repository root, so the modules land in tbx/proto/.
Needs only the standard library and grpcio-tools, whose bundled protoc and
well-known-type includes are used.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent  # holds tbx/proto/*.proto
REPO_ROOT = PROTO_ROOT.parent
PACKAGE_DIR = Path("tbx") / "proto"


def proto_sources() -> list[Path]:
    """The .proto files, relative to PROTO_ROOT, in a stable order."""
    return sorted(
        p.relative_to(PROTO_ROOT) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto")
    )


def generate(out: Path) -> list[Path]:
    """Run protoc into ``out``; return the paths written."""
    try:
        from grpc_tools import protoc
    except ImportError:
        sys.exit("proto/generate.py needs grpcio-tools (pip install grpcio-tools)")

    # The include directory grpc_tools ships (google/protobuf/*.proto).
    bundled = os.path.join(os.path.dirname(protoc.__file__), "_proto")

    sources = proto_sources()
    if not sources:
        sys.exit(f"no .proto files under {PROTO_ROOT / PACKAGE_DIR}")

    target = out / PACKAGE_DIR
    target.mkdir(parents=True, exist_ok=True)

    args = [
        "grpc_tools.protoc",  # argv[0], ignored by protoc
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={bundled}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        *(p.as_posix() for p in sources),
    ]
    rc = protoc.main(args)
    if rc != 0:
        sys.exit(f"protoc failed with exit status {rc}")

    written = []
    for src in sources:
        stem = src.stem + "_pb2"
        for ext in (".py", ".pyi"):
            path = target / (stem + ext)
            if not path.is_file():
                sys.exit(f"protoc did not write {path}")
            written.append(path)

    # Modules whose .proto is gone are not deleted, only reported.
    expected = {p.name for p in written}
    for path in sorted(target.glob("*_pb2.py*")):
        if path.name not in expected:
            print(f"warning: stale generated file {path}", file=sys.stderr)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT,
        help="output root; modules go to OUT/tbx/proto/ (default: repository root)",
    )
    ns = parser.parse_args(argv)
    for path in generate(ns.out.resolve()):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
