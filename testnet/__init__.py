"""One-command local network: chain, contracts, N nodes, gateway and a demo app (DESIGN §9)."""
