#!/usr/bin/env python3
"""Regenerate the committed Python code of the wire contract (proto/vpp/v1).

    python scripts/gen_proto.py            # writes beside the .proto files
    python scripts/gen_proto.py --out DIR  # writes into DIR/vpp/v1 (used by the drift test)

Needs grpcio-tools==1.81.1 (the generator matching protobuf 6.33; see pyproject
extras ``test``).  buf cannot run the Python plugins offline, so protoc it is.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE_DIR = Path("vpp") / "v1"


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))


def generate(out: Path) -> None:
    from grpc_tools import protoc  # imported late: only the generator needs it

    well_known = str(resources.files("grpc_tools") / "_proto")
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *proto_files(),
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=PROTO_ROOT, help="output root (default: proto/)")
    args = parser.parse_args(argv)
    generate(args.out)
    print(f"generated {len(proto_files())} files' code under {args.out / PACKAGE_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
