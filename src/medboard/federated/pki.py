"""Certificates and keys made for one deployment run (with `cryptography`, which flwr needs).

- a certificate authority (`ca.crt`, `ca.key`) made for the run;
- the SuperLink's server certificate (`server.pem`, `server.key`), signed by that CA, valid for
  127.0.0.1 and localhost (the SuperLink's own SuperExec connects to it there too);
- one SuperNode authentication key pair per site (`site-N.key`, OpenSSH private key, and
  `site-N.pub`, OpenSSH public key, NIST P-384 as Flower requires), whose public half is
  registered with the SuperLink (`flwr supernode register`) before the SuperNode starts.

Nothing here is meant to outlive the run: the keys are written without passphrase, readable by
their owner only.
"""

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VALID_DAYS = 2


@dataclass(frozen=True)
class Tls:
    """The files of one run's TLS setup."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if private:
        path.chmod(0o600)
    return path


def _name(common_name: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "medboard federated run"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(folder: Path, common_name: str = "medboard run CA", stem: str = "ca") -> Tls:
    """A self-signed CA in `folder` (`<stem>.crt`, `<stem>.key`); server files not yet made."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    ca_cert = _write(folder / f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM))
    ca_key = _write(folder / f"{stem}.key", _key_pem(key), private=True)
    return Tls(ca_cert, ca_key, folder / "server.pem", folder / "server.key")


def make_tls(folder: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Tls:
    """A CA and the SuperLink's certificate for `hosts`, signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    tls = make_ca(folder)
    ca_key = serialization.load_pem_private_key(tls.ca_key.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP384R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    _write(tls.server_cert, cert.public_bytes(serialization.Encoding.PEM))
    _write(tls.server_key, _key_pem(key), private=True)
    return tls


def make_node_keys(folder: Path, name: str) -> tuple[Path, Path]:
    """(private key, public key) of one SuperNode, in the OpenSSH formats Flower reads."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return (
        _write(folder / f"{name}.key", private, private=True),
        _write(folder / f"{name}.pub", public + b"\n"),
    )


def public_key_pem(public: Path) -> str:
    """An OpenSSH public key file (make_node_keys's) as the PEM text the SuperLink logs it in."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_ssh_public_key(public.read_bytes())
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
