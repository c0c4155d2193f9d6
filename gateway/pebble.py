"""A development/test ACME CA: Pebble on free 127.0.0.1 ports, validating against a DNS server.

Used by the tests and by `tkms testnet up`. `Pebble.start(directory, dns_server)` writes a
throwaway TLS CA and leaf for Pebble's HTTPS listeners (`directory/pebble-ca.pem` is what
clients trust), Pebble's config and its log into `directory`, then waits until it answers.
Pebble resolves DNS-01 challenge records (and nothing else: it never checks CAA) at
`dns_server`, the authoritative server the gateway writes to (`gateway.knot` in tests and on
the testnet).

Pebble regenerates its issuing root on every start and keeps nothing on disk: certificates
issued by one run do not chain to the next run's `roots_pem()`.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway._servers import alive, free_port, spawn, state_field, stop

PEBBLE = "pebble"
#: Environment Pebble runs with (no artificial validation delay).
PEBBLE_ENV = {"PEBBLE_VA_NOSLEEP": "1"}
_START_TIMEOUT = 10.0
_PORT_ATTEMPTS = 3
_BIND_FAILED = b"address already in use"


class PebbleError(RuntimeError):
    """Pebble failed to start or to answer."""


class _PortTaken(PebbleError):
    """Pebble could not bind a port we chose for it (start again with new ports)."""


def _write_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a leaf for 127.0.0.1/localhost (Pebble's HTTPS); returns (ca, cert, key) paths."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tkms pebble test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "pebble-ca.pem", directory / "pebble-cert.pem", directory / "pebble-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_pem = leaf_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The HTTPS key of a throwaway test CA; written plainly, but not world-readable.
    fd = os.open(paths[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_pem)
    return paths


@dataclass
class Pebble:
    """Handles on a running Pebble; see the module docstring."""

    directory: Path
    directory_url: str
    ca_bundle: Path
    management_url: str
    #: The DNS server (host:port) Pebble resolves challenge records at.
    dns_server: str
    pids: list[int] = field(default_factory=list)
    # Our own child, kept so that it is reaped; empty for an instance loaded by from_dict.
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    @classmethod
    def start(
        cls,
        directory: Path,
        dns_server: str,
        *,
        detach: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> Pebble:
        """Start Pebble with state and log in `directory`, resolving at `dns_server`
        (host:port); wait until it answers.

        `env` adds to its environment, e.g. Pebble's `PEBBLE_WFE_NONCEREJECT`.
        """
        directory = Path(directory).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        tls_files = _write_tls_files(directory)
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            try:
                return cls._start_once(directory, tls_files, dns_server, detach, dict(env or {}))
            except _PortTaken:
                # Another process took a port between our probe and the child's bind.
                if attempt == _PORT_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _start_once(
        cls,
        directory: Path,
        tls_files: tuple[Path, Path, Path],
        dns_server: str,
        detach: bool,
        extra_env: dict[str, str],
    ) -> Pebble:
        ca, cert, key = tls_files
        acme_port, mgmt_port = (free_port(socket.SOCK_STREAM) for _ in range(2))
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{acme_port}",
                "managementListenAddress": f"127.0.0.1:{mgmt_port}",
                "certificate": str(cert),
                "privateKey": str(key),
                # Pebble's VA would only use these for http-01/tls-alpn-01, which we never offer.
                "httpPort": 5002,
                "tlsPort": 5001,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        config_path = directory / "pebble-config.json"
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        env = {**os.environ, **PEBBLE_ENV, **extra_env}
        pebble = cls(
            directory=directory,
            directory_url=f"https://127.0.0.1:{acme_port}/dir",
            ca_bundle=ca,
            management_url=f"https://127.0.0.1:{mgmt_port}",
            dns_server=dns_server,
        )
        argv = [PEBBLE, "-config", str(config_path), "-dnsserver", dns_server]
        proc = spawn(argv, pebble.log, env, detach)
        pebble._procs.append(proc)
        pebble.pids.append(proc.pid)
        try:
            pebble._wait_ready()
        except BaseException:
            pebble.stop()
            raise
        return pebble

    def commands(self) -> list[tuple[int, list[str], Path]]:
        """(pid, argv, log) of the process this instance started. Started again with the same
        argv and `PEBBLE_ENV`, it serves as before (with a new root)."""
        return [(proc.pid, list(cast("list[str]", proc.args)), self.log) for proc in self._procs]

    @property
    def log(self) -> Path:
        return self.directory / "pebble.log"

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def _get(self, url: str, timeout: float = 5.0) -> bytes:
        with urllib.request.urlopen(url, timeout=timeout, context=self._ssl_context()) as response:
            body: bytes = response.read()
            return body

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                self._get(self.directory_url, timeout=1.0)
                return
            except OSError as exc:
                if not alive(self.pids[0]):
                    if _BIND_FAILED in self.log.read_bytes():
                        raise _PortTaken(f"a port was taken; see the log {self.log}") from None
                    raise PebbleError(
                        f"{self.directory_url}: process {self.pids[0]} exited; "
                        f"see the log {self.log}"
                    ) from None
                if time.monotonic() > deadline:
                    raise PebbleError(
                        f"{self.directory_url}: no answer after {_START_TIMEOUT:.0f} s ({exc}); "
                        f"see the log {self.log}"
                    ) from None
                time.sleep(0.05)

    def roots_pem(self) -> bytes:
        """The root that signs this run's certificates (management `/roots/0`)."""
        try:
            return self._get(self.management_url + "/roots/0")
        except OSError as exc:
            raise PebbleError(f"{self.management_url}/roots/0: {exc}") from None

    def stop(self) -> None:
        """Terminate Pebble and wait for it (SIGKILL after 5 s).

        A pid that is not our child (an instance loaded by `from_dict` in another process) is
        signalled only while it still runs the Pebble binary, so a reused pid is left alone.
        """
        stop(self._procs, self.pids, {PEBBLE})
        self.pids.clear()
        self._procs.clear()

    def to_dict(self) -> dict[str, object]:
        """A JSON-able record of this instance (testnet keeps it in its state file)."""
        return {
            "directory": str(self.directory),
            "directory_url": self.directory_url,
            "ca_bundle": str(self.ca_bundle),
            "management_url": self.management_url,
            "dns_server": self.dns_server,
            "pids": list(self.pids),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Pebble:
        """The inverse of `to_dict`; raises ValueError naming a missing or mistyped field."""
        names = ("directory", "directory_url", "ca_bundle", "management_url", "dns_server")
        strings = {key: state_field(data, key, str, "pebble") for key in names}
        pids = state_field(data, "pids", list, "pebble")
        if not all(isinstance(pid, int) and not isinstance(pid, bool) for pid in pids):
            raise ValueError("pebble state: pids must be a list of integers")
        return cls(
            directory=Path(strings["directory"]),
            directory_url=strings["directory_url"],
            ca_bundle=Path(strings["ca_bundle"]),
            management_url=strings["management_url"],
            dns_server=strings["dns_server"],
            pids=list(pids),
        )
