"""Home Assistant's venv for the real-Home-Assistant test (tests/ha_real.py): which one is used,
why it is skipped, one build under concurrent callers, and the requirements it pre-installs."""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
import zipfile
from pathlib import Path

import pytest

from tests import ha_real
from tests.ha_real import COMPLETE, HaUnavailable, ha_python, integration_requirements


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("VPP_HA_PYTHON", "VPP_HA_SKIP", "VPP_HA_BUILD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VPP_HA_VENV", str(tmp_path / "ha"))
    return tmp_path / "ha"


def test_given_python_wins(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPP_HA_PYTHON", "/opt/ha/bin/python")
    monkeypatch.setenv("VPP_HA_SKIP", "1")
    assert ha_python() == "/opt/ha/bin/python"


def test_opt_out(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPP_HA_SKIP", "1")
    (cache).mkdir()
    (cache / COMPLETE).write_text("{}")
    with pytest.raises(HaUnavailable, match="VPP_HA_SKIP"):
        ha_python(build=True)


def test_missing_venv_is_not_built_unless_asked(cache: Path) -> None:
    with pytest.raises(HaUnavailable, match=r"not built in .*VPP_HA_BUILD=1"):
        ha_python()
    assert not cache.exists()


def test_cached_venv_is_reused(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache.mkdir()
    (cache / COMPLETE).write_text("{}")
    monkeypatch.setattr(ha_real, "build_venv", lambda dest: pytest.fail("rebuilt"))
    assert ha_python(build=True) == str(cache / "bin" / "python")


def test_concurrent_callers_build_once(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds: list[Path] = []

    def slow_build(dest: Path) -> None:
        builds.append(dest)
        time.sleep(0.3)  # the others wait on the lock meanwhile
        dest.mkdir(parents=True)
        (dest / COMPLETE).write_text("{}")

    monkeypatch.setattr(ha_real, "build_venv", slow_build)
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(ha_python(build=True))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert builds == [cache]
    assert got == [str(cache / "bin" / "python")] * 3


def test_half_built_venv_is_rebuilt(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache.mkdir()
    (cache / "leftover").write_text("a build that died")
    monkeypatch.setattr(ha_real, "_run", lambda *a, **k: None)  # python -m venv

    def download_fails(cmd: list[str], **kw: object) -> object:
        assert not (cache / "leftover").exists()  # removed before building again
        raise AssertionError("stop here")

    monkeypatch.setattr(ha_real.subprocess, "run", download_fails)
    with pytest.raises(AssertionError, match="stop here"):
        ha_real.build_venv(cache)


def test_unreachable_index_is_a_skip_that_says_so(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pip pointed at a closed port, without the machine's own pip config: the download fails
    fast and the reason names the index and pip's own last line."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{closed}/simple")
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(HaUnavailable) as e:
        ha_python(build=True)
    assert "package index is unreachable" in str(e.value)
    assert "homeassistant==2024.3.3" in str(e.value)
    assert not cache.exists()  # nothing half-built left behind


def _wheel(manifests: dict[str, dict[str, object]]) -> zipfile.ZipFile:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for domain, m in manifests.items():
            z.writestr(f"homeassistant/components/{domain}/manifest.json", json.dumps(m))
    return zipfile.ZipFile(io.BytesIO(buf.getvalue()))


def test_requirements_follow_dependencies() -> None:
    wheel = _wheel({"mqtt": {"requirements": ["paho-mqtt==1.6.1"], "dependencies": ["file_upload", "http"]},
                    "file_upload": {"requirements": ["janus==1.0.0"], "dependencies": ["http"]},
                    "http": {"requirements": ["aiohttp_cors==0.7.0"], "dependencies": ["mqtt"]},  # a cycle
                    "energy": {}})
    assert integration_requirements(wheel, ("mqtt", "energy", "no_such")) == [
        "aiohttp_cors==0.7.0", "janus==1.0.0", "paho-mqtt==1.6.1"]
