"""Lab certificates made with ``cryptography``: a CA and leaf certificates signed by it, as PEM
files (``mcacm init`` writes a system's with it; the TLS tests make theirs with it)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _alt_name(name: str) -> x509.GeneralName:
    if name.startswith(("sip:", "sips:")):
        return x509.UniformResourceIdentifier(name)  # RFC 5922 7.1: a SIP URI identity
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    ca: bool,
    alt_names: Sequence[str] = (),
    expired: bool = False,
    days: int = 1,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    if expired:  # valid for a day that ended yesterday
        now -= datetime.timedelta(days=2)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0] if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if alt_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_alt_name(n) for n in alt_names]), critical=False
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


LOOPBACK_LEAVES: Mapping[str, Sequence[str]] = {"server": ("127.0.0.1",),
                                                 "client": ("127.0.0.1",)}


def make_pki(
    tmp: Path, name: str, leaves: Mapping[str, Sequence[str]] = LOOPBACK_LEAVES,
    expired: Collection[str] = (), days: int = 1,
) -> dict[str, Path]:
    """A CA (``files["ca"]``) and one certificate per leaf, signed by it, each with its key in
    the same PEM file (``files[leaf]``), valid for ``days``.  ``leaves``: leaf name -> its
    subjectAltNames (IP literals, SIP URIs or DNS names); the leaves named in ``expired``
    expired yesterday."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(f"{name} CA", ca_key, None, True, days=days)
    files = {"ca": tmp / f"{name}-ca.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for leaf, alt_names in leaves.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(f"{name} {leaf}", key, (ca.subject, ca_key), False, alt_names,
                     leaf in expired, days)
        path = tmp / f"{name}-{leaf}.pem"
        path.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        files[leaf] = path
    return files
