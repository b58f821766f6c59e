"""Slot arithmetic shared by planners and forecasters (UTC, slots aligned to the epoch)."""

from __future__ import annotations

from datetime import datetime


def align_down(when: datetime, slot_s: int) -> datetime:
    """The start of the slot of length ``slot_s`` that contains ``when``."""
    epoch = when.timestamp()
    return datetime.fromtimestamp(epoch - epoch % slot_s, tz=when.tzinfo)
