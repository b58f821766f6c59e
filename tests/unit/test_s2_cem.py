"""The S2 CEM's pure parts: its config, frame checks, control type choice, the instruction
mapping within the site limits, and the session's refusals (docs/s2-cem.md)."""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from pathlib import Path

import pytest
from s2python.common import ControlType

from edge_agent.config import AgentConfig
from edge_agent.energy_manager.device_share import device_window
from edge_agent.s2_cem.instructions import choose, decide_instruction
from edge_agent.s2_cem.session import CemSession, select_control_type
from edge_agent.s2_cem.state import Coordinator, Reading, RmSnapshot
from edge_agent.s2_cem.wire import Refused, parse_frame
from tests.e2e import s2_rm
from vpp_common.clock import UTC
from vpp_common.config import ConfigError, load_config
from vpp_common.messages import DispatchPlan, Envelope, FallbackMode, PlanSlot, Setpoint, SiteLimits

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
MID = "5f0c2a52-3c9e-4d1b-9a57-0d6f2c1e8b44"  # fixed: a test id holds it, and pytest-xdist workers must collect the same ids


def storage(fill: str) -> str:
    return '{"message_type": "FRBC.StorageStatus", "message_id": "' + MID + '", "present_fill_level": ' + fill + "}"


def agent_with_s2(tmp_path: Path, s2: str) -> AgentConfig:
    f = tmp_path / "agent.toml"
    f.write_text(f'insecure = true\nhouse_id = "h1"\n{s2}\n')
    return load_config(AgentConfig, f)


@pytest.mark.parametrize(("s2", "error"), [
    ('[s2]\nport = 8765\n', "s2.resource_managers"),
    ('[s2]\ninsecure = true\n[[s2.resource_managers]]\nname = "b"\ntoken = "short"\n', "at least 16"),
    ('[s2]\n[[s2.resource_managers]]\nname = "b"\ntoken = "0123456789abcdef"\n', "cert_file and key_file"),
    ('[s2]\ninsecure = true\ncert_file = "/nope.pem"\n[[s2.resource_managers]]\nname = "b"\n'
     'token = "0123456789abcdef"\n', "both cert_file and key_file"),
    ('[s2]\ninsecure = true\n[[s2.resource_managers]]\nname = "b"\ntoken = "0123456789abcdef"\n'
     '[[s2.resource_managers]]\nname = "c"\ntoken = "0123456789abcdef"\n', "share a token"),
    ('[s2]\ninsecure = true\nmax_messages_per_s = nan\n[[s2.resource_managers]]\nname = "b"\n'
     'token = "0123456789abcdef"\n', "s2.max_messages_per_s"),
    ('[s2]\ninsecure = true\nstale_after_s = 1e300\n[[s2.resource_managers]]\nname = "b"\n'
     'token = "0123456789abcdef"\n', "s2.stale_after_s"),
    ('[s2]\ninsecure = true\nprot = 1\n[[s2.resource_managers]]\nname = "b"\ntoken = "0123456789abcdef"\n', "prot"),
])
def test_bad_s2_config_is_refused_naming_the_key(tmp_path: Path, s2: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        agent_with_s2(tmp_path, s2)


def test_good_s2_config(tmp_path: Path) -> None:
    cfg = agent_with_s2(tmp_path, '[s2]\ninsecure = true\n[[s2.resource_managers]]\nname = "garage"\n'
                                  'token = "0123456789abcdef"\n')
    assert cfg.s2 is not None and cfg.s2.resource_managers[0].name == "garage"
    assert "0123456789abcdef" not in repr(cfg)  # the token is a secret


@pytest.mark.parametrize(("frame", "status", "fatal"), [
    ("{not json", "INVALID_DATA", True),
    ("[" * 100_000, "INVALID_DATA", True),
    (b"\xff\xfe", "INVALID_DATA", True),
    ("[]", "INVALID_DATA", False),
    ('{"message_type": "Nope", "message_id": "' + MID + '"}', "INVALID_MESSAGE", False),
    (storage("Infinity"), "INVALID_MESSAGE", False),
    (storage("1e999"), "INVALID_CONTENT", False),
    (storage("-1e10"), "INVALID_CONTENT", False),
])
def test_frames_that_are_refused(frame: str | bytes, status: str, fatal: bool) -> None:
    got = parse_frame(frame)
    assert isinstance(got, Refused) and got.status.value == status and got.fatal == fatal
    got.reception_status()  # always a valid S2 message to send back


def test_a_power_past_1_mw_is_refused_in_a_description() -> None:
    desc = s2_rm.system_description().to_json().replace("5000.0", "5000000.0", 1)
    got = parse_frame(desc)
    assert isinstance(got, Refused) and got.status.value == "INVALID_CONTENT" and "power_ranges[0]" in got.diagnostic


def test_control_type_preference() -> None:
    c = ControlType
    assert select_control_type([c.OPERATION_MODE_BASED_CONTROL, c.FILL_RATE_BASED_CONTROL]) is c.FILL_RATE_BASED_CONTROL
    assert select_control_type([c.POWER_ENVELOPE_BASED_CONTROL, c.POWER_PROFILE_BASED_CONTROL]) \
        is c.POWER_PROFILE_BASED_CONTROL
    assert select_control_type([c.POWER_ENVELOPE_BASED_CONTROL, c.OPERATION_MODE_BASED_CONTROL]) \
        is c.OPERATION_MODE_BASED_CONTROL
    assert select_control_type([c.POWER_ENVELOPE_BASED_CONTROL]) is c.POWER_ENVELOPE_BASED_CONTROL
    assert select_control_type([c.DEMAND_DRIVEN_BASED_CONTROL]) is c.NO_SELECTION


def test_the_device_window_keeps_the_grid_within_the_site_limits() -> None:
    limits = SiteLimits(11_000, 4_600)
    assert device_window(9_000, 1_000, limits) == (-4_600 - 8_000, 3_000)  # 3 kW of fuse left for it
    for bad in (math.nan, math.inf, None):
        assert device_window(bad, 0, limits) is None and device_window(0, bad, limits) is None
    assert device_window(0, 0, SiteLimits(math.nan, 0)) is None


def test_choose_maps_power_to_mode_and_factor_within_the_window() -> None:
    desc = s2_rm.system_description()
    t = choose(desc, 50, 2_500, None, None, "plan")
    assert t is not None and t.operation_mode_id == str(s2_rm.CHARGE) and t.factor == pytest.approx(0.5)
    t = choose(desc, 50, -2_000, None, None, "plan")
    assert t is not None and t.operation_mode_id == str(s2_rm.DISCHARGE) and t.factor == pytest.approx(0.6)
    t = choose(desc, 50, 0, None, str(s2_rm.IDLE), "plan")
    assert t is not None and t.operation_mode_id == str(s2_rm.IDLE)  # the present mode wins a tie
    # the plan wants 5 kW but only 1.5 kW of the fuse is left: the site limit wins
    t = choose(desc, 50, 5_000, (-10_000, 1_500), None, "plan")
    assert t is not None and t.power_w == pytest.approx(1_500) and t.factor == pytest.approx(0.3)
    assert choose(desc, 150, 1_000, None, None, "plan") is None  # no element holds that fill level
    assert choose(desc, math.nan, 1_000, None, None, "plan") is None
    assert choose(desc, 50, math.inf, None, None, "plan") is None


def frbc_snapshot(power_w: float) -> RmSnapshot:
    return RmSnapshot(name="b", session=1, connected=True, phase="active", connected_at=NOW, last_message_at=NOW,
                      resource_id=str(uuid.uuid4()), control_type="FILL_RATE_BASED_CONTROL",
                      system_description=s2_rm.system_description(), fill_level=Reading(50, NOW),
                      power_w=Reading(power_w, NOW))


def test_without_a_plan_the_rm_is_left_alone_unless_it_breaks_a_limit() -> None:
    limits = SiteLimits(11_000, 4_600)
    snap = frbc_snapshot(4_000)
    assert decide_instruction(snap, NOW, None, 5_000, limits, 60, 100) is None
    # the house draws 12 kW with the battery charging 4 kW: it must give up 1 kW at least
    t = decide_instruction(snap, NOW, None, 12_000, limits, 60, 100)
    assert t is not None and t.power_w == pytest.approx(3_000) and "site limit" in t.reason
    assert decide_instruction(snap, NOW, None, None, limits, 60, 100) is None  # no grid reading: nothing sent
    stale = frbc_snapshot(4_000)
    assert decide_instruction(stale, NOW + dt.timedelta(seconds=61), None, 12_000, limits, 60, 100) is None


def test_a_resource_id_is_held_by_one_live_session() -> None:
    coordinator = Coordinator()
    first = CemSession("a", coordinator, NOW, lambda: NOW)
    assert coordinator.claim("a", "r1") is None
    CemSession("b", coordinator, NOW, lambda: NOW)
    assert coordinator.claim("b", "r1") is not None and "'a'" in (coordinator.claim("b", "r1") or "")
    first.closed("gone")
    assert coordinator.claim("b", "r1") is None  # the first session's claim went with it
    assert coordinator.snapshots["a"].state(NOW, 60) == "disconnected"


def test_a_plan_setpoint_is_followed_within_the_limits_and_never_blind() -> None:
    limits = SiteLimits(11_000, 4_600)
    snap = frbc_snapshot(0)
    assert snap.resource_id is not None
    sp = Setpoint(snap.resource_id, 5_000, Envelope(5_000, 5_000))
    plan = DispatchPlan("p", 1, NOW, NOW, NOW + dt.timedelta(hours=1), 3600, (PlanSlot(NOW, (sp,)),),
                        fallback=FallbackMode.SELF_CONSUMPTION)
    t = decide_instruction(snap, NOW, plan, 1_000, limits, 60, 100)
    assert t is not None and t.power_w == pytest.approx(5_000) and t.reason == "plan setpoint"
    t = decide_instruction(snap, NOW, plan, 8_000, limits, 60, 100)  # 3 kW of the fuse left
    assert t is not None and t.power_w == pytest.approx(3_000)
    for grid in (None, math.nan, math.inf):
        assert decide_instruction(snap, NOW, plan, grid, limits, 60, 100) is None  # blind: nothing asked
    assert decide_instruction(snap, NOW, plan, 1_000, SiteLimits(math.nan, 0), 60, 100) is None


def test_a_silent_rm_is_stale_and_a_gone_one_disconnected() -> None:
    snap = frbc_snapshot(1_000)
    assert snap.state(NOW + dt.timedelta(seconds=59), 60) == "active"
    assert snap.state(NOW + dt.timedelta(seconds=61), 60) == "stale"
    coordinator = Coordinator()
    coordinator.next_session("b")
    coordinator.publish(snap)
    assert coordinator.usable(NOW, 60) == [snap] and coordinator.usable(NOW + dt.timedelta(seconds=61), 60) == []
    gone = RmSnapshot(**{f: getattr(snap, f) for f in RmSnapshot.__slots__ if f != "connected"}, connected=False)
    assert gone.state(NOW, 60) == "disconnected" and gone.power_w == snap.power_w  # kept, not zeroed, not used


def test_the_rm_follows_the_plan_the_agent_follows() -> None:
    from edge_agent.agent import EdgeAgent
    from edge_agent.config import ControlConfig
    from edge_agent.s2_cem.component import house_now
    from vpp_common.clock import ManualClock

    cfg = AgentConfig(house_id="h", insecure=True, metrics_port=None, state_dir=None,
                      control=ControlConfig(grace_s=60))
    a = EdgeAgent(cfg, clock=ManualClock(NOW))
    plan = DispatchPlan("p", 1, NOW, NOW, NOW + dt.timedelta(hours=1), 3600, (PlanSlot(NOW, ()),))
    a.plans.current = plan
    a._stream_down_since = None  # the stream is up
    assert house_now(a, NOW).plan is plan
    a._stream_down_since = -1e9  # down far past its grace: the agent's fallback, nothing for the RM
    assert house_now(a, NOW).plan is None
    a.override = plan  # a local override holds whatever the stream does
    assert house_now(a, NOW).plan is plan
    assert house_now(a, NOW).grid_w is None  # no reading yet: no instruction will be built on it


def test_a_frame_nested_too_deep_for_the_checks_is_refused_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    import edge_agent.s2_cem.wire as wire

    def too_deep(*_: object) -> None:
        raise RecursionError

    monkeypatch.setattr(wire, "_first_bad_number", too_deep)
    got = parse_frame('{"message_type": "FRBC.StorageStatus", "x": [[[[]]]]}')
    assert isinstance(got, Refused) and got.fatal and got.status.value == "INVALID_DATA"


def handshake(role: str = "RM", versions: list[str] | None = None) -> object:
    from s2python.common import EnergyManagementRole, Handshake

    return Handshake(message_id=uuid.uuid4(), role=EnergyManagementRole(role),
                     supported_protocol_versions=versions or ["0.0.2-beta"])


def test_version_negotiation_and_role() -> None:
    session = CemSession("b", Coordinator(), NOW, lambda: NOW)
    out = session.on_message(handshake(versions=["1.0.0", "0.0.2-beta"]))  # type: ignore[arg-type]
    assert out.close is None and out.send[1].selected_protocol_version == "0.0.2-beta"  # type: ignore[union-attr]
    assert session.snap.phase == "details" and session.snap.protocol_version == "0.0.2-beta"
    other = CemSession("c", Coordinator(), NOW, lambda: NOW)
    out = other.on_message(handshake(versions=["1.0.0"]))  # type: ignore[arg-type]
    assert out.close is not None and "no common S2 protocol version" in out.close
    assert out.send[0].status.value == "INVALID_CONTENT"  # type: ignore[union-attr]
    cem = CemSession("d", Coordinator(), NOW, lambda: NOW)
    out = cem.on_message(handshake(role="CEM"))  # type: ignore[arg-type]
    assert out.close is not None and "role must be RM" in (out.send[0].diagnostic_label or "")  # type: ignore[union-attr]


def test_a_ppbc_rm_gets_ppbc_and_its_messages_are_taken() -> None:
    from s2python.common import (
        Commodity,
        ControlType,
        Duration,
        ResourceManagerDetails,
        Role,
        RoleType,
    )

    session = CemSession("w", Coordinator(), NOW, lambda: NOW)
    session.on_message(handshake())  # type: ignore[arg-type]
    details = ResourceManagerDetails(
        message_id=uuid.uuid4(), resource_id=uuid.uuid4(), roles=[Role(role=RoleType.ENERGY_CONSUMER,
                                                                        commodity=Commodity.ELECTRICITY)],
        instruction_processing_delay=Duration(0), provides_forecast=False,
        available_control_types=[ControlType.POWER_ENVELOPE_BASED_CONTROL, ControlType.POWER_PROFILE_BASED_CONTROL],
        provides_power_measurement_types=[s2_rm.POWER])
    out = session.on_message(details)
    assert out.send[1].control_type is ControlType.POWER_PROFILE_BASED_CONTROL  # type: ignore[union-attr]
    frbc = session.on_message(s2_rm.system_description())
    assert frbc.send[0].status.value == "INVALID_CONTENT" and frbc.refused == "wrong_control_type"  # type: ignore[union-attr]
    container = {"power_profile_id": str(uuid.uuid4()), "sequence_container_id": str(uuid.uuid4()),
                 "status": "NOT_SCHEDULED"}
    status = parse_frame(json.dumps({"message_type": "PPBC.PowerProfileStatus", "message_id": str(uuid.uuid4()),
                                     "sequence_container_status": [container]}))
    assert not isinstance(status, Refused)
    early = session.on_message(status).send[0]
    assert early.status.value == "INVALID_CONTENT"  # type: ignore[union-attr]
    assert "before a PPBC.PowerProfileDefinition" in early.diagnostic_label  # type: ignore[union-attr]
    assert decide_instruction(session.snap, NOW, None, 0, SiteLimits(11_000, 4_600), 60, 100) is None
