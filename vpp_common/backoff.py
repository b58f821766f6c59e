"""Reconnect delays: exponential backoff with jitter (the uplink's stream, the MQTT broker)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: delay n is uniform in [d/2, d], d = min(max, initial * 2^n)."""

    initial_s: float = 0.5
    max_s: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        d = min(self.max_s, self.initial_s * (2 ** min(attempt, 30)))
        return rng.uniform(d / 2, d)
