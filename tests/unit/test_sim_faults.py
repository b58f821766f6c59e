"""The simulator's replayable faults (simulator.hybrid_device.Faults and its events), without a network."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType

import pytest

from edge_agent.drivers.sunspec_points import ModelValues
from edge_agent.resources.frozen import sunspec_progress
from simulator.catalogue_device import CatalogueSimulator
from simulator.fault_control import handle_command
from simulator.hybrid_device import DER_MODELS, Faults, SimulatorConfig, SunSpecHybridSimulator
from simulator.physics import PhysicsConfig
from vpp_common.clock import ManualClock

NOON = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)


def hybrid(der: bool = False) -> tuple[SunSpecHybridSimulator, ManualClock]:
    clock = ManualClock(NOON)
    return SunSpecHybridSimulator(SimulatorConfig(model_order=DER_MODELS if der else None), clock), clock


def test_frozen_registers_stand_still_while_the_house_goes_on() -> None:
    sim, clock = hybrid()
    img = sim.image
    sim.faults = Faults(frozen=True)
    before = (img.get(203, "W"), img.get(203, "TotWhExp"), img.get(802, "Hb"), img.get(124, "ChaState"))
    soc = sim.snapshot().soc_pct
    clock.advance(60)
    assert sim.snapshot().soc_pct != soc  # the physics carries on ...
    assert (img.get(203, "W"), img.get(203, "TotWhExp"), img.get(802, "Hb"), img.get(124, "ChaState")) == before
    sim.faults = Faults()
    clock.advance(1)
    sim.snapshot()
    assert img.get(802, "Hb") != before[2] and img.get(203, "TotWhExp") != before[1]  # ... and shows again


@pytest.mark.parametrize("der", [False, True])
def test_reboot_revert_and_another_master(der: bool) -> None:
    sim, clock = hybrid(der)
    img = sim.image
    assert handle_command(sim, "other_master").startswith("ok")
    if der:
        assert (img.get_raw(704, "WSetEna"), img.get(704, "WSet"), img.get_raw(704, "WMaxLimPctEna")) == (1, 2500, 1)
    else:
        assert (img.get_raw(124, "StorCtl_Mod"), img.get(124, "InWRte"), img.get_raw(123, "WMaxLim_Ena")) == (3, -50, 1)
    clock.advance(1)
    assert sim.snapshot().battery_power_w == pytest.approx(-2500)  # the other master's discharge
    assert sim.foreign_writes and not sim.writes
    handle_command(sim, "other_master")
    handle_command(sim, "revert")  # enables off, the other values stay
    if der:
        assert (img.get_raw(704, "WSetEna"), img.get(704, "WSet")) == (0, 2500)
    else:
        assert (img.get_raw(124, "StorCtl_Mod"), img.get(124, "InWRte"), img.get_raw(123, "WMaxLim_Ena")) == (0, -50, 0)
    handle_command(sim, "other_master")
    handle_command(sim, "reboot")  # everything back to the defaults
    if der:
        assert (img.get_raw(704, "WSetEna"), img.get(704, "WSet"), img.get(704, "WMaxLimPct")) == (0, 0, 100)
    else:
        assert (img.get_raw(124, "StorCtl_Mod"), img.get(124, "InWRte"), img.get(123, "WMaxLimPct")) == (0, 100, 100)
    assert len(sim.reboots) == 1


def test_periodic_events_fire_every_period_from_when_they_were_set() -> None:
    sim, clock = hybrid()
    sim.faults = Faults(reboot_every_s=10, other_master_every_s=4)
    sim.snapshot()  # the schedule starts at the first request
    clock.advance(9)
    sim.snapshot()
    assert len(sim.foreign_writes) == 1 and not sim.reboots  # due at 4 and 8: one request, one event
    clock.advance(1)
    sim.snapshot()
    assert len(sim.reboots) == 1
    clock.advance(25)
    sim.snapshot()
    assert len(sim.reboots) == 2  # one per request at most: it fires when the device is asked
    sim.faults = Faults()
    clock.advance(100)
    sim.snapshot()
    assert len(sim.reboots) == 2


def test_scale_factor_change_keeps_the_values_and_is_undone() -> None:
    sim, clock = hybrid()
    img = sim.image
    own = img.get_raw(203, "W_SF")
    sim.faults = Faults(scale_factors=(("W_SF", 1),))
    clock.advance(1)
    s = sim.snapshot()
    assert img.get_raw(203, "W_SF") == 1 == img.get_raw(103, "W_SF")
    assert img.get(203, "W") == pytest.approx(s.grid_power_w, abs=5)  # 10 W steps now
    sim.faults = Faults()
    assert img.get_raw(203, "W_SF") == own


def test_vendor_device_reboot_and_revert() -> None:
    clock = ManualClock(NOON)
    sim = CatalogueSimulator("huawei_sun2000_luna2000", clock, PhysicsConfig())
    sim.set("forcible_mode", 1)
    sim.reboot()
    assert sim.get("forcible_mode") == 0 and sim.reboots
    with pytest.raises(NotImplementedError):
        sim.other_master_write()
    assert handle_command(sim, "scale_factor:W_SF=1").startswith("error")


def test_what_must_advance_in_sunspec_models() -> None:
    def mv(model_id: int, groups: dict | None = None, **points: float) -> ModelValues:
        return ModelValues(name=str(model_id), points=MappingProxyType(points),
                           groups=MappingProxyType(groups or {}), model_id=model_id)

    module = mv(160, DCW=1000.0, DCWH=5.0, Tms=77)
    progress = {p.name: p for p in sunspec_progress("", {
        203: mv(203, W=-3600.0, TotWhImp=10.0, TotWhExp=20.0, TotWh_SF=0),
        103: mv(103, W=-500.0, WH=1.0, WH_SF=1),
        160: mv(160, {"module": (module, module)}, DCWH_SF=0),
        802: mv(802, Hb=3, SoC=50.0, SoC_SF=-1),
        124: mv(124, ChaState=50.0, ChaState_SF=-1),
    }, battery_w=1000.0, capacity_wh=10_000.0)}
    assert progress["203.TotWh"].value == 30.0 and progress["203.TotWh"].min_rate_per_s == pytest.approx(0.5)
    assert progress["103.WH"].min_rate_per_s == 0.0 and progress["103.WH"].resolution == 10.0  # consuming
    assert progress["160.DCWH"].value == 10.0 and progress["160.Tms"].min_rate_per_s == 1.0
    assert progress["802.Hb"].min_rate_per_s == 1.0
    assert progress["124.ChaState"].resolution == pytest.approx(0.1) and "802.SoC" not in progress
