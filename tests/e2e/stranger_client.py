"""A house written by a stranger from proto/vpp/v1 alone: generated code and grpcio, nothing
of this project.  Run by tests/e2e/test_stranger_client.py in an environment of its own:

    python stranger_client.py TARGET HOUSE_ID      (the generated vpp/v1 on PYTHONPATH)

It holds the whole conversation the contract describes, in insecure mode (the house named by
the x-vpp-house-id header): Hello -> Welcome -> GridSignal -> FlexibilityUpdate with an FRBC
battery -> DispatchPlan -> PlanStatus ACCEPTED -> Telemetry -> TelemetryAcks, and prints
what it received as JSON (one line) for the test to check.
"""

from __future__ import annotations

import json
import queue
import sys
from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from vpp.v1 import fleet_service_pb2 as fs
from vpp.v1 import fleet_service_pb2_grpc as fs_grpc
from vpp.v1 import flexibility_pb2 as fx
from vpp.v1 import grid_pb2 as gr
from vpp.v1 import plan_pb2 as pl
from vpp.v1 import telemetry_pb2 as tm

TIMEOUT_S = 30.0


def now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def measured(value: float) -> tm.Measurement:
    return tm.Measurement(value=value, validity=tm.VALIDITY_VALID, measured_at=now())


class House:
    def __init__(self, channel: grpc.Channel, house_id: str) -> None:
        self._out: queue.Queue[fs.ConnectRequest | None] = queue.Queue()
        self._sequence = 0
        self.received: list[tuple[int, str]] = []
        self._responses: Iterator[fs.ConnectResponse] = fs_grpc.FleetServiceStub(channel).Connect(
            iter(self._out.get, None), metadata=(("x-vpp-house-id", house_id),), timeout=TIMEOUT_S)

    def send(self, **payload: Any) -> int:
        self._sequence += 1  # 1 on the Hello, then + 1 per message
        self._out.put(fs.ConnectRequest(sequence=self._sequence, **payload))
        return self._sequence

    def receive(self) -> fs.ConnectResponse:
        resp = next(self._responses)
        self.received.append((resp.sequence, resp.WhichOneof("payload") or ""))
        return resp

    def until(self, kind: str, allowed: set[str]) -> fs.ConnectResponse:
        """The next message of ``kind``; any other on the way must be in ``allowed``."""
        while True:
            resp = self.receive()
            got = resp.WhichOneof("payload")
            if got == kind:
                return resp
            if got not in allowed:
                raise AssertionError(f"{got} before {kind}")
            if got == "dispatch_plan":
                self.answer(resp.dispatch_plan)

    def answer(self, plan: pl.DispatchPlan) -> int:
        """ACCEPTED: this client follows every plan it is sent (a real one checks it first)."""
        return self.send(plan_status=fs.PlanStatus(plan_id=plan.plan_id, version=plan.version,
                                                   state=fs.PLAN_STATE_ACCEPTED, at=now()))

    def close(self) -> None:
        self._out.put(None)  # half-close: the aggregator then ends the stream
        for _ in self._responses:
            pass


def battery_update() -> fx.FlexibilityUpdate:
    return fx.FlexibilityUpdate(valid_from=now(), resources=[fx.ResourceFlexibility(
        resource_id="battery", frbc=fx.FrbcStorageDescription(
            soc_pct=50, soc_min_pct=5, soc_max_pct=100, reserve_soc_pct=10, capacity_wh=10_000,
            charge_efficiency=0.95, discharge_efficiency=0.95, operation_modes=[
                fx.FrbcOperationMode(id="charge", power_min_w=0, power_max_w=5_000),
                fx.FrbcOperationMode(id="idle", power_min_w=0, power_max_w=0),
                fx.FrbcOperationMode(id="discharge", power_min_w=-5_000, power_max_w=0)]))])


def converse(target: str, house_id: str) -> dict[str, object]:
    with grpc.insecure_channel(target) as channel:
        house = House(channel, house_id)
        house.send(hello=fs.Hello(
            agent_version="stranger-1", limits=gr.SiteLimits(max_import_w=11_000, max_export_w=4_600),
            resources=[fs.Resource(resource_id="battery", kind=fs.RESOURCE_KIND_BATTERY,
                                   control_type=fs.CONTROL_TYPE_FRBC, rated_power_w=5_000, capacity_wh=10_000)]))
        welcome = house.receive().welcome
        signal = house.receive().grid_signal  # a new house has no plan yet: nothing else comes first
        house.send(flexibility_update=battery_update())
        plan = house.until("dispatch_plan", {"grid_signal"}).dispatch_plan
        house.answer(plan)
        acks_due = {house.send(telemetry=tm.Telemetry(
            measured_at=now(), grid_power_w=measured(400.0 + i), pv_power_w=measured(-1_200.0),
            battery_power_w=measured(0.0), battery_soc_pct=measured(50.0), load_power_w=measured(1_600.0 + i)))
            for i in range(2)}
        acked: set[int] = set()
        while acked != acks_due:
            acked.add(house.until("telemetry_ack", {"grid_signal", "dispatch_plan"}).telemetry_ack.sequence)
        house.close()
        return {"received": house.received, "welcome_house_id": welcome.house_id,
                "prices": len(signal.prices), "currency": signal.currency, "plan_id": plan.plan_id,
                "plan_version": plan.version, "setpoints": [s.resource_id for s in plan.slots[0].setpoints],
                "acked": sorted(acked), "modules": sorted(m for m in sys.modules if m.split(".")[0] in
                                                          ("aggregator", "edge_agent", "vpp_common", "simulator"))}


if __name__ == "__main__":
    print(json.dumps(converse(sys.argv[1], sys.argv[2])))
