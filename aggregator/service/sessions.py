"""Open agent streams on this replica and their outboxes.

``write()`` on a gRPC stream gives no useful backpressure, so each stream has a
small outbox where the latest plan wins: a slow agent gets the newest plan,
not a backlog of old ones.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from vpp_common.messages import DispatchPlan


@dataclass(frozen=True, slots=True)
class PlanItem:
    plan: DispatchPlan


@dataclass(frozen=True, slots=True)
class ControlItem:
    """Any non-plan message, already encoded for the wire."""

    message: object


@dataclass(frozen=True, slots=True)
class CloseItem:
    reason: str


OutItem = PlanItem | ControlItem | CloseItem


@dataclass
class Outbox:
    _plan: DispatchPlan | None = None
    _others: deque[ControlItem | CloseItem] = field(default_factory=deque)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def put_plan(self, plan: DispatchPlan) -> None:
        if self._plan is None or plan.version > self._plan.version:
            self._plan = plan
        self._ready.set()

    def put(self, item: ControlItem | CloseItem) -> None:
        self._others.append(item)
        self._ready.set()

    async def get(self) -> OutItem:
        while True:
            if self._others and isinstance(self._others[0], CloseItem):
                return self._others.popleft()
            if self._others:
                return self._others.popleft()
            if self._plan is not None:
                plan, self._plan = self._plan, None
                return PlanItem(plan)
            self._ready.clear()
            await self._ready.wait()


@dataclass
class Session:
    house_id: str
    outbox: Outbox = field(default_factory=Outbox)
    sent_plan_at: dict[int, float] = field(default_factory=dict)  # version -> monotonic s when written


class SessionRegistry:
    """house id -> the one open session; a new stream for a house replaces the old."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    def open(self, house_id: str) -> Session:
        old = self._sessions.get(house_id)
        if old is not None:
            old.outbox.put(CloseItem("replaced by a newer stream of the same house"))
        session = Session(house_id)
        self._sessions[house_id] = session
        return session

    def close(self, session: Session) -> None:
        if self._sessions.get(session.house_id) is session:
            del self._sessions[session.house_id]

    def get(self, house_id: str) -> Session | None:
        return self._sessions.get(house_id)

    def __len__(self) -> int:
        return len(self._sessions)

    def all(self) -> list[Session]:
        return list(self._sessions.values())
