"""Micro-inverters (OpenDTU, APsystems EZ1, Enphase IQ Gateway) against their simulators: the PV limit
with its read-back and apply delay, authentication, the devices' refusals, hostile limit values, and
the house's PV (edge_agent/lan_pv.py) that routes the export cap's limit to the micro-inverter."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edge_agent.drivers.errors import AuthFailed, DeviceRefused
from edge_agent.drivers.lan_catalogue import load_lan_entry
from edge_agent.drivers.lan_device import LanDevice
from edge_agent.resources.lan_device import LIMIT_RESENDS, LanDeviceRM
from tests.lan_fixtures import DEVICE_KW, SIMS
from vpp_common.messages import Validity

pytestmark = pytest.mark.timeout(30)
T0 = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
LIMITABLE = ["opendtu_hoymiles", "apsystems_ez1"]


async def _rm(model: str, **sim_kw: Any) -> tuple[Any, LanDeviceRM]:
    sim = SIMS[model](**sim_kw)
    port = await sim.start()
    dev = LanDevice(load_lan_entry(model), "127.0.0.1", port, 0.5, **DEVICE_KW.get(model, {}))
    return sim, LanDeviceRM(f"pv-{model}", "pv", dev, 30.0)


async def _until_applied(rm: LanDeviceRM, start: datetime) -> Any:
    """Polls on the simulated clock (0.05 s a step, within the entry's apply_s) until the limit holds;
    the simulator applies it after its real apply_delay_s (a bounded wait, as tests.conftest.until)."""
    for i in range(400):
        snap = await rm.poll(start + timedelta(seconds=i * 0.05))
        if snap.limit == "applied":
            return snap
        await asyncio.sleep(0.01)
    raise AssertionError("the limit never applied")


@pytest.mark.parametrize("model", LIMITABLE)
async def test_limit_is_pending_then_applied_and_read_back(model: str) -> None:
    sim, rm = await _rm(model, apply_delay_s=1.0)
    try:
        assert rm.limitable
        first = await rm.poll(T0)
        assert first.power_w.value == -600.0 and first.limit == "none"
        sent = await rm.set_pv_limit(300.4, T0)
        assert sent == 300.0  # whole W
        pending = await rm.poll(T0)
        assert pending.limit == "pending" and pending.power_w.value == -600.0  # not yet in force
        await _until_applied(rm, T0)
        applied = await rm.poll(T0 + timedelta(seconds=11))  # power and limit are separate requests: one more
        assert applied.limit == "applied" and applied.pv_limit_w.validity is Validity.VALID
        assert applied.pv_limit_w.value == pytest.approx(300.0, abs=1.0)
        assert applied.power_w.value == pytest.approx(-300.0)
        await rm.set_pv_limit(None, T0)  # lifted: the rating
        await _until_applied(rm, T0)
        assert (await rm.poll(T0 + timedelta(seconds=11))).power_w.value == -600.0
    finally:
        await rm.close()
        await sim.stop()


async def test_a_limit_outside_what_the_device_takes_is_clamped() -> None:
    sim, rm = await _rm("apsystems_ez1")
    try:
        assert await rm.set_pv_limit(0.0, T0) == 30.0  # the EZ1 takes 30..800 W
        assert await rm.set_pv_limit(5000.0, T0) == 800.0
        for bad in (math.nan, math.inf, -math.inf):
            with pytest.raises(ValueError, match="not finite"):
                await rm.device.set_limit(bad)
    finally:
        await rm.close()
        await sim.stop()


async def test_a_limit_not_taken_in_time_is_sent_again_then_failed() -> None:
    sim, rm = await _rm("apsystems_ez1")
    try:
        await rm.poll(T0)
        await rm.set_pv_limit(200.0, T0)
        sim.max_power = 800  # the device forgets it (reads back 800)
        sim.pv.pending = None
        apply_s = rm.device.entry.limit.apply_s  # type: ignore[union-attr]
        late = T0 + timedelta(seconds=apply_s + 1)
        snap = await rm.poll(late)
        assert snap.limit == "pending" and sim.pv.limit_calls == 2  # sent again
        for i in range(LIMIT_RESENDS):
            sim.max_power = 800
            snap = await rm.poll(late + timedelta(seconds=(i + 1) * (apply_s + 1)))
        assert snap.limit == "failed" and sim.pv.limit_calls == 1 + LIMIT_RESENDS
    finally:
        await rm.close()
        await sim.stop()


async def test_opendtu_reports_a_failed_limit() -> None:
    sim, rm = await _rm("opendtu_hoymiles")
    try:
        await rm.set_pv_limit(300.0, T0)
        sim.pv.pending = None
        sim.last_status = "Failure"
        snap = await rm.poll(T0)
        assert snap.limit == "pending" and sim.pv.limit_calls == 2  # failed at once: sent again
    finally:
        await rm.close()
        await sim.stop()


async def test_opendtu_limit_needs_the_password_and_says_what_it_refuses() -> None:
    sim = SIMS["opendtu_hoymiles"]()
    port = await sim.start()
    entry = load_lan_entry("opendtu_hoymiles")
    try:
        for password in (None, "wrong"):
            dev = LanDevice(entry, "127.0.0.1", port, 0.5, serial="114182180001", password=password)
            assert (await dev.read()).values["power"] == -600.0  # reads need no auth
            with pytest.raises(AuthFailed, match="401"):
                await dev.set_limit(100.0)
            await dev.close()
        other = LanDevice(entry, "127.0.0.1", port, 0.5, serial="114182189999", password="openDTU42")
        with pytest.raises(DeviceRefused, match="Invalid inverter specified"):
            await other.set_limit(100.0)
        assert "limit_pct" in (await other.read()).invalid  # no such serial in /api/limit/status
        await other.close()
        assert sim.limit_config(None)["message"] == "No values found!"
        assert sim.limit_config("{")["message"] == "Failed to parse data!"
        assert sim.limit_config('{"serial": "1"}')["message"] == "Values are missing!"
        assert sim.limit_config('{"serial":"114182180001","limit_type":0,"limit_value":3000}')["type"] == "warning"
        assert sim.limit_config('{"serial":"114182180001","limit_type":7,"limit_value":30}')["message"] == \
            "Invalid type specified!"
    finally:
        await sim.stop()


@pytest.mark.parametrize("token", [None, "wrong"])
async def test_envoy_needs_its_token(token: str | None) -> None:
    sim = SIMS["enphase_envoy"]()
    port = await sim.start()
    dev = LanDevice(load_lan_entry("enphase_envoy"), "127.0.0.1", port, 0.5, token=token)
    try:
        with pytest.raises(AuthFailed, match="401"):
            await dev.read()
    finally:
        await dev.close()
        await sim.stop()


async def test_envoy_takes_no_limit() -> None:
    sim, rm = await _rm("enphase_envoy")
    try:
        assert not rm.limitable
        with pytest.raises(ValueError, match="takes no power limit"):
            await rm.set_pv_limit(100.0, T0)
    finally:
        await rm.close()
        await sim.stop()


@pytest.mark.parametrize(("model", "field", "value"), [
    ("apsystems_ez1", "maxPower", "NaN"), ("apsystems_ez1", "maxPower", "1e999"), ("apsystems_ez1", "maxPower", ""),
    ("apsystems_ez1", "maxPower", None), ("apsystems_ez1", "maxPower", "-5"),
    ("opendtu_hoymiles", "limit_relative", "50"), ("opendtu_hoymiles", "limit_relative", math.nan),
    ("opendtu_hoymiles", "max_power", 1e300), ("opendtu_hoymiles", "limit_set_status", "Weird"),
    ("opendtu_hoymiles", "limit_set_status", 1)])
async def test_hostile_limit_read_back_is_never_taken_as_applied(model: str, field: str, value: Any) -> None:
    sim, rm = await _rm(model)
    try:
        await rm.set_pv_limit(300.0, T0)
        sim.pv.advance()
        sim.overrides[field] = value
        snap = await rm.poll(T0 + timedelta(seconds=1))
        assert snap.limit != "applied", f"{field}={value!r}"
        assert snap.pv_limit_w.validity is not Validity.VALID or snap.pv_limit_w.value != 0.0
    finally:
        await rm.close()
        await sim.stop()


@pytest.mark.parametrize("model", LIMITABLE)
async def test_a_limit_write_that_times_out_or_is_refused_is_a_driver_error(model: str) -> None:
    from edge_agent.drivers.errors import DeviceUnavailable
    from simulator.hybrid_device import Faults

    sim, rm = await _rm(model)
    try:
        sim.faults = Faults(timeout=True)
        with pytest.raises(DeviceUnavailable):
            await rm.set_pv_limit(300.0, T0)
        sim.faults = Faults(exception_code=4)
        with pytest.raises((DeviceRefused, DeviceUnavailable)):  # OpenDTU: HTTP 500 (no JSON); EZ1: FAILED
            await rm.set_pv_limit(300.0, T0)
        sim.faults = Faults()
        assert await rm.set_pv_limit(300.0, T0) == 300.0
    finally:
        await rm.close()
        await sim.stop()
