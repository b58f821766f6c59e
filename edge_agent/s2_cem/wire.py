"""One WebSocket frame from a Resource Manager -> a validated S2 message, or the refusal to send.

Every frame is hostile until checked here (docs/architecture.md: safety lives at the edge):

* not JSON (or nested past what a parser can walk): ReceptionStatus INVALID_DATA, and the
  session ends (``fatal``): a peer that does not speak JSON is not an S2 peer;
* JSON but no object: INVALID_DATA;
* ``NaN`` / ``Infinity`` (Python's json accepts them, JSON does not), also as strings
  (``"NaN"``: pydantic's lax mode reads a string in a number field): INVALID_MESSAGE naming the
  field;
* anything s2-python's ``S2Parser`` refuses (unknown type, schema, references): INVALID_MESSAGE
  with pydantic's diagnostics (the first few, short);
* a number past what a house device can mean (any |x| > 1e9, a power |x| > 1 MW), also as a
  string: INVALID_CONTENT naming the field.

The subject of a refusal is the frame's ``message_id`` when it is a UUID, else the nil UUID.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from s2python.common import ReceptionStatus, ReceptionStatusValues
from s2python.message import S2Message
from s2python.s2_parser import S2Parser
from s2python.s2_validation_error import S2ValidationError

NIL_ID = uuid.UUID(int=0)
MAX_ABS_NUMBER = 1e9  # any number in any S2 message (fill levels, durations, rates)
MAX_POWER_W = 1e6  # a power value: no device behind one house connection reaches 1 MW
_POWER_KEYS = {"start_of_range", "end_of_range", "value", "value_expected", "value_upper_limit",
               "value_lower_limit", "value_upper_95PPR", "value_lower_95PPR", "value_upper_68PPR",
               "value_lower_68PPR", "upper_limit", "lower_limit"}
_POWER_PARENTS = {"power_ranges", "values", "power_values", "power_envelope_elements", "allowed_limit_ranges"}
_ANY_POWER_KEYS = {"upper_average_power", "lower_average_power"}  # PEBC.EnergyConstraint
MAX_DIAGNOSTIC_CHARS = 400


@dataclass(frozen=True, slots=True)
class Refused:
    """A frame that is not taken: the ReceptionStatus to send, and whether the session ends."""

    status: ReceptionStatusValues
    subject_id: uuid.UUID
    diagnostic: str
    reason: str  # a stable label (metrics, refusals)
    fatal: bool = False

    def reception_status(self) -> ReceptionStatus:
        return ReceptionStatus(subject_message_id=self.subject_id, status=self.status,
                               diagnostic_label=self.diagnostic[:MAX_DIAGNOSTIC_CHARS])


class _NotFinite:
    """What ``NaN``/``Infinity`` parse to: no number, so the schema refuses it by field."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def parse_frame(data: str | bytes) -> S2Message | Refused:
    """The S2 message in ``data``, validated, or why it is refused."""
    try:
        raw = json.loads(data, parse_constant=_NotFinite)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and bad UTF-8 are ValueErrors
        return Refused(ReceptionStatusValues.INVALID_DATA, NIL_ID, f"not JSON: {str(exc)[:120]}",
                       "invalid_json", fatal=True)
    if not isinstance(raw, dict):
        return Refused(ReceptionStatusValues.INVALID_DATA, NIL_ID,
                       f"not an S2 message: a JSON {type(raw).__name__}, not an object", "invalid_data")
    subject = _subject(raw)
    try:
        return _checked(raw, subject)
    except RecursionError:  # json parsed it, but it is nested deeper than any S2 message is
        return Refused(ReceptionStatusValues.INVALID_DATA, subject, "nested too deep for an S2 message",
                       "invalid_json", fatal=True)


def _checked(raw: dict[str, Any], subject: uuid.UUID) -> S2Message | Refused:
    bad = _first_bad_number(raw, "")
    if bad is not None and isinstance(bad[1], _NotFinite):
        return Refused(ReceptionStatusValues.INVALID_MESSAGE, subject,
                       f"{bad[0]}: {bad[1].text} is not a number", "invalid_message")
    try:
        msg = S2Parser.parse_as_any_message(raw)
    except S2ValidationError as exc:
        return Refused(ReceptionStatusValues.INVALID_MESSAGE, subject,
                       f"{raw.get('message_type')!s}: {diagnostics(exc)}", "invalid_message")
    if bad is not None:
        return Refused(ReceptionStatusValues.INVALID_CONTENT, subject,
                       f"{msg.message_type}: {bad[0]} = {bad[1]!r} is out of range", "out_of_range")
    return msg


def diagnostics(exc: S2ValidationError) -> str:
    """pydantic's complaints, short: ``loc: msg`` for the first three."""
    cause = exc.__cause__
    if isinstance(cause, ValidationError):
        errors = cause.errors(include_url=False, include_input=False)
        text = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'message'}: {e['msg']}" for e in errors[:3])
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        return (text + more)[:MAX_DIAGNOSTIC_CHARS]
    return str(exc.msg)[:MAX_DIAGNOSTIC_CHARS]


def _subject(raw: dict[str, Any]) -> uuid.UUID:
    mid = raw.get("message_id")
    if isinstance(mid, str):
        try:
            return uuid.UUID(mid)
        except ValueError:
            pass
    return NIL_ID


def _first_bad_number(node: Any, path: str, parent: str = "") -> tuple[str, Any] | None:
    """The first number that is not finite or out of range, with its JSON path.  A string that
    reads as a number counts as one: pydantic's lax mode turns "NaN" or "1e300" into a float."""
    if isinstance(node, _NotFinite):
        return path, node
    if isinstance(node, bool):
        return None
    if isinstance(node, str):
        node = _as_number(node)
        if node is None:
            return None
        if isinstance(node, _NotFinite):
            return path, node
    if isinstance(node, int | float):
        key = path.rsplit(".", 1)[-1]
        power = (parent in _POWER_PARENTS and key in _POWER_KEYS) or key in _ANY_POWER_KEYS
        bound = MAX_POWER_W if power else MAX_ABS_NUMBER
        if isinstance(node, float) and not math.isfinite(node):  # 1e999 parses to inf
            return path, node
        return (path, node) if abs(node) > bound else None
    if isinstance(node, dict):
        for k, v in node.items():
            found = _first_bad_number(v, f"{path}.{k}" if path else str(k), parent)
            if found is not None:
                return found
    elif isinstance(node, list):
        key = path.rsplit(".", 1)[-1]
        for i, v in enumerate(node):
            found = _first_bad_number(v, f"{path}[{i}]", key)
            if found is not None:
                return found
    return None


def _as_number(text: str) -> float | _NotFinite | None:
    """What pydantic would make of ``text`` in a number field (None: not a number; ids, times
    and names are not)."""
    if len(text) > 64:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else _NotFinite(repr(text))
