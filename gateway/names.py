"""Routing names: `<app_id>[-<port>][s].<base_domain>` and `i-<instance>[-<port>][s].<base>`.

App ids and instance ids live in two namespaces, told apart by the name itself: a bare target
is an app id, a target after `i-` is an instance. Both are 40 lowercase hex characters (20
bytes; `0x` never appears in DNS). The instance a name carries is the gateway's instance id,
`instance_route_id(app_id, measured instance id)`: derived from the two attested values, so no
registrant can choose it (docs/gateway.md). `-<port>` picks the CVM's port (1..65535, no leading
zeros, so that each route has one name; 443 when absent: the gateway speaks TLS to the CVM in
both modes); suffix `s` asks for passthrough. The whole name is
case-insensitive and may end with a dot. Exactly one label sits above the base domain: that is
what the wildcard certificate `*.<base_domain>` covers.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

#: The CVM port a name without `-<port>` reaches. Termination also speaks TLS to the CVM
#: (`gateway.backend_tls`), so both modes default to the TLS port.
DEFAULT_PORT = 443
INSTANCE_PREFIX = "i-"
ID_BYTES = 20

_LABEL = re.compile(r"(?P<i>i-)?(?P<target>[0-9a-f]{40})(?:-(?P<port>[0-9]{1,5}))?(?P<s>s)?")
_SHOWN = 80  # a name in an error message is cut to this many characters: it comes from the peer


class RouteError(ValueError):
    """A server name that does not route; the message says which part is wrong."""


def instance_route_id(app_id: bytes, instance_id: bytes) -> bytes:
    """The gateway's id for an instance: SHA-256(instance_id || app_id)[:20].

    This is dstack's own instance-id derivation (dstack-util: SHA-256(seed || app_id)[:20]) with
    the measured instance id as the seed. Both inputs come from the CVM's verified RTMR3 events,
    and the app id is hashed in, so the result is bound to the app: a registrant that picks its
    measured instance id freely still cannot make this equal a chosen value (another app's
    instance), short of a 160-bit preimage.
    """
    if len(app_id) != ID_BYTES or len(instance_id) != ID_BYTES:
        raise ValueError(f"app_id and instance_id must be {ID_BYTES} bytes")
    return hashlib.sha256(instance_id + app_id).digest()[:ID_BYTES]


def app_name(app_id: bytes, base_domain: str) -> str:
    """The name that routes to any instance of `app_id`."""
    return f"{app_id.hex()}.{base_domain}"


def instance_name(route_id: bytes, base_domain: str) -> str:
    """The name that routes to the instance with this gateway instance id only."""
    return f"{INSTANCE_PREFIX}{route_id.hex()}.{base_domain}"


@dataclass(frozen=True, slots=True)
class Route:
    """Where a name leads: a target id in hex, an explicit port if any, the mode, and whether
    the target is an instance (`i-` names) rather than an app."""

    target: str
    port: int | None
    passthrough: bool
    instance: bool = False

    @property
    def backend_port(self) -> int:
        """The port to reach on the backend: the explicit one, else 443."""
        return DEFAULT_PORT if self.port is None else self.port


def shown(name: str) -> str:
    """`name` quoted for a message or a log line, cut to a bounded length."""
    if len(name) <= _SHOWN:
        return repr(name)
    return repr(name[:_SHOWN]) + f"... ({len(name)} characters)"


def parse_server_name(name: str, base_domain: str) -> Route:
    """The route a server name asks for under `base_domain`, or `RouteError` saying why not."""
    base = base_domain.lower().rstrip(".")
    if not base:
        raise RouteError("the base domain is empty")
    full = name.lower()
    if full.endswith("."):
        full = full[:-1]
    if not full.endswith("." + base):
        raise RouteError(f"server name {shown(name)} is not under {base!r}")
    label = full[: -len(base) - 1]
    if "." in label:
        raise RouteError(
            f"server name {shown(name)} has extra labels {shown(label)} above {base!r}: "
            "one label [i-]<target>[-<port>][s] is expected"
        )
    match = _LABEL.fullmatch(label)
    if match is None:
        raise RouteError(_why_not(name, label))
    port_text = match["port"]
    port: int | None = None
    if port_text is not None:
        port = int(port_text)
        if port_text.startswith("0") or not 1 <= port <= 65535:
            raise RouteError(
                f"server name {shown(name)}: port {port_text!r} is not in 1..65535 "
                "(without leading zeros)"
            )
    return Route(
        target=match["target"],
        port=port,
        passthrough=match["s"] is not None,
        instance=match["i"] is not None,
    )


def _why_not(name: str, label: str) -> str:
    """The message for a label that does not match `[i-]<target>[-<port>][s]`."""
    target, dash, rest = label.removeprefix(INSTANCE_PREFIX).partition("-")
    if not dash and target.endswith("s") and len(target) == 41:
        target = target[:-1]
    if len(target) != 40 or any(c not in "0123456789abcdef" for c in target):
        return (
            f"server name {shown(name)}: target {shown(target)} is not an app or instance id "
            "(40 hex characters)"
        )
    return (
        f"server name {shown(name)}: {shown(dash + rest)} after the target is not "
        "-<port>, s or -<port>s"
    )
