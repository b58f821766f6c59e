"""Appliances of a scenario's houses: ``[[appliances]]`` in scenario.toml (docs/scenario-format.md)
expanded to one run a day per house that has the appliance, and the default set ``vpp-sim run
--appliances`` adds.

A description says what runs and when: its energy over its length (a flat profile) or a profile of
steps, the local hours within which it is armed (its earliest start: drawn per house and day, on
the slot grid, from a seeded generator, so a scenario is the same every time), the local time it
must be finished by, and which houses have it (``houses`` by id, or a ``share`` of them drawn by
the same generator).  Runs whose window does not lie within the scenario are left out.
"""

from __future__ import annotations

import math
from datetime import datetime, time, timedelta
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simulator.fleet.model import ApplianceRun, Scenario
from vpp_common.localtime import zone
from vpp_common.messages import ProfileStep


class ApplianceSpec(BaseModel):
    """One ``[[appliances]]`` table."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    id: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    energy_wh: float | None = Field(None, gt=0, le=50_000)  # with duration_min: a flat profile
    duration_min: float | None = Field(None, gt=0, le=24 * 60)
    profile: list[tuple[float, float]] | None = None  # [[minutes, watts], ...] instead of the two above
    armed_from: time = time(7)  # local: the run is armed at a slot drawn from [armed_from, armed_to]
    armed_to: time = time(10)
    ready_by: time = time(17)  # local: finished by then, the same day
    share: float | None = Field(None, ge=0, le=1)  # of the houses, drawn (default: every house)
    houses: list[str] | None = None
    seed: int = Field(22, ge=0, le=2**32 - 1)

    @model_validator(mode="after")
    def _consistent(self) -> ApplianceSpec:
        if (self.profile is None) == (self.energy_wh is None or self.duration_min is None):
            raise ValueError("give energy_wh and duration_min, or a profile of [minutes, watts] steps")
        if self.profile is not None and not all(
                math.isfinite(m) and math.isfinite(w) and 0 < m <= 24 * 60 and 0 <= w <= 50_000 for m, w in self.profile):
            raise ValueError("profile steps need 0 < minutes <= 1440 and 0 <= watts <= 50000")
        if self.share is not None and self.houses is not None:
            raise ValueError("give share or houses, not both")
        if self.armed_to < self.armed_from:
            raise ValueError("armed_to is before armed_from")
        latest_end = datetime.combine(datetime(2000, 1, 1), self.armed_to) + timedelta(seconds=self.duration_s)
        if latest_end > datetime.combine(datetime(2000, 1, 1), self.ready_by):
            raise ValueError("a run armed at armed_to cannot finish by ready_by the same day")
        return self

    def steps(self) -> tuple[ProfileStep, ...]:
        if self.profile is not None:
            return tuple(ProfileStep(m * 60.0, w) for m, w in self.profile)
        assert self.energy_wh is not None and self.duration_min is not None
        return (ProfileStep(self.duration_min * 60.0, self.energy_wh / (self.duration_min / 60.0)),)

    @property
    def duration_s(self) -> float:
        return sum(s.duration_s for s in self.steps())


# ``vpp-sim run --appliances``: 60 % of the houses run a 1.1 kWh, 2-hour washing programme once a day,
# armed at a seeded slot between 07:00 and 10:00 local, to be finished by 17:00 local
DEFAULT_APPLIANCES = (ApplianceSpec(id="washer", energy_wh=1100, duration_min=120, armed_from=time(7),
                                    armed_to=time(10), ready_by=time(17), share=0.6, seed=22),)


def parse_appliances(raw: Any) -> tuple[ApplianceSpec, ...]:
    """``[[appliances]]`` as read from TOML (ValueError naming the table and field)."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
        raise ValueError("appliances: must be an array of tables [[appliances]]")
    out = []
    for k, table in enumerate(raw):
        try:
            out.append(ApplianceSpec.model_validate({a: (float(v) if type(v).__name__ == "Decimal" else v)
                                                     for a, v in table.items()}))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ValueError(f"appliances[{k}]{'.' + where if where else ''}: "
                             f"{err['msg'].removeprefix('Value error, ')}") from exc
    if len({s.id for s in out}) != len(out):
        raise ValueError("appliances: ids must be unique")
    return tuple(out)


def _houses(spec: ApplianceSpec, sc: Scenario, rng: np.random.Generator) -> list[str]:
    ids = [h.house_id for h in sc.houses]
    if spec.houses is not None:
        unknown = [h for h in spec.houses if h not in ids]
        if unknown:
            raise ValueError(f"appliances {spec.id}: no house {unknown[0]!r}")
        return sorted(set(spec.houses))
    if spec.share is None:
        return ids
    k = int(round(spec.share * len(ids)))
    return sorted(str(x) for x in rng.choice(ids, size=k, replace=False)) if k else []


def expand(specs: tuple[ApplianceSpec, ...], sc: Scenario) -> tuple[ApplianceRun, ...]:
    """Each spec's runs over the scenario: one a local day per house having it, within the scenario."""
    tz = zone(sc.timezone)
    runs: list[ApplianceRun] = []
    first_day = sc.start.astimezone(tz).date()
    days = math.ceil((sc.end - sc.start).total_seconds() / 86400) + 1
    for spec in specs:
        rng = np.random.default_rng(spec.seed)
        steps = spec.steps()
        for hid in _houses(spec, sc, rng):
            for d in range(days):
                day = first_day + timedelta(days=d)
                lo = datetime.combine(day, spec.armed_from, tz)
                hi = datetime.combine(day, spec.armed_to, tz)
                slots = max(0, int((hi - lo).total_seconds() // sc.slot_s))
                armed = lo + timedelta(seconds=int(rng.integers(0, slots + 1)) * sc.slot_s)
                ready = datetime.combine(day, spec.ready_by, tz)
                if armed >= sc.start and ready <= sc.end:
                    runs.append(ApplianceRun(hid, spec.id, armed.astimezone(sc.start.tzinfo),
                                             ready.astimezone(sc.start.tzinfo), steps))
    return tuple(runs)


def with_appliances(sc: Scenario, specs: tuple[ApplianceSpec, ...] = DEFAULT_APPLIANCES) -> Scenario:
    """The scenario with these appliances' runs (added to any it has)."""
    from dataclasses import replace

    out = replace(sc, appliance_runs=sc.appliance_runs + expand(specs, sc))
    out.validate()
    return out


__all__ = ["DEFAULT_APPLIANCES", "ApplianceSpec", "expand", "parse_appliances", "with_appliances"]
