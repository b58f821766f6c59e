"""A contract a stranger can implement (issue 20): a client generated from proto/vpp/v1/*.proto
alone, in an environment of its own (grpcio, grpcio-tools and protobuf from the package index,
nothing of this project), holds the whole conversation with a real aggregator on loopback in
insecure mode, in the order the proto's comments state.

The environment is made once per Python version and package list and kept in the temporary
directory (making it takes 20-60 s; the test then takes a few seconds)."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from aggregator.config import AggregatorConfig
from aggregator.server import AggregatorServer
from vpp_common.messages import PlanState

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
CLIENT = Path(__file__).with_name("stranger_client.py")
PACKAGES = ("grpcio", "grpcio-tools", "protobuf")  # what a stranger installs; unpinned on purpose


def _clean_env() -> dict[str, str]:
    """This process's environment without its path to the project's code."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


@pytest.fixture(scope="module")
def stranger_python() -> Path:
    base = shutil.which("python3.11")
    if base is None:
        pytest.skip("python3.11 not found")
    version = subprocess.run([base, "-c", "import sys; print(sys.version)"], capture_output=True, text=True,
                             check=True, env=_clean_env()).stdout
    key = hashlib.sha256(f"{version} {PACKAGES}".encode()).hexdigest()[:12]
    venv = Path(tempfile.gettempdir()) / f"vpp-stranger-venv-{key}"
    python = venv / "bin" / "python"
    with open(f"{venv}.lock", "w") as lock:  # test runs side by side make it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / "ready").exists():  # written last: a half-made environment is made again
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120,
                           env=_clean_env())
            subprocess.run([base, "-m", "pip", "--python", str(python), "install", "--quiet", *PACKAGES],
                           check=True, timeout=240, env=_clean_env())
            (venv / "ready").write_text(" ".join(PACKAGES) + "\n")
    return python


def generate(python: Path, out: Path) -> None:
    """Python code of the contract, from the .proto files only, by the stranger's grpcio-tools."""
    out.mkdir()
    proto_root = ROOT / "proto"
    protos = sorted(str(p.relative_to(proto_root)) for p in (proto_root / "vpp" / "v1").glob("*.proto"))
    subprocess.run([str(python), "-m", "grpc_tools.protoc", f"-I{proto_root}", f"--python_out={out}",
                    f"--grpc_python_out={out}", *protos], check=True, timeout=60, env=_clean_env(), cwd=out)


async def test_a_client_generated_from_the_proto_alone_holds_the_whole_conversation(
        stranger_python: Path, tmp_path: Path) -> None:
    generate(stranger_python, tmp_path / "gen")
    client = tmp_path / CLIENT.name  # away from the project's directories
    shutil.copy(CLIENT, client)
    cfg = AggregatorConfig(admin_listen=None, listen="127.0.0.1:0", insecure=True, metrics_port=None,
                           replica_id="r1")
    srv = AggregatorServer(cfg)
    await srv.start()
    try:
        proc = await asyncio.create_subprocess_exec(
            str(stranger_python), str(client), srv.target, "house-stranger", cwd=tmp_path,
            env=dict(_clean_env(), PYTHONPATH=str(tmp_path / "gen")),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0, err.decode()
        status = await srv.store.get_plan_status("house-stranger")
    finally:
        await srv.stop(grace_s=0.5)

    result = json.loads(out)
    assert result["modules"] == [], "the client used nothing of this project"
    received = result["received"]
    assert [seq for seq, _ in received] == list(range(1, len(received) + 1)), received
    kinds = [kind for _, kind in received]
    assert kinds[:2] == ["welcome", "grid_signal"], kinds
    first_plan = kinds.index("dispatch_plan")
    assert set(kinds[2:first_plan]) <= {"grid_signal"}, kinds  # nothing but newer signals before the plan
    assert kinds.count("telemetry_ack") == 2 and kinds.index("telemetry_ack") > first_plan, kinds
    assert "drain" not in kinds  # the client half-closed: the stream ended without one
    assert result["welcome_house_id"] == "house-stranger" and result["prices"] > 0 and result["currency"]
    assert result["setpoints"] == ["battery"] and result["acked"] == [4, 5]  # Hello 1, update 2, status 3
    assert status is not None and status.state is PlanState.ACCEPTED
    assert status.version >= result["plan_version"]
