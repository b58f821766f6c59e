"""``AdminService``: the operators' view of the fleet (admin port only): houses, plans,
temporary site limits and fleet events."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import grpc

from aggregator.fleet.replication import FLEET_ITEM, REPLAN_QUEUE
from aggregator.metrics import AggregatorMetrics
from aggregator.service import admin_convert, bounds, convert
from aggregator.service.convert import InvalidMessage
from aggregator.store import StateStore, StoreError
from vpp.loads import flexible_loads_to_proto
from vpp.v1 import admin_service_pb2 as adm
from vpp.v1 import admin_service_pb2_grpc as adm_grpc
from vpp_common.clock import Clock
from vpp_common.messages import LimitOverride, SiteLimits

MAX_OVERRIDE_S = 7 * 86_400


class AdminServicer(adm_grpc.AdminServiceServicer):
    def __init__(self, store: StateStore, clock: Clock, on_limits_changed: Callable[[str], Awaitable[None]],
                 on_events_changed: Callable[[], Awaitable[None]] | None = None,
                 metrics: AggregatorMetrics | None = None) -> None:
        self._store = store
        self._clock = clock
        self._on_limits_changed = on_limits_changed
        self._on_events_changed = on_events_changed
        self._metrics = metrics

    async def _summary(self, house_id: str) -> adm.HouseSummary | None:
        record = await self._store.get_house(house_id)
        if record is None:
            return None
        return admin_convert.house_summary(record, await self._store.get_route(house_id),
                                     await self._store.get_plan(house_id),
                                     await self._store.get_plan_status(house_id),
                                     await self._store.get_telemetry(house_id))

    async def ListHouses(self, request: adm.ListHousesRequest,
                         context: grpc.aio.ServicerContext) -> adm.ListHousesResponse:
        try:
            houses = [await self._summary(r.house_id) for r in await self._store.list_houses()]
        except StoreError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"state store unavailable: {exc}")
        return adm.ListHousesResponse(houses=[h for h in houses if h is not None])

    async def GetHouse(self, request: adm.GetHouseRequest,
                       context: grpc.aio.ServicerContext) -> adm.GetHouseResponse:
        try:
            summary = await self._summary(request.house_id)
            record = await self._store.get_house(request.house_id)
            telemetry = await self._store.get_telemetry(request.house_id)
            flex = await self._store.get_flexibility(request.house_id)
        except StoreError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"state store unavailable: {exc}")
        if summary is None or record is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no house {request.house_id!r}")
        assert record is not None  # abort() raised otherwise
        resp = adm.GetHouseResponse(house=summary,
                                    resources=[admin_convert.resource_to_proto(r) for r in record.hello.resources])
        if flex is not None:
            resp.flexible_loads.extend(flexible_loads_to_proto(flex))
        if telemetry is not None:
            resp.battery_power_w.CopyFrom(admin_convert.measurement_to_proto(telemetry.battery_power_w))
            resp.pv_power_w.CopyFrom(admin_convert.measurement_to_proto(telemetry.pv_power_w))
            resp.load_power_w.CopyFrom(admin_convert.measurement_to_proto(telemetry.load_power_w))
            resp.measured_at.FromDatetime(telemetry.measured_at)
        return resp

    async def GetPlan(self, request: adm.GetPlanRequest,
                      context: grpc.aio.ServicerContext) -> adm.GetPlanResponse:
        try:
            if await self._store.get_house(request.house_id) is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no house {request.house_id!r}")
            plan = await self._store.get_plan(request.house_id)
            status = await self._store.get_plan_status(request.house_id)
        except StoreError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"state store unavailable: {exc}")
        resp = adm.GetPlanResponse()
        if plan is not None:
            resp.plan.CopyFrom(convert.plan_to_proto(plan))
        if status is not None:
            resp.status.CopyFrom(admin_convert.plan_status_to_proto(status))
        return resp

    async def SetSiteLimits(self, request: adm.SetSiteLimitsRequest,
                            context: grpc.aio.ServicerContext) -> adm.SetSiteLimitsResponse:
        duration_s = request.duration.ToTimedelta().total_seconds()
        problems = []
        if not request.HasField("limits"):
            problems.append("limits are required")
        else:
            for check in (lambda: bounds.finite(request.limits.max_import_w, "limits.max_import_w", 0.0,
                                                bounds.MAX_POWER_W, lo_open=True),
                          lambda: bounds.power(request.limits.max_export_w, "limits.max_export_w", signed=False)):
                try:
                    check()
                except InvalidMessage as exc:  # NaN was accepted once (issue 20)
                    problems.append(str(exc))
                    if self._metrics is not None:
                        self._metrics.refused.labels("admin", exc.reason).inc()
        if not 0 < duration_s <= MAX_OVERRIDE_S:
            problems.append(f"duration must be more than 0 and at most {MAX_OVERRIDE_S} s")
        if problems:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(problems))
        try:
            if await self._store.get_house(request.house_id) is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no house {request.house_id!r}")
            valid_until = self._clock.now() + timedelta(seconds=duration_s)
            override = LimitOverride(SiteLimits(request.limits.max_import_w, request.limits.max_export_w),
                                     valid_until, request.reason)
            await self._store.put_limit_override(request.house_id, override, duration_s / self._clock.speed)
            await self._on_limits_changed(request.house_id)
        except StoreError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"state store unavailable: {exc}")
        resp = adm.SetSiteLimitsResponse()
        resp.valid_until.FromDatetime(valid_until)
        return resp

    async def _events_changed(self) -> None:
        """Re-plan the fleet: by the callback if given, else through the shared re-plan queue,
        which the dispatch leader consumes whichever replica this is."""
        if self._on_events_changed is not None:
            await self._on_events_changed()
        else:
            await self._store.queue_push(REPLAN_QUEUE, FLEET_ITEM)

    async def SetFleetEvent(self, request: adm.SetFleetEventRequest,
                            context: grpc.aio.ServicerContext) -> adm.SetFleetEventResponse:
        now = self._clock.now()
        event_id = request.event.event_id or uuid.uuid4().hex[:12]
        try:
            if not request.HasField("event"):
                raise InvalidMessage("event is required")
            event = admin_convert.fleet_event_from_proto(request.event, event_id, now)
            problems = []
            if event.end <= now:
                problems.append("the event has already ended (end_time is not in the future)")
            if (event.end - event.start).total_seconds() > MAX_OVERRIDE_S:
                problems.append(f"the window must last at most {MAX_OVERRIDE_S} s")
            if problems:
                raise InvalidMessage("; ".join(problems))
        except InvalidMessage as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            # kept until it ends (clock seconds -> real seconds for the store's TTL)
            ttl_s = max((event.end - now).total_seconds(), 1.0) / self._clock.speed
            await self._store.put_fleet_event(event, ttl_s)
            await self._events_changed()
        except StoreError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"state store unavailable: {exc}")
        return adm.SetFleetEventResponse(event=admin_convert.fleet_event_to_proto(event))

    async def ListFleetEvents(self, request: adm.ListFleetEventsRequest,
                              context: grpc.aio.ServicerContext) -> adm.ListFleetEventsResponse:
        now = self._clock.now()
        try:
            events = await self._store.list_fleet_events()
        except StoreError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"state store unavailable: {exc}")
        return adm.ListFleetEventsResponse(events=[admin_convert.fleet_event_to_proto(e) for e in events if e.end > now])

    async def ClearFleetEvent(self, request: adm.ClearFleetEventRequest,
                              context: grpc.aio.ServicerContext) -> adm.ClearFleetEventResponse:
        try:
            found = await self._store.delete_fleet_event(request.event_id)
            if found:
                await self._events_changed()
        except StoreError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"state store unavailable: {exc}")
        if not found:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no fleet event {request.event_id!r}")
        return adm.ClearFleetEventResponse()
