"""Acceptance: every LAN catalogue entry (plugs and meters) against its simulator on loopback.

Readings in the convention's sign, switching with read-back, the Modbus simulators' faults
(timeout, refused connection, device errors, slow answers, implausible and frozen values) and
hostile JSON or telegram values: a failed read is STALE (the last valid value), then MISSING,
never 0 W; a value out of the entry's range is IMPLAUSIBLE and refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edge_agent.drivers.errors import AuthFailed, DeviceRefused, DeviceUnavailable
from edge_agent.drivers.lan_catalogue import lan_catalogue_ids, load_lan_entry
from edge_agent.drivers.lan_device import LanDevice
from edge_agent.resources.lan_device import LanDeviceRM
from simulator.fault_control import handle_command
from simulator.hybrid_device import Faults
from simulator.lan_base import LanFaults
from tests.lan_fixtures import (
    DEFAULT_POWER_W,
    DEVICE_KW,
    OTHER_POWER_W,
    POWER_FIELD,
    ROLE,
    SIMS,
    set_power,
)
from vpp_common.messages import Validity

pytestmark = pytest.mark.timeout(30)
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
STALE_AFTER_S = 30.0


@dataclass
class Lan:
    model: str
    sim: Any
    device: LanDevice
    rm: LanDeviceRM


@pytest.fixture(params=lan_catalogue_ids())
async def lan(request: pytest.FixtureRequest) -> AsyncIterator[Lan]:
    model = request.param
    sim = SIMS[model]()
    port = await sim.start()
    device = LanDevice(load_lan_entry(model), "127.0.0.1", port, timeout_s=0.5, **DEVICE_KW.get(model, {}))
    rm = LanDeviceRM(f"test-{model}", ROLE[model], device, STALE_AFTER_S)
    try:
        yield Lan(model, sim, device, rm)
    finally:
        await device.close()
        await sim.stop()


async def test_reads_power_and_energy_in_the_conventions_sign(lan: Lan) -> None:
    snap = await lan.rm.poll(T0)
    assert snap.power_w.validity is Validity.VALID and snap.power_w.value == DEFAULT_POWER_W[lan.model]
    energy = snap.energy_out_wh if ROLE[lan.model] == "pv" else snap.energy_in_wh  # a PV's yield goes out
    assert energy.validity is Validity.VALID and energy.value is not None
    assert energy.value > 0
    if ROLE[lan.model] == "grid_meter":  # export reads negative
        set_power(lan.sim, lan.model, -1500.0)
        await _until_power(lan, -1500.0)
        assert (await lan.rm.poll(T0)).energy_out_wh.validity is Validity.VALID


async def _until_power(lan: Lan, watts: float) -> None:
    for _ in range(50):  # P1: the next telegram carries it
        snap = await lan.rm.poll(T0)
        if snap.power_w.value == watts:
            return
    raise AssertionError(f"{lan.model}: power never read {watts}")


async def test_switch_on_and_off_with_read_back(lan: Lan) -> None:
    if not lan.rm.switchable:
        with pytest.raises(ValueError, match="not a switchable load"):
            await lan.rm.set_switch(False)
        assert (await lan.rm.poll(T0)).switch_on.validity is Validity.MISSING
        return
    await lan.rm.set_switch(False)
    snap = await lan.rm.poll(T0)
    assert snap.switch_on.value == 0.0 and snap.power_w.value == 0.0 and snap.power_w.validity is Validity.VALID
    await lan.rm.set_switch(True)
    snap = await lan.rm.poll(T0 + timedelta(seconds=1))
    assert snap.switch_on.value == 1.0 and snap.power_w.value == DEFAULT_POWER_W[lan.model]
    assert lan.sim.switch_calls == 2


@pytest.mark.parametrize("fault", ["timeout", "disconnect", "exception", "slow:1.0"])
async def test_faults_are_stale_then_missing_never_zero(lan: Lan, fault: str) -> None:
    first = await lan.rm.poll(T0)
    assert first.power_w.validity is Validity.VALID
    assert handle_command(lan.sim, fault).startswith("ok")
    snap = await lan.rm.poll(T0 + timedelta(seconds=5))
    assert snap.error is not None
    assert snap.power_w.validity is Validity.STALE and snap.power_w.value == first.power_w.value
    assert snap.power_w.measured_at == T0
    later = await lan.rm.poll(T0 + timedelta(seconds=STALE_AFTER_S + 5))
    assert later.power_w.validity is Validity.MISSING and later.power_w.value is None
    assert handle_command(lan.sim, "clear").startswith("ok")
    if lan.sim.listener is not None:
        await lan.sim.listener.wait_listening()
    back = await lan.rm.poll(T0 + timedelta(seconds=60))
    assert back.power_w.validity is Validity.VALID and back.error is None


async def test_implausible_values_are_refused(lan: Lan) -> None:
    lan.sim.faults = Faults(implausible=True)
    snap = await lan.rm.poll(T0)
    assert snap.power_w.validity is Validity.IMPLAUSIBLE
    assert any(r.reason.endswith("_implausible") for r in snap.refused)


async def test_frozen_values_stand_still(lan: Lan) -> None:
    before = await lan.rm.poll(T0)
    lan.sim.faults = Faults(frozen=True)
    frozen = await lan.rm.poll(T0)
    set_power(lan.sim, lan.model, OTHER_POWER_W[lan.model])
    for _ in range(3):
        assert (await lan.rm.poll(T0)).power_w.value == frozen.power_w.value == before.power_w.value
    lan.sim.faults = Faults()
    await _until_power(lan, OTHER_POWER_W[lan.model])


JSON_HOSTILE: list[Any] = [float("nan"), float("inf"), float("-inf"), "12", None, True, [], {"W": 1}, 1e300,
                           -(10 ** 30)]
P1_HOSTILE = ["NaN*kW", "abc", "1e999*kW", "", "01.000*W"]


async def test_hostile_values_are_invalid_never_zero(lan: Lan) -> None:
    first = await lan.rm.poll(T0)
    hostile = P1_HOSTILE if lan.model == "dsmr5_p1" else JSON_HOSTILE
    for i, value in enumerate(hostile):
        lan.sim.overrides[POWER_FIELD[lan.model]] = value
        snap = None
        for _ in range(3):  # P1: the telegram after the change
            snap = await lan.rm.poll(T0 + timedelta(seconds=i + 1))
        assert snap is not None
        assert snap.power_w.value != 0.0, f"{value!r} read as 0 W"
        if snap.power_w.validity is Validity.STALE:
            assert snap.power_w.value == first.power_w.value, value
        else:
            assert snap.power_w.validity is Validity.IMPLAUSIBLE, f"{value!r} -> {snap.power_w}"
    lan.sim.overrides.clear()
    await _until_power(lan, DEFAULT_POWER_W[lan.model])


async def test_the_fault_channel_refuses_modbus_only_faults(lan: Lan) -> None:
    assert handle_command(lan.sim, "reboot").startswith("error")
    for periodic in ("reboot:every=5", "revert:every=5", "other_master:every=5"):
        assert handle_command(lan.sim, periodic).startswith("error"), periodic
    assert handle_command(lan.sim, "scale_factor:W_SF=1").startswith("error")
    assert handle_command(lan.sim, "status") == "ok none"


# -- authentication ---------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["shelly_plug_s", "tasmota_plug"])
async def test_authentication(model: str) -> None:
    sim: LanFaults = SIMS[model](password="s3cret")
    port = await sim.start()  # type: ignore[attr-defined]
    entry = load_lan_entry(model)
    try:
        for password in (None, "wrong"):
            dev = LanDevice(entry, "127.0.0.1", port, 0.5, password=password)
            with pytest.raises(AuthFailed, match="401"):
                await dev.read()
            await dev.close()
        dev = LanDevice(entry, "127.0.0.1", port, 0.5, password="s3cret")
        assert (await dev.read()).values["power"] == DEFAULT_POWER_W[model]
        assert await dev.switch(False) is False
        await dev.close()
    finally:
        await sim.stop()  # type: ignore[attr-defined]


async def test_shelly_error_objects() -> None:
    sim = SIMS["shelly_plug_s"]()
    port = await sim.start()
    dev = LanDevice(load_lan_entry("shelly_pro_3em"), "127.0.0.1", port, 0.5)  # a plug is no meter
    try:
        with pytest.raises(DeviceRefused, match=r"No handler for EM.GetStatus \(code 404\)"):
            await dev.read()
        sim.faults = Faults(exception_code=6)
        with pytest.raises(DeviceRefused, match="code -114"):
            await dev.info()
    finally:
        await dev.close()
        await sim.stop()


async def test_p1_bad_crc_is_unavailable() -> None:
    sim = SIMS["dsmr5_p1"]()
    port = await sim.start()
    dev = LanDevice(load_lan_entry("dsmr5_p1"), "127.0.0.1", port, 0.5)
    try:
        sim.faults = Faults(exception_code=6)
        with pytest.raises(DeviceUnavailable, match="bad CRC"):
            await dev.read()
    finally:
        await sim.stop()
