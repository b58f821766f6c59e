"""Every SunSpec model the driver supports is found, walked and decoded from one image.

Issue 3 names models 1, 101-103, 111-113, 120, 121, 123, 124, 160, 201-204,
211-214, 701, 702, 704, 713 and 802.  One image holds them all (definitions
from pysunspec2, laid out by the simulator's image builder), served over
Modbus TCP: the driver walks the chain by each model's own length, applies
scale factors (integer models) or reads floats (111-113, 211-214), and
reports points left "not implemented" as None, never as a number.
"""

from __future__ import annotations

import pytest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge_agent.drivers.sunspec import SunSpecDevice
from simulator.sunspec_image import ModelSpec, SunSpecImage
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(30)

MODELS = (1, 101, 102, 103, 111, 112, 113, 120, 121, 123, 124, 160, 201, 202, 203, 204,
          211, 212, 213, 214, 701, 702, 704, 713, 802)
WATTS = {101: 1234.0, 102: -56.0, 103: 4321.0, 111: 1234.5, 112: -56.25, 113: 4321.75,
         201: 800.0, 202: -300.0, 203: 2500.0, 204: -1200.0, 211: 800.5, 212: -300.25, 213: 2500.5, 214: -1200.75,
         701: 3000.0, 802: -1500.0}


def image() -> SunSpecImage:
    img = SunSpecImage([ModelSpec(160, repeat={"module": 2}) if m == 160 else m for m in MODELS])
    img.set(1, "Mn", "Test")
    for model_id, w in WATTS.items():
        if model_id < 110 or 200 < model_id < 210 or model_id in (701, 802):
            img.set_raw(model_id, "W_SF", 0)
        img.set(model_id, "W", w)
    img.set_raw(120, "WRtg_SF", 0)
    img.set(120, "WRtg", 10_000.0)
    img.set_raw(124, "ChaState_SF", -1)
    img.set(124, "ChaState", 55.5)
    img.set_raw(160, "DCW_SF", 0)
    img.set(160, "DCW", 700.0, 1)
    img.set_raw(713, "Pct_SF", 0)
    img.set(713, "SoC", 42.0)
    return img


async def test_every_supported_model_is_discovered_and_decoded() -> None:
    img = image()
    port = free_port()
    server = ModbusTcpServer(SimDevice(id=1, simdata=[SimData(img.base_address, values=img.registers,
                                                              datatype=DataType.REGISTERS)]),
                             address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    dev = SunSpecDevice("127.0.0.1", port, 1, timeout_s=1.0)
    try:
        found = await dev.discover()
        assert [m.model_id for m in found] == list(MODELS)
        assert [(m.address, m.length) for m in found] == [(m.address, m.length) for m in img.models]
        for model_id in MODELS:
            values = await dev.read_model(model_id)
            assert values.decode_errors == (), model_id
            if model_id in WATTS:
                assert values["W"] == pytest.approx(WATTS[model_id], abs=1e-6), model_id
        assert (await dev.read_model(1))["Mn"] == "Test"
        assert (await dev.read_model(120))["WRtg"] == 10_000.0
        assert (await dev.read_model(124))["ChaState"] == pytest.approx(55.5)
        mppt = await dev.read_model(160)
        assert [m.get("DCW") for m in mppt.groups["module"]] == [None, 700.0]  # module 0 not implemented
        assert (await dev.read_model(713))["SoC"] == 42.0
        # never set: not implemented markers read as missing, not as 0 or -32768
        assert (await dev.read_model(103))["VAr"] is None
        assert (await dev.read_model(213))["VAR"] is None
        assert (await dev.read_model(121))["WMax"] is None
        assert (await dev.read_model(802))["SoC"] is None
    finally:
        await dev.close()
        await server.shutdown()  # type: ignore[no-untyped-call]
