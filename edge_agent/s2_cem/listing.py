"""``edge-agent s2 list``: the RMs the running agent knows, read from the status file it keeps
in its ``state_dir`` (``s2_sessions.json``, rewritten when something changed, at most once per
instruction tick).  A file is simpler than another listening port: it needs no token, and its
age says whether the agent still runs."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from edge_agent.s2_cem.state import RmSnapshot

STATUS_FILE = "s2_sessions.json"


def status_path(state_dir: Path) -> Path:
    return state_dir / STATUS_FILE


def rows(snapshots: list[RmSnapshot], now: datetime, stale_after_s: float) -> list[dict[str, Any]]:
    out = []
    for s in sorted(snapshots, key=lambda s: s.name):
        last = s.instructions[-1] if s.instructions else None
        out.append({
            "name": s.name, "state": s.state(now, stale_after_s), "session": s.session,
            "control_type": s.control_type, "resource_id": s.resource_id, "device": s.device,
            "last_message": s.last_message_type, "last_message_at": s.last_message_at.isoformat(),
            "power_w": s.power_w.value if s.power_w is not None else None,
            "fill_level": s.fill_level.value if s.fill_level is not None else None,
            "last_instruction": ({"id": last.instruction_id, "kind": last.kind, "power_w": last.power_w,
                                  "status": last.status, "reason": last.reason,
                                  "execution_time": last.execution_time.isoformat() if last.execution_time else None}
                                 if last is not None else None),
            "closed_reason": s.closed_reason or None,
        })
    return out


def write_status(path: Path, now: datetime, listed: list[dict[str, Any]]) -> None:
    """Atomically: a reader never sees half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"written_at": now.isoformat(), "resource_managers": listed}, indent=1))
    os.replace(tmp, path)


def table(status: dict[str, Any], now: datetime) -> str:
    written = datetime.fromisoformat(status["written_at"])
    lines = [f"as of {written.isoformat()} ({(now - written).total_seconds():.0f} s ago)"]
    header = ("NAME", "STATE", "CONTROL TYPE", "LAST MESSAGE", "AGE", "POWER W", "LAST INSTRUCTION")
    body = []
    for r in status["resource_managers"]:
        age = (now - datetime.fromisoformat(r["last_message_at"])).total_seconds()
        instr = r["last_instruction"]
        body.append((r["name"], r["state"], r["control_type"] or "-", r["last_message"] or "-", f"{age:.0f} s",
                     "-" if r["power_w"] is None else f"{r['power_w']:.0f}",
                     _instruction(instr)))
    widths = [max(len(x[i]) for x in (header, *body)) for i in range(len(header))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (header, *body)]
    if not body:
        lines.append("(no resource manager has connected)")
    return "\n".join(lines)


def _instruction(instr: dict[str, Any] | None) -> str:
    if instr is None:
        return "-"
    if instr.get("execution_time") and instr.get("kind") == "PPBC.ScheduleInstruction":
        return f"start {instr['execution_time']} {instr['status']}"  # a run scheduled ahead
    return f"{instr['power_w']:.0f} W {instr['status']}"
