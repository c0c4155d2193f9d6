"""TEE evidence: TDX quotes, DCAP, event logs, app identity, RA-TLS, providers (DESIGN §4)."""
