"""Home Assistant's entities as the house's devices: meters, measured loads and switchable loads
(``[home_assistant.api]``; docs/home-assistant-devices.md).

The same resource model as the LAN plugs and meters (edge_agent/resources/lan_device.py): roles
``grid_meter`` (import > 0) and ``load`` (consumption > 0), their power in the house's telemetry by
id (``extra_telemetry``), the Modbus devices' :class:`Measurer` for validity: a value in range is
VALID, beyond the house's bounds IMPLAUSIBLE (refused); an entity that is ``unavailable`` or
``unknown``, missing, older than its ``max_age_s``, or any value while Home Assistant is not
connected, gives the last valid value as STALE for ``stale_after_s``, then MISSING: never 0 W.
Units from the entity's ``unit_of_measurement`` (W, kW); anything else, a string that is no
number, NaN or an infinity is refused and logged (rate-limited).  A switch is made through
``call_service`` and read back: the entity must report the asked state within ``timeout_s``, or
it is a failed switch (:class:`SwitchNotApplied`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from edge_agent.ha_api_config import HaEntityConfig, HomeAssistantApiConfig
from edge_agent.home_assistant.ws_api import EntityState, HaApiError, HaWebSocket
from edge_agent.resources.lan_device import SwitchNotApplied
from edge_agent.resources.measure import Measurer
from edge_agent.resources.plausibility import HOME_MAX_POWER_W
from vpp_common.backoff import Backoff
from vpp_common.clock import Clock
from vpp_common.log_limit import LogLimiter
from vpp_common.messages import Measurement, ResourceTelemetry

log = logging.getLogger(__name__)
_limit = LogLimiter(60.0)
UNIT_W = {"W": 1.0, "kW": 1000.0}
NOT_A_READING = ("unavailable", "unknown", "")


Why = tuple[str, str]  # a refusal: a stable label (the metric's reason), the detail for people


def power_w(st: EntityState | None) -> tuple[float | None, Why | None]:
    """An entity's power in W, and why it is refused (None: fine, or simply not there to read)."""
    if st is None or st.state in NOT_A_READING:
        return None, None
    unit = st.attributes.get("unit_of_measurement")
    scale = UNIT_W.get(unit) if isinstance(unit, str) else None
    if scale is None:
        return None, ("unit", f"unit_of_measurement {str(unit)[:20]!r} is not W or kW")
    try:
        value = float(st.state) if len(st.state) <= 64 else math.nan
    except ValueError:
        return None, ("not_a_number", f"state {st.state[:40]!r} is not a number")
    if not math.isfinite(value * scale):
        return None, ("not_finite", f"state {st.state[:40]!r} is not a finite number")
    return value * scale, None


def switch_on(st: EntityState | None) -> tuple[bool | None, Why | None]:
    if st is None or st.state in NOT_A_READING:
        return None, None
    if st.state in ("on", "off"):
        return st.state == "on", None
    return None, ("not_on_off", f"state {st.state[:40]!r} is neither on nor off")


@dataclass(frozen=True, slots=True)
class HaSnapshot:
    """One entity (and its power sensor) now: power in W (grid meter: import > 0; load: consumption
    > 0), the switch (1.0 on, 0.0 off; MISSING for meters and loads)."""

    resource_id: str
    role: str
    power_w: Measurement
    switch_on: Measurement

    def telemetry(self) -> ResourceTelemetry:
        return ResourceTelemetry(self.resource_id, self.power_w)


class HaDevices:
    """The configured entities read from one :class:`HaWebSocket`; ``snapshots`` never raises."""

    def __init__(self, cfg: HomeAssistantApiConfig, clock: Clock, stale_after_s: float,
                 api: HaWebSocket | None = None, refuse: Callable[[str, str], None] | None = None) -> None:
        """``refuse(reason, detail)``: where a refused value goes (the agent's Refusals: logged,
        counted); by default a rate-limited log line."""
        self.cfg, self.clock = cfg, clock
        self.entities = {e.id: e for e in cfg.entities}
        wanted = [e.entity_id for e in cfg.entities] + [e.power_entity_id for e in cfg.entities if e.power_entity_id]
        self.api = api or HaWebSocket(cfg.url, cfg.token_value, wanted, Backoff(cfg.reconnect_initial_s,
                                                                                cfg.reconnect_max_s),
                                      cfg.timeout_s, cfg.heartbeat_s)
        self._measurers = {e.id: Measurer(stale_after_s) for e in cfg.entities}
        self.refused = 0  # values refused since start (tests, logs)
        self._refuse_to = refuse

    def _state(self, entity_id: str | None, now: datetime, max_age_s: float | None) -> EntityState | None:
        if entity_id is None or not self.api.connected:
            return None
        st = self.api.states.get(entity_id)
        if st is not None and max_age_s is not None and (
                st.updated_at is None or (now - st.updated_at).total_seconds() > max_age_s):
            return None  # Home Assistant still shows it, but it has not been updated: stale
        return st

    def _refuse(self, e: HaEntityConfig, entity_id: str | None, why: Why) -> None:
        self.refused += 1
        detail = f"{e.id} ({entity_id}): {why[1]}"
        if self._refuse_to is not None:
            self._refuse_to(why[0], detail)
        elif _limit.admit((e.id, why[0])) is not None:
            log.warning("home_assistant.api refused %s", detail)

    def snapshot(self, e: HaEntityConfig, now: datetime) -> HaSnapshot:
        m = self._measurers[e.id]
        sensor = e.power_entity_id if e.role == "switchable_load" else e.entity_id
        value, why = power_w(self._state(sensor, now, e.max_age_s))
        if why is not None:
            self._refuse(e, sensor, why)
        if value is not None and e.invert:
            value = -value
        lo = -HOME_MAX_POWER_W if e.role == "grid_meter" else 0.0
        power = m.checked("power_w", value, now, (lo, HOME_MAX_POWER_W))
        on: bool | None = None
        if e.role == "switchable_load":
            on, why = switch_on(self._state(e.entity_id, now, None))
            if why is not None:
                self._refuse(e, e.entity_id, why)
        switch = m.checked("switch_on", None if on is None else float(on), now, (0.0, 1.0), "")
        for r in m.take_refused():
            self._refuse(e, sensor, (r.reason, r.detail))
        return HaSnapshot(e.id, e.role, power, switch)

    def snapshots(self) -> dict[str, HaSnapshot]:
        now = self.clock.now()
        return {rid: self.snapshot(e, now) for rid, e in self.entities.items()}

    def telemetry(self) -> tuple[ResourceTelemetry, ...]:
        """Each entity's power as the aggregator's telemetry carries it (switchable loads without a
        power sensor have none to give)."""
        return tuple(s.telemetry() for s in self.snapshots().values()
                     if s.role != "switchable_load" or self.entities[s.resource_id].power_entity_id)

    def grid_w(self) -> Measurement | None:
        """The grid meter's reading, if one is configured."""
        meters = [e for e in self.entities.values() if e.role == "grid_meter"]
        return self.snapshot(meters[0], self.clock.now()).power_w if meters else None

    async def switch(self, resource_id: str, on: bool) -> None:
        """Switch a load through ``call_service`` and wait for Home Assistant to report the state.
        KeyError for an unknown id, ValueError if it is not a switchable load, HaApiError if Home
        Assistant refused or did not answer, SwitchNotApplied if the state did not follow."""
        e = self.entities[resource_id]
        if e.role != "switchable_load":
            raise ValueError(f"{resource_id}: not a switchable load")
        domain = e.entity_id.split(".", 1)[0]
        await self.api.call_service(domain, "turn_on" if on else "turn_off", e.entity_id)
        deadline = time.monotonic() + self.cfg.timeout_s
        want = "on" if on else "off"
        while (st := self.api.states.get(e.entity_id)) is None or st.state != want:
            left = deadline - time.monotonic()
            if left <= 0 or not self.api.connected:
                raise SwitchNotApplied(f"asked {want}, reads {st.state if st else 'nothing'}", device=resource_id)
            await self.api.wait_change(left)
        log.info("%s (%s) switched %s (read back)", resource_id, e.entity_id, want)

    async def run(self) -> None:
        await self.api.run()


__all__ = ["HaApiError", "HaDevices", "HaSnapshot", "SwitchNotApplied", "power_w", "switch_on"]
