"""One-command local network: chain, contracts, N nodes, gateway and a demo app (design §9)."""
