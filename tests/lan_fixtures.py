"""The LAN device simulators by catalogue entry, for the plug, meter and micro-inverter tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simulator.envoy_device import SIM_TOKEN, EnvoySim
from simulator.ez1_device import Ez1Sim
from simulator.lan_base import LanFaults
from simulator.opendtu_device import OpenDtuSim
from simulator.p1_device import P1Sim
from simulator.shelly_device import ShellySim
from simulator.tasmota_device import TasmotaSim

SIMS: dict[str, Callable[..., Any]] = {
    "shelly_plug_s": lambda **kw: ShellySim("shelly_plug_s", **kw),
    "shelly_pro_3em": lambda **kw: ShellySim("shelly_pro_3em", **kw),
    "shelly_pro_em": lambda **kw: ShellySim("shelly_pro_em", **kw),
    "tasmota_plug": lambda **kw: TasmotaSim(**kw),
    "dsmr5_p1": lambda **kw: P1Sim(interval_s=0.05, **kw),
    "opendtu_hoymiles": lambda **kw: OpenDtuSim(**{"apply_delay_s": 0.3, **kw}),
    "apsystems_ez1": lambda **kw: Ez1Sim(**{"apply_delay_s": 0.3, **kw}),
    "enphase_envoy": lambda **kw: EnvoySim(**kw),
}
# What the driver needs to reach each simulator with its defaults
DEVICE_KW: dict[str, dict[str, str]] = {"opendtu_hoymiles": {"serial": "114182180001", "password": "openDTU42"},
                                        "enphase_envoy": {"token": SIM_TOKEN}}
# The field that carries each model's power (what a hostile value replaces)
POWER_FIELD = {"shelly_plug_s": "apower", "shelly_pro_3em": "total_act_power", "shelly_pro_em": "act_power",
               "tasmota_plug": "Power", "dsmr5_p1": "1-0:1.7.0", "opendtu_hoymiles": "Power", "apsystems_ez1": "p1",
               "enphase_envoy": "wNow"}
# Each model's house role for the tests, and the power it reads with the simulators' defaults (W)
ROLE = {"shelly_plug_s": "load", "shelly_pro_3em": "grid_meter", "shelly_pro_em": "grid_meter",
        "tasmota_plug": "load", "dsmr5_p1": "grid_meter", "opendtu_hoymiles": "pv", "apsystems_ez1": "pv",
        "enphase_envoy": "pv"}
DEFAULT_POWER_W = {"shelly_plug_s": 120.0, "shelly_pro_3em": 800.0, "shelly_pro_em": 800.0, "tasmota_plug": 45.0,
                   "dsmr5_p1": 800.0, "opendtu_hoymiles": -600.0, "apsystems_ez1": -600.0, "enphase_envoy": -1600.0}
# A power each model can read (a PV only produces): what the frozen-value test sets
OTHER_POWER_W = {m: (-333.0 if r == "pv" else 333.0) for m, r in ROLE.items()}


def set_power(sim: LanFaults, model: str, watts: float) -> None:
    """Make the simulated device read ``watts`` (a meter: import > 0; a plug: its load, switched on)."""
    if isinstance(sim, OpenDtuSim | Ez1Sim | EnvoySim):  # the sun gives -watts (production < 0)
        sim.pv.available_w = -watts
    elif isinstance(sim, P1Sim | ShellySim) and ROLE[model] == "grid_meter":
        sim.power_w = watts
    elif isinstance(sim, ShellySim | TasmotaSim):
        sim.load_w = watts
