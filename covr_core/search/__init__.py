"""Search: the copies index as a read model (Postgres full-text by default, Meilisearch when configured)."""
