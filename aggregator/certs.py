"""Certificates for mTLS: a fleet CA, aggregator server certificates, house client certificates.

A house's identity is the URI SAN of its client certificate,
``spiffe://<trust-domain>/house/<house-id>``; the aggregator trusts nothing else.
Keys are EC P-256; everything is PEM.  Pure functions: the CLI writes the files.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vpp_common.clock import UTC

_TRUST_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,253}[a-z0-9])?$")
_HOUSE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Issued:
    """A key and its certificate, PEM-encoded."""

    key_pem: bytes
    cert_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


def house_uri(trust_domain: str, house_id: str) -> str:
    check_trust_domain(trust_domain)
    if not _HOUSE_ID.match(house_id):
        raise ValueError(f"invalid house id {house_id!r}: 1-64 of letters, digits, '_', '.', '-'")
    return f"spiffe://{trust_domain}/house/{house_id}"


def check_trust_domain(trust_domain: str) -> str:
    if not _TRUST_DOMAIN.match(trust_domain):
        raise ValueError(f"invalid trust domain {trust_domain!r}: lower-case DNS-like name, e.g. vpp.example.net")
    return trust_domain


def house_id_from_uri(uri: str, trust_domain: str) -> str | None:
    """The house id of a ``spiffe://<trust_domain>/house/<id>`` URI, or None."""
    prefix = f"spiffe://{trust_domain}/house/"
    if not uri.startswith(prefix):
        return None
    house_id = uri[len(prefix):]
    return house_id if _HOUSE_ID.match(house_id) else None


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def create_ca(trust_domain: str, valid_days: int = 3650, now: datetime | None = None) -> Issued:
    """A self-signed CA for one fleet (trust domain)."""
    check_trust_domain(trust_domain)
    now = now or datetime.now(UTC)
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vpp"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"vpp fleet CA {trust_domain}")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(_pem_key(key), cert.public_bytes(serialization.Encoding.PEM))


def _issue(ca: Issued, common_name: str, sans: list[x509.GeneralName], usage: x509.ObjectIdentifier,
           valid_days: int, now: datetime | None) -> Issued:
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("CA key must be an EC key made by `aggregator certs ca`")
    ca_cert = ca.certificate
    now = now or datetime.now(UTC)
    key = _key()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return Issued(_pem_key(key), cert.public_bytes(serialization.Encoding.PEM))


def issue_server(ca: Issued, hosts: list[str], valid_days: int = 825, now: datetime | None = None) -> Issued:
    """A server certificate for an aggregator reachable under ``hosts`` (DNS names or IPs)."""
    if not hosts:
        raise ValueError("a server certificate needs at least one host name or IP address")
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    return _issue(ca, hosts[0], sans, ExtendedKeyUsageOID.SERVER_AUTH, valid_days, now)


def issue_house(ca: Issued, trust_domain: str, house_id: str, valid_days: int = 825,
                now: datetime | None = None) -> Issued:
    """A client certificate naming the house by URI SAN (and CN, for people)."""
    uri = house_uri(trust_domain, house_id)
    return _issue(ca, house_id, [x509.UniformResourceIdentifier(uri)], ExtendedKeyUsageOID.CLIENT_AUTH,
                  valid_days, now)
