"""Operator commands that talk to a running aggregator's admin port.

Tables for people, ``--json`` for scripts.  Protobuf stays at this edge: the
JSON is the admin API's canonical JSON mapping (``json_format``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from vpp.v1 import admin_service_pb2 as adm
from vpp.v1 import admin_service_pb2_grpc as adm_grpc
from vpp.v1 import fleet_service_pb2 as fs
from vpp.v1 import flexibility_pb2 as fx
from vpp.v1 import grid_pb2 as gr
from vpp.v1 import telemetry_pb2 as tm

EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND = 4
TIMEOUT_S = 10.0  # per admin call


def add_admin_commands(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--admin", default="127.0.0.1:50052", help="admin address of an aggregator "
                        "(default 127.0.0.1:50052)")
    common.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")
    houses = sub.add_parser("houses", help="list or show the houses the fleet knows",
                            description="Houses as the fleet store knows them (any replica answers for all).")
    hsub = houses.add_subparsers(dest="houses_command", required=True)
    hsub.add_parser("list", parents=[common], help="all houses, one line each")
    show = hsub.add_parser("show", parents=[common], help="one house in detail")
    show.add_argument("house_id")
    limits = sub.add_parser("limits", help="set a house's temporary limits")
    lsub = limits.add_subparsers(dest="limits_command", required=True)
    lset = lsub.add_parser("set", parents=[common], help="tighten a house's limits for a while",
                           description="Temporary limits reach the house at once (its agent never loosens its "
                                       "own configured limits) and the house is re-planned.")
    lset.add_argument("house_id")
    lset.add_argument("--max-import-w", type=float, required=True, help="import limit in W (> 0)")
    lset.add_argument("--max-export-w", type=float, required=True, help="export limit in W (>= 0; 0 = none)")
    lset.add_argument("--for", dest="duration", type=_duration, required=True,
                      help="how long, e.g. 90m, 2h, 1d, 3600s (at most 7d)")
    lset.add_argument("--reason", default="", help="why, for people")
    events = sub.add_parser("events", help="set, list or clear fleet events (caps on the fleet's export/import)")
    esub = events.add_subparsers(dest="events_command", required=True)
    eset = esub.add_parser(
        "set", parents=[common], help="cap the whole fleet's net export or import in a time window",
        description="A fleet event caps the fleet's total net export (or import) in every plan slot that overlaps "
                    "[--start, --end): e.g. --direction export --max-w 2000000 (at most 2 MW of export), or "
                    "--reduce-by-w 500000 (0.5 MW less than the plan without events).  The fleet is re-planned.")
    eset.add_argument("--direction", choices=("export", "import"), required=True,
                      help="export: cap the fleet's net export; import: cap its net import")
    cap = eset.add_mutually_exclusive_group(required=True)
    cap.add_argument("--max-w", type=_watts, help="the cap in W (>= 0), per slot")
    cap.add_argument("--reduce-by-w", type=_watts, help="W (>= 0) below the plan without events, per slot")
    eset.add_argument("--start", type=_utc_time, required=True, help="window start, ISO 8601 with zone, "
                      "e.g. 2026-11-27T12:00Z")
    eset.add_argument("--end", type=_utc_time, required=True, help="window end (exclusive), after --start")
    eset.add_argument("--id", dest="event_id", default="", help="replace the event with this id "
                      "(default: a new event)")
    eset.add_argument("--reason", default="", help="why, for people")
    esub.add_parser("list", parents=[common], help="the fleet events that have not ended")
    eclear = esub.add_parser("clear", parents=[common], help="remove a fleet event (the fleet is re-planned)")
    eclear.add_argument("event_id")
    plan = sub.add_parser("plan", help="show a house's current plan")
    psub = plan.add_subparsers(dest="plan_command", required=True)
    pshow = psub.add_parser("show", parents=[common], help="the current plan, slot by slot, and its status")
    pshow.add_argument("house_id")


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        value, unit = (float(text[:-1]), units[text[-1]]) if text[-1:] in units else (float(text), 1)
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90m, 2h, 1d)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"duration must be > 0, got {text!r}")
    return value * unit


def _watts(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a power in W: {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of W >= 0, got {text!r}")
    return value


def _utc_time(text: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r} (e.g. 2026-11-27T12:00Z)") from None
    if dt.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the time zone: {text!r} (e.g. 2026-11-27T12:00Z)")
    return dt.astimezone(UTC)


def _value(m: tm.Measurement, fmt: str) -> str:
    if m.validity != tm.VALIDITY_VALID:
        return tm.Validity.Name(m.validity).removeprefix("VALIDITY_").lower() if m.validity else "-"
    return format(m.value, fmt)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def _dump(msg: Message) -> str:
    return json.dumps(json_format.MessageToDict(msg, preserving_proto_field_name=True), indent=2)


def _when(ts: Any) -> str:
    return ts.ToDatetime().strftime("%Y-%m-%d %H:%M:%S") if ts.seconds else "-"


def run_admin(args: argparse.Namespace) -> int:
    if args.command == "events" and args.events_command == "set" and args.end <= args.start:
        print(f"error: --end ({args.end.isoformat()}) must be after --start ({args.start.isoformat()})",
              file=sys.stderr)
        return 2
    try:
        with grpc.insecure_channel(args.admin) as channel:
            stub = adm_grpc.AdminServiceStub(channel)
            return _dispatch(stub, args)
    except grpc.RpcError as exc:
        code = exc.code()  # type: ignore[attr-defined]
        print(f"error: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        if code is grpc.StatusCode.NOT_FOUND:
            return EXIT_NOT_FOUND
        if code is grpc.StatusCode.INVALID_ARGUMENT:
            return 2
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            print(f"(is an aggregator's admin port at {args.admin}?)", file=sys.stderr)
        return EXIT_UNAVAILABLE


def _dispatch(stub: adm_grpc.AdminServiceStub, args: argparse.Namespace) -> int:
    if args.command == "houses" and args.houses_command == "list":
        return _houses_list(stub, args)
    if args.command == "houses":
        return _house(stub, args)
    if args.command == "limits":
        return _limits(stub, args)
    if args.command == "events":
        return _events(stub, args, TIMEOUT_S)
    return _plan(stub, args)


def _state(state: int) -> str:
    return fs.PlanState.Name(state).removeprefix("PLAN_STATE_").lower()


def _houses_list(stub: adm_grpc.AdminServiceStub, args: argparse.Namespace) -> int:
    resp = stub.ListHouses(adm.ListHousesRequest(), timeout=TIMEOUT_S)
    if args.json:
        print(_dump(resp))
        return 0
    rows = [[h.house_id, h.replica_id or "(offline)", _value(h.battery_soc_pct, ".0f"),
             _value(h.grid_power_w, ".0f"), str(h.plan_version or "-"), _state(h.plan_state) if h.plan_state else "-",
             _when(h.last_hello)] for h in resp.houses]
    print(_table(rows, ["HOUSE", "REPLICA", "SOC %", "GRID W", "PLAN", "STATUS", "LAST HELLO (UTC)"]))
    print(f"{len(resp.houses)} houses, {sum(1 for h in resp.houses if h.replica_id)} connected")
    return 0


def _house(stub: adm_grpc.AdminServiceStub, args: argparse.Namespace) -> int:
    resp = stub.GetHouse(adm.GetHouseRequest(house_id=args.house_id), timeout=TIMEOUT_S)
    if args.json:
        print(_dump(resp))
        return 0
    h = resp.house
    print(f"house {h.house_id}  ({'on ' + h.replica_id if h.replica_id else 'offline'}, agent {h.agent_version})")
    print(f"  limits: import <= {h.limits.max_import_w:.0f} W, export <= {h.limits.max_export_w:.0f} W")
    print(f"  telemetry at {_when(resp.measured_at)}: SoC {_value(h.battery_soc_pct, '.1f')} %, "
          f"grid {_value(h.grid_power_w, '.0f')} W, battery {_value(resp.battery_power_w, '.0f')} W, "
          f"PV {_value(resp.pv_power_w, '.0f')} W, load {_value(resp.load_power_w, '.0f')} W")
    print(f"  plan: version {h.plan_version or '-'}, {_state(h.plan_state) if h.plan_state else 'no status'}")
    for r in resp.resources:
        print(f"  resource {r.resource_id}: {fs.ResourceKind.Name(r.kind).removeprefix('RESOURCE_KIND_').lower()}"
              f", {fs.ControlType.Name(r.control_type).removeprefix('CONTROL_TYPE_')}, "
              f"{r.rated_power_w:.0f} W, {r.capacity_wh:.0f} Wh")
    planned = _run_starts(stub, args.house_id) if any(fl.HasField("ppbc") for fl in resp.flexible_loads) else {}
    for fl in resp.flexible_loads:
        when = planned.get(fl.resource_id)
        print(f"  flexible load {fl.resource_id}: {_flexible_load(fl)}{f', planned start {when}' if when else ''}")
    return 0


def _run_starts(stub: adm_grpc.AdminServiceStub, house_id: str) -> dict[str, str]:
    """The starts the house's current plan chose for its shiftable runs, by resource."""
    plan = stub.GetPlan(adm.GetPlanRequest(house_id=house_id), timeout=TIMEOUT_S).plan
    return {r.resource_id: _when(r.start) for r in plan.run_starts}


def _flexible_load(fl: fx.ResourceFlexibility) -> str:
    """One line: an OMBC load's modes and where it is, or a PPBC run's energy, window and state."""
    if fl.HasField("ombc"):
        o = fl.ombc
        modes = ", ".join(f"{m.id} {m.power_w:.0f} W" for m in o.operation_modes)
        pause = o.max_reduced_duration.ToTimedelta().total_seconds()
        return (f"OMBC ({modes}), now {o.active_mode_id or 'unknown'} since {_when(o.active_since)}"
                f"{f', pauses at most {pause / 60:.0f} min' if pause else ''}")
    p = fl.ppbc
    wh = sum(e.power_w * e.duration.ToTimedelta().total_seconds() for e in p.elements) / 3600.0
    hours = sum(e.duration.ToTimedelta().total_seconds() for e in p.elements) / 3600.0
    state = fx.PpbcRunState.Name(p.state).removeprefix("PPBC_RUN_STATE_").lower()
    start = f", start {_when(p.start)}" if p.HasField("start") else ""
    return (f"PPBC run of {wh / 1000:.2f} kWh over {hours:.1f} h between {_when(p.earliest_start)} and "
            f"{_when(p.latest_end)}, {state}{start}")


def _limits(stub: adm_grpc.AdminServiceStub, args: argparse.Namespace) -> int:
    req = adm.SetSiteLimitsRequest(house_id=args.house_id, reason=args.reason,
                                   limits=gr.SiteLimits(max_import_w=args.max_import_w,
                                                        max_export_w=args.max_export_w))
    req.duration.FromTimedelta(timedelta(seconds=args.duration))
    resp = stub.SetSiteLimits(req, timeout=TIMEOUT_S)
    if args.json:
        print(_dump(resp))
    else:
        print(f"house {args.house_id}: import <= {args.max_import_w:.0f} W, export <= {args.max_export_w:.0f} W "
              f"until {_when(resp.valid_until)} UTC")
    return 0


def _plan(stub: adm_grpc.AdminServiceStub, args: argparse.Namespace) -> int:
    resp = stub.GetPlan(adm.GetPlanRequest(house_id=args.house_id), timeout=TIMEOUT_S)
    if args.json:
        print(_dump(resp))
        return 0
    if not resp.HasField("plan"):
        print(f"house {args.house_id} has no plan yet")
        return 0
    p, st = resp.plan, resp.status
    print(f"plan {p.plan_id} version {p.version}: valid {_when(p.valid_from)} .. {_when(p.valid_until)} UTC, "
          f"fallback {_fallback(p)}")
    if resp.HasField("status"):
        print(f"agent: {_state(st.state)} version {st.version}"
              f"{' (' + st.reason + ')' if st.reason else ''} at {_when(st.at)}")
    until = p.valid_until.ToDatetime()
    rows = []
    for s in p.slots:
        if s.start.ToDatetime() >= until:
            break
        for sp in s.setpoints:
            rows.append([s.start.ToDatetime().strftime("%H:%M"), sp.resource_id, f"{sp.target_power_w:.0f}",
                         f"[{sp.envelope.min_w:.0f}, {sp.envelope.max_w:.0f}]", s.reason])
    print(_table(rows, ["SLOT", "RESOURCE", "TARGET W", "ENVELOPE W", "WHY"]))
    return 0


def _fallback(p: Any) -> str:
    names = {1: "self-consumption", 2: "idle"}
    cap = f", export <= {p.fallback.max_export_w:.0f} W" if p.fallback.max_export_w else ""
    return names.get(p.fallback.mode, "self-consumption") + cap



def _event_limit(e: adm.FleetEvent) -> str:
    word = "export" if e.direction == adm.FLEET_EVENT_DIRECTION_EXPORT else "import"
    if e.WhichOneof("limit") == "reduce_by_w":
        return f"{word} {e.reduce_by_w:.0f} W below plan"
    return f"{word} <= {e.max_power_w:.0f} W"


def _events(stub: adm_grpc.AdminServiceStub, args: argparse.Namespace, timeout: float) -> int:
    if args.events_command == "set":
        ev = adm.FleetEvent(event_id=args.event_id, reason=args.reason,
                            direction=adm.FLEET_EVENT_DIRECTION_EXPORT if args.direction == "export"
                            else adm.FLEET_EVENT_DIRECTION_IMPORT)
        ev.start_time.FromDatetime(args.start)
        ev.end_time.FromDatetime(args.end)
        if args.max_w is not None:
            ev.max_power_w = args.max_w
        else:
            ev.reduce_by_w = args.reduce_by_w
        resp = stub.SetFleetEvent(adm.SetFleetEventRequest(event=ev), timeout=timeout)
        if args.json:
            print(_dump(resp))
        else:
            e = resp.event
            print(f"fleet event {e.event_id}: {_event_limit(e)} from {_when(e.start_time)} to "
                  f"{_when(e.end_time)} UTC; the fleet is re-planned")
        return 0
    if args.events_command == "list":
        resp_l = stub.ListFleetEvents(adm.ListFleetEventsRequest(), timeout=timeout)
        if args.json:
            print(_dump(resp_l))
            return 0
        rows = [[e.event_id, _when(e.start_time), _when(e.end_time), _event_limit(e), e.reason]
                for e in resp_l.events]
        print(_table(rows, ["ID", "START (UTC)", "END (UTC)", "LIMIT", "REASON"]))
        print(f"{len(resp_l.events)} fleet events")
        return 0
    stub.ClearFleetEvent(adm.ClearFleetEventRequest(event_id=args.event_id), timeout=timeout)
    if args.json:
        print(json.dumps({"cleared": args.event_id}))
    else:
        print(f"fleet event {args.event_id} cleared; the fleet is re-planned")
    return 0
