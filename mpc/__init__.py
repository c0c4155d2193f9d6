"""Threshold cryptography over BLS12-381, pure and sans-I/O (DESIGN §3)."""
