"""Cross-context building blocks: event contracts, the transactional outbox and ISBN values."""
