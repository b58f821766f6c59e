"""A house of LAN devices only and the aggregator (in process, loopback gRPC): the Hello, the flexibility
and the telemetry of a house without a battery are taken and stored as they are (the grid meter and
a curtailable PV; no storage; battery readings MISSING, not 0 W); the planner plans no battery here, so
no plan reaches the house, and the agent keeps its export cap on its own."""

from __future__ import annotations

import asyncio
import time

import pytest

from aggregator.config import AggregatorConfig
from aggregator.server import AggregatorServer
from aggregator.store import MemoryStore
from edge_agent.cli import lan_agent
from edge_agent.config import AgentConfig, ControlConfig, DeviceConfig, SiteConfig
from edge_agent.lan_config import LanDeviceConfig
from simulator.lan_house import LanHouseSim
from tests.conftest import until
from vpp_common.clock import SystemClock
from vpp_common.messages import ControlType, ResourceKind, Validity

pytestmark = pytest.mark.timeout(60)


def agent_config(aggregator: str, ports: dict[str, int], plugs: tuple[str, ...], **more: object) -> AgentConfig:
    """The LAN house's agent: the P1 meter, the OpenDTU (an export cap below its PV) and Shelly plugs."""
    return AgentConfig(
        house_id="lan-house", aggregator=aggregator, insecure=True, metrics_port=None, state_dir=None,
        reconnect_initial_s=0.05, reconnect_max_s=0.5, telemetry_interval_s=0.5,
        device=DeviceConfig(kind="lan", poll_interval_s=0.5), control=ControlConfig(tick_s=0.5),
        site=SiteConfig(max_export_w=300.0),
        lan_devices=[
            LanDeviceConfig(id="p1", model="dsmr5_p1", host="127.0.0.1", port=ports["meter"], role="grid_meter",
                            timeout_s=1.0),
            LanDeviceConfig(id="balcony", model="opendtu_hoymiles", host="127.0.0.1", port=ports["dtu"], role="pv",
                            serial="114182180001", password="openDTU42"),
            *(LanDeviceConfig(id=p, model="shelly_plug_s", host="127.0.0.1", port=ports[p], role="load")
              for p in plugs)],
        **more)  # type: ignore[arg-type]


async def test_the_aggregator_takes_a_house_without_a_battery() -> None:
    house = LanHouseSim(base_load_w=300.0, available_w=1600.0, apply_delay_s=0.5, p1_interval_s=0.2,
                        plugs={"freezer": 80.0})
    ports = await house.start()
    store = MemoryStore()
    agg = AggregatorServer(AggregatorConfig(admin_listen=None, listen="127.0.0.1:0", insecure=True, metrics_port=0,
                                            replica_id="lan", drain_grace_s=0.5), store=store)
    await agg.start()
    config = agent_config(agg.target, ports, ("freezer",))
    agent = lan_agent(config, SystemClock())
    await agent.start()
    try:
        await until(lambda: agent.uplink.connected, "the stream up", 15.0)

        async def stored() -> bool:
            t, f = await store.get_telemetry("lan-house"), await store.get_flexibility("lan-house")
            return t is not None and t.grid_power_w.usable and f is not None and bool(f.curtailments)

        deadline = time.monotonic() + 15.0
        while not await stored():
            assert time.monotonic() < deadline, "no telemetry and flexibility stored"
            await asyncio.sleep(0.1)
        record = await store.get_house("lan-house")
        assert record is not None
        kinds = {r.resource_id: (r.kind, r.control_type) for r in record.hello.resources}
        assert kinds == {"p1": (ResourceKind.GRID_METER, ControlType.NOT_CONTROLLABLE),
                         "balcony": (ResourceKind.PV, ControlType.PEBC)}
        flex = await store.get_flexibility("lan-house")
        assert flex is not None and flex.storages == () and flex.curtailments[0].resource_id == "balcony"
        tele = await store.get_telemetry("lan-house")
        assert tele is not None and tele.battery_power_w.validity is Validity.MISSING
        assert tele.battery_power_w.value is None and tele.battery_soc_pct.value is None
        assert {r.resource_id for r in tele.resources} == {"p1", "balcony", "freezer"}
        # the export cap holds on the house's own (no plan: the planner plans batteries)
        await until(lambda: house.grid_w() >= -350.0 and house.dtu.pv.pending is None, "export at the cap", 15.0)
        assert agent.plans.current is None and agent.stats.plans_rejected == 0
    finally:
        await agent.stop()
        await agg.stop(grace_s=0.5)
        await house.stop()
        await store.close()


async def test_the_acceptance_house_and_the_aggregators_view_of_its_loads() -> None:
    """Issue 22's house: a micro-inverter, a P1 meter and three plugs with a washing machine (a run
    due by 17:00), a freezer (may pause 30 min an hour) and a power station behind them.  The export
    cap holds through the micro-inverter's limit, and the aggregator's view of the house (admin
    GetHouse, as `aggregator houses show` prints it) lists each flexible load."""
    from datetime import time as daytime

    from edge_agent.appliance_config import PausableConfig, RunConfig, StationConfig
    from simulator.appliances import Freezer, PowerStation, WashingMachine
    from vpp.v1 import admin_service_pb2 as adm
    from vpp.v1 import admin_service_pb2_grpc as adm_grpc

    house = LanHouseSim(base_load_w=300.0, available_w=1800.0, apply_delay_s=0.5, p1_interval_s=0.2,
                        plugs={"washer": 0.0, "freezer": 0.0, "station": 0.0})
    washer = WashingMachine()
    house.plugs["washer"].appliance, house.plugs["freezer"].appliance = washer, Freezer()
    house.plugs["station"].appliance = PowerStation()
    washer.arm()
    ports = await house.start()
    agg = AggregatorServer(AggregatorConfig(admin_listen="127.0.0.1:0", listen="127.0.0.1:0", insecure=True,
                                            metrics_port=None, replica_id="lan", drain_grace_s=0.5))
    await agg.start()
    config = agent_config(agg.target, ports, ("washer", "freezer", "station"), appliances=[
        RunConfig(plug="washer", kind="run", energy_kwh=1.1, duration_min=120, ready_by=daytime(17)),
        PausableConfig(plug="freezer", kind="pausable", max_pause_min=30, period_min=60, power_w=90),
        StationConfig(plug="station", kind="battery", capacity_kwh=1.0, charge_power_w=300,
                      energy_kwh_per_day=0.7)])
    from edge_agent.appliances import attach as attach_appliances
    from edge_agent.cli import attach_lan_devices

    agent = lan_agent(config, SystemClock())
    attach_appliances(agent, attach_lan_devices(agent))
    await agent.start()
    admin = None
    try:
        await until(lambda: agent.uplink.connected, "the stream up", 15.0)
        import grpc

        admin = grpc.aio.insecure_channel(agg.admin_target or "")
        stub = adm_grpc.AdminServiceStub(admin)
        deadline = time.monotonic() + 30.0
        while True:
            resp = await stub.GetHouse(adm.GetHouseRequest(house_id="lan-house"))
            kinds = {f.resource_id: f.WhichOneof("description") for f in resp.flexible_loads}
            if kinds == {"washer": "ppbc", "freezer": "ombc", "station": "ppbc"}:
                break
            assert time.monotonic() < deadline, f"the aggregator lists {kinds}"
            await asyncio.sleep(0.2)
        await until(lambda: house.grid_w() >= -350.0 and house.dtu.pv.pending is None, "export at the cap", 15.0)
    finally:
        if admin is not None:
            await admin.close()
        await agent.stop()
        await agg.stop(grace_s=0.5)
        await house.stop()
