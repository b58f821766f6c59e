"""Replayable device faults: ``KIND[:ARGS]`` specs, and a line-protocol control channel to inject them.

Spec grammar (the same for ``vpp-sim device --fault`` and the control channel)::

    timeout                       requests go unanswered
    exception[:CODE]              every request answered with Modbus exception CODE (default 6, busy)
    implausible                   impossible measurements (SoC 250 %, powers at the int16 limits)
    slow:SECONDS                  every answer delayed (real seconds)
    disconnect                    connections dropped, new ones refused
    frozen | stale                measurement registers stop updating (counters, timestamps too)
    reboot[:down=S][,every=S]     control registers back to their defaults, unreachable S s first
    revert[:every=S]              the revert timers expire (the device takes control back)
    other_master[:every=S]        another master writes its own control values
    scale_factor:NAME=SF[,...]    e.g. scale_factor:W_SF=1 (all models with W_SF; -20: outside SunSpec's range)

The event kinds (reboot, revert, other_master) happen *once, now* when sent
over the control channel without ``every``; on the command line they repeat
(``every`` defaults to 60 clock seconds there, as a one-off at start-up
would change nothing).  Faults combine; ``clear`` ends them all.

Control channel: one TCP connection on loopback (``--control-port``), one
command per line, one answer line each: ``ok <what is set now>`` or
``error: <why>``.  Commands: a spec, ``clear``, ``status``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, fields, replace

from pymodbus.constants import ExcCodes

from simulator.hybrid_device import FaultInjection, Faults

log = logging.getLogger(__name__)

EVENT_KINDS = ("reboot", "revert", "other_master")
KINDS = ("timeout", "exception", "implausible", "slow", "disconnect", "frozen", "stale", *EVENT_KINDS,
         "scale_factor")
CLI_EVENT_EVERY_S = 60.0


class FaultSpecError(ValueError):
    """A fault spec that cannot be understood (the message says why)."""


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    args: dict[str, str]
    text: str


def parse_fault(text: str) -> FaultSpec:
    """``KIND[:ARGS]`` -> FaultSpec; FaultSpecError for an unknown kind or malformed arguments."""
    kind, _, rest = text.strip().partition(":")
    kind = kind.strip().lower().replace("-", "_")
    if kind not in KINDS:
        raise FaultSpecError(f"unknown fault {kind!r}; kinds: {', '.join(KINDS)}")
    args: dict[str, str] = {}
    if rest.strip():
        for i, part in enumerate(rest.split(",")):
            key, eq, value = part.partition("=")
            if not eq:
                if i == 0:  # a bare first argument: slow:0.5, exception:6, reboot:5 (down)
                    key, value = "", key
                else:
                    raise FaultSpecError(f"{text!r}: expected NAME=VALUE, got {part!r}")
            args[key.strip()] = value.strip()
    spec = FaultSpec(kind, args, text.strip())
    _check(spec)
    return spec


def _number(spec: FaultSpec, key: str, default: float | None, *, positive: bool = False) -> float | None:
    raw = spec.args.get(key)
    if raw is None:
        return default
    try:
        v = float(raw)
    except ValueError:
        raise FaultSpecError(f"{spec.text!r}: {key or 'the argument'} must be a number, got {raw!r}") from None
    if not (v > 0 if positive else v >= 0) or v != v or v == float("inf"):
        raise FaultSpecError(f"{spec.text!r}: {key or 'the argument'} must be {'> 0' if positive else '>= 0'}, "
                             f"got {raw!r}")
    return v


def _allowed(spec: FaultSpec, *keys: str) -> None:
    extra = sorted(set(spec.args) - set(keys))
    if extra:
        raise FaultSpecError(f"{spec.text!r}: unexpected argument(s) {extra}; {spec.kind} takes "
                             f"{', '.join(k or 'a value' for k in keys) or 'none'}")


def _check(spec: FaultSpec) -> None:
    k = spec.kind
    if k in ("timeout", "implausible", "disconnect", "frozen", "stale"):
        _allowed(spec)
    elif k == "exception":
        _allowed(spec, "")
        code = spec.args.get("", "6")
        try:
            ExcCodes(int(code))
        except ValueError:
            raise FaultSpecError(f"{spec.text!r}: not a Modbus exception code: {code!r}") from None
    elif k == "slow":
        _allowed(spec, "")
        if "" not in spec.args:
            raise FaultSpecError(f"{spec.text!r}: slow needs the delay in seconds, e.g. slow:0.5")
        _number(spec, "", None)
    elif k == "reboot":
        if "" in spec.args:  # reboot:5 = down 5 s
            spec.args["down"] = spec.args.pop("")
        _allowed(spec, "down", "every")
        _number(spec, "down", 0.0)
        _number(spec, "every", None, positive=True)
    elif k in ("revert", "other_master"):
        _allowed(spec, "every")
        _number(spec, "every", None, positive=True)
    elif k == "scale_factor":
        if not spec.args or "" in spec.args:
            raise FaultSpecError(f"{spec.text!r}: scale_factor needs NAME_SF=VALUE, e.g. scale_factor:W_SF=1")
        for name, value in spec.args.items():
            try:
                sf = int(value)
            except ValueError:
                raise FaultSpecError(f"{spec.text!r}: {name} must be an integer, got {value!r}") from None
            if not name.endswith("_SF") or not -0x7FFF <= sf <= 0x7FFF:
                raise FaultSpecError(f"{spec.text!r}: need a *_SF point and an int16 (SunSpec: -10..10), "
                                     f"got {name}={value}")


def with_fault(faults: Faults, spec: FaultSpec, *, cli: bool = False) -> Faults:
    """``faults`` with ``spec`` added (event kinds only when periodic: ``every``, or ``cli``)."""
    k, a = spec.kind, spec.args
    if k == "timeout":
        return replace(faults, timeout=True)
    if k == "exception":
        return replace(faults, exception_code=int(a.get("", "6")))
    if k == "implausible":
        return replace(faults, implausible=True)
    if k == "slow":
        return replace(faults, slow_s=float(a[""]))
    if k == "disconnect":
        return replace(faults, disconnect=True)
    if k in ("frozen", "stale"):
        return replace(faults, frozen=True)
    if k == "scale_factor":
        merged = dict(faults.scale_factors) | {n: int(v) for n, v in a.items()}
        return replace(faults, scale_factors=tuple(sorted(merged.items())))
    every = _number(spec, "every", CLI_EVENT_EVERY_S if cli else None, positive=True)
    if every is None:
        return faults
    if k == "reboot":
        return replace(faults, reboot_every_s=every, reboot_down_s=_number(spec, "down", 0.0) or 0.0)
    if k == "revert":
        return replace(faults, revert_every_s=every)
    return replace(faults, other_master_every_s=every)


def faults_from_specs(specs: list[FaultSpec]) -> Faults:
    """The faults a device starts with (command line)."""
    faults = Faults()
    for spec in specs:
        faults = with_fault(faults, spec, cli=True)
    return faults


def inject(sim: FaultInjection, spec: FaultSpec) -> None:
    """Apply ``spec`` to a running simulator: a state is added to its faults; an event without
    ``every`` happens now.  NotImplementedError if the simulator cannot do it."""
    if spec.kind in EVENT_KINDS and "every" not in spec.args:
        if spec.kind == "reboot":
            sim.reboot(_number(spec, "down", 0.0) or 0.0)
        elif spec.kind == "revert":
            sim.expire_revert()
        else:
            sim.other_master_write()
        return
    sim.faults = with_fault(sim.faults, spec)


def describe(faults: Faults) -> str:
    """The faults set, as ``name=value`` pairs (``none`` if none)."""
    default = Faults()
    parts = [f"{f.name}={getattr(faults, f.name)!r}" for f in fields(Faults)
             if getattr(faults, f.name) != getattr(default, f.name)]
    return " ".join(parts) or "none"


def handle_command(sim: FaultInjection, line: str) -> str:
    """One control-channel command -> its answer line."""
    cmd = line.strip()
    try:
        if cmd.lower() == "clear":
            sim.faults = Faults()
        elif cmd.lower() == "arm":  # a person sets the washing machine behind a plug (simulator/appliances.py)
            arm = getattr(getattr(sim, "appliance", None), "arm", None)
            if arm is None:
                return "error: no appliance that can be armed behind this device"
            arm()
            return "ok armed"
        elif cmd.lower() != "status":
            inject(sim, parse_fault(cmd))
    except (FaultSpecError, NotImplementedError, ValueError) as exc:
        return f"error: {exc}"
    return f"ok {describe(sim.faults)}"


class ControlServer:
    """The control channel of one simulator: a TCP listener (loopback by default), line protocol."""

    def __init__(self, sim: FaultInjection, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            while line := await reader.readline():
                text = line.decode("utf-8", "replace").strip()
                if not text:
                    continue
                answer = handle_command(self.sim, text)
                log.info("fault control: %s -> %s", text, answer)
                writer.write((answer + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            if task is not None:
                self._conns.discard(task)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._conns):
                task.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None


async def send_commands(host: str, port: int, commands: list[str], timeout_s: float = 5.0) -> list[str]:
    """Send commands to a control channel; the answer lines."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, port)
    try:
        answers = []
        for cmd in commands:
            writer.write((cmd.strip() + "\n").encode())
            await writer.drain()
            async with asyncio.timeout(timeout_s):
                answers.append((await reader.readline()).decode().strip())
        return answers
    finally:
        writer.close()
        await writer.wait_closed()


__all__ = ["ControlServer", "FaultSpec", "FaultSpecError", "describe", "faults_from_specs", "handle_command",
           "inject", "parse_fault", "send_commands", "with_fault"]
