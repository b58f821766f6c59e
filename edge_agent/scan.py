"""Installer scan: find what a Modbus TCP device offers and read it once (``edge-agent scan``).

SunSpec discovery by default; a catalogue entry with ``model=<id>``.  The
result is plain data (:class:`ScanResult`) rendered as a table for people
or as JSON for scripts.  Values are as the driver reads them: SunSpec points
scaled with their scale factors but in SunSpec's own signs, catalogue points
in docs/architecture.md's signs (power positive when consuming).  ``None`` = not
implemented.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import sunspec2.device as ss_device
import sunspec2.mdef as ss_mdef

from edge_agent.drivers.catalogue import load_entry
from edge_agent.drivers.catalogue_device import CatalogueDevice
from edge_agent.drivers.sunspec import SunSpecDevice
from edge_agent.drivers.sunspec_points import GroupValues, ModelValues
from edge_agent.drivers.sunspec_roles import CAPACITY_WH, WCHAMAX
from edge_agent.resources.capabilities import (
    BATTERY_CONTROL,
    Capabilities,
    catalogue_capabilities,
    sunspec_capabilities,
)
from edge_agent.resources.plausibility import HOME_MAX_CAPACITY_WH, HOME_MAX_POWER_W, rating
from edge_agent.resources.sunspec_readings import NAMEPLATE_READINGS


@dataclass(frozen=True)
class ScannedPoint:
    name: str
    value: float | int | str | None
    unit: str | None


@dataclass(frozen=True)
class ScannedModel:
    id: int | str
    name: str
    address: int | None
    length: int | None
    points: list[ScannedPoint] = field(default_factory=list)


@dataclass(frozen=True)
class ScanResult:
    host: str
    port: int
    unit_id: int
    kind: str
    """"sunspec" or "catalogue"."""
    base_address: int | None
    models: list[ScannedModel]
    capabilities: dict[str, Any] | None = None
    """What the device can and cannot do as the agent's house (edge_agent.resources.capabilities)."""
    problems: list[str] = field(default_factory=list)
    """Values the agent would refuse: implausible nameplates, scale factors outside -10..10."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def to_table(self) -> str:
        where = f" base {self.base_address}" if self.base_address is not None else ""
        lines = [f"{self.kind} device at {self.host}:{self.port} unit {self.unit_id}{where}: "
                 f"{len(self.models)} model(s)"]
        for m in self.models:
            at = f" @ {m.address} L={m.length}" if m.address is not None else ""
            lines.append(f"\nmodel {m.id} ({m.name}){at}")
            width = max((len(p.name) for p in m.points), default=4)
            for p in m.points:
                value = "-" if p.value is None else str(p.value)
                lines.append(f"  {p.name:<{width}}  {value:>14}  {p.unit or ''}".rstrip())
        if self.capabilities is not None:
            caps = self.capabilities
            lines.append("\nas a house for the edge agent:")
            lines += [f"  can:    {k.replace('_', ' ')} ({v})" for k, v in caps["can"].items()]
            lines += [f"  cannot: {k.replace('_', ' ')} ({v})" for k, v in caps["cannot"].items()]
            lines.append("  battery: " + ("controllable" if caps["battery_controllable"] else
                                          "NOT controllable: the agent will report it and reject plans for it"))
            lines.append("  PV: " + ("curtailable" if caps["pv_curtailable"] else "NOT curtailable"))
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)


def _sunspec_house(values: dict[int, ModelValues]) -> tuple[Capabilities, list[str]]:
    """What the device offers as one hybrid (every role), and its nameplate values the agent would refuse
    (the nameplate points of edge_agent.drivers.sunspec_roles)."""
    models = frozenset(values)
    caps = sunspec_capabilities({"battery": models, "pv": models, "meter": models}, hybrid=True)
    problems: list[str] = []
    points = [(p, HOME_MAX_CAPACITY_WH if r is CAPACITY_WH else HOME_MAX_POWER_W, "Wh" if r is CAPACITY_WH else "W")
              for r in NAMEPLATE_READINGS for (p,) in r.choices] + [(WCHAMAX, HOME_MAX_POWER_W, "W")]
    for p, limit, unit in points:
        v = p.value(values.get(p.model))
        _, refused = rating(p.label, v, limit, unit) if v is not None else (None, None)
        if refused is not None:
            problems.append(refused.detail)
            if p is WCHAMAX:
                caps = caps.without(BATTERY_CONTROL, refused.detail)
    if WCHAMAX.model in values and WCHAMAX.value(values[WCHAMAX.model]) is None:
        caps = caps.without(BATTERY_CONTROL, f"{WCHAMAX.label} not implemented: setpoints cannot be scaled")
    return caps, problems


def _units(model_id: int) -> dict[str, str]:
    """Units of a model's points by dotted path without instance (pysunspec2 definition)."""
    out: dict[str, str] = {}

    def walk(group: dict[str, Any], prefix: str) -> None:
        for p in group.get(ss_mdef.POINTS, []):
            if ss_mdef.UNITS in p:
                out[prefix + p[ss_mdef.NAME]] = str(p[ss_mdef.UNITS])
        for g in group.get(ss_mdef.GROUPS, []):
            walk(g, prefix + g[ss_mdef.NAME] + ".")

    walk(ss_device.get_model_def(model_id)[ss_mdef.GROUP], "")
    return out


def _flatten(values: GroupValues, units: dict[str, str], prefix: str = "", uprefix: str = "") -> list[ScannedPoint]:
    pts = [ScannedPoint(prefix + n, v, units.get(uprefix + n)) for n, v in values.points.items()]
    for gname, instances in values.groups.items():
        for i, inst in enumerate(instances):
            pts += _flatten(inst, units, f"{prefix}{gname}[{i}].", f"{uprefix}{gname}.")
    return pts


async def scan_sunspec(host: str, port: int = 502, unit_id: int = 1, timeout_s: float = 2.0) -> ScanResult:
    """Discover SunSpec models and read each.  NotSunSpec / DeviceUnavailable / DeviceRejected propagate."""
    dev = SunSpecDevice(host, port, unit_id, timeout_s=timeout_s)
    try:
        locations = await dev.discover()
        models: list[ScannedModel] = []
        seen: dict[int, int] = {}
        problems: list[str] = []
        first: dict[int, ModelValues] = {}
        for loc in locations:
            index = seen.get(loc.model_id, 0)
            seen[loc.model_id] = index + 1
            values = await dev.read_model(loc.model_id, index)
            first.setdefault(loc.model_id, values)
            problems += [f"model {loc.model_id} {b}: scale factor outside -10..10 (read as missing)"
                         for b in values.bad_scale]
            models.append(ScannedModel(loc.model_id, values.name, loc.address, loc.length,
                                       _flatten(values, _units(loc.model_id))))
        caps, more = _sunspec_house(first)
        return ScanResult(host, port, unit_id, "sunspec", dev.base_address, models, caps.to_dict(), problems + more)
    finally:
        await dev.close()


async def scan_catalogue(model: str, host: str, port: int = 502, unit_id: int | None = None,
                         timeout_s: float = 2.0) -> ScanResult:
    """Read every point of catalogue entry ``model``.  CatalogueError if the model is unknown."""
    entry = load_entry(model)
    dev = CatalogueDevice(entry, host, port, unit_id, timeout_s=timeout_s)
    try:
        readings = await dev.read_all()
    finally:
        await dev.close()
    points = [ScannedPoint(n, readings[n].value, entry.points[n].unit or None) for n in entry.points]
    caps = catalogue_capabilities(entry.device.id, (p.role for p in entry.points.values()), entry.control is not None)
    return ScanResult(host, port, dev.unit_id, "catalogue", None,
                      [ScannedModel(entry.device.id, entry.device.name, None, None, points)], caps.to_dict())


__all__ = ["ScanResult", "ScannedModel", "ScannedPoint", "scan_catalogue", "scan_sunspec"]
