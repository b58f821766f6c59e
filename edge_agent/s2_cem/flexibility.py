"""The connected RMs' flexibility for the fleet (a flexibility source of ``HouseReports``): an
OMBC RM as a switchable load, a PPBC RM's run as a shiftable run, each under the RM's
resource id (pure).

Only RMs whose values may be used now: one that disconnected or fell silent is stale and left
out of the next update (the aggregator stops counting on it), never reported as 0 W.  FRBC and
PEBC RMs are not reported yet (docs/s2-cem.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from edge_agent.s2_cem import ombc, ppbc
from edge_agent.s2_cem.state import RmSnapshot
from vpp_common.messages import ShiftableRunFlexibility, SwitchableLoadFlexibility


def loads(snapshots: Iterable[RmSnapshot], now: datetime, stale_after_s: float
          ) -> tuple[tuple[SwitchableLoadFlexibility, ...], tuple[ShiftableRunFlexibility, ...]]:
    switchable: list[SwitchableLoadFlexibility] = []
    shiftable: list[ShiftableRunFlexibility] = []
    for snap in sorted(snapshots, key=lambda s: s.name):
        if snap.stale(now, stale_after_s):
            continue
        if snap.control_type == ombc.OMBC and (load := ombc.as_flexibility(snap)) is not None:
            switchable.append(load)
        elif snap.control_type == ppbc.PPBC and (run := ppbc.as_flexibility(snap)) is not None:
            shiftable.append(run)
    return tuple(switchable), tuple(shiftable)
