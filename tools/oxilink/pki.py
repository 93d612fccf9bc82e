"""Project PKI: an EC P-256 CA, the broker's server certificate, device and receiver client certificates,
and a CRL for revoked devices. Everything lives in an ignored folder (default `secrets/pki/`); private keys
are written 0600 and never printed.

EC P-256 keeps the ESP32's TLS handshake short (an RSA-2048 private-key operation takes seconds there).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 825
DEVICE_DAYS = 365


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def write_private(path: Path, data: bytes) -> None:
    """Create a private file with 0600 permissions from the start (no window where it is world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "oxilink"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _san_entry(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path

    def common_name(self) -> str:
        cert = x509.load_pem_x509_certificate(self.cert.read_bytes())
        return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value

    def cert_der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.cert.read_bytes()).public_bytes(serialization.Encoding.DER)

    def key_der(self) -> bytes:
        key = serialization.load_pem_private_key(self.key.read_bytes(), password=None)
        return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())


class CertificateAuthority:
    """A CA rooted in `folder`: ca.pem, ca.key, issued certificates and crl.pem."""

    def __init__(self, folder: Path, name: str = "oxilink project CA"):
        self.folder = Path(folder)
        self.cert_path = self.folder / "ca.pem"
        self.key_path = self.folder / "ca.key"
        if not self.cert_path.exists():
            self._create(name)
        self.cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        self.key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        self.crl_path = self.folder / "crl.pem"
        self.revoked_path = self.folder / "revoked.json"
        if not self.crl_path.exists():
            self.write_crl(self.revoked_serials())

    def _create(self, name: str) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())
        )
        write_private(self.key_path, _key_pem(key))
        self.cert_path.parent.mkdir(parents=True, exist_ok=True)
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def ca_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def issue(self, cn: str, *, server: bool = False, days: int = DEVICE_DAYS, folder: Path | None = None,
              not_before: dt.datetime | None = None, names: Sequence[str] = ()) -> Issued:
        """Issue a certificate for `cn` (a device id, the receiver, or the broker's host name). A server
        certificate's SAN holds `names` (DNS names and IP addresses; default cn and 127.0.0.1)."""
        folder = Path(folder or self.folder / "issued")
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or (_now() - dt.timedelta(minutes=5))
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [_san_entry(n) for n in dict.fromkeys(names or (cn, "127.0.0.1"))]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        issued = Issued(folder / f"{cn}.pem", folder / f"{cn}.key")
        write_private(issued.key, _key_pem(key))
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return issued

    def serial_of(self, cert_path: Path) -> int:
        return x509.load_pem_x509_certificate(cert_path.read_bytes()).serial_number

    def revoked_serials(self) -> list[int]:
        if not self.revoked_path.exists():
            return []
        return [int(s) for s in json.loads(self.revoked_path.read_text()).values()]

    def revoke(self, name: str, cert_path: Path) -> int:
        """Add a certificate to the CRL (kept in revoked.json by name) and rewrite crl.pem."""
        revoked = json.loads(self.revoked_path.read_text()) if self.revoked_path.exists() else {}
        serial = self.serial_of(cert_path)
        revoked[f"{name}:{serial}"] = str(serial)
        self.revoked_path.write_text(json.dumps(revoked, indent=1) + "\n")
        self.write_crl(self.revoked_serials())
        return serial

    def write_crl(self, serials: list[int]) -> Path:
        now = _now()
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
                   .last_update(now - dt.timedelta(minutes=5)).next_update(now + dt.timedelta(days=30)))
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
        crl = builder.sign(self.key, hashes.SHA256())
        self.crl_path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        return self.crl_path
