"""The KMS node daemon: config, sealed storage, chain watcher, epochs, gRPC services (DESIGN §6)."""
