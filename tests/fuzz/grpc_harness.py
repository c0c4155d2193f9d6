"""Calls gRPC servicer methods in process, the way grpc.aio would, and judges the answer.

A call gets its request through the method's own deserializer (bytes that do not parse are
refused there, as grpc refuses them before any handler runs), then the handler runs with a
`FuzzContext`. The handler must return the method's response type or abort with a status
that is not INTERNAL/UNKNOWN and has a message. An INTERNAL status means the servicer's catch-
all edge swallowed an unexpected exception: that is a finding, reported with the traceback the
node logged for it (captured from structlog).
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
import structlog
from google.protobuf import message_factory
from google.protobuf.descriptor import FileDescriptor, MethodDescriptor
from google.protobuf.message import DecodeError, Message

BAD_CODES = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.OK)


class Aborted(Exception):
    """What `context.abort` raises in process (grpc.aio raises its own AbortError)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code, self.details = code, details


class InternalStatus(Exception):
    """The handler answered INTERNAL/UNKNOWN or no message: an unexpected failure inside."""


class FuzzContext:
    """The parts of `grpc.aio.ServicerContext` the tkms servicers use."""

    def __init__(self, auth: Mapping[str, list[bytes]] | None = None) -> None:
        self._auth = dict(auth or {})

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()
    ) -> NoReturn:
        raise Aborted(code, details)

    def peer(self) -> str:
        return "ipv4:127.0.0.1:40000"

    def auth_context(self) -> Mapping[str, list[bytes]]:
        return self._auth

    def invocation_metadata(self) -> tuple[()]:
        return ()


@dataclass(frozen=True, slots=True)
class Method:
    service: str
    name: str
    path: str  # "/tkms.v1.Kms/DerivePartial"
    request: type[Message]
    response: type[Message]


def methods_of(file: FileDescriptor, service: str) -> list[Method]:
    """Every method of `service` in `file`, with its request and response classes."""
    out = []
    for m in file.services_by_name[service].methods:
        assert isinstance(m, MethodDescriptor)
        out.append(
            Method(
                service=service,
                name=m.name,
                path=f"/{file.package}.{service}/{m.name}",
                request=message_factory.GetMessageClass(m.input_type),
                response=message_factory.GetMessageClass(m.output_type),
            )
        )
    return out


class LogCapture:
    """structlog replaced by a recorder of (event, traceback of the exception being handled)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def __call__(
        self, logger: Any, name: str, event: MutableMapping[str, Any]
    ) -> Mapping[str, Any]:
        tb = traceback.format_exc() if sys.exc_info()[0] is not None else ""
        self.events.append((str(event.get("event")), tb))
        del self.events[:-20]
        raise structlog.DropEvent

    def last_traceback(self) -> str:
        for _, tb in reversed(self.events):
            if tb:
                return tb
        return ""


@contextmanager
def captured_logs() -> Iterator[LogCapture]:
    """Route structlog to a `LogCapture` (and restore the configuration after)."""
    saved = structlog.get_config()
    capture = LogCapture()
    structlog.configure(processors=[capture], cache_logger_on_first_use=False)
    try:
        yield capture
    finally:
        structlog.configure(**saved)


Handler = Callable[[Message, FuzzContext], Awaitable[Any]]


class Caller:
    """Runs handlers on one event loop and checks each answer (module docstring)."""

    def __init__(self, capture: LogCapture) -> None:
        self.loop = asyncio.new_event_loop()
        self.capture = capture
        self.outcomes: Counter[str] = Counter()

    def call(self, method: Method, handler: Handler, data: bytes, context: FuzzContext) -> None:
        try:
            request = method.request.FromString(data)
        except DecodeError:
            self.outcomes["undecodable"] += 1
            return  # grpc refuses the call before the handler runs
        self.capture.events.clear()
        try:
            reply = self.loop.run_until_complete(handler(request, context))
        except Aborted as exc:
            if exc.code in BAD_CODES or not exc.details:
                raise InternalStatus(
                    f"{method.name} answered {exc}\n{self.capture.last_traceback()}"
                ) from None
            self.outcomes[f"{method.name}:{exc.code.name}"] += 1
            return
        if not isinstance(reply, method.response):
            raise AssertionError(f"{method.name} returned {type(reply).__name__}")
        reply.SerializeToString()  # the reply must be encodable
        self.outcomes[f"{method.name}:OK"] += 1

    def summary(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))

    def close(self) -> None:
        self.loop.close()
