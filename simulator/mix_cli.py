"""``vpp-sim house`` with ``--with``/``--plug``: a house of any mix of devices (simulator/mix_house.py)
served from the shell, with the ``edge-agent run`` config for it.  Without them ``vpp-sim house`` is the
four-device SunSpec house it always was (simulator/split_house.py)."""

from __future__ import annotations

import argparse
from typing import Any

from simulator.mix_house import (
    APPLIANCE_NAMES,
    METERS,
    MICROS,
    WITH_CHOICES,
    MixHouse,
    MixSpec,
    parse_plug,
)

HOUSE_EPILOG = f"""a mix (any of --with, --plug):
  --with battery|pv|meter|ev_charger   SunSpec Modbus devices of simulator/split_house.py, unit 1 each
  --with opendtu|ez1|envoy             LAN micro-inverters (OpenDTU + Hoymiles, APsystems EZ1, Enphase IQ
                                       Gateway: not curtailable), each giving --micro-pv W up to its rating
                                       (OpenDTU 2000 W, EZ1 800 W, IQ Gateway 2000 W)
  --with p1|pro3em|proem               LAN meters at the connection point (DSMR 5 P1 over TCP, Shelly Pro 3EM,
                                       Shelly Pro EM)
  --plug ID=W | ID={'|'.join(APPLIANCE_NAMES)}[@tasmota]
                                       a Shelly Plus Plug S (or a Tasmota plug) drawing W while on, or with a
                                       simulated appliance behind it: a washing machine (armed at start unless
                                       --washer-unarmed; `arm` on its --control channel arms it), a freezer on
                                       its thermostat, a power station charging (docs/appliances.md)

One balance: every meter (SunSpec 203, P1, Shelly) reads
  grid = --load + EV + plugs' draw + battery charge - Modbus PV - micro-inverters' output   (import > 0)
and the battery's self-consumption covers the plugs and micro-inverters too.  A device not given is not in
the house (no battery, no Modbus PV: 0 W).  The PV inverter follows a clear-sky day (8 kWp, UTC); the EV
charges 18:00-22:00 UTC at 3.7 kW.  Devices listen on --port and the next ports in the order Modbus,
micro-inverters, meters, plugs (default: free ports); a line per device names its port.

The edge-agent config for the mix is printed after the ports (with [[appliances]] for the plugs with one):
with a Modbus battery and meter as [[device.parts]], without Modbus devices as [device] kind = "lan" (then
a LAN meter is needed); other mixes are served but get no config (a line says why).  Save the lines from
"house_id" on as a file for `edge-agent run --config FILE`.

examples:
  vpp-sim house --with opendtu --with p1 --plug washer=washer --plug freezer=freezer --plug lamp=60
  vpp-sim house --with battery --with meter --with p1 --with ez1 --plug station=station@tasmota
  vpp-sim house                        # the four SunSpec devices on ports 1510-1513, as before"""


def add_mix_args(p: argparse.ArgumentParser) -> None:
    """The mix options of ``vpp-sim house`` (its --host, --port, --speed and --soc are the house's own)."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = HOUSE_EPILOG
    p.add_argument("--with", dest="devices", action="append", choices=WITH_CHOICES, metavar="DEVICE",
                   help="a device of the mix, repeatable (below)")
    p.add_argument("--plug", dest="plugs", action="append", metavar="ID=W|ID=APPLIANCE[@tasmota]",
                   help="a smart plug, repeatable (below)")
    p.add_argument("--load", type=float, default=None, help="mix: W the house draws besides plugs and EV (default 300)")
    p.add_argument("--micro-pv", type=float, default=None,
                   help="mix: W each micro-inverter's panels give (default 600; its limit may hold it lower)")
    p.add_argument("--apply-delay", type=float, default=None,
                   help="mix: s until a micro-inverter applies a limit (default 3)")
    p.add_argument("--washer-unarmed", action="store_true",
                   help="mix: washing machines wait for `arm` on their control channel instead of armed at start")
    p.add_argument("--max-export", type=float, default=None, help="mix: the printed config's export cap, W (default 300)")
    p.add_argument("--control", action="append", metavar="ID=PORT", default=[],
                   help="mix: a fault control channel (vpp-sim fault) for a LAN device or plug; `arm` arms a washer")


_MIX_ONLY = (("load", "--load"), ("micro_pv", "--micro-pv"), ("apply_delay", "--apply-delay"),
             ("max_export", "--max-export"), ("control", "--control"), ("washer_unarmed", "--washer-unarmed"))


def is_mix(args: argparse.Namespace) -> bool:
    """True for a mix; ConfigError for a mix's option without one (it would be ignored without a word)."""
    from vpp_common.config import ConfigError

    if args.devices or args.plugs:
        return True
    given = [flag for name, flag in _MIX_ONLY if getattr(args, name) not in (None, [], False)]
    if given:
        raise ConfigError(f"{given[0]} is an option of a mix: add --with or --plug (without them: the four SunSpec "
                          "devices)")
    return False


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def spec_from_args(args: argparse.Namespace) -> MixSpec:
    """The mix asked for; ValueError naming the option for anything that cannot be."""
    plugs = tuple(parse_plug(t) for t in args.plugs or [])
    return MixSpec(devices=tuple(args.devices or ()), plugs=plugs, base_load_w=_or(args.load, 300.0),
                   micro_pv_w=_or(args.micro_pv, 600.0), soc_pct=args.soc, apply_delay_s=_or(args.apply_delay, 3.0),
                   arm_washers=not args.washer_unarmed)


def _appliance_toml(pid: str, appliance: str) -> str:
    if appliance == "washer":  # the simulated machine's programme: 1.1 kWh over 2 hours
        body = 'kind = "run"\nenergy_kwh = 1.1\nduration_min = 120\nready_by = "17:00"\n'
    elif appliance == "freezer":
        body = 'kind = "pausable"\nmax_pause_min = 30\npower_w = 90\n'
    else:
        body = 'kind = "battery"\ncapacity_kwh = 1.0\ncharge_power_w = 300\nenergy_kwh_per_day = 0.7\n'
    return f'\n[[appliances]]\nplug = "{pid}"\n{body}'


def _lan(pid: str, model: str, host: str, port: int, role: str, extra: str = "") -> str:
    return f'\n[[lan_devices]]\nid = "{pid}"\nmodel = "{model}"\nhost = "{host}"\nport = {port}\nrole = "{role}"\n{extra}'


def _micro_extra(house: MixHouse, name: str) -> str:
    sim = house.micros[name]
    if name == "opendtu":
        return f'serial = "{sim.serial}"\npassword = "{sim.password}"\n'  # type: ignore[attr-defined]
    if name == "envoy":
        return f'token = "{sim.token}"\n'  # type: ignore[attr-defined]
    return ""


def agent_config(house: MixHouse, host: str, ports: dict[str, int], max_export_w: float = 300.0) -> str:
    """``edge-agent run`` config text for the mix (insecure, an aggregator on the default address);
    for a mix the agent cannot run, one comment line saying why."""
    spec = house.spec
    roles = spec.modbus
    notes: list[str] = []
    if roles:
        if not {"battery", "meter"} <= set(roles):
            return ("# no edge-agent config for this mix: an agent's Modbus devices ([[device.parts]]) are a battery "
                    "and a meter at least (add --with battery --with meter), or none ([device] kind = \"lan\")\n")
        device = "[device]\npoll_interval_s = 1\n" + "".join(
            f'\n[[device.parts]]\nrole = "{r}"\nhost = "{host}"\nport = {ports[r]}\n' for r in roles)
        micros = spec.micros[:1]  # beside a Modbus house the agent takes one micro-inverter
        notes += [f"# {m} serves too, not in this config: beside Modbus devices the agent takes one micro-inverter"
                  for m in spec.micros[1:]]
    else:
        if not spec.meters:
            return ("# no edge-agent config for this mix: a house without Modbus devices ([device] kind = \"lan\") "
                    "needs a LAN grid meter (add --with p1, pro3em or proem)\n")
        device = '[device]\nkind = "lan"\npoll_interval_s = 1\n'
        micros = spec.micros
    lan = ""
    if spec.meters:
        lan += _lan(spec.meters[0], METERS[spec.meters[0]], host, ports[spec.meters[0]],
                    "grid_meter", 'timeout_s = 3\n' if spec.meters[0] == "p1" else "")
        notes += [f"# {m} serves too, not in this config: an agent takes one grid meter" for m in spec.meters[1:]]
    for m in micros:
        lan += _lan(m, MICROS[m], host, ports[m], "pv", _micro_extra(house, m))
    for p in spec.plugs:
        lan += _lan(p.id, p.model, host, ports[p.id], "load")
    appliances = "".join(_appliance_toml(p.id, p.appliance) for p in spec.plugs if p.appliance is not None)
    head = "\n".join(notes) + "\n" if notes else ""
    return (f'{head}house_id = "mix-house"\ninsecure = true\n\n{device}\n'
            f'[site]\nmax_export_w = {max_export_w:g}\n{lan}{appliances}')


def _controls(args: argparse.Namespace, house: MixHouse) -> list[tuple[str, Any, int]]:
    from vpp_common.config import ConfigError

    out = []
    for text in args.control:
        name, _, port = text.partition("=")
        sim = house.device(name) or house.split.views.get(name)  # type: ignore[call-overload]
        if sim is None or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"--control {text!r}: need ID=PORT with ID a device of the house "
                              f"({', '.join([*house.split.views, *house.micros, *house.meters, *house.plugs])})")
        out.append((name, sim, int(port)))
    return out


async def serve_mix(args: argparse.Namespace, clock: Any) -> int:
    """Serve the mix until SIGINT/SIGTERM, printing a line per device and the agent's config."""
    from simulator.fault_control import ControlServer
    from vpp_common.cli import run_until_signal
    from vpp_common.config import ConfigError

    try:
        spec = spec_from_args(args)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    max_export = _or(args.max_export, 300.0)
    if not (0 <= max_export <= 1e6):  # false for NaN
        raise ConfigError(f"--max-export {max_export}: need 0 .. 1e6")
    house = MixHouse(spec, clock, host=args.host)
    controls = [(name, ControlServer(sim, args.host, port)) for name, sim, port in _controls(args, house)]

    async def start() -> None:
        ports = await house.start(args.host, args.port)
        for name, port in ports.items():
            scheme = "modbus" if name in house.split.views else "tcp" if name == "p1" else \
                "https" if name == "envoy" else "http"
            print(f"{name:>10}: {scheme}://{args.host}:{port}", flush=True)
        print(f"house: grid {house.grid_w():.0f} W", flush=True)
        for name, control in controls:
            await control.start()
            print(f"fault control of {name} on {args.host}:{control.port}", flush=True)
        print("# edge-agent run --config FILE with:\n" + agent_config(house, args.host, ports, max_export),
              flush=True)
        print("# end of config", flush=True)

    async def stop() -> None:
        for _, control in controls:
            await control.stop()
        await house.stop()

    await run_until_signal(start, stop)
    return 0


__all__ = ["HOUSE_EPILOG", "add_mix_args", "agent_config", "is_mix", "serve_mix", "spec_from_args"]
