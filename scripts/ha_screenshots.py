#!/usr/bin/env python3
"""Screenshots of the house in a real Home Assistant, for the README (issue 21).

Starts what tests/e2e/test_home_assistant_real.py starts, with its helpers (tests/ha_real.py):
Home Assistant 2024.3.3 with a throwaway config directory (its venv: VPP_HA_PYTHON, or the one
cached in ~/.cache/vpp/ha-2024.3.3, built on first use), Mosquitto on a free port, a simulated
hybrid house (SunSpec simulator, June noon on a simulated clock that runs at wall-clock pace)
and the edge agent publishing it over MQTT discovery.  Then it

- sets the agent's energy counters as the Energy dashboard's grid, solar and battery sources and
  imports hourly long-term statistics for them for yesterday (``recorder/import_statistics``):
  one day of the default scenario's house h005 (5.3 kWp, 6.9 kWh; 21 May 2020, its local hours)
  under self-consumption, computed by vpp-sim's fast engine (Home Assistant compiles statistics
  from live states every 5 minutes and draws them by the hour: its graphs would stay empty for
  hours, and show a few minutes of a simulated house);
- logs headless Chromium in (Home Assistant's tokens put into localStorage ``hassTokens``
  over the DevTools protocol; no WebDriver, no browser download) and saves
  ``ha-device.png`` (the house's device page) and ``ha-energy.png`` (the Energy dashboard,
  yesterday) into --out, reduced to a 256-colour palette to stay small.

Needs: the project with its ``test`` and ``screenshots`` extras (the tests' helpers; Pillow),
Debian's ``mosquitto`` and ``chromium``, and the package index once to build Home Assistant's
venv.  Chromium runs with
--no-sandbox (needed as root).  Run from the repository root:

    python scripts/ha_screenshots.py [--out docs/images] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]  # this checkout's code, as the tests import it

import aiohttp  # noqa: E402

from edge_agent.agent import EdgeAgent  # noqa: E402
from edge_agent.home_assistant.bridge import attach  # noqa: E402
from edge_agent.home_assistant.entities import entities  # noqa: E402
from simulator.hybrid_device import SimulatorConfig, SunSpecHybridSimulator  # noqa: E402
from simulator.physics import PhysicsConfig  # noqa: E402
from tests.ha_fixtures import Mosquitto, mosquitto_binary  # noqa: E402
from tests.ha_real import (  # noqa: E402
    HomeAssistant,
    agent_config,
    energy_prefs,
    entities_available,
    ha_python,
    wait_answering,
)
from vpp_common.clock import ManualClock  # noqa: E402

NODE = "house_7"
NOON = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
SCENARIO_HOUSE, SCENARIO_DAY = "h005", date(2020, 5, 21)  # the Energy dashboard's day
DEVICE_PAGE, ENERGY_PAGE = (1100, 1560), (1280, 1440)  # viewports (px) that hold each page's cards
COUNTERS = ("grid_import", "grid_export", "pv_production", "battery_in", "battery_out")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--force-device-scale-factor=1", "--lang=en-US",
                  "--remote-debugging-port=0"]
# Text of an element tree, through shadow roots (Home Assistant's UI is web components).
DEEP_TEXT = """(() => { const out = [];
  const walk = (n) => { if (n.nodeType === 3) out.push(n.nodeValue);
    if (n.shadowRoot) walk(n.shadowRoot); for (const c of n.childNodes) walk(c); };
  walk(document.body); return out.join(' '); })()"""
# Integration logos come from the Internet (closed here): hide the broken images.
HIDE_BROKEN_IMAGES = """(() => { const walk = (n) => {
    if (n.localName === 'img' && n.complete && n.naturalWidth === 0) n.style.visibility = 'hidden';
    if (n.shadowRoot) walk(n.shadowRoot); for (const c of n.childNodes) walk(c); };
  walk(document.body); })()"""
CLICK_PREVIOUS = """(() => { const find = (n) => { if (n.localName === 'ha-icon-button-prev') return n;
    for (const c of [...(n.shadowRoot ? [n.shadowRoot] : []), ...n.childNodes]) {
      const f = find(c); if (f) return f; } return null; };
  const b = find(document.body); if (b) b.click(); return !!b; })()"""


def day_statistics() -> dict[str, list[float]]:
    """kWh per hour (local time) of one day of a simulated house, per counter: the default
    scenario's house h005 (5.3 kWp, 6.9 kWh battery) on 21 May 2020 under self-consumption
    (vpp-sim's fast engine), a day with grid import at night, export and a battery cycle."""
    from zoneinfo import ZoneInfo

    import numpy as np

    from simulator.fleet.default_scenario import default_scenario
    from simulator.fleet.engine import simulate

    sc = default_scenario(n_houses=8)  # h005 is one of the 8
    h = next(i for i, house in enumerate(sc.houses) if house.house_id == SCENARIO_HOUSE)
    tr = simulate(sc, "self_consumption")
    local = datetime.combine(SCENARIO_DAY, datetime.min.time(), ZoneInfo(sc.timezone))
    first = int((local - sc.start).total_seconds()) // sc.slot_s
    sl = slice(first, first + 86400 // sc.slot_s)
    kwh = sc.slot_s / 3600 / 1000
    flows = {"grid_import": np.maximum(tr.grid_w[h, sl], 0), "grid_export": np.maximum(-tr.grid_w[h, sl], 0),
             "pv_production": tr.pv_used_w[h, sl], "battery_in": np.maximum(tr.battery_w[h, sl], 0),
             "battery_out": np.maximum(-tr.battery_w[h, sl], 0)}
    return {k: [float(x) for x in v.reshape(24, -1).sum(axis=1) * kwh] for k, v in flows.items()}


def statistics_import(ids: dict[str, str], hourly: dict[str, list[float]], day: datetime) -> list[dict[str, Any]]:
    """``recorder/import_statistics`` bodies: each counter's running sum, hour by hour."""
    series = []
    for key in COUNTERS:
        total, stats = 0.0, []
        for h, kwh in enumerate(hourly[key]):
            total += kwh
            stats.append({"start": (day + timedelta(hours=h)).isoformat(), "state": round(total, 3),
                          "sum": round(total, 3)})
        series.append({"metadata": {"has_mean": False, "has_sum": True, "name": None, "source": "recorder",
                                    "statistic_id": ids[key], "unit_of_measurement": "kWh"}, "stats": stats})
    return series


class Cdp:
    """The least of Chrome's DevTools protocol: one page, one call at a time."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.n = ws, 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.n += 1
        await self.ws.send_json({"id": self.n, "method": method, "params": params})
        while True:  # events in between are not needed
            msg = await asyncio.wait_for(self.ws.receive_json(), 60)
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))

    async def text(self) -> str:
        r = await self.call("Runtime.evaluate", expression=DEEP_TEXT, returnByValue=True)
        return str(r["result"].get("value", ""))

    async def wait_for_text(self, *words: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            text = await self.text()
            if all(w in text for w in words):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the page never showed {words}: {text[:1500]}")
            await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def chromium(binary: str) -> AsyncIterator[Cdp]:
    profile = Path(tempfile.mkdtemp(prefix="vpp-chromium-"))
    proc = await asyncio.create_subprocess_exec(binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank",
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"  # Chromium writes the port it took (0 = any free one)
        deadline = time.monotonic() + 30
        while not (text := await asyncio.to_thread(lambda: port_file.exists() and port_file.read_text())):
            if proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{binary} did not open its DevTools port (exit {proc.returncode})")
            await asyncio.sleep(0.1)
        port = int(text.split()[0])
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/json/list") as r:
                page = next(t for t in await r.json() if t["type"] == "page")
            async with s.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                cdp = Cdp(ws)
                await cdp.call("Page.enable")
                yield cdp
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def log_in(cdp: Cdp, ha: HomeAssistant, token: str, refresh_token: str) -> None:
    """Home Assistant's frontend keeps its tokens in localStorage ``hassTokens``: put them there
    before its scripts run, as a login through its own page would."""
    tokens = {"hassUrl": ha.url, "clientId": f"{ha.url}/", "access_token": token, "token_type": "Bearer",
              "refresh_token": refresh_token, "expires_in": 1800, "expires": int(time.time() * 1000) + 1_800_000}
    await cdp.call("Page.addScriptToEvaluateOnNewDocument",
                   source=f"localStorage.setItem('hassTokens', {json.dumps(json.dumps(tokens))});")


async def shoot(cdp: Cdp, url: str, size: tuple[int, int], out: Path, *words: str,
                previous_day: bool = False) -> None:
    await cdp.call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1], deviceScaleFactor=1,
                   mobile=False)
    await cdp.call("Page.navigate", url=url)
    await cdp.wait_for_text(*words)
    if previous_day:
        r = await cdp.call("Runtime.evaluate", expression=CLICK_PREVIOUS, returnByValue=True)
        if not r["result"].get("value"):
            raise RuntimeError("no previous-day button on the Energy dashboard")
    await asyncio.sleep(5)  # charts load their statistics and animate
    await cdp.call("Runtime.evaluate", expression=HIDE_BROKEN_IMAGES)
    png = await cdp.call("Page.captureScreenshot", format="png")
    size = await asyncio.to_thread(save_small, out, base64.b64decode(png["data"]))
    print(f"{out}: {size // 1024} KB")


def save_small(path: Path, png: bytes) -> int:
    """Saved with a 256-colour palette: the UI's flat colours survive, the file is far smaller."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        small = img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)
    return path.stat().st_size


@contextlib.contextmanager
def broker() -> Iterator[Mosquitto]:
    binary = mosquitto_binary()
    if binary is None:
        raise SystemExit("mosquitto is not installed (Debian package mosquitto)")
    workdir = Path(tempfile.mkdtemp(prefix="vpp-mosquitto-"))
    m = Mosquitto(binary, workdir)
    m.start()
    try:
        yield m
    finally:
        m.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def ticking(clock: ManualClock) -> None:
    while True:  # the simulated house at wall-clock pace
        await asyncio.sleep(1.0)
        clock.advance(1.0)


async def run(args: argparse.Namespace) -> None:
    python = args.ha_python or ha_python(build=True, log=lambda m: print(m, file=sys.stderr))
    workdir = Path(tempfile.mkdtemp(prefix="vpp-ha-shots-"))
    with broker() as mqtt:
        ha = HomeAssistant(python, workdir)
        clock = ManualClock(NOON)
        sim = SunSpecHybridSimulator(SimulatorConfig(physics=PhysicsConfig(initial_soc_pct=62)), clock)
        agent: EdgeAgent | None = None
        ticker: asyncio.Task[None] | None = None
        try:
            await wait_answering(ha)
            setup = await ha.probe("setup", mqtt.host, str(mqtt.port))
            token = setup["token"]
            await sim.start()
            agent = EdgeAgent(agent_config(sim.port, (mqtt.host, mqtt.port), NODE, f"ws://127.0.0.1:{ha.port}/api/websocket",
                                           token, workdir / "state", [], house_id="house-7"), clock=clock)
            bridge = attach(agent)
            assert bridge is not None
            await agent.start()
            ticker = asyncio.create_task(ticking(clock))
            seen = await entities_available(ha, token, f"vpp_{NODE}_", len(entities(bridge.spec())))
            ids = {e["unique_id"].removeprefix(f"vpp_{NODE}_"): e["entity_id"] for e in seen["registry"]}
            device_id = seen["registry"][0]["device_id"]
            await ha.probe("energy", token, json.dumps(energy_prefs(ids)))
            yesterday = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
            await ha.probe("import_statistics", token,
                           json.dumps(statistics_import(ids, day_statistics(), yesterday)))
            args.out.mkdir(parents=True, exist_ok=True)
            async with chromium(args.chromium) as cdp:
                await log_in(cdp, ha, token, setup["refresh_token"])
                await shoot(cdp, f"{ha.url}/config/devices/device/{device_id}", DEVICE_PAGE,
                            args.out / "ha-device.png", "Battery reserve", "Grid power", "Control mode")
                await shoot(cdp, f"{ha.url}/energy", ENERGY_PAGE, args.out / "ha-energy.png", "Energy distribution",
                            previous_day=True)
        finally:
            if ticker is not None:
                ticker.cancel()
            if agent is not None:
                await agent.stop()
            await sim.stop()
            ha.stop()
            if args.keep:
                print(f"Home Assistant's config and log: {workdir}", file=sys.stderr)
            else:
                shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="folder for the PNGs (default docs/images)")
    p.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium binary (default /usr/bin/chromium)")
    p.add_argument("--ha-python", help="Python of a Home Assistant 2024.3.3 venv (default: VPP_HA_PYTHON or the cached one)")
    p.add_argument("--keep", action="store_true", help="keep Home Assistant's config directory and log")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # a late answer dumps whole frames
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
