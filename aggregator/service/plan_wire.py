"""A solved block's plan slots encoded straight from its arrays, as protobuf's own encoder would.

The plan encoder processes (``plan_encoder``) encode every plan of a cycle; building the
slots as messages took ~0.45 ms a plan (10,000 plans: 4.5 CPU s a cycle on a 2-core
machine).  Here the fixed part of every slot (battery target, battery and grid envelopes:
49 bytes when no number is +0.0) is laid out for all the block's plans at once by numpy, and
each slot is its start, its setpoint's header, that part and its reason, joined.  The bytes
are those ``DispatchPlan.SerializeToString`` gives for the same slots (field order, +0.0
left out, -0.0 and NaN kept, an empty envelope still present): a slot with a +0.0 among
its numbers is encoded field by field.  ``tests/unit/test_plan_wire.py`` compares both.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from aggregator.dispatch.plans import PackedPlans
from vpp.timestamps import timestamp as _ts

_D = struct.Struct("<d").pack
# the fixed part of a slot: target (ResourceSetpoint.target_power_w, 0x11), its envelope
# (0x1a, 18 bytes: min 0x09, max 0x11), then PlanSlot.grid_envelope (0x1a, the same)
_FIXED = np.dtype([("t_tag", "u1"), ("tgt", "<f8"), ("e_head", "S3"), ("lo", "<f8"), ("hi_tag", "u1"), ("hi", "<f8"),
                   ("g_head", "S3"), ("g_lo", "<f8"), ("g_hi_tag", "u1"), ("g_hi", "<f8")])
_FIXED_LEN = _FIXED.itemsize  # 49
_SMALL = [bytes((i,)) for i in range(0x80)]


def varint(n: int) -> bytes:
    """A protobuf varint (n >= 0)."""
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return bytes((tag,)) + varint(len(payload)) + payload


def _double(tag: int, v: float) -> bytes:
    """A proto3 double: left out when +0.0 (its bits all zero), as protobuf does."""
    return b"" if v == 0.0 and math.copysign(1.0, v) > 0 else bytes((tag,)) + _D(v)


def _envelope(lo: float, hi: float) -> bytes:
    return _field(0x1A, _double(0x09, lo) + _double(0x11, hi))


def slot_fields(start: bytes, bid: bytes, tgt: float, lo: float, hi: float, g_lo: float, g_hi: float,
                reason: bytes) -> bytes:
    """One PlanSlot's fields, each on its own (any number, +0.0 included)."""
    setpoint = _field(0x0A, bid) + _double(0x11, tgt) + _envelope(lo, hi)
    return start + _field(0x12, setpoint) + _envelope(g_lo, g_hi) + reason


def packed_slots_to_wire(pk: PackedPlans) -> dict[str, bytes]:
    """Plan id -> the slots of each plan of a solved block, encoded as
    ``convert.slots_to_wire`` encodes them (the same bytes)."""
    n, t = pk.target_w.shape
    starts = [_field(0x0A, _ts(st).SerializeToString()) for st in pk.starts]
    reasons = [_field(0x22, r.encode()) if r else b"" for r in pk.reasons]
    fixed = np.empty((n, t), _FIXED)
    fixed["t_tag"], fixed["hi_tag"], fixed["g_hi_tag"] = 0x11, 0x11, 0x11
    fixed["e_head"] = fixed["g_head"] = b"\x1a\x12\x09"
    slow = np.zeros((n, t), bool)  # a +0.0 in an envelope: field by field
    for name, values in (("tgt", pk.target_w), ("lo", pk.env_lo_w), ("hi", pk.env_hi_w), ("g_lo", pk.grid_lo_w),
                         ("g_hi", pk.grid_hi_w)):
        fixed[name] = values
        if name != "tgt":
            slow |= (values == 0.0) & ~np.signbit(values)
    no_target = (pk.target_w == 0.0) & ~np.signbit(pk.target_w)  # a target of +0.0: its 9 bytes left out
    raw = fixed.tobytes()
    out = {}
    for k, plan_id in enumerate(pk.plan_ids):
        bid = pk.battery_ids[k].encode()
        head = b"\x0a" + varint(len(bid)) + bid
        sp_heads = (b"\x12" + varint(len(head) + 29) + head, b"\x12" + varint(len(head) + 20) + head)
        slow_k = set(np.flatnonzero(slow[k]).tolist())
        parts: list[bytes] = []
        at = k * t * _FIXED_LEN
        for s, (code, start, bare) in enumerate(zip(pk.reason_codes[k].tolist(), starts, no_target[k].tolist(),
                                                    strict=True)):
            reason = reasons[code]
            if slow_k and s in slow_k:
                body = slot_fields(start, bid, float(pk.target_w[k, s]), float(pk.env_lo_w[k, s]),
                                   float(pk.env_hi_w[k, s]), float(pk.grid_lo_w[k, s]), float(pk.grid_hi_w[k, s]), reason)
                parts += (b"\x3a", varint(len(body)), body)
            else:
                sp_head, cut = sp_heads[bare], at + 9 * bare
                fixed_part = raw[cut:at + _FIXED_LEN]
                parts += (b"\x3a", varint(len(start) + len(sp_head) + len(fixed_part) + len(reason)), start, sp_head,
                          fixed_part, reason)
            at += _FIXED_LEN
        out[plan_id] = b"".join(parts)
    return out
