"""``[home_assistant.api]`` in the agent: Home Assistant's entities read over its WebSocket API,
their power in the house's telemetry (``EdgeAgent.extra_telemetry``), the switchable loads driven by
the load switching policy (a component, ``EdgeAgent.components``; docs/home-assistant-devices.md).

The policy's grid reading is the Home Assistant grid meter's when one is configured, else the
house's own (the inverter's meter); its import limit the agent's in force (the config's, tightened
by the aggregator's grid signals); its price the ``[tariff]``'s import price now."""

from __future__ import annotations

import asyncio
from datetime import datetime

from prometheus_client import Counter, Gauge

from edge_agent.agent import EdgeAgent
from edge_agent.energy_manager.load_switching import LoadRules, Pressure
from edge_agent.ha_api_config import HomeAssistantApiConfig
from edge_agent.home_assistant.ha_devices import HaDevices
from edge_agent.home_assistant.load_control import LoadControl, Reading
from vpp_common.tariff import PriceSource

SOURCE = "home_assistant_api"  # refusals' source label


class HaDevicesComponent:
    def __init__(self, agent: EdgeAgent, cfg: HomeAssistantApiConfig, devices: HaDevices | None = None) -> None:
        self.agent, self.cfg = agent, cfg
        self.devices = devices or HaDevices(cfg, agent.clock, agent.config.device.stale_after_s,
                                            refuse=lambda reason, detail: agent.refusals.refuse(SOURCE, reason, detail))
        self.prices: PriceSource | None = agent.config.tariff.price_source() if agent.config.tariff else None
        appliances = {a.plug for a in agent.config.appliances}  # scheduled as appliances (docs/appliances.md)
        rules = {e.id: LoadRules(e.min_on_s, e.min_off_s, e.max_off_s, e.expected_power_w)
                 for e in cfg.entities if e.role == "switchable_load" and e.id not in appliances}
        self.control = LoadControl(rules, self._readings, self._switch, self.pressure, agent.clock,
                                   cfg.control_interval_s)
        r = agent.metrics.registry
        Gauge("vpp_edge_home_assistant_api_connected", "1 while Home Assistant's WebSocket API is subscribed.",
              registry=r).set_function(lambda: float(self.devices.api.connected))
        self.m_switches = Counter("vpp_edge_load_switches_total", "Switchable loads switched by the load "
                                  "switching policy, by result (ok, failed) and state asked.", ["result", "state"],
                                  registry=r)

    async def _switch(self, resource_id: str, on: bool) -> None:
        state = "on" if on else "off"
        try:
            await self.devices.switch(resource_id, on)
        except Exception:
            self.m_switches.labels("failed", state).inc()
            raise
        self.m_switches.labels("ok", state).inc()

    def _readings(self) -> dict[str, Reading]:
        out: dict[str, Reading] = {}
        for rid, s in self.devices.snapshots().items():
            if rid in self.control.rules:
                on = s.switch_on.value if s.switch_on.usable else None
                out[rid] = (None if on is None else on > 0.5, s.power_w.value if s.power_w.usable else None)
        return out

    def pressure(self, now: datetime) -> Pressure:
        grid = self.devices.grid_w()
        if grid is None and self.agent.snapshot is not None:
            grid = self.agent.snapshot.telemetry.grid_power_w
        price = float(self.prices.prices(now, 900, 1)[0][0]) if self.prices is not None else None
        return Pressure(grid.value if grid is not None and grid.usable else None,
                        self.agent.intake.effective_limits(now).max_import_w, price,
                        self.cfg.price_spike_per_kwh, self.cfg.release_margin_w)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.devices.run(), name="ha-devices")
            if self.control.rules:
                tg.create_task(self.control.run(), name="ha-load-control")


def attach(agent: EdgeAgent) -> HaDevicesComponent | None:
    """With ``[home_assistant.api]``: the entities read beside the loops, in the telemetry, and
    the switchable loads switched by the policy."""
    ha = agent.config.home_assistant
    if ha is None or ha.api is None:
        return None
    component = HaDevicesComponent(agent, ha.api)
    agent.components.append(component)
    agent.extra_telemetry.append(component.devices.telemetry)
    agent.reports.flexibility_sources.append(component.control.flexibility)  # its switchable loads, as OMBC
    return component


__all__ = ["HaDevicesComponent", "attach"]
