"""Where the fleet layer's plans and grid signals go: an outbox that the service implements.

The planner decides *what* a house gets; the service owns the streams and the wire.  The
planner only knows this protocol, so nothing in the fleet layer imports the service
(``aggregator.service.stream_outbox.StreamOutbox`` is the implementation, handed in by
``aggregator.server`` when it builds both)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from vpp_common.messages import DispatchPlan, GridSignal


class PlanOutbox(Protocol):
    """The streams of this replica, as the planner sees them."""

    def has_stream(self, house_id: str) -> bool:
        """The house's stream is open on this replica."""
        ...

    async def prepare(self, plans: Mapping[str, DispatchPlan]) -> None:
        """A cycle's solved plans, before the planner sends them one by one with their own
        version and lease (the slots stay as they are): the service may encode them ahead."""
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
