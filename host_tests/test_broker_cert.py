"""docs/broker.md: the broker's server certificate is reissued by the project CA when a name is missing (keeping
the names it had), when it comes from another CA, and 30 days before it expires; otherwise it is left alone."""

from __future__ import annotations

import datetime as dt
import os

from cryptography import x509

from oxilink.broker import SERVER_RENEW_DAYS, certificate_names, ensure_server_certificate
from oxilink.pki import CertificateAuthority


def _not_after(folder):
    return x509.load_pem_x509_certificate((folder / "server.pem").read_bytes()).not_valid_after_utc


def _expiring_in(ca, folder, days):
    """A server certificate from `ca` with every default name, ending `days` from now."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=100)
    names = ["ward-7.local", "localhost", "127.0.0.1"]
    issued = ca.issue("ward-7.local", server=True, folder=folder / "old", names=names, not_before=start,
                      days=100 + days)
    os.replace(issued.key, folder / "server.key")
    os.replace(issued.cert, folder / "server.pem")


def test_a_certificate_due_within_30_days_is_renewed_and_one_due_later_is_kept(tmp_path):
    ca = CertificateAuthority(tmp_path / "pki")
    folder = tmp_path / "broker"
    folder.mkdir()
    assert SERVER_RENEW_DAYS == 30
    _expiring_in(ca, folder, SERVER_RENEW_DAYS + 1)
    kept = (folder / "server.pem").read_bytes()
    assert not ensure_server_certificate(folder, ca, ["ward-7.local"])
    assert (folder / "server.pem").read_bytes() == kept

    _expiring_in(ca, folder, SERVER_RENEW_DAYS - 1)
    assert ensure_server_certificate(folder, ca, ["ward-7.local"])
    assert _not_after(folder) - dt.datetime.now(dt.UTC) > dt.timedelta(days=800)  # a fresh 825-day certificate
    assert {"ward-7.local", "localhost", "127.0.0.1"} <= certificate_names(folder / "server.pem")


def test_a_missing_name_is_added_keeping_the_old_ones_and_another_cas_certificate_is_replaced(tmp_path):
    ca = CertificateAuthority(tmp_path / "pki")
    folder = tmp_path / "broker"
    assert ensure_server_certificate(folder, ca, ["ward-7.local"])
    assert not ensure_server_certificate(folder, ca, ["ward-7.local"])  # nothing to do
    assert ensure_server_certificate(folder, ca, ["10.20.0.5"])
    assert {"ward-7.local", "10.20.0.5", "localhost", "127.0.0.1"} <= certificate_names(folder / "server.pem")

    other = CertificateAuthority(tmp_path / "other-pki", name="someone else's CA")
    _expiring_in(other, folder, 400)
    assert ensure_server_certificate(folder, ca, ["ward-7.local"])
    cert = x509.load_pem_x509_certificate((folder / "server.pem").read_bytes())
    assert cert.issuer == ca.cert.subject
