"""Live mode: the scenario's fleet as real processes on loopback, on one accelerated clock.

* one device-simulator process (:mod:`simulator.fleet.devices`): a SunSpec hybrid
  inverter per house, each on its own Modbus TCP port, whose physics takes the
  house's load and PV from the scenario (per slot, PV curtailable via model 123);
* one aggregator process (``aggregator serve``): in-memory store, the fleet LP,
  the scenario's feeders and limits, its price *series* (``planning.prices_file``,
  known as in the fast mode: ``prices_published`` in ``prices_market_timezone``, from the
  scenario's ``price_knowledge``), re-planning on the hour
  (+ a short offset so that the houses have reported the new slot);
* one edge-agent process per house (``edge-agent run``) with the house's site
  limits, a 10 % reserve, the site's coordinates and time zone for its forecasts.

All share ``AcceleratedClock(scenario start, speed, anchor, hold_before_anchor=True)``:
the anchor lies a warm-up ahead and until then the clock stands at the scenario
start, so the processes start, connect and report their initial state "at" the
start; the first plan is made at the start + the re-plan offset, as the fast
mode plans at its first slot.  When the clock passes the scenario's end the device
process writes per house x slot means of grid, battery and used PV power and the
SoC at each slot's end from its physics; those come back as a
:class:`~simulator.fleet.engine.Trace`, so ``kpis()`` applies unchanged.
Every process is stopped on every exit path.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from simulator.fleet.engine import Trace
from simulator.fleet.model import DEFAULT_RESERVE_SOC_PCT, Scenario
from simulator.fleet.strategies import PERFORMANCE_RATIO, price_publication
from vpp_common.clock import AcceleratedClock

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LiveOptions:
    """Timing of the live run, in *simulated* seconds unless named ``_real_s``."""

    tick_s: float = 10.0  # agent decision period (a new plan slot is followed within this)
    poll_s: float = 5.0  # agent device polls (a decision uses the last poll: a fresh one matters most)
    telemetry_s: float = 30.0  # telemetry to the aggregator (Welcome sets it); feeds the live feeder envelopes
    replan_s: int = 3600  # aggregator cycle, aligned to the clock (on the hour)
    replan_offset_s: float = 60.0  # after the hour: the houses' new-slot flexibility has arrived
    lease_s: int = 7200  # a plan outlives one late cycle
    revert_s: int = 900  # device revert timers (agent refreshes at half)
    deadband_w: float = 20.0
    warmup_real_s: float | None = None  # None: 12 s + 0.7 s per agent process (the solver warms up too)
    start_timeout_real_s: float = 120.0
    stop_timeout_real_s: float = 15.0
    report_every_s: float = 3600.0  # progress lines to ``out``


@dataclass
class LiveStats:
    wall_s: float = 0.0
    startup_real_s: float = 0.0  # until every house was connected
    warmup_real_s: float = 0.0  # the clock stood at the scenario start this long (connected later: late first plans)
    processes: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)  # per role, user + system, incl. children
    rss_mb: dict[str, float] = field(default_factory=dict)  # per role, sum at the end
    plans_sent: int = 0
    solves: int = 0
    solve_s: float = 0.0
    connected: int = 0
    device_writes: int = 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover -- runs in the child between fork and exec
    """Linux: the child gets SIGTERM if this process dies, even by SIGKILL (no orphans)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "inf" if v == math.inf else repr(v)
    if isinstance(v, (int,)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def _toml(top: dict[str, Any], tables: dict[str, dict[str, Any]] | None = None,
          arrays: dict[str, list[dict[str, Any]]] | None = None) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items() if v is not None]
    for name, t in (tables or {}).items():
        lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in t.items() if v is not None]
    for name, items in (arrays or {}).items():
        for t in items:
            lines += ["", f"[[{name}]]"] + [f"{k} = {_toml_value(v)}" for k, v in t.items() if v is not None]
    return "\n".join(lines) + "\n"


def _constant_limit(a: np.ndarray, what: str, warn: Callable[[str], None]) -> float | None:
    """A feeder limit for the aggregator's config (one number): None = none; the minimum if it varies."""
    if not np.isfinite(a).any():
        return None
    finite = a[np.isfinite(a)]
    if finite.size != a.size or finite.min() != finite.max():
        warn(f"{what} varies over the scenario; the aggregator gets its minimum {finite.min():.0f} W")
    return float(finite.min())


def write_inputs(sc: Scenario, d: Path, opts: LiveOptions, agg_port: int, metrics_port: int,
                 warn: Callable[[str], None]) -> None:
    """Everything the processes read: arrays, device spec, prices, aggregator and agent configs."""
    np.savez(d / "arrays.npz", load_w=sc.load_w.astype(float), pv_w=sc.pv_w.astype(float))
    (d / "devices.json").write_text(json.dumps({
        "arrays": "arrays.npz", "start": sc.start.isoformat(), "slot_s": sc.slot_s,
        "houses": [{"house_id": h.house_id, "pv_kwp": h.pv_kwp, "battery_kwh": h.battery_kwh,
                    "battery_kw": h.battery_kw, "efficiency": h.efficiency, "initial_soc_pct": h.initial_soc_pct}
                   for h in sc.houses]}), encoding="utf-8")
    with open(d / "prices.csv", "w", encoding="utf-8") as f:
        f.write("timestamp,import_price_per_kwh,export_price_per_kwh\n")
        for s in range(sc.t):
            f.write(f"{sc.slot_start(s).isoformat()},{float(sc.import_price_per_kwh[s])!r},"
                    f"{float(sc.export_price_per_kwh[s])!r}\n")
    feeders = []
    for k, fid in enumerate(sc.feeder_ids):
        feeders.append({
            "id": fid, "houses": [h.house_id for h in sc.houses if h.feeder == fid],
            "import_limit_w": _constant_limit(sc.feeder_import_limit_w[k], f"feeder {fid} import limit", warn),
            "export_limit_w": _constant_limit(sc.feeder_export_limit_w[k], f"feeder {fid} export limit", warn),
            "transformer": f"tx:{fid}",
        })
    horizon = min(672, max(sc.t, math.ceil(opts.lease_s / sc.slot_s)))
    published, market_tz = price_publication(sc)
    (d / "aggregator.toml").write_text(_toml(
        {"listen": f"127.0.0.1:{agg_port}", "admin_listen": "127.0.0.1:0", "store_url": "memory://",
         "replica_id": "live", "metrics_port": metrics_port, "insecure": True,
         "telemetry_interval_s": opts.telemetry_s, "heartbeat_interval_s": 2 * opts.telemetry_s,
         "telemetry_ttl_s": 3600.0, "route_ttl_s": 3600.0},
        {"planning": {
            "slot_s": sc.slot_s, "horizon_slots": horizon, "lease_s": min(opts.lease_s, horizon * sc.slot_s),
            "cycle_s": float(opts.replan_s), "cycle_align": True,
            # cycles at the scenario start + k x replan_s (as the fast mode), a little later
            "cycle_offset_s": (sc.start.timestamp() + opts.replan_offset_s) % opts.replan_s,
            "replan_on_update": False, "optimiser": "lp", "warm_solver": True, "solve_time_limit_s": 120.0,
            "prices_file": str(d / "prices.csv"), "prices_published": published.strftime("%H:%M:%S"),
            "prices_market_timezone": market_tz,
            "horizon_within_known_prices": True, "terminal_value_per_kwh": "mean_price"}},
        {"feeders": feeders}), encoding="utf-8")
    for h in sc.houses:
        (d / f"agent-{h.house_id}.toml").write_text(_toml(
            {"house_id": h.house_id, "aggregator": f"127.0.0.1:{agg_port}", "insecure": True,
             "telemetry_interval_s": opts.telemetry_s, "reconnect_initial_s": 0.2, "reconnect_max_s": 2.0,
             # each run's spools in its own folder: never replayed into the next run's aggregator
             "state_dir": str(d / "state")},
            {"device": {"host": "127.0.0.1", "port": 502, "poll_interval_s": opts.poll_s,
                        "stale_after_s": 3 * opts.poll_s, "timeout_s": 2.0},
             "site": {"max_import_w": float(h.import_limit_w), "max_export_w": float(h.export_cap_w),
                      "latitude": sc.latitude, "longitude": sc.longitude, "timezone": sc.timezone,
                      "pv_peak_w": h.pv_kwp * 1000 * PERFORMANCE_RATIO if h.pv_kwp > 0 else None},
             "battery": {"reserve_soc_pct": DEFAULT_RESERVE_SOC_PCT, "revert_s": opts.revert_s},
             "control": {"tick_s": opts.tick_s, "deadband_w": opts.deadband_w, "grace_s": 4 * opts.replan_s}},
        ), encoding="utf-8")


class _Procs:
    """The children: started in their own session, stopped by pid (then their group) on every path."""

    def __init__(self, d: Path) -> None:
        self.dir = d
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.logs: dict[str, Path] = {}

    async def start(self, name: str, args: list[str]) -> asyncio.subprocess.Process:
        log = self.dir / f"{name}.log"
        self.logs[name] = log
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
        with open(log, "wb") as f:
            p = await asyncio.create_subprocess_exec(
                sys.executable, *args, stdin=asyncio.subprocess.DEVNULL, stdout=f, stderr=f, cwd=str(REPO),
                env=env, start_new_session=True, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        self.procs[name] = p
        return p

    def check(self) -> None:
        for name, p in self.procs.items():
            if p.returncode is not None:
                raise RuntimeError(f"{name} exited with {p.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 25) -> str:
        try:
            return "\n".join(self.logs[name].read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def stop(self, names: list[str] | None = None, timeout_s: float = 10.0) -> None:
        targets = {n: p for n, p in self.procs.items() if names is None or n in names}
        for p in targets.values():
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        waits = [asyncio.create_task(p.wait()) for p in targets.values()]
        if waits:
            await asyncio.wait(waits, timeout=timeout_s)
        for p in targets.values():
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                with contextlib.suppress(asyncio.TimeoutError):
                    async with asyncio.timeout(5.0):
                        await p.wait()
            # whatever the child started in its session (the aggregator's solver process)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
        for t in waits:
            t.cancel()

    def resources(self) -> tuple[dict[str, float], dict[str, float]]:
        """CPU s and RSS MB per role (aggregator, agents, devices), each with its children."""
        import psutil

        cpu: dict[str, float] = {}
        rss: dict[str, float] = {}
        for name, p in self.procs.items():
            role = "agents" if name.startswith("agent-") else name
            try:
                proc = psutil.Process(p.pid)
                ps = [proc, *proc.children(recursive=True)]
                c = sum(sum(x.cpu_times()[:2]) for x in ps)
                m = sum(x.memory_info().rss for x in ps) / 2**20
            except psutil.Error:
                continue
            cpu[role] = cpu.get(role, 0.0) + c
            rss[role] = rss.get(role, 0.0) + m
        return cpu, rss


async def _metrics(port: int) -> dict[str, float]:
    """The aggregator's Prometheus figures (no labels), read over a plain socket (no threads)."""
    try:
        async with asyncio.timeout(2.0):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except (TimeoutError, OSError):
        return {}
    try:
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(5.0):
            text = (await reader.read()).decode(errors="replace")
    except (TimeoutError, OSError):
        return {}
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    out: dict[str, float] = {}
    for line in text.split("\r\n\r\n", 1)[-1].splitlines():
        if line.startswith("vpp_aggregator_") and " " in line and "{" not in line:
            k, _, v = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[k] = float(v)
    return out


async def run_live(sc: Scenario, *, speed: float, out: TextIO = sys.stderr,
                   progress: Callable[[int], None] | None = None, options: LiveOptions | None = None,
                   stats: LiveStats | None = None, keep_dir: Path | None = None) -> Trace:
    """Run the ``fleet`` strategy on ``sc`` with real processes; see the module doc.

    ``progress(slots_done)`` as the clock passes slot ends; ``stats`` (if given) is
    filled with wall time, CPU and RSS per role, plans and solves; ``keep_dir``
    keeps the configs and process logs there (default: a temporary directory,
    removed afterwards).
    """
    sc.validate()
    opts = options or LiveOptions()
    stats = stats if stats is not None else LiveStats()
    wall0 = time.monotonic()
    d = Path(tempfile.mkdtemp(prefix="vpp-live-")) if keep_dir is None else keep_dir
    d.mkdir(parents=True, exist_ok=True)

    def say(msg: str) -> None:
        print(msg, file=out, flush=True)

    procs = _Procs(d)
    try:
        agg_port, metrics_port = _free_port(), _free_port()
        write_inputs(sc, d, opts, agg_port, metrics_port, lambda m: say(f"  warning: {m}"))
        n = sc.n
        warmup = opts.warmup_real_s if opts.warmup_real_s is not None else 12.0 + 0.7 * n
        stats.warmup_real_s = warmup
        anchor = time.time() + warmup
        clock = AcceleratedClock(sc.start, speed, anchor, hold_before_anchor=True)
        clock_args = ["--clock-start", sc.start.isoformat(), "--clock-speed", repr(float(speed)),
                      "--clock-anchor", repr(anchor), "--clock-hold"]
        say(f"live: {n} houses on {len(sc.feeder_ids)} feeders, {sc.t * sc.slot_h:g} h from "
            f"{sc.start:%Y-%m-%d %H:%M} UTC at {speed:g}x ({sc.t * sc.slot_s / speed:.0f} s) after a "
            f"{warmup:.0f} s warm-up; agents tick {opts.tick_s:g} s, poll {opts.poll_s:g} s; re-plan every "
            f"{opts.replan_s} s (+{opts.replan_offset_s:g} s); files in {d}")
        await procs.start("aggregator", ["-m", "aggregator.cli", "serve", "--config", str(d / "aggregator.toml"),
                                         *clock_args])
        ports_file, trace_file = d / "ports.json", d / "trace.npz"
        await procs.start("devices", ["-m", "simulator.fleet.devices", "--spec", str(d / "devices.json"),
                                      "--ports-out", str(ports_file), "--trace-out", str(trace_file), *clock_args])
        deadline = time.monotonic() + opts.start_timeout_real_s
        while not ports_file.exists():
            procs.check()
            if time.monotonic() > deadline:
                raise TimeoutError("the device simulators did not start")
            await asyncio.sleep(0.1)
        ports = json.loads(ports_file.read_text(encoding="utf-8"))
        for h in sc.houses:
            await procs.start(f"agent-{h.house_id}", [
                "-m", "edge_agent.cli", "run", "--config", str(d / f"agent-{h.house_id}.toml"),
                "--device-port", str(ports[h.house_id]), "--no-metrics", *clock_args])
        stats.processes = len(procs.procs)
        say(f"  started {stats.processes} processes in {time.monotonic() - wall0:.1f} s "
            f"(aggregator :{agg_port}, devices :{min(ports.values())}..{max(ports.values())})")
        next_report = sc.start
        slots_done = 0
        all_connected = False
        m: dict[str, float] = {}
        while True:
            procs.check()
            now = clock.now()
            m = await _metrics(metrics_port)
            connected = int(m.get("vpp_aggregator_connected_agents", 0))
            if not all_connected and connected >= n:
                all_connected = True
                stats.startup_real_s = time.monotonic() - wall0
                say(f"  all {n} houses connected after {stats.startup_real_s:.1f} s "
                    f"(clock {now:%H:%M}, scenario starts {sc.start:%H:%M})")
            if not all_connected and time.monotonic() > deadline:
                raise TimeoutError(f"only {connected} of {n} houses connected within {opts.start_timeout_real_s:g} s")
            if now >= next_report:
                say(f"  {now:%Y-%m-%d %H:%M}  houses connected {connected:>3}/{n}  "
                    f"plans sent {int(m.get('vpp_aggregator_plans_sent_total', 0)):>5}  "
                    f"solves {int(m.get('vpp_aggregator_solve_duration_seconds_count', 0)):>3}  "
                    f"wall {time.monotonic() - wall0:5.0f} s")
                while next_report <= now:
                    next_report += timedelta(seconds=opts.report_every_s)
            done = min(sc.t, max(0, int((now - sc.start).total_seconds() // sc.slot_s)))
            if done > slots_done:
                slots_done = done
                if progress is not None:
                    progress(slots_done)
            if now >= sc.end:
                break
            await asyncio.sleep(min(0.5, max(0.05, (sc.end - now).total_seconds() / speed)))
        if not all_connected:
            say(f"  warning: only {connected} of {n} houses were connected")
        stats.connected = connected
        stats.plans_sent = int(m.get("vpp_aggregator_plans_sent_total", 0))
        stats.solves = int(m.get("vpp_aggregator_solve_duration_seconds_count", 0))
        stats.solve_s = float(m.get("vpp_aggregator_solve_duration_seconds_sum", 0.0))
        stats.cpu_s, stats.rss_mb = procs.resources()
        # agents first (they hand the batteries back; after the end, so it does not count), then
        # the aggregator, then the devices, which write the trace as they stop
        await procs.stop([k for k in procs.procs if k.startswith("agent-")], opts.stop_timeout_real_s)
        await procs.stop(["aggregator"], opts.stop_timeout_real_s)
        await procs.stop(["devices"], opts.stop_timeout_real_s)
        if not trace_file.exists():
            raise RuntimeError(f"the device simulators wrote no trace:\n{procs.tail('devices')}")
        data = np.load(trace_file)
        grid, bat, soc, pv = (np.asarray(data[k], dtype=float) for k in ("grid_w", "battery_w", "soc_pct", "pv_used_w"))
        stats.device_writes = int(np.sum(data["writes"]))
        if np.isnan(grid).any():
            raise RuntimeError(f"{int(np.isnan(grid).sum())} house-slots were not simulated to their end")
    finally:
        await procs.stop([k for k in procs.procs if k != "devices"], opts.stop_timeout_real_s)
        await procs.stop(timeout_s=opts.stop_timeout_real_s)
        if keep_dir is None:
            shutil.rmtree(d, ignore_errors=True)
    stats.wall_s = time.monotonic() - wall0
    cpu = ", ".join(f"{k} {v:.0f} s" for k, v in sorted(stats.cpu_s.items()))
    rss = ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(stats.rss_mb.items()))
    say(f"  done in {stats.wall_s:.0f} s wall: {stats.plans_sent} plans sent, {stats.solves} solves "
        f"({stats.solve_s:.1f} s), CPU {cpu}; RSS {rss}")
    return Trace("fleet", grid, bat, soc, pv, solves=stats.solves, solve_s=stats.solve_s, fallbacks=0,
                 wall_s=stats.wall_s)


__all__ = ["LiveOptions", "LiveStats", "run_live", "write_inputs"]
