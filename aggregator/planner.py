"""The planning cycle: snapshot fleet state -> pure plan -> fenced write -> streams.

Only the dispatch leader plans (see ``leader``).  It plans every ``cycle_s``
clock seconds and, debounced, whenever a house asks for a re-plan (connect,
new flexibility).  A house may be connected to any replica, so:

* re-plan requests a follower receives go to the shared ``replan`` queue,
  which the leader consumes;
* a plan for a house held by another replica goes to that replica's
  ``dispatch:<replica>`` queue; every replica consumes its own and hands the
  house's *current* plan from the store to the stream (latest wins, so a
  late or repeated delivery can never move an agent backwards).
"""

from __future__ import annotations

import asyncio
import logging
import time
import multiprocessing
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np

from aggregator.config import FeederConfig, PlanningConfig
from aggregator.dispatch.fleet_input import FeederLimits, HouseInput, prepare_problem
from aggregator.dispatch.optimise import DispatchResult, optimise
from aggregator.dispatch.problem import DispatchOptions, FleetProblem
from aggregator.dispatch.tariff import TouTariff
from aggregator.dispatch.tou import TouPlanInput, make_plan
from aggregator.leader import LeaderElector
from aggregator.metrics import AggregatorMetrics
from aggregator.service.sessions import ControlItem, Session, SessionRegistry
from aggregator.store import PlanVersionConflict, StaleFencingToken, StateStore, StoreError
from vpp_common.clock import Clock, wait_event
from vpp_common.messages import DispatchPlan, GridSignal, ResourceKind, SiteLimits, StorageFlexibility
from vpp_common.timeslots import align_down

log = logging.getLogger(__name__)


def optimise_job(problem: FleetProblem, previous: dict[str, DispatchPlan], now: datetime) -> DispatchResult:
    """Runs in a solver process (a module-level function, so it pickles)."""
    return optimise(problem, DispatchOptions(), previous, now=now)

REPLAN_QUEUE = "replan"


def dispatch_queue(replica_id: str) -> str:
    return f"dispatch:{replica_id}"


class Planner:
    def __init__(self, *, store: StateStore, sessions: SessionRegistry, clock: Clock, tariff: TouTariff,
                 config: PlanningConfig, metrics: AggregatorMetrics, replica_id: str,
                 elector: LeaderElector, feeders: Sequence[FeederConfig] = ()) -> None:
        self._store = store
        self._sessions = sessions
        self._clock = clock
        self._tariff = tariff
        self._cfg = config
        self._metrics = metrics
        self._replica_id = replica_id
        self._elector = elector
        self._pool: ProcessPoolExecutor | None = None
        self._feeders = {f.id: FeederLimits(f.import_limit_w or float("inf"),
                                            f.export_limit_w if f.export_limit_w is not None else float("inf"),
                                            f.transformer) for f in feeders}
        self._feeder_of = {h: f.id for f in feeders for h in f.houses}
        # the service's encoder, set by the server: the planner knows no protobuf
        self.encode_signal: Callable[[GridSignal], object] = lambda signal: signal
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self.plans_written = 0
        self._flex_up = self._flex_down = 0.0
        self._price_cache: tuple[datetime, np.ndarray] | None = None
        self._signal_cache: GridSignal | None = None
        self.last_published: dict[str, tuple[int, float]] = {}  # house -> (version, monotonic s)

    def request(self, house_id: str) -> None:
        """Ask for a re-plan of ``house_id`` soon (debounced)."""
        self._pending.add(house_id)
        self._wake.set()

    def _prices(self, start: datetime) -> np.ndarray:
        """Import prices of the horizon from ``start``: the same for every house in a cycle."""
        if self._price_cache is None or self._price_cache[0] != start:
            imp, _ = self._tariff.prices(start, self._cfg.slot_s, self._cfg.horizon_slots)
            imp.setflags(write=False)
            self._price_cache = (start, imp)
        return self._price_cache[1]

    def grid_signal(self) -> GridSignal:
        """Prices of the horizon from the current slot: one object per slot start, shared by
        every connecting house (a reconnect storm must not rebuild it thousands of times)."""
        start = align_down(self._clock.now(), self._cfg.slot_s)
        if self._signal_cache is None or self._signal_cache.prices[0].start != start:
            self._signal_cache = GridSignal(
                issued_at=self._clock.now(), currency=self._tariff.currency,
                prices=self._tariff.price_slots(start, self._cfg.slot_s, self._cfg.horizon_slots))
        return self._signal_cache

    async def house_signal(self, house_id: str) -> GridSignal:
        """The fleet's prices plus this house's temporary limits, if any."""
        base = self.grid_signal()
        override = await self._store.get_limit_override(house_id)
        if override is None:
            return base
        return GridSignal(issued_at=base.issued_at, currency=base.currency, prices=base.prices,
                          limits=override.limits, limits_valid_until=override.valid_until)

    async def deliver(self, house_id: str) -> None:
        """Send the house its current plan and signal, wherever its stream is."""
        session = self._sessions.get(house_id)
        if session is not None:
            await self._send_current(house_id, session)
            return
        route = await self._store.get_route(house_id)
        if route is not None and route != self._replica_id:
            await self._store.queue_push(dispatch_queue(route), house_id)

    async def _send_current(self, house_id: str, session: Session) -> None:
        plan = await self._store.get_plan(house_id)
        session.outbox.put(ControlItem(self.encode_signal(await self.house_signal(house_id))))
        if plan is not None:
            session.outbox.put_plan(plan)
            self.last_published[house_id] = (plan.version, time.monotonic())

    async def run(self) -> None:
        """The planning loop plus the two queue consumers."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._plan_loop(), name="plan-loop")
            group.create_task(self._consume_replans(), name="replan-consumer")
            group.create_task(self._consume_dispatch(), name="dispatch-consumer")

    async def _plan_loop(self) -> None:
        next_cycle = time.monotonic()
        while True:
            timeout = max(0.0, next_cycle - time.monotonic())
            if await wait_event(self._wake, timeout):
                await asyncio.sleep(self._cfg.debounce_s)  # collect a burst of requests into one cycle
            self._wake.clear()
            if time.monotonic() >= next_cycle:
                houses = None  # everyone
                next_cycle = time.monotonic() + self._cfg.cycle_s / self._clock.speed
            else:
                houses, self._pending = self._pending, set()
            try:
                if not self._elector.is_leader and houses:
                    for house_id in houses:  # the leader plans; tell it
                        await self._store.queue_push(REPLAN_QUEUE, house_id)
                else:
                    await self.cycle(houses)
            except StoreError as exc:
                self._metrics.store_errors.inc()
                log.warning("planning cycle failed, will retry: %s", exc)

    async def cycle(self, house_ids: set[str] | None = None) -> list[DispatchPlan]:
        """Plan ``house_ids`` (all known houses if None) if this replica leads."""
        started = time.perf_counter()
        token = self._elector.token
        if token is None:
            return []
        full = house_ids is None
        if self._cfg.optimiser == "lp":
            return await self._cycle_lp(token, started)  # feeders couple houses: always the whole fleet
        if house_ids is None:
            house_ids = {h.house_id for h in await self._store.list_houses()}
        now = self._clock.now()
        written = []
        self._flex_up = self._flex_down = 0.0
        for house_id in sorted(house_ids):
            await asyncio.sleep(0)  # a cycle over thousands of houses must not starve the streams
            plan = await self._plan_house(house_id, now)
            if plan is None:
                continue
            try:
                await self._write_and_route(house_id, plan, token)
            except StaleFencingToken:
                log.warning("lost the dispatch lease mid-cycle; stopping")
                await self._elector.try_acquire()
                break
            except PlanVersionConflict:
                continue
            written.append(plan)
        if full:  # fleet totals only make sense over the whole fleet
            self._metrics.flexibility_up.set(self._flex_up)
            self._metrics.flexibility_down.set(self._flex_down)
        self._metrics.plan_cycle_duration.observe(time.perf_counter() - started)
        return written

    async def publish(self, house_id: str, plan: DispatchPlan) -> None:
        """Write ``plan`` as the house's current plan and send it, as the leader.

        Raises StaleFencingToken / PlanVersionConflict from the store, and
        RuntimeError if another replica holds the dispatch lease.
        """
        token = self._elector.token
        if token is None:
            raise RuntimeError("not the dispatch leader")
        await self._write_and_route(house_id, plan, token)

    async def next_version(self, house_id: str) -> int:
        return await self._store.next_plan_version(house_id)

    async def _write_and_route(self, house_id: str, plan: DispatchPlan, token: int) -> None:
        await self._store.put_plan(house_id, plan, token)
        self.plans_written += 1
        session = self._sessions.get(house_id)
        if session is not None:
            session.outbox.put_plan(plan)
            self.last_published[house_id] = (plan.version, time.monotonic())
            return
        route = await self._store.get_route(house_id)
        if route is not None and route != self._replica_id:
            await self._store.queue_push(dispatch_queue(route), house_id)

    async def _consume_replans(self) -> None:
        """Leader only: re-plan requests that reached other replicas."""
        while True:
            if not self._elector.is_leader:
                self._elector.changed.clear()
                await wait_event(self._elector.changed, 1.0)
                continue
            try:
                items = await self._store.queue_pull(REPLAN_QUEUE, self._replica_id, block_s=1.0)
                if items:
                    for _, house_id in items:
                        self.request(house_id)
                    await self._store.queue_ack(REPLAN_QUEUE, [i for i, _ in items])
            except StoreError as exc:
                self._metrics.store_errors.inc()
                log.warning("replan queue unavailable: %s", exc)
                await asyncio.sleep(1.0)

    async def _consume_dispatch(self) -> None:
        """Every replica: plans the leader made for houses whose streams are here."""
        queue = dispatch_queue(self._replica_id)
        while True:
            try:
                items = await self._store.queue_pull(queue, self._replica_id, block_s=1.0)
                for _, house_id in items:
                    session = self._sessions.get(house_id)
                    if session is not None:  # the current plan: never older than what was queued
                        await self._send_current(house_id, session)
                if items:
                    await self._store.queue_ack(queue, [i for i, _ in items])
            except StoreError as exc:
                self._metrics.store_errors.inc()
                log.warning("dispatch queue unavailable: %s", exc)
                await asyncio.sleep(1.0)

    async def _house_input(self, house_id: str) -> HouseInput | None:
        house = await self._store.get_house(house_id)
        flex = await self._store.get_flexibility(house_id)
        if house is None or flex is None or not flex.storages:
            return None
        limits = house.hello.limits
        override = await self._store.get_limit_override(house_id)
        if override is not None:  # temporary limits only ever tighten
            limits = SiteLimits(min(limits.max_import_w, override.limits.max_import_w),
                                min(limits.max_export_w, override.limits.max_export_w))
        pv_rated = sum(r.rated_power_w for r in house.hello.resources if r.kind is ResourceKind.PV)
        return HouseInput(house_id, limits, flex.storages[0], flex.load_forecast, flex.pv_forecast, pv_rated,
                          self._feeder_of.get(house_id))

    async def _cycle_lp(self, token: int, started: float) -> list[DispatchPlan]:
        """The fleet LP off the event loop (process pool), then fenced writes and routing."""
        now = self._clock.now()
        start = align_down(now, self._cfg.slot_s)
        inputs = []
        for record in await self._store.list_houses():
            await asyncio.sleep(0)
            inp = await self._house_input(record.house_id)
            if inp is not None:
                inputs.append(inp)
        if not inputs:
            return []
        imp, exp = self._tariff.prices(start, self._cfg.slot_s, self._cfg.horizon_slots)
        problem = prepare_problem(inputs, start=start, slot_s=self._cfg.slot_s, horizon_slots=self._cfg.horizon_slots,
                                  import_price_per_kwh=imp, export_price_per_kwh=exp, feeders=self._feeders)
        previous = {i.house_id: p for i in inputs if (p := await self._store.get_plan(i.house_id)) is not None}
        solve_started = time.perf_counter()
        try:
            async with asyncio.timeout(self._cfg.solve_time_limit_s):
                result = await asyncio.get_running_loop().run_in_executor(
                    self._solver_pool(), optimise_job, problem, previous, now)
        except TimeoutError:
            log.warning("fleet solve exceeded %.0f s; the current plans stay", self._cfg.solve_time_limit_s)
            return []
        finally:
            self._metrics.solve_duration.observe(time.perf_counter() - solve_started)
        self._flex_up = self._flex_down = 0.0
        for i in inputs:
            self._count_flexibility(i.storage)
        self._metrics.flexibility_up.set(self._flex_up)
        self._metrics.flexibility_down.set(self._flex_down)
        if result.relaxations:
            log.warning("limits relaxed in this cycle: %s", result.relaxations[:5])
        written = []
        limits = {i.house_id: i.limits for i in inputs}
        for house_id, plan in sorted(result.plans.items()):
            await asyncio.sleep(0)
            version = await self._store.next_plan_version(house_id)
            valid_until = min(plan.valid_until, plan.valid_from + timedelta(seconds=self._cfg.lease_s))
            plan = replace(plan, plan_id=str(uuid.uuid4()), version=version, created_at=self._clock.now(),
                           valid_until=valid_until, fallback_max_export_w=limits[house_id].max_export_w)
            try:
                await self._write_and_route(house_id, plan, token)
            except StaleFencingToken:
                log.warning("lost the dispatch lease mid-cycle; stopping")
                await self._elector.try_acquire()
                break
            except PlanVersionConflict:
                continue
            written.append(plan)
        self._metrics.plan_cycle_duration.observe(time.perf_counter() - started)
        return written

    def _solver_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: forking a process that holds gRPC channels and threads is unsafe
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self._cfg.solver_workers,
                                             mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _count_flexibility(self, storage: StorageFlexibility) -> None:
        """Fleet power that could still be added (charging) or shed (discharging), W."""
        self._flex_up += storage.max_charge_power_w if storage.soc_pct < storage.soc_max_pct else 0.0
        self._flex_down += storage.max_discharge_power_w if storage.soc_pct > storage.reserve_soc_pct else 0.0

    async def _plan_house(self, house_id: str, now: datetime) -> DispatchPlan | None:
        house = await self._house_input(house_id)
        if house is None:
            return None  # nothing to dispatch yet
        storage, limits = house.storage, house.limits
        self._count_flexibility(storage)
        start = align_down(now, self._cfg.slot_s)
        inp = TouPlanInput(start=start, slot_s=self._cfg.slot_s, import_price_per_kwh=self._prices(start),
                           storage=storage, max_import_w=limits.max_import_w,
                           grid_charge_target_soc_pct=self._cfg.grid_charge_target_soc_pct)
        version = await self._store.next_plan_version(house_id)
        started = time.perf_counter()
        try:
            # created_at is when this house's plan is made (plan delivery latency counts from here)
            return make_plan(str(uuid.uuid4()), version, self._clock.now(), inp, self._cfg.lease_s,
                             fallback_max_export_w=limits.max_export_w)
        finally:
            self._metrics.solve_duration.observe(time.perf_counter() - started)
