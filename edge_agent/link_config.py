"""Settings of the agent's two links: mTLS to the aggregator (``[tls]``) and MQTT to Home
Assistant (``[home_assistant]``); part of the one configuration (edge_agent/config.py)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

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
    (edge_agent/home_assistant/); off unless the table is there."""

    model_config = STRICT

    host: str = Field(description="MQTT broker host (the one Home Assistant's MQTT integration uses)")
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

    @field_validator("host")
    @classmethod
    def _host_given(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name the MQTT broker (IP address or host name)")
        return v
