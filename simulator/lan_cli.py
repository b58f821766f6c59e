"""``vpp-sim lan-device``: serve one simulated smart plug, meter (Shelly RPC, Tasmota, DSMR P1) or
micro-inverter (OpenDTU, APsystems EZ1, Enphase IQ Gateway) with the
Modbus simulators' faults and fault control channel (simulator/fault_control.py)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulator.lan_base import LanFaults

# The LAN catalogue's entries (a test keeps them equal); the simulators are imported when one is served
LAN_MODELS = ("shelly_plug_s", "shelly_pro_3em", "shelly_pro_em", "tasmota_plug", "dsmr5_p1", "opendtu_hoymiles",
              "apsystems_ez1", "enphase_envoy")
MICRO_INVERTERS = ("opendtu_hoymiles", "apsystems_ez1", "enphase_envoy")


def make_lan_sim(model: str, *, password: str | None = None, power_w: float | None = None,
                 interval_s: float = 1.0) -> LanFaults:
    """The simulator of a LAN catalogue entry; ``power_w``: a plug's load, a meter's power (import > 0),
    a micro-inverter's production (< 0: what the sun gives; the limit may hold it lower)."""
    if model in MICRO_INVERTERS:
        return _micro_sim(model, password, power_w)
    from simulator.p1_device import P1Sim
    from simulator.shelly_device import MODELS, ShellySim
    from simulator.tasmota_device import TasmotaSim

    sim: ShellySim | TasmotaSim | P1Sim
    if model in MODELS:
        sim = ShellySim(model, password=password)
    elif model == "tasmota_plug":
        sim = TasmotaSim(password=password)
    elif model == "dsmr5_p1":
        if password is not None:
            raise ValueError("a P1 port has no password")
        sim = P1Sim(interval_s=interval_s)
    else:
        raise ValueError(f"unknown LAN model {model!r}; known: {', '.join(LAN_MODELS)}")
    if power_w is not None:
        if isinstance(sim, ShellySim | TasmotaSim) and model in ("shelly_plug_s", "tasmota_plug"):
            sim.load_w = power_w
        elif isinstance(sim, ShellySim | P1Sim):
            sim.power_w = power_w
    return sim


def _micro_sim(model: str, password: str | None, power_w: float | None) -> LanFaults:
    from simulator.envoy_device import EnvoySim
    from simulator.ez1_device import Ez1Sim
    from simulator.opendtu_device import OpenDtuSim

    if power_w is not None and power_w > 0:
        raise ValueError(f"{model}: --power is production, < 0 (docs/architecture.md)")
    sim: OpenDtuSim | Ez1Sim | EnvoySim
    if model == "opendtu_hoymiles":
        sim = OpenDtuSim(password=password) if password else OpenDtuSim()
    elif model == "apsystems_ez1":
        if password is not None:
            raise ValueError("the EZ1's local API has no password")
        sim = Ez1Sim()
    else:
        sim = EnvoySim(token=password) if password else EnvoySim()
    if power_w is not None:
        sim.pv.available_w = -power_w
    return sim


def _number(positive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(v) or abs(v) > 1e6 or (positive and v <= 0):
            raise argparse.ArgumentTypeError(f"{text!r}: need a finite number{' > 0' if positive else ''} "
                                             "within +-1e6")
        return v

    return parse


def add_parser(sub: Any, fault_args: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("lan-device", help="serve one simulated smart plug or meter (Shelly, Tasmota, P1)",
                       description="Serve the device of a LAN catalogue entry (edge_agent/catalogue/lan/*.toml) "
                                   "over its own protocol until SIGINT/SIGTERM: Shelly Gen2+ RPC or Tasmota over "
                                   "HTTP, DSMR 5 telegrams over TCP. Point edge-agent scan --lan or an agent's "
                                   "[[lan_devices]] at it.")
    p.add_argument("--model", required=True, choices=LAN_MODELS, help="LAN catalogue entry id")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    p.add_argument("--password", help="require this password (Shelly digest auth, Tasmota web password, OpenDTU "
                                      "admin: default openDTU42) or, for enphase_envoy, this token")
    p.add_argument("--power", type=_number(False), default=None, help="W: a plug's load when on, a meter's power (import > 0)")
    p.add_argument("--interval", type=_number(True), default=1.0, help="P1: seconds between telegrams (default 1)")
    p.add_argument("--appliance", choices=("washer", "freezer", "station"), default=None,
                   help="a plug's appliance (simulator/appliances.py): a washing machine (armed at start; 'arm' on "
                        "the control port arms it again), a freezer on its thermostat, a power station charging")
    fault_args(p)


async def serve(args: argparse.Namespace, serve_with_faults: Any) -> int:
    from vpp_common.config import ConfigError

    try:
        sim = make_lan_sim(args.model, password=args.password, power_w=args.power, interval_s=args.interval)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    sim.bind = (args.host, args.port)
    if getattr(args, "appliance", None) is not None:
        from simulator.appliances import WashingMachine, make_appliance

        if not hasattr(sim, "appliance"):
            raise ConfigError(f"--appliance needs a plug (shelly_plug_s, tasmota_plug), not {args.model}")
        appliance = make_appliance(args.appliance)
        if isinstance(appliance, WashingMachine):
            appliance.arm()
        sim.appliance = appliance
    scheme = "tcp" if args.model == "dsmr5_p1" else "https" if args.model == "enphase_envoy" else "http"

    def banner() -> None:
        print(f"{args.model} simulator on {scheme}://{args.host}:{sim.listener.port if sim.listener else args.port}",
              flush=True)

    return int(await serve_with_faults(args, sim, banner))


def _plug(text: str) -> tuple[str, float]:
    pid, _, watts = text.partition("=")
    try:
        w = float(watts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--plug {text!r}: need id=W, e.g. washer=150") from None
    if not pid or not 0 <= w <= 4000:
        raise argparse.ArgumentTypeError(f"--plug {text!r}: need id=W with 0 <= W <= 4000")
    return pid, w


def add_house_parser(sub: Any) -> None:
    p = sub.add_parser("lan-house", help="serve a house of LAN devices: OpenDTU, plugs, a P1 meter that follows them",
                       description="Serve a house of LAN devices only (docs/lan-devices.md): an OpenDTU with a "
                                   "Hoymiles, Shelly plugs and a DSMR 5 P1 meter whose reading is the house's balance "
                                   "(load + plugs - PV), until SIGINT/SIGTERM; prints an edge-agent config for it.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="the first device's port, the others follow (default: free)")
    p.add_argument("--load", type=float, default=300.0, help="W the house draws besides its plugs (default 300)")
    p.add_argument("--pv", type=float, default=1600.0, help="W the panels give (default 1600)")
    p.add_argument("--apply-delay", type=float, default=3.0, help="s until the OpenDTU applies a limit (default 3)")
    p.add_argument("--plug", type=_plug, action="append", help="id=W, repeatable (default washer=150 freezer=80 "
                                                               "station=200)")
    p.add_argument("--control-port", type=int, default=None, help="fault control of the P1 meter (vpp-sim fault)")


async def serve_house(args: argparse.Namespace) -> int:
    from simulator.fault_control import ControlServer
    from simulator.lan_house import LanHouseSim
    from vpp_common.cli import run_until_signal
    from vpp_common.config import ConfigError

    for name, v, hi in (("--load", args.load, 50_000.0), ("--pv", args.pv, 50_000.0), ("--apply-delay", args.apply_delay, 600.0)):
        if not 0 <= v <= hi:  # false for NaN
            raise ConfigError(f"{name} {v}: need 0 .. {hi:g}")
    house = LanHouseSim(base_load_w=args.load, available_w=args.pv, apply_delay_s=args.apply_delay,
                        plugs=dict(args.plug or [("washer", 150.0), ("freezer", 80.0), ("station", 200.0)]))
    control = ControlServer(house.meter, args.host, args.control_port) if args.control_port is not None else None

    async def start() -> None:
        ports = await house.start(args.host, args.port)
        print(f"LAN house: {', '.join(f'{k} {args.host}:{v}' for k, v in ports.items())}; grid {house.grid_w():.0f} W",
              flush=True)
        print("# edge-agent run --config FILE with:\n" + house.agent_config(args.host, ports), flush=True)
        if control is not None:
            await control.start()
            print(f"fault control of the meter on {args.host}:{control.port}", flush=True)

    async def stop() -> None:
        if control is not None:
            await control.stop()
        await house.stop()

    await run_until_signal(start, stop)
    return 0


__all__ = ["LAN_MODELS", "add_house_parser", "add_parser", "make_lan_sim", "serve", "serve_house"]
