"""A development/test ACME CA: Pebble plus its DNS test server, on free 127.0.0.1 ports.

Used by the tests and by `tkms testnet up`. `Pebble.start(directory)` writes a throwaway TLS
CA and leaf for Pebble's HTTPS listeners (`directory/pebble-ca.pem` is what clients trust),
Pebble's config, and the two processes' logs into `directory`, then waits until both answer.
Pebble validates DNS-01 against `pebble-challtestsrv`, whose TXT records are set over its
management API (`gateway.dns01.ChallTestSrvPublisher`).

Pebble regenerates its issuing root on every start and keeps nothing on disk: certificates
issued by one run do not chain to the next run's `roots_pem()`.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PEBBLE = "pebble"
CHALLTESTSRV = "pebble-challtestsrv"
#: Environment both processes run with (no artificial validation delay).
PEBBLE_ENV = {"PEBBLE_VA_NOSLEEP": "1"}
_START_TIMEOUT = 10.0
_PORT_ATTEMPTS = 3
_BIND_FAILED = b"address already in use"
_T = TypeVar("_T")


class PebbleError(RuntimeError):
    """Pebble or its DNS test server failed to start or to answer."""


class _PortTaken(PebbleError):
    """A child could not bind the port we chose for it (start again with new ports)."""


def _free_port(*kinds: socket.SocketKind) -> int:
    """A port free right now for every socket kind in `kinds` (a DNS server needs UDP and TCP)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kinds[0]) as first:
            first.bind(("127.0.0.1", 0))
            port: int = first.getsockname()[1]
            try:
                for kind in kinds[1:]:
                    with socket.socket(socket.AF_INET, kind) as other:
                        other.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise PebbleError("no free port on 127.0.0.1")


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


def _spawn(
    argv: list[str], log_path: Path, env: dict[str, str], detach: bool
) -> subprocess.Popen[bytes]:
    log: IO[bytes]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=detach,
        )
    return proc


@dataclass
class Pebble:
    """Handles on a running Pebble and pebble-challtestsrv; see the module docstring."""

    directory: Path
    directory_url: str
    ca_bundle: Path
    challtestsrv_url: str
    management_url: str
    dns_address: str
    pids: list[int] = field(default_factory=list)
    # Our own children, kept so that they are reaped; empty for an instance loaded by from_dict.
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    @classmethod
    def start(
        cls, directory: Path, *, detach: bool = False, env: Mapping[str, str] | None = None
    ) -> Pebble:
        """Start both processes with state and logs in `directory`; wait until they answer.

        `env` adds to the processes' environment, e.g. Pebble's `PEBBLE_WFE_NONCEREJECT`.
        """
        directory = Path(directory).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        tls_files = _write_tls_files(directory)
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            try:
                return cls._start_once(directory, tls_files, detach, dict(env or {}))
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
        detach: bool,
        extra_env: dict[str, str],
    ) -> Pebble:
        ca, cert, key = tls_files
        dns_port = _free_port(socket.SOCK_DGRAM, socket.SOCK_STREAM)
        chall_port, acme_port, mgmt_port = (_free_port(socket.SOCK_STREAM) for _ in range(3))
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
            challtestsrv_url=f"http://127.0.0.1:{chall_port}",
            management_url=f"https://127.0.0.1:{mgmt_port}",
            dns_address=f"127.0.0.1:{dns_port}",
        )
        chall_argv = [
            CHALLTESTSRV,
            "-dns01",
            pebble.dns_address,
            "-management",
            f"127.0.0.1:{chall_port}",
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
        ]
        pebble._add(_spawn(chall_argv, pebble.challtestsrv_log, env, detach))
        try:
            pebble_argv = [PEBBLE, "-config", str(config_path), "-dnsserver", pebble.dns_address]
            pebble._add(_spawn(pebble_argv, pebble.pebble_log, env, detach))
            pebble._wait_ready()
        except BaseException:
            pebble.stop()
            raise
        return pebble

    def commands(self) -> list[tuple[int, list[str], Path]]:
        """(pid, argv, log) of each process this instance started: challtestsrv, then Pebble.
        Started again with the same argv and `PEBBLE_ENV`, each serves as before."""
        logs = (self.challtestsrv_log, self.pebble_log)
        return [
            (proc.pid, list(cast("list[str]", proc.args)), log)
            for proc, log in zip(self._procs, logs, strict=True)
        ]

    def _add(self, proc: subprocess.Popen[bytes]) -> None:
        self._procs.append(proc)
        self.pids.append(proc.pid)

    def _log_of(self, pid: int) -> Path:
        return self.pebble_log if pid == self.pids[-1] else self.challtestsrv_log

    @property
    def pebble_log(self) -> Path:
        return self.directory / "pebble.log"

    @property
    def challtestsrv_log(self) -> Path:
        return self.directory / "pebble-challtestsrv.log"

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def _get(self, url: str, timeout: float = 5.0) -> bytes:
        context = self._ssl_context() if url.startswith("https:") else None
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            body: bytes = response.read()
            return body

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        checks = [
            (self.directory_url, self.pebble_log),
            # The management API has no GET route; any HTTP answer (404) means it is up.
            (self.challtestsrv_url + "/", self.challtestsrv_log),
        ]
        for url, log_path in checks:
            while True:
                try:
                    self._get(url, timeout=1.0)
                    break
                except urllib.error.HTTPError:
                    break
                except OSError as exc:
                    dead = [pid for pid in self.pids if not _alive(pid)]
                    if dead:
                        log_path = self._log_of(dead[0])
                        if _BIND_FAILED in log_path.read_bytes():
                            raise _PortTaken(f"a port was taken; see the log {log_path}") from None
                        raise PebbleError(
                            f"{url}: process {dead[0]} exited; see the log {log_path}"
                        ) from None
                    if time.monotonic() > deadline:
                        raise PebbleError(
                            f"{url}: no answer after {_START_TIMEOUT:.0f} s ({exc}); "
                            f"see the log {log_path}"
                        ) from None
                    time.sleep(0.05)
        dead = [pid for pid in self.pids if not _alive(pid)]
        if dead:
            raise PebbleError(f"process {dead[0]} exited; see the log {self._log_of(dead[0])}")
        # challtestsrv logs a DNS port it could not bind and keeps running, so read its log;
        # it logs that before its management API (checked above) starts to answer.
        for log_path in (self.challtestsrv_log, self.pebble_log):
            if _BIND_FAILED in log_path.read_bytes():
                raise _PortTaken(f"a port was taken; see the log {log_path}")

    def roots_pem(self) -> bytes:
        """The root that signs this run's certificates (management `/roots/0`)."""
        try:
            return self._get(self.management_url + "/roots/0")
        except OSError as exc:
            raise PebbleError(f"{self.management_url}/roots/0: {exc}") from None

    def stop(self) -> None:
        """Terminate both processes and wait for them (SIGKILL after 5 s).

        A pid that is not our child (an instance loaded by `from_dict` in another process) is
        signalled only while it still runs a Pebble binary, so a reused pid is left alone.
        """
        children = {proc.pid for proc in self._procs}
        targets = [pid for pid in self.pids if pid in children or _runs_pebble(pid)]
        for pid in targets:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for pid in targets:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _alive(pid):
                _signal(pid, signal.SIGKILL)
                while _alive(pid):
                    time.sleep(0.02)
        for proc in self._procs:
            proc.wait()
        self.pids.clear()
        self._procs.clear()

    def to_dict(self) -> dict[str, object]:
        """A JSON-able record of this instance (testnet keeps it in its state file)."""
        return {
            "directory": str(self.directory),
            "directory_url": self.directory_url,
            "ca_bundle": str(self.ca_bundle),
            "challtestsrv_url": self.challtestsrv_url,
            "management_url": self.management_url,
            "dns_address": self.dns_address,
            "pids": list(self.pids),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Pebble:
        """The inverse of `to_dict`; raises ValueError naming a missing or mistyped field."""
        names = ("directory", "directory_url", "ca_bundle", "challtestsrv_url", "management_url")
        strings = {key: _field(data, key, str) for key in (*names, "dns_address")}
        pids = _field(data, "pids", list)
        if not all(isinstance(pid, int) and not isinstance(pid, bool) for pid in pids):
            raise ValueError("pebble state: pids must be a list of integers")
        return cls(
            directory=Path(strings["directory"]),
            directory_url=strings["directory_url"],
            ca_bundle=Path(strings["ca_bundle"]),
            challtestsrv_url=strings["challtestsrv_url"],
            management_url=strings["management_url"],
            dns_address=strings["dns_address"],
            pids=list(pids),
        )


def _field(data: dict[str, object], key: str, kind: type[_T]) -> _T:
    value = data.get(key)
    if not isinstance(value, kind):
        raise ValueError(f"pebble state: {key} must be a {kind.__name__}, got {value!r}")
    return value


def _alive(pid: int) -> bool:
    """True while `pid` runs; reaps it if it is our exited child (so it is no zombie)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    else:
        return done == 0
    # Not our child: an exited process may stay a zombie until its parent reaps it.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _runs_pebble(pid: int) -> bool:
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return os.path.basename(argv0).decode(errors="replace") in {PEBBLE, CHALLTESTSRV}


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
