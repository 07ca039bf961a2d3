"""Settings, database connections and the forward-only migration runner."""
