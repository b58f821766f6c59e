"""Every third-party module the product imports (at the top or inside a function) comes from a
runtime dependency in pyproject.toml: ``pip install .`` (the README's first command) must be
enough.  ``vpp-sim run --mode live`` once ran 10 simulated hours and then failed on ``import
psutil``, which only the test extra installed."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("aggregator", "edge_agent", "simulator", "vpp_common")
FIRST_PARTY = {*PACKAGES, "vpp"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _imported_roots() -> dict[str, str]:
    """Top-level module -> a file that imports it."""
    roots: dict[str, str] = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for n in names:
                    roots.setdefault(n.split(".")[0], str(path.relative_to(ROOT)))
    return roots


def test_every_imported_third_party_module_is_a_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    dists = packages_distributions()
    missing = []
    for mod, where in sorted(_imported_roots().items()):
        if mod in FIRST_PARTY or mod in sys.stdlib_module_names or mod == "__future__":
            continue
        provided_by = {d.lower().replace("_", "-") for d in dists.get(mod, [])}
        if not provided_by & runtime:
            missing.append(f"{mod} (imported in {where}; from {sorted(provided_by) or 'nothing installed'})")
    assert not missing, "imported but not a runtime dependency: " + "; ".join(missing)
