"""Fault tests (issue 9, "Faults"): crashes, partitions, Byzantine nodes, chain and disk faults."""
