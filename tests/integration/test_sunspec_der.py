"""SunSpec DER models (701, 702, 704, 713) in the simulator image and through the hybrid Resource Manager.

Parametrised over images built from pysunspec2's definitions: a DER device
with no 124 (battery through 704 WSet, PV curtailment through 704
WMaxLimPct), the same in another order with a model 1 of length 65, and a
classic image that also offers 704 (battery through 124, curtailment through
704, which is tried first).  Each: discovery, every point of every model
read, a charge and a discharge with the effect seen in the simulator's
physics, PV curtailment, and the device-side revert timers.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edge_agent.drivers.sunspec import SunSpecDevice
from edge_agent.drivers.sunspec_points import ModelValues
from edge_agent.resources.house import DeviceConfigurationError, HouseSettings
from edge_agent.resources.hybrid import HybridInverterRM
from simulator.hybrid_device import DER_MODELS, SimulatorConfig, SunSpecHybridSimulator
from simulator.physics import PhysicsConfig
from vpp_common.clock import ManualClock
from vpp_common.messages import Validity

pytestmark = pytest.mark.timeout(30)

NIGHT = datetime(2024, 6, 1, 2, 0, tzinfo=UTC)  # no PV: the battery does exactly what it is told
PHYSICS = PhysicsConfig(initial_soc_pct=50.0, battery_max_charge_w=5_000.0, battery_max_discharge_w=5_000.0,
                        pv_kwp=8.0)
REVERT_S = 60

IMAGES = {
    "der": SimulatorConfig(physics=PHYSICS, model_order=DER_MODELS),
    "der_reordered_model1_65": SimulatorConfig(physics=PHYSICS, model1_length=65,
                                               model_order=(802, 704, 160, 713, 203, 702, 701)),
    "classic_with_704": SimulatorConfig(physics=PHYSICS,
                                        model_order=(103, 120, 704, 702, 123, 124, 160, 203, 802)),
}


async def read_everything(rm: HybridInverterRM) -> dict[int, ModelValues]:
    dev = rm._dev  # the RM's own driver
    return {m.model_id: await dev.read_model(m.model_id) for m in await dev.discover()}


@pytest.mark.parametrize("image", list(IMAGES))
async def test_discover_read_charge_discharge(image: str) -> None:
    cfg = IMAGES[image]
    clock = ManualClock(NIGHT)
    async with SunSpecHybridSimulator(cfg, clock) as sim:
        rm = HybridInverterRM(SunSpecDevice("127.0.0.1", sim.port, timeout_s=1.0), clock, HouseSettings(revert_s=REVERT_S))
        await rm.connect()
        try:
            models = await read_everything(rm)
            assert list(models) == [1, *(cfg.model_order or ())]  # the chain walked by each model's own L
            for model_id, values in models.items():
                assert not values.decode_errors, (model_id, values.decode_errors)
                assert values.points, model_id
            if 713 in models:
                assert models[713]["SoC"] == pytest.approx(50.0, abs=0.1)
                assert models[713]["WHRtg"] == PHYSICS.battery_capacity_wh
            if 702 in models:
                assert models[702]["WMaxRtg"] == cfg.inverter_rating_w
                assert models[702]["WChaRteMaxRtg"] == PHYSICS.battery_max_charge_w
            if 701 in models:  # AC power, injection positive: the battery covers the night load
                assert models[701]["W"] == pytest.approx(-sim.snapshot().battery_power_w, abs=20)
            n = rm.nameplate
            assert n is not None and n.max_charge_w == 5_000.0 and n.capacity_wh == PHYSICS.battery_capacity_wh

            snap = await rm.poll()
            assert snap.telemetry.battery_soc_pct.validity is Validity.VALID
            assert snap.telemetry.battery_soc_pct.value == pytest.approx(50.0, abs=0.1)

            soc0 = sim.snapshot().soc_pct
            assert await rm.set_battery_power(3_000.0)
            assert sim.snapshot().battery_power_w == pytest.approx(3_000.0, abs=60)
            clock.advance(50)
            soc1 = sim.snapshot().soc_pct
            assert soc1 > soc0 + 0.3
            assert await rm.set_battery_power(-2_000.0)
            assert sim.snapshot().battery_power_w == pytest.approx(-2_000.0, abs=60)
            clock.advance(20)
            assert sim.snapshot().soc_pct < soc1
            back = await rm.poll()
            assert back.telemetry.battery_power_w.value == pytest.approx(-2_000.0, abs=60)

            if 124 not in models:  # 704 WSet was used: its revert timer hands the battery back
                wset = sim.address_of(704, "WSet")
                assert any(w.covers(wset) for w in sim.writes)
                clock.advance(REVERT_S + 1)
                after = sim.snapshot()  # the simulator advances (and reverts) lazily
                assert sim.reverts and after.window_lower_w < 0 < after.window_upper_w
            await rm.release()
        finally:
            await rm.close()


@pytest.mark.parametrize("image", list(IMAGES))
async def test_pv_curtailment_prefers_704(image: str) -> None:
    clock = ManualClock(NIGHT.replace(hour=13))
    async with SunSpecHybridSimulator(IMAGES[image], clock) as sim:
        rm = HybridInverterRM(SunSpecDevice("127.0.0.1", sim.port, timeout_s=1.0), clock, HouseSettings(revert_s=REVERT_S))
        await rm.connect()
        try:
            assert sim.snapshot().pv_power_w < -5_000.0
            await rm.set_pv_limit(2_500.0)
            assert sim.snapshot().pv_power_w == pytest.approx(-2_500.0, abs=10.0)
            enable = sim.address_of(704, "WMaxLimPctEna")
            assert any(w.covers(enable) and w.value_at(enable) == 1 for w in sim.writes)  # 704, not 123
            clock.advance(REVERT_S + 1)  # not refreshed: the device lifts the limit
            assert sim.snapshot().pv_power_w < -5_000.0
            assert sim.curtail_reverts
            await rm.set_pv_limit(1_000.0)
            await rm.set_pv_limit(None)
            assert sim.snapshot().pv_power_w < -5_000.0
        finally:
            await rm.close()


async def test_a_device_without_a_battery_rating_is_a_configuration_error() -> None:
    clock = ManualClock(NIGHT)
    cfg = SimulatorConfig(physics=PHYSICS, model_order=(103, 160, 203, 802, 704))
    async with SunSpecHybridSimulator(cfg, clock) as sim:
        rm = HybridInverterRM(SunSpecDevice("127.0.0.1", sim.port, timeout_s=1.0), clock)
        try:
            await rm.connect()  # 704 but no 120 or 702 rating: WSet cannot be bounded
        except DeviceConfigurationError as exc:
            assert "702" in str(exc)
        else:
            pytest.fail("connected without a battery rating")
        finally:
            await rm.close()
    with pytest.raises(ValueError, match="model_order"):
        SimulatorConfig(model_order=(103, 120, 123, 160, 203))  # neither 124 nor 704
