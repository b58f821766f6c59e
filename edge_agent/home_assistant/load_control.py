"""The load switching policy (edge_agent/energy_manager/load_switching.py) applied: every
``interval_s`` the loads' read-back states are observed, the policy decides, and its switches are
made and read back.  It knows the loads only through two callables (what each reads: on/off and
power; how to switch one), so the LAN plugs (edge_agent/lan_devices.py: ``LanDevices.switch`` and
their snapshots' ``switch_on``) can be driven by it as Home Assistant's entities are; a failed
switch is logged and tried again at the next decision (the policy still wants it)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from edge_agent.energy_manager.load_switching import (
    Action,
    LoadRules,
    LoadState,
    Pressure,
    SwitchedLoad,
    as_flexibility,
    decide,
    observe,
    switched,
)
from edge_agent.home_assistant.ws_api import HaApiError
from edge_agent.resources.lan_device import SwitchNotApplied
from vpp_common.clock import Clock
from vpp_common.log_limit import LogLimiter
from vpp_common.messages import SwitchableLoadFlexibility

log = logging.getLogger(__name__)
_limit = LogLimiter(300.0)
Reading = tuple[bool | None, float | None]  # switch on (None: unknown), measured power W (None: unknown)


class LoadControl:
    def __init__(self, rules: dict[str, LoadRules], read: Callable[[], dict[str, Reading]],
                 switch: Callable[[str, bool], Awaitable[None]], pressure: Callable[[datetime], Pressure],
                 clock: Clock, interval_s: float) -> None:
        self.rules, self.read, self.switch, self.pressure = rules, read, switch, pressure
        self.clock, self.interval_s = clock, interval_s
        self.states = {rid: LoadState() for rid in rules}
        self.done: list[tuple[datetime, Action]] = []  # switches made and read back (tests, status)
        self.failed = 0

    async def step(self) -> tuple[Action, ...]:
        """One decision: observe, decide, switch; the actions decided (made or failed)."""
        now = self.clock.now()
        readings = self.read()
        for rid in self.rules:
            on, power = readings.get(rid, (None, None))
            self.states[rid] = observe(self.states[rid], on, power, now)
        loads = [SwitchedLoad(rid, r, self.states[rid], readings.get(rid, (None, None))[1])
                 for rid, r in self.rules.items()]
        actions = decide(loads, self.pressure(now), now)
        for a in actions:
            try:
                await self.switch(a.resource_id, a.on)
            except (HaApiError, SwitchNotApplied, OSError) as exc:
                self.failed += 1
                if _limit.admit((a.resource_id, a.on)) is not None:
                    log.warning("%s: could not switch %s (%s): %s", a.resource_id, "on" if a.on else "off",
                                a.reason, exc)
                continue
            self.states[a.resource_id] = switched(self.states[a.resource_id], a, self.clock.now())
            self.done.append((now, a))
            log.info("%s switched %s: %s", a.resource_id, "on" if a.on else "off", a.reason)
        return actions

    def flexibility(self, now: datetime) -> tuple[tuple[SwitchableLoadFlexibility, ...], tuple[()]]:
        """The loads as flexibility for the aggregator (a source of ``HouseReports``)."""
        return tuple(as_flexibility(rid, r, self.states[rid]) for rid, r in self.rules.items()), ()

    async def run(self) -> None:
        while True:
            await self.step()
            await self.clock.sleep(self.interval_s)


__all__ = ["LoadControl", "Reading"]
