"""Futures around the forecast, for a plan that weighs its forecast errors (pure numpy).

A plan made on one forecast sells at night what a heavier night then needs, and fills
batteries in the morning where a sunnier noon then needs the room: the errors cost
unevenly, and a plan on the mean cannot see that.  The fleet LP can instead weigh a
few futures at once (``FleetProblem.scenario_load_w``): one battery schedule until the
next re-plan, the rest of each future free to adapt.  Those futures are made here from
each house's own forecasts:

* household load scaled by ``load_factor`` (households' nights are off by ~30 % on a
  typical day, whatever history the forecast averages);
* PV moved toward what the panels give under a clear sky (``pv_toward_clear_sky`` > 0)
  or scaled down (< 0): a day is sunnier or cloudier as a whole.

The futures depart from the forecast only after the non-anticipative slots: what
happens before the next re-plan is seen by the meters and met by the live control.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Future:
    """One future relative to the forecast."""

    load_factor: float  # household load x this (>= 0)
    # > 0: PV this share of the way from the forecast to the clear-sky PV (1 = a clear sky);
    # < 0: PV scaled down by this share (-0.3 = 30 % less); 0 = as forecast
    pv_toward_clear_sky: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.load_factor) and self.load_factor >= 0):
            raise ValueError(f"load_factor must be >= 0, got {self.load_factor}")
        if not (np.isfinite(self.pv_toward_clear_sky) and -1.0 <= self.pv_toward_clear_sky <= 1.0):
            raise ValueError(f"pv_toward_clear_sky must lie in -1..1, got {self.pv_toward_clear_sky}")


# A heavy and cloudy future and a light and clear one (the forecast itself is not among them:
# it adds little and a third of the solve time).  Measured on vpp-sim's default scenario
# (docs/fleet-strategy.md): the fleet got 90.6 % of the perfect-foresight saving, against
# 84.0 % planning on the forecast (with a night reserve).
DEFAULT_FUTURES = (Future(1.4, -0.3), Future(0.6, 1.0))


def make_futures(load_w: np.ndarray, pv_power_w: np.ndarray, pv_clear_sky_w: np.ndarray,
                 futures: tuple[Future, ...], tied_slots: int) -> tuple[np.ndarray, np.ndarray]:
    """(K, N, T) load (W >= 0) and PV (W <= 0) of each future in ``futures``.

    ``load_w``, ``pv_power_w``: (N, T) the forecasts; ``pv_clear_sky_w``: (N, T) the PV a
    clear sky gives (W <= 0; where it is less than the forecast, the forecast counts).
    The first ``tied_slots`` slots of every future are the forecast's.
    """
    load_w = np.asarray(load_w, dtype=float)
    pv = np.asarray(pv_power_w, dtype=float)
    clear = np.minimum(np.asarray(pv_clear_sky_w, dtype=float), pv)  # more production = more negative
    later = np.arange(load_w.shape[1]) >= tied_slots
    loads, pvs = [], []
    for f in futures:
        a = f.pv_toward_clear_sky
        moved = pv + a * (clear - pv) if a >= 0 else pv * (1.0 + a)
        loads.append(np.where(later, load_w * f.load_factor, load_w))
        pvs.append(np.where(later, moved, pv))
    n, t = load_w.shape
    if not futures:
        return np.zeros((0, n, t)), np.zeros((0, n, t))
    return np.array(loads), np.array(pvs)


def futures_fields(load_w: np.ndarray, pv_power_w: np.ndarray, pv_clear_sky_w: np.ndarray,
                   futures: tuple[Future, ...], tied_slots: int) -> dict[str, np.ndarray | int]:
    """The ``FleetProblem`` fields of a plan over ``futures`` (none: the forecasts alone): the
    first future takes the forecast's place (the plans follow it after the tied slots), the
    others are the scenarios.  Arguments as in ``make_futures``."""
    if not futures:
        return {"load_w": load_w, "pv_power_w": pv_power_w, "scenario_load_w": np.zeros((0, 0, 0)),
                "scenario_pv_power_w": np.zeros((0, 0, 0)), "nonanticipative_slots": 0}
    f_load, f_pv = make_futures(load_w, pv_power_w, pv_clear_sky_w, futures, tied_slots)
    return {"load_w": f_load[0], "pv_power_w": f_pv[0], "scenario_load_w": f_load[1:],
            "scenario_pv_power_w": f_pv[1:], "nonanticipative_slots": tied_slots if len(futures) > 1 else 0}
