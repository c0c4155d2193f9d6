"""The endpoint string a node registers on chain: `kms=HOST:PORT,peer=HOST:PORT`.

`kms` is the public gRPC port (Kms service, plaintext: answers are encrypted and proven at
the application layer); `peer` is the mutual RA-TLS port for node-to-node traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.errors import InvalidRequest

MAX_LENGTH = 256


def _hostport(name: str, value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise InvalidRequest(
            f"endpoint {name}={value!r}: expected HOST:PORT with a port in 1..65535"
        )
    if any(c in host for c in ", =") or not host.isprintable():
        raise InvalidRequest(f"endpoint {name}={value!r}: invalid host")
    return value


@dataclass(frozen=True, slots=True)
class Endpoints:
    kms: str
    peer: str

    def __post_init__(self) -> None:
        _hostport("kms", self.kms)
        _hostport("peer", self.peer)

    def __str__(self) -> str:
        return f"kms={self.kms},peer={self.peer}"

    @classmethod
    def parse(cls, text: str) -> Endpoints:
        if not text or len(text.encode()) > MAX_LENGTH:
            raise InvalidRequest(f"endpoint string must be 1..{MAX_LENGTH} bytes")
        fields: dict[str, str] = {}
        for part in text.split(","):
            name, sep, value = part.partition("=")
            if not sep or name not in ("kms", "peer"):
                raise InvalidRequest(f"endpoint string {text!r}: unknown part {part!r}")
            if name in fields:
                raise InvalidRequest(f"endpoint string {text!r}: {name} given twice")
            fields[name] = value
        missing = {"kms", "peer"} - fields.keys()
        if missing:
            raise InvalidRequest(f"endpoint string {text!r}: missing {', '.join(sorted(missing))}")
        return cls(kms=fields["kms"], peer=fields["peer"])
