"""The cover-vector read model: pgvector and Qdrant behind one interface."""
