"""The provenance ledger: one hash chain per copy. For now only the hook a completed hand-over calls."""
