"""Hook for the gateway's fuzz targets (ClientHello parser, registration service).

Those are being built in parallel; once their entry points settle, a target is ~10 lines
here, e.g. for the ClientHello parser::

    def _clienthello() -> Prepared:
        from gateway.clienthello import ClientHelloError, parse_client_hello
        seeds = [...]  # real ClientHello records, e.g. captured by tests/gateway/tlsfixtures.py
        return Prepared(
            strategy=raw_or_mutant(seeds, hot=[0, 3, 5, 9, 43]),  # record/handshake headers
            check=parse_client_hello,
            allowed=(ClientHelloError,),
        )

    TARGETS = (Target("gateway-clienthello", "gateway ClientHello parser", _clienthello),)

and the Register RPC is one more `methods_of(gateway_pb2.DESCRIPTOR, "Gateway")` service in
the style of `targets_grpc._admin`. The registry picks up whatever `TARGETS` holds.
"""

from __future__ import annotations

from tests.fuzz.runner import Target

TARGETS: tuple[Target, ...] = ()
