"""A simulated hour with a noisy setpoint stays within the write limit per register.

The controller asks for a new battery power every (simulated) second; the
write guard lets at most one write per register per 30 s and 120 per hour
through, refreshes unchanged values at 30 s (inside Victron's 60 s timeout)
and never rewrites an unchanged mode register.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

import pytest

from edge_agent.drivers.catalogue import load_entry
from edge_agent.drivers.catalogue_device import CatalogueDevice
from edge_agent.drivers.sunspec import SunSpecDevice
from edge_agent.drivers.write_guard import DEFAULT_MAX_WRITES_PER_HOUR, WriteGuard
from simulator.catalogue_device import CatalogueSimulator
from simulator.hybrid_device import SimulatorConfig, SunSpecHybridSimulator
from simulator.physics import PhysicsConfig
from vpp_common.clock import ManualClock

pytestmark = pytest.mark.timeout(60)
NIGHT = datetime(2024, 6, 1, 1, 0, tzinfo=UTC)
PHYSICS = PhysicsConfig(battery_capacity_wh=100_000.0)  # an hour of charging must not fill it


@pytest.mark.parametrize("model", ["victron_gx", "sungrow_sh", "huawei_sun2000_luna2000"])
async def test_noisy_setpoint_hour_catalogue(model: str) -> None:
    clock = ManualClock(NIGHT)
    rng = random.Random(7)
    async with CatalogueSimulator(model, clock, PHYSICS) as sim:
        guard = WriteGuard(refresh_s=30.0, now_s=lambda: clock.now().timestamp())
        dev = CatalogueDevice(load_entry(model), "127.0.0.1", sim.port, timeout_s=1.0, write_guard=guard)
        try:
            for _ in range(3600):
                await dev.command_battery(2_000.0 + rng.uniform(-300.0, 300.0))
                clock.advance(1.0)
                # the device never dropped the command (refresh beats every revert timer)
                assert 1_600.0 <= sim.snapshot().battery_power_w <= 2_400.0
        finally:
            await dev.close()
        per_register = Counter((w.unit_id, w.address) for w in sim.writes)
        assert per_register and max(per_register.values()) <= DEFAULT_MAX_WRITES_PER_HOUR
        assert guard.suppressed > 3_000
        times: dict[tuple[int, int], list[datetime]] = {}
        for w in sim.writes:
            times.setdefault((w.unit_id, w.address), []).append(w.at)
        for ts in times.values():
            assert all((b - a).total_seconds() >= guard.min_interval_s for a, b in zip(ts, ts[1:]))
        mode_point = load_entry(model).control.charge[0].point  # type: ignore[union-attr]
        mode_addr = load_entry(model).points[mode_point].address
        assert sum(n for (_u, a), n in per_register.items() if a == mode_addr) <= 120


async def test_noisy_setpoint_hour_sunspec() -> None:
    clock = ManualClock(NIGHT)
    rng = random.Random(11)
    async with SunSpecHybridSimulator(SimulatorConfig(physics=PHYSICS), clock) as sim:
        guard = WriteGuard(refresh_s=30.0, now_s=lambda: clock.now().timestamp())
        dev = SunSpecDevice("127.0.0.1", sim.port, timeout_s=1.0, write_guard=guard)
        try:
            for _ in range(3600):
                pct = 40.0 + rng.uniform(-6.0, 6.0)
                await dev.write_points(124, {"InWRte": pct, "OutWRte": -pct, "InOutWRte_RvrtTms": 60,
                                             "StorCtl_Mod": 3})
                clock.advance(1.0)
            assert sim.reverts == []
        finally:
            await dev.close()
        per_register: Counter[int] = Counter()
        for w in sim.writes:
            for a in range(w.address, w.address + len(w.values)):
                per_register[a] += 1
        assert max(per_register.values()) <= DEFAULT_MAX_WRITES_PER_HOUR
        # the mode register is refreshed at 30 s only, never rewritten per setpoint
        assert per_register[sim.address_of(124, "StorCtl_Mod")] <= 121
