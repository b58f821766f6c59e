"""The planner's outbox (``aggregator.fleet.outbox.PlanOutbox``) over this replica's agent
streams: plans go into the house's session outbox (a cycle's encoded ahead by the plan
encoder), grid signals are encoded here."""

from __future__ import annotations

from collections.abc import Mapping

from aggregator.service import convert
from aggregator.service.plan_encoder import PlanEncoder
from aggregator.service.sessions import ControlItem, SessionRegistry
from vpp.v1 import fleet_service_pb2 as fs
from vpp_common.messages import DispatchPlan, GridSignal


class SignalEncoder:
    """A GridSignal as a ConnectResponse, built once per signal object (the planner shares one
    object per slot between every house without limits of its own: a reconnect storm must not
    encode it thousands of times); each call returns a copy, as each stream stamps its own
    sequence number."""

    def __init__(self) -> None:
        self._last: tuple[GridSignal, fs.ConnectResponse] | None = None

    def __call__(self, signal: GridSignal) -> fs.ConnectResponse:
        if self._last is None or self._last[0] is not signal:
            self._last = (signal, fs.ConnectResponse(grid_signal=convert.grid_signal_to_proto(signal)))
        msg = fs.ConnectResponse()
        msg.CopyFrom(self._last[1])
        return msg


class StreamOutbox:
    """``PlanOutbox`` for the planner: the house's session on this replica, if any."""

    def __init__(self, sessions: SessionRegistry, encode_signal: SignalEncoder, plan_encoder: PlanEncoder) -> None:
        self._sessions = sessions
        self._encode_signal = encode_signal
        self._plan_encoder = plan_encoder

    async def prepare(self, plans: Mapping[str, DispatchPlan]) -> None:
        await self._plan_encoder.prepare(plans)

    def has_stream(self, house_id: str) -> bool:
        return self._sessions.get(house_id) is not None

    def send_plan(self, house_id: str, plan: DispatchPlan) -> bool:
        session = self._sessions.get(house_id)
        if session is None:
            return False
        session.outbox.put_plan(plan)
        return True

    def send_signal(self, house_id: str, signal: GridSignal) -> bool:
        session = self._sessions.get(house_id)
        if session is None:
            return False
        session.outbox.put(ControlItem(self._encode_signal(signal)))
        return True

    async def wait_for_room(self) -> bool:
        return await self._sessions.wait_for_room()
