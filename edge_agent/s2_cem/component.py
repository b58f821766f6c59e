"""The S2 CEM as a component of the agent (``EdgeAgent.components``), built by the CLI with an
``[s2]`` table: the server, the agent's clock, metrics and refusals, and the house as the
instruction loop needs it (the plan in force, the grid reading, the site limits in force)."""

from __future__ import annotations

from datetime import datetime

from edge_agent.agent import EdgeAgent
from edge_agent.local_control import plan_in_force
from edge_agent.s2_cem.listing import status_path
from edge_agent.s2_cem.server import HouseNow, S2CemServer


def house_now(agent: EdgeAgent, now: datetime) -> HouseNow:
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
    return HouseNow(plan, grid_w, agent.intake.effective_limits(now))


def attach(agent: EdgeAgent) -> S2CemServer | None:
    """With an ``[s2]`` table: the CEM server, run among the agent's components."""
    cfg = agent.config.s2
    if cfg is None:
        return None
    server = S2CemServer(cfg, agent.clock.now, agent.metrics.registry, agent.refusals,
                         house=lambda now: house_now(agent, now),
                         tick_s=agent.config.control.tick_s / agent.clock.speed,
                         status_file=status_path(agent.config.state_dir) if agent.config.state_dir else None)
    agent.components.append(server)
    return server
