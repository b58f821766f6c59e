"""A micro-inverter on the LAN (a ``[[lan_devices]]`` entry with ``role = "pv"``) as part of a house's
Resource Manager: what the house with a Modbus inverter (edge_agent/lan_pv.py) and the house of LAN
devices only (edge_agent/lan_house.py) share, so that both treat it the same way:

* polled with the house, no faster than its catalogue entry allows (``min_poll_interval_s``);
* a limit takes seconds to apply (OpenDTU: Pending): while it does, a new limit is held (the readings
  do not show the first one's effect yet: a limit computed from them overshoots) and the latest is
  sent once the device settled (:meth:`MicroInverter.take_held`);
* what the aggregator is told: a PV resource, PEBC if it takes a limit, NOT_CONTROLLABLE if not
  (Enphase's local API takes none), and its curtailment range in the flexibility;
* the driver's errors as the agent's kinds (edge_agent/device_writes.py): a wrong password is a
  configuration matter (ModelNotFound: not retried), a refused limit is retried (DeviceUnavailable).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from edge_agent.drivers.errors import AuthFailed, DeviceRefused, DeviceUnavailable, ModelNotFound
from edge_agent.resources.capabilities import PV_CURTAILMENT, Capabilities
from edge_agent.resources.lan_device import LanDeviceRM, LanSnapshot
from vpp_common.clock import Clock
from vpp_common.messages import (
    ControlType,
    CurtailmentFlexibility,
    Measurement,
    ResourceInfo,
    ResourceKind,
    Validity,
)

log = logging.getLogger(__name__)
_HELD = object()  # no limit held


class MicroInverter:
    """``rm`` (role pv) polled with the house on ``clock``; ``snapshot`` is its latest poll."""

    def __init__(self, rm: LanDeviceRM, clock: Clock) -> None:
        self.rm, self.clock = rm, clock
        self.snapshot: LanSnapshot | None = None
        self._polled_at: datetime | None = None
        self._wish: object = _HELD  # a limit asked while the last one was still applying

    @property
    def resource_id(self) -> str:
        return self.rm.resource_id

    @property
    def limitable(self) -> bool:
        return self.rm.limitable

    @property
    def rated_w(self) -> float:
        """Its rating as it reports it, else its entry's limit ceiling, else 0 (unknown)."""
        lim = self.rm.device.entry.limit
        return self.rm.rated_w or (lim.max_w if lim is not None else 0.0)

    def due_in_s(self) -> float:
        """Seconds until it may be read again (0: now)."""
        if self._polled_at is None:
            return 0.0
        min_s = self.rm.device.entry.device.min_poll_interval_s
        return max(0.0, min_s - (self.clock.now() - self._polled_at).total_seconds())

    async def poll(self, force: bool = False) -> LanSnapshot:
        """Its latest reading: a new one if its entry's ``min_poll_interval_s`` has passed (or ``force``)."""
        now = self.clock.now()
        min_s = self.rm.device.entry.device.min_poll_interval_s
        if force or self.snapshot is None or self._polled_at is None \
                or (now - self._polled_at).total_seconds() >= min_s:
            self.snapshot, self._polled_at = await self.rm.poll(now), now
        return self.snapshot

    def info(self) -> ResourceInfo:
        """The Hello's resource: PEBC if it takes a limit, else NOT_CONTROLLABLE (the aggregator knows
        this PV cannot be curtailed)."""
        kind = ControlType.PEBC if self.limitable else ControlType.NOT_CONTROLLABLE
        return ResourceInfo(self.resource_id, ResourceKind.PV, kind, self.rated_w, 0.0)

    def curtailments(self) -> tuple[CurtailmentFlexibility, ...]:
        """Its curtailment range (present production .. -rating), if it takes a limit."""
        if not self.limitable:
            return ()
        pv = self.snapshot.power_w if self.snapshot is not None else Measurement.missing()
        present = pv.value if pv.usable and pv.value is not None else 0.0
        return (CurtailmentFlexibility(self.resource_id, present, -(self.rm.rated_w or 0.0)),)

    def capabilities(self, caps: Capabilities) -> Capabilities:
        """``caps`` with PV curtailment through this micro-inverter, if it takes a limit."""
        if not self.limitable:
            return caps
        how = f"{self.resource_id}: {self.rm.device.entry.device.id} active-power limit"
        return replace(caps, can={**caps.can, PV_CURTAILMENT: how},
                       cannot={k: v for k, v in caps.cannot.items() if k != PV_CURTAILMENT})

    def not_curtailable(self) -> str | None:
        """Why plans for it are refused; None if it takes a limit."""
        return None if self.limitable else \
            f"PV not curtailable ({self.rm.device.entry.device.id}: its local API takes no power limit)"

    def production_w(self, fallback_w: float | None = None) -> float:
        """What it produces now (W >= 0), its reading even stale; else ``fallback_w``, else 0."""
        return production_w(self.snapshot.power_w if self.snapshot is not None else None, fallback_w)

    def hold(self, limit_w: float | None) -> bool:
        """True if the device is still applying the last limit: ``limit_w`` is held, sent by the
        house once :meth:`take_held` gives it back."""
        if self.snapshot is not None and self.snapshot.limit == "pending":
            self._wish = limit_w
            return True
        return False

    def drop_held(self) -> None:
        """Forget a held limit (a newer one is held elsewhere)."""
        self._wish = _HELD

    def take_held(self) -> tuple[bool, float | None]:
        """(True, the held limit) once the device settled (then it is no longer held); else (False, None)."""
        if self._wish is _HELD or self.snapshot is None or self.snapshot.limit == "pending":
            return False, None
        wish, self._wish = self._wish, _HELD
        return True, wish  # type: ignore[return-value]

    async def send(self, limit_w: float | None) -> None:
        """Send ``limit_w`` (W of production, None: lifted); further limits are held until it shows."""
        try:
            await self.rm.set_pv_limit(None if limit_w is None else max(0.0, limit_w), self.clock.now())
        except AuthFailed as exc:  # configuration: the operator must fix the password
            raise ModelNotFound(f"PV limit refused for its credentials: {exc}", device=self.resource_id) from exc
        except DeviceRefused as exc:
            raise DeviceUnavailable(f"PV limit refused: {exc}", device=self.resource_id) from exc
        if self.snapshot is not None:  # applying from now: hold further limits until it shows
            self.snapshot = replace(self.snapshot, limit="pending")

    async def lift(self) -> None:
        """Lift its limit (the agent stops); a failure is logged, not raised."""
        if not self.limitable:
            return
        try:
            await self.rm.set_pv_limit(None, self.clock.now())
        except (DeviceUnavailable, DeviceRefused, AuthFailed) as exc:
            log.warning("%s: PV limit not lifted on release: %s", self.resource_id, exc)

    async def close(self) -> None:
        await self.rm.close()


def split_limit(limit_w: float | None, ratings_w: Sequence[float], others_w: float = 0.0) -> list[float | None]:
    """A house's PV limit (W, None: lifted) over micro-inverters of ``ratings_w`` that take a limit, less
    ``others_w`` (what the PV that takes none produces): shares in proportion to the ratings (equal if
    none is known), each >= 0.  A shaded one's unused share is not passed on (the house then produces
    less than it may: the safe side)."""
    if limit_w is None:
        return [None] * len(ratings_w)
    budget = max(0.0, limit_w - max(0.0, others_w))
    total = sum(r for r in ratings_w if r > 0)
    if total <= 0:
        return [budget / len(ratings_w)] * len(ratings_w) if ratings_w else []
    return [budget * max(0.0, r) / total for r in ratings_w]


def production_w(m: Measurement | None, fallback_w: float | None) -> float:
    """What a PV produces now (W >= 0): its reading, even stale; else ``fallback_w`` (its rating: the
    cautious guess for the limit of another PV), else 0."""
    if m is not None and m.value is not None and m.validity in (Validity.VALID, Validity.STALE):
        return max(0.0, -m.value)
    return fallback_w or 0.0


__all__ = ["MicroInverter", "production_w", "split_limit"]
