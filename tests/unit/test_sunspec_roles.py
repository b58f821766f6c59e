"""SunSpec as data (edge_agent.drivers.sunspec_roles) and the readings taken through it
(edge_agent.resources.sunspec_readings), without a device."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import pytest

from edge_agent.config import DeviceConfig, DevicePartConfig
from edge_agent.drivers.sunspec_points import GroupValues, ModelValues
from edge_agent.drivers.sunspec_roles import (
    BATTERY_COMMANDS,
    BATTERY_SOC,
    PV_LIMIT_COMMANDS,
    Role,
    offered_command,
)
from edge_agent.house_devices import sunspec_signs
from edge_agent.resources.house import DeviceConfigurationError
from edge_agent.resources.sunspec_readings import (
    SunSpecSigns,
    check_roles,
    house_readings,
    nameplate_models,
    sunspec_nameplate,
    unreadable,
    wanted,
)

HYBRID = frozenset({1, 103, 120, 123, 124, 160, 203, 802})  # the simulator's default model set
DER = frozenset({1, 701, 702, 713, 704, 203, 160, 802})


def mv(model_id: int, groups: Mapping[str, tuple[GroupValues, ...]] | None = None, bad_scale: tuple[str, ...] = (),
       **points: float | None) -> ModelValues:
    return ModelValues(name=str(model_id), points=MappingProxyType(points), groups=MappingProxyType(groups or {}),
                       model_id=model_id, bad_scale=bad_scale)


def hybrid(models: frozenset[int]) -> dict[Role, frozenset[int]]:
    return {"battery": models, "pv": models, "meter": models}


def test_each_role_reads_the_models_it_prefers() -> None:
    assert wanted(hybrid(HYBRID)) == {"meter": (203,), "battery": (124, 802), "pv": (160, 103)}
    # without 124 the SoC comes from 713, else 802; the DER inverter's AC power from 701
    assert wanted(hybrid(DER)) == {"meter": (203,), "battery": (713, 802), "pv": (160, 701)}
    assert wanted({"battery": frozenset({704, 802}), "meter": frozenset({213, 201})}) == {
        "meter": (213,), "battery": (802,)}


def test_house_signs_and_the_hybrids_pv() -> None:
    module = GroupValues("module", MappingProxyType({"DCW": 1500.0}), MappingProxyType({}))
    read = {203: mv(203, W=-700.0), 124: mv(124, ChaState=55.0), 802: mv(802, W=400.0, SoC=54.0),
            160: mv(160, {"module": (module, module)}), 103: mv(103, W=2600.0)}
    r = house_readings(hybrid(HYBRID), {"battery": read, "pv": read, "meter": read}, SunSpecSigns(), hybrid=True)
    # 802 W discharging positive -> charging positive; PV from the MPPTs, production negative
    assert (r.grid_w, r.soc_pct, r.battery_w, r.pv_w, r.inverter_ac_w) == (-700.0, 55.0, -400.0, -3000.0, -2600.0)
    no_mppt = {**read, 160: mv(160)}
    r = house_readings(hybrid(HYBRID), {"battery": no_mppt, "pv": no_mppt, "meter": no_mppt},
                       SunSpecSigns(meter_import_positive=False, battery_discharge_positive=False), hybrid=True)
    # the hybrid's AC power is PV and battery together: PV = -(AC) - battery
    assert (r.grid_w, r.battery_w, r.pv_w) == (700.0, 400.0, -3000.0)


def test_soc_falls_back_from_713_to_802_but_not_from_124() -> None:
    assert BATTERY_SOC.value(DER, {713: mv(713, SoC=None), 802: mv(802, SoC=61.0)}) == 61.0
    assert BATTERY_SOC.value(HYBRID, {124: mv(124, ChaState=None), 802: mv(802, SoC=61.0)}) is None


def test_unimplemented_points_are_reported_once_per_model() -> None:
    read = {203: mv(203, W=None), 124: mv(124, ChaState=50.0), 802: mv(802, W=1.0, bad_scale=("W (W_SF=-20)",)),
            160: mv(160), 103: mv(103, W=100.0)}
    names = {"battery": "dev", "pv": "dev", "meter": "dev"}
    refused = unreadable(hybrid(HYBRID), {"battery": read, "pv": read, "meter": read}, names)
    assert [(r.reason, r.detail.split(":")[0]) for r in refused] == [
        ("not_implemented", "dev model 203"), ("scale_factor", "dev model 802")]
    # 802 SoC is a fallback (713 first): not needed, not reported
    der = {713: mv(713, SoC=40.0), 802: mv(802, W=1.0, SoC=None), 203: mv(203, W=1.0), 701: mv(701, W=1.0)}
    assert unreadable(hybrid(DER), {"battery": der, "pv": der, "meter": der}, names) == []


def test_commands_write_in_order() -> None:
    storage = offered_command(BATTERY_COMMANDS, HYBRID)
    assert storage is not None and storage.scale == "pct"
    assert list(storage.points(40.0, 60).items()) == [
        ("InWRte", 40.0), ("OutWRte", -40.0), ("InOutWRte_RvrtTms", 60), ("ChaGriSet", 1), ("StorCtl_Mod", 3)]
    assert storage.release_points() == {"StorCtl_Mod": 0}
    der = offered_command(BATTERY_COMMANDS, DER)
    assert der is not None and der.scale == "W"
    assert list(der.points(-2000.0, 30).items()) == [("WSetRvrtTms", 30), ("WSetMod", 1), ("WSet", 2000.0),
                                                      ("WSetEna", 1)]  # injection positive
    limit = offered_command(PV_LIMIT_COMMANDS, HYBRID)
    assert limit is not None and limit.model == 123 and limit.owned == ("WMaxLimPct", "WMaxLim_Ena")
    assert offered_command(PV_LIMIT_COMMANDS, DER | {123}).model == 704  # type: ignore[union-attr]


def test_nameplate_from_120_or_the_der_models() -> None:
    assert nameplate_models(HYBRID) == [120, 124]
    read = {120: mv(120, WRtg=8000.0, WHRtg=10_000.0, MaxChaRte=5000.0, MaxDisChaRte=4000.0),
            124: mv(124, WChaMax=5000.0)}
    storage = offered_command(BATTERY_COMMANDS, HYBRID)
    assert storage is not None
    n = sunspec_nameplate(HYBRID, read, storage)
    assert (n.nameplate.rated_power_w, n.nameplate.capacity_wh, n.nameplate.wchamax_w, n.rated_w) == (
        8000.0, 10_000.0, 5000.0, 8000.0)
    bad = sunspec_nameplate(HYBRID, {**read, 124: mv(124, WChaMax=1e7)}, storage)
    assert bad.not_controllable is not None and "WChaMax" in bad.not_controllable and bad.refused
    with pytest.raises(DeviceConfigurationError, match="WChaMax is not implemented"):
        sunspec_nameplate(HYBRID, {**read, 124: mv(124, WChaMax=None)}, storage)
    assert nameplate_models(DER) == [702, 713]
    der = offered_command(BATTERY_COMMANDS, DER)
    assert der is not None
    with pytest.raises(DeviceConfigurationError, match="cannot bound WSet"):
        sunspec_nameplate(DER, {702: mv(702, WMaxRtg=6000.0), 713: mv(713, WHRtg=9000.0)}, der)


def test_a_device_that_cannot_serve_its_role_is_refused() -> None:
    names = {"battery": "b", "pv": "b", "meter": "b"}
    assert check_roles(hybrid(HYBRID), names, True, "h:502").model == 124
    with pytest.raises(DeviceConfigurationError, match="device at h:502 offers SunSpec models"):
        check_roles(hybrid(HYBRID - {203}), names, True, "h:502")
    with pytest.raises(DeviceConfigurationError, match="no state of charge"):
        check_roles(hybrid(frozenset({203, 704})), names, True, "h:502")
    split = {"battery": "b", "meter": "m", "pv": "p"}
    with pytest.raises(DeviceConfigurationError, match="the pv device p offers"):
        check_roles({"battery": HYBRID, "meter": frozenset({203}), "pv": frozenset({123})}, split, False, "h:502")


def test_signs_of_the_parts_override_the_devices() -> None:
    assert sunspec_signs(DeviceConfig(meter_import_positive=False)) == SunSpecSigns(False, False, True)
    parts = [DevicePartConfig(role="battery", host="b", battery_discharge_positive=False),
             DevicePartConfig(role="meter", host="m"),
             DevicePartConfig(role="ev_charger", host="e", meter_import_positive=False)]
    assert sunspec_signs(DeviceConfig(parts=parts)) == SunSpecSigns(True, False, False)
