"""The house's PV with a micro-inverter on the LAN (edge_agent/lan_pv.py) against the OpenDTU and Envoy
simulators: the PV power and household load it reports, the resource it tells the aggregator (PEBC
or NOT_CONTROLLABLE), and the house's PV limit routed to the micro-inverter, held while it applies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from edge_agent.drivers.errors import ModelNotFound
from edge_agent.drivers.lan_catalogue import load_lan_entry
from edge_agent.drivers.lan_device import LanDevice
from edge_agent.lan_pv import HouseWithLanPv
from edge_agent.resources.capabilities import PV_CURTAILMENT, Capabilities
from edge_agent.resources.house import HouseSnapshot
from edge_agent.resources.lan_device import LanDeviceRM
from tests.lan_fixtures import DEVICE_KW, SIMS
from vpp_common.clock import ManualClock
from vpp_common.messages import (
    ControlType,
    Flexibility,
    Measurement,
    ResourceInfo,
    ResourceKind,
    SiteTelemetry,
    Validity,
)

pytestmark = pytest.mark.timeout(30)
T0 = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)


def _m(value: float) -> Measurement:
    return Measurement(value, Validity.VALID, T0)


class Inverter:
    """A hybrid inverter's Resource Manager with its own (not curtailable) PV producing 1000 W."""

    battery_id = "battery"
    nameplate = None
    pv_rating_w = 3000.0
    capabilities = Capabilities(cannot={PV_CURTAILMENT: "no model 704 or 123"})
    resources = (ResourceInfo("battery", ResourceKind.BATTERY, ControlType.FRBC, 5000.0, 10000.0),
                 ResourceInfo("pv", ResourceKind.PV, ControlType.NOT_CONTROLLABLE, 3000.0))

    def __init__(self) -> None:
        self.pv_limits: list[float | None] = []

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def poll(self) -> HouseSnapshot:
        # grid -1500 = load 0.2 kW + battery 0 - 1 kW own PV - 0.7 kW the micro-inverter's, which the
        # inverter's balance cannot see: its load reads 0.7 kW too little (-500)
        t = SiteTelemetry(T0, grid_power_w=_m(-1500.0), pv_power_w=_m(-1000.0), battery_power_w=_m(0.0),
                          battery_soc_pct=_m(50.0), load_power_w=_m(-500.0))
        return HouseSnapshot(t, Flexibility(T0), 5000.0, 5000.0)

    async def set_pv_limit(self, limit_w: float | None) -> None:
        self.pv_limits.append(limit_w)
        raise ModelNotFound("no model 704 or 123")

    def controllable(self, resource_id: str) -> str | None:
        return None

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


async def _house(model: str, **sim_kw: Any) -> tuple[Any, HouseWithLanPv, Inverter]:
    sim = SIMS[model](available_w=700.0, **sim_kw)
    port = await sim.start()
    dev = LanDevice(load_lan_entry(model), "127.0.0.1", port, 0.5, **DEVICE_KW.get(model, {}))
    inner = Inverter()
    house = HouseWithLanPv(inner, LanDeviceRM("balcony", "pv", dev, 30.0), ManualClock(T0))  # type: ignore[arg-type]
    await house.connect()
    return sim, house, inner


async def test_the_micro_inverter_is_the_houses_curtailable_pv() -> None:
    sim, house, inner = await _house("opendtu_hoymiles", apply_delay_s=0.0)
    clock: ManualClock = house.clock  # type: ignore[assignment]
    try:
        snap = await house.poll()
        t = snap.telemetry
        assert t.pv_power_w.value == -1700.0 and t.pv_power_w.validity is Validity.VALID
        assert t.load_power_w.value == 200.0  # corrected by the micro-inverter's production
        assert ("balcony", -700.0) in [(r.resource_id, r.power_w.value) for r in t.resources]
        info = {r.resource_id: r for r in house.resources}["balcony"]
        assert info.control_type is ControlType.PEBC and info.rated_power_w == 800.0
        assert house.capabilities.pv_reason is None and house.controllable("balcony") is None
        assert [c.resource_id for c in snap.flexibility.curtailments] == ["balcony"]
        await house.set_pv_limit(1300.0)  # all PV to 1.3 kW: the inverter's own gives 1 kW, the micro 300 W
        assert sim.pv.limit_calls == 1 and inner.pv_limits == []
        await house.set_pv_limit(1100.0)  # still applying (until a poll reads it back): held
        assert sim.pv.limit_calls == 1
        clock.advance(1.0)
        await house.poll()  # within the entry's min_poll_interval_s (2 s): the micro-inverter is not read
        assert sim.pv.limit_calls == 1
        clock.advance(1.0)
        await house.poll()  # reads 300 W in force: the held 1.1 kW goes out, 100 W for the micro
        assert sim.pv.limit_calls == 2
        sim.pv.advance()
        assert sim.pv.limit_w == 100.0
    finally:
        await house.close()
        await sim.stop()


async def test_a_micro_inverter_without_a_limit_is_reported_not_curtailable() -> None:
    sim, house, inner = await _house("enphase_envoy")
    try:
        snap = await house.poll()
        assert snap.telemetry.pv_power_w.value == -1700.0
        info = {r.resource_id: r for r in house.resources}["balcony"]
        assert info.control_type is ControlType.NOT_CONTROLLABLE
        assert "takes no power limit" in (house.controllable("balcony") or "")
        assert house.capabilities.pv_reason is not None and snap.flexibility.curtailments == ()
        with pytest.raises(ModelNotFound):  # the inverter's own PV: what is left after the micro's 0.7 kW
            await house.set_pv_limit(1300.0)
        assert inner.pv_limits == [600.0]
    finally:
        await house.close()
        await sim.stop()


async def test_a_micro_inverter_that_does_not_answer_is_stale_never_zero() -> None:
    sim, house, _ = await _house("apsystems_ez1")
    try:
        await house.poll()
        await sim.stop()
        house.clock.advance(5.0)  # type: ignore[attr-defined]
        t = (await house.poll()).telemetry
        assert t.pv_power_w.validity is Validity.STALE and t.pv_power_w.value == -1700.0
    finally:
        await house.close()


async def test_the_agent_curtails_the_micro_inverter_for_its_export_cap() -> None:
    """``edge-agent run``'s assembly (edge_agent.cli.lan_agent) on a Sungrow simulator at noon, battery
    full, zero export, with an OpenDTU beside it: the Hello lists the micro-inverter as PEBC, the
    house's PV includes it, and the export cap's PV limit goes to it (the Sungrow's PV takes none)."""
    from edge_agent.cli import lan_agent
    from edge_agent.config import (
        AgentConfig,
        BatteryConfig,
        ControlConfig,
        DeviceConfig,
        SiteConfig,
    )
    from edge_agent.lan_config import LanDeviceConfig
    from simulator.catalogue_device import CatalogueSimulator
    from simulator.physics import PhysicsConfig
    from tests.conftest import free_port, until

    clock = ManualClock(T0)
    dtu = SIMS["opendtu_hoymiles"](available_w=700.0)
    dtu_port = await dtu.start()
    try:
        async with CatalogueSimulator("sungrow_sh", clock, PhysicsConfig(initial_soc_pct=100)) as sim:
            config = AgentConfig(
                house_id="house-micro", insecure=True, metrics_port=None, aggregator=f"127.0.0.1:{free_port()}",
                device=DeviceConfig(port=sim.port, catalogue="sungrow_sh", timeout_s=0.5, poll_interval_s=1.0),
                battery=BatteryConfig(revert_s=60), control=ControlConfig(tick_s=0.5, mode="self_consumption"),
                site=SiteConfig(max_export_w=0.0),
                lan_devices=[LanDeviceConfig(id="balcony", model="opendtu_hoymiles", host="127.0.0.1", port=dtu_port,
                                             role="pv", serial="114182180001", password="openDTU42", timeout_s=0.5)])
            agent = lan_agent(config, clock)
            assert {(r.resource_id, r.control_type) for r in agent._hello().resources} >= {
                ("balcony", ControlType.PEBC)}
            await agent.start()
            try:
                for _ in range(60):
                    if dtu.pv.limit_calls:
                        break
                    polls = agent.stats.polls
                    clock.advance(1.0)
                    await until(lambda p=polls: agent.stats.polls > p, "a device poll")  # type: ignore[misc]
                snap = agent.snapshot
                assert snap is not None and "balcony" in {r.resource_id for r in snap.telemetry.resources}
                assert dtu.pv.limit_calls >= 1, "no PV limit reached the micro-inverter"
                asked = dtu.pv.pending[0] if dtu.pv.pending else dtu.pv.limit_w
                assert 0.0 <= asked < 700.0
            finally:
                await agent.stop()
        assert dtu.pv.limit_w == 800.0 or (dtu.pv.pending and dtu.pv.pending[0] == 800.0)  # lifted on stop
    finally:
        await dtu.stop()


async def test_the_houses_limit_errors_are_the_agents_kinds() -> None:
    """A refused limit is retried by the agent (DeviceUnavailable); a wrong password is reported once
    as curtailment unavailable (ModelNotFound), as DeviceWrites treats them."""
    from edge_agent.drivers.errors import DeviceUnavailable
    from simulator.hybrid_device import Faults

    sim, house, _ = await _house("apsystems_ez1")
    try:
        await house.poll()
        sim.faults = Faults(exception_code=4)
        with pytest.raises(DeviceUnavailable, match="refused"):
            await house.set_pv_limit(300.0)
    finally:
        await house.close()
        await sim.stop()
    dtu = SIMS["opendtu_hoymiles"]()
    port = await dtu.start()
    dev = LanDevice(load_lan_entry("opendtu_hoymiles"), "127.0.0.1", port, 0.5, serial="114182180001",
                    password="wrong")
    house = HouseWithLanPv(Inverter(), LanDeviceRM("balcony", "pv", dev, 30.0), ManualClock(T0))  # type: ignore[arg-type]
    try:
        await house.connect()
        await house.poll()
        with pytest.raises(ModelNotFound, match="credentials"):
            await house.set_pv_limit(300.0)
    finally:
        await house.close()
        await dtu.stop()
