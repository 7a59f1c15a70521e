"""Peak memory of self-attention against sequence length: it must grow linearly, not quadratically.

    python -m perf.attention_memory [--lengths 512 1024 2048 4096] [--heads 4] [--dim 128]
                                    [--no-torch] [--json PATH]

For each sequence length T, a fresh process builds ``nj.layers.MultiHeadAttention`` (batch 1,
``--heads`` heads, model width ``--dim``), runs one forward pass in training mode and its backward
pass (input and weight gradients), and reports how far the process's peak resident memory
(``VmHWM``, reset just before the step through ``/proc/self/clear_refs``) rose above its resident
memory before the step.  Kernels are compiled (or loaded from the cache) on a short sequence
first, so compilation is not counted.

The tiled kernels keep one score tile per thread, never the T x T matrix, so the increase is the
activations themselves (q, k, v, outputs, gradients: a few dozen floats per step of the sequence)
and doubles with T.  For scale the table shows what one float32 T x T score matrix per head would
take, which is what an implementation that materializes the softmax needs at least once.  With
PyTorch installed, ``torch.nn.MultiheadAttention`` runs the same step in its own process
(``need_weights=False``, so PyTorch can use its fused attention) for comparison.  Linux only.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

LENGTHS = (512, 1024, 2048, 4096)

_NNJIT = """
import sys, numpy as np
import nnjit as nj
from perf.attention_memory import peak_rss_reset, peak_rss, rss
t, heads, dim, threads = map(int, sys.argv[1:5])
nj.set_num_threads(threads)
nj.set_seed(0)
layer = nj.layers.MultiHeadAttention(num_heads=heads)
rng = np.random.default_rng(0)
warm = rng.standard_normal((1, 16, dim)).astype(np.float32)
y, backward = layer.forward(warm, training=True)   # build, and compile or load the kernels
backward(np.ones_like(y))
x = rng.standard_normal((1, t, dim)).astype(np.float32)
dy = rng.standard_normal((1, t, dim)).astype(np.float32)
before = rss()
peak_rss_reset()
y, backward = layer.forward(x, training=True)
dx = backward(dy)
after = peak_rss()
assert np.isfinite(dx).all()
print(after - before)
"""

_TORCH = """
import sys, numpy as np, torch
from perf.attention_memory import peak_rss_reset, peak_rss, rss
t, heads, dim, threads = map(int, sys.argv[1:5])
torch.set_num_threads(threads)
torch.manual_seed(0)
layer = torch.nn.MultiheadAttention(dim, heads, batch_first=True)
warm = torch.randn(1, 16, dim, requires_grad=True)
layer(warm, warm, warm, need_weights=False)[0].sum().backward()
rng = np.random.default_rng(0)
x = torch.from_numpy(rng.standard_normal((1, t, dim)).astype(np.float32)).requires_grad_()
dy = torch.from_numpy(rng.standard_normal((1, t, dim)).astype(np.float32))
before = rss()
peak_rss_reset()
y = layer(x, x, x, need_weights=False)[0]
y.backward(dy)
after = peak_rss()
assert torch.isfinite(x.grad).all()
print(after - before)
"""


def rss() -> int:
    """Current resident memory of this process, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_reset() -> None:
    """Reset the peak resident memory (VmHWM) of this process to its current value."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss() -> int:
    """Peak resident memory (VmHWM) of this process since the last reset, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(lib: str, t: int, heads: int, dim: int, threads: int) -> int:
    script = _NNJIT if lib == "nnjit" else _TORCH
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", script, str(t), str(heads), str(dim), str(threads)],
                         capture_output=True, text=True, env=env, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{lib} at T = {t} failed:\n{out.stderr[-2000:]}")
    return int(out.stdout.split()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--json", metavar="PATH")
    a = p.parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("attention_memory needs Linux's /proc/self/clear_refs", file=sys.stderr)
        return 2
    libs = ["nnjit"]
    if not a.no_torch:
        try:
            import importlib.util
            if importlib.util.find_spec("torch") is not None:
                libs.append("torch")
        except ImportError:
            pass
    rows = []
    for t in sorted(a.lengths):
        row = {"T": t, "scores_mb": a.heads * t * t * 4 / 2**20}
        for lib in libs:
            row[lib + "_mb"] = measure(lib, t, a.heads, a.dim, a.threads) / 2**20
        rows.append(row)
    head = f"{'T':>6}  {'nnjit MB':>9}  {'x prev':>6}  {'MB/1k steps':>11}"
    if "torch" in libs:
        head += f"  {'torch MB':>9}  {'x prev':>6}"
    head += f"  {'T x T per head MB':>17}"
    print(f"self-attention forward + backward, batch 1, {a.heads} heads, width {a.dim}, float32, "
          f"{a.threads} threads: rise of peak RSS over the step")
    print(head)
    for i, r in enumerate(rows):
        def growth(key):
            if i == 0 or rows[i - 1][key] <= 0:
                return "-"
            return f"{r[key] / rows[i - 1][key]:.2f}"
        line = f"{r['T']:>6}  {r['nnjit_mb']:>9.1f}  {growth('nnjit_mb'):>6}  {r['nnjit_mb'] / r['T'] * 1000:>11.2f}"
        if "torch" in libs:
            line += f"  {r['torch_mb']:>9.1f}  {growth('torch_mb'):>6}"
        line += f"  {r['scores_mb']:>17.1f}"
        print(line)
    print("x prev: growth over the previous length (2.00 = linear in T, 4.00 = quadratic).")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"heads": a.heads, "dim": a.dim, "threads": a.threads, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
