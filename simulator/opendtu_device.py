"""Hoymiles micro-inverters behind an OpenDTU, over OpenDTU's web API (tbnobody/OpenDTU docs/Web-API.md,
src/WebApi_limit.cpp):

* ``GET /api/livedata/status`` -> ``{"inverters": [{serial, name, data_age, reachable, producing,
  limit_relative %, limit_absolute W, "0": {"Power": {"v", "u": "W", "d"}, "YieldTotal": {..."kWh"}, ...}}],
  "total": {"Power": {"v", "u": "W", "d"}, "YieldDay": {... "Wh"}, "YieldTotal": {... "kWh"}}}``.
* ``GET /api/limit/status`` -> ``{serial: {"limit_relative" %, "max_power" W, "limit_set_status"}}``; the
  status is ``Pending`` from a limit command until the inverter took it (``apply_delay_s``), then ``Ok``.
* ``POST /api/limit/config`` (basic auth, user ``admin``; 401 without it) with a form field ``data`` =
  ``{"serial", "limit_type" (0 absolute, 1 relative; +256 persistent), "limit_value"}``; answers HTTP 200
  ``{"type": "success", "message": "Settings saved!"}`` or ``{"type": "warning", "message": ...}`` with
  OpenDTU's messages (No values found!, Failed to parse data!, Values are missing!, Serial must be a
  number > 0!, Limit must between 0 and 2250!, Invalid type specified!, Invalid inverter specified!);
  the numeric ``code`` values are this simulator's (OpenDTU's WebApiError enum is not restated here).
* Reads need no auth unless ``readonly_auth`` (OpenDTU's "read-only access" switch turned off).
* The injected ``exception`` fault answers HTTP 500 (this simulator's choice).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

from simulator.lan_base import HttpSim, json_response
from simulator.micro_inverter import PvOutput

MAX_INVERTER_LIMIT = 2250
LIMIT_TYPES = (0, 1, 256, 257)


class OpenDtuSim(HttpSim):
    """One OpenDTU with one inverter ``serial`` of ``rated_w``; password ``openDTU42`` (OpenDTU's default)."""

    def __init__(self, *, serial: str = "114182180001", password: str = "openDTU42", rated_w: float = 800.0,
                 available_w: float = 600.0, apply_delay_s: float = 3.0, readonly_auth: bool = False) -> None:
        super().__init__()
        self.serial = serial
        self.password = password
        self.readonly_auth = readonly_auth
        self.pv = PvOutput(self, available_w=available_w, rated_w=rated_w, apply_delay_s=apply_delay_s)
        self.last_status = "Ok"

    def _v(self, key: str, value: float, unit: str, digits: int) -> dict[str, Any]:
        return {"v": self.value(key, round(value, 3)), "u": unit, "d": digits}

    def livedata(self) -> dict[str, Any]:
        pv = self.pv
        power, kwh = pv.power_w(), pv.energy_wh / 1000.0
        channel = {"Power": self._v("Power", power, "W", 1), "YieldDay": {"v": 23.0, "u": "Wh", "d": 0},
                   "YieldTotal": self._v("YieldTotal", kwh, "kWh", 3), "Voltage": {"v": 233.0, "u": "V", "d": 1}}
        inverter = {"serial": self.serial, "name": "HM-800", "data_age": 4, "reachable": True,
                    "producing": power > 0, "limit_relative": round(pv.limit_w / pv.rated_w * 100, 1),
                    "limit_absolute": round(pv.limit_w), "0": channel, "events": 0}
        return {"inverters": [inverter],
                "total": {"Power": self._v("Power", power, "W", 1), "YieldDay": {"v": 23.0, "u": "Wh", "d": 0},
                          "YieldTotal": self._v("YieldTotal", kwh, "kWh", 2)},
                "hints": {"time_sync": False, "radio_problem": False, "default_password": False}}

    def limit_status(self) -> dict[str, Any]:
        pv = self.pv
        status = "Pending" if pv.applying else self.last_status
        return {self.serial: {"limit_relative": self.value("limit_relative", round(pv.limit_w / pv.rated_w * 100, 1)),
                              "max_power": self.value("max_power", round(pv.rated_w)),
                              "limit_set_status": self.value("limit_set_status", status)}}

    def limit_config(self, data: str | None) -> dict[str, Any]:
        """As WebApi_limit.cpp's onLimitPost."""
        def warning(message: str, code: int) -> dict[str, Any]:
            return {"type": "warning", "message": message, "code": code}

        if data is None:
            return warning("No values found!", 1001)
        if len(data) > 1024:
            return warning("Data too large!", 1002)
        try:
            root = json.loads(data)
        except ValueError:
            return warning("Failed to parse data!", 1003)
        if not isinstance(root, dict) or not {"serial", "limit_value", "limit_type"} <= root.keys():
            return warning("Values are missing!", 1004)
        try:
            serial = int(str(root["serial"]), 16)
            value, kind = int(root["limit_value"]), int(root["limit_type"])
        except (TypeError, ValueError, OverflowError):
            return warning("Values are missing!", 1004)
        if serial == 0:
            return warning("Serial must be a number > 0!", 1005)
        if not 0 <= value <= MAX_INVERTER_LIMIT:
            return {**warning(f"Limit must between 0 and {MAX_INVERTER_LIMIT}!", 1006),
                    "param": {"max": MAX_INVERTER_LIMIT}}
        if kind not in LIMIT_TYPES:
            return warning("Invalid type specified!", 1007)
        if serial != int(self.serial, 16):
            return warning("Invalid inverter specified!", 1008)
        self.pv.ask(value if kind in (0, 256) else self.pv.rated_w * value / 100.0)
        self.last_status = "Ok"
        return {"type": "success", "message": "Settings saved!", "code": 1000}

    def _authorised(self, request: web.BaseRequest) -> bool:
        expected = base64.b64encode(f"admin:{self.password}".encode()).decode()
        return request.headers.get("Authorization", "") == f"Basic {expected}"

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if await self.hold():
            return web.Response(status=500, text="simulated fault")
        self.pv.advance()
        route = (request.method, request.path)
        writes = route == ("POST", "/api/limit/config")
        if (writes or self.readonly_auth) and not self._authorised(request):
            return web.Response(status=401, text="Unauthorized", headers={"WWW-Authenticate": 'Basic realm="Login"'})
        if route == ("GET", "/api/livedata/status"):
            return json_response(self.served("livedata", self.livedata))
        if route == ("GET", "/api/limit/status"):
            return json_response(self.served("limit", self.limit_status))
        if writes:
            form = await request.post()
            data = form.get("data")
            return json_response(self.limit_config(data if isinstance(data, str) else None))
        return web.Response(status=404, text="Not Found")


__all__ = ["OpenDtuSim"]
