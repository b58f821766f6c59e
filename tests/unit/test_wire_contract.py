"""The committed generated code matches a fresh generation, and buf lint is clean."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    fresh = tmp_path / "vpp" / "v1"
    committed = ROOT / "proto" / "vpp" / "v1"
    generated = sorted(p.name for p in fresh.iterdir() if p.suffix in (".py", ".pyi"))
    assert generated, "generator produced nothing"
    stale = [name for name in generated
             if not (committed / name).exists() or not filecmp.cmp(fresh / name, committed / name, shallow=False)]
    assert not stale, f"committed code differs from a fresh generation: {stale}; run scripts/gen_proto.py"
    extra = sorted(p.name for p in committed.glob("*_pb2*.py*") if p.name not in generated)
    assert not extra, f"generated files without a .proto: {extra}"


def test_buf_lint_is_clean() -> None:
    buf = shutil.which("buf") or str(Path(sys.executable).parent / "buf")
    if not Path(buf).exists():
        pytest.skip("buf not installed (pip install buf-bin)")
    result = subprocess.run([buf, "lint"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_code_imports_as_vpp_v1() -> None:
    from vpp.v1 import fleet_service_pb2, fleet_service_pb2_grpc

    request = fleet_service_pb2.ConnectRequest(sequence=1, hello=fleet_service_pb2.Hello(agent_version="t"))
    assert request.WhichOneof("payload") == "hello"
    assert hasattr(fleet_service_pb2_grpc, "FleetServiceServicer")
