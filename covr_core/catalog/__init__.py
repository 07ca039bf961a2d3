"""Books and copies: catalog import and the catalog schema."""
