"""The MQTT task: the house announced to Home Assistant, its states published, its commands taken.

Own reconnect loop (aiomqtt has none): exponential backoff with jitter, reset once connected.
On every connect: discovery (retained), ``online`` on the availability topic (retained; the
last will says ``offline`` if the agent dies), then every state (retained).  Discovery is
announced again whenever Home Assistant's status topic says ``online`` (it restarted) and when
the set of entities changes (e.g. the EV charger showed up once the device answered).
Commands are parsed (commands.py) and applied through ``EdgeAgent.apply_local``; a refused
command is counted as ``vpp_edge_refused_total{source="home_assistant"}`` and the entity's
current state is published again, so Home Assistant shows what holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
from datetime import datetime
from typing import TYPE_CHECKING

import aiomqtt
from prometheus_client import Counter, Gauge

from edge_agent.agent import AGENT_VERSION, EdgeAgent
from edge_agent.home_assistant.automation import UNREACHABLE_AFTER_S, Conditions, cheap_now, events
from edge_agent.home_assistant.commands import Refused, parse
from edge_agent.home_assistant.energy import SETTINGS, CounterStore, load_settings, save_settings
from edge_agent.home_assistant.entities import HouseSpec, discovery
from edge_agent.home_assistant.states import HouseView, states
from vpp_common.backoff import Backoff
from vpp_common.clock import cancel_and_wait
from vpp_common.config import ConfigError
from vpp_common.messages import ResourceKind
from vpp_common.timeslots import align_down

if TYPE_CHECKING:
    from edge_agent.resources.house import HouseSnapshot

log = logging.getLogger(__name__)

SOURCE = "home_assistant"  # refusals' source label
DEFAULT_OVERRIDE_HOURS = 2.0
PRICE_SLOT_S = 900  # the price events look at the next 24 h in quarter hours
PRICE_SLOTS = 96


def node_id_for(house_id: str) -> str:
    """A discovery node id from a house id: only the characters Home Assistant allows there."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", house_id)


class HomeAssistantBridge:
    def __init__(self, agent: EdgeAgent) -> None:
        cfg = agent.config.home_assistant
        assert cfg is not None and agent.config.state_dir is not None  # the config's checks
        self.agent, self.cfg = agent, cfg
        self.node_id = cfg.node_id or node_id_for(agent.config.house_id or "")
        self.store = CounterStore(agent.config.state_dir / f"home_assistant_energy_{self.node_id}.json")
        # a valid reading further than this from the last one is not joined to it (a gap)
        try:
            self.counters = self.store.load(max_step_s=3 * agent.config.device.poll_interval_s)
            self.store.save(self.counters)  # writable now, not first found out at the first publish
        except OSError as exc:  # the operator must fix the directory: exit 2 with the reason
            raise ConfigError(f"state_dir: cannot keep the energy counters in {self.store.path}: "
                              f"{exc.strerror or exc}") from None
        self.settings_path = agent.config.state_dir / f"home_assistant_settings_{self.node_id}.json"
        self._restore_settings()
        self.prices = agent.config.tariff.price_source() if agent.config.tariff is not None else None
        self.override_hours = DEFAULT_OVERRIDE_HOURS
        self.connected = False
        self.announcements = 0  # discovery rounds published (tests, logs)
        self._announced: HouseSpec | None = None
        self._conditions: Conditions | None = None  # as last published (events fire on changes)
        self._down_since: datetime | None = None
        self.events_published = 0
        self._backoff = Backoff(cfg.reconnect_initial_s, cfg.reconnect_max_s)
        self._rng = random.Random()
        r = agent.metrics.registry
        self.m_connected = Gauge("vpp_edge_home_assistant_connected", "1 while the MQTT broker connection is up.",
                                 registry=r)
        self.m_connects = Counter("vpp_edge_home_assistant_connects_total",
                                  "MQTT broker connection attempts, by result (ok, error).", ["result"], registry=r)
        agent.snapshot_listeners.append(self._on_snapshot)

    # -- settings made in Home Assistant survive a restart ------------------------------
    def _restore_settings(self) -> None:
        """The mode and reserve last set from Home Assistant (only those: the config file's hold
        otherwise), applied again through the same checks; one the config no longer allows is
        refused and forgotten."""
        saved = load_settings(self.settings_path)
        self.settings: dict[str, str | float] = {}
        for name in SETTINGS:
            if name not in saved:
                continue
            cmd = parse(self.spec(), name, str(saved[name]).encode())  # as if Home Assistant sent it again
            if isinstance(cmd, Refused):
                self.agent.refusals.refuse(SOURCE, cmd.label, f"restored: {cmd.detail}")
            elif self.agent.apply_local(name, cmd.value, SOURCE) is None:
                self.settings[name] = saved[name]
                log.info("Home Assistant: %s %s restored from %s", name, saved[name], self.settings_path)
        if self.settings != saved:
            self._save_settings()

    def _save_settings(self) -> None:
        try:
            save_settings(self.settings_path, self.settings)
        except OSError as exc:
            self.agent.refusals.refuse(SOURCE, "state_dir", f"could not save the settings: {exc}")

    # -- what to publish ---------------------------------------------------------------
    def spec(self) -> HouseSpec:
        a = self.agent
        resources = getattr(a.device, "resources", ()) or ()
        return HouseSpec(
            node_id=self.node_id, house_name=f"VPP house {a.config.house_id or self.node_id}",
            sw_version=AGENT_VERSION, discovery_prefix=self.cfg.discovery_prefix,
            has_ev=any(r.kind is ResourceKind.EV_CHARGER for r in resources),
            has_battery=bool(getattr(a.device, "has_battery", True)),  # a house of LAN devices only: none
            currency=a.config.tariff.currency if a.config.tariff is not None else None,
            max_soc_pct=a.config.battery.max_soc_pct)

    def view(self, kwh: dict[str, float]) -> HouseView:
        a = self.agent
        now = a.clock.now()
        resources = getattr(a.device, "resources", ()) or ()
        ev_id = next((r.resource_id for r in resources if r.kind is ResourceKind.EV_CHARGER), None)
        override = a.override if a.override is not None and a.override.is_valid_at(now) else None
        plan = override or (a.local_tou.current if a.local_tou is not None else
                            a.plans.current if a.config.control.mode == "vpp" else None)
        return HouseView(
            telemetry=a.snapshot.telemetry if a.snapshot is not None else None, ev_id=ev_id, kwh=kwh,
            saved_today=self.counters.saved_today if self.prices is not None else None,
            decision=a.stats.last_decision, override=override, plan=plan, mode=a.config.control.mode,
            reserve_soc_pct=a.config.battery.reserve_soc_pct, override_hours=self.override_hours, now=now)

    def conditions(self) -> Conditions:
        a = self.agent
        now = a.clock.now()
        price, cheap = None, False
        if self.prices is not None:
            imports, _ = self.prices.prices(align_down(now, PRICE_SLOT_S), PRICE_SLOT_S, PRICE_SLOTS)
            price, cheap = cheap_now(imports)
        d = a.stats.last_decision
        binding = frozenset(d.clamped_by) & {"export_cap", "import_limit"} if d is not None else frozenset()
        if a.config.control.mode != "vpp" or a.uplink.connected:
            self._down_since = None
        elif self._down_since is None:
            self._down_since = now
        unreachable = self._down_since is not None and (now - self._down_since).total_seconds() >= UNREACHABLE_AFTER_S
        sources = ("plan", "grid_signal")
        refused = sum(a.refusals.by_source.get(s, 0) for s in sources)
        last = max(((a.refusals.last_reason[s], s) for s in sources if s in a.refusals.last_reason), default=None)
        return Conditions(price, cheap, binding, unreachable, refused, f"{last[1]}: {last[0][1]}" if last else "")

    def _on_snapshot(self, snap: HouseSnapshot) -> None:
        try:
            self.counters.add(snap.telemetry, self.prices)
        except Exception as exc:
            self.agent.refusals.refuse(SOURCE, "energy_counter", f"could not integrate a reading: {exc!r}")

    # -- the connection ------------------------------------------------------------------
    def _client(self) -> aiomqtt.Client:
        cfg = self.cfg
        assert cfg.host is not None  # attach() runs the bridge only with a broker
        tls = (aiomqtt.TLSParameters(ca_certs=str(cfg.tls.ca_file),
                                     certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
                                     keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None)
               if cfg.tls is not None else None)
        return aiomqtt.Client(
            cfg.host, cfg.port, username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password is not None else None,
            identifier=f"vpp-edge-{self.node_id}", keepalive=cfg.keepalive_s, tls_params=tls, timeout=10,
            will=aiomqtt.Will(self.spec().availability_topic, "offline", qos=1, retain=True))

    async def run(self) -> None:
        attempt = 0
        try:
            while True:
                try:
                    async with self._client() as client:
                        attempt = 0
                        self._set_connected(True)
                        await self._session(client)
                except Exception as exc:
                    self.m_connects.labels("error").inc()
                    if self.connected or attempt == 0:  # said when it breaks, not on every retry
                        log.warning("MQTT broker %s:%s: %s (reconnecting with backoff)", self.cfg.host,
                                    self.cfg.port, exc if isinstance(exc, aiomqtt.MqttError) else repr(exc))
                finally:
                    self._set_connected(False)
                await asyncio.sleep(self._backoff.delay(attempt, self._rng))
                attempt += 1
        finally:
            self._save()

    def _set_connected(self, up: bool) -> None:
        if up and not self.connected:
            self.m_connects.labels("ok").inc()
            log.info("MQTT broker %s:%s connected: announcing the house to Home Assistant", self.cfg.host,
                     self.cfg.port)
        self.connected = up
        self.m_connected.set(1 if up else 0)

    async def _session(self, client: aiomqtt.Client) -> None:
        spec = self.spec()
        await client.subscribe(f"{spec.base}/+/set", qos=1)
        await client.subscribe(self.cfg.status_topic, qos=1)
        await self.announce(client)
        tasks = [asyncio.create_task(self._publish_loop(client), name="ha-publish"),
                 asyncio.create_task(self._command_loop(client), name="ha-commands")]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()  # the MqttError that ended the session
        except asyncio.CancelledError:
            # the agent stops: say so now (a clean disconnect sends no last will)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await client.publish(spec.availability_topic, "offline", qos=1, retain=True)
            raise
        finally:
            await cancel_and_wait(tasks)
            for t in tasks:  # the other one may have failed too (the same lost connection): seen, not logged
                if not t.cancelled():
                    t.exception()

    async def announce(self, client: aiomqtt.Client) -> None:
        """Discovery (retained), then online, then every state."""
        spec = self.spec()
        for topic, payload in discovery(spec):
            await client.publish(topic, payload, qos=1, retain=True)
        await client.publish(spec.availability_topic, "online", qos=1, retain=True)
        self._announced = spec
        self.announcements += 1
        await self.publish_states(client)

    async def publish_states(self, client: aiomqtt.Client) -> None:
        kwh = self._save()  # on disk before Home Assistant sees it: a restart never shows a decrease
        spec = self._announced or self.spec()
        for key, payload in states(self.view(kwh)).items():
            await client.publish(f"{spec.base}/{key}" if "/" in key else spec.state_topic(key), payload,
                                 qos=0, retain=True)
        await self.publish_events(client, spec)

    async def publish_events(self, client: aiomqtt.Client, spec: HouseSpec) -> None:
        """What started since the last publish, not retained (Home Assistant must not replay it)."""
        now = self.conditions()
        before, self._conditions = self._conditions, now
        for key, payload in events(before, now):
            await client.publish(spec.state_topic(key), json.dumps(payload), qos=1, retain=False)
            self.events_published += 1

    def _save(self) -> dict[str, float]:
        kwh = dict(self.counters.kwh)
        try:
            self.store.save(self.counters)
        except OSError as exc:
            self.agent.refusals.refuse(SOURCE, "state_dir", f"could not save the energy counters: {exc}")
        return kwh

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        while True:
            await asyncio.sleep(self.cfg.publish_interval_s)
            if self.spec() != self._announced:
                await self.announce(client)  # e.g. the EV charger appeared once the device answered
            else:
                await self.publish_states(client)

    async def _command_loop(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            payload = msg.payload if isinstance(msg.payload, (bytes, bytearray)) else str(msg.payload or "").encode()
            await self.on_message(client, msg.topic.value, bytes(payload), msg.retain)

    async def on_message(self, client: aiomqtt.Client, topic: str, payload: bytes, retain: bool) -> None:
        spec = self._announced or self.spec()
        if topic == self.cfg.status_topic:
            if payload.strip() == b"online":
                log.info("Home Assistant came online: announcing the house again")
                await self.announce(client)
            return
        key = topic.removeprefix(spec.base + "/").removesuffix("/set")
        if retain:  # a retained command would be applied again on every reconnect: never
            self.agent.refusals.refuse(SOURCE, "retained_command", f"{key[:40]}: retained message on {topic[:80]}")
            return
        cmd = parse(spec, key, payload)
        if isinstance(cmd, Refused):
            self.agent.refusals.refuse(SOURCE, cmd.label, cmd.detail)
        elif cmd.name == "override_hours":
            assert isinstance(cmd.value, float)
            self.override_hours = cmd.value
        else:
            value = self.override_hours if cmd.name in ("hold_battery", "charge_now") else cmd.value
            if self.agent.apply_local(cmd.name, value, SOURCE) is None:
                log.info("Home Assistant: %s %s applied", cmd.name, value if value is not None else "")
                if cmd.name in SETTINGS and value is not None:
                    self.settings[cmd.name] = value
                    self._save_settings()
        await self.publish_states(client)  # what holds now, refused or not


def attach(agent: EdgeAgent) -> HomeAssistantBridge | None:
    """With a ``[home_assistant]`` table: the bridge, run among the agent's components (its
    energy counters are loaded here: an unwritable state_dir is a ConfigError before start)."""
    if agent.config.home_assistant is None or agent.config.home_assistant.host is None:
        return None
    bridge = HomeAssistantBridge(agent)
    agent.components.append(bridge)
    return bridge
