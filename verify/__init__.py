"""Anyone can verify: an app, its domain, its gateway and its KMS network, checked together
from outside, against the chain and nothing an operator says (docs/verify.md).

`tkms verify domain NAME | app APP_ID | gateway URL | node ADDRESS` runs the checks and prints
one row per check (`verify.report`); `--json` and `--html FILE` write the same rows. A
verifier runs anywhere and belongs to no other component: it uses `attest` for evidence,
`contracts` for the chain, `guest` for the network's committee and keys, and `gateway`'s
names and boot-info rules.
"""
