"""Requests, hand-overs and suspected exchanges: a state machine the exchange schema itself enforces.

Public modules: `requests`, `handovers`, `suspected` (services, each step one transaction with its event);
`repository` is their SQL and not for other contexts.
"""
