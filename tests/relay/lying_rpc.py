"""A JSON-RPC that lies (tests only): forwards to a real chain and rewrites what it answers.

`replace` swaps byte strings inside every eth_call result (same length, so ABI encoding stays
valid: a node's registered endpoint now names another port); `pin_block` answers
eth_blockNumber with an old block, so a client reads an old committee as the newest.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LyingRpc:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.replace: dict[bytes, bytes] = {}
        self.pin_block: int | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answer = outer.forward(json.loads(body))
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def forward(self, request: Any) -> Any:
        if isinstance(request, list):
            return [self.forward(r) for r in request]
        if request.get("method") == "eth_blockNumber" and self.pin_block is not None:
            return {"jsonrpc": "2.0", "id": request.get("id"), "result": hex(self.pin_block)}
        upstream = urllib.request.Request(
            self.upstream, json.dumps(request).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(upstream, timeout=30) as reply:
            answer: Any = json.loads(reply.read())
        result = answer.get("result")
        if request.get("method") == "eth_call" and isinstance(result, str):
            for old, new in self.replace.items():
                result = result.replace(old.hex(), new.hex())
            answer["result"] = result
        return answer

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
