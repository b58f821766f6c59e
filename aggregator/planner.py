"""The planning cycle: snapshot fleet state -> pure plan -> fenced write -> streams.

Only the dispatch leader plans (``fleet.leadership``).  It plans every ``cycle_s`` clock seconds
and, debounced, whenever a house asks for a re-plan (``fleet.schedule``).  A house may be
connected to any replica: requests and plans cross replicas through the store's queues
(``fleet.replication``).  The decisions are pure functions (``fleet.cycle``); the LP runs in
solver processes (``fleet.solver``); plans and signals go to the service's streams through
an outbox (``fleet.outbox``); live feeder envelopes are ``fleet.envelopes``.  This module
orchestrates them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from aggregator.config import FeederConfig, PlanningConfig
from aggregator.dispatch.fleet_input import FeederLimits, HouseInput
from aggregator.dispatch.isolate import excluded_reason
from aggregator.dispatch.optimise import DispatchResult, EventReport
from aggregator.dispatch.plans import lease_end, shift_plan
from aggregator.dispatch.problem import FleetProblem
from aggregator.dispatch.runs import RunPlacement
from aggregator.dispatch.storages import split_plan
from aggregator.dispatch.tariff import TouTariff
from aggregator.dispatch.tou import TouPlanInput, make_plan
from aggregator.fleet import cycle
from aggregator.fleet.cycle import events_to_slots
from aggregator.fleet.envelopes import LiveEnvelopes
from aggregator.fleet.leadership import LeaderElector
from aggregator.fleet.outbox import PlanOutbox
from aggregator.fleet.replication import Replication
from aggregator.fleet.schedule import CycleSchedule, LoopShare
from aggregator.fleet.signals import FleetPrices, with_limits
from aggregator.fleet.solver import SolverProcesses
from aggregator.metrics import AggregatorMetrics
from aggregator.store import PlanVersionConflict, StaleFencingToken, StateStore, StoreError
from vpp_common.clock import Clock
from vpp_common.log_limit import LogLimiter
from vpp_common.messages import DispatchPlan, GridSignal, StorageFlexibility
from vpp_common.timeslots import align_down

log = logging.getLogger(__name__)


class Planner:
    def __init__(self, *, store: StateStore, outbox: PlanOutbox, clock: Clock, tariff: TouTariff,
                 config: PlanningConfig, metrics: AggregatorMetrics, replica_id: str,
                 elector: LeaderElector, feeders: Sequence[FeederConfig] = ()) -> None:
        """``outbox``: where plans and signals go (the service's streams)."""
        self._store = store
        self._outbox = outbox
        self._clock = clock
        self.prices = FleetPrices(tariff, config, clock)
        self._cfg = config
        self._metrics = metrics
        self._elector = elector
        self.schedule = CycleSchedule(clock, config)
        self._stopping = False  # request_stop(): the planning loop ends at its next turn
        self.replication = Replication(store, replica_id, elector, metrics)
        self._solver = SolverProcesses(config.solver_workers)
        self._feeders = {f.id: FeederLimits(*cycle.feeder_limits_w(f), f.transformer) for f in feeders}
        self._feeder_of = {h: f.id for f in feeders for h in f.houses}
        self.envelopes = LiveEnvelopes(store=store, outbox=outbox, clock=clock, elector=elector,
                                       replication=self.replication, metrics=metrics, feeders=feeders,
                                       interval_s=config.feeder_control_s, send_signal=self.send_signal)
        self.plans_written = 0
        self._flex_up = self._flex_down = 0.0
        self.last_published: dict[str, tuple[int, float]] = {}  # house -> (version, monotonic s)
        self.last_event_reports: tuple[EventReport, ...] = ()  # fleet events of the last LP cycle
        self._passed_runs = LogLimiter(every_s=float("inf"))  # (house, run) whose window passed: logged once

    def request(self, house_id: str) -> None:
        """Ask for a re-plan of ``house_id`` soon (debounced); ignored with ``replan_on_update`` off."""
        self.schedule.request(house_id)

    def request_fleet(self) -> None:
        """Ask for a re-plan of the whole fleet soon (fleet events changed)."""
        self.schedule.request_fleet()

    async def house_signal(self, house_id: str) -> GridSignal:
        """The fleet's prices plus this house's temporary limits, if any."""
        base = self.prices.grid_signal()
        override = await self._store.get_limit_override(house_id)
        return with_limits(base, override, await self.envelopes.envelope(house_id))

    async def deliver(self, house_id: str) -> None:
        """Send the house its current plan and signal, wherever its stream is."""
        if self._outbox.has_stream(house_id):
            await self._send_current(house_id)
            return
        route = await self.replication.other_replica(house_id)
        if route is not None:
            await self.replication.tell(route, house_id)

    async def send_signal(self, house_id: str) -> None:
        """Send the house its current grid signal (prices, temporary limits, feeder envelope) if its
        stream is on this replica (other replicas' houses: ``LiveEnvelopes``)."""
        if self._outbox.has_stream(house_id):
            self._outbox.send_signal(house_id, await self.house_signal(house_id))

    async def _send_current(self, house_id: str) -> None:
        """The house's current plan and signal, if its stream is here (never older than what was queued)."""
        if not self._outbox.has_stream(house_id):
            return
        plan = await self._store.get_plan(house_id)
        self._outbox.send_signal(house_id, await self.house_signal(house_id))
        if plan is not None and self._outbox.send_plan(house_id, plan):
            self.last_published[house_id] = (plan.version, time.monotonic())

    async def run(self) -> None:
        """The planning loop plus the two queue consumers."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._plan_loop(), name="plan-loop")
            group.create_task(self.replication.consume_replans(self.request, self.request_fleet),
                              name="replan-consumer")
            group.create_task(self.replication.consume_dispatch(self.send_signal, self._send_current),
                              name="dispatch-consumer")
            if self.envelopes.control.feeders:
                group.create_task(self.envelopes.run(), name="feeder-control")

    def request_stop(self) -> None:
        """The planning loop ends at its next turn, even if its cancellation is lost on the way
        (a belt: the Redis store raises the one redis-py loses, docs/cancellation.md)."""
        self._stopping = True
        self.schedule.wake.set()

    async def _warm_solver(self) -> None:
        try:
            await self._solver.warm_up()
        except Exception as exc:
            log.warning("could not warm up the solver process: %s", exc)

    async def _plan_loop(self) -> None:
        # the first cycle's time is fixed before the solver warms up: a cycle that falls due
        # while it does runs as soon as it is ready, instead of waiting for the next one (a slow
        # start, e.g. a busy machine, cost the live fleet its first hour of plans)
        self.schedule.start()
        if self._cfg.optimiser == "lp" and self._cfg.warm_solver:
            await self._warm_solver()
        while not self._stopping:  # besides cancellation, which a library may lose (docs/cancellation.md)
            due = await self.schedule.next_due()
            if due is None:
                continue
            try:
                if not self._elector.is_leader and (due.houses or due.fleet):
                    await self.replication.ask_leader(due.houses, due.fleet)  # the leader plans; tell it
                else:
                    await self.cycle(None if due.fleet else due.houses)
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
            await self._outbox.wait_for_room()
            try:
                plan = await self._plan_house(house_id, now, token)
            except StaleFencingToken:
                log.warning("lost the dispatch lease mid-cycle; stopping")
                await self._elector.try_acquire()
                break
            if plan is None:
                continue
            outcome = await self._write(house_id, plan, token)
            if outcome is None:
                break
            written += outcome
        if full:  # fleet totals only make sense over the whole fleet
            self._metrics.flexibility_up.set(self._flex_up)
            self._metrics.flexibility_down.set(self._flex_down)
        self._metrics.plan_cycle_duration.observe(time.perf_counter() - started)
        return written

    async def _write(self, house_id: str, plan: DispatchPlan, token: int) -> int | None:
        """One plan of a cycle: 1 if written, 0 if a newer version is there, None if the lease is lost."""
        try:
            await self._write_and_route(house_id, plan, token)
        except StaleFencingToken:
            log.warning("lost the dispatch lease mid-cycle; stopping")
            await self._elector.try_acquire()
            return None
        except PlanVersionConflict:
            return 0
        return 1

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
        if self._outbox.send_plan(house_id, plan):
            self.last_published[house_id] = (plan.version, time.monotonic())
            return
        route = await self.replication.other_replica(house_id)
        if route is not None:
            await self.replication.tell(route, house_id, fencing_token=token)

    async def _house_input(self, house_id: str) -> HouseInput | None:
        house = await self._store.get_house(house_id)
        flex = await self._store.get_flexibility(house_id)
        if house is None or flex is None or not flex.storages:
            return None
        override = await self._store.get_limit_override(house_id)
        return cycle.house_input(house, flex, override, self._feeder_of.get(house_id))

    async def _gather_inputs(self) -> list[HouseInput]:
        """The snapshot of the fleet a cycle plans: every plannable house."""
        inputs: list[HouseInput] = []
        share = LoopShare()
        for record in await self._store.list_houses():
            await share.turn()
            inp = await self._house_input(record.house_id)
            if inp is not None:
                inputs.append(inp)
        return inputs

    async def problem_now(self, now: datetime) -> tuple[list[HouseInput], FleetProblem, RunPlacement] | None:
        """The fleet's state in the store as the LP cycle's problem at ``now`` and where the houses'
        shiftable runs go (None: nothing to plan)."""
        start = align_down(now, self._cfg.slot_s)
        inputs = await self._gather_inputs()
        if not inputs:
            return None
        imp, exp = self.prices.horizon(start, now)
        if len(imp) == 0:
            log.info("no known prices from %s on: nothing to plan", start.isoformat())
            return None
        problem, runs = cycle.cycle_problem_and_runs(
            inputs, start=start, slot_s=self._cfg.slot_s, cycle_s=self._cfg.cycle_s, import_price_per_kwh=imp,
            export_price_per_kwh=exp, feeders=self._feeders, futures=self._cfg.futures,
            terminal_value_per_kwh=self._cfg.terminal_value_per_kwh, now=now)
        return inputs, problem, runs

    async def _cycle_lp(self, token: int, started: float) -> int:
        """The fleet LP off the event loop (process pool), then fenced writes and routing."""
        now = self._clock.now()
        if (prepared := await self.problem_now(now)) is None:
            return 0
        inputs, problem, runs = prepared
        self._report_runs(runs)
        events = events_to_slots(await self._store.list_fleet_events(), problem.start, self._cfg.slot_s)
        solve_started = time.perf_counter()
        try:
            async with asyncio.timeout(self._cfg.solve_time_limit_s):
                result = await self._solver.optimise(problem, now, events, self.last_event_reports)
        except TimeoutError:
            log.warning("fleet solve exceeded %.0f s; the current plans stay", self._cfg.solve_time_limit_s)
            return 0
        finally:
            solved = time.perf_counter()
            self._metrics.solve_duration.observe(solved - solve_started)
        self._publish_flexibility([i.storage for i in inputs])
        self._report(result)
        written = await self._write_cycle(result, now, {i.house_id: i for i in inputs}, token, runs)
        done = time.perf_counter()
        self._metrics.plan_cycle_duration.observe(done - started)
        log.info("planned %d houses in %.1f s: inputs %.1f s, solve %.1f s (%s), writing and sending %.1f s",
                 written, done - started, solve_started - started, solved - solve_started, result.status,
                 done - solved)
        return written

    def _publish_flexibility(self, storages: Sequence[StorageFlexibility]) -> None:
        self._flex_up = self._flex_down = 0.0
        for storage in storages:
            self._count_flexibility(storage)
        self._metrics.flexibility_up.set(self._flex_up)
        self._metrics.flexibility_down.set(self._flex_down)

    def _report_runs(self, runs: RunPlacement) -> None:
        """The cycle's shiftable runs as metrics; a run whose window passed is logged once."""
        later = sum(h.later for h in runs.houses.values())
        passed = [(house, rid) for house, h in runs.houses.items() for rid in h.passed]
        for state, count in (("placed", runs.placed), ("running", runs.running), ("passed", len(passed)),
                             ("later", later)):
            self._metrics.shiftable_runs.labels(state).set(count)
        for house, rid in passed:
            if self._passed_runs.admit((house, rid)) == 0:
                log.info("house %s: run %s ignored, its window has passed", house, rid)

    def _report(self, result: DispatchResult) -> None:
        """Log the cycle's relaxed limits and fleet events; keep the events' reports (their prices
        start the next cycle's coordination)."""
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

    async def _write_cycle(self, result: DispatchResult, now: datetime, inputs: dict[str, HouseInput],
                           token: int, runs: RunPlacement) -> int:
        """The solved plans, leased and versioned one house at a time, written and routed, each with
        the starts of its house's shiftable runs and its setpoint split among its storages."""
        shifted: dict[str, DispatchPlan] = {}
        for house_id in result.fallback_houses:  # its block failed: the previous plan, shifted, if any is left
            old = await self._store.get_plan(house_id)
            if old is not None and (moved := shift_plan(old, now, old.version)) is not None:
                shifted[house_id] = moved
        await self._outbox.prepare(result.plans)
        written, share = 0, LoopShare()
        for house_id in sorted(result.plans):
            await share.turn()
            await self._outbox.wait_for_room()  # made when the streams can take it (created_at counts from here)
            # made here, one house at a time, from the arrays the solver process sent
            try:
                version = await self._store.next_plan_version(house_id, token)
            except StaleFencingToken:
                log.warning("lost the dispatch lease mid-cycle; stopping")
                await self._elector.try_acquire()
                break
            inp = inputs[house_id]
            plan = cycle.leased(shifted.get(house_id) or split_plan(result.plans[house_id], inp.storage_parts),
                                version=version, created_at=self._clock.now(),
                                lease_s=self._cfg.lease_s, fallback_max_export_w=inp.limits.max_export_w,
                                run_starts=runs.starts(house_id))
            outcome = await self._write(house_id, plan, token)
            if outcome is None:
                break
            written += outcome
        return written

    def close(self) -> None:
        self._solver.close()

    def _count_flexibility(self, storage: StorageFlexibility) -> None:
        """Fleet power that could still be added (charging) or shed (discharging), W."""
        up, down = cycle.flexibility_w(storage)
        self._flex_up += up
        self._flex_down += down

    async def _plan_house(self, house_id: str, now: datetime, token: int | None = None) -> DispatchPlan | None:
        house = await self._house_input(house_id)
        if house is None:
            return None  # nothing to dispatch yet
        storage, limits = house.storage, house.limits
        self._count_flexibility(storage)
        start = align_down(now, self._cfg.slot_s)
        prices = self.prices.import_prices(start)
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
            return replace(split_plan(plan, house.storage_parts), valid_until=lease_end(slots_end, made,
                                                                                        self._cfg.lease_s))
        finally:
            self._metrics.solve_duration.observe(time.perf_counter() - started)
