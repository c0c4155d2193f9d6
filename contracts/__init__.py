"""Governance contracts: Solidity sources, compiled artifacts, typed chain client (DESIGN §5)."""
