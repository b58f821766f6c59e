"""Home Assistant MQTT discovery payloads for one house (pure).

Per-entity discovery topics ``<prefix>/<component>/<node_id>/<key>/config`` (the form Home
Assistant reads from 2024.3 on; the device-level form needs 2024.11).  Every entity carries the
same ``device`` block (one device per house), ``origin``, the availability topic (the agent's
last will says ``offline``) and a ``unique_id`` made of the node id and the entity key only, so
it is the same across restarts.  States go to ``vpp/<node_id>/<key>/state``, commands come on
``vpp/<node_id>/<key>/set``.

Signs as Home Assistant users expect them: grid import > 0, battery charging > 0 (the agent's
own convention), PV production > 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from edge_agent.home_assistant.automation import EVENT_TYPES

MODES = ("vpp", "self_consumption", "tou")
ACTIVITIES = ("plan", "fallback", "safe_idle", "override", "waiting")
OVERRIDE_HOURS = (0.25, 24.0)  # bounds of the override duration number
ORIGIN = {"name": "vpp edge agent"}


@dataclass(frozen=True, slots=True)
class HouseSpec:
    """What decides the set of entities: the house and its config."""

    node_id: str
    house_name: str
    sw_version: str
    discovery_prefix: str = "homeassistant"
    has_ev: bool = False
    has_battery: bool = True  # False: a house of LAN devices only, no battery entities (docs/lan-devices.md)
    currency: str | None = None  # a tariff: money saved and the tou mode
    max_soc_pct: float = 100.0
    model: str = "Edge agent"

    @property
    def base(self) -> str:
        return f"vpp/{self.node_id}"

    @property
    def availability_topic(self) -> str:
        return f"{self.base}/availability"

    def state_topic(self, key: str) -> str:
        return f"{self.base}/{key}/state"

    def command_topic(self, key: str) -> str:
        return f"{self.base}/{key}/set"

    def modes(self) -> tuple[str, ...]:
        return MODES if self.currency is not None else MODES[:2]

    def reserve_max(self) -> float:
        """The config's own check: reserve_soc_pct < max_soc_pct (whole percent in the UI)."""
        return max(0.0, self.max_soc_pct - 1)


@dataclass(frozen=True, slots=True)
class Entity:
    component: str  # sensor | select | number | button | event
    key: str
    config: dict[str, object]  # component-specific keys (the common ones are added by discovery())


def _power(key: str, name: str) -> Entity:
    return Entity("sensor", key, {"name": name, "device_class": "power", "unit_of_measurement": "W",
                                  "state_class": "measurement", "suggested_display_precision": 0})


def _energy(key: str, name: str) -> Entity:
    return Entity("sensor", key, {"name": name, "device_class": "energy", "unit_of_measurement": "kWh",
                                  "state_class": "total_increasing", "suggested_display_precision": 3})


def entities(spec: HouseSpec) -> list[Entity]:
    out = [
        _power("grid_power", "Grid power"),
        _power("pv_power", "PV power"),
        _power("battery_power", "Battery power"),
        _power("load_power", "House load"),
    ]
    if spec.has_ev:
        out.append(_power("ev_power", "EV charger power"))
    out += [
        _energy("grid_import", "Grid import"),
        _energy("grid_export", "Grid export"),
        _energy("pv_production", "PV production"),
        _energy("battery_in", "Battery energy in"),
        _energy("battery_out", "Battery energy out"),
        Entity("sensor", "battery_soc", {"name": "Battery", "device_class": "battery", "unit_of_measurement": "%",
                                         "state_class": "measurement"}),
        Entity("sensor", "activity", {"name": "Activity", "device_class": "enum", "options": list(ACTIVITIES),
                                      "icon": "mdi:home-lightning-bolt"}),
        # the reason as text, and the plan's next hours as attributes (JSON on its own topic)
        Entity("sensor", "reason", {"name": "Reason", "icon": "mdi:information-outline",
                                    "json_attributes_topic": f"{spec.base}/reason/attributes"}),
        Entity("select", "control_mode", {"name": "Control mode", "options": list(spec.modes()),
                                          "icon": "mdi:tune"}),
        Entity("number", "reserve_soc", {"name": "Battery reserve", "min": 0, "max": spec.reserve_max(),
                                         "step": 1, "mode": "box", "unit_of_measurement": "%",
                                         "icon": "mdi:battery-lock"}),
        Entity("number", "override_hours", {"name": "Override duration", "min": OVERRIDE_HOURS[0],
                                            "max": OVERRIDE_HOURS[1], "step": 0.25, "mode": "box",
                                            "unit_of_measurement": "h", "icon": "mdi:timer-outline"}),
        Entity("button", "hold_battery", {"name": "Hold battery", "icon": "mdi:battery-off-outline"}),
        Entity("button", "charge_now", {"name": "Charge now", "icon": "mdi:battery-charging-high"}),
        Entity("button", "cancel_override", {"name": "Cancel override", "icon": "mdi:close-circle-outline"}),
    ]
    if spec.currency is not None:
        out.append(Entity("sensor", "money_saved_today", {"name": "Money saved today", "device_class": "monetary",
                                                          "unit_of_measurement": spec.currency,
                                                          "suggested_display_precision": 2}))
    for key, (name, icon) in EVENTS.items():  # for automations (automation.py)
        if key != "price_event" or spec.currency is not None:
            out.append(Entity("event", key, {"name": name, "event_types": list(EVENT_TYPES[key]), "icon": icon}))
    return out if spec.has_battery else [e for e in out if e.key not in BATTERY_ENTITIES]


# What a house without a battery has nothing to show or do with (the money saved is the battery's)
BATTERY_ENTITIES = frozenset({"battery_power", "battery_in", "battery_out", "battery_soc", "reserve_soc",
                              "hold_battery", "charge_now", "money_saved_today"})


EVENTS = {
    "price_event": ("Price", "mdi:cash-clock"),
    "grid_limit_event": ("Grid limit", "mdi:transmission-tower-export"),
    "aggregator_event": ("Aggregator", "mdi:cloud-alert"),
    "plan_event": ("Plan", "mdi:calendar-alert"),
}


def device_block(spec: HouseSpec) -> dict[str, object]:
    return {"identifiers": [f"vpp_{spec.node_id}"], "name": spec.house_name, "manufacturer": "VPP project",
            "model": spec.model, "sw_version": spec.sw_version}


def discovery_topic(spec: HouseSpec, entity: Entity) -> str:
    return f"{spec.discovery_prefix}/{entity.component}/{spec.node_id}/{entity.key}/config"


def discovery_payload(spec: HouseSpec, entity: Entity) -> dict[str, object]:
    payload: dict[str, object] = {
        **entity.config,
        "unique_id": f"vpp_{spec.node_id}_{entity.key}",
        "object_id": f"vpp_{spec.node_id}_{entity.key}",
        "availability": [{"topic": spec.availability_topic}],
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device_block(spec),
        "origin": {**ORIGIN, "sw_version": spec.sw_version},
    }
    if entity.component != "button":
        payload["state_topic"] = spec.state_topic(entity.key)
    if entity.component in ("select", "number", "button"):
        payload["command_topic"] = spec.command_topic(entity.key)
    return payload


def discovery(spec: HouseSpec) -> list[tuple[str, str]]:
    """(topic, JSON payload) of every entity: published retained."""
    return [(discovery_topic(spec, e), json.dumps(discovery_payload(spec, e), sort_keys=True))
            for e in entities(spec)]
