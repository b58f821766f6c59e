"""The S2 CEM as a component of the agent (``EdgeAgent.components``), built by the CLI with an
``[s2]`` table: the server, the agent's clock, metrics and refusals, and the house as the
instruction loop needs it (the plan in force, the grid reading, the site limits in force, the
prices and the house's forecast); the connected RMs' flexibility goes into the agent's
flexibility updates (``HouseReports.flexibility_sources``)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from edge_agent.agent import EdgeAgent
from edge_agent.local_control import plan_in_force
from edge_agent.s2_cem.decide import HouseNow
from edge_agent.s2_cem.flexibility import devices, loads, powers
from edge_agent.s2_cem.listing import status_path
from edge_agent.s2_cem.server import S2CemServer
from vpp_common.log_limit import LogLimiter
from vpp_common.messages import PowerForecast, PriceSlot
from vpp_common.tariff import PriceSource
from vpp_common.timeslots import align_down

log = logging.getLogger(__name__)
_limit = LogLimiter(300.0)
PRICE_SLOT_S = 900
PRICE_SLOTS = 7 * 96  # a PPBC window is at most a week


class Prices:
    """The prices the agent knows: the aggregator's grid signal while it has any for now, else
    the configured tariff (its price file read once; day-ahead prices only as far as published)."""

    def __init__(self, agent: EdgeAgent) -> None:
        self.agent = agent
        self._source: PriceSource | None = None
        self._cache: tuple[datetime | None, tuple[PriceSlot, ...]] = (None, ())

    def __call__(self, now: datetime) -> tuple[PriceSlot, ...]:
        signal = self.agent.intake.grid_signal
        if signal is not None and any(p.start <= now < p.start + timedelta(seconds=p.duration_s)
                                      for p in signal.prices):
            return signal.prices
        tariff = self.agent.config.tariff
        if tariff is None:
            return ()
        slot = align_down(now, PRICE_SLOT_S)
        if self._cache[0] != slot:
            try:
                self._source = self._source or tariff.price_source()
            except (ValueError, OSError) as exc:  # its price file went away: no prices, not no instructions
                if _limit.admit("tariff") is not None:
                    log.warning("S2: the tariff's prices cannot be read (%s): runs start without prices", exc)
                return ()
            prices = self._source.price_slots(slot, PRICE_SLOT_S, PRICE_SLOTS)
            known = getattr(self._source, "known_until", None)
            if known is not None:
                until = known(now)
                prices = tuple(p for p in prices if p.start + timedelta(seconds=p.duration_s) <= until)
            self._cache = (slot, prices)
        return self._cache[1]


def net_forecast(agent: EdgeAgent, now: datetime) -> PowerForecast | None:
    """The house's expected grid power per slot without its battery: load plus PV (PV < 0)."""
    fc = agent.reports.forecasts(now)
    if fc is None or fc[0].start != fc[1].start or fc[0].slot_s != fc[1].slot_s:
        return None
    load, pv = fc[0], fc[1]
    return PowerForecast(load.start, load.slot_s, tuple(a + b for a, b in zip(load.values_w, pv.values_w, strict=False)))


def house_now(agent: EdgeAgent, now: datetime, prices: Prices | None = None) -> HouseNow:
    """The plan the agent's own control loop follows now (the aggregator's while the stream is
    up or within its grace, the local TOU plan, or a local override), or None for its fallback."""
    plan, stream_ok = agent.plans.current, agent.stream_ok()
    if agent.local_tou is not None:
        plan, stream_ok = agent.local_tou.current, True  # made by the control loop each slot
    plan, stream_ok = plan_in_force(agent.override, agent.config.control.mode, plan, stream_ok)
    if not stream_ok:
        plan = None
    snap = agent.snapshot
    grid = snap.telemetry.grid_power_w if snap is not None else None
    grid_w = grid.value if grid is not None and grid.usable else None
    return HouseNow(plan, grid_w, agent.intake.effective_limits(now), prices(now) if prices is not None else (),
                    net_forecast(agent, now))


def attach(agent: EdgeAgent) -> S2CemServer | None:
    """With an ``[s2]`` table: the CEM server, run among the agent's components."""
    cfg = agent.config.s2
    if cfg is None:
        return None
    prices = Prices(agent)
    server = S2CemServer(cfg, agent.clock.now, agent.metrics.registry, agent.refusals,
                         house=lambda now: house_now(agent, now, prices),
                         tick_s=agent.config.control.tick_s / agent.clock.speed,
                         status_file=status_path(agent.config.state_dir) if agent.config.state_dir else None)
    agent.components.append(server)
    # the RMs' loads and runs go up with the house's flexibility; a stale RM is left out
    agent.reports.flexibility_sources.append(
        lambda now: loads(list(server.coordinator.snapshots.values()), now, cfg.stale_after_s))
    # its FRBC RMs' storages and PEBC RMs' PV too, and the plan may name the resources its live sessions hold
    def house_ids() -> set[str]:  # an RM never stands for one of the house's own devices
        return {agent.device.battery_id} | {r.resource_id for r in getattr(agent.device, "resources", ())}

    agent.reports.device_sources.append(
        lambda now: devices(list(server.coordinator.snapshots.values()), now, cfg.stale_after_s, house_ids()))
    agent.reports.device_powers.append(
        lambda now: powers(list(server.coordinator.snapshots.values()), now, cfg.stale_after_s, house_ids()))
    agent.plan_resources.append(lambda: server.coordinator.held() - house_ids())
    return server
