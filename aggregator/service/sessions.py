"""Open agent streams on this replica and their outboxes.

``write()`` on a gRPC stream gives no useful backpressure, so each stream has a
small outbox where the latest plan wins: a slow agent gets the newest plan,
not a backlog of old ones.

The registry also counts the streams with a plan not yet written (in the outbox or
being written): the planner waits while that backlog is full, so a cycle of
thousands of plans goes out at the pace the streams take them instead of queueing
all of them at once (measured at 5,000 streams: every plan then waited behind
the whole cycle's, 8-17 s).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from vpp.v1 import fleet_service_pb2 as fs
from vpp_common.messages import DispatchPlan, Flexibility, Hello


@dataclass(frozen=True, slots=True)
class PlanItem:
    plan: DispatchPlan


@dataclass(frozen=True, slots=True)
class ControlItem:
    """Any non-plan message, already encoded for the wire (its stream stamps the sequence)."""

    message: fs.ConnectResponse


@dataclass(frozen=True, slots=True)
class CloseItem:
    """End the stream: with a Drain giving ``reason`` if set, or with INVALID_ARGUMENT and
    ``refused`` as its details if that is set (the agent broke the stream's rules)."""

    reason: str
    refused: str = ""


OutItem = PlanItem | ControlItem | CloseItem

MAX_KNOWN_PLANS = 16  # plans a late PlanStatus may still name (one per cycle sent on a stream)


@dataclass
class Outbox:
    _plan: DispatchPlan | None = None
    _others: deque[ControlItem | CloseItem] = field(default_factory=deque)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    on_plan_change: Callable[[], None] | None = None  # a plan was put in or taken out

    @property
    def has_plan(self) -> bool:
        return self._plan is not None

    @property
    def idle(self) -> bool:
        """Nothing to write: :meth:`get` would wait."""
        return self._plan is None and not self._others

    def put_plan(self, plan: DispatchPlan) -> None:
        if self._plan is None or plan.version > self._plan.version:
            self._plan = plan
        self._ready.set()
        if self.on_plan_change is not None:
            self.on_plan_change()

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
                return PlanItem(plan)  # the caller says when it is written (Session.writing_plan)
            self._ready.clear()
            await self._ready.wait()


@dataclass
class Session:
    house_id: str
    outbox: Outbox = field(default_factory=Outbox)
    # what the house told this stream: written back when the store lost its data (store_recovery)
    hello: Hello | None = None
    flexibility: Flexibility | None = None
    sent_plan_at: dict[int, float] = field(default_factory=dict)  # version -> monotonic s when written
    last_sequence: int = 0  # of the agent's last message on this stream
    # plans whose PlanStatus this stream records: plan id -> version (the Hello's, those sent here)
    known_plans: dict[str, int] = field(default_factory=dict)
    on_backlog_change: Callable[[int], None] | None = None  # +1 / -1: this stream's plan became (not) due
    _writing_plan: bool = False
    _counted: bool = False  # counted in the registry's backlog
    _stalled: bool = False  # written off the backlog until its pending plan is written (``stall``)
    _closed: bool = False

    def __post_init__(self) -> None:
        self.outbox.on_plan_change = self._recount

    def plan_sent(self, plan: DispatchPlan, at_monotonic_s: float) -> None:
        self.sent_plan_at[plan.version] = at_monotonic_s
        self.known_plans[plan.plan_id] = plan.version
        while len(self.known_plans) > MAX_KNOWN_PLANS:  # the oldest first (insertion order)
            del self.known_plans[next(iter(self.known_plans))]

    def knows_plan(self, plan_id: str, version: int) -> bool:
        """``plan_id`` (at ``version``) was named in the Hello or sent on this stream."""
        return bool(plan_id) and self.known_plans.get(plan_id) == version

    def writing_plan(self, writing: bool) -> None:
        """The stream took a plan from the outbox (True) / finished writing it (False)."""
        self._writing_plan = writing
        self._recount()

    def stall(self) -> None:
        """The writer waited for this stream's pending plan in vain: stop counting it in the
        backlog until that plan (or a newer one) is written or the stream closes."""
        self._stalled = True
        self._recount()

    @property
    def counted(self) -> bool:
        return self._counted

    def _recount(self) -> None:
        pending = not self._closed and (self.outbox.has_plan or self._writing_plan)
        if not pending:
            self._stalled = False
        due = pending and not self._stalled
        if due != self._counted:
            self._counted = due
            if self.on_backlog_change is not None:
                self.on_backlog_change(1 if due else -1)

    def closed(self) -> None:
        self._closed = True
        self._recount()


class SessionRegistry:
    """house id -> the one open session; a new stream for a house replaces the old.

    ``max_plan_backlog``: streams that may have a plan waiting to be written before
    :meth:`wait_for_room` makes the writer wait."""

    def __init__(self, max_plan_backlog: int = 64) -> None:
        self._sessions: dict[str, Session] = {}
        self.max_plan_backlog = max_plan_backlog
        self.plan_backlog = 0
        self._backlog_changed_at = -math.inf  # time.monotonic()
        self._room = asyncio.Event()
        self._room.set()

    def _backlog_change(self, delta: int) -> None:
        self.plan_backlog += delta
        self._backlog_changed_at = time.monotonic()
        if self.plan_backlog < self.max_plan_backlog:
            self._room.set()
        else:
            self._room.clear()

    async def wait_for_room(self, timeout_s: float = 2.0) -> bool:
        """Wait until fewer than ``max_plan_backlog`` streams have a plan to write; True if
        so, False after ``timeout_s``.  Streams that stopped taking plans must not stop a
        cycle: after a wait in vain, the streams still counted are written off the backlog
        until they write their plan (their outboxes keep only the newest).  Before, every
        later plan of the cycle waited ``timeout_s`` again: at 10,000 streams with clients
        too busy to read, a cycle's writing stalled for many minutes (docs/performance.md)."""
        if self._room.is_set():
            return True
        try:
            async with asyncio.timeout(timeout_s):
                await self._room.wait()
            return True
        except TimeoutError:
            for session in list(self._sessions.values()):
                if session.counted:
                    session.stall()
            return False

    def writing_plans(self, quiet_s: float = 2.0) -> bool:
        """Plans are being written to the streams: one waits, or one was due or written in the
        last ``quiet_s`` (between two plans of a cycle the backlog may be empty for a moment)."""
        return self.plan_backlog > 0 or time.monotonic() - self._backlog_changed_at < quiet_s

    def open(self, house_id: str) -> Session:
        old = self._sessions.get(house_id)
        if old is not None:
            old.outbox.put(CloseItem("replaced by a newer stream of the same house"))
        session = Session(house_id, on_backlog_change=self._backlog_change)
        self._sessions[house_id] = session
        return session

    def close(self, session: Session) -> None:
        session.closed()
        if self._sessions.get(session.house_id) is session:
            del self._sessions[session.house_id]

    def get(self, house_id: str) -> Session | None:
        return self._sessions.get(house_id)

    def __len__(self) -> int:
        return len(self._sessions)

    def all(self) -> list[Session]:
        return list(self._sessions.values())
