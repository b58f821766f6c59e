"""One RM, one round of the instruction loop: what the house's plan and safety envelope ask of
it, per control type, as the S2 messages to send (pure but for fresh message ids).

FRBC: instructions.py; PPBC: ppbc.py; OMBC: ombc.py; PEBC: pebc.py.  Each instruction comes
with its record (state.InstructionRecord), whose status the RM's updates then follow.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from s2python.common import CommodityQuantity, Duration
from s2python.frbc import FRBCInstruction
from s2python.message import S2MessageWithID
from s2python.ombc import OMBCInstruction
from s2python.pebc import PEBCInstruction, PEBCPowerEnvelope, PEBCPowerEnvelopeElement
from s2python.ppbc import PPBCScheduleInstruction

from edge_agent.s2_cem.instructions import decide_instruction
from edge_agent.s2_cem.ombc import decide_mode
from edge_agent.s2_cem.pebc import ENVELOPE_S, decide_envelope
from edge_agent.s2_cem.ppbc import SCHEDULE, decide_schedule
from edge_agent.s2_cem.state import InstructionRecord, RmSnapshot
from vpp_common.messages import DispatchPlan, PowerForecast, PriceSlot, SiteLimits


@dataclass(frozen=True, slots=True)
class HouseNow:
    """What the instruction loop needs of the house: the plan in force, the grid reading (None
    if not usable), the site limits in force, the prices the agent knows (the aggregator's
    grid signal, else its tariff) and the house's expected power per slot (load + PV)."""

    plan: DispatchPlan | None
    grid_w: float | None
    limits: SiteLimits
    prices: tuple[PriceSlot, ...] = ()
    forecast: PowerForecast | None = None


@dataclass
class Order:
    """Instructions to revoke (ids), then new ones with their records; why, for the log."""

    revoke: list[str] = field(default_factory=list)
    send: list[tuple[S2MessageWithID, InstructionRecord]] = field(default_factory=list)
    why: str = ""


def decide(snap: RmSnapshot, now: datetime, house: HouseNow, stale_after_s: float, deadband_w: float) -> Order:
    ct = snap.control_type
    if ct == "FILL_RATE_BASED_CONTROL":
        return _frbc(snap, now, house, stale_after_s, deadband_w)
    if ct == "POWER_PROFILE_BASED_CONTROL":
        return _ppbc(snap, now, house, stale_after_s)
    if ct == "OPERATION_MODE_BASED_CONTROL":
        return _ombc(snap, now, house, stale_after_s, deadband_w)
    if ct == "POWER_ENVELOPE_BASED_CONTROL":
        return _pebc(snap, now, house, stale_after_s, deadband_w)
    return Order()


def _ids() -> tuple[uuid.UUID, uuid.UUID]:
    return uuid.uuid4(), uuid.uuid4()


def _frbc(snap: RmSnapshot, now: datetime, house: HouseNow, stale_after_s: float, deadband_w: float) -> Order:
    t = decide_instruction(snap, now, house.plan, house.grid_w, house.limits, stale_after_s, deadband_w)
    if t is None:
        return Order()
    mid, iid = _ids()
    msg = FRBCInstruction(message_id=mid, id=iid, actuator_id=uuid.UUID(t.actuator_id),
                          operation_mode=uuid.UUID(t.operation_mode_id), operation_mode_factor=t.factor,
                          execution_time=now, abnormal_condition=False)
    rec = InstructionRecord(str(iid), str(mid), t.actuator_id, t.operation_mode_id, t.factor, t.power_w, now,
                            reason=t.reason)
    return Order(send=[(msg, rec)], why=f"mode {t.operation_mode_id} factor {t.factor:.3f} "
                                        f"({t.power_w:.0f} W, {t.reason})")


def _ppbc(snap: RmSnapshot, now: datetime, house: HouseNow, stale_after_s: float) -> Order:
    s = decide_schedule(snap, now, house.plan, house.prices, house.limits, house.forecast, house.grid_w,
                        stale_after_s)
    if s is None:
        return Order()
    out: list[tuple[S2MessageWithID, InstructionRecord]] = []
    for i, (container, sequence, at) in enumerate(s.items):
        mid, iid = _ids()
        msg = PPBCScheduleInstruction(message_id=mid, id=iid, power_profile_id=uuid.UUID(s.profile_id),
                                      sequence_container_id=uuid.UUID(container),
                                      power_sequence_id=uuid.UUID(sequence), execution_time=at,
                                      abnormal_condition=False)
        out.append((msg, InstructionRecord(str(iid), str(mid), container, sequence, 0.0,
                                           s.power_w if i == 0 else 0.0, now, kind=SCHEDULE, execution_time=at,
                                           profile_id=s.profile_id, reason=s.reason)))
    return Order(list(s.revoke), out, f"profile {s.profile_id} starts at {s.start.isoformat()} ({s.reason})")


def _ombc(snap: RmSnapshot, now: datetime, house: HouseNow, stale_after_s: float, deadband_w: float) -> Order:
    got = decide_mode(snap, now, house.plan, house.grid_w, house.limits, stale_after_s, deadband_w)
    if got is None:
        return Order()
    t, restore = got
    mid, iid = _ids()
    msg = OMBCInstruction(message_id=mid, id=iid, execution_time=now, operation_mode_id=uuid.UUID(t.operation_mode_id),
                          operation_mode_factor=t.factor, abnormal_condition=False)
    rec = InstructionRecord(str(iid), str(mid), "", t.operation_mode_id, t.factor, t.power_w, now,
                            kind="OMBC.Instruction", reason=t.reason, restore_w=restore)
    return Order(send=[(msg, rec)], why=f"mode {t.operation_mode_id} factor {t.factor:.3f} "
                                        f"({t.power_w:.0f} W, {t.reason})")


def _pebc(snap: RmSnapshot, now: datetime, house: HouseNow, stale_after_s: float, deadband_w: float) -> Order:
    e = decide_envelope(snap, now, house.plan, house.grid_w, house.limits, stale_after_s, deadband_w)
    if e is None:
        return Order()
    n = len(e.commodities)
    element = PEBCPowerEnvelopeElement(duration=Duration.from_timedelta(timedelta(seconds=ENVELOPE_S)),
                                       upper_limit=e.upper_w / n, lower_limit=e.lower_w / n)
    mid, iid = _ids()
    msg = PEBCInstruction(message_id=mid, id=iid, execution_time=now, abnormal_condition=False,
                          power_constraints_id=uuid.UUID(e.constraints_id),
                          power_envelopes=[PEBCPowerEnvelope(id=str(uuid.uuid4()), commodity_quantity=CommodityQuantity(c),
                                                             power_envelope_elements=[element])
                                           for c in e.commodities])
    rec = InstructionRecord(str(iid), str(mid), "", e.constraints_id, 1.0 if e.limiting else 0.0, e.lower_w, now,
                            kind="PEBC.Instruction", upper_w=e.upper_w, reason=e.reason)
    what = "limits" if e.limiting else "frees"
    return Order(send=[(msg, rec)], why=f"envelope {what} the device to {e.lower_w:.0f}..{e.upper_w:.0f} W ({e.reason})")
