"""Recurrent kernels on the shapes of the reference rnn / lstm / gru workloads, nnjit against PyTorch.

    python perf/recurrent_shapes.py [--rounds R] [--reps K] [--threads T] [--no-torch] [--json PATH]

Each library runs in its own worker process (PERF.md, trap 1); the driver alternates the two
for R rounds with a pause before each, and reports the median over rounds of each worker's
median over K repetitions, in milliseconds, of the forward pass over the whole sequence and
the backward pass from the gradient of the last state (weight gradients, no input gradient:
the recurrent layer is the model's first layer).  nnjit runs with 1 block and with one block
per thread (for the LSTM: one group of units per thread), to show which the caller should pick.  float32, random data, the same shapes and
thread count for both libraries.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# (name, batch, steps, features, units)
SHAPES = [
    ("rnn", 32, 50, 64, 128),
    ("lstm", 32, 50, 64, 128),
    ("gru", 32, 50, 64, 128),
]
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _data(shape):
    import numpy as np

    cell, n, steps, f, units = shape
    g = GATES[cell]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, steps, f)).astype(np.float32)
    w = (rng.standard_normal((f, g * units)) / np.sqrt(f)).astype(np.float32)
    u = (rng.standard_normal((units, g * units)) / np.sqrt(units)).astype(np.float32)
    b = (0.1 * rng.standard_normal(g * units)).astype(np.float32)
    rb = (0.1 * rng.standard_normal(g * units)).astype(np.float32)
    dy = rng.standard_normal((n, units)).astype(np.float32)
    return x, w, u, b, rb, dy


def _median_ms(times):
    return 1e3 * statistics.median(times)


def worker_nnjit(threads, reps):
    import nnjit  # first: limits BLAS to one thread before anything else loads it
    from nnjit import runtime
    from nnjit.kernels import recurrent as R
    from nnjit.kernels.activations import CODES

    import numpy as np

    runtime.set_num_threads(threads)
    out = {}
    no_mask = np.zeros((0, 0), dtype=np.uint8)
    for shape in SHAPES:
        cell, n, steps, f, units = shape
        x, w, u, b, rb, dy = _data(shape)
        h0 = np.zeros((n, units), dtype=np.float32)
        d_out = np.zeros((0, 0, 0), dtype=np.float32)
        dw, du, db, drb = (np.zeros_like(a) for a in (w, u, b, rb))
        splits = [(nb, 1) for nb in sorted({1, threads})]
        for nb, groups in splits:
            if cell == "rnn":
                def fwd():
                    return R.simple_rnn_forward(x, w, u, b, h0, CODES["tanh"], no_mask, False, nb, groups)[2]

                def bwd(cache):
                    R.simple_rnn_backward(d_out, dy, x, w, u, CODES["tanh"], no_mask, False, cache, dw, du, db,
                                          False, True, nb)
            elif cell == "lstm":
                def fwd():
                    return R.lstm_forward(x, w, u, b, h0, h0, no_mask, False, nb, groups)[3]

                def bwd(cache):
                    R.lstm_backward(d_out, dy, h0, x, w, u, no_mask, False, cache, dw, du, db, False, True, nb)
            else:
                def fwd():
                    return R.gru_forward(x, w, u, b, rb, h0, no_mask, False, nb)[2]

                def bwd(cache):
                    R.gru_backward(d_out, dy, x, w, u, no_mask, False, cache, dw, du, db, drb, False, True, nb)

            for _ in range(3):
                bwd(fwd())
            tf, tb = [], []
            for _ in range(reps):
                t0 = time.perf_counter()
                cache = fwd()
                t1 = time.perf_counter()
                bwd(cache)
                t2 = time.perf_counter()
                tf.append(t1 - t0)
                tb.append(t2 - t1)
            out[f"{cell}/nb{nb}" + (f"/groups{groups}" if groups > 1 else "")] = (_median_ms(tf), _median_ms(tb))
    return out


def worker_torch(threads, reps):
    import torch

    torch.set_num_threads(threads)
    out = {}
    for shape in SHAPES:
        cell, n, steps, f, units = shape
        x, _, _, _, _, dy = (torch.from_numpy(a) for a in _data(shape))
        module = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](f, units, batch_first=True)

        def fwd():
            return module(x)[0][:, -1]

        for _ in range(3):
            fwd().backward(dy)
        tf, tb = [], []
        for _ in range(reps):
            module.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            y = fwd()
            t1 = time.perf_counter()
            y.backward(dy)
            t2 = time.perf_counter()
            tf.append(t1 - t0)
            tb.append(t2 - t1)
        out[cell] = (_median_ms(tf), _median_ms(tb))
    return out


def _run_worker(lib, threads, reps):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, "--threads", str(threads), "--reps", str(reps)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pause", type=float, default=0.5)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", default=None)
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
            runs[lib].append(_run_worker(lib, args.threads, args.reps))
    result = {}
    print(f"{'workload':<10} {'fwd':>7} {'bwd':>7} {'total':>7} {'ratio':>6} {'best':>7} {'ratio':>6}   (ms, median "
          f"over rounds; best: the fastest round's total; ratio = torch total / this total)")
    for shape in SHAPES:
        cell = shape[0]
        keys = [k for k in runs["nnjit"][0] if k.startswith(cell + "/")]
        if "torch" in runs:
            keys.append(cell)
        rows = {}
        for key in keys:
            lib = "torch" if key == cell else "nnjit"
            fwd = statistics.median(r[key][0] for r in runs[lib])
            bwd = statistics.median(r[key][1] for r in runs[lib])
            best = min(r[key][0] + r[key][1] for r in runs[lib])
            rows[key] = {"forward_ms": fwd, "backward_ms": bwd, "total_ms": fwd + bwd, "best_total_ms": best}
        result[cell] = rows
        for key, row in rows.items():
            label = f"torch {cell}" if key == cell else key
            ratio = best_ratio = ""
            if cell in rows:
                ratio = f"{rows[cell]['total_ms'] / row['total_ms']:6.2f}"
                best_ratio = f"{rows[cell]['best_total_ms'] / row['best_total_ms']:6.2f}"
            print(f"{label:<10} {row['forward_ms']:7.3f} {row['backward_ms']:7.3f} {row['total_ms']:7.3f} {ratio:>6}"
                  f" {row['best_total_ms']:7.3f} {best_ratio:>6}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
