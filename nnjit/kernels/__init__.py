"""Numba kernels: pure functions of arrays and scalars, forward and backward side by side."""
