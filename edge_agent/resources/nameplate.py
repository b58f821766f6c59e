"""A battery's nameplate as the house's Resource Managers give it (W magnitudes, Wh, % and
fractions); its S2 FRBC description is built from it in ``resources/s2.py``, which needs
s2-python: kept apart so that a house loads s2-python only where S2 messages are made."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatteryNameplate:
    """What FRBC needs to know of a battery.  W magnitudes, Wh, % and fractions."""

    max_charge_w: float
    max_discharge_w: float
    capacity_wh: float
    reserve_soc_pct: float = 0.0
    max_soc_pct: float = 100.0
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95

    def __post_init__(self) -> None:
        if self.max_charge_w < 0 or self.max_discharge_w < 0 or self.capacity_wh <= 0:
            raise ValueError("BatteryNameplate: powers must be >= 0 W and capacity_wh > 0")
        if not 0 <= self.reserve_soc_pct < self.max_soc_pct <= 100:
            raise ValueError("BatteryNameplate: need 0 <= reserve_soc_pct < max_soc_pct <= 100")
