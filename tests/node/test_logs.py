"""A JSON log holds JSON lines only, whoever writes them: run in a process of its own (the
set-up takes over the process's stderr), with attest's per-quote warning, a Python warning,
and gRPC core refusing a TLS handshake (a client without a certificate, on a port that
requires one: what an unregistered peer looks like)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from node.logs import native_line_event

SCRIPT = textwrap.dedent(
    """
    import asyncio, ssl, sys, time, warnings

    import grpc

    from node.logs import capture_native_stderr, configure_logging, get_logger

    native = capture_native_stderr()
    configure_logging("json", "info", node="0xabc")
    log = get_logger("tkms.test")
    log.info("started", step=1)

    from attest import SimulatorAllowed
    from attest.providers import SimulatorProvider, verify_simulator_quote

    quote = SimulatorProvider().get_quote(bytes(64))
    for _ in range(3):  # three apps' quotes: the warning once
        verify_simulator_quote(quote, now=int(time.time()), policy=SimulatorAllowed())
    warnings.warn("a library's deprecation", DeprecationWarning, stacklevel=1)
    warnings.simplefilter("always")
    warnings.warn("a library's warning", UserWarning, stacklevel=1)

    from attest.providers import SimulatorProvider
    from node.identity import NodeIdentity
    from node.ratls import make_node_certificate

    async def refused_handshake() -> None:
        cert, key = make_node_certificate(NodeIdentity.generate(), SimulatorProvider())
        server = grpc.aio.server()
        credentials = grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=cert, require_client_auth=True
        )
        port = server.add_secure_port("127.0.0.1:0", credentials)
        await server.start()
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        writer.write(b"x")
        await writer.drain()
        await reader.read(10)
        writer.close()
        await asyncio.sleep(0.5)
        await server.stop(None)

    asyncio.run(refused_handshake())
    log.info("done")
    native.close()
    """
)


def test_every_line_of_a_json_log_is_json_and_the_simulator_warning_comes_once() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not JSON: {line!r}\n--- whole log:\n{out.stderr}") from None
    names = [e["event"] for e in events]
    assert names[0] == "started" and names[-1] == "done", names
    simulator = [e for e in events if "simulator evidence is allowed" in e.get("message", "")]
    assert len(simulator) == 1, names
    assert simulator[0]["event"] == "library_log" and simulator[0]["logger"] == "attest.simulator"
    assert simulator[0]["level"] == "warning" and simulator[0]["node"] == "0xabc"
    assert any("a library's warning" in e.get("message", "") for e in events), names
    handshake = [e for e in events if e["event"] == "grpc_core"]
    assert handshake and "Handshake failed" in handshake[0]["message"], names
    assert all("timestamp" in e and "level" in e for e in events)


def test_native_lines_are_parsed_as_grpc_core_or_kept_whole() -> None:
    line = (
        "E1206 03:09:37.013721    5534 ssl_transport_security.cc:2563] "
        "Handshake failed with error SSL_ERROR_SSL"
    )
    assert native_line_event(line) == {
        "event": "grpc_core",
        "level": "error",
        "source": "ssl_transport_security.cc:2563",
        "message": "Handshake failed with error SSL_ERROR_SSL",
    }
    assert native_line_event("Segmentation fault") == {
        "event": "native_stderr",
        "level": "warning",
        "message": "Segmentation fault",
    }


def test_a_node_that_cannot_start_says_why_in_json(tmp_path: Path) -> None:
    """`tkms node run` with a JSON log and a public port it cannot bind: the reason is a
    `node_failed` event (exit status 2, as the CLI's own errors), not a plain "tkms node: ..."
    line or a traceback."""
    data = tmp_path / "node"
    init = [sys.executable, "-m", "tkms", "node", "init", "--dir", str(data), "--tee", "simulator"]
    subprocess.run(init, capture_output=True, check=True)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = tmp_path / "node.toml"
        config.write_text(
            f'data_dir = "{data}"\ntee = "simulator"\nsealing = "file"\nlog_format = "json"\n\n'
            '[chain]\nrpc_url = "http://127.0.0.1:9"\n'
            'governance = "0x0000000000000000000000000000000000000001"\n\n'
            f'[listen]\npublic = "127.0.0.1:{port}"\npeer = "127.0.0.1:0"\n'
            'metrics = "127.0.0.1:0"\n'
        )
        run = [sys.executable, "-m", "tkms", "node", "run", "--config", str(config)]
        out = subprocess.run(run, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2, out.stderr
    events = [json.loads(line) for line in out.stderr.splitlines()]  # each line is JSON
    (failed,) = [e for e in events if e["event"] == "node_failed"]
    assert f"127.0.0.1:{port}" in failed["reason"], failed
