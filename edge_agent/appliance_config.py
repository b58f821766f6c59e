"""Settings of the appliances behind the house's smart plugs (``[[appliances]]``); part of the one
configuration (edge_agent/config.py).  Each names a switchable ``[[lan_devices]]`` plug (its id is the
appliance's resource id) and how the appliance may be moved: ``pausable`` (a freezer), ``run`` (a
washing machine's programme before a deadline) or ``battery`` (a portable power station).
docs/appliances.md."""

from __future__ import annotations

from datetime import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge_agent.drivers.lan_catalogue import load_lan_entry
from edge_agent.lan_config import LanDeviceConfig
from edge_agent.link_config import HomeAssistantConfig

# As lan_config.STRICT: unknown keys and inf/NaN refused
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
MAX_POWER_W = 10_000.0  # a plug carries at most 16 A
MAX_DAY_MIN = 1440.0


class _Appliance(BaseModel):
    model_config = STRICT

    plug: str = Field(description="the [[lan_devices]] id of the switchable plug it is behind (role load), or "
                                  "a Home Assistant entity's id (role switchable_load); the appliance is reported "
                                  "to the aggregator by this id")

    @model_validator(mode="before")
    @classmethod
    def _no_booleans(cls, data: Any) -> Any:
        """true/false where a number or a time goes is a mistake, not 1 or 0."""
        if isinstance(data, dict):
            for key, value in data.items():
                if isinstance(value, bool) or (isinstance(value, list) and any(
                        isinstance(x, bool) for item in value for x in (item if isinstance(item, list | tuple) else [item]))):
                    raise ValueError(f"{key}: a number (or a time), not {value!r}")
        return data


class PausableConfig(_Appliance):
    """A load that may pause (a freezer, a fridge, a water heater): S2 OMBC, modes on and off."""

    kind: Literal["pausable"]
    max_pause_min: float = Field(gt=0, le=MAX_DAY_MIN, description="the longest it may be off in any period_min")
    period_min: float = Field(60.0, gt=0, le=MAX_DAY_MIN, description="the rolling period of max_pause_min")
    min_on_min: float = Field(10.0, ge=0, le=MAX_DAY_MIN, description="once on, stays on at least this long")
    min_off_min: float = Field(5.0, ge=0, le=MAX_DAY_MIN, description="once paused, stays off at least this long")
    power_w: float = Field(100.0, gt=0, le=MAX_POWER_W, description="what it draws when running (until measured)")
    pause_above_per_kwh: float | None = Field(
        None, ge=-1e4, le=1e4, description="pause while the import price is at or above this (a spike); None: "
                                           "only for the import limit")

    @model_validator(mode="after")
    def _fits(self) -> PausableConfig:
        if self.max_pause_min > self.period_min:
            raise ValueError(f"max_pause_min ({self.max_pause_min}) must be <= period_min ({self.period_min})")
        if self.min_off_min > self.max_pause_min:
            raise ValueError(f"min_off_min ({self.min_off_min}) must be <= max_pause_min ({self.max_pause_min}): "
                             "a pause could not last its minimum")
        return self


class RunConfig(_Appliance):
    """A programme that runs once started and may start any time before its deadline (a washing
    machine, a dishwasher, a dryer): S2 PPBC, a power profile whose start may shift."""

    kind: Literal["run"]
    energy_kwh: float | None = Field(None, gt=0, le=50, description="the programme's energy, spread evenly "
                                                                     "over duration_min (or give profile)")
    duration_min: float | None = Field(None, gt=0, le=MAX_DAY_MIN, description="the programme's length")
    profile: list[tuple[float, float]] | None = Field(
        None, min_length=1, max_length=96, description="the programme as [minutes, watts] steps instead of "
                                                       "energy_kwh and duration_min")
    ready_by: time = Field(description="local time (site.timezone) by which the run must be done, e.g. 17:00")
    available_from: time | None = Field(
        None, description="local time from which a run is requested every day (the machine loaded and set by "
                          "then); None: a run is requested when the plug sees the machine armed")
    armed_above_w: float = Field(2.0, gt=0, le=MAX_POWER_W, description="standby power above which the machine "
                                                                        "counts as armed (programme set, waiting)")
    running_above_w: float = Field(50.0, gt=0, le=MAX_POWER_W, description="power above which it is running")

    @model_validator(mode="after")
    def _one_programme(self) -> RunConfig:
        given = (self.energy_kwh is not None, self.duration_min is not None, self.profile is not None)
        if given not in ((True, True, False), (False, False, True)):
            raise ValueError("give either energy_kwh and duration_min, or profile (not both, not neither)")
        for i, (minutes, watts) in enumerate(self.profile or ()):
            if not 0 < minutes <= MAX_DAY_MIN or not 0 <= watts <= MAX_POWER_W:
                raise ValueError(f"profile[{i}]: minutes in (0, {MAX_DAY_MIN:g}] and watts in [0, {MAX_POWER_W:g}], "
                                 f"got [{minutes}, {watts}]")
        if self.steps_s_w()[0][1] > MAX_POWER_W:
            raise ValueError(f"energy_kwh over duration_min is more than a plug carries ({MAX_POWER_W:g} W)")
        if sum(d for d, _ in self.steps_s_w()) > MAX_DAY_MIN * 60:
            raise ValueError("the programme is longer than a day")
        if self.running_above_w <= self.armed_above_w:
            raise ValueError(f"running_above_w ({self.running_above_w}) must be above armed_above_w "
                             f"({self.armed_above_w})")
        return self

    def steps_s_w(self) -> list[tuple[float, float]]:
        """The programme as (seconds, watts) steps."""
        if self.profile is not None:
            return [(m * 60.0, w) for m, w in self.profile]
        assert self.energy_kwh is not None and self.duration_min is not None
        return [(self.duration_min * 60.0, self.energy_kwh * 1000.0 / (self.duration_min / 60.0))]


class StationConfig(_Appliance):
    """A portable power station charging on a plug: charged on PV surplus or in the cheapest hours
    until it has had its energy for the day by ``ready_by`` (reported as a PPBC run: docs/appliances.md)."""

    kind: Literal["battery"]
    capacity_kwh: float = Field(gt=0, le=100)
    charge_power_w: float = Field(gt=0, le=MAX_POWER_W, description="what it draws while charging")
    energy_kwh_per_day: float | None = Field(None, gt=0, le=100, description="energy it needs each day")
    target_soc_pct: float | None = Field(None, gt=0, le=100, description="or: charge this share of the capacity "
                                                                        "each day")
    ready_by: time = Field(time(7, 0), description="local time by which the day's energy is in")
    full_below_w: float = Field(10.0, ge=0, le=MAX_POWER_W, description="on but drawing less than this: full")
    min_switch_min: float = Field(5.0, ge=0, le=120, description="stays on or off at least this long")

    @model_validator(mode="after")
    def _one_need(self) -> StationConfig:
        if (self.energy_kwh_per_day is None) == (self.target_soc_pct is None):
            raise ValueError("give either energy_kwh_per_day or target_soc_pct")
        need = self.need_wh / 1000.0
        if need > self.capacity_kwh:
            raise ValueError(f"energy_kwh_per_day ({need}) is more than capacity_kwh ({self.capacity_kwh})")
        if self.need_wh / self.charge_power_w > 23.0:
            raise ValueError(f"{need} kWh at {self.charge_power_w} W takes more than a day to charge")
        if self.full_below_w >= self.charge_power_w:
            raise ValueError(f"full_below_w ({self.full_below_w}) must be below charge_power_w ({self.charge_power_w})")
        return self

    @property
    def need_wh(self) -> float:
        if self.energy_kwh_per_day is not None:
            return self.energy_kwh_per_day * 1000.0
        assert self.target_soc_pct is not None
        return self.capacity_kwh * self.target_soc_pct * 10.0


ApplianceConfig = Annotated[PausableConfig | RunConfig | StationConfig, Field(discriminator="kind")]


def check_appliances(appliances: list[PausableConfig | RunConfig | StationConfig],
                     lan_devices: list[LanDeviceConfig], home_assistant: HomeAssistantConfig | None = None) -> None:
    """ValueError naming ``appliances[i]``: each behind a switchable LAN plug of role load or a Home
    Assistant entity of role switchable_load, one per plug."""
    plugs = {d.id: d for d in lan_devices}
    api = home_assistant.api if home_assistant is not None else None
    entities = {e.id: e.role for e in api.entities} if api is not None else {}
    seen: set[str] = set()
    for i, a in enumerate(appliances):
        d = plugs.get(a.plug)
        if d is None and a.plug in entities:
            if entities[a.plug] != "switchable_load":
                raise ValueError(f"appliances[{i}].plug {a.plug!r} is a Home Assistant {entities[a.plug]}, not a "
                                 "switchable_load")
        elif d is None:
            raise ValueError(f"appliances[{i}].plug {a.plug!r} is no [[lan_devices]] id nor Home Assistant entity "
                             f"(known: {', '.join(list(plugs) + list(entities)) or 'none'})")
        elif d.role != "load" or load_lan_entry(d.model).switch is None:
            raise ValueError(f"appliances[{i}].plug {a.plug!r} must be a switchable plug of role load ({d.model}, "
                             f"role {d.role})")
        if a.plug in seen:
            raise ValueError(f"appliances[{i}].plug {a.plug!r} has another appliance already")
        seen.add(a.plug)


__all__ = ["ApplianceConfig", "PausableConfig", "RunConfig", "StationConfig", "check_appliances"]
