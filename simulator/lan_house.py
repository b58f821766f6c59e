"""A house of LAN devices only, simulated in one process: a micro-inverter behind an OpenDTU, smart plugs
(Shelly Plus Plug S) and a DSMR 5 meter's P1 port whose grid reading follows the house:

    grid = base load + the plugs' loads (those switched on) - the micro-inverter's output   (import > 0)

so that an agent that limits the micro-inverter sees the effect at its meter, after the OpenDTU's apply
delay and the meter's next telegram, as in a real house (docs/lan-devices.md, "A house of LAN devices
only").  Each device is its own simulator on its own port, with the simulators' faults.
"""

from __future__ import annotations

from simulator.opendtu_device import OpenDtuSim
from simulator.p1_device import P1Sim
from simulator.shelly_device import ShellySim


class HouseMeter(P1Sim):
    """The P1 meter at the house's connection point: its power is the house's balance."""

    def __init__(self, house: LanHouseSim, interval_s: float) -> None:
        self.house = house
        super().__init__(interval_s=interval_s)

    @property  # type: ignore[override]  # P1Sim's attribute, here the house's balance
    def power_w(self) -> float:
        return self.house.grid_w()

    @power_w.setter
    def power_w(self, value: float) -> None:
        """Not set from outside: the house's loads and PV make it (P1Sim's constructor sets it)."""


class LanHouseSim:
    """``base_load_w``: what the house draws besides its plugs; ``available_w``: what the panels give;
    ``plugs``: id -> load of each plug while on."""

    def __init__(self, *, base_load_w: float = 300.0, available_w: float = 1600.0, rated_w: float = 2000.0,
                 apply_delay_s: float = 3.0, plugs: dict[str, float] | None = None,
                 p1_interval_s: float = 1.0) -> None:
        self.base_load_w = base_load_w
        self.dtu = OpenDtuSim(rated_w=rated_w, available_w=available_w, apply_delay_s=apply_delay_s)
        self.plugs = {pid: ShellySim("shelly_plug_s", load_w=w) for pid, w in (plugs or {}).items()}
        self.meter = HouseMeter(self, p1_interval_s)

    def load_w(self) -> float:
        return self.base_load_w + sum(p.plug_load_w() for p in self.plugs.values())  # an appliance behind one: its draw

    def pv_w(self) -> float:
        """The micro-inverter's output now (W >= 0), its limit applied once its delay has passed."""
        self.dtu.pv.advance()
        return self.dtu.pv.power_w()

    def grid_w(self) -> float:
        return self.load_w() - self.pv_w()

    async def start(self, host: str | None = None, first_port: int | None = None) -> dict[str, int]:
        """Start every device (``first_port``: on it and the next ones; default free ports); their ports
        by id (``dtu``, ``meter``, the plugs')."""
        at = (lambda i: None) if first_port is None else (lambda i: first_port + i)
        ports = {"dtu": await self.dtu.start(host, at(0)), "meter": await self.meter.start(host, at(1))}
        for i, (pid, plug) in enumerate(self.plugs.items()):
            ports[pid] = await plug.start(host, at(2 + i))
        return ports

    def agent_config(self, host: str, ports: dict[str, int], max_export_w: float = 300.0) -> str:
        """An ``edge-agent run`` config for this house (insecure, no aggregator reachable by default)."""
        plugs = "".join(f'\n[[lan_devices]]\nid = "{p}"\nmodel = "shelly_plug_s"\nhost = "{host}"\n'
                        f'port = {ports[p]}\nrole = "load"\n' for p in self.plugs)
        return (f'house_id = "lan-house"\ninsecure = true\n\n[device]\nkind = "lan"\npoll_interval_s = 1\n\n'
                f'[site]\nmax_export_w = {max_export_w:g}\n\n'
                f'[[lan_devices]]\nid = "p1"\nmodel = "dsmr5_p1"\nhost = "{host}"\nport = {ports["meter"]}\n'
                'role = "grid_meter"\n\n'
                f'[[lan_devices]]\nid = "balcony"\nmodel = "opendtu_hoymiles"\nhost = "{host}"\nport = {ports["dtu"]}\n'
                f'role = "pv"\nserial = "{self.dtu.serial}"\npassword = "{self.dtu.password}"\n' + plugs)

    async def stop(self) -> None:
        await self.meter.stop()
        await self.dtu.stop()
        for plug in self.plugs.values():
            await plug.stop()


__all__ = ["HouseMeter", "LanHouseSim"]
