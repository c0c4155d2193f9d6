#!/bin/sh
# The tkms node container's entrypoint: `tkms node join` with its settings from the environment.
#
# join is idempotent: the first start creates the node's identity in the data volume, writes
# registration.json for the governance owner and waits for the owner's `tkms node admit`; every
# later start (a restart, an upgrade) finds the approved node and runs it at once. Arguments
# given to the container are passed on to `tkms node join` (e.g. --wait 600).
#
# Required: TKMS_CHAIN_RPC_URL (the chain's JSON-RPC URL), TKMS_CHAIN_GOVERNANCE (the
# KmsGovernance address), TKMS_NODE_HOST (the address other nodes and apps reach this host at).
# Optional: TKMS_CHAIN_ID (required off development chains), TKMS_DATA_DIR (/var/lib/tkms),
# TKMS_TEE (tdx), TKMS_SEALING (dstack), TKMS_KMS_PORT (7001), TKMS_PEER_PORT (7002),
# TKMS_LISTEN_METRICS (0.0.0.0:9101). The node itself reads every TKMS_<SECTION>_<KEY>
# override of node.toml (docs/operators.md).
set -eu

: "${TKMS_CHAIN_RPC_URL:?set TKMS_CHAIN_RPC_URL to the chain's JSON-RPC URL}"
: "${TKMS_CHAIN_GOVERNANCE:?set TKMS_CHAIN_GOVERNANCE to the KmsGovernance address}"
: "${TKMS_NODE_HOST:?set TKMS_NODE_HOST to the address other nodes and apps reach this host at}"

set -- node join \
    --chain "$TKMS_CHAIN_RPC_URL" \
    --governance "$TKMS_CHAIN_GOVERNANCE" \
    --host "$TKMS_NODE_HOST" \
    --dir "${TKMS_DATA_DIR:-/var/lib/tkms}" \
    --tee "${TKMS_TEE:-tdx}" \
    --sealing "${TKMS_SEALING:-dstack}" \
    --kms-port "${TKMS_KMS_PORT:-7001}" \
    --peer-port "${TKMS_PEER_PORT:-7002}" \
    --metrics "${TKMS_LISTEN_METRICS:-0.0.0.0:9101}" \
    "$@"
if [ -n "${TKMS_CHAIN_ID:-}" ]; then
    set -- "$@" --chain-id "$TKMS_CHAIN_ID"
fi
exec "${TKMS_BIN:-tkms}" "$@"
