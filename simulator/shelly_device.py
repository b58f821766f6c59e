"""A Shelly Gen2+ device over its local HTTP RPC API: Plus Plug S / Plug S Gen3, Pro 3EM, Pro EM.

As Shelly's API documentation (shelly-api-docs.shelly.cloud/gen2) describes it:

* ``POST /rpc`` with a JSON-RPC frame ``{"id", "method", "params"}`` answers
  ``{"id", "src", "result"}`` or ``{"id", "src", "error": {"code", "message"}}``; ``GET
  /rpc/<Method>?id=0`` answers the result, or the error object with an HTTP error status.
* Methods: ``Shelly.GetDeviceInfo`` (id, mac, model, gen, fw_id, ver, app, auth_en, auth_domain);
  plug: ``Switch.GetStatus`` (output, apower W, voltage V, current A, aenergy.total Wh) and
  ``Switch.Set`` (``on``; answers ``was_on``); Pro 3EM: ``EM.GetStatus`` (per phase
  ``a_act_power`` ..., ``total_act_power`` W, negative when returning to the grid) and
  ``EMData.GetStatus`` (``total_act``, ``total_act_ret`` Wh); Pro EM: ``EM1.GetStatus``
  (``act_power`` W) and ``EM1Data.GetStatus`` (``total_act_energy``, ``total_act_ret_energy`` Wh).
* Errors: an unknown method 404 ``No handler for <method>``; a bad or missing argument -103;
  an unknown component id -105.  Authentication (when a password is set): HTTP digest, SHA-256,
  user ``admin``, the device id as realm; 401 with the challenge otherwise.
  ``Shelly.GetDeviceInfo`` answers without it (its ``auth_en`` tells a client to authenticate).
* The injected ``exception`` fault answers code -114 ``simulated fault: device busy`` (a code of
  this simulator's own, not Shelly's).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from simulator.appliances import Appliance
from simulator.lan_base import HttpSim, json_response

USER = "admin"
SIM_FAULT_CODE = -114


@dataclass(frozen=True)
class ShellyModel:
    model: str
    app: str
    gen: int
    prefix: str
    methods: tuple[str, ...]


MODELS = {
    "shelly_plug_s": ShellyModel("S3PL-00112EU", "PlugSG3", 3, "shellyplugsg3",
                                 ("Switch.GetStatus", "Switch.Set")),
    "shelly_pro_3em": ShellyModel("SPEM-003CEBEU", "Pro3EM", 2, "shellypro3em", ("EM.GetStatus", "EMData.GetStatus")),
    "shelly_pro_em": ShellyModel("SPEM-002CEBEU50", "ProEM", 2, "shellyproem50",
                                 ("EM1.GetStatus", "EM1Data.GetStatus")),
}


class RpcError(Exception):
    def __init__(self, code: int, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.http_status = code, message, http_status


class ShellySim(HttpSim):
    """One simulated Shelly of ``model`` (a key of MODELS).  The plug draws ``load_w`` while on;
    a meter reads ``power_w`` (import > 0); energy counters integrate over real time."""

    def __init__(self, model: str = "shelly_plug_s", *, password: str | None = None, load_w: float = 120.0,
                 power_w: float = 800.0, mac: str = "A0B1C2D3E4F5") -> None:
        super().__init__()
        if model not in MODELS:
            raise ValueError(f"unknown Shelly model {model!r}; known: {', '.join(MODELS)}")
        self.model = MODELS[model]
        self.device_id = f"{self.model.prefix}-{mac.lower()}"
        self.mac = mac
        self.password = password
        self.output = True
        self.load_w = load_w
        self.power_w = power_w
        self.energy_in_wh = 1000.0
        self.energy_out_wh = 200.0
        self._last_s = self.now_s()
        self._nonces: set[str] = set()
        self.switch_calls = 0
        self.appliance: Appliance | None = None  # behind the plug: its draw instead of load_w

    def plug_load_w(self) -> float:
        """What the plug passes through now (W)."""
        if not self.output:
            return 0.0
        return self.appliance.power_w() if self.appliance is not None else self.load_w

    # -- the physics: energy counters follow the power -------------------------------------
    def _advance(self) -> None:
        now = self.now_s()
        dt_h = max(0.0, now - self._last_s) / 3600.0
        self._last_s = now
        power = self.plug_load_w() if "Switch.GetStatus" in self.model.methods else self.power_w
        if power >= 0:
            self.energy_in_wh += power * dt_h
        else:
            self.energy_out_wh -= power * dt_h

    def _served(self, fields: dict[str, Any]) -> dict[str, Any]:
        return {k: self.value(k, v) for k, v in fields.items()}

    # -- methods -----------------------------------------------------------------------------
    def device_info(self) -> dict[str, Any]:
        return {"name": None, "id": self.device_id, "mac": self.mac, "slot": 0, "model": self.model.model,
                "gen": self.model.gen, "fw_id": "20241011-114455/1.4.4-g6d2a586", "ver": "1.4.4",
                "app": self.model.app, "auth_en": self.password is not None,
                "auth_domain": self.device_id if self.password is not None else None}

    def call(self, method: str, params: dict[str, Any]) -> Any:
        if method == "Shelly.GetDeviceInfo":
            return self.device_info()
        if method not in self.model.methods:
            raise RpcError(404, f"No handler for {method}", 404)
        cid = params.get("id", 0)
        if isinstance(cid, bool) or not isinstance(cid, int):
            raise RpcError(-103, "Invalid argument 'id': integer expected")
        if cid != 0:
            raise RpcError(-105, f"Argument 'id', value {cid} not found!")
        self._advance()
        handler = getattr(self, "_" + method.replace(".", "_").lower())
        return handler(params) if method.endswith(".Set") else self.served(method, lambda: handler(params))

    def _switch_getstatus(self, _params: dict[str, Any]) -> dict[str, Any]:
        power = self.plug_load_w()
        return {"id": 0, "source": "http", **self._served({
            "output": self.output, "apower": round(power, 1), "voltage": 230.4,
            "current": round(power / 230.4, 3), "aenergy": {"total": round(self.energy_in_wh, 3)},
            "temperature": {"tC": 38.2, "tF": 100.8}})}

    def _switch_set(self, params: dict[str, Any]) -> dict[str, Any]:
        on = params.get("on")
        if not isinstance(on, bool):
            raise RpcError(-103, "Missing required argument 'on'!")
        was_on, self.output = self.output, on
        if self.appliance is not None:
            self.appliance.switched(on)
        self.switch_calls += 1
        return {"was_on": was_on}

    def _em_getstatus(self, _params: dict[str, Any]) -> dict[str, Any]:
        third = round(self.power_w / 3, 1)
        phases = {f"{ph}_{k}": v for ph in "abc" for k, v in
                  (("current", round(abs(third) / 230.0, 3)), ("voltage", 230.0), ("act_power", third),
                   ("aprt_power", abs(third)), ("pf", 1.0))}
        return {"id": 0, **phases, **self._served({"total_current": round(abs(self.power_w) / 230.0, 3),
                                                   "total_act_power": round(self.power_w, 1),
                                                   "total_aprt_power": round(abs(self.power_w), 1)})}

    def _emdata_getstatus(self, _params: dict[str, Any]) -> dict[str, Any]:
        return {"id": 0, **self._served({"total_act": round(self.energy_in_wh, 2),
                                         "total_act_ret": round(self.energy_out_wh, 2)})}

    def _em1_getstatus(self, _params: dict[str, Any]) -> dict[str, Any]:
        return {"id": 0, **self._served({"current": round(abs(self.power_w) / 230.0, 3), "voltage": 230.0,
                                         "act_power": round(self.power_w, 1),
                                         "aprt_power": round(abs(self.power_w), 1), "pf": 1.0, "freq": 50.0,
                                         "calibration": "factory"})}

    def _em1data_getstatus(self, _params: dict[str, Any]) -> dict[str, Any]:
        return {"id": 0, **self._served({"total_act_energy": round(self.energy_in_wh, 2),
                                         "total_act_ret_energy": round(self.energy_out_wh, 2)})}

    # -- HTTP --------------------------------------------------------------------------------
    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if await self.hold():
            return json_response({"code": SIM_FAULT_CODE, "message": "simulated fault: device busy"}, 503)
        if request.path == "/rpc" and request.method == "POST":
            try:
                frame = await request.json()
            except ValueError:
                return json_response({"id": None, "src": self.device_id,
                                      "error": {"code": -103, "message": "Invalid JSON frame"}})
            if not isinstance(frame, dict) or not isinstance(frame.get("method"), str):
                return json_response({"id": None, "src": self.device_id,
                                      "error": {"code": -103, "message": "Missing method"}})
            method, params, fid = frame["method"], frame.get("params") or {}, frame.get("id")
        elif request.path.startswith("/rpc/") and request.method == "GET":
            method, fid = request.path[5:], None
            params = {k: _query_value(v) for k, v in request.query.items()}
        else:
            return web.Response(status=404, text="Not Found")
        if method != "Shelly.GetDeviceInfo" and not self._authorised(request):
            return self._challenge()
        try:
            result = self.call(method, params if isinstance(params, dict) else {})
        except RpcError as exc:
            error = {"code": exc.code, "message": exc.message}
            if fid is None and request.method == "GET":
                return json_response(error, exc.http_status if exc.http_status >= 400 else 500)
            return json_response({"id": fid, "src": self.device_id, "error": error})
        if request.method == "GET":
            return json_response(result)
        return json_response({"id": fid, "src": self.device_id, "result": result})

    def _challenge(self) -> web.Response:
        nonce = secrets.token_hex(8)
        self._nonces.add(nonce)
        header = f'Digest qop="auth", realm="{self.device_id}", nonce="{nonce}", algorithm=SHA-256'
        return web.Response(status=401, headers={"WWW-Authenticate": header})

    def _authorised(self, request: web.BaseRequest) -> bool:
        if self.password is None:
            return True
        header = request.headers.get("Authorization", "")
        if not header.startswith("Digest "):
            return False
        f = {m[0]: m[2] if m[1].startswith('"') else m[1]
             for m in re.findall(r'(\w+)=("([^"]*)"|[^,\s]*)', header[7:])}
        if f.get("username") != USER or f.get("realm") != self.device_id or f.get("nonce") not in self._nonces:
            return False
        h = lambda s: hashlib.sha256(s.encode()).hexdigest()  # noqa: E731
        ha1 = h(f"{USER}:{self.device_id}:{self.password}")
        ha2 = h(f"{request.method}:{f.get('uri', '')}")
        expected = h(f"{ha1}:{f['nonce']}:{f.get('nc', '')}:{f.get('cnonce', '')}:{f.get('qop', '')}:{ha2}")
        return secrets.compare_digest(expected, f.get("response", ""))


def _query_value(text: str) -> Any:
    """GET /rpc/<Method>?id=0&on=true: query values are JSON when they parse as JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text


__all__ = ["MODELS", "SIM_FAULT_CODE", "ShellySim"]
