"""Convolution kernels on the shapes of the reference CNN workloads, nnjit against PyTorch.

    python perf/conv_shapes.py [--rounds R] [--reps K] [--threads T] [--no-torch] [--json PATH]
                               [--openblas-coretype NAME]

Each library runs in its own worker process (PERF.md, trap 1: an nnjit process never imports
torch and the other way round); the driver alternates the two for R rounds with a pause before
each, and reports the median over rounds of each worker's median over K repetitions, in
milliseconds, for the forward pass (convolution + bias + activation) and the backward pass
(weight and bias gradients, and the input gradient except for a model's first layer); then
the minimum over all repetitions, the figure to trust when other processes load the machine.
float32, random data, the same shapes and thread count for both libraries.

``--openblas-coretype SkylakeX`` sets OPENBLAS_CORETYPE for the nnjit worker: OpenBLAS 0.3.30
picks its AVX2 (Haswell) kernels on AMD Zen 4/5 processors, which have AVX-512; forcing the
AVX-512 kernels shows what the GEMM-bound shapes gain from them.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# (name, batch, C, F, H, W, kernel, activation, input gradient needed)
SHAPES = [
    ("cnn28-conv1", 64, 1, 32, 28, 28, 3, "relu", False),
    ("cnn28-conv2", 64, 32, 64, 14, 14, 3, "relu", True),
    ("cnn32-conv1", 32, 3, 32, 32, 32, 3, "linear", False),
    ("cnn32-conv2", 32, 32, 64, 16, 16, 3, "linear", True),
    ("cnn32-conv3", 32, 64, 128, 8, 8, 3, "linear", True),
]


def _data(shape):
    import numpy as np

    _, n, c, f, h, w, k, _, _ = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = (rng.standard_normal((f, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    dy = rng.standard_normal((n, f, h, w)).astype(np.float32)
    return x, wt, b, dy


def _summary_ms(times):
    """(median, minimum) in milliseconds: the median is the figure to report; the minimum is
    the one to trust when other processes load the machine (it is what a quiet core gives)."""
    return 1e3 * statistics.median(times), 1e3 * min(times)


def worker_nnjit(threads, reps):
    import nnjit  # first: limits BLAS to one thread before anything else loads it
    from nnjit import runtime
    from nnjit.kernels.activations import CODES
    from nnjit.kernels.conv import conv2d_backward, conv2d_forward

    import numpy as np

    runtime.set_num_threads(threads)
    out = {}
    for shape in SHAPES:
        name, n, c, f, h, w, k, act, need_dx = shape
        x, wt, b, dy = _data(shape)
        code = CODES[act]
        pad = k // 2
        nb = runtime.blocks_for(n * f * h * w * c * k * k)
        dw = np.zeros_like(wt)
        db = np.zeros_like(b)

        def fwd():
            return conv2d_forward(x, wt, b, 1, 1, pad, pad, h, w, 1, 1, 1, code, nb)

        def bwd(y, z):
            return conv2d_backward(dy, x, wt, y, z, 1, 1, pad, pad, 1, 1, 1, code, dw, db, need_dx, True, nb)

        for _ in range(3):
            y, z = fwd()
            bwd(y, z)
        tf, tb = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            y, z = fwd()
            t1 = time.perf_counter()
            bwd(y, z)
            t2 = time.perf_counter()
            tf.append(t1 - t0)
            tb.append(t2 - t1)
        out[name] = (_summary_ms(tf), _summary_ms(tb))
    return out


def worker_torch(threads, reps):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    out = {}
    for shape in SHAPES:
        name, n, c, f, h, w, k, act, need_dx = shape
        x, wt, b, dy = (torch.from_numpy(a) for a in _data(shape))
        x.requires_grad_(need_dx)
        wt.requires_grad_(True)
        b.requires_grad_(True)

        def fwd():
            y = F.conv2d(x, wt, b, padding=k // 2)
            return F.relu(y) if act == "relu" else y

        for _ in range(3):
            fwd().backward(dy)
        tf, tb = [], []
        for _ in range(reps):
            wt.grad = None
            b.grad = None
            x.grad = None
            t0 = time.perf_counter()
            y = fwd()
            t1 = time.perf_counter()
            y.backward(dy)
            t2 = time.perf_counter()
            tf.append(t1 - t0)
            tb.append(t2 - t1)
        out[name] = (_summary_ms(tf), _summary_ms(tb))
    return out


def _run_worker(lib, threads, reps, coretype=None):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, "--threads", str(threads), "--reps", str(reps)]
    env = dict(os.environ)
    if coretype and lib == "nnjit":
        env["OPENBLAS_CORETYPE"] = coretype
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pause", type=float, default=0.5)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--openblas-coretype", default=None)
    ap.add_argument("--worker", choices=["nnjit", "torch"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        fn = worker_nnjit if args.worker == "nnjit" else worker_torch
        print(json.dumps(fn(args.threads, args.reps)))
        return 0
    libs = ["nnjit"] if args.no_torch else ["nnjit", "torch"]
    runs = {lib: [] for lib in libs}
    for _ in range(args.rounds):
        for lib in libs:
            time.sleep(args.pause)
            runs[lib].append(_run_worker(lib, args.threads, args.reps, args.openblas_coretype))
    result = {}
    for stat, pick, combine in (("median", 0, statistics.median), ("minimum", 1, min)):
        header = f"{'shape':<13} {'nnjit fwd':>9} {'bwd':>7} {'total':>7}"
        if "torch" in runs:
            header += f" {'torch fwd':>9} {'bwd':>7} {'total':>7} {'ratio':>6}"
        print(header + f"   (ms, {stat} over repetitions and rounds)")
        for shape in SHAPES:
            name = shape[0]
            row = {}
            for lib in libs:
                fwd = combine(r[name][0][pick] for r in runs[lib])
                bwd = combine(r[name][1][pick] for r in runs[lib])
                row[lib] = {"forward_ms": fwd, "backward_ms": bwd, "total_ms": fwd + bwd}
            result.setdefault(stat, {})[name] = row
            line = (f"{name:<13} {row['nnjit']['forward_ms']:9.3f} {row['nnjit']['backward_ms']:7.3f}"
                    f" {row['nnjit']['total_ms']:7.3f}")
            if "torch" in row:
                t = row["torch"]
                line += (f" {t['forward_ms']:9.3f} {t['backward_ms']:7.3f} {t['total_ms']:7.3f}"
                         f" {t['total_ms'] / row['nnjit']['total_ms']:6.2f}")
            print(line)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
