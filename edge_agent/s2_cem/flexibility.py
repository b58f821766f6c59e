"""The connected RMs' flexibility for the fleet (sources of ``HouseReports``): an OMBC RM as a
switchable load, a PPBC RM's run as a shiftable run, an FRBC RM as a storage, a producing PEBC
RM as curtailable production, each under the RM's resource id (pure).

Only RMs whose values may be used now: one that disconnected or fell silent is stale and left
out of the next update (the aggregator stops counting on it), never reported as 0 W or 0 % SoC.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Iterable
from datetime import datetime

from edge_agent.s2_cem import ombc, pebc, ppbc
from edge_agent.s2_cem.frbc_flex import as_storage
from edge_agent.s2_cem.state import RmSnapshot
from vpp_common.log_limit import LogLimiter
from vpp_common.messages import (
    CurtailmentFlexibility,
    ShiftableRunFlexibility,
    StorageFlexibility,
    SwitchableLoadFlexibility,
)

log = logging.getLogger(__name__)
_limit = LogLimiter(300.0)
MAX_POWER_W = 1e6  # the fleet's wire refuses a whole update with a power past this (aggregator/service/bounds.py)


def _fits(powers: Iterable[float]) -> bool:
    """Every power one the fleet takes: the phases summed may pass what each phase may be."""
    return all(math.isfinite(p) and abs(p) <= MAX_POWER_W for p in powers)


def loads(snapshots: Iterable[RmSnapshot], now: datetime, stale_after_s: float
          ) -> tuple[tuple[SwitchableLoadFlexibility, ...], tuple[ShiftableRunFlexibility, ...]]:
    switchable: list[SwitchableLoadFlexibility] = []
    shiftable: list[ShiftableRunFlexibility] = []
    for snap in sorted(snapshots, key=lambda s: s.name):
        if snap.stale(now, stale_after_s):
            continue
        if snap.control_type == ombc.OMBC and (load := ombc.as_flexibility(snap)) is not None:
            if _fits(m.power_w for m in load.modes):
                switchable.append(load)
                continue
        elif snap.control_type == ppbc.PPBC and (run := ppbc.as_flexibility(snap)) is not None:
            if _fits(p.power_w for p in run.profile):
                shiftable.append(run)
                continue
        else:
            continue
        if _limit.admit(snap.name) is not None:  # one RM's numbers must not cost the house its whole update
            log.warning("S2 RM %r: a power past %.0f W: left out of the flexibility update", snap.name, MAX_POWER_W)
    return tuple(switchable), tuple(shiftable)


def devices(snapshots: Iterable[RmSnapshot], now: datetime, stale_after_s: float, house_ids: Collection[str] = ()
            ) -> tuple[tuple[StorageFlexibility, ...], tuple[CurtailmentFlexibility, ...]]:
    """The usable FRBC RMs' storages (``frbc_flex``) and producing PEBC RMs' curtailable
    production; one that cannot be described or is stale is left out, and so is one claiming
    a resource id of the house's own devices (``house_ids``: the plan's setpoints for those are
    the house's)."""
    storages: list[StorageFlexibility] = []
    curtailments: list[CurtailmentFlexibility] = []
    for snap in sorted(snapshots, key=lambda s: s.name):
        if snap.stale(now, stale_after_s) or snap.resource_id in house_ids:
            continue
        if snap.control_type == "FILL_RATE_BASED_CONTROL" and (storage := as_storage(snap)) is not None:
            storages.append(storage)
        elif (snap.control_type == pebc.PEBC and (c := pebc.as_curtailment(snap, now, stale_after_s)) is not None
              and _fits((c.present_power_w, c.min_lower_limit_w))):
            curtailments.append(c)
    return tuple(storages), tuple(curtailments)


def powers(snapshots: Iterable[RmSnapshot], now: datetime, stale_after_s: float,
           house_ids: Collection[str] = ()) -> tuple[float, float]:
    """The fresh measured power (W, consumption > 0) of the RMs ``devices`` reports: its storages'
    and its PV's.  Those it leaves out (stale, undescribed) are not planned apart: nothing is
    taken off for them (their power stays the house's load, as it is to the meter)."""
    snaps = list(snapshots)
    stores, curtail = devices(snaps, now, stale_after_s, house_ids)
    ids = {s.resource_id for s in stores}
    storage_w = sum(s.power_w.value for s in snaps if s.resource_id in ids and s.power_w is not None
                    and (now - s.power_w.at).total_seconds() <= stale_after_s and _fits((s.power_w.value,)))
    return storage_w, sum(c.present_power_w for c in curtail)
