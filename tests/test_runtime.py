"""Runtime settings: threads, seed, float type, kernel cache location, info."""
import os
import subprocess
import sys

import numpy as np
import pytest

import nnjit as nj
from nnjit import runtime


def test_threads_round_trip():
    n = nj.get_num_threads()
    nj.set_num_threads(1)
    assert nj.get_num_threads() == 1
    nj.set_num_threads(n)
    assert nj.get_num_threads() == n


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (10_000, ValueError), (1.5, TypeError), ("2", TypeError)])
def test_set_num_threads_refuses(bad, exc):
    with pytest.raises(exc, match="n"):
        nj.set_num_threads(bad)


def test_floatx_round_trip_and_refusal():
    assert nj.floatx() == "float32"
    nj.set_floatx("float64")
    try:
        assert nj.layers.Dense(2)(np.ones((1, 3))).dtype == np.float64
    finally:
        nj.set_floatx("float32")
    with pytest.raises(ValueError, match="float16"):
        nj.set_floatx("float16")


def test_seed_reproduces_initialization():
    nj.set_seed(7)
    a = nj.layers.Dense(4)(np.ones((1, 3), np.float32))
    nj.set_seed(7)
    b = nj.layers.Dense(4)(np.ones((1, 3), np.float32))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="seed"):
        nj.set_seed(-1)


def test_blas_is_single_threaded():
    infos = runtime.blas_info()
    assert infos, "no BLAS library seen"
    assert all(b["num_threads"] == 1 for b in infos)


def test_cache_falls_back_when_install_is_read_only(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(runtime, "_PACKAGE_DIR", blocker)  # kernels/__pycache__ cannot be created under a file
    monkeypatch.setenv("NNJIT_CACHE_DIR", str(tmp_path / "user-cache"))
    chosen = runtime._choose_cache_dir()
    assert chosen == tmp_path / "user-cache"
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "user-cache")


def test_kernels_cache_outside_an_unwritable_install(tmp_path):
    """A copy of the package whose kernels/__pycache__ cannot be created (a file stands
    there) compiles and caches its kernels in the user cache directory instead."""
    import shutil

    src = os.path.dirname(nj.__file__)
    dst = tmp_path / "site" / "nnjit"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    (dst / "kernels" / "__pycache__").write_text("not a directory")
    code = (
        "import nnjit.runtime as r, numpy as np\n"
        "from nnjit.kernels.activations import activation_forward\n"
        "print(r.CACHE_DIR)\n"
        "print(activation_forward(np.ones((2, 2), np.float32), 1, 1).sum())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["NNJIT_CACHE_DIR"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = str(tmp_path / "site")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert lines[-2] == str(tmp_path / "cache") and lines[-1] == "4.0"
    assert any(p.suffix == ".nbi" for p in (tmp_path / "cache").rglob("*"))


def test_info_names_threads_blas_and_cache():
    text = runtime.info()
    for word in ("numba", "threads", "threading layer", "BLAS", "kernel cache"):
        assert word in text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_malloc_tuning_keeps_freed_blocks_and_can_be_turned_off():
    """With the tuning on (the default), freed multi-MB blocks stay in the heap: allocating
    and writing them again maps no new pages (no minor page faults).  NNJIT_MALLOC_TUNING=0
    leaves glibc's defaults, which give such blocks back and fault their pages in again."""
    script = (
        "import resource, numpy as np, nnjit\n"
        "from nnjit import runtime\n"
        "def step():  # the arrays of one LSTM forward pass: 6.5 MB, then freed\n"
        "    arrays = [np.empty(819_200, np.float32)] + [np.empty(204_800, np.float32) for _ in range(4)]\n"
        "    for a in arrays:\n"
        "        a.fill(1.0)\n"
        "for _ in range(3):\n"
        "    step()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(20):\n"
        "    step()\n"
        "print(runtime.MALLOC_TUNED, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
    results = {}
    for setting in ("1", "0"):
        env = dict(os.environ, NNJIT_MALLOC_TUNING=setting)
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                             check=True, timeout=120)
        tuned, faults = out.stdout.split()
        results[setting] = (tuned, int(faults))
    assert results["1"][0] == "True" and results["0"][0] == "False"
    pages = 1_638_400 * 4 // os.sysconf("SC_PAGE_SIZE")
    assert results["1"][1] < pages // 10          # the blocks are reused
    assert results["0"][1] > 5 * pages            # glibc's defaults fault them in again and again
    assert "malloc tuning" in nj.runtime.info()
