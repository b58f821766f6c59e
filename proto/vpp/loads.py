"""Flexible loads (S2 OMBC and PPBC) to the wire: one encoder for the agent's FlexibilityUpdate
and the aggregator's admin view of a house.  Decoding, with every number checked, is the
aggregator's (aggregator/service/load_convert.py)."""

from __future__ import annotations

from datetime import timedelta

from vpp.enums import RUN_STATE
from vpp.timestamps import timestamp
from vpp.v1 import flexibility_pb2 as fx
from vpp_common.messages import Flexibility, ShiftableRunFlexibility, SwitchableLoadFlexibility


def switchable_to_proto(load: SwitchableLoadFlexibility) -> fx.ResourceFlexibility:
    d = fx.OmbcDescription(
        operation_modes=[fx.OmbcOperationMode(id=m.mode_id, power_w=m.power_w) for m in load.modes],
        active_mode_id=load.active_mode_id)
    if load.active_since is not None:
        d.active_since.CopyFrom(timestamp(load.active_since))
    d.min_mode_duration.FromTimedelta(timedelta(seconds=load.min_mode_s))
    d.max_reduced_duration.FromTimedelta(timedelta(seconds=load.max_reduced_s))
    return fx.ResourceFlexibility(resource_id=load.resource_id, ombc=d)


def shiftable_to_proto(run: ShiftableRunFlexibility) -> fx.ResourceFlexibility:
    d = fx.PpbcDescription(state=RUN_STATE.to_wire[run.state])  # type: ignore[arg-type]
    for step in run.profile:
        e = d.elements.add(power_w=step.power_w)
        e.duration.FromTimedelta(timedelta(seconds=step.duration_s))
    d.earliest_start.CopyFrom(timestamp(run.earliest_start))
    d.latest_end.CopyFrom(timestamp(run.latest_end))
    if run.start is not None:
        d.start.CopyFrom(timestamp(run.start))
    return fx.ResourceFlexibility(resource_id=run.resource_id, ppbc=d)


def flexible_loads_to_proto(f: Flexibility) -> list[fx.ResourceFlexibility]:
    """The update's OMBC loads, then its PPBC runs."""
    return [switchable_to_proto(x) for x in f.switchable_loads] + [shiftable_to_proto(r) for r in f.shiftable_runs]


__all__ = ["flexible_loads_to_proto", "shiftable_to_proto", "switchable_to_proto"]
