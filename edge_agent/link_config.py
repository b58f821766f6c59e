"""Settings of the agent's links: mTLS to the aggregator (``[tls]``), MQTT to Home Assistant
(``[home_assistant]``) and the S2 CEM endpoint that Resource Managers connect to (``[s2]``);
part of the one configuration (edge_agent/config.py)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from edge_agent.ha_api_config import HomeAssistantApiConfig

# Nested models too: a typo in a nested key is an error, not a silent default (the settings
# class's extra="forbid" does not reach them), and inf/NaN are no number an operator means.
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class TlsClientConfig(BaseModel):
    """mTLS to the aggregator: the fleet CA, and this house's certificate and key
    (``aggregator certs house`` makes them).  The house identity is the
    certificate's; a renewed certificate file is picked up without a restart."""

    model_config = STRICT

    ca_file: Path
    cert_file: Path
    key_file: Path
    server_name: str | None = Field(None, description="name to verify instead of the aggregator host")
    check_interval_s: float = Field(30.0, gt=0, description="how often to look for a renewed certificate (real s)")

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _readable(cls, v: Path) -> Path:
        if not v.is_file():
            raise ValueError(f"file {v} does not exist")
        try:
            data = v.read_bytes()
        except OSError as exc:  # e.g. the key readable by root only: the uplink would fail for ever
            raise ValueError(f"cannot read {v}: {exc.strerror or exc}") from None
        if b"-----BEGIN " not in data:  # a DER file or the wrong file: every handshake would fail
            raise ValueError(f"{v} is not PEM (no -----BEGIN line)")
        return v

    @field_validator("ca_file", "cert_file")
    @classmethod
    def _certificate(cls, v: Path) -> Path:
        from cryptography import x509  # a dependency of grpc's TLS anyway

        try:
            x509.load_pem_x509_certificate(v.read_bytes())
        except ValueError as exc:  # an expired one is fine here: the agent warns and waits for renewal
            raise ValueError(f"{v} holds no PEM certificate: {exc}") from None
        return v


class MqttTlsConfig(BaseModel):
    """TLS to the MQTT broker: the CA that signed the broker's certificate, and optionally a
    client certificate and key (brokers that authenticate clients by certificate)."""

    model_config = STRICT

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _files(self) -> MqttTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file (a client certificate), or neither")
        for f in (self.ca_file, self.cert_file, self.key_file):
            if f is not None and not f.is_file():
                raise ValueError(f"file {f} does not exist")
        return self


class HomeAssistantConfig(BaseModel):
    """``[home_assistant]``: publish the house to Home Assistant over MQTT discovery
    (edge_agent/home_assistant/; with ``host``), and use Home Assistant's entities as the house's
    devices (``[home_assistant.api]``); off unless the table is there."""

    model_config = STRICT

    host: str | None = Field(None, description="MQTT broker host (the one Home Assistant's MQTT integration "
                                               "uses); none: the house is not published")
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: MqttTlsConfig | None = None
    discovery_prefix: str = Field("homeassistant", pattern=r"^[^#+\s]+$")
    node_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]+$",
                                description="discovery node id and unique_id stem; default from house_id")
    status_topic: str = Field("homeassistant/status", pattern=r"^[^#+\s]+$",
                              description="Home Assistant's birth/last-will topic: 'online' = re-announce")
    publish_interval_s: float = Field(10.0, gt=0, le=3600, description="states published every this many real s")
    keepalive_s: int = Field(30, ge=5, le=3600)
    reconnect_initial_s: float = Field(1.0, gt=0, description="first reconnect delay to the broker (real s)")
    reconnect_max_s: float = Field(60.0, gt=0, description="largest reconnect delay (real s, with jitter)")
    api: HomeAssistantApiConfig | None = Field(None, description="Home Assistant's entities as the house's devices")

    @field_validator("host")
    @classmethod
    def _host_given(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must name the MQTT broker (IP address or host name)")
        return v

    @model_validator(mode="after")
    def _something_to_do(self) -> HomeAssistantConfig:
        if self.host is None and self.api is None:
            raise ValueError("give host (the MQTT broker: publish the house) or an [home_assistant.api] table "
                             "(use Home Assistant's entities), or both")
        return self


class S2ResourceManagerConfig(BaseModel):
    """``[[s2.resource_managers]]``: one S2 Resource Manager allowed to connect, and its
    pre-shared bearer token (sent as ``Authorization: Bearer <token>`` on the WebSocket upgrade)."""

    model_config = STRICT

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="the operator's name for this RM (logs, s2 list)")
    token: SecretStr = Field(description="pre-shared bearer token: at least 16 characters, no spaces")

    @field_validator("token")
    @classmethod
    def _strong_enough(cls, v: SecretStr) -> SecretStr:
        t = v.get_secret_value()
        if len(t) < 16 or re.search(r"\s", t):
            raise ValueError("must be at least 16 characters without white space (e.g. `openssl rand -hex 16`)")
        return v


class S2Config(BaseModel):
    """``[s2]``: the agent as an S2 CEM (docs/s2-cem.md): a WebSocket server on the LAN that
    third-party Resource Managers connect to; off unless the table is there."""

    model_config = STRICT

    host: str = Field("0.0.0.0", description="address to listen on")
    port: int = Field(8765, ge=0, le=65535, description="0 = any free port (tests)")
    path: str = Field("/s2", pattern=r"^/[A-Za-z0-9/_.-]*$", description="the WebSocket's URL path")
    cert_file: Path | None = Field(None, description="TLS (wss): the server certificate, PEM")
    key_file: Path | None = Field(None, description="TLS (wss): its private key, PEM")
    insecure: bool = Field(False, description="plain ws without TLS: the tokens cross the LAN in clear text")
    resource_managers: list[S2ResourceManagerConfig] = Field(min_length=1, max_length=64)
    handshake_timeout_s: float = Field(10.0, gt=0, le=300, description="Handshake to SelectControlType, real s")
    stale_after_s: float = Field(60.0, gt=0, le=3600, description="an RM silent this long is stale (clock s)")
    max_messages_per_s: float = Field(20.0, gt=0, le=1000, description="sustained message rate per session")
    burst_messages: int = Field(100, ge=1, le=10_000, description="messages a session may send at once")
    max_message_bytes: int = Field(1_048_576, ge=4096, le=16_777_216, description="largest message, bytes")
    # parsing costs ~0.2 ms/kB on the agent's one event loop (docs/s2-cem.md): 256 kB/s is ~5 % of it per RM
    max_bytes_per_s: int = Field(262_144, ge=4096, le=16_777_216, description="sustained bytes/s per session "
                                                                             "(burst: max_message_bytes)")
    heartbeat_s: float = Field(20.0, gt=0, le=600, description="WebSocket ping period; a peer that does not "
                                                               "answer is disconnected (real s)")
    instruction_deadband_w: float = Field(100.0, ge=0, le=100_000,
                                          description="a new instruction only for a change larger than this, W")

    @model_validator(mode="after")
    def _tls_or_explicitly_insecure(self) -> S2Config:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file (wss), or neither with insecure = true (ws)")
        if self.cert_file is None and not self.insecure:
            raise ValueError("configure cert_file and key_file (wss) or set insecure = true: the bearer tokens "
                             "would cross the LAN in clear text")
        for f in (self.cert_file, self.key_file):
            if f is not None and not f.is_file():
                raise ValueError(f"file {f} does not exist")
        names = [rm.name for rm in self.resource_managers]
        tokens = [rm.token.get_secret_value() for rm in self.resource_managers]
        if len(set(names)) != len(names):
            raise ValueError(f"resource_managers: names must be unique, got {names}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("resource_managers: two RMs share a token: each RM needs its own")
        return self
