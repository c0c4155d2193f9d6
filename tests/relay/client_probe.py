"""A relay client in its own namespace (tests/relay/test_relay_e2e.py): long-polls a relay,
verifies each envelope against the fingerprint, prints one JSON line per new epoch with the
wall-clock time it learned it. `python -m tests.relay.client_probe URL FINGERPRINT_HEX`."""

from __future__ import annotations

import json
import sys
import time

from guest.relay_check import RelayUnavailable, fetch_envelope, verified_manifest


def main(url: str, fingerprint: bytes) -> None:
    epoch = 0
    while True:
        try:
            envelope = fetch_envelope(url, after=epoch, wait=20.0)
        except RelayUnavailable as exc:
            print(json.dumps({"waiting": str(exc)}), flush=True)
            time.sleep(0.2)
            continue
        at = time.time()
        manifest = verified_manifest(envelope, fingerprint)
        epoch = manifest.epoch
        members = [m.endpoint for m in manifest.members]
        print(json.dumps({"epoch": epoch, "at": at, "members": members}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], bytes.fromhex(sys.argv[2]))
