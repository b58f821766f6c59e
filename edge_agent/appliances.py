"""The appliances behind the house's LAN plugs (``[[appliances]]``, docs/appliances.md), scheduled
at the edge: every ``interval_s`` each plug's read-back is observed, the pure decisions
(edge_agent/energy_manager/appliance_*.py) say start, pause, resume or charge, and the switches are
made and read back.  Each appliance is reported to the aggregator as flexibility (a source of
``HouseReports``): a pausable one as S2 OMBC, a run and a power station as S2 PPBC.

The house the decisions see: the grid reading (the LAN grid meter if there is one, else the
house's own meter), the import limit in force (the config's, tightened by the aggregator's grid
signals), prices per 15-minute slot for 48 h (the ``[tariff]``'s, replaced by the aggregator's
GridSignal prices where those cover a slot), the PV surplus forecast (the agent's PV and load
forecasts) and the surplus now (the grid's export), and the plan's chosen starts (``run_starts``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge

from edge_agent import appliance_store as store
from edge_agent.agent import EdgeAgent
from edge_agent.appliance_store import Appliance, build
from edge_agent.drivers.errors import DeviceError
from edge_agent.energy_manager.appliance_charge import (
    ChargeState,
    charge_flexibility,
    decide_charge,
    observe_charge,
)
from edge_agent.energy_manager.appliance_pause import (
    after_switch,
    decide_pause,
    draw_w,
    observe_pause,
    pause_flexibility,
)
from edge_agent.energy_manager.appliance_run import (
    RunRules,
    observe_run,
    run_flexibility,
    started,
)
from edge_agent.energy_manager.appliances import House, Outlook, decide_run
from edge_agent.energy_manager.load_switching import MAX_POWER_W, finite
from edge_agent.home_assistant.ws_api import HaApiError
from edge_agent.reports import LoadsFlexibility
from vpp_common.log_limit import LogLimiter
from vpp_common.messages import ShiftableRunFlexibility, SwitchableLoadFlexibility
from vpp_common.tariff import PriceSource
from vpp_common.timeslots import align_down

if TYPE_CHECKING:  # their HTTP and WebSocket clients are loaded by the components that use them
    from edge_agent.agent import Component
    from edge_agent.home_assistant.devices_component import HaDevicesComponent
    from edge_agent.home_assistant.ha_devices import HaDevices
    from edge_agent.lan_devices import LanDevices

log = logging.getLogger(__name__)
_limit = LogLimiter(300.0)
SLOT_S = 900
HORIZON_SLOTS = 192  # 48 h: a run's window is at most a day and a half (request before ready_by)
Reading = tuple[bool | None, float | None]


def _hm(when: datetime, rules: RunRules) -> str:
    """A time as the house's clock shows it (ready_by is local)."""
    return f"{when.astimezone(rules.tz):%H:%M}"


class ApplianceControl:
    def __init__(self, agent: EdgeAgent, lan: LanDevices | None, interval_s: float = 10.0,
                 ha: HaDevices | None = None) -> None:
        self.agent, self.lan, self.ha, self.interval_s = agent, lan, ha, interval_s
        cfg = agent.config
        self.appliances = [build(a, cfg.site.timezone, interval_s) for a in cfg.appliances]
        self.prices: PriceSource | None = cfg.tariff.price_source() if cfg.tariff else None
        self.grid_meter = next((d.id for d in cfg.lan_devices if d.role == "grid_meter"), None)
        self.path = cfg.state_dir / f"appliances_{cfg.house_id or 'house'}.json" if cfg.state_dir else None
        self._kept: dict[str, dict[str, Any]] = {}
        store.restore_all(self.appliances, store.load(self.path) if self.path is not None else {},
                          agent.clock.now())
        self.owned: list[Component] = []  # the plugs' components, run (and stopped) inside this one
        self.decisions: list[tuple[datetime, str, bool, str]] = []  # (when, plug, on, reason): tests, status
        r = agent.metrics.registry
        self.m_state = Gauge("vpp_edge_appliances", "Appliances behind plugs by kind (pausable, run, battery) and "
                             "state.", ["kind", "state"], registry=r)
        self.m_switches = Counter("vpp_edge_appliance_switches_total", "Appliance switches by kind, reason and "
                                  "result (ok, failed).", ["kind", "reason", "result"], registry=r)

    def _keep(self) -> None:
        if self.path is None:
            return
        kept = {a.plug: store.dump(x[1]) for a in self.appliances for x in (a.pause, a.run, a.charge) if x}
        if kept != self._kept:
            try:
                store.save(self.path, kept)
                self._kept = kept
            except OSError as exc:
                self.agent.refusals.refuse("appliances", "state_dir", f"could not keep the appliances' state: {exc}")

    # -- the house as the decisions see it ---------------------------------------------------------
    def readings(self) -> dict[str, Reading]:
        out: dict[str, Reading] = {}
        ha = self.ha.snapshots() if self.ha is not None else {}
        for a in self.appliances:
            s = (self.lan.snapshots.get(a.plug) if self.lan is not None else None) or ha.get(a.plug)
            read_at = s.switch_on.measured_at if s is not None else None
            if s is None or (a.switched_at is not None and (read_at is None or read_at <= a.switched_at)):
                # no reading, or one from before the agent's last switch: it says nothing of the plug now
                out[a.plug] = (None, None)
                continue
            on = s.switch_on.value if s.switch_on.usable and s.switch_on.value is not None else None
            out[a.plug] = (None if on is None else on > 0.5, s.power_w.value if s.power_w.usable else None)
        return out

    def grid_w(self) -> float | None:
        """The LAN grid meter's, else Home Assistant's, else the house's own meter's (W, import > 0)."""
        if self.grid_meter is not None and self.lan is not None and self.grid_meter in self.lan.rms:
            s = self.lan.snapshots.get(self.grid_meter)  # (a house of LAN devices only claims it: its own reading)
            return s.power_w.value if s is not None and s.power_w.usable else None
        if self.ha is not None and (m := self.ha.grid_w()) is not None:
            return m.value if m.usable else None
        snap = self.agent.snapshot
        grid = snap.telemetry.grid_power_w if snap is not None else None
        return grid.value if grid is not None and grid.usable else None

    def outlook(self, now: datetime, grid_w: float | None) -> Outlook:
        start = align_down(now, SLOT_S)
        n = HORIZON_SLOTS
        imp, exp = [math.nan] * n, [math.nan] * n
        if self.prices is not None:
            a, b = self.prices.prices(start, SLOT_S, n)
            imp, exp = [float(x) for x in a], [float(x) for x in b]
        signal = self.agent.intake.grid_signal
        for p in signal.prices if signal is not None else ():
            first = math.ceil((p.start - start).total_seconds() / SLOT_S)
            for i in range(max(0, first), n):
                if start + timedelta(seconds=i * SLOT_S) >= p.start + timedelta(seconds=p.duration_s):
                    break
                imp[i], exp[i] = p.import_price_per_kwh, p.export_price_per_kwh
        grid = finite(grid_w, -MAX_POWER_W, MAX_POWER_W)
        return Outlook(start, SLOT_S, tuple(imp), tuple(exp), self._surplus(now, start, n),
                       None if grid is None else max(0.0, -grid))

    def _surplus(self, now: datetime, start: datetime, n: int) -> tuple[float, ...]:
        """Forecast PV surplus (W) per slot: PV production beyond the household load; NaN unknown."""
        fc = self.agent.reports.forecasts(now) if self.agent.reports.forecaster is not None else None
        out = [math.nan] * n
        if fc is None:
            return tuple(out)
        load, pv = fc[0], fc[1]
        for i in range(n):
            t = start + timedelta(seconds=i * SLOT_S)
            j, k = (int((t - load.start).total_seconds() // load.slot_s),
                    int((t - pv.start).total_seconds() // pv.slot_s))
            if 0 <= j < len(load.values_w) and 0 <= k < len(pv.values_w):
                out[i] = max(0.0, -pv.values_w[k] - load.values_w[j])
        return tuple(out)

    def plan_starts(self, now: datetime) -> dict[str, datetime]:
        plan = self.agent.plans.active(now)
        return {r.resource_id: r.start for r in plan.run_starts} if plan is not None else {}

    # -- one decision round ------------------------------------------------------------------------
    async def step(self) -> None:
        now = self.agent.clock.now()
        readings = self.readings()
        grid = self.grid_w()
        outlook = self.outlook(now, grid)
        limit = self.agent.intake.effective_limits(now).max_import_w
        price_now = outlook.import_price[0] if outlook.import_price else None
        starts = self.plan_starts(now)
        for a in self.appliances:
            on, power = readings.get(a.plug, (None, None))
            house = House(now, grid, limit, outlook)
            if not a.seen and on is not None:
                a.seen = True
                if on is False and a.kind != "battery":  # it may be the agent's hold from before a restart
                    await self._switch(a, True, "restore", "off at the agent's start: a freezer must not stay "
                                       "off, a held machine must run")
                    continue
            if a.pause is not None:
                delta = await self._pause(a, on, power, house, price_now)
            elif a.run is not None:
                delta = await self._run(a, on, power, house, starts.get(a.plug))
            else:
                delta = await self._charge(a, on, power, house)
            if grid is not None:
                grid += delta  # the next appliance sees this one's switch
        self._count_states()
        self._keep()

    async def _switch(self, a: Appliance, on: bool, reason: str, why: str) -> bool:
        try:
            if self.lan is not None and a.plug in self.lan.rms:
                await self.lan.switch(a.plug, on)
            elif self.ha is not None:
                await self.ha.switch(a.plug, on)
            else:
                raise KeyError(f"{a.plug}: no plug of that id")
        except (DeviceError, HaApiError, OSError, ValueError, KeyError) as exc:
            self.m_switches.labels(a.kind, reason, "failed").inc()
            if _limit.admit((a.plug, on)) is not None:
                log.warning("%s (%s): could not switch %s for %s: %s", a.plug, a.kind, "on" if on else "off", reason,
                            exc)
            return False
        self.m_switches.labels(a.kind, reason, "ok").inc()
        a.switched_at = self.agent.clock.now()
        self.decisions.append((self.agent.clock.now(), a.plug, on, reason))
        log.info("%s (%s) switched %s: %s%s", a.plug, a.kind, "on" if on else "off", reason, f" ({why})" if why else "")
        return True

    async def _pause(self, a: Appliance, on: bool | None, power: float | None, house: House,
                     price_now: float | None) -> float:
        assert a.pause is not None
        rules, state = a.pause
        state = observe_pause(state, on, power, house.now, rules.period_s)
        action = decide_pause(rules, state, house, price_now, power)
        delta = 0.0
        if action is not None:
            why = f"price {price_now:.3f}/kWh" if action.reason == "price_spike" and price_now is not None else ""
            if await self._switch(a, action.on, action.reason, why):
                state = after_switch(state, action, self.agent.clock.now())
                w = draw_w(rules, state, power)
                delta = w if action.on else -(finite(power, 0.0, MAX_POWER_W) or 0.0)
        a.pause = (rules, state)
        a.state = "unknown" if state.on is None else "on" if state.on else "paused" if state.paused_at else "off"
        return delta

    async def _run(self, a: Appliance, on: bool | None, power: float | None, house: House,
                   plan_start: datetime | None) -> float:
        assert a.run is not None
        rules, track = a.run
        track, event = observe_run(rules, track, on, power, house.now)
        if event:
            log.info("%s (run): %s", a.plug, event)
        delta = 0.0
        if track.phase == "requested" and track.earliest is not None and track.latest_end is not None:
            d = decide_run(rules.profile, track.earliest, track.latest_end, house, plan_start, self.interval_s)
            if d.plan_ignored and _limit.admit((a.plug, "plan")) is not None:
                log.warning("%s (run): %s; its own choice instead", a.plug, d.plan_ignored)
            # held by the limit: the aim stays (a new "now" every decision would be news to no one)
            planned = (track.planned or d.planned) if d.reason == "import_limit" else d.planned
            latest = track.latest_end
            if not d.start and (track.planned != planned or a.aim != d.reason):
                log.info("%s (run): waits for %s (%s), done by %s", a.plug, _hm(planned, rules), d.reason,
                         _hm(latest, rules))
            a.aim = d.reason
            track = track if track.planned == planned else replace(track, planned=planned)
            if on is True:  # held off first: the machine starts when its power comes back
                if await self._switch(a, False, "hold", f"start at {_hm(planned, rules)}"):
                    delta = -(finite(power, 0.0, MAX_POWER_W) or 0.0)
            elif on is False and d.start and await self._switch(a, True, d.reason,
                                                                f"done by {_hm(latest, rules)}"):
                track = started(rules, track, self.agent.clock.now())
                delta = rules.profile[0].power_w
        a.run = (rules, track)
        a.state = {"requested": "scheduled"}.get(track.phase, track.phase)
        return delta

    async def _charge(self, a: Appliance, on: bool | None, power: float | None, house: House) -> float:
        assert a.charge is not None
        rules, state = a.charge
        state = observe_charge(rules, state, on, power, house.now)
        action = decide_charge(rules, state, house)
        delta = 0.0
        if action is not None and await self._switch(a, action.on, action.reason,
                                                     f"{state.charged_wh:.0f} of {rules.need_wh:.0f} Wh in"):
            state = ChargeState(action.on, self.agent.clock.now(), state.day_end, state.charged_wh, state.full,
                                state.sample, None)
            delta = rules.charge_w if action.on else -(finite(power, 0.0, MAX_POWER_W) or 0.0)
        a.charge = (rules, state)
        a.state = ("unknown" if state.on is None else "full" if state.full else "charging" if state.on
                   else "waiting")
        return delta

    def _count_states(self) -> None:
        counts: dict[tuple[str, str], int] = {}
        for a in self.appliances:
            counts[(a.kind, a.state)] = counts.get((a.kind, a.state), 0) + 1
        self.m_state.clear()
        for (kind, state), n in counts.items():
            self.m_state.labels(kind, state).set(n)

    # -- to the aggregator -------------------------------------------------------------------------
    def flexibility(self, now: datetime) -> LoadsFlexibility:
        switchable: list[SwitchableLoadFlexibility] = []
        shiftable: list[ShiftableRunFlexibility] = []
        for a in self.appliances:
            if a.pause is not None:
                switchable.append(pause_flexibility(a.plug, *a.pause))
            elif a.run is not None and (run := run_flexibility(a.plug, *a.run)) is not None:
                shiftable.append(run)
            elif a.charge is not None and (ch := charge_flexibility(a.plug, a.charge[0], a.charge[1], now)):
                shiftable.append(ch)
        return tuple(switchable), tuple(shiftable)

    def held(self) -> list[Appliance]:
        """The appliances the agent keeps off: a pause, a held run, a station waiting."""
        return [a for a in self.appliances
                if (a.pause is not None and a.pause[1].paused_at is not None and a.pause[1].on is not True)
                or (a.run is not None and a.run[1].phase == "requested")
                or (a.charge is not None and a.charge[1].on is False)]

    async def release(self) -> None:
        """Hand every plug the agent holds off back on (the agent stops: nothing would end the hold)."""
        for a in self.held():
            await self._switch(a, True, "agent_stops", "")

    async def run(self) -> None:
        """Decide until cancelled, then hand the held plugs back; the plugs' own components (owned)
        run inside, so that they stop only after that."""
        owned = [asyncio.create_task(c.run(), name=f"appliances-{type(c).__name__}") for c in self.owned]
        try:
            while True:
                await self.step()
                await self.agent.clock.sleep(self.interval_s)
        finally:
            try:
                async with asyncio.timeout(5.0):
                    await asyncio.shield(self.release())
            except (TimeoutError, asyncio.CancelledError):
                log.warning("appliances: could not hand every plug back on as the agent stops: %s",
                            ", ".join(a.plug for a in self.held()))
            for t in owned:
                t.cancel()
            await asyncio.gather(*owned, return_exceptions=True)


def attach(agent: EdgeAgent, lan: LanDevices | None, ha: HaDevicesComponent | None = None) -> ApplianceControl | None:
    """With ``[[appliances]]`` (behind LAN plugs or Home Assistant entities): scheduled beside the
    loops, reported as flexibility.  The plugs' components run inside it from then on (they stop
    after the plugs the agent holds off were switched back on)."""
    if not agent.config.appliances or (lan is None and ha is None):
        return None
    control = ApplianceControl(agent, lan, ha=ha.devices if ha is not None else None)
    for c in (lan, ha):
        if c is not None and c in agent.components:
            agent.components.remove(c)
            control.owned.append(c)
    agent.components.append(control)
    agent.reports.flexibility_sources.append(control.flexibility)
    return control


__all__ = ["ApplianceControl", "attach"]
