"""A real Home Assistant (issue 21) for tests/e2e/test_home_assistant_real.py and
scripts/ha_screenshots.py: its virtual environment, the process, and the house they show.

Home Assistant 2024.3.3 is the last release that runs on Python 3.11, in a venv of its own
(its pins clash with the project's).  ``ha_python()`` gives that venv's Python:

- ``VPP_HA_PYTHON``: a venv made by hand (``pip install homeassistant==2024.3.3 'josepy<2'``);
- ``VPP_HA_SKIP=1``: none (the caller skips);
- else the venv kept in ``$XDG_CACHE_HOME/vpp/ha-2024.3.3`` (``~/.cache``; or ``VPP_HA_VENV``),
  built there when missing if the caller allows it (``build=True``, or ``VPP_HA_BUILD=1``:
  measured 74 s with pip's cache warm and 230 s with none, at load 7.5 on 2 cores; most of it
  downloading 163 MB), under a lock file so that concurrent runs build it once and never use
  half of it.  ``python -m tests.ha_real`` builds it.

The build installs Home Assistant's wheel with its own ``package_constraints.txt`` (what Home
Assistant itself installs integrations with: without it pip backtracks for minutes through
today's bluetooth libraries), ``josepy<2`` (newer josepy breaks the cloud/acme import and every
API call answers 500), and the requirements of the integrations the test's config and
onboarding load, so Home Assistant installs nothing at start (two runs sharing the venv would
race in pip otherwise).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Callable
from datetime import time as dtime
from pathlib import Path
from typing import Any

from tests.conftest import _SESSION_PIDS, free_port

HA_VERSION = "2024.3.3"
PROBE = Path(__file__).with_name("e2e") / "ha_probe.py"
COMPLETE = ".vpp-complete"  # written last: a venv without it is a broken build and is rebuilt
# Integrations whose requirements go into the venv: the bootstrap's defaults (frontend, backup,
# hardware, ...), the test config's, and what onboarding's core_config step sets up.
INTEGRATIONS = (
    "frontend", "recorder", "backup", "hardware", "logger", "system_log", "network", "system_health",
    "application_credentials", "automation", "person", "scene", "script", "tag", "zone", "counter",
    "input_boolean", "input_button", "input_datetime", "input_number", "input_select", "input_text",
    "schedule", "timer", "api", "http", "history", "energy", "template", "mqtt",
    "google_translate", "met", "radio_browser", "shopping_list", "tts", "camera",
)
AUTH_REQUIREMENTS = ("pyotp==2.8.0", "PyQRCode==1.2.1")  # homeassistant/auth/mfa_modules/totp.py


class HaUnavailable(Exception):
    """No Home Assistant venv can be had here; the message says why (a skip reason)."""


def venv_dir() -> Path:
    if os.environ.get("VPP_HA_VENV"):
        return Path(os.environ["VPP_HA_VENV"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "vpp" / f"ha-{HA_VERSION}"


def ha_python(build: bool = False, log: Callable[[str], None] = lambda _: None) -> str:
    """The Python of a Home Assistant venv (module docstring); raises HaUnavailable."""
    if os.environ.get("VPP_HA_PYTHON"):
        return os.environ["VPP_HA_PYTHON"]
    if os.environ.get("VPP_HA_SKIP"):
        raise HaUnavailable("VPP_HA_SKIP is set")
    dest = venv_dir()
    python = dest / "bin" / "python"
    if (dest / COMPLETE).exists():
        return str(python)
    if not (build or os.environ.get("VPP_HA_BUILD")):
        raise HaUnavailable(f"Home Assistant {HA_VERSION}'s venv is not built in {dest}: VPP_HA_BUILD=1 "
                            "builds it there once (1-4 min, 163 MB from the package index), or "
                            "`python -m tests.ha_real`; or set VPP_HA_PYTHON to a venv's python")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f"{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building it: wait, then reuse
        if not (dest / COMPLETE).exists():
            started = time.monotonic()
            log(f"building Home Assistant {HA_VERSION}'s venv in {dest} (once; minutes)")
            build_venv(dest)
            log(f"built in {time.monotonic() - started:.0f} s")
    return str(python)


def _run(cmd: list[str], what: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if p.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {p.returncode}): {(p.stderr or p.stdout)[-3000:]}")
    return p


def build_venv(dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)  # a build that died half-way
    wheels = dest / "wheels"
    # The wheel alone first, with this Python's pip and a short timeout: the one place where a
    # failure means that the package index cannot be reached from here (a skip, not a failure).
    p = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--timeout", "20", "--retries", "1",
                        "-d", str(wheels), f"homeassistant=={HA_VERSION}"], capture_output=True, text=True,
                       timeout=300)
    if p.returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        raise HaUnavailable(f"the package index is unreachable from here: pip could not download "
                            f"homeassistant=={HA_VERSION} ({pip_error(p.stderr or p.stdout)})")
    _run([sys.executable, "-m", "venv", str(dest)], "python -m venv", 120)
    python = str(dest / "bin" / "python")
    wheel = next(wheels.glob(f"homeassistant-{HA_VERSION}-*.whl"))
    constraints = dest / "constraints.txt"
    with zipfile.ZipFile(wheel) as z:
        constraints.write_bytes(z.read("homeassistant/package_constraints.txt"))
        reqs = integration_requirements(z, INTEGRATIONS) + list(AUTH_REQUIREMENTS)
    _run([python, "-m", "pip", "install", "-q", "--no-compile", "-c", str(constraints), str(wheel), "josepy<2", *reqs],
         "pip install homeassistant", 1800)
    _run([python, "-c", "import homeassistant.components.http, homeassistant.components.mqtt, josepy"],
         "importing homeassistant", 120)
    (dest / COMPLETE).write_text(json.dumps({"homeassistant": HA_VERSION, "requirements": reqs}))


def pip_error(output: str) -> str:
    """pip's reason: the connection error it retried on if any (it names the host and the
    errno), else its last line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()] or ["(no output)"]
    conn = [ln for ln in lines if "connection" in ln.lower() or "Errno" in ln]
    return (conn or lines)[-1][:400]


def integration_requirements(wheel: zipfile.ZipFile, domains: tuple[str, ...]) -> list[str]:
    """The pip requirements of ``domains`` and their dependencies, from their manifests."""
    seen: set[str] = set()
    reqs: list[str] = []
    todo = list(domains)
    while todo:
        d = todo.pop()
        if d in seen:
            continue
        seen.add(d)
        try:
            manifest = json.loads(wheel.read(f"homeassistant/components/{d}/manifest.json"))
        except KeyError:
            continue
        reqs += [r for r in manifest.get("requirements", []) if r not in reqs]
        todo += manifest.get("dependencies", [])
    return sorted(reqs)


CONFIG = """homeassistant:
  name: VPP test
  latitude: 52.37
  longitude: 4.89
  elevation: 0
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: NL
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
recorder:
  commit_interval: 1
energy:
logger:
  default: warning
input_number:
  grid_kw:
    min: -20
    max: 20
    step: 0.1
    initial: 1.5
input_boolean:
  boiler:
    name: Boiler
    initial: true
template:
  - sensor:
      - name: Test grid power
        unique_id: test_grid_power
        unit_of_measurement: kW
        device_class: power
        state_class: measurement
        state: "{{{{ states('input_number.grid_kw') }}}}"  # {{ }} after str.format
"""


class HomeAssistant:
    """Home Assistant started with a throwaway config directory ``workdir`` on a free port."""

    def __init__(self, python: str, workdir: Path) -> None:
        self.python, self.workdir = python, workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (workdir / "configuration.yaml").write_text(CONFIG.format(port=self.port))
        self.log = open(workdir / "ha.log", "wb")
        self.proc = subprocess.Popen([python, "-m", "homeassistant", "-c", str(workdir)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        _SESSION_PIDS.add(self.proc.pid)  # its pip installs (if any) are its own children
        self.token = ""

    def answering(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/onboarding", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    async def probe(self, *args: str) -> Any:
        p = await asyncio.create_subprocess_exec(self.python, str(PROBE), args[0], self.url, *args[1:],
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(p.communicate(), 60)
        if p.returncode != 0:
            raise AssertionError(f"ha_probe {args[0]} failed: {err.decode()[-2000:]}")
        return json.loads(out)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        _SESSION_PIDS.discard(self.proc.pid)
        self.log.close()


async def poll_until(pred: Callable[[], Any], what: str, timeout_s: float, every_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while not await pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(every_s)


async def wait_answering(ha: HomeAssistant, timeout_s: float = 300) -> None:
    async def answering() -> bool:
        return await asyncio.get_running_loop().run_in_executor(None, ha.answering)

    await poll_until(answering, "Home Assistant's API", timeout_s)


async def entities_available(ha: HomeAssistant, token: str, prefix: str, n: int,
                             timeout_s: float = 60) -> dict[str, Any]:
    """Waits until Home Assistant has ``n`` entities whose unique id starts with ``prefix``, none
    unavailable; their entity registry rows and states."""
    seen: dict[str, Any] = {}

    async def all_there() -> bool:
        seen.update(await ha.probe("entities", token, prefix))
        states = {s["entity_id"]: s for s in seen["states"]}
        return (len(seen["registry"]) == n
                and all(states.get(e["entity_id"], {}).get("state") not in (None, "unavailable")
                        for e in seen["registry"]))

    await poll_until(all_there, "every entity in Home Assistant, available", timeout_s, 1.0)
    return seen


def energy_prefs(ids: dict[str, str]) -> dict[str, Any]:
    """The Energy dashboard with the agent's counters (entity ids by entity key) as the grid,
    solar and battery sources."""
    return {"energy_sources": [
        {"type": "grid", "flow_from": [{"stat_energy_from": ids["grid_import"], "stat_cost": None,
                                        "entity_energy_price": None, "number_energy_price": None}],
         "flow_to": [{"stat_energy_to": ids["grid_export"], "stat_compensation": None,
                      "entity_energy_price": None, "number_energy_price": None}],
         "cost_adjustment_day": 0},
        {"type": "solar", "stat_energy_from": ids["pv_production"], "config_entry_solar_forecast": None},
        {"type": "battery", "stat_energy_from": ids["battery_out"], "stat_energy_to": ids["battery_in"]},
    ], "device_consumption": []}


def agent_config(sim_port: int, broker: tuple[str, int], node_id: str, ws_url: str, token: str,
                 state_dir: Path, entities: list[Any], house_id: str = "house-ha") -> Any:
    """The agent of the test: a hybrid simulator's house over MQTT discovery, and Home
    Assistant's ``entities`` (if any) over its WebSocket API."""
    from edge_agent.config import (
        AgentConfig,
        BatteryConfig,
        ControlConfig,
        DeviceConfig,
        HomeAssistantConfig,
        TariffConfig,
        TariffPeriodConfig,
    )
    from edge_agent.ha_api_config import HomeAssistantApiConfig

    return AgentConfig(
        house_id=house_id, insecure=True, metrics_port=None, aggregator=f"127.0.0.1:{free_port()}",
        reconnect_initial_s=5.0, reconnect_max_s=5.0,
        device=DeviceConfig(port=sim_port, timeout_s=0.2, poll_interval_s=1.0, stale_after_s=10.0),
        battery=BatteryConfig(revert_s=10), control=ControlConfig(tick_s=0.05, deadband_w=20),
        tariff=TariffConfig(periods=[TariffPeriodConfig(start=dtime(0), end=dtime(0), import_price_per_kwh=0.30,
                                                        export_price_per_kwh=0.08)]),
        state_dir=state_dir,
        home_assistant=HomeAssistantConfig(host=broker[0], port=broker[1], node_id=node_id,
                                           publish_interval_s=0.5, api=HomeAssistantApiConfig(
                                               url=ws_url, token=token, control_interval_s=1.0,
                                               entities=entities) if entities else None))


if __name__ == "__main__":
    started = time.monotonic()
    try:
        print(ha_python(build=True, log=print))
    except HaUnavailable as e:
        raise SystemExit(str(e)) from None
    print(f"{time.monotonic() - started:.0f} s")
