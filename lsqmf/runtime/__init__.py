"""lsqmf.runtime."""
