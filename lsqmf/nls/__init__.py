"""lsqmf.nls."""
