"""The CVM side: the KMS client (fan-out, verify, combine) and the dstack-compatible guest agent."""
