"""`tkms relay`: a libp2p gossip network of the KMS network's signed public state.

Two halves in two environments (docs/relay.md):

* `relay.cli` and `relay.feed` run in the core environment (`tkms relay`): they follow the
  network through the chain, have the committee threshold-sign each new epoch's manifest
  (`mpc.manifest`) and hand the envelopes to the gossip process.
* every other module runs in `.venv-relay` (`python -m relay`, started by `tkms relay`), which
  holds py-libp2p and its pins (protobuf < 7, coincurve, fastecdsa) away from the core. These
  modules import only the standard library, trio, libp2p, multiaddr, `mpc` and `relay`
  (tests/relay/test_layout.py checks it).
"""
