"""lsqmf.oracle."""
