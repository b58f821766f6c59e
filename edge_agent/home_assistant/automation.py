"""Events for Home Assistant automations (pure): what starts now that did not hold before.

Four MQTT ``event`` entities, each with its event types (README, "Automations"):

* ``price_event``: ``cheap_window_started`` (the import price falls to the cheapest quarter of
  the next 24 h's known prices), ``negative_price_started`` (the import price falls below 0);
  only with a ``[tariff]``;
* ``grid_limit_event``: ``export_limit_binding``, ``import_limit_binding`` (the safety clamp
  starts holding the battery at the house's export cap or import limit, the live feeder
  envelope included);
* ``aggregator_event``: ``aggregator_unreachable`` (in ``vpp`` mode, no stream for
  ``UNREACHABLE_AFTER_S``), ``aggregator_reachable`` (the stream is back after that);
* ``plan_event``: ``plan_refused`` (the agent rejected a plan or a grid signal; the reason
  is in the payload).

An event fires on a transition only, never for a condition that already held when the agent
(or its MQTT session) started, so a restart does not replay them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

UNREACHABLE_AFTER_S = 60.0
CHEAP_QUANTILE = 0.25

EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "price_event": ("cheap_window_started", "negative_price_started"),
    "grid_limit_event": ("export_limit_binding", "import_limit_binding"),
    "aggregator_event": ("aggregator_unreachable", "aggregator_reachable"),
    "plan_event": ("plan_refused",),
}


@dataclass(frozen=True, slots=True)
class Conditions:
    """What holds now, as far as the events care."""

    price_per_kwh: float | None = None  # the import price of the current slot (None: no tariff)
    cheap: bool = False  # at or below the cheapest quarter of the next 24 h
    binding: frozenset[str] = frozenset()  # "export_cap", "import_limit" (the clamp's rules)
    unreachable: bool = False  # vpp mode, no stream for UNREACHABLE_AFTER_S
    plan_refusals: int = 0  # plans and grid signals refused since the start
    last_refusal: str = ""  # its reason


def cheap_now(import_prices_per_kwh: np.ndarray) -> tuple[float | None, bool]:
    """(the current slot's price, whether it is in the cheapest quarter of the horizon given);
    non-finite prices are left out (a tariff never has them; a series might)."""
    p = np.asarray(import_prices_per_kwh, dtype=float)
    if p.size == 0 or not math.isfinite(float(p[0])):
        return None, False
    finite = p[np.isfinite(p)]
    return float(p[0]), bool(p[0] <= np.quantile(finite, CHEAP_QUANTILE))


def events(before: Conditions | None, now: Conditions) -> list[tuple[str, dict[str, object]]]:
    """(entity key, payload) for each event that starts between ``before`` and ``now``."""
    if before is None:
        return []
    out: list[tuple[str, dict[str, object]]] = []
    if now.price_per_kwh is not None:
        if now.cheap and not before.cheap:
            out.append(("price_event", {"event_type": "cheap_window_started", "price_per_kwh": now.price_per_kwh}))
        was_negative = before.price_per_kwh is not None and before.price_per_kwh < 0
        if now.price_per_kwh < 0 and not was_negative:
            out.append(("price_event", {"event_type": "negative_price_started", "price_per_kwh": now.price_per_kwh}))
    for rule, kind in (("export_cap", "export_limit_binding"), ("import_limit", "import_limit_binding")):
        if rule in now.binding and rule not in before.binding:
            out.append(("grid_limit_event", {"event_type": kind}))
    if now.unreachable != before.unreachable:
        kind = "aggregator_unreachable" if now.unreachable else "aggregator_reachable"
        out.append(("aggregator_event", {"event_type": kind}))
    if now.plan_refusals > before.plan_refusals:
        out.append(("plan_event", {"event_type": "plan_refused", "reason": now.last_refusal,
                                   "count": now.plan_refusals - before.plan_refusals}))
    return out
