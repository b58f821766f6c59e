"""Where the fleet layer's plans and grid signals go: an outbox that the service implements.

The planner decides *what* a house gets; the service owns the streams and the wire.  The
planner only knows this protocol, so nothing in the fleet layer imports the service
(``aggregator.service.stream_outbox.StreamOutbox`` is the implementation, handed in by
``aggregator.server`` when it builds both)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from aggregator.dispatch.plans import PackedPlans
from vpp_common.messages import DispatchPlan, GridSignal

# The service's encoder of a packed block's slots (one bytes per house, DispatchPlan.wire_slots).
# It runs in the solver process, off the service's event loop (plan_to_proto 0.36 -> 0.015 ms),
# so it must pickle: a module-level function.
SlotsEncoder = Callable[[PackedPlans], tuple[bytes, ...]]


class PlanOutbox(Protocol):
    """The streams of this replica, as the planner sees them."""

    def has_stream(self, house_id: str) -> bool:
        """The house's stream is open on this replica."""
        ...

    def send_plan(self, house_id: str, plan: DispatchPlan) -> bool:
        """Queue ``plan`` on the house's stream here (the newest version wins); False if the
        house's stream is not on this replica."""
        ...

    def send_signal(self, house_id: str, signal: GridSignal) -> bool:
        """Queue ``signal`` on the house's stream here; False if its stream is not here."""
        ...

    async def wait_for_room(self) -> bool:
        """Wait while too many streams still have a plan to write (a cycle goes out at the
        pace the streams take it); False if it gave up waiting."""
        ...
