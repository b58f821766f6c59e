"""What the micro-inverter simulators share (OpenDTU, APsystems EZ1, Enphase IQ Gateway): AC output that
follows the sun and an active-power limit, the limit taking ``apply_delay_s`` to act, and the yield
integrated over real time (standing still while ``frozen``, as the LAN simulators' counters do)."""

from __future__ import annotations

from simulator.lan_base import LanFaults


class PvOutput:
    """``available_w``: what the panels could give now (W >= 0); ``rated_w``: the inverter's AC rating.
    A limit asked at t acts at t + ``apply_delay_s``; until then the old one holds."""

    def __init__(self, sim: LanFaults, *, available_w: float, rated_w: float, apply_delay_s: float,
                 energy_wh: float = 150_505.0) -> None:
        self.sim = sim
        self.available_w = available_w
        self.rated_w = rated_w
        self.apply_delay_s = apply_delay_s
        self.limit_w = rated_w  # in force
        self.pending: tuple[float, float] | None = None  # (limit W, when it acts: sim seconds)
        self.energy_wh = energy_wh
        self.limit_calls = 0
        self._last_s = sim.now_s()

    def ask(self, limit_w: float) -> None:
        self.limit_calls += 1
        self.pending = (limit_w, self.sim.now_s() + self.apply_delay_s)

    def advance(self) -> None:
        now = self.sim.now_s()
        if self.pending is not None and now >= self.pending[1]:
            # the energy up to the switch at the old limit, then the new one
            self._integrate(self.pending[1])
            self.limit_w, self.pending = self.pending[0], None
        self._integrate(now)

    def _integrate(self, until_s: float) -> None:
        self.energy_wh += self.power_w() * max(0.0, until_s - self._last_s) / 3600.0
        self._last_s = max(self._last_s, until_s)

    def power_w(self) -> float:
        """AC output, W >= 0 (the device's own sign: production positive)."""
        return max(0.0, min(self.available_w, self.limit_w, self.rated_w))

    @property
    def applying(self) -> bool:
        return self.pending is not None


__all__ = ["PvOutput"]
