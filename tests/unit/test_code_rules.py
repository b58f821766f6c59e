"""The import arrows of docs/architecture.md are enforced: .importlinter's contracts hold for
the repository, and a forbidden import in a copy of it breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter not installed (test extra)")


def _copy_tree(dst: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "data", "catalogue")
    for pkg in ("aggregator", "edge_agent", "simulator", "vpp_common"):
        shutil.copytree(REPO / pkg, dst / pkg, ignore=ignore)
    shutil.copytree(REPO / "proto", dst / "proto", ignore=ignore)
    shutil.copy(REPO / ".importlinter", dst / ".importlinter")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{root / 'proto'}")
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def _add_import(path: Path, line: str) -> None:
    text = path.read_text(encoding="utf-8")
    head, sep, rest = text.partition("from __future__ import annotations\n")
    assert sep, path
    path.write_text(head + sep + line + "  # noqa\n" + rest, encoding="utf-8")


FORBIDDEN = [  # (module file, import added, contract that must break, the arrow it reports)
    ("aggregator/dispatch/problem.py", "import aggregator.store", "The optimiser is pure",
     "aggregator.dispatch.problem -> aggregator.store"),
    ("aggregator/store/base.py", "import aggregator.planner", "Aggregator layers",
     "aggregator.store.base -> aggregator.planner"),
    ("edge_agent/energy_manager/decide.py", "import vpp.v1.plan_pb2", "Protobuf and gRPC only",
     "edge_agent.energy_manager.decide -> vpp.v1.plan_pb2"),
    ("edge_agent/drivers/sunspec.py", "import edge_agent.agent", "Edge agent layers",
     "edge_agent.drivers.sunspec -> edge_agent.agent"),
    ("vpp_common/messages.py", "import grpc", "vpp_common imports no component",
     "vpp_common.messages -> grpc"),
    ("edge_agent/uplink/client.py", "import aggregator.service", "The edge agent does not import the aggregator",
     "edge_agent.uplink.client -> aggregator.service"),
]


def test_a_forbidden_import_breaks_its_contract(tmp_path: Path) -> None:
    _copy_tree(tmp_path)
    for module, line, _, _ in FORBIDDEN:
        _add_import(tmp_path / module, line)
    r = _lint(tmp_path)
    assert r.returncode != 0, r.stdout
    broken = [ln for ln in r.stdout.splitlines() if " BROKEN" in ln]
    for _, _, contract, arrow in FORBIDDEN:
        assert any(ln.startswith(contract) for ln in broken), (contract, r.stdout)
        assert arrow in r.stdout, (arrow, r.stdout)


def test_the_repository_keeps_every_contract(tmp_path: Path) -> None:
    _copy_tree(tmp_path)
    r = _lint(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def test_modules_and_functions_stay_small() -> None:
    """docs/architecture.md, "Code rules": in aggregator/ and edge_agent/ no module over 400 lines
    and no function over 80 (ruff's C901 bounds the complexity)."""
    import ast

    too_big = []
    for pkg in ("aggregator", "edge_agent"):
        for path in sorted((REPO / pkg).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            name = path.relative_to(REPO).as_posix()
            if (n := len(text.splitlines())) > MAX_MODULE_LINES:
                too_big.append(f"{name}: {n} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        too_big.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert too_big == [], "\n".join(too_big)


def test_no_asyncio_wait_for() -> None:
    """Python 3.11's ``asyncio.wait_for`` can lose a cancellation (docs/cancellation.md): a task
    cancelled once, as an ``asyncio.TaskGroup`` cancels its children, then runs on.  Our own
    code uses ``asyncio.timeout``; libraries' calls are caught by ``cancellation_kept`` and
    ``cancel_and_wait``."""
    import ast

    found = []
    for pkg in ("aggregator", "edge_agent", "vpp_common", "simulator"):
        for path in sorted((REPO / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute) and node.attr == "wait_for" \
                        and isinstance(node.value, ast.Name) and node.value.id == "asyncio":
                    found.append(f"{path.relative_to(REPO).as_posix()}:{node.lineno}")
    assert found == [], "asyncio.wait_for in: " + ", ".join(found)
