"""What each poll says about the device itself, logged and counted: values it refused
(implausible, unreadable), frozen registers, and whether it still holds the control values
written (read back each poll: re-assert at once, or declare it uncontrolled)."""

from __future__ import annotations

import logging
from datetime import datetime

from edge_agent.metrics import AgentMetrics
from edge_agent.refusals import Refusals
from edge_agent.resources.house import HouseSnapshot
from edge_agent.resources.readback import ControlWatch

log = logging.getLogger(__name__)


def watch_device(snap: HouseSnapshot, now: datetime, control_watch: ControlWatch, refusals: Refusals,
                 metrics: AgentMetrics) -> bool:
    """Say what ``snap`` shows about the device; True if the control values must be re-asserted
    on this poll (the device no longer holds what was written)."""
    for r in snap.refused:  # implausible or unreadable device values: logged (rate-limited), counted
        refusals.refuse(r.source, r.reason, r.detail)
    if snap.frozen:  # the RM marked them stale
        refusals.refuse("device", "frozen", f"measurements stopped updating: {snap.frozen}")
    verdict = control_watch.observe(now, snap.control)
    if verdict == "reassert":
        refusals.refuse("device", "control_overridden",
                        "control registers differ from what was written (re-asserting): "
                        + "; ".join(snap.control.mismatches))
        metrics.device_reasserts.inc()
        return True
    if verdict == "lost":
        metrics.device_controlled.set(0)
        refusals.refuse("device", "uncontrolled",
                        f"re-asserting did not stick {control_watch.tries} times: device declared "
                        "uncontrolled (ordinary refresh only): " + "; ".join(snap.control.mismatches))
    elif verdict == "regained":
        metrics.device_controlled.set(1)
        log.info("device holds the written control values again: controlled")
    return False
