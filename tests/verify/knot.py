"""A real authoritative DNS server for tests: Knot DNS (Debian's `knot`) serving one zone.

`Knot.start(dir, zone)` writes a config and a zone file, runs `knotd` in the foreground on a
free 127.0.0.1 port, and waits until it answers; `set_caa(records)` rewrites the zone with a
higher serial and reloads it (`knotc zone-reload`); `stop()` ends the process (the test's own)
and waits for it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from verify.dns import DnsError, query_caa


def free_udp_tcp_port() -> int:
    import socket

    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
        with socket.socket() as tcp:
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port for both UDP and TCP")


def require_knot() -> None:
    if shutil.which("knotd") is None or shutil.which("knotc") is None:
        pytest.skip("Knot DNS is not installed (Debian package `knot`; `make install`)")


@dataclass
class Knot:
    directory: Path
    zone: str
    port: int
    process: subprocess.Popen[bytes]
    serial: int = 1
    extra: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(cls, directory: Path, zone: str, caa: list[str]) -> Knot:
        require_knot()
        directory.mkdir(parents=True, exist_ok=True)
        port = free_udp_tcp_port()
        (directory / "knot.conf").write_text(
            f'server:\n    rundir: "{directory}"\n    listen: 127.0.0.1@{port}\n'
            f'database:\n    storage: "{directory}"\n'
            "log:\n  - target: stderr\n    any: info\n"
            f'zone:\n  - domain: {zone}\n    file: "{directory}/{zone}.zone"\n'
        )
        knot = cls(directory, zone, port, None)  # type: ignore[arg-type]
        knot._write(caa)
        log = (directory / "knotd.log").open("ab")
        knot.process = subprocess.Popen(
            ["knotd", "-c", str(directory / "knot.conf")], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                query_caa(knot.address, zone, timeout=0.5)
                return knot
            except DnsError:
                if knot.process.poll() is not None or time.monotonic() > deadline:
                    knot.stop()
                    log_path = directory / "knotd.log"
                    raise RuntimeError(f"knotd does not answer; see {log_path}") from None
                time.sleep(0.1)

    def _write(self, caa: list[str]) -> None:
        lines = [
            f"$ORIGIN {self.zone}.",
            "$TTL 5",
            f"@ SOA ns.{self.zone}. hostmaster.{self.zone}. {self.serial} 3600 600 86400 5",
            f"@ NS ns.{self.zone}.",
            "ns A 127.0.0.1",
            *(f"@ CAA {record}" for record in caa),
            *self.extra,
        ]
        (self.directory / f"{self.zone}.zone").write_text("\n".join(lines) + "\n")

    def set_caa(self, caa: list[str]) -> None:
        """Serve these CAA records (zone-file syntax after `CAA`) from now on."""
        self.serial += 1
        self._write(caa)
        subprocess.run(
            ["knotc", "-c", str(self.directory / "knot.conf"), "zone-reload", self.zone],
            check=True,
            capture_output=True,
            timeout=10,
        )
        deadline = time.monotonic() + 5
        expected = {r.split(" ", 2)[1] + " " + r.split(" ", 2)[2].strip('"') for r in caa}
        while time.monotonic() < deadline:
            found = query_caa(self.address, self.zone).records
            if {f"{r.tag} {r.value}" for r in found} == expected:
                return
            time.sleep(0.1)
        raise RuntimeError("knotd did not serve the new CAA records")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
