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
import math
import os
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
from aggregator.dispatch.events import FleetEvent
from aggregator.dispatch.optimise import DispatchResult, EventReport, event_prices_for, optimise
from aggregator.dispatch.plans import LazyPlans, lease_end, shift_plan
from aggregator.dispatch.problem import DispatchOptions, FleetProblem
from aggregator.dispatch.highs_block import start_highs_quietly
from aggregator.dispatch.isolate import excluded_reason
from aggregator.dispatch.solver_pool import WarmSolverPool, exit_with_parent
from aggregator.dispatch.tariff import TouTariff
from aggregator.feeder_control import Feeder, FeederController, FeederEnvelope
from aggregator.dispatch.tou import TouPlanInput, make_plan
from aggregator.leader import LeaderElector
from aggregator.metrics import AggregatorMetrics
from aggregator.service import convert
from aggregator.service.sessions import ControlItem, Session, SessionRegistry
from aggregator.store import FleetEventRecord, PlanVersionConflict, StaleFencingToken, StateStore, StoreError
from vpp_common.clock import Clock, wait_event
from vpp_common.config import ConfigError
from vpp_common.messages import (
    DispatchPlan, GridSignal, LimitOverride, ResourceKind, SiteLimits, StorageFlexibility,
)
from vpp_common.tariff import PriceSeries, PriceSource
from vpp_common.timeslots import align_down

log = logging.getLogger(__name__)


_WARM_BLOCKS: WarmSolverPool | None = None  # per solver process: each block's basis, kept between cycles


def optimise_job(problem: FleetProblem, now: datetime, events: Sequence[FleetEvent] = (),
                 last_events: Sequence[EventReport] = ()) -> DispatchResult:
    """Runs in a solver process (a module-level function, so it pickles).  The process lives
    as long as the planner's pool, so it keeps each block's basis and re-plans start warm.
    ``last_events``: the previous cycle's event reports; their prices start the coordination.

    The previous plans stay in the service: sending every house's plan to the solver
    process each cycle costs more than the solve (seconds at thousands of houses); the few
    houses whose block fails get their previous plan shifted in the service instead."""
    global _WARM_BLOCKS
    if _WARM_BLOCKS is None:
        start_highs_quietly()  # a dedicated process: HiGHS' banner does not go into the service's log
        _WARM_BLOCKS = WarmSolverPool(workers=0)  # in this process: no processes to shut down
    result = optimise(problem, DispatchOptions(), None, now=now, pool=_WARM_BLOCKS, events=events,
                      event_prices=event_prices_for(problem, last_events) if events and last_events else None)
    if isinstance(result.plans, LazyPlans):  # encoded here, off the service's event loop
        result = replace(result, plans=result.plans.with_wire(convert.packed_slots_wire))
    return result


def events_to_slots(records: Sequence[FleetEventRecord], start: datetime, slot_s: int) -> list[FleetEvent]:
    """Operators' fleet events (times) as events of a horizon starting at ``start`` (slots): every
    slot that overlaps [record.start, record.end) is capped.  Slots before the horizon are
    negative; ``optimise`` clips events to the horizon."""
    out = []
    for r in records:
        s = math.floor((r.start - start).total_seconds() / slot_s)
        e = math.ceil((r.end - start).total_seconds() / slot_s)
        if e > s:
            out.append(FleetEvent(s, e, max_w=r.max_w, direction=r.direction, reduce_w=r.reduce_by_w,
                                  event_id=r.event_id))
    return out


def warm_up_job() -> bool:
    """Runs in a solver process at startup: the imports (OR-Tools) happen now, not in the first cycle."""
    from aggregator.dispatch import solve  # noqa: F401

    return True


REPLAN_QUEUE = "replan"


def dispatch_queue(replica_id: str) -> str:
    return f"dispatch:{replica_id}"


# A dispatch-queue item with this prefix asks the replica to send the house its grid signal
# only (a new feeder envelope), not its plan.  ":" never occurs in a house id.
SIGNAL_ITEM = "signal:"
# A re-plan-queue item that asks for a re-plan of the whole fleet (fleet events changed).
FLEET_ITEM = "fleet:"


class Planner:
    def __init__(self, *, store: StateStore, sessions: SessionRegistry, clock: Clock, tariff: TouTariff,
                 config: PlanningConfig, metrics: AggregatorMetrics, replica_id: str,
                 elector: LeaderElector, feeders: Sequence[FeederConfig] = ()) -> None:
        self._store = store
        self._sessions = sessions
        self._clock = clock
        self._tariff: PriceSource = tariff
        self._series: PriceSeries | None = None
        if config.prices_file is not None:  # a price series replaces the TOU tariff
            try:
                self._series = PriceSeries.load(config.prices_file, slot_s=config.slot_s,
                                                publish_hour_utc=config.prices_publish_hour_utc)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"planning.prices_file: {exc}") from None
            self._tariff = self._series
        self._cfg = config
        self._metrics = metrics
        self._replica_id = replica_id
        self._elector = elector
        self._pool: ProcessPoolExecutor | None = None
        self._feeders = {f.id: FeederLimits(f.import_limit_w or float("inf"),
                                            f.export_limit_w if f.export_limit_w is not None else float("inf"),
                                            f.transformer) for f in feeders}
        self._feeder_of = {h: f.id for f in feeders for h in f.houses}
        self.feeder_control = FeederController(
            store, [Feeder(f.id, tuple(f.houses), f.import_limit_w or float("inf"),
                           f.export_limit_w if f.export_limit_w is not None else float("inf")) for f in feeders],
            interval_s=config.feeder_control_s or 30.0, stale_after_s=max(3 * (config.feeder_control_s or 30.0), 600.0),
            deliver=self._deliver_envelope, send_envelopes=config.feeder_control_s > 0)
        self._limited_feeder_houses = frozenset(
            h for f in feeders if f.import_limit_w is not None or f.export_limit_w is not None for h in f.houses)
        # the service's encoder, set by the server: the planner knows no protobuf
        self.encode_signal: Callable[[GridSignal], object] = lambda signal: signal
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self.plans_written = 0
        self._flex_up = self._flex_down = 0.0
        self._price_cache: tuple[datetime, np.ndarray] | None = None
        self._cycle_target: float | None = None  # clock epoch s of the next aligned cycle
        self._signal_cache: GridSignal | None = None
        self.last_published: dict[str, tuple[int, float]] = {}  # house -> (version, monotonic s)
        self._fleet_pending = False
        self.last_event_reports: tuple[EventReport, ...] = ()  # fleet events of the last LP cycle

    def request(self, house_id: str) -> None:
        """Ask for a re-plan of ``house_id`` soon (debounced); ignored with ``replan_on_update`` off."""
        if not self._cfg.replan_on_update:
            return
        self._pending.add(house_id)
        self._wake.set()

    def request_fleet(self) -> None:
        """Ask for a re-plan of the whole fleet soon (fleet events changed); not subject to
        ``replan_on_update``: it is an operator's action."""
        self._fleet_pending = True
        self._wake.set()

    def _horizon_prices(self, start: datetime, now: datetime) -> tuple[np.ndarray, np.ndarray]:
        """Import and export prices of the horizon from ``start`` as known at ``now`` (a price
        series may end the horizon early: ``horizon_within_known_prices``)."""
        cfg = self._cfg
        if self._series is None:
            return self._tariff.prices(start, cfg.slot_s, cfg.horizon_slots)
        known = self._series.known_until(now)
        n = cfg.horizon_slots
        if cfg.horizon_within_known_prices:
            n = min(n, max(0, math.floor((known - start).total_seconds() / cfg.slot_s)))
        return self._series.prices(start, cfg.slot_s, n, known_until=known)

    def _prices(self, start: datetime) -> np.ndarray:
        """Import prices of the horizon from ``start``: the same for every house in a cycle."""
        if self._price_cache is None or self._price_cache[0] != start:
            imp, _ = self._horizon_prices(start, self._clock.now())
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
        env = await self._feeder_envelope(house_id)
        if override is None and env is None:
            return base
        if env is None:
            assert override is not None
            return GridSignal(issued_at=base.issued_at, currency=base.currency, prices=base.prices,
                              limits=override.limits, limits_valid_until=override.valid_until)
        limits, until = env.limits, env.valid_until
        if override is not None:  # both only ever tighten
            limits = SiteLimits(min(limits.max_import_w, override.limits.max_import_w),
                                min(limits.max_export_w, override.limits.max_export_w))
            until = min(until, override.valid_until)
        return GridSignal(issued_at=base.issued_at, currency=base.currency, prices=base.prices,
                          limits=limits, limits_valid_until=until, limits_are_feeder_envelope=True)

    async def _feeder_envelope(self, house_id: str) -> FeederEnvelope | None:
        """The house's live feeder envelope: the leader's own, or (on a follower) the one the
        leader left in the store for this replica to send."""
        if self._cfg.feeder_control_s <= 0 or house_id not in self._limited_feeder_houses:
            return None
        now = self._clock.now()
        env = self.feeder_control.envelope(house_id, now)
        if env is not None or self._elector.is_leader:
            return env
        stored = await self._store.get_feeder_envelope(house_id)
        if stored is None or stored.valid_until <= now:
            return None
        return FeederEnvelope(stored.limits, stored.valid_until)

    async def _deliver_envelope(self, house_id: str) -> None:
        """The leader's new envelope for a house: sent here if its stream is here, else left in
        the store and announced on its replica's dispatch queue (that replica sends it)."""
        if self._sessions.get(house_id) is not None:
            await self.send_signal(house_id)
            return
        env = self.feeder_control.current.get(house_id)
        route = await self._store.get_route(house_id)
        if env is None or route is None or route == self._replica_id:
            return
        ttl_s = (env.valid_until - self._clock.now()).total_seconds() / self._clock.speed
        if ttl_s <= 0:
            return
        token = self._elector.token
        try:  # fenced: a leader paused past its lease must not send its old envelopes
            await self._store.put_feeder_envelope(house_id, LimitOverride(env.limits, env.valid_until,
                                                                          "feeder envelope"), ttl_s, token)
            await self._store.queue_push(dispatch_queue(route), SIGNAL_ITEM + house_id, token)
        except StaleFencingToken as exc:
            log.warning("not the dispatch leader any more: %s", exc)

    async def deliver(self, house_id: str) -> None:
        """Send the house its current plan and signal, wherever its stream is."""
        session = self._sessions.get(house_id)
        if session is not None:
            await self._send_current(house_id, session)
            return
        route = await self._store.get_route(house_id)
        if route is not None and route != self._replica_id:
            await self._store.queue_push(dispatch_queue(route), house_id)

    async def send_signal(self, house_id: str) -> None:
        """Send the house its current grid signal (prices, temporary limits, feeder envelope) if its
        stream is on this replica (the leader routes envelopes for other replicas' houses
        through the store: ``_deliver_envelope``)."""
        session = self._sessions.get(house_id)
        if session is not None:
            session.outbox.put(ControlItem(self.encode_signal(await self.house_signal(house_id))))

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
            if self.feeder_control.feeders:
                group.create_task(self._feeder_loop(), name="feeder-control")

    async def _feeder_loop(self) -> None:
        """While this replica leads: measure every feeder's load (metrics) and, with
        ``feeder_control_s`` > 0, send live feeder envelopes (see aggregator.feeder_control)."""
        period = self.feeder_control.interval_s / self._clock.speed
        while True:
            await asyncio.sleep(period)
            if not self._elector.is_leader:
                self._metrics.set_feeder_loads({})  # only the leader's view is published
                continue
            try:
                await self.feeder_control.step(self._clock.now())
            except StoreError as exc:
                self._metrics.store_errors.inc()
                log.warning("feeder round skipped: %s", exc)
                continue
            self._metrics.set_feeder_loads(self.feeder_control.loads)

    def _next_cycle(self) -> float:
        """Monotonic time of the next full cycle: ``cycle_s`` clock seconds from now, or, with
        ``cycle_align``, the next clock time that is a multiple of ``cycle_s`` (+ offset)."""
        cfg = self._cfg
        if not cfg.cycle_align:
            return time.monotonic() + cfg.cycle_s / self._clock.speed
        epoch = self._clock.now().timestamp()
        self._cycle_target = (math.floor((epoch - cfg.cycle_offset_s) / cfg.cycle_s) + 1) * cfg.cycle_s \
            + cfg.cycle_offset_s
        return time.monotonic() + (self._cycle_target - epoch) / self._clock.speed

    def _cycle_not_yet(self) -> float | None:
        """With ``cycle_align``: if the clock has not reached the cycle's time yet (a clock that
        stands still before its start), the new monotonic deadline; else None."""
        left = None if self._cycle_target is None else self._cycle_target - self._clock.now().timestamp()
        return None if left is None or left <= 0 else time.monotonic() + left / self._clock.speed

    async def _warm_solver(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._solver_pool(), warm_up_job)
        except Exception as exc:  # noqa: BLE001 -- the first cycle starts it anyway
            log.warning("could not warm up the solver process: %s", exc)

    async def _plan_loop(self) -> None:
        # the first cycle's time is fixed before the solver warms up: a cycle that falls due
        # while it does runs as soon as it is ready, instead of waiting for the next one (a slow
        # start, e.g. a busy machine, cost the live fleet its first hour of plans)
        next_cycle = self._next_cycle() if self._cfg.cycle_align else time.monotonic()
        if self._cfg.optimiser == "lp" and self._cfg.warm_solver:
            await self._warm_solver()
        while True:
            timeout = max(0.0, next_cycle - time.monotonic())
            if await wait_event(self._wake, timeout):
                await asyncio.sleep(self._cfg.debounce_s)  # collect a burst of requests into one cycle
            self._wake.clear()
            if time.monotonic() >= next_cycle and (later := self._cycle_not_yet()) is not None:
                next_cycle = later
                continue
            fleet = False
            if time.monotonic() >= next_cycle:
                houses = None  # everyone
                next_cycle = self._next_cycle()
                self._fleet_pending = False
            else:
                houses, self._pending = self._pending, set()
                fleet, self._fleet_pending = self._fleet_pending, False
            try:
                if not self._elector.is_leader and (houses or fleet):
                    for house_id in houses or ():  # the leader plans; tell it
                        await self._store.queue_push(REPLAN_QUEUE, house_id)
                    if fleet:
                        await self._store.queue_push(REPLAN_QUEUE, FLEET_ITEM)
                else:
                    await self.cycle(None if fleet else houses)
            except StoreError as exc:
                self._metrics.store_errors.inc()
                log.warning("planning cycle failed, will retry: %s", exc)

    async def cycle(self, house_ids: set[str] | None = None) -> int:
        """Plan ``house_ids`` (all known houses if None) if this replica leads; the number of plans
        written.  (Not the plans: a cycle's thousands of plans kept until it ends were millions
        of objects for the garbage collector to walk.)"""
        started = time.perf_counter()
        token = self._elector.token
        if token is None:
            return 0
        full = house_ids is None
        if self._cfg.optimiser == "lp":
            return await self._cycle_lp(token, started)  # feeders couple houses: always the whole fleet
        if house_ids is None:
            house_ids = {h.house_id for h in await self._store.list_houses()}
        now = self._clock.now()
        written = 0
        self._flex_up = self._flex_down = 0.0
        for house_id in sorted(house_ids):
            await asyncio.sleep(0)  # a cycle over thousands of houses must not starve the streams
            await self._sessions.wait_for_room()
            try:
                plan = await self._plan_house(house_id, now, token)
                if plan is None:
                    continue
                await self._write_and_route(house_id, plan, token)
            except StaleFencingToken:
                log.warning("lost the dispatch lease mid-cycle; stopping")
                await self._elector.try_acquire()
                break
            except PlanVersionConflict:
                continue
            written += 1
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
            await self._store.queue_push(dispatch_queue(route), house_id, token)

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
                        if house_id == FLEET_ITEM:
                            self.request_fleet()
                        else:
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
                for _, item in items:
                    if item.startswith(SIGNAL_ITEM):  # a feeder envelope the leader left in the store
                        await self.send_signal(item.removeprefix(SIGNAL_ITEM))
                        continue
                    session = self._sessions.get(item)
                    if session is not None:  # the current plan: never older than what was queued
                        await self._send_current(item, session)
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
                          self._feeder_of.get(house_id), flex.pv_clear_sky_forecast)

    async def _cycle_lp(self, token: int, started: float) -> int:
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
            return 0
        imp, exp = self._horizon_prices(start, now)
        if len(imp) == 0:
            log.info("no known prices from %s on: nothing to plan", start.isoformat())
            return 0
        # the futures depart from the forecasts after the slots this cycle's plans are followed for
        tied = max(1, math.ceil(self._cfg.cycle_s / self._cfg.slot_s))
        problem = prepare_problem(inputs, start=start, slot_s=self._cfg.slot_s, horizon_slots=len(imp),
                                  import_price_per_kwh=imp, export_price_per_kwh=exp, feeders=self._feeders,
                                  futures=tuple(self._cfg.futures), tied_slots=tied)
        terminal = self._cfg.terminal_value_per_kwh
        if terminal == "mean_price":  # stored energy worth the horizon's mean of buying and selling it
            terminal = float(np.mean((imp + exp) / 2))
        problem = replace(problem, terminal_value_per_kwh=terminal)
        events = events_to_slots(await self._store.list_fleet_events(), start, self._cfg.slot_s)
        solve_started = time.perf_counter()
        try:
            async with asyncio.timeout(self._cfg.solve_time_limit_s):
                result = await asyncio.get_running_loop().run_in_executor(
                    self._solver_pool(), optimise_job, problem, now, events, self.last_event_reports)
        except TimeoutError:
            log.warning("fleet solve exceeded %.0f s; the current plans stay", self._cfg.solve_time_limit_s)
            return 0
        finally:
            solved = time.perf_counter()
            self._metrics.solve_duration.observe(solved - solve_started)
        self._flex_up = self._flex_down = 0.0
        for i in inputs:
            self._count_flexibility(i.storage)
        self._metrics.flexibility_up.set(self._flex_up)
        self._metrics.flexibility_down.set(self._flex_down)
        if result.relaxations:
            log.warning("limits relaxed in this cycle: %s", result.relaxations[:5])
        for house_id, why in result.excluded_houses:  # no plan this cycle; the others are planned
            self._metrics.houses_excluded.labels(excluded_reason(why)).inc()
            log.warning("house %s left out of this planning cycle: %s", house_id, why)
        self.last_event_reports = result.events
        for rep in result.events:
            over = max((a - c for a, c in zip(rep.achieved_w, rep.cap_w, strict=True)), default=0.0)
            log.info("fleet %s event %s: %d slots, cap %.0f..%.0f W, worst excess %.0f W, gap %.3f %% after %d "
                     "rounds%s", rep.direction, rep.event_id, len(rep.cap_w), min(rep.cap_w), max(rep.cap_w),
                     max(over, 0.0), 100 * rep.gap_rel, rep.rounds, "" if rep.converged else " (round limit)")
        shifted: dict[str, DispatchPlan] = {}
        for house_id in result.fallback_houses:  # its block failed: the previous plan, shifted, if any is left
            old = await self._store.get_plan(house_id)
            if old is not None and (moved := shift_plan(old, now, old.version)) is not None:
                shifted[house_id] = moved
        written = 0
        limits = {i.house_id: i.limits for i in inputs}
        for house_id in sorted(result.plans):
            await asyncio.sleep(0)
            await self._sessions.wait_for_room()  # made when the streams can take it (created_at counts from here)
            # made here, one house at a time, from the arrays the solver process sent
            plan = shifted.get(house_id) or result.plans[house_id]
            try:
                version = await self._store.next_plan_version(house_id, token)
                made = self._clock.now()
                plan = replace(plan, plan_id=str(uuid.uuid4()), version=version, created_at=made,
                               valid_until=lease_end(plan.valid_until, made, self._cfg.lease_s),
                               fallback_max_export_w=limits[house_id].max_export_w)
                await self._write_and_route(house_id, plan, token)
            except StaleFencingToken:
                log.warning("lost the dispatch lease mid-cycle; stopping")
                await self._elector.try_acquire()
                break
            except PlanVersionConflict:
                continue
            written += 1
        done = time.perf_counter()
        self._metrics.plan_cycle_duration.observe(done - started)
        log.info("planned %d houses in %.1f s: inputs %.1f s, solve %.1f s (%s), writing and sending %.1f s",
                 written, done - started, solve_started - started, solved - solve_started, result.status,
                 done - solved)
        return written

    def _solver_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: forking a process that holds gRPC channels and threads is unsafe
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self._cfg.solver_workers,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=exit_with_parent, initargs=(os.getpid(),))
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _count_flexibility(self, storage: StorageFlexibility) -> None:
        """Fleet power that could still be added (charging) or shed (discharging), W."""
        self._flex_up += storage.max_charge_power_w if storage.soc_pct < storage.soc_max_pct else 0.0
        self._flex_down += storage.max_discharge_power_w if storage.soc_pct > storage.reserve_soc_pct else 0.0

    async def _plan_house(self, house_id: str, now: datetime, token: int | None = None) -> DispatchPlan | None:
        house = await self._house_input(house_id)
        if house is None:
            return None  # nothing to dispatch yet
        storage, limits = house.storage, house.limits
        self._count_flexibility(storage)
        start = align_down(now, self._cfg.slot_s)
        prices = self._prices(start)
        if len(prices) == 0:
            return None  # no known prices from here on (price series, horizon within them)
        inp = TouPlanInput(start=start, slot_s=self._cfg.slot_s, import_price_per_kwh=prices,
                           storage=storage, max_import_w=limits.max_import_w,
                           grid_charge_target_soc_pct=self._cfg.grid_charge_target_soc_pct)
        version = await self._store.next_plan_version(house_id, token)
        started = time.perf_counter()
        try:
            # created_at is when this house's plan is made (plan delivery latency counts from here)
            made = self._clock.now()
            plan = make_plan(str(uuid.uuid4()), version, made, inp, self._cfg.lease_s,
                             fallback_max_export_w=limits.max_export_w)
            slots_end = plan.slots[-1].start + timedelta(seconds=plan.slot_duration_s)  # make_plan: from the slot
            return replace(plan, valid_until=lease_end(slots_end, made, self._cfg.lease_s))
        finally:
            self._metrics.solve_duration.observe(time.perf_counter() - started)
