"""lsqmf.evaluate."""
