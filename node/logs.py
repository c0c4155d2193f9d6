"""structlog set-up: JSON lines in production, readable console output in a terminal.

One event name per thing that happens (`epoch_activated`, `partial_denied`, ...), with the
facts as key-value pairs. Never pass secrets, shares or partials to a logger.

In a JSON log every line is JSON (docs/node-design.md, "Logs"), whoever wrote it:

* records of the stdlib `logging` module (libraries: attest's warnings, web3) and `warnings`
  go through the same renderer, as ``library_log`` events with the logger's name. A message
  of a logger in `ONCE_PER_PROCESS` is logged the first time only: attest warns that
  simulator evidence is allowed on every quote it verifies, which says nothing new after the
  first one.
* what native code writes to file descriptor 2 (gRPC core: "Handshake failed ..." when a
  peer's certificate is refused) is read from a pipe by `capture_native_stderr` and written
  as ``grpc_core`` (or ``native_stderr``) events. gRPC reads its own verbosity setting once,
  when it is imported, which is before a node has read its configuration, so the lines are
  captured rather than switched off: a refused handshake is worth a line.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import threading
from typing import TextIO

import structlog

__all__ = [
    "ONCE_PER_PROCESS",
    "NativeStderr",
    "capture_native_stderr",
    "configure_logging",
    "get_logger",
    "native_line_event",
]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
#: stdlib loggers whose every distinct message is logged once per process.
ONCE_PER_PROCESS = frozenset({"attest.simulator"})
#: abseil's prefix, as gRPC core writes it: "I1206 03:09:37.013721    5534 file.cc:2563] text".
_ABSL = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ ([^\]\s]+)\] ?(.*)$")
_ABSL_LEVELS = {"I": "info", "W": "warning", "E": "error", "F": "critical"}

_handler: logging.Handler | None = None
#: What `configure_logging` bound (e.g. the node's address), for lines from other threads.
_context: dict[str, object] = {}


class _OncePerProcess(logging.Filter):
    """Lets a message of an `ONCE_PER_PROCESS` logger through the first time only."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name not in ONCE_PER_PROCESS:
            return True
        key = (record.name, str(record.msg))  # the template: the same warning, other values
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
        return True


def _library_event(
    _: object, __: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """A stdlib record as a `library_log` event: the text moves to `message`."""
    record = event_dict.get("_record")
    if isinstance(record, logging.LogRecord):
        event_dict["message"] = str(event_dict.pop("event", "")).rstrip()
        event_dict["event"] = "library_log"
        event_dict["logger"] = record.name
    return event_dict


def configure_logging(fmt: str = "console", level: str = "info", **context: object) -> None:
    """Configure structlog for this process; `context` is bound to every event (e.g. node=3).

    Also routes the stdlib `logging` module (and `warnings`) through the same renderer.
    """
    global _handler
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    if context:
        structlog.contextvars.bind_contextvars(**context)
    _context.clear()
    _context.update(context)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, _library_event, structlog.processors.format_exc_info],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    handler.addFilter(_OncePerProcess())
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    _handler = handler
    logging.captureWarnings(True)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger


def native_line_event(line: str) -> dict[str, str]:
    """One line native code wrote to fd 2, as a log event (gRPC core's format is parsed)."""
    found = _ABSL.match(line)
    if found is None:
        return {"event": "native_stderr", "level": "warning", "message": line}
    letter, source, message = found.groups()
    return {
        "event": "grpc_core",
        "level": _ABSL_LEVELS[letter],
        "source": source,
        "message": message,
    }


class NativeStderr:
    """File descriptor 2 redirected into a pipe whose lines are written out as JSON.

    Python's own `sys.stderr` is moved to a copy of the original descriptor, so structlog and
    the stdlib handler write there directly; only what writes to fd 2 itself (native code)
    passes through the pipe and the reader thread. `close()` puts fd 2 back and drains.
    """

    def __init__(self) -> None:
        self._saved = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._read_end = read_end
        self._old_stderr = sys.stderr
        self.stream: TextIO = io.TextIOWrapper(
            io.FileIO(os.dup(self._saved), "w"), encoding="utf-8", line_buffering=True
        )
        sys.stderr = self.stream
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._pump, name="tkms-stderr", daemon=True)
        self._thread.start()

    def _write(self, line: str) -> None:
        from datetime import UTC, datetime

        event: dict[str, object] = {**native_line_event(line), **_context}
        event["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        data = (json.dumps(event) + "\n").encode()
        with self._lock:
            os.write(self._saved, data)

    def _pump(self) -> None:
        with os.fdopen(self._read_end, "rb") as pipe:
            for raw in pipe:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line:
                    with contextlib.suppress(OSError):
                        self._write(line)

    def close(self) -> None:
        """Put fd 2 and `sys.stderr` back; lines still in the pipe are written first."""
        self.stream.flush()
        os.dup2(self._saved, 2)  # closes the pipe's last write end: the reader sees EOF
        self._thread.join(timeout=2.0)
        sys.stderr = self._old_stderr
        self.stream.close()
        os.close(self._saved)


def capture_native_stderr() -> NativeStderr:
    """Start `NativeStderr` (call before `configure_logging`, which binds `sys.stderr`)."""
    return NativeStderr()
