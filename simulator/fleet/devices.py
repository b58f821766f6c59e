"""Many SunSpec hybrid devices in one process, one Modbus TCP port each, for the live fleet mode.

    python -m simulator.fleet.devices --spec DIR/devices.json --ports-out DIR/ports.json \
        --trace-out DIR/trace.npz --clock-start 2026-06-21T08:00:00+00:00 --clock-speed 300 --clock-anchor T

``devices.json`` names the scenario's arrays (``arrays``: an .npz with ``load_w``
and ``pv_w``, (N, T) magnitudes in W) and describes each house (battery size and
power, efficiency, initial SoC, PV size).  Each house's physics takes its load and
PV per slot from those arrays (held over the slot; PV before curtailment, model
123 curtails it) and starts at the scenario start: requests that come earlier
see the initial state.  Once every device listens, ``ports.json`` maps house id
-> port (written atomically).

On SIGTERM or SIGINT every device's physics is stepped to the clock's now, and
``trace.npz`` gets per house x slot the means of grid power (import > 0),
battery power (charging > 0), PV produced after curtailment (magnitude) and the
SoC at the slot's end, from the physics' exact energy counters at each slot
boundary (NaN for slots not finished); then the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from simulator.hybrid_device import SimulatorConfig, SunSpecHybridSimulator
from simulator.physics import PhysicsConfig, PhysicsSnapshot, SlotSeries
from vpp_common.clock import Clock, add_clock_arguments, clock_from_arguments, utc

log = logging.getLogger(__name__)

SOC_MIN_PCT = 5.0  # the fast mode's floor (simulator.fleet.model.DEFAULT_SOC_MIN_PCT)
NO_BATTERY_WH = 1.0  # a house without a battery gets a 1 Wh / 1 W one (SunSpec needs WChaMax > 0)
NO_BATTERY_W = 1.0


@dataclass(frozen=True)
class DeviceSpec:
    house_id: str
    pv_kwp: float
    battery_kwh: float
    battery_kw: float
    efficiency: float
    initial_soc_pct: float


class SlotRecorder:
    """Energy counters and SoC of one house at each slot boundary (k = 0 .. T)."""

    FIELDS = ("grid_imported_wh", "grid_exported_wh", "battery_charged_wh", "battery_discharged_wh",
              "pv_energy_wh", "soc_pct")

    def __init__(self, start: datetime, slot_s: int, t: int, initial: PhysicsSnapshot) -> None:
        self.start, self.slot_s, self.t = start, slot_s, t
        self.values = np.full((t + 1, len(self.FIELDS)), np.nan)
        self._put(0, initial)

    def _put(self, k: int, s: PhysicsSnapshot) -> None:
        self.values[k] = [getattr(s, f) for f in self.FIELDS]

    def __call__(self, s: PhysicsSnapshot) -> None:
        k = round((s.at - self.start).total_seconds() / self.slot_s)
        if 0 <= k <= self.t:
            self._put(k, s)

    def slot_means(self) -> dict[str, np.ndarray]:
        """Per slot: mean grid, battery, PV-used power (W) and SoC at the end (NaN if not reached)."""
        d = np.diff(self.values[:, :5], axis=0) / (self.slot_s / 3600.0)
        return {
            "grid_w": d[:, 0] - d[:, 1],
            "battery_w": d[:, 2] - d[:, 3],
            "pv_used_w": d[:, 4],
            "soc_pct": self.values[1:, 5].copy(),
        }


def physics_for(spec: DeviceSpec, start: datetime, slot_s: int, load_w: np.ndarray, pv_w: np.ndarray) -> PhysicsConfig:
    has_battery = spec.battery_kwh > 0 and spec.battery_kw > 0
    cap = spec.battery_kwh * 1000 if has_battery else NO_BATTERY_WH
    power = spec.battery_kw * 1000 if has_battery else NO_BATTERY_W
    return PhysicsConfig(
        pv_kwp=max(spec.pv_kwp, 0.0), battery_capacity_wh=cap, battery_max_charge_w=power,
        battery_max_discharge_w=power, charge_efficiency=spec.efficiency, discharge_efficiency=spec.efficiency,
        initial_soc_pct=min(100.0, max(SOC_MIN_PCT, spec.initial_soc_pct)), min_soc_pct=SOC_MIN_PCT,
        max_soc_pct=100.0,
        load_series=SlotSeries(start, slot_s, load_w.tolist()), pv_series=SlotSeries(start, slot_s, pv_w.tolist()),
    )


def simulator_for(spec: DeviceSpec, physics: PhysicsConfig) -> SimulatorConfig:
    # the inverter rating is the PV nameplate: the agent reports it as the PV size (the LP's
    # fairness share) and model 123 curtails in % of it
    rating = spec.pv_kwp * 1000 if spec.pv_kwp > 0 else max(physics.battery_max_charge_w, 1000.0)
    return SimulatorConfig(physics=physics, serial_number=f"SIM-{spec.house_id}", inverter_rating_w=rating)


async def serve(spec_path: Path, ports_out: Path, trace_out: Path, clock: Clock) -> int:
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    arrays = np.load(spec_path.parent / spec["arrays"])
    start = utc(datetime.fromisoformat(spec["start"]))
    slot_s = int(spec["slot_s"])
    load_all, pv_all = arrays["load_w"], arrays["pv_w"]
    t = int(load_all.shape[1])
    houses = [DeviceSpec(**h) for h in spec["houses"]]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sims: list[SunSpecHybridSimulator] = []
    recorders: list[SlotRecorder] = []
    try:
        for i, h in enumerate(houses):
            sim = SunSpecHybridSimulator(simulator_for(h, physics_for(h, start, slot_s, load_all[i], pv_all[i])),
                                         clock, start=start)
            rec = SlotRecorder(start, slot_s, t, sim.physics.snapshot)
            sim.physics.observer = rec
            sims.append(sim)
            recorders.append(rec)
            await sim.start()
        tmp = ports_out.with_suffix(".tmp")
        tmp.write_text(json.dumps({h.house_id: s.port for h, s in zip(houses, sims, strict=True)}), encoding="utf-8")
        os.replace(tmp, ports_out)
        log.info("%d devices listening", len(sims))
        await stop.wait()
        for sim in sims:
            sim.snapshot()  # step the physics to now: every finished slot is recorded
        means = [r.slot_means() for r in recorders]
        out = {k: np.array([m[k] for m in means]) for k in ("grid_w", "battery_w", "pv_used_w", "soc_pct")}
        out["clock_now"] = np.array(clock.now().timestamp())
        out["writes"] = np.array([len(s.writes) for s in sims])
        tmp_npz = trace_out.with_name(trace_out.stem + ".tmp.npz")
        np.savez(tmp_npz, **out)  # type: ignore[arg-type]  # numpy stub: **kwds typed as bool
        os.replace(tmp_npz, trace_out)
    finally:
        for sim in sims:
            await sim.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.fleet.devices",
                                     description="SunSpec hybrid devices of a fleet scenario (live mode).")
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--ports-out", type=Path, required=True)
    parser.add_argument("--trace-out", type=Path, required=True)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    add_clock_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * args.verbose,
                        format="%(asctime)s %(levelname)s devices %(name)s: %(message)s")
    clock = clock_from_arguments(args.clock_start, args.clock_speed, args.clock_anchor, args.clock_hold)
    return asyncio.run(serve(args.spec, args.ports_out, args.trace_out, clock))


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["DeviceSpec", "SlotRecorder", "main", "physics_for", "serve", "simulator_for"]
