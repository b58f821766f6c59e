"""The aggregator may tighten a house's limits for a while, never loosen them; modes."""

from __future__ import annotations

from datetime import datetime, timedelta

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig, ControlConfig, SiteConfig
from vpp_common.clock import UTC, ManualClock
from vpp_common.messages import DispatchPlan, GridSignal, PlanSlot, PlanState, SiteLimits

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)


def agent(mode: str = "vpp") -> EdgeAgent:
    cfg = AgentConfig(house_id="h", insecure=True, metrics_port=None, site=SiteConfig(max_import_w=10_000,
                      max_export_w=4_000), control=ControlConfig(mode=mode))  # type: ignore[arg-type]
    return EdgeAgent(cfg, clock=ManualClock(T0))


def test_temporary_limits_tighten_only_and_expire() -> None:
    a = agent()
    a.intake.on_grid_signal(GridSignal(T0, limits=SiteLimits(20_000, 1_000), limits_valid_until=T0 + timedelta(hours=1)))
    assert a.intake.effective_limits(T0) == SiteLimits(10_000, 1_000)  # import not loosened, export tightened
    assert a.intake.effective_limits(T0 + timedelta(hours=1)) == SiteLimits(10_000, 4_000)  # expired


def test_self_consumption_mode_rejects_plans() -> None:
    a = agent("self_consumption")
    sent = []
    a.uplink.send = sent.append  # type: ignore[method-assign]
    plan = DispatchPlan("p", 1, T0, T0, T0 + timedelta(hours=1), 900, (PlanSlot(T0, ()),))
    a._on_plan(plan)
    assert a.plans.current is None and sent[0].state is PlanState.REJECTED and "self_consumption" in sent[0].reason
