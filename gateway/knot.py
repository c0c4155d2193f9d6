"""A real authoritative DNS server for tests and the testnet: Knot DNS on a free loopback port.

`KnotServer.start(directory, zones)` writes, all inside `directory`: `knot.conf`, one zone file
per zone (SOA, NS, and A records sending the zone and every name under it to 127.0.0.1), a new
TSIG key (`tsig.key`, the base64 secret, mode 0600: what `gateway.dns_rfc2136` reads), Knot's
databases (`db/`) and its log (`knot.log`); then starts `knotd` unprivileged in the foreground
and waits until it answers on UDP and TCP. No root, no port 53, no system service.

The key may change only what the gateway writes (Knot's ACL `update-type` and `update-owner`):
TXT and CAA records at `_acme-challenge.<zone>` and at the zone's apex. Anything else (an A
record, another name) is refused with TSIG BADKEY. Knot applies each update atomically and
writes it back to the zone file, so a restarted server (same argv) serves the same records.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import dns.exception
import dns.message
import dns.query
import dns.rdataclass
import dns.rdatatype

from gateway._servers import alive, free_port, spawn, state_field, stop

KNOTD = "knotd"
KEY_NAME = "tkms-gateway"
KEY_ALGORITHM = "hmac-sha256"
_START_TIMEOUT = 10.0
_PORT_ATTEMPTS = 3
_BIND_FAILED = b"address already in use"


class KnotError(RuntimeError):
    """Knot DNS is not installed, failed to start or does not answer."""


class _PortTaken(KnotError):
    """knotd could not bind the port we chose for it (start again with another)."""


def knotd_path() -> str:
    """The knotd binary (in /usr/sbin, which a non-root PATH may lack)."""
    found = shutil.which(KNOTD) or shutil.which(KNOTD, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise KnotError("knotd is not installed (Debian package `knot`; `make install`)")
    return found


def _zone_text(zone: str) -> str:
    return (
        f"$ORIGIN {zone}.\n$TTL 60\n"
        f"@ SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60\n"
        f"@ NS ns.{zone}.\nns A 127.0.0.1\n@ A 127.0.0.1\n* A 127.0.0.1\n"
    )


def _config_text(directory: Path, port: int, zones: Sequence[str], secret: str, ident: str) -> str:
    """knot.conf: one listener, one worker of each kind, the key, one ACL and one zone each."""
    acls = "".join(
        f"  - id: gateway-{zone}\n    key: {KEY_NAME}\n    action: update\n"
        f"    update-type: [TXT, CAA]\n    update-owner: name\n    update-owner-match: equal\n"
        f"    update-owner-name: [_acme-challenge.{zone}., {zone}.]\n"
        for zone in zones
    )
    zone_entries = "".join(
        f'  - domain: {zone}\n    file: "{zone}.zone"\n    acl: gateway-{zone}\n' for zone in zones
    )
    return (
        "# written by gateway.knot: a test/testnet DNS server, not a system service\n"
        f'server:\n    rundir: "{directory}"\n    listen: 127.0.0.1@{port}\n'
        "    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n"
        f'    identity: "{ident}"\n    version: ""\n    nsid: ""\n'
        "log:\n  - target: stderr\n    any: info\n"
        f'database:\n    storage: "{directory / "db"}"\n    journal-db-max-size: 64M\n'
        "    kasp-db-max-size: 8M\n    timer-db-max-size: 8M\n    catalog-db-max-size: 8M\n"
        f'control:\n    listen: "{directory / "knot.sock"}"\n'
        f"key:\n  - id: {KEY_NAME}\n    algorithm: {KEY_ALGORITHM}\n    secret: {secret}\n"
        f"acl:\n{acls}"
        f'template:\n  - id: default\n    storage: "{directory}"\n'
        f"zone:\n{zone_entries}"
    )


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


@dataclass
class KnotServer:
    """Handles on a running knotd; see the module docstring."""

    directory: Path
    #: host:port it answers on, UDP and TCP.
    address: str
    zones: list[str]
    #: The file holding the TSIG key's base64 secret (mode 0600).
    key_file: Path
    key_name: str = KEY_NAME
    key_algorithm: str = KEY_ALGORITHM
    #: Knot's `identity` (answered to `id.server. CH TXT`): tells our server from another.
    identity: str = ""
    pids: list[int] = field(default_factory=list)
    # Our own child, kept so that it is reaped; empty for an instance loaded by from_dict.
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    @classmethod
    def start(cls, directory: Path, zones: Sequence[str], *, detach: bool = False) -> KnotServer:
        """Write the configuration, zones and key into `directory` and start knotd there."""
        if not zones:
            raise KnotError("no zone to serve")
        binary = knotd_path()
        directory = Path(directory).resolve()
        (directory / "db").mkdir(parents=True, exist_ok=True)
        zones = [zone.lower().rstrip(".") for zone in zones]
        secret = base64.b64encode(secrets.token_bytes(32)).decode()
        key_file = directory / "tsig.key"
        _write_private(key_file, secret + "\n")
        for zone in zones:
            (directory / f"{zone}.zone").write_text(_zone_text(zone))
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = free_port(socket.SOCK_DGRAM, socket.SOCK_STREAM)
            server = cls(
                directory=directory,
                address=f"127.0.0.1:{port}",
                zones=zones,
                key_file=key_file,
                identity=secrets.token_hex(8),
            )
            # The configuration holds the secret too: not readable by others either.
            _write_private(
                server.config, _config_text(directory, port, zones, secret, server.identity)
            )
            proc = spawn([binary, "-c", str(server.config)], server.log, dict(os.environ), detach)
            server._procs.append(proc)
            server.pids.append(proc.pid)
            try:
                server._wait_ready()
                return server
            except BaseException as exc:
                server.stop()
                if not isinstance(exc, _PortTaken) or attempt == _PORT_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    @property
    def config(self) -> Path:
        return self.directory / "knot.conf"

    @property
    def log(self) -> Path:
        return self.directory / "knot.log"

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])

    def secret(self) -> str:
        """The TSIG key's base64 secret (for a test or the testnet to hand to the gateway)."""
        return self.key_file.read_text().strip()

    def commands(self) -> list[tuple[int, list[str], Path]]:
        """(pid, argv, log) of the process this instance started. Started again with the same
        argv, it serves the same zones (with every update made so far) and the same key."""
        return [(proc.pid, list(cast("list[str]", proc.args)), self.log) for proc in self._procs]

    def _answers(self) -> bool:
        """Whether our own knotd (by its identity) answers over UDP and over TCP."""
        query = dns.message.make_query("id.server.", dns.rdatatype.TXT, dns.rdataclass.CH)
        try:
            # TCP first: refused at once while knotd is not listening yet (UDP would wait).
            for send in (dns.query.tcp, dns.query.udp):
                answer = send(query, self.host, port=self.port, timeout=0.5)
                strings = [s for rrset in answer.answer for rd in rrset for s in rd.strings]
                if strings != [self.identity.encode()]:
                    return False
        except (dns.exception.DNSException, OSError):
            return False
        return True

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._answers():
            if not alive(self.pids[0]):
                if _BIND_FAILED in self.log.read_bytes():
                    raise _PortTaken(f"{self.address} was taken; see the log {self.log}")
                raise KnotError(f"knotd exited; see the log {self.log}")
            if time.monotonic() > deadline:
                raise KnotError(
                    f"knotd does not answer on {self.address} after {_START_TIMEOUT:.0f} s; "
                    f"see the log {self.log}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Terminate knotd and wait for it (SIGKILL after 5 s); a pid loaded by `from_dict` is
        signalled only while it still runs knotd."""
        stop(self._procs, self.pids, {KNOTD})
        self.pids.clear()
        self._procs.clear()

    def to_dict(self) -> dict[str, object]:
        """A JSON-able record of this instance (testnet keeps it in its state file)."""
        return {
            "directory": str(self.directory),
            "address": self.address,
            "zones": list(self.zones),
            "key_file": str(self.key_file),
            "key_name": self.key_name,
            "key_algorithm": self.key_algorithm,
            "identity": self.identity,
            "pids": list(self.pids),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> KnotServer:
        """The inverse of `to_dict`; raises ValueError naming a missing or mistyped field."""
        names = ("directory", "address", "key_file", "key_name", "key_algorithm", "identity")
        strings = {key: state_field(data, key, str, "knot") for key in names}
        zones = state_field(data, "zones", list, "knot")
        pids = state_field(data, "pids", list, "knot")
        if not all(isinstance(zone, str) for zone in zones):
            raise ValueError("knot state: zones must be a list of strings")
        if not all(isinstance(pid, int) and not isinstance(pid, bool) for pid in pids):
            raise ValueError("knot state: pids must be a list of integers")
        return cls(
            directory=Path(strings["directory"]),
            address=strings["address"],
            zones=list(zones),
            key_file=Path(strings["key_file"]),
            key_name=strings["key_name"],
            key_algorithm=strings["key_algorithm"],
            identity=strings["identity"],
            pids=list(pids),
        )
