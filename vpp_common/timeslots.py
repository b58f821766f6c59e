"""Slot arithmetic shared by planners and forecasters (UTC, slots aligned to the epoch)."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def align_down(when: datetime, slot_s: int) -> datetime:
    """The start of the slot of length ``slot_s`` that contains ``when``."""
    epoch = when.timestamp()
    return datetime.fromtimestamp(epoch - epoch % slot_s, tz=when.tzinfo)


class SlotGrid:
    """Slot helpers for containers of per-house x per-slot arrays: a ``load_w`` of shape
    (N, T) and a ``slot_s`` (the fleet problem and a simulation scenario).  The number of
    houses stays each class's own: it comes from the ids, so validation can check the arrays."""

    load_w: Any
    slot_s: int

    @property
    def t(self) -> int:
        return int(self.load_w.shape[1])

    @property
    def slot_h(self) -> float:
        return self.slot_s / 3600.0
