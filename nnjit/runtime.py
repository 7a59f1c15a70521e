"""Process-wide runtime settings: threads, random seed, default float type, kernel cache.

nnjit owns its threads.  Numba's pool does all parallel work; every BLAS library
loaded in the process (NumPy's OpenBLAS and the SciPy BLAS that Numba calls for
``np.dot`` inside kernels) is limited to one thread, because two pools spinning
on the same cores slow each other down several times over (PERF.md, trap 1).
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nnjit" / "numba"


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".nnjit-probe-"):
            pass
        return True
    except OSError:
        return False


def _choose_cache_dir() -> Path:
    """Pick the kernel cache directory before Numba reads its configuration.

    ``NUMBA_CACHE_DIR`` set by the user wins.  Otherwise the cache lives next to the
    kernels (``nnjit/kernels/__pycache__``) when that is writable, and in a per-user
    cache directory when the install is read-only (PERF.md, trap 5).
    """
    env = os.environ.get("NUMBA_CACHE_DIR")
    if env:
        return Path(env)
    in_tree = _PACKAGE_DIR / "kernels" / "__pycache__"
    if _writable(in_tree):
        return in_tree
    user = Path(os.environ.get("NNJIT_CACHE_DIR") or _default_cache_dir())
    if not _writable(user):
        user = Path(tempfile.gettempdir()) / f"nnjit-numba-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
        user.mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(user)
    return user


CACHE_DIR = _choose_cache_dir()


# glibc's malloc serves blocks above its mmap threshold (128 KB at first, raised adaptively up
# to 32 MB) from fresh mappings and gives the top of its heap back to the system whenever more
# than twice that threshold is free.  A training step allocates and frees the same few-MB
# activation arrays every time, so by default each step pays the kernel to map and zero those
# pages again: 6.5 MB allocated and written took 2.9 ms against 0.06 ms to rewrite memory the
# process already holds, which was 40 % of an LSTM forward pass.  Raising both thresholds
# keeps freed blocks in the heap for reuse.  The cost: memory freed below MALLOC_KEEP_BYTES is
# kept by the process (its RSS stays near its peak) instead of being returned at once.
# NNJIT_MALLOC_TUNING=0 leaves the allocator alone.
MALLOC_MMAP_THRESHOLD = 32 << 20  # the largest value glibc accepts on 64-bit systems
MALLOC_KEEP_BYTES = 1 << 30


def _tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds (see above); True when they were set."""
    if os.environ.get("NNJIT_MALLOC_TUNING", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, MALLOC_MMAP_THRESHOLD)) and bool(
        mallopt(m_trim_threshold, MALLOC_KEEP_BYTES))


MALLOC_TUNED = _tune_malloc()

import numpy as np  # noqa: E402
import numba  # noqa: E402
import threadpoolctl  # noqa: E402

# Load SciPy's BLAS now so that threadpoolctl can see and limit it: Numba calls it for
# matrix products inside kernels (PERF.md, trap 4).
try:  # pragma: no cover - scipy is a hard dependency, but keep import errors readable
    import scipy.linalg.cython_blas  # noqa: F401
except ImportError as exc:  # pragma: no cover
    raise ImportError("nnjit needs SciPy: Numba calls SciPy's BLAS for matrix products") from exc

_blas_limiter = threadpoolctl.threadpool_limits(limits=1, user_api="blas")

_FLOATX = np.dtype(np.float32)
_SEED: int | None = None
_RNG = np.random.default_rng()


def set_num_threads(n: int) -> None:
    """Set the number of threads used by nnjit's parallel kernels (1 .. number of cores)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"set_num_threads: expected an integer for n. Received: n={n!r}")
    limit = numba.config.NUMBA_NUM_THREADS
    if not 1 <= n <= limit:
        raise ValueError(f"set_num_threads: expected 1 <= n <= {limit}. Received: n={n}")
    numba.set_num_threads(int(n))
    global _THREADS_EPOCH
    _THREADS_EPOCH += 1


def get_num_threads() -> int:
    """Number of threads nnjit's parallel kernels use."""
    return numba.get_num_threads()


# Bumped by set_num_threads: what was planned for one thread count (block counts kept
# with a workspace) is planned again.  Reading it costs far less than asking Numba.
_THREADS_EPOCH = 0


def threads_epoch() -> int:
    return _THREADS_EPOCH


# Below this much work (multiply-adds, or elements for elementwise kernels) a parallel
# launch of Numba's pool costs more than it saves: a launch is a few microseconds,
# which is what about this many operations take on one core.
PARALLEL_MIN_WORK = 1 << 17


def blocks_for(work: int, min_work: int = PARALLEL_MIN_WORK) -> int:
    """How many blocks a kernel should split ``work`` into: 1 (serial path, no thread
    launch) below ``min_work``, else one block per thread."""
    return 1 if work < min_work else numba.get_num_threads()


# On a few rows (single samples) a dense layer is one matrix-vector product per row,
# bound by reading the kernel from cache.  Splitting the kernel's rows across threads
# (each reads one contiguous block, which stays in its core's cache from call to call,
# and the partial products are summed) pays from about this many multiply-adds: one
# sample through 784-256-256-10 took 11.0-12.6 us with the first layer split against
# 13.6-16.0 us serial (four processes); splitting the 256x256 layer as well gained nothing.
GEMV_SPLIT_MIN_WORK = 1 << 17


def gemv_blocks(work: int) -> int:
    """Kernel-row blocks for a dense layer on a few rows doing ``work`` multiply-adds."""
    return 1 if work < GEMV_SPLIT_MIN_WORK else numba.get_num_threads()


def set_seed(seed: int) -> None:
    """Seed weight initialization, shuffling and dropout so that runs are reproducible."""
    global _RNG, _SEED
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"set_seed: expected a non-negative integer. Received: seed={seed!r}")
    _SEED = int(seed)
    _RNG = np.random.default_rng(_SEED)


def rng() -> np.random.Generator:
    """The generator behind initialization, shuffling and dropout (reseeded by set_seed)."""
    return _RNG


def floatx() -> str:
    """Name of the default float type ("float32" unless changed with set_floatx)."""
    return _FLOATX.name


def floatx_dtype() -> np.dtype:
    return _FLOATX


def set_floatx(name: str) -> None:
    """Set the default float type: "float32" (fast) or "float64" (for gradient checks)."""
    global _FLOATX
    if name not in ("float32", "float64"):
        raise ValueError(f"set_floatx: expected 'float32' or 'float64'. Received: name={name!r}")
    _FLOATX = np.dtype(name)


def threading_layer() -> str:
    """Numba's threading layer, or "not started" before the first parallel kernel ran."""
    try:
        return numba.threading_layer()
    except ValueError:
        return "not started"


def blas_info() -> list[dict]:
    return [
        {k: d.get(k) for k in ("internal_api", "version", "num_threads", "filepath")}
        for d in threadpoolctl.threadpool_info()
        if d.get("user_api") == "blas"
    ]


def info() -> str:
    """A human-readable report of versions, threads, BLAS and the kernel cache."""
    from . import __version__

    lines = [
        f"nnjit            {__version__}",
        f"python           {sys.version.split()[0]}",
        f"numpy            {np.__version__}",
        f"numba            {numba.__version__}",
        f"threads          {get_num_threads()} (of {numba.config.NUMBA_NUM_THREADS} available)",
        f"threading layer  {threading_layer()}",
        f"floatx           {floatx()}",
        f"kernel cache     {CACHE_DIR}",
        f"malloc tuning    {'on: freed blocks up to %d MB are kept for reuse' % (MALLOC_KEEP_BYTES >> 20) if MALLOC_TUNED else 'off'}",
    ]
    for b in blas_info():
        lines.append(f"BLAS             {b['internal_api']} {b['version']} threads={b['num_threads']} {b['filepath']}")
    return "\n".join(lines)
