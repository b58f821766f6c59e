"""Each fault kind against every catalogue simulator, through CatalogueHybridRM: stale/implausible, never 0, recovery."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edge_agent.drivers.catalogue import catalogue_ids, load_entry
from edge_agent.drivers.catalogue_device import CatalogueDevice
from edge_agent.resources.catalogue import CatalogueHybridRM
from edge_agent.resources.house import HouseSettings
from edge_agent.resources.s2 import battery_frbc_system_description
from simulator.catalogue_device import CatalogueSimulator
from simulator.hybrid_device import Faults
from vpp_common.clock import ManualClock
from vpp_common.messages import Validity

pytestmark = pytest.mark.timeout(30)
NOON = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)

FAULTS = {
    "timeout": Faults(timeout=True),
    "exception": Faults(exception_code=6),  # device busy
    "slow": Faults(slow_s=0.5),  # slower than the driver's 0.2 s timeout
    "implausible": Faults(implausible=True),
    "disconnect": Faults(disconnect=True),  # connection dropped, reconnects refused
}


@pytest.mark.parametrize("model", catalogue_ids())
@pytest.mark.parametrize("kind", list(FAULTS))
async def test_fault_kind_stale_then_recovers(model: str, kind: str) -> None:
    clock = ManualClock(NOON)
    async with CatalogueSimulator(model, clock) as sim:
        rm = CatalogueHybridRM(CatalogueDevice(load_entry(model), "127.0.0.1", sim.port, timeout_s=0.2), clock,
                               HouseSettings(poll_interval_s=1.0, reconnect_max_s=2.0))
        await rm.connect()
        try:
            battery_frbc_system_description(rm.battery_id, rm.battery_nameplate(), NOON)  # valid S2
            ok = await rm.poll()
            assert ok.telemetry.battery_soc_pct.validity is Validity.VALID
            sim.faults = FAULTS[kind]
            clock.advance(5)
            bad = await rm.poll()
            expected = Validity.IMPLAUSIBLE if kind == "implausible" else Validity.STALE
            assert bad.telemetry.battery_soc_pct.validity is expected
            assert bad.telemetry.grid_power_w.validity is not Validity.VALID or kind == "implausible"
            if kind != "implausible":
                assert bad.telemetry.battery_soc_pct.value == ok.telemetry.battery_soc_pct.value  # last value, marked stale: not 0
                clock.advance(60)
                gone = await rm.poll()
                assert gone.telemetry.battery_soc_pct.validity is Validity.MISSING
                assert gone.flexibility.storages == ()  # no flexibility offered on missing data
            sim.faults = Faults()
            await sim.wait_listening()  # after a disconnect the device listens again on its port
            clock.advance(2)  # past the retry delay (at most 2 s here)
            back = await rm.poll()
            assert back.telemetry.battery_soc_pct.validity is Validity.VALID
            await rm.set_battery_power(1_000.0)
            assert sim.snapshot().battery_power_w == pytest.approx(1_000.0, abs=60)
            await rm.release()
        finally:
            await rm.close()
