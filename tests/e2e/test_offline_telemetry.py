"""Offline is normal: the aggregator away for 10 minutes, the agent restarted once in between,
then every sample the agent recorded is in the store exactly once.

Real sockets (Modbus simulator <- edge agent <-> aggregator) on an accelerated clock: 10 minutes
of agent time (a sample every 10 s, a device poll every 5 s) run in 6 s of real time.  The
reconnect backoff is real time, so the return is measured in real seconds.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from aggregator.config import AggregatorConfig, PlanningConfig
from aggregator.server import AggregatorServer
from aggregator.store import MemoryStore, RedisStore, StateStore
from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig, DeviceConfig
from simulator.hybrid_device import SimulatorConfig, SunSpecHybridSimulator
from simulator.physics import PhysicsConfig
from tests.conftest import until
from vpp_common.clock import UTC, AcceleratedClock
from vpp_common.messages import SiteTelemetry

pytestmark = pytest.mark.e2e

HOUSE = "house-offline"
T0 = datetime(2026, 6, 21, 11, 0, tzinfo=UTC)
SPEED = 100.0  # clock s per real s
INTERVAL_S = 10.0  # clock s between samples (the default)
OUTAGE_S = 600.0  # clock s
RECONNECT_MAX_S = 1.0  # real s


def agent_config(target: str, state_dir: Path, device_port: int) -> AgentConfig:
    return AgentConfig(house_id=HOUSE, aggregator=target, insecure=True, metrics_port=None,
                       telemetry_interval_s=INTERVAL_S, reconnect_initial_s=0.05, reconnect_max_s=RECONNECT_MAX_S,
                       state_dir=state_dir, device=DeviceConfig(port=device_port, poll_interval_s=5.0))


def agg_config(listen: str) -> AggregatorConfig:
    # the TOU rule, not the LP: no solver process to start and join (which holds the shared loop for seconds)
    return AggregatorConfig(admin_listen=None, listen=listen, insecure=True, metrics_port=None, replica_id="off",
                            telemetry_interval_s=INTERVAL_S, drain_grace_s=0.2, planning=PlanningConfig(optimiser="tou"))


def recording(agent: EdgeAgent, log: list[datetime]) -> EdgeAgent:
    """Note every sample the agent records (gives to its uplink), online or not."""
    send = agent.uplink.send

    def send_and_note(message):  # type: ignore[no-untyped-def]
        if isinstance(message, SiteTelemetry):
            log.append(message.measured_at)
        send(message)

    agent.uplink.send = send_and_note  # type: ignore[method-assign]
    return agent


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_ten_minutes_offline_and_a_restart_lose_no_sample_and_store_none_twice(
        backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    monkeypatch.delenv("VPP_AGENT_STATE_DIR", raising=False)  # this test names its own
    state_dir = tmp_path / "agent-state"
    clock = AcceleratedClock(T0, SPEED)
    store: StateStore  # keeping every sample, not only the newest
    if backend == "redis":
        store = RedisStore(request.getfixturevalue("redis_server").url, namespace=f"off-{uuid.uuid4().hex[:8]}",
                           telemetry_history_s=86_400)
    else:
        store = MemoryStore(telemetry_history_s=86_400)
    sim = SunSpecHybridSimulator(SimulatorConfig(physics=PhysicsConfig(initial_soc_pct=50)), clock)
    await sim.start()
    agg: AggregatorServer | None = AggregatorServer(agg_config("127.0.0.1:0"), clock=clock, store=store)
    await agg.start()
    assert agg.target is not None
    port = int(agg.target.rsplit(":", 1)[1])
    cfg = agent_config(agg.target, state_dir, sim.port)
    recorded: list[datetime] = []
    agent = recording(EdgeAgent(cfg, clock=clock), recorded)
    await agent.start()
    try:
        await until(lambda: agent.uplink.telemetry_acked >= 3, "samples stored before the outage")

        # the aggregator goes away for 10 minutes of clock time
        await agg.stop(grace_s=0.2)
        agg = None
        away_at = clock.now()
        await until(lambda: not agent.uplink.connected, "the agent notices")
        await until(lambda: clock.now() >= away_at + timedelta(seconds=OUTAGE_S / 2), "half the outage", 30)
        assert agent.uplink.telemetry_unacked >= 15, "samples are recorded while offline"  # 30 on an idle machine

        # the agent restarts halfway, on the same state directory
        kept = agent.uplink.telemetry_unacked
        await agent.stop()
        agent = recording(EdgeAgent(cfg, clock=clock), recorded)
        assert agent.uplink.telemetry_unacked == kept, "the spool survives the restart"
        await agent.start()
        await until(lambda: clock.now() >= away_at + timedelta(seconds=OUTAGE_S), "the rest of the outage", 30)
        assert agent.uplink.telemetry_unacked > kept

        # back: a new aggregator on the same address (the store kept what was acked)
        agg = AggregatorServer(agg_config(f"127.0.0.1:{port}"), clock=clock, store=store)
        back = time.monotonic()
        await agg.start()
        await until(lambda: agent.uplink.connected, "the agent reconnects", timeout_s=10)
        reconnect_s = time.monotonic() - back
        assert reconnect_s < RECONNECT_MAX_S + 1.0, f"reconnected {reconnect_s:.2f} s after the return"
        await until(lambda: agent.uplink.telemetry_unacked == 0, "the backlog is back-filled", timeout_s=15)
        await agent.stop()  # no more samples: compare what was recorded with what was stored

        stored = [t.measured_at for t in await store.telemetry_history(HOUSE)]
        assert len(stored) == len(set(stored)), "a sample was stored twice"
        assert sorted(recorded) == stored, (f"recorded {len(recorded)}, stored {len(stored)}: missing "
                                            f"{sorted(set(recorded) - set(stored))[:5]}")
        assert len(set(recorded)) == len(recorded)
        offline = [t for t in recorded if away_at <= t <= away_at + timedelta(seconds=OUTAGE_S)]
        assert len(offline) >= 0.5 * OUTAGE_S / INTERVAL_S, f"only {len(offline)} samples in the outage"  # 60 idle
        # a sample every interval, online, offline and across the restart (a few clock s); loose for a busy
        # machine (1 real s = 100 clock s: the restart's stop and start took 0.62 real s once under load)
        gaps = [(b - a).total_seconds() for a, b in zip(recorded, recorded[1:])]
        assert max(gaps) < 150, f"a gap of {max(gaps)} s between two samples"
        assert agent.uplink.telemetry_dropped == 0
        print(f"{len(recorded)} samples recorded ({len(offline)} offline), all stored once; "
              f"reconnected {reconnect_s:.2f} s after the aggregator's return")
    finally:
        await agent.stop()
        if agg is not None:
            await agg.stop(grace_s=0.2)
        await sim.stop()
        await store.close()
