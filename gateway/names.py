"""Routing names: `<app_id|instance_id>[-<port>][s].<base_domain>` to a `Route`.

The target is 40 lowercase hex characters (an app id or an instance id, both 20 bytes; `0x` never
appears in DNS). `-<port>` picks the CVM's port (1..65535, no leading zeros, so that each route
has one name); suffix `s` asks for passthrough. The whole name is case-insensitive and may end
with a dot. Exactly one label sits above the base domain: that is what the wildcard certificate
`*.<base_domain>` covers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PASSTHROUGH_DEFAULT_PORT = 443
TERMINATION_DEFAULT_PORT = 80

_LABEL = re.compile(r"(?P<target>[0-9a-f]{40})(?:-(?P<port>[0-9]{1,5}))?(?P<s>s)?")
_SHOWN = 80  # a name in an error message is cut to this many characters: it comes from the peer


class RouteError(ValueError):
    """A server name that does not route; the message says which part is wrong."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where a name leads: a target id in hex, an explicit port if any, and the mode."""

    target: str
    port: int | None
    passthrough: bool

    @property
    def backend_port(self) -> int:
        """The port to reach on the backend: the explicit one, else 443 (passthrough) or 80."""
        if self.port is not None:
            return self.port
        return PASSTHROUGH_DEFAULT_PORT if self.passthrough else TERMINATION_DEFAULT_PORT


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
            "one label <target>[-<port>][s] is expected"
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
    return Route(target=match["target"], port=port, passthrough=match["s"] is not None)


def _why_not(name: str, label: str) -> str:
    """The message for a label that does not match `<target>[-<port>][s]`."""
    target, dash, rest = label.partition("-")
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
