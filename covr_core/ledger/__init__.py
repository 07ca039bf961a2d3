"""The provenance ledger: one hash chain per copy, signed checkpoints over every head, verification."""
