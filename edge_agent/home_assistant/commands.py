"""Commands from Home Assistant (pure): a command topic's payload parsed and bounded, or refused.

Whatever arrives on a command topic is outside input: garbage, NaN, out-of-range numbers and
oversized payloads are refused with a short reason label (a metric label) and the text.  What
passes is then checked and applied by the agent (``EdgeAgent.apply_local``) like a config value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edge_agent.home_assistant.entities import OVERRIDE_HOURS, HouseSpec

MAX_PAYLOAD = 64  # bytes: every legitimate command is a word or a number
PRESS = "PRESS"  # Home Assistant's default payload_press


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # control_mode | reserve_soc | override_hours | hold_battery | charge_now | cancel_override
    value: str | float | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    label: str  # short, stable: a metric label value
    detail: str


COMMAND_KEYS = ("control_mode", "reserve_soc", "override_hours", "hold_battery", "charge_now", "cancel_override")


def _number(key: str, text: str, lo: float, hi: float) -> Command | Refused:
    try:
        v = float(text)
    except ValueError:
        return Refused("not_a_number", f"{key}: {text[:32]!r} is not a number")
    if not math.isfinite(v):
        return Refused("not_a_number", f"{key}: {text!r} is not a finite number")
    if not lo <= v <= hi:
        return Refused("out_of_range", f"{key}: {v:g} outside [{lo:g}, {hi:g}]")
    return Command(key, v)


def parse(spec: HouseSpec, key: str, payload: bytes) -> Command | Refused:
    if key not in COMMAND_KEYS:
        return Refused("unknown_command", f"no command {key[:40]!r}")
    if len(payload) > MAX_PAYLOAD:
        return Refused("too_long", f"{key}: payload of {len(payload)} bytes (at most {MAX_PAYLOAD})")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return Refused("not_text", f"{key}: payload is not UTF-8")
    if key == "control_mode":
        if text not in spec.modes():
            return Refused("unknown_mode", f"control_mode: {text[:32]!r} is not one of {', '.join(spec.modes())}")
        return Command(key, text)
    if key == "reserve_soc":
        return _number(key, text, 0.0, spec.reserve_max())
    if key == "override_hours":
        return _number(key, text, *OVERRIDE_HOURS)
    if text != PRESS:
        return Refused("bad_press", f"{key}: payload {text[:32]!r} (a button sends {PRESS})")
    return Command(key)
