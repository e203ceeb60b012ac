"""Real certificates from trustme, written to a temporary directory."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization


@dataclass
class Certs:
    """A CA, a server certificate for 127.0.0.1/::1/localhost, and a client certificate."""

    ca: trustme.CA
    ca_pem: Path
    cert: Path  # server certificate chain
    key: Path  # its key
    client_cert: Path  # client certificate and key in one file
    client_name: str
    directory: Path

    def encrypted_key(self, password: bytes) -> Path:
        """The server key, encrypted with ``password``."""
        path = self.directory / "server-encrypted.key"
        key = serialization.load_pem_private_key(self.key.read_bytes(), password=None)
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(password),
            )
        )
        return path

    def other_key(self) -> Path:
        """A key that belongs to another certificate."""
        other = self.ca.issue_cert("127.0.0.1")
        path = self.directory / "other.key"
        other.private_key_pem.write_to_path(str(path))
        return path

    def expiring_cert(self, days: int) -> Path:
        """A certificate (chain and key in one file) that expires in ``days`` days."""
        not_after = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)
        issued = self.ca.issue_cert("127.0.0.1", not_after=not_after)
        path = self.directory / f"expiring-{days}.pem"
        issued.private_key_and_cert_chain_pem.write_to_path(str(path))
        return path


def make_certs(directory: Path) -> Certs:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "::1", "localhost")
    client = ca.issue_cert(
        "client@example.com",
        common_name="test client",
        organization_name="Example",
        organization_unit_name="QA",
    )
    paths = {
        "ca": directory / "ca.pem",
        "cert": directory / "server.pem",
        "key": directory / "server.key",
        "client": directory / "client.pem",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    for extra in server.cert_chain_pems[1:]:
        extra.write_to_path(str(paths["cert"]), append=True)
    server.private_key_pem.write_to_path(str(paths["key"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))
    return Certs(
        ca,
        paths["ca"],
        paths["cert"],
        paths["key"],
        paths["client"],
        "CN=test client,OU=QA,O=Example",
        directory,
    )
