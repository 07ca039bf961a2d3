"""Requests, hand-overs and suspected exchanges: a state machine the exchange schema itself enforces.

Public modules: `requests`, `handovers`, `suspected` (services, each step one transaction with its event);
`_repository` is their SQL, private to this package (the import contract holds it).
"""
