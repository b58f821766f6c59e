"""A Tasmota plug with an energy monitor, over Tasmota's web commands (tasmota.github.io/docs/Commands).

``GET /cm?cmnd=<command>`` (with ``user`` and ``password`` when the web admin password is set):

* ``Power`` -> ``{"POWER": "ON"|"OFF"}``; ``Power On|Off|Toggle|1|0`` switches and answers the same.
* ``Status 8`` -> ``{"StatusSNS": {"Time", "ENERGY": {"TotalStartTime", "Total" kWh, "Yesterday",
  "Today", "Power" W, "ApparentPower", "ReactivePower", "Factor", "Voltage" V, "Current" A}}}``.
* ``Status 0`` -> every status section: ``Status`` (DeviceName, FriendlyName, Topic, Power),
  ``StatusFWR`` (Version), ``StatusNET``, ``StatusSNS``, ``StatusSTS`` (POWER).
* An unknown command -> ``{"Command": "Unknown"}``; a wrong or missing password -> HTTP 401
  ``{"WARNING": "Need user=<username>&password=<password>"}``.
* The injected ``exception`` fault answers HTTP 500 (this simulator's choice).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from simulator.appliances import Appliance
from simulator.lan_base import HttpSim, json_response


class TasmotaSim(HttpSim):
    """One simulated Tasmota plug: draws ``load_w`` while on; ``Total`` integrates over real time."""

    def __init__(self, *, password: str | None = None, load_w: float = 45.0, mac: str = "A4CF12ABCDEF") -> None:
        super().__init__()
        self.password = password
        self.on = True
        self.load_w = load_w
        self.mac = mac
        self.total_kwh = 1.234
        self._last_s = self.now_s()
        self.switch_calls = 0
        self.appliance: Appliance | None = None  # behind the plug: its draw instead of load_w

    def plug_load_w(self) -> float:
        """What the plug passes through now (W)."""
        if not self.on:
            return 0.0
        return self.appliance.power_w() if self.appliance is not None else self.load_w

    def _advance(self) -> None:
        now = self.now_s()
        self.total_kwh += self.plug_load_w() * max(0.0, now - self._last_s) / 3_600_000.0
        self._last_s = now

    def _power_state(self) -> dict[str, Any]:
        return {"POWER": self.value("POWER", "ON" if self.on else "OFF")}

    def _energy(self) -> dict[str, Any]:
        power = float(round(self.plug_load_w()))  # Tasmota reports whole watts
        return {"TotalStartTime": "2024-01-01T00:00:00", "Total": self.value("Total", round(self.total_kwh, 3)),
                "Yesterday": 0.321, "Today": 0.123, "Power": self.value("Power", power),
                "ApparentPower": round(power * 1.1), "ReactivePower": round(power * 0.45), "Factor": 0.91,
                "Voltage": 231, "Current": round(power / 231 * 1.1, 3)}

    def command(self, cmnd: str) -> dict[str, Any]:
        word, _, arg = cmnd.strip().partition(" ")
        word, arg = word.lower(), arg.strip().lower()
        self._advance()
        if word == "power":
            if arg in ("on", "1", "off", "0", "toggle", "2"):
                self.on = (not self.on) if arg in ("toggle", "2") else arg in ("on", "1")
                if self.appliance is not None:
                    self.appliance.switched(self.on)
                self.switch_calls += 1
            elif arg:
                return {"Command": "Unknown"}
            else:
                return self.served("power", self._power_state)
            return self._power_state()
        if word == "status" and arg == "8":
            return self.served("status8", lambda: {"StatusSNS": {"Time": "2026-01-01T12:00:00",
                                                                 "ENERGY": self._energy()}})
        if word == "status" and arg == "0":
            topic = f"tasmota_{self.mac[-6:]}"
            return {"Status": {"Module": 0, "DeviceName": "Tasmota", "FriendlyName": ["Tasmota"], "Topic": topic,
                               "Power": int(self.on)},
                    "StatusFWR": {"Version": "14.3.0(release-tasmota)"},
                    "StatusNET": {"Hostname": f"{topic}-1234", "Mac": ":".join(self.mac[i:i + 2] for i in
                                                                                   range(0, 12, 2))},
                    "StatusSNS": {"Time": "2026-01-01T12:00:00", "ENERGY": self._energy()},
                    "StatusSTS": self._power_state()}
        return {"Command": "Unknown"}

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if await self.hold():
            return web.Response(status=500, text="simulated fault")
        if request.path != "/cm":
            return web.Response(status=404, text="Not Found")
        q = request.query
        if self.password is not None and (q.get("user") != "admin" or q.get("password") != self.password):
            return json_response({"WARNING": "Need user=<username>&password=<password>"}, 401)
        return json_response(self.command(q.get("cmnd", "")))


__all__ = ["TasmotaSim"]
