"""lsqmf.model."""
