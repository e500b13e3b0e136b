"""lsqmf.data."""
