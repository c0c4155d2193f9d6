"""A TCP proxy on 127.0.0.1 that a test can cut and restore (a link that goes away).

`cut()` closes every open connection and refuses new ones (they are accepted and closed at
once, as a dead upstream would look to an HTTP client); `restore()` lets them through again.
Runs in a thread of its own, so it works under synchronous and asyncio tests alike.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading

__all__ = ["TcpProxy"]


class TcpProxy:
    def __init__(self, target: tuple[str, int], port: int = 0) -> None:
        """Forward 127.0.0.1:`port` (0: any free port) to `target`."""
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", port))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, name="tcpproxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._open.clear()

    def restore(self) -> None:
        self._cut.clear()

    def stop(self) -> None:
        self._stop.set()
        self.cut()
        self._thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
                self.connections += 1
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        with selectors.DefaultSelector() as sel:
            try:
                # Inside the try: a cut may close both sockets before this thread runs.
                sel.register(a, selectors.EVENT_READ)
                sel.register(b, selectors.EVENT_READ)
                while not self._cut.is_set():
                    for key, _ in sel.select(timeout=0.2):
                        src: socket.socket = key.fileobj  # type: ignore[assignment]
                        data = src.recv(65536)
                        if not data:
                            return
                        peer[src].sendall(data)
            except (OSError, ValueError):
                return
            finally:
                with self._lock:
                    self._open.discard(a)
                    self._open.discard(b)
                a.close()
                b.close()
