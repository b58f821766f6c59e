"""The SunSpec house's device I/O: reads that respect a device's retry delay, and the control points
the agent wrote with whether the devices still hold them.

What the agent last wrote and the device did not contradict since is read
back on every poll (edge_agent.resources.readback): a point read back
different is dropped from the driver's write guard memory, so the next
write goes out at once.  A poll that overlapped a write does not compare
(a sequence of several requests may be half done).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from edge_agent.drivers.errors import DeviceRejected, DeviceUnavailable
from edge_agent.drivers.sunspec import SunSpecDevice
from edge_agent.drivers.sunspec_points import ModelValues
from edge_agent.drivers.sunspec_roles import Command
from edge_agent.resources.readback import ControlReadback, compare
from edge_agent.resources.retry import DeviceRetry

log = logging.getLogger(__name__)

Got = Mapping[int, Mapping[int, ModelValues]]
"""A poll's models by device (id) and model id."""


async def read_models(dev: SunSpecDevice, models: Sequence[int], retry: DeviceRetry,
                      now: datetime) -> dict[int, ModelValues]:
    """Read ``models`` of one device in turn.  A device that stops answering is not asked again
    this poll (its other reads would wait out the same timeout), nor until its ``retry`` delay has
    passed (``edge_agent.resources.retry``)."""
    out: dict[int, ModelValues] = {}
    if not retry.due(now):
        return out
    for model_id in models:
        try:
            out[model_id] = await dev.read_model(model_id)
        except DeviceRejected as exc:
            log.warning("%s: reading model %s refused: %s", dev.name, model_id, exc)
        except DeviceUnavailable as exc:
            delay = retry.failed(now)
            log.warning("%s: reading model %s failed (%d in a row; next attempt in %.1f s): %s",
                        dev.name, model_id, retry.failures, delay, exc)
            return out
    retry.succeeded()
    return out


class OwnedPoints:
    def __init__(self) -> None:
        self._held: dict[tuple[int, int], dict[str, float]] = {}  # (device id, model) -> point -> value
        self._tolerance: dict[tuple[int, int], dict[str, float]] = {}  # read-back tolerance by point
        self._gen = 0  # changes around every write
        self._writing = 0  # writes in progress

    @property
    def generation(self) -> int:
        return self._gen

    def quiet_since(self, generation: int) -> bool:
        """No write began, ended or is running since ``generation``."""
        return self._gen == generation and not self._writing

    @property
    def models(self) -> list[tuple[int, int]]:
        """(device id, model) of every model holding owned points: read them back."""
        return list(self._held)

    def clear(self) -> None:
        self._held.clear()

    async def write(self, dev: SunSpecDevice, command: Command, points: dict[str, float | int],
                    owned: tuple[str, ...]) -> bool:
        """Write ``points`` of ``command``'s model; remember the ``owned`` ones as what the device should
        hold.  A deferred or failed write leaves them unknown (not compared)."""
        model_id = command.model
        key = (id(dev), model_id)
        self._tolerance[key] = command.tolerance()
        self._gen += 1
        self._writing += 1
        done = False
        try:
            done = await dev.write_points(model_id, points)
            return done
        finally:
            self._gen += 1
            self._writing -= 1
            held = self._held.setdefault(key, {})
            for name in owned:
                if done:
                    held[name] = float(points[name])
                else:
                    held.pop(name, None)
            if not held:
                del self._held[key]

    def read_back(self, got: Got, devices: Sequence[SunSpecDevice], split: bool) -> ControlReadback:
        """Compare the owned points with this poll's reads (``split``: name the device in mismatches)."""
        if not self._held:
            return ControlReadback()
        devs = {id(d): d for d in devices}
        mismatches: list[str] = []
        for (dev_id, model_id), owned in self._held.items():
            read = got.get(dev_id, {}).get(model_id)
            if read is None:
                return ControlReadback()  # not all read: nothing to conclude
            names, described = compare(model_id, owned, read, self._tolerance[dev_id, model_id])
            if names:
                devs[dev_id].invalidate_written(model_id, names)
                mismatches += [f"{devs[dev_id].name} {d}" if split else d for d in described]
        return ControlReadback(True, tuple(mismatches))


__all__ = ["Got", "OwnedPoints", "read_models"]
