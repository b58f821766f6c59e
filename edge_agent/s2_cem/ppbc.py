"""A PPBC Resource Manager's power profile (a washing machine's programme): its steps, when the
CEM starts it, and how it goes up to the fleet (pure).

* The run: per PPBC.PowerSequenceContainer (in their order, back to back) the first power
  sequence for normal conditions; each element's duration and expected power (the electric
  commodities summed).  Alternative sequences and pauses between containers (max_pause_before)
  are not used yet: the run is one block that moves as a whole.
* Its start: the aggregator's (``DispatchPlan.run_starts`` for the RM's resource id) when the
  plan has one that the run's window and the site limits allow; else the cheapest allowed
  start on the prices the agent knows (energy_manager/cheapest_start.py).  Decided once per
  profile; a later aggregator's start that differs moves it (the old ScheduleInstructions are
  revoked) while the run has not begun, and so does the import limit: a start within two
  minutes is checked on the present grid reading too, and moved to the cheapest allowed
  start after that if the reading leaves no room.  One the RM rejects or aborts is not asked
  again.
* The run to the fleet: a ShiftableRunFlexibility with the run's steps (at most 96, each at
  most a day: what the fleet's wire takes), the profile's start_time and end_time, and its
  state from what the RM reported and the CEM asked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from s2python.ppbc import PPBCPowerProfileDefinition, PPBCPowerSequence, PPBCPowerSequenceContainer

from edge_agent.energy_manager.cheapest_start import Start, Step, allowed, cheapest_start, coarse
from edge_agent.s2_cem.state import InstructionRecord, RmSnapshot, RunShape
from vpp_common.messages import (
    DispatchPlan,
    PowerForecast,
    PriceSlot,
    ProfileStep,
    RunState,
    ShiftableRunFlexibility,
    SiteLimits,
)

SCHEDULE = "PPBC.ScheduleInstruction"
PPBC = "POWER_PROFILE_BASED_CONTROL"
MAX_STEPS = 96  # the fleet's wire (aggregator/service/load_convert.py)
DECISION_STEPS = 24  # the start is chosen on at most this many (energy and extremes kept): ms, not 100s of ms
MAX_STEP_S = 86_400.0
MOVE_TOLERANCE = timedelta(seconds=60)  # an aggregator's start this close to the scheduled one: no move
IMMINENT = timedelta(seconds=120)  # a start this close is checked on the present grid reading too
ELECTRIC_PREFIX = "ELECTRIC.POWER."
BEGUN = ("EXECUTING", "INTERRUPTED", "FINISHED", "ABORTED")


@dataclass(frozen=True, slots=True)
class Schedule:
    """What to send: a ScheduleInstruction per container (container id, sequence id, execution
    time), after revoking ``revoke`` (instruction ids); ``power_w``: the run's first step."""

    profile_id: str
    start: datetime
    items: tuple[tuple[str, str, datetime], ...]
    revoke: tuple[str, ...]
    power_w: float
    reason: str


def chosen_sequences(profile: PPBCPowerProfileDefinition) -> list[tuple[PPBCPowerSequenceContainer,
                                                                         PPBCPowerSequence]] | None:
    """Per container its first sequence for normal conditions; None if a container has none."""
    out = []
    for c in profile.power_sequences_containers:
        seq = next((s for s in c.power_sequences if not s.abnormal_condition_only), None)
        if seq is None:
            return None
        out.append((c, seq))
    return out


def sequence_steps(seq: PPBCPowerSequence) -> list[ProfileStep]:
    return [ProfileStep(e.duration.root / 1000.0,
                        sum(v.value_expected for v in e.power_values
                            if v.commodity_quantity.value.startswith(ELECTRIC_PREFIX)))
            for e in seq.elements]


def profile_steps(profile: PPBCPowerProfileDefinition) -> list[ProfileStep]:
    """The run's steps, container after container ([] without a usable sequence)."""
    return [s for _, seq in chosen_sequences(profile) or [] for s in sequence_steps(seq)]


def schedules(snap: RmSnapshot, profile_id: str) -> list[InstructionRecord]:
    return [r for r in snap.instructions if r.kind == SCHEDULE and r.profile_id == profile_id]


def begun(snap: RmSnapshot) -> bool:
    return any(s in BEGUN for _, s in snap.profile_status)


def aggregator_start(plan: DispatchPlan | None, resource_id: str) -> datetime | None:
    return next((r.start for r in (plan.run_starts if plan is not None else ()) if r.resource_id == resource_id), None)


def safe(steps: tuple[Step, ...], at: datetime, now: datetime, limits: SiteLimits, forecast: PowerForecast | None,
         grid_w: float | None) -> bool:
    """The run may start at ``at``: on the forecast, and, for a start about to come, on the
    present grid reading too (the forecast is an average; the fuse trips on what is)."""
    if not allowed(steps, at, limits, forecast, grid_w):
        return False
    return at > now + IMMINENT or grid_w is None or allowed(steps, at, limits, None, grid_w)


def decide_schedule(snap: RmSnapshot, now: datetime, plan: DispatchPlan | None, prices: tuple[PriceSlot, ...],
                    limits: SiteLimits, forecast: PowerForecast | None, grid_w: float | None,
                    stale_after_s: float) -> Schedule | None:
    """The ScheduleInstructions to send this PPBC RM now, or None (nothing new to ask)."""
    profile = snap.profile
    if (snap.control_type != PPBC or profile is None or snap.resource_id is None
            or snap.stale(now, stale_after_s) or begun(snap)):
        return None
    sent = schedules(snap, str(profile.id))
    live = [r for r in sent if r.open]
    if sent and not live and sent[-1].status != "REVOKED":
        return None  # the RM rejected or aborted it: the device is in charge
    run = snap.run or shape(profile)
    steps, length = run.decision, timedelta(seconds=run.length_s)
    earliest, latest = max(profile.start_time, now), profile.end_time - length
    scheduled = min((r.execution_time for r in live if r.execution_time is not None), default=None)
    if scheduled is not None and scheduled <= now:
        return None  # its start has come: the RM may be starting it
    # about to start while the present reading leaves no room for it: moved, or un-scheduled
    blocked = scheduled is not None and not safe(steps, scheduled, now, limits, forecast, grid_w)
    choice: Start | None = None
    wanted = aggregator_start(plan, snap.resource_id)
    if wanted is not None and profile.start_time <= wanted <= latest:
        at = max(wanted, earliest)
        if at <= latest and safe(steps, at, now, limits, forecast, grid_w):
            choice = Start(at, None, "the aggregator's run start")
    if choice is None and live and not blocked:
        return None  # scheduled already; only the aggregator (or the site limits) move it
    if choice is None:
        choice = _cheapest_safe(steps, earliest, latest, now, prices, limits, forecast, grid_w)
        if choice is not None and blocked:
            choice = Start(choice.at, choice.cost, f"the import limit leaves no room at its start; {choice.reason}")
    revoke = tuple(r.instruction_id for r in live)
    if choice is None:  # no allowed start in its window (for now): not started by the CEM
        return Schedule(str(profile.id), now, (), revoke, 0.0, "the import limit leaves no room at its start: "
                        "not scheduled until it does") if blocked else None
    if scheduled is not None and abs(scheduled - choice.at) <= MOVE_TOLERANCE:
        return None
    items, at = [], choice.at
    for container, seq in chosen_sequences(profile) or []:
        items.append((str(container.id), str(seq.id), at))
        at += timedelta(seconds=sum(s.duration_s for s in sequence_steps(seq)))
    cost = "" if choice.cost is None else f", {choice.cost:.3f} for the run"
    return Schedule(str(profile.id), choice.at, tuple(items), revoke, run.first_w, f"{choice.reason}{cost}")


def _cheapest_safe(steps: tuple[Step, ...], earliest: datetime, latest: datetime, now: datetime,
                   prices: tuple[PriceSlot, ...], limits: SiteLimits, forecast: PowerForecast | None,
                   grid_w: float | None) -> Start | None:
    """The cheapest allowed start; one about to come that the present reading does not allow
    gives way to the cheapest after it."""
    choice = cheapest_start(steps, earliest, latest, prices, limits, forecast, grid_w)
    if choice is None or safe(steps, choice.at, now, limits, forecast, grid_w):
        return choice
    later = cheapest_start(steps, max(earliest, now + IMMINENT), latest, prices, limits, forecast, grid_w)
    return Start(later.at, later.cost, f"the import limit leaves no room now; {later.reason}") \
        if later is not None else None


def shape(profile: PPBCPowerProfileDefinition) -> RunShape:
    raw = profile_steps(profile)
    return RunShape(sum(s.duration_s for s in raw), raw[0].power_w if raw else 0.0,
                    coarse([(s.duration_s, s.power_w) for s in raw], DECISION_STEPS), _wire_steps(raw))


def _wire_steps(raw: list[ProfileStep]) -> tuple[ProfileStep, ...]:
    """At most 96 steps of at most a day each, the energy kept."""
    split: list[tuple[float, float]] = []
    for s in raw:
        n = max(1, math.ceil(s.duration_s / MAX_STEP_S))
        split += [(s.duration_s / n, s.power_w)] * n
    return tuple(ProfileStep(s.duration_s, s.power_w) for s in coarse(split, MAX_STEPS))


def run_state(snap: RmSnapshot, profile_id: str) -> tuple[RunState, datetime | None]:
    """Where the run is, from the RM's statuses and the CEM's schedule; and its (chosen) start."""
    live = [r for r in schedules(snap, profile_id) if r.open or r.status == "SUCCEEDED"]
    scheduled = min((r.execution_time for r in live if r.execution_time is not None), default=None)
    statuses = [s for _, s in snap.profile_status]
    started = scheduled if scheduled is not None and snap.run_started_at is not None \
        and scheduled <= snap.run_started_at else snap.run_started_at
    if statuses and all(s in ("FINISHED", "ABORTED") for s in statuses) and len(statuses) == _containers(snap):
        return RunState.DONE, started or scheduled
    if any(s in BEGUN for s in statuses):
        return RunState.RUNNING, started or scheduled
    if scheduled is not None:
        return RunState.SCHEDULED, scheduled
    return RunState.WAITING, None


def _containers(snap: RmSnapshot) -> int:
    return len(snap.profile.power_sequences_containers) if snap.profile is not None else 0


def as_flexibility(snap: RmSnapshot) -> ShiftableRunFlexibility | None:
    """The RM's run as the fleet sees it (S2 PPBC), or None without a usable profile."""
    profile = snap.profile
    if profile is None or snap.resource_id is None:
        return None
    steps = (snap.run or shape(profile)).wire
    if not steps:
        return None
    state, start = run_state(snap, str(profile.id))
    if state is not RunState.WAITING and start is None:
        state = RunState.WAITING
    return ShiftableRunFlexibility(snap.resource_id, steps, profile.start_time, profile.end_time, state,
                                   start if state is not RunState.WAITING else None)
