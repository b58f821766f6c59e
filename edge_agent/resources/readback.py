"""Read-back of the control registers the agent owns: is the device still what we last wrote?

A device that reboots resets its control registers (StorCtl_Mod = 0, the PV
limit's enable = 0), another Modbus master writes its own values, a revert
timer hands control back: the registers no longer hold what the agent wrote,
and until it writes again (its periodic refresh: up to half the revert time)
the house runs without its export cap.  The Resource Manager compares, on
every poll, each point it wrote with what it reads (:func:`compare`) and
publishes a :class:`ControlReadback` in the snapshot; the agent decides with
a :class:`ControlWatch` whether to re-assert at once or, when re-asserting
does not stick, to declare the device uncontrolled.  Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol


class Readings(Protocol):
    """Points as read (a SunSpec ModelValues, or a dict of a vendor map's points)."""

    def get(self, name: str, default: None = None) -> object: ...

DEFAULT_TOLERANCE = 0.5


@dataclass(frozen=True, slots=True)
class ControlReadback:
    """The owned control points as read this poll.  ``checked``: compared (False when nothing is owned
    yet, a read failed, or a write overlapped the poll); ``mismatches``: ``"124.StorCtl_Mod wrote 3 reads 0"``."""

    checked: bool = False
    mismatches: tuple[str, ...] = ()

    @property
    def holds(self) -> bool:
        """True if compared and every owned point holds what was written."""
        return self.checked and not self.mismatches


def compare(model_id: int | str, owned: Mapping[str, float], read: Readings,
            tolerance: Mapping[str, float] | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(names that differ, descriptions) of the points in ``owned`` (name -> value written) against ``read``
    (``tolerance``: per point, in its units, else DEFAULT_TOLERANCE; SunSpec's are in its command
    table, edge_agent.drivers.sunspec_roles)."""
    names: list[str] = []
    out: list[str] = []
    for name, wrote in owned.items():
        v = read.get(name)
        now = float(v) if isinstance(v, (int, float)) else None
        tol = tolerance[name] if tolerance is not None and name in tolerance else DEFAULT_TOLERANCE
        if now is None or abs(now - wrote) > tol:
            names.append(name)
            out.append(f"{model_id}.{name} wrote {wrote:g} reads {'n/a' if now is None else f'{now:g}'}")
    return tuple(names), tuple(out)


Verdict = Literal["ok", "reassert", "lost", "uncontrolled", "regained"]


class ControlWatch:
    """Re-assert or give up.  A mismatch asks for a re-assert at once; a mismatch within ``stick_s`` of the
    previous one means the last re-assert did not stick.  After ``tries`` re-asserts that did not stick
    the device is declared uncontrolled (``"lost"``, then ``"uncontrolled"`` while it lasts: the agent
    stops forcing writes and keeps its ordinary refresh); a read-back that holds for ``stick_s`` after
    that gives it back (``"regained"``)."""

    def __init__(self, tries: int = 3, stick_s: float = 30.0) -> None:
        if tries < 1 or stick_s <= 0:
            raise ValueError("tries must be >= 1 and stick_s > 0")
        self.tries = tries
        self.stick_s = stick_s
        self.controlled = True
        self.failures = 0
        self._last_mismatch: datetime | None = None

    def observe(self, now: datetime, readback: ControlReadback) -> Verdict:
        if not readback.checked:
            return "ok" if self.controlled else "uncontrolled"
        last = self._last_mismatch
        recent = last is not None and (now - last).total_seconds() < self.stick_s
        if readback.holds:
            if recent:
                return "ok" if self.controlled else "uncontrolled"
            self.failures = 0
            if not self.controlled:
                self.controlled = True
                return "regained"
            return "ok"
        self.failures = self.failures + 1 if recent else 1
        self._last_mismatch = now
        if self.failures > self.tries:
            if self.controlled:
                self.controlled = False
                return "lost"
            return "uncontrolled"
        return "reassert"


__all__ = ["ControlReadback", "ControlWatch", "compare"]
