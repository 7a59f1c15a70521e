"""nnjit: neural networks on the CPU with Numba-compiled, fused, parallel kernels."""
__version__ = "0.1.0"

from . import runtime  # first: chooses the kernel cache and limits BLAS threads before any kernel loads
from .runtime import floatx, get_num_threads, set_floatx, set_num_threads, set_seed
