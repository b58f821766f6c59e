"""A smart plug, meter or micro-inverter described by a LAN catalogue entry (edge_agent.drivers.lan_catalogue).

Reads every point of the entry (one call per distinct request), checks each value where it
enters: a missing field, a wrong JSON type, NaN or inf is *invalid* (left out of the reading,
with the reason, logged rate-limited), never 0; the range check against the entry's min/max is
the resource's (edge_agent.resources.lan_device: IMPLAUSIBLE).  Switches and reads the switch
state back; sends a PV limit (clamped into the entry's range, whole W) whose read-back is the
resource's.  Transport errors propagate as driver errors (DeviceUnavailable: stale).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from edge_agent.drivers.errors import DeviceUnavailable
from edge_agent.drivers.lan_catalogue import SUMMED_LAN_ROLES, LanEntry, LanPoint, fill
from edge_agent.drivers.lan_http import JsonApi, ShellyRpc, TasmotaHttp
from edge_agent.drivers.p1 import parse_telegram, read_telegram
from vpp_common.log_limit import LogLimiter

log = logging.getLogger(__name__)
_limit = LogLimiter(60.0)
_MISSING = object()


@dataclass(frozen=True)
class LanReading:
    """One read: engineering values by point name (finite, docs/architecture.md sign) and the points
    whose value was refused, with why."""

    values: dict[str, float]
    invalid: dict[str, str] = field(default_factory=dict)

    def by_role(self, entry: LanEntry) -> dict[str, float | None]:
        """Values by role (power and energy roles summed); None if any point of the role is invalid."""
        out: dict[str, float | None] = {}
        for name, p in entry.points.items():
            if p.role is None:
                continue
            v = self.values.get(name)
            if v is None or (p.role in out and out[p.role] is None):
                out[p.role] = None
            elif p.role in SUMMED_LAN_ROLES and p.role in out:
                out[p.role] = (out[p.role] or 0.0) + v
            else:
                out[p.role] = v
        return out


def dig(answer: Any, path: str) -> Any:
    """The value at a dotted path (list indices as numbers; ``key=value`` picks a list's first object
    whose ``key`` is that text, e.g. ``production.type=inverters.wNow``); _MISSING if there is none."""
    node = answer
    for part in path.split("."):
        key, eq, wanted = part.partition("=")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, list) and eq:
            node = next((n for n in node if isinstance(n, Mapping) and n.get(key) == wanted), _MISSING)
            if node is _MISSING:
                return node
        else:
            return _MISSING
    return node


def _text_number(raw: str) -> Any:
    """A decimal string as a number (APsystems' "800"), else the string (refused as not a number)."""
    text = raw.strip()
    if len(text) > 40 or not text or text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        return raw
    try:
        return Decimal(text)
    except ArithmeticError:
        return raw


def convert(point: LanPoint, raw: Any) -> tuple[float | None, str | None]:
    """(engineering value, None) or (None, why it is refused)."""
    if raw is _MISSING:
        return None, f"no field {point.path!r}"
    if point.device_unit is not None:  # P1, OpenDTU: the device states the unit; another is another quantity
        unit = (raw.get("unit", raw.get("u"))) if isinstance(raw, Mapping) else None
        if unit != point.device_unit:
            return None, f"unit {unit!r:.20}, expected {point.device_unit!r}"
        raw = raw.get("value", raw.get("v", _MISSING)) if isinstance(raw, Mapping) else _MISSING
    if point.type == "enum":
        return (point.values[raw], None) if isinstance(raw, str) and raw in point.values else \
            (None, f"{raw!r:.40} is none of {', '.join(point.values)}")
    if point.type == "numtext" and isinstance(raw, str):
        raw = _text_number(raw)
    if point.type == "bool":
        return (float(raw), None) if isinstance(raw, bool) else (None, f"{raw!r:.40} is not a boolean")
    if point.type == "onoff":
        text = raw.upper() if isinstance(raw, str) else None
        return ({"ON": 1.0, "OFF": 0.0}[text], None) if text in ("ON", "OFF") else \
            (None, f"{raw!r:.40} is not ON or OFF")
    if isinstance(raw, bool) or not isinstance(raw, int | float | Decimal):
        return None, f"{raw!r:.40} is not a number"
    try:
        value = float(raw) * point.scale * point.sign + 0.0
    except OverflowError:  # an int beyond float range
        return None, "beyond float range"
    return (value, None) if math.isfinite(value) else (None, f"{raw!r:.40} is not finite")


class LanDevice:
    """A device of a :class:`LanEntry` at ``host:port`` (the entry's port by default).

    ``read`` is all points or a driver error (DeviceUnavailable, DeviceRefused, AuthFailed);
    requests are serialised (one at a time, as small devices need).
    """

    def __init__(self, entry: LanEntry, host: str, port: int | None = None, timeout_s: float = 2.0, *,
                 username: str | None = None, password: str | None = None, token: str | None = None,
                 serial: str | None = None) -> None:
        self.entry = entry
        self.host = host
        self.port = entry.device.port if port is None else port
        self.timeout_s = timeout_s
        d = entry.device
        if d.needs_serial and not serial:
            raise ValueError(f"{d.id}: needs the inverter's serial")
        self.serial = serial or ""
        self._shelly = ShellyRpc(host, self.port, timeout_s, self.name, password) if d.protocol == "shelly_rpc" \
            else None
        self._tasmota = TasmotaHttp(host, self.port, timeout_s, self.name, username, password) \
            if d.protocol == "tasmota_http" else None
        self._json = JsonApi(host, self.port, timeout_s, self.name, scheme=d.scheme,
                             password=password if d.auth == "basic" else None,
                             token=token if d.auth == "bearer" else None) if d.protocol == "http_json" else None
        self._ok = (d.ok_path, d.ok_value) if d.ok_path is not None and d.ok_value is not None else None
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return f"{self.entry.device.id}://{self.host}:{self.port}"

    @property
    def switchable(self) -> bool:
        return self.entry.switch is not None

    @property
    def limitable(self) -> bool:
        return self.entry.limit is not None

    async def close(self) -> None:
        for link in (self._shelly, self._tasmota, self._json):
            if link is not None:
                await link.close()

    async def _answer(self, point: LanPoint) -> Any:
        if self._shelly is not None:
            return await self._shelly.call(point.request, dict(point.params) or None)
        if self._tasmota is not None:
            return await self._tasmota.command(point.request)
        if self._json is not None:
            return await self._json.fetch(fill(point.request, serial=self.serial), ok=self._ok)
        return parse_telegram(await read_telegram(self.host, self.port, self.timeout_s, self.name), self.name)

    async def read(self, names: list[str] | None = None) -> LanReading:
        """Read the points (all by default), one call per distinct request."""
        chosen = list(self.entry.points) if names is None else names
        answers: dict[Any, Any] = {}
        values: dict[str, float] = {}
        invalid: dict[str, str] = {}
        async with self._lock:
            for name in chosen:
                p = self.entry.points[name]
                if p.key not in answers:
                    answers[p.key] = await self._answer(p)
                value, why = convert(p, dig(answers[p.key], fill(p.path, serial=self.serial)))
                if value is None:
                    invalid[name] = why or "invalid"
                    self._log_invalid(name, p, why or "invalid")
                else:
                    values[name] = value
        return LanReading(values, invalid)

    def _log_invalid(self, name: str, point: LanPoint, why: str) -> None:
        left_out = _limit.admit((self.name, name, why))
        if left_out is not None:
            more = f" ({left_out} like it left out)" if left_out else ""
            log.warning("%s: point %s (%s %s) refused: %s%s", self.name, name, point.request or "telegram",
                        point.path, why, more)

    async def switch(self, on: bool) -> bool:
        """Switch on or off, then read the state back: the state the device reports (True = on).
        ValueError if the entry has no switch; DeviceUnavailable if the state cannot be read."""
        sw = self.entry.switch
        if sw is None:
            raise ValueError(f"{self.entry.device.id}: not switchable")
        async with self._lock:
            if self._shelly is not None:
                await self._shelly.call(sw.request, {**sw.params, "on": on})
            elif self._tasmota is not None:
                await self._tasmota.command(f"{sw.request} {'On' if on else 'Off'}")
        state_point = self.entry.role_points("switch_on")[0]
        reading = await self.read([state_point])
        state = reading.values.get(state_point)
        if state is None:
            raise DeviceUnavailable(f"switch state not readable: {reading.invalid.get(state_point)}",
                                    device=self.name)
        return state == 1.0

    async def set_limit(self, limit_w: float) -> int:
        """Send the PV limit, clamped into the entry's ``[limit]`` range, in whole W; the value sent.
        ValueError if the entry takes none or ``limit_w`` is not finite; driver errors (DeviceRefused
        when the answer is not the success the entry names)."""
        lim = self.entry.limit
        if lim is None or self._json is None:
            raise ValueError(f"{self.entry.device.id}: takes no power limit")
        if not math.isfinite(limit_w):
            raise ValueError(f"{self.entry.device.id}: limit {limit_w!r} is not finite")
        value = int(round(min(max(limit_w, lim.min_w), lim.max_w)))
        ok = (lim.ok_path, lim.ok_value) if lim.ok_path is not None and lim.ok_value is not None else None
        async with self._lock:
            await self._json.fetch(fill(lim.request, serial=self.serial, value=value), method=lim.method,
                                   form={k: fill(v, serial=self.serial, value=value) for k, v in lim.form.items()},
                                   ok=ok)
        return value

    async def info(self) -> dict[str, Any]:
        """What the device says it is (Shelly.GetDeviceInfo, Tasmota Status 0, an http_json entry's
        probe); {} for P1."""
        async with self._lock:
            if self._shelly is not None:
                answer = await self._shelly.call("Shelly.GetDeviceInfo")
            elif self._tasmota is not None:
                answer = await self._tasmota.command("Status 0")
            elif self._json is not None and self.entry.device.probe:
                answer = await self._json.fetch(fill(self.entry.device.probe, serial=self.serial), ok=self._ok)
            else:
                return {}
        return answer if isinstance(answer, dict) else {}


__all__ = ["LanDevice", "LanReading", "convert", "dig"]
