"""An Enphase IQ Gateway (Envoy), firmware 7 or later, over its local API as pyenphase uses it
(pyenphase/pyenphase: auth.py, models/system_production.py):

* HTTPS with a self-signed certificate (made at start); every request needs ``Authorization: Bearer
  <token>`` (the owner's JWT from Enlighten): without it, or with another token, HTTP 401.
* ``GET /production.json`` -> ``{"production": [{"type": "inverters", "activeCount", "readingTime",
  "wNow" W, "whLifetime" Wh}, {"type": "eim", "activeCount", "measurementType": "production", "wNow",
  "whLifetime", "whToday", "whLastSevenDays", ...}], "consumption": [...], "storage": [...]}``.
* ``GET /api/v1/production`` -> ``{"wattHoursToday", "wattHoursSevenDays", "wattHoursLifetime", "wattsNow"}``.
* No power limit: the owner's local API takes none (DPEL / export limits are installer settings).
* The injected ``exception`` fault answers HTTP 500 (this simulator's choice).
"""

from __future__ import annotations

import datetime as dt
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from simulator.lan_base import HttpSim, json_response
from simulator.micro_inverter import PvOutput

SIM_TOKEN = "sim-envoy-token"


def self_signed_context(common_name: str = "envoy.local") -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate, as the gateway has one."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365)).sign(key, hashes.SHA256()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


class EnvoySim(HttpSim):
    def __init__(self, *, token: str = SIM_TOKEN, available_w: float = 1600.0, rated_w: float = 2000.0,
                 inverters: int = 6) -> None:
        super().__init__()
        self.token = token
        self.inverters = inverters
        self.pv = PvOutput(self, available_w=available_w, rated_w=rated_w, apply_delay_s=1.0,
                           energy_wh=4_200_000.0)
        self.ssl_context = self_signed_context()

    def production(self) -> dict[str, Any]:
        w, wh, at = self.pv.power_w(), self.pv.energy_wh, int(time.time())
        return {"production": [
            {"type": "inverters", "activeCount": self.inverters, "readingTime": at,
             "wNow": self.value("wNow", float(round(w))),
             "whLifetime": self.value("whLifetime", float(round(wh)))},
            {"type": "eim", "activeCount": 1, "measurementType": "production", "readingTime": at,
             "wNow": round(w, 3), "whLifetime": round(wh, 3), "varhLeadLifetime": 0.0, "whToday": 3100.0,
             "whLastSevenDays": 41000.0, "rmsCurrent": round(w / 230.0, 3), "rmsVoltage": 230.0}],
            "consumption": [], "storage": [{"type": "acb", "activeCount": 0, "readingTime": 0, "wNow": 0,
                                            "whNow": 0, "state": "idle"}]}

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if await self.hold():
            return web.Response(status=500, text="simulated fault")
        if request.headers.get("Authorization", "") != f"Bearer {self.token}":
            return web.Response(status=401, text="Unauthorized")
        self.pv.advance()
        if request.path == "/production.json":
            return json_response(self.served("production", self.production))
        if request.path == "/api/v1/production":
            return json_response({"wattHoursToday": 3100, "wattHoursSevenDays": 41000,
                                  "wattHoursLifetime": round(self.pv.energy_wh), "wattsNow": round(self.pv.power_w())})
        return web.Response(status=404, text="Not Found")


__all__ = ["SIM_TOKEN", "EnvoySim", "self_signed_context"]
