"""Settings of Home Assistant's devices as the house's devices (``[home_assistant.api]``): the
WebSocket API's URL and token, and the entities the agent reads and switches with their roles
(docs/home-assistant-devices.md); part of the one configuration (edge_agent/config.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# As link_config.STRICT (imported by it: a lower module): unknown keys and inf/NaN refused
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
SENSOR = re.compile(r"^sensor\.[a-z0-9_]+$")
SWITCH = re.compile(r"^(switch|input_boolean)\.[a-z0-9_]+$")
SUPERVISOR_URL = "ws://supervisor/core/websocket"  # the Core's API from inside an add-on


class HaEntityConfig(BaseModel):
    """One entity in a house role: ``grid_meter`` (a sensor at the connection point, import > 0),
    ``load`` (a sensor of a measured load, consumption > 0) or ``switchable_load`` (a ``switch`` or
    ``input_boolean``, optionally with the sensor that measures it)."""

    model_config = STRICT

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$",
                    description="the resource id the aggregator and the logs know it by, e.g. heat_pump")
    entity_id: str = Field(description="sensor.* (W or kW) for a meter or load; switch.* or input_boolean.* "
                                       "for a switchable load")
    role: Literal["grid_meter", "load", "switchable_load"]
    power_entity_id: str | None = Field(None, description="switchable_load: the sensor.* measuring it (W or kW)")
    max_age_s: float | None = Field(None, gt=0, le=86_400,
                                    description="a sensor not updated for this long is stale (Home Assistant's "
                                                "last_updated against the agent's clock); none: no check")
    invert: bool = Field(False, description="the sensor counts the other way (a meter reading export > 0)")
    min_on_s: float = Field(300.0, ge=0, le=86_400, description="switchable_load: shortest time on once switched")
    min_off_s: float = Field(300.0, ge=0, le=86_400, description="switchable_load: shortest time off once switched")
    max_off_s: float = Field(3600.0, gt=0, le=86_400, description="switchable_load: longest the agent keeps it off")
    expected_power_w: float = Field(0.0, ge=0, le=100_000,
                                    description="switchable_load: its power when on (W) until measured")

    @model_validator(mode="after")
    def _entity_fits_role(self) -> HaEntityConfig:
        if self.role == "switchable_load":
            if not SWITCH.match(self.entity_id):
                raise ValueError(f"{self.id}: a switchable_load is a switch.* or input_boolean.* entity, "
                                 f"got {self.entity_id!r}")
            if self.power_entity_id is not None and not SENSOR.match(self.power_entity_id):
                raise ValueError(f"{self.id}: power_entity_id must be a sensor.* entity, got {self.power_entity_id!r}")
            if self.max_off_s < self.min_off_s:
                raise ValueError(f"{self.id}: max_off_s ({self.max_off_s}) must be >= min_off_s ({self.min_off_s})")
        else:
            if not SENSOR.match(self.entity_id):
                raise ValueError(f"{self.id}: a {self.role} is a sensor.* entity (W or kW), got {self.entity_id!r}")
            if self.power_entity_id is not None:
                raise ValueError(f"{self.id}: power_entity_id is for a switchable_load only")
        return self


class HomeAssistantApiConfig(BaseModel):
    """``[home_assistant.api]``: Home Assistant's WebSocket API and the entities used as the house's
    meters, loads and switchable loads; as an add-on the URL is ws://supervisor/core/websocket and
    the token the Supervisor's."""

    model_config = STRICT

    url: str = Field(description="ws://host:8123/api/websocket (wss:// with TLS)")
    token: SecretStr | None = Field(None, description="a long-lived access token (Profile > Security)")
    token_file: Path | None = Field(None, description="a file holding the token instead")
    entities: list[HaEntityConfig] = Field(min_length=1, max_length=64)
    timeout_s: float = Field(10.0, gt=0, le=120, description="auth, a service call and its read-back (real s)")
    heartbeat_s: float = Field(30.0, gt=0, le=600, description="ping period; no pong within timeout_s: reconnect")
    reconnect_initial_s: float = Field(1.0, gt=0, le=600, description="first reconnect delay (real s)")
    reconnect_max_s: float = Field(60.0, gt=0, le=3600, description="largest reconnect delay (real s, jittered)")
    control_interval_s: float = Field(10.0, gt=0, le=3600, description="the load switching policy runs this often")
    price_spike_per_kwh: float | None = Field(None, ge=-100, le=100,
                                              description="switch loads off at this import price or above "
                                                          "(the [tariff]'s currency); none: no price rule")
    release_margin_w: float = Field(200.0, ge=0, le=100_000,
                                    description="a shed load comes back on only if it fits this far under the "
                                                "import limit")

    @field_validator("url")
    @classmethod
    def _websocket_url(cls, v: str) -> str:
        if not re.match(r"^wss?://[^\s/?#]+(/[^\s?#]*)?$", v):
            raise ValueError(f"must be ws://host[:port]/api/websocket (or wss://), got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_token_and_a_house(self) -> HomeAssistantApiConfig:
        if (self.token is None) == (self.token_file is None):
            raise ValueError("give token or token_file (a long-lived access token), exactly one")
        if self.token is not None:
            _check_token(self.token.get_secret_value(), "token")
        elif self.token_file is not None:
            try:
                text = self.token_file.read_text().strip()
            except OSError as exc:
                raise ValueError(f"token_file {self.token_file}: {exc.strerror or exc}") from None
            _check_token(text, f"token_file {self.token_file}")
        if self.reconnect_initial_s > self.reconnect_max_s:
            raise ValueError(f"reconnect_initial_s ({self.reconnect_initial_s}) must be <= reconnect_max_s "
                             f"({self.reconnect_max_s})")
        ids, entity_ids = [e.id for e in self.entities], [e.entity_id for e in self.entities]
        entity_ids += [e.power_entity_id for e in self.entities if e.power_entity_id]
        for what, values in (("id", ids), ("entity_id", entity_ids)):
            twice = sorted({v for v in values if values.count(v) > 1})
            if twice:
                raise ValueError(f"entities: each {what} once, got {', '.join(twice)} twice")
        meters = [e.id for e in self.entities if e.role == "grid_meter"]
        if len(meters) > 1:
            raise ValueError(f"entities: at most one grid_meter, got {', '.join(meters)}")
        return self

    def token_value(self) -> str:
        if self.token is not None:
            return self.token.get_secret_value()
        assert self.token_file is not None
        return self.token_file.read_text().strip()


def _check_token(token: str, where: str) -> None:
    if not token or re.search(r"\s", token) or len(token) > 4096:
        raise ValueError(f"{where}: a token is one word without white space (at most 4096 characters)")


__all__ = ["SUPERVISOR_URL", "HaEntityConfig", "HomeAssistantApiConfig"]
