"""The testnet's demo app: `GET /` over HTTP and over HTTPS with its own RA-TLS certificate.

It runs beside its guest agent, as an app container would: it asks the agent (dstack guest
API on a unix socket) for `/Info` and for a TLS key with an RA-TLS certificate, then answers
`{"app_id": ..., "instance_id": ...}` on both ports (a small HTML page to a browser), and
`GET /.tkms/key-proof?nonce=HEX` with a fresh signature by a key the app got from the network,
and its signature chain (`verify.keyproof`). Given `--gateway`, it registers with that
gateway (as `127.0.0.1`, naming the key of its HTTPS port: the gateway's terminated connections
arrive there, over TLS to that key) and renews the registration for as long as it runs.
`python -m testnet.demo_app --socket PATH --http-port N --https-port M [--gateway H:P]`.
"""

from __future__ import annotations

import argparse
import json
import ssl
import tempfile
import threading
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from node.errors import NodeError
from node.sealing import post_guest_agent
from verify.keyproof import KEY_PROOF_LABEL, KEY_PROOF_PATH


def page(info: dict[str, object]) -> bytes:
    """What a person sees in a browser: the app's identity, no external resources."""
    rows = "".join(
        f"<tr><th>{escape(k)}</th><td><code>{escape(str(info.get(k)))}</code></td></tr>"
        for k in ("app_id", "instance_id", "compose_hash")
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>tkms demo app</title>"
        "<style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:1em}"
        "</style></head><body><h1>tkms demo app</h1>"
        "<p>This page comes from inside the app's (simulated) TEE.</p>"
        f"<table>{rows}</table></body></html>"
    ).encode()


def key_proof(socket: str, query: str) -> bytes:
    """The agent's signature over the label and the caller's nonce, with its chain."""
    nonce = bytes.fromhex(parse_qs(query).get("nonce", [""])[0])
    if not 16 <= len(nonce) <= 64:
        raise ValueError("nonce must be 16..64 bytes of hex")
    data = (KEY_PROOF_LABEL + nonce).hex()
    signed = post_guest_agent(socket, "/Sign", {"algorithm": "secp256k1", "data": data})
    return json.dumps({"algorithm": "secp256k1", "purpose": "signing", **signed}).encode()


def make_handler(body: bytes, html: bytes, socket: str = "") -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, kind: str, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == KEY_PROOF_PATH and socket:
                try:
                    self._send(200, "application/json", key_proof(socket, url.query))
                except (ValueError, NodeError) as exc:
                    error = json.dumps({"error": str(exc)}).encode()
                    self._send(400, "application/json", error)
                return
            if url.path != "/":
                self.send_error(404)
                return
            if "text/html" in self.headers.get("Accept", ""):
                self._send(200, "text/html; charset=utf-8", html)
                return
            self._send(200, "application/json", body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def _register_with_gateway(
    socket: str, endpoint: str, gateway_app_id: str, certificate_pem: bytes
) -> None:
    from gateway.agent import GuestAgent
    from gateway.backend_tls import spki_sha256
    from gateway.client import GatewayClient, default_gateway_check

    # The testnet always passes the gateway's app id; without one any attested gateway is
    # accepted, which only a development network may do.
    expected = bytes.fromhex(gateway_app_id.removeprefix("0x")) if gateway_app_id else None
    client = GatewayClient(
        endpoint,
        GuestAgent(socket),
        default_gateway_check(simulator_allowed=True, app_id=expected),
    )
    stop = threading.Event()
    key = spki_sha256(certificate_pem)
    threading.Thread(
        target=client.keep_registered, args=("127.0.0.1", key, stop), daemon=True
    ).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testnet.demo_app", description=__doc__)
    parser.add_argument("--socket", required=True, help="the guest agent's unix socket")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--https-port", type=int, required=True)
    parser.add_argument("--gateway", default="", help="a gateway's registration host:port")
    parser.add_argument("--gateway-app-id", default="", help="the app the gateway must run")
    args = parser.parse_args(argv)

    info = post_guest_agent(args.socket, "/Info", {})
    tls = post_guest_agent(
        args.socket,
        "/GetTlsKey",
        {
            "subject": "tkms demo app",
            "alt_names": ["localhost", "127.0.0.1"],
            "usage_server_auth": True,
        },
    )
    body = json.dumps(
        {"app_id": info.get("app_id"), "instance_id": info.get("instance_id")}
    ).encode()
    handler = make_handler(body, page(info), args.socket)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        chain = tls["certificate_chain"]
        assert isinstance(chain, list)
        cert.write_text("".join(str(c) for c in chain))
        key.write_text(str(tls["key"]))
        key.chmod(0o600)
        context.load_cert_chain(cert, key)

    plain = ThreadingHTTPServer(("127.0.0.1", args.http_port), handler)
    secure = ThreadingHTTPServer(("127.0.0.1", args.https_port), handler)
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    threading.Thread(target=secure.serve_forever, daemon=True).start()
    if args.gateway:
        leaf = str(chain[0]).encode()
        _register_with_gateway(args.socket, args.gateway, args.gateway_app_id, leaf)
    print(
        f"demo app {info.get('app_id')}: http {args.http_port}, https {args.https_port}", flush=True
    )
    plain.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
