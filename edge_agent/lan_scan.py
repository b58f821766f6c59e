"""Installer scan of a LAN host for smart plugs, meters and micro-inverters (``edge-agent scan --lan``).

Probes, each bounded by the timeout: Shelly Gen2+ (``Shelly.GetDeviceInfo`` over ``POST /rpc``),
Tasmota (``/cm?cmnd=Status 0``) on the HTTP port (80 unless given), and a DSMR P1 telegram on the
P1 port (8088 unless given), and each ``http_json`` entry's probe (OpenDTU on 80, APsystems EZ1 on
8050, Enphase IQ Gateway on 443 over https with ``--token``) on its port.  For each device found: what it says it is, the LAN catalogue entry
that fits (edge_agent/catalogue/lan), that entry's points read once, and what it can be in the
house (grid meter, measured load, switchable).  Values are in docs/architecture.md's signs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from edge_agent.drivers.errors import AuthFailed, DeviceError
from edge_agent.drivers.lan_catalogue import LanEntry, lan_catalogue_ids, load_lan_entry
from edge_agent.drivers.lan_device import LanDevice

HTTP_PORT = 80
P1_PORT = 8088


@dataclass(frozen=True)
class LanFound:
    protocol: str
    port: int
    model: str | None
    """The LAN catalogue entry that fits, None if none does."""
    identity: dict[str, Any]
    roles: list[str] = field(default_factory=list)
    switchable: bool = False
    curtailable: bool | None = None
    """A PV: whether it takes a power limit (None: not a PV)."""
    points: dict[str, float | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LanScanResult:
    host: str
    found: list[LanFound]
    tried: list[str]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def to_table(self) -> str:
        if not self.found:
            return f"no plug or meter found at {self.host} (tried {', '.join(self.tried)})"
        lines: list[str] = []
        for f in self.found:
            ident = ", ".join(f"{k}={v}" for k, v in f.identity.items())
            lines.append(f"{f.protocol} device at {self.host}:{f.port}: {f.model or 'no catalogue entry'}"
                         + (f" ({ident})" if ident else ""))
            for name, v in f.points.items():
                lines.append(f"  {name:<14} {'-' if v is None else f'{v:g}':>14}")
            if f.model:
                lines.append(f"  can be: {', '.join(f.roles)}" + ("; switchable" if f.switchable else "")
                             + {None: "", True: "; curtailable (takes a power limit)",
                                False: "; not curtailable (takes no power limit)"}[f.curtailable])
            if f.model and {"grid_meter", "pv"} & set(f.roles):  # docs/lan-devices.md, "A house of LAN devices only"
                lines.append('  in a house of LAN devices only ([device] kind = "lan"): ' + (
                    "its grid meter (the export cap and import limit are kept on its reading)"
                    if "grid_meter" in f.roles else "its PV" + ("; the export cap's lever" if f.curtailable else "")))
            lines += [f"  problem: {p}" for p in f.problems]
        return "\n".join(lines)


def _entries(protocol: str) -> list[LanEntry]:
    return [e for e in (load_lan_entry(i) for i in lan_catalogue_ids()) if e.device.protocol == protocol]


def _fit(protocol: str, app: str | None) -> LanEntry | None:
    for e in _entries(protocol):
        if not e.device.match or app in e.device.match:
            return e
    return None


async def _read(entry: LanEntry, host: str, port: int, timeout_s: float, password: str | None,
                identity: dict[str, Any], *, token: str | None = None, serial: str | None = None) -> LanFound:
    dev = LanDevice(entry, host, port, timeout_s, password=password, token=token, serial=serial)
    problems: list[str] = []
    points: dict[str, float | None] = {}
    try:
        reading = await dev.read()
        points = {n: reading.values.get(n) for n in entry.points}
        problems += [f"{n}: {why}" for n, why in reading.invalid.items()]
        for n, p in entry.points.items():
            v = reading.values.get(n)
            if v is not None and not ((p.min is None or v >= p.min) and (p.max is None or v <= p.max)):
                problems.append(f"{n}: {v:g} {p.unit} outside the plausible {p.min:g}..{p.max:g}")
    except DeviceError as exc:
        problems.append(f"points not read: {exc}")
    finally:
        await dev.close()
    return LanFound(entry.device.protocol, port, entry.device.id, identity, list(entry.device.roles),
                    entry.switch is not None, None if "pv" not in entry.device.roles else entry.limit is not None,
                    points, problems)


async def _probe_json(entry: LanEntry, host: str, port: int, timeout_s: float, password: str | None,
                      token: str | None) -> LanFound | None:
    """An http_json entry: its probe answers (OpenDTU's /api/limit/status names the inverters' serials)."""
    d = entry.device
    probe = LanDevice(entry, host, port, timeout_s, password=password, token=token, serial="0" * 12)
    try:
        info = await probe.info()
    except AuthFailed as exc:
        return LanFound(d.protocol, port, d.id, {}, problems=[f"{exc}: give --token"])
    except DeviceError:
        return None
    finally:
        await probe.close()
    serials = [k for k in info if k.isalnum()] if d.needs_serial else []
    if d.needs_serial and not serials:
        return None
    inner = info.get("data")
    data: dict[str, Any] = inner if isinstance(inner, dict) else info
    identity: dict[str, Any] = {k: data[k] for k in ("deviceId", "devVer") if k in data}
    if serials:
        identity["serials"] = ", ".join(serials[:8])
    return await _read(entry, host, port, timeout_s, password, identity, token=token,
                       serial=serials[0] if serials else None)


async def _probe_shelly(host: str, port: int, timeout_s: float, password: str | None) -> LanFound | None:
    probe = LanDevice(_entries("shelly_rpc")[0], host, port, timeout_s)
    try:
        info = await probe.info()
    except AuthFailed as exc:
        return LanFound("shelly_rpc", port, None, {}, problems=[f"{exc}: give --password"])
    except DeviceError:
        return None
    finally:
        await probe.close()
    identity: dict[str, Any] = {k: info.get(k) for k in ("id", "model", "gen", "app", "ver", "auth_en") if k in info}
    app = info.get("app") if isinstance(info.get("app"), str) else None
    entry = _fit("shelly_rpc", app)
    if entry is None:
        return LanFound("shelly_rpc", port, None, identity, problems=[f"no LAN catalogue entry for app {app!r}"])
    return await _read(entry, host, port, timeout_s, password, identity)


async def _probe_tasmota(host: str, port: int, timeout_s: float, password: str | None) -> LanFound | None:
    entry = _entries("tasmota_http")[0]
    probe = LanDevice(entry, host, port, timeout_s, password=password)
    try:
        status = await probe.info()
    except AuthFailed as exc:
        return LanFound("tasmota_http", port, None, {}, problems=[f"{exc}: give --password"])
    except DeviceError:
        return None
    finally:
        await probe.close()
    if not isinstance(status.get("Status"), dict):
        return None
    fwr = status.get("StatusFWR")
    identity = {"DeviceName": status["Status"].get("DeviceName"),
                "Version": fwr.get("Version") if isinstance(fwr, dict) else None}
    sns = status.get("StatusSNS")
    if not (isinstance(sns, dict) and isinstance(sns.get("ENERGY"), dict)):
        return LanFound("tasmota_http", port, None, identity, problems=["no energy monitor (StatusSNS.ENERGY)"])
    return await _read(entry, host, port, timeout_s, password, identity)


async def _probe_p1(host: str, port: int, timeout_s: float) -> LanFound | None:
    entry = _entries("dsmr_p1")[0]
    found = await _read(entry, host, port, timeout_s, None, {})
    if all(v is None for v in found.points.values()):
        return None
    return found


async def scan_lan(host: str, port: int | None = None, timeout_s: float = 2.0,
                   password: str | None = None, token: str | None = None) -> LanScanResult:
    """Probe ``host`` for every kind of LAN device (on ``port`` if given, else each one's default)."""
    http_port = port or HTTP_PORT
    p1_port = port or P1_PORT
    found: list[LanFound] = []
    shelly = await _probe_shelly(host, http_port, timeout_s, password)
    if shelly is not None:
        found.append(shelly)
    else:
        tasmota = await _probe_tasmota(host, http_port, timeout_s, password)
        if tasmota is not None:
            found.append(tasmota)
    if port is None or not found:
        p1 = await _probe_p1(host, p1_port, timeout_s)
        if p1 is not None:
            found.append(p1)
    for entry in _entries("http_json"):
        if found and port is not None:
            break
        json_port = port or entry.device.port
        if (f := await _probe_json(entry, host, json_port, timeout_s, password, token)) is not None:
            found.append(f)
    tried = [f"Shelly RPC and Tasmota on {http_port}", f"P1 telegrams on {p1_port}",
             ", ".join(f"{e.device.id} on {port or e.device.port}" for e in _entries("http_json"))]
    return LanScanResult(host, found, tried)


__all__ = ["LanFound", "LanScanResult", "scan_lan"]
