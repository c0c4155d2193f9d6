"""The gateway's view of its own guest agent: the dstack guest API on a unix socket.

The gateway is an attested app like any other (design §8), so it gets its keys and quotes the
way an app container does, from the agent of its CVM. `AgentQuoteSource` adapts the agent to the
`TeeProvider` shape that `attest.create_ratls_certificate` quotes through.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass, field

from attest import EventLogEntry, parse_event_log
from attest.providers import ProviderError


class AgentError(Exception):
    """The guest agent is unreachable or answered something other than the API's JSON."""


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


@dataclass(frozen=True)
class GuestAgent:
    """A client of the dstack guest API at `socket_path` (POST, JSON bodies, hex bytes)."""

    socket_path: str
    timeout: float = 30.0

    def call(self, endpoint: str, body: dict[str, object]) -> dict[str, object]:
        conn = _UnixHTTPConnection(self.socket_path, self.timeout)
        try:
            conn.request("POST", endpoint, json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
        except OSError as exc:
            raise AgentError(f"guest agent at {self.socket_path}: {endpoint}: {exc}") from None
        finally:
            conn.close()
        if response.status != 200:
            detail = payload[:200].decode(errors="replace")
            where = f"guest agent at {self.socket_path}: {endpoint}"
            raise AgentError(f"{where} answered {response.status}: {detail}")
        try:
            decoded = json.loads(payload)
        except ValueError:
            raise AgentError(f"guest agent: {endpoint} answered non-JSON") from None
        if not isinstance(decoded, dict):
            raise AgentError(f"guest agent: {endpoint} answered a non-object")
        return decoded

    def _field(self, reply: dict[str, object], name: str, endpoint: str) -> str:
        value = reply.get(name)
        if not isinstance(value, str):
            raise AgentError(f"guest agent: {endpoint} reply has no string field {name!r}")
        return value

    def get_key(self, path: str) -> bytes:
        """The app's key at `path` (32 bytes), derived from the KMS network's app key."""
        reply = self.call("/GetKey", {"path": path, "purpose": "gateway"})
        try:
            key = bytes.fromhex(self._field(reply, "key", "/GetKey"))
        except ValueError:
            raise AgentError("guest agent: /GetKey 'key' is not hex") from None
        if len(key) != 32:
            raise AgentError(f"guest agent: /GetKey gave {len(key)} bytes, expected 32")
        return key

    def get_quote(self, report_data: bytes) -> tuple[bytes, str, str]:
        """(quote, event log JSON, vm_config) with `report_data` in the quote."""
        reply = self.call("/GetQuote", {"report_data": report_data.hex()})
        try:
            quote = bytes.fromhex(self._field(reply, "quote", "/GetQuote"))
        except ValueError:
            raise AgentError("guest agent: /GetQuote 'quote' is not hex") from None
        vm_config = reply.get("vm_config")
        return quote, self._field(reply, "event_log", "/GetQuote"), str(vm_config or "")

    def app_id(self) -> bytes:
        reply = self.call("/Info", {})
        raw = self._field(reply, "app_id", "/Info").removeprefix("0x")
        try:
            return bytes.fromhex(raw)
        except ValueError:
            raise AgentError("guest agent: /Info 'app_id' is not hex") from None


@dataclass
class AgentQuoteSource:
    """`TeeProvider` over a guest agent, for quoting a key into an RA-TLS certificate."""

    agent: GuestAgent
    vm_config: str = ""
    _log: tuple[EventLogEntry, ...] = field(default=(), repr=False)

    @property
    def name(self) -> str:
        return "guest-agent"

    def get_quote(self, report_data: bytes) -> bytes:
        try:
            quote, log, self.vm_config = self.agent.get_quote(report_data)
        except AgentError as exc:
            raise ProviderError(str(exc)) from None
        self._log = parse_event_log(log)
        return quote

    def extend_rtmr(
        self, index: int, event: str, payload: bytes, *, version: int = 1
    ) -> EventLogEntry:
        raise ProviderError("the gateway does not extend RTMRs through its agent")

    def event_log(self) -> tuple[EventLogEntry, ...]:
        return self._log
