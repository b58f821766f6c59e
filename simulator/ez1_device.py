"""An APsystems EZ1 micro-inverter over its local API (port 8050), as APsystems' "EZ1 Local API" manual and
the apsystems-ez1 library (SonnenladenGmbH/APsystems-EZ1-API) describe it.  No authentication.

Every answer is ``{"data": {...}, "message": "SUCCESS", "deviceId": ...}``:

* ``GET /getDeviceInfo`` -> deviceId, devVer, ssid, ipAddr, minPower "30", maxPower "800" (strings).
* ``GET /getOutputData`` -> p1, p2 (W, per input), e1, e2 (kWh today), te1, te2 (kWh lifetime).
* ``GET /getMaxPower`` -> maxPower (W, a string); ``GET /setMaxPower?p=W`` (30..800) -> the new maxPower.
  The setting reads back at once; the output follows after ``apply_delay_s`` (a guess: the manual
  states no delay).  Out of range or not a whole number: ``{"data": {}, "message": "FAILED"}`` (the
  library's name for a refusal; the exact body is this simulator's guess).
* The injected ``exception`` fault answers ``message: FAILED`` with an empty ``data``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from simulator.lan_base import HttpSim, json_response
from simulator.micro_inverter import PvOutput

MIN_W, MAX_W = 30, 800


class Ez1Sim(HttpSim):
    def __init__(self, *, device_id: str = "E17010000783", available_w: float = 600.0,
                 apply_delay_s: float = 3.0) -> None:
        super().__init__()
        self.device_id = device_id
        self.pv = PvOutput(self, available_w=available_w, rated_w=float(MAX_W), apply_delay_s=apply_delay_s,
                           energy_wh=88_000.0)
        self.max_power = MAX_W  # the setting (reads back at once)

    def _answer(self, data: dict[str, Any], ok: bool = True) -> web.Response:
        return json_response({"data": data, "message": "SUCCESS" if ok else "FAILED", "deviceId": self.device_id})

    def output_data(self) -> dict[str, Any]:
        half, te = self.pv.power_w() / 2, self.pv.energy_wh / 2000.0
        return {"p1": self.value("p1", round(half, 1)), "e1": 0.51, "te1": self.value("te1", round(te, 3)),
                "p2": self.value("p2", round(half, 1)), "e2": 0.49, "te2": self.value("te2", round(te, 3))}

    def set_max_power(self, p: str | None) -> dict[str, Any] | None:
        if p is None or not p.isdigit() or not MIN_W <= int(p) <= MAX_W:
            return None
        self.max_power = int(p)
        self.pv.ask(float(self.max_power))
        return {"maxPower": str(self.max_power)}

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if await self.hold():
            return self._answer({}, ok=False)
        self.pv.advance()
        path = request.path
        if path == "/getDeviceInfo":
            return self._answer({"deviceId": self.device_id, "devVer": "EZ1 1.7.0", "ssid": "home",
                                 "ipAddr": request.host.split(":")[0], "minPower": str(MIN_W),
                                 "maxPower": str(MAX_W)})
        if path == "/getOutputData":
            return self._answer(self.served("output", self.output_data))
        if path == "/getMaxPower":
            return self._answer(self.served("max", lambda: {"maxPower": self.value("maxPower",
                                                                                  str(self.max_power))}))
        if path == "/setMaxPower":
            data = self.set_max_power(request.query.get("p"))
            return self._answer(data or {}, ok=data is not None)
        if path == "/getOnOff":
            return self._answer({"status": "0"})
        return web.Response(status=404, text="Not Found")


__all__ = ["Ez1Sim"]
