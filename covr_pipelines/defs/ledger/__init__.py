"""The provenance ledger in Dagster: the signed checkpoint asset, its verification check, their schedules."""
