"""Covr's domain: typed records and pure functions shared by the pipelines and the API."""
