"""Storage: the metadata store (SQL) and the blob store (content-addressed bytes)."""
