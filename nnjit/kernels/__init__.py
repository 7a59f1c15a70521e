"""Numba kernels: pure functions of arrays and scalars, forward and backward side by side."""

from .blas import resolve_blas

resolve_blas()
