"""Duplicate resolution: the pure decision rules, their evidence, and ingest bookkeeping."""
