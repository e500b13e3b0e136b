"""lsqmf.kernels."""
