"""S2 (EN 50491-12-2) descriptions of the house's resources, built and validated with s2-python.

* Battery -> FRBC: storage whose fill level is the SoC in %; one actuator
  with three operation modes, charge / idle / discharge, whose power ranges
  come from the nameplate (W, consumption positive: charging > 0) and whose
  fill rates (% per second) follow from the power, the capacity and the
  efficiencies.
* PV -> PEBC: a curtailment envelope: the lower power limit may be set
  anywhere in [-rated, 0] W (production negative; a limit of -X W caps
  production at X W), the upper limit stays at 0; curtailed energy vanishes.
* The grid meter is measurement only (no S2 control type: NOT_CONTROLABLE).

These are the s2-python models (their validators run on construction);
the agent still sends :mod:`vpp_common.messages` over the uplink, which
converts at its boundary only.  Ids are stable UUIDs derived from the
resource id, so a re-sent description names the same actuator and modes.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from s2python.common import Commodity, CommodityQuantity, NumberRange, PowerRange
from s2python.frbc import (
    FRBCActuatorDescription,
    FRBCOperationMode,
    FRBCOperationModeElement,
    FRBCStorageDescription,
    FRBCStorageStatus,
    FRBCSystemDescription,
)
from s2python.pebc import (
    PEBCAllowedLimitRange,
    PEBCPowerConstraints,
    PEBCPowerEnvelopeConsequenceType,
    PEBCPowerEnvelopeLimitType,
)

from edge_agent.resources.nameplate import BatteryNameplate

# (abnormal_condition_only is passed explicitly: s2-python 0.11.1 leaves a pydantic FieldInfo as its
# default, which then fails to serialise.)

_NS = uuid.UUID("6f1c7a52-1d2e-4c4b-9a0e-5b8f3e0c2a11")  # namespace of this project's S2 ids
POWER = CommodityQuantity.ELECTRIC_POWER_3_PHASE_SYMMETRIC


def stable_id(*parts: str) -> uuid.UUID:
    """A UUID that is the same for the same resource/mode names (uuid5)."""
    return uuid.uuid5(_NS, "/".join(parts))


def _pct_per_s(power_w: float, capacity_wh: float) -> float:
    return power_w / capacity_wh * 100.0 / 3600.0


def battery_frbc_system_description(resource_id: str, battery: BatteryNameplate,
                                    valid_from: datetime) -> FRBCSystemDescription:
    """FRBC.SystemDescription of a battery: fill level = SoC %, modes charge / idle / discharge.

    Charging is offered below ``max_soc_pct`` and discharging above
    ``reserve_soc_pct`` (the agent's safety reserve).  Power ranges in W,
    charging positive; fill rates in % per second (cell side, after losses).
    """
    b = battery
    full = NumberRange(start_of_range=0.0, end_of_range=100.0)

    def mode(name: str, lo_w: float, hi_w: float, fill: NumberRange, rate: NumberRange) -> FRBCOperationMode:
        return FRBCOperationMode(
            id=stable_id(resource_id, name), diagnostic_label=name, abnormal_condition_only=False,
            elements=[FRBCOperationModeElement(
                fill_level_range=fill, fill_rate=rate,
                power_ranges=[PowerRange(start_of_range=lo_w, end_of_range=hi_w, commodity_quantity=POWER)])])

    modes = [
        mode("charge", 0.0, b.max_charge_w, NumberRange(start_of_range=0.0, end_of_range=b.max_soc_pct),
             NumberRange(start_of_range=0.0,
                         end_of_range=_pct_per_s(b.max_charge_w * b.charge_efficiency, b.capacity_wh))),
        mode("idle", 0.0, 0.0, full, NumberRange(start_of_range=0.0, end_of_range=0.0)),
        mode("discharge", -b.max_discharge_w, 0.0, NumberRange(start_of_range=b.reserve_soc_pct, end_of_range=100.0),
             NumberRange(start_of_range=-_pct_per_s(b.max_discharge_w / b.discharge_efficiency, b.capacity_wh),
                         end_of_range=0.0)),
    ]
    actuator = FRBCActuatorDescription(
        id=stable_id(resource_id, "inverter"), diagnostic_label=f"{resource_id} inverter",
        supported_commodities=[Commodity.ELECTRICITY], operation_modes=modes, transitions=[], timers=[])
    storage = FRBCStorageDescription(
        diagnostic_label=resource_id, fill_level_label="SoC %", provides_leakage_behaviour=False,
        provides_fill_level_target_profile=False, provides_usage_forecast=False, fill_level_range=full)
    return FRBCSystemDescription(message_id=uuid.uuid4(), valid_from=valid_from, actuators=[actuator],
                                 storage=storage)


def battery_frbc_storage_status(soc_pct: float) -> FRBCStorageStatus:
    """FRBC.StorageStatus: present fill level = SoC in %.  Only for a fresh (non-stale) SoC."""
    return FRBCStorageStatus(message_id=uuid.uuid4(), present_fill_level=soc_pct)


def pv_pebc_power_constraints(resource_id: str, rated_w: float, valid_from: datetime,
                              valid_until: datetime | None = None) -> PEBCPowerConstraints:
    """PEBC.PowerConstraints of curtailable PV: lower limit in [-rated_w, 0] W, upper limit 0 W."""
    if rated_w <= 0:
        raise ValueError(f"rated_w must be > 0 W, got {rated_w}")
    return PEBCPowerConstraints(
        message_id=uuid.uuid4(), id=stable_id(resource_id, "constraints"), valid_from=valid_from,
        valid_until=valid_until, consequence_type=PEBCPowerEnvelopeConsequenceType.VANISH,
        allowed_limit_ranges=[
            PEBCAllowedLimitRange(commodity_quantity=POWER, limit_type=PEBCPowerEnvelopeLimitType.LOWER_LIMIT,
                                  abnormal_condition_only=False,
                                  range_boundary=NumberRange(start_of_range=-rated_w, end_of_range=0.0)),
            PEBCAllowedLimitRange(commodity_quantity=POWER, limit_type=PEBCPowerEnvelopeLimitType.UPPER_LIMIT,
                                  abnormal_condition_only=False,
                                  range_boundary=NumberRange(start_of_range=0.0, end_of_range=0.0)),
        ])


__all__ = [
    "BatteryNameplate", "battery_frbc_storage_status", "battery_frbc_system_description",
    "pv_pebc_power_constraints", "stable_id",
]
