"""A benchmark worker: one process per library, set up once, then timed blocks on command.

    python -m perf.worker --lib nnjit|torch|sgemm --threads N

reads one JSON request per line on stdin and answers one JSON line on stdout:

    {"cmd": "setup", "workload": "mlp", "warmup_steps": 10, "warmup_s": 0.5}
        -> {"ok": true, "first_step_s": .., "setup_s": .., "est_step_s": ..}
    {"cmd": "run", "workload": "mlp", "steps": 200}
        -> {"ok": true, "times": [seconds per step, ...], "finite": true, "last": ..}
    {"cmd": "sgemm", "n": 1024, "reps": 20}                      (any library; sgemm worker normally)
    {"cmd": "dense_kernel", "rounds": 5, "reps": 200, "pause": 0.5}   (nnjit only)
    {"cmd": "info"}   {"cmd": "quit"}

Errors come back as {"ok": false, "error": "..."} and the worker keeps serving.

One-shot modes (the process exits after one JSON line on stdout):

    --startup WORKLOAD   build + one training step in a new process; prints the seconds since
                         this process started (cold or warm kernel cache: the caller sets
                         NUMBA_CACHE_DIR in our environment)
    --memory WORKLOAD    peak RSS of a training run of --steps steps
    --profile WORKLOAD   calls model.profile(x, y) (nnjit), printing straight to the terminal

Trap 1 of PERF.md: an nnjit worker never imports torch and a torch worker never imports nnjit
or Numba; the sgemm worker imports only NumPy and threadpoolctl.  Only this file's standard
library imports run at import time.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback

from . import workloads as W


def _busy_wait(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _median(values):
    s = sorted(values)
    n = len(s)
    if n == 0:
        return float("nan")
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _is_finite(value) -> bool:
    try:
        import numpy as np

        return bool(np.all(np.isfinite(value)))
    except (TypeError, ValueError):
        return False


class _Prepared:
    """A workload set up in this process: ``step()`` runs one training or inference step."""

    def __init__(self, step, value_of):
        self.step = step
        self.value_of = value_of  # step result -> something to check for finiteness (loss or outputs)


def _timed(step, steps):
    pc = time.perf_counter
    times = [0.0] * steps
    result = None
    for i in range(steps):
        t0 = pc()
        result = step()
        times[i] = pc() - t0
    return times, result


# --------------------------------------------------------------------------- libraries
class NnjitLib:
    name = "nnjit"

    def __init__(self, threads: int):
        import numpy as np

        import nnjit as nj

        self.np = np
        self.nj = nj
        self.threads = threads
        nj.set_num_threads(threads)

    def info(self):
        import numba

        return {"nnjit": getattr(self.nj, "__version__", "?"), "numba": numba.__version__,
                "numpy": self.np.__version__, "threads": self.nj.get_num_threads(),
                "threading_layer": self.nj.runtime.threading_layer(),
                "cache_dir": str(getattr(self.nj.runtime, "CACHE_DIR", os.environ.get("NUMBA_CACHE_DIR", "")))}

    def prepare(self, wl: W.Workload, delay_s: float = 0.0) -> _Prepared:
        self.nj.set_seed(0)
        model = wl.nnjit_builder()
        x, y = wl.data()
        self.last_model, self.last_x, self.last_y = model, x, y
        if wl.train:
            y_prepared = model.loss.prepare_targets(y, model._output_shape(), "y")
            # The lean internal step fit() itself runs on prepared batches (train_on_batch
            # re-validates x and y on every call).
            step = model._train_step
            if delay_s:
                def run():
                    _busy_wait(delay_s)
                    return step(x, y_prepared)
            else:
                def run():
                    return step(x, y_prepared)
            return _Prepared(run, lambda r: r[0])
        batch = wl.batch
        predict = model.predict
        if delay_s:
            def run():
                _busy_wait(delay_s)
                return predict(x, batch_size=batch)
        else:
            def run():
                return predict(x, batch_size=batch)  # the public path users call
        return _Prepared(run, lambda r: r)

    def dense_kernel(self, rounds=5, reps=200, pause=0.5, batch=128, k=784, m=256):
        """Fused dense forward (784->256 relu, batch 128) against one plain NumPy matmul of the
        same shape with as many BLAS threads as nnjit has, in this process.

        The two are measured in alternating blocks with a pause between them, so that
        OpenBLAS's spinning threads (the matmul) and Numba's pool (the kernel) never overlap.
        Each round pairs one block of each; the percentage is the median over rounds of the
        per-round ratio, so that drift in the machine's speed between rounds (large on a
        shared host) cancels instead of landing on one side.
        """
        import threadpoolctl

        from nnjit.kernels.activations import CODES
        from nnjit.kernels.dense import dense_forward

        np = self.np
        rng = np.random.default_rng(1)
        x = rng.standard_normal((batch, k), dtype=np.float32)
        w = rng.standard_normal((k, m), dtype=np.float32) * np.float32(0.05)
        b = rng.standard_normal(m, dtype=np.float32)
        code = CODES["relu"]
        nblocks = self.nj.runtime.blocks_for(batch * k * m)
        out = np.empty((batch, m), dtype=np.float32)
        for _ in range(5):
            y, _z = dense_forward(x, w, b, code, nblocks)
        ref = np.maximum(x @ w + b, 0)
        max_err = float(np.max(np.abs(y - ref)) / max(1e-30, float(np.max(np.abs(ref)))))
        fused, plain, percents = [], [], []
        for _ in range(rounds):
            with threadpoolctl.threadpool_limits(limits=self.threads, user_api="blas"):
                for _ in range(5):
                    np.matmul(x, w, out=out)
                tp, _ = _timed(lambda: np.matmul(x, w, out=out), reps)
            time.sleep(pause)
            for _ in range(5):
                dense_forward(x, w, b, code, nblocks)
            tf, _ = _timed(lambda: dense_forward(x, w, b, code, nblocks), reps)
            time.sleep(pause)
            plain += tp
            fused += tf
            percents.append(100.0 * _median(tp) / _median(tf))
        flops = W.gemm_flops(batch, k, m)
        fused_s, plain_s = _median(fused), _median(plain)
        return {"shape": [batch, k, m], "activation": "relu", "nblocks": nblocks, "threads": self.threads,
                "flops": flops, "fused_ms": fused_s * 1e3, "sgemm_ms": plain_s * 1e3,
                "fused_gflops": flops / fused_s / 1e9, "sgemm_gflops": flops / plain_s / 1e9,
                "percent_of_sgemm": _median(percents), "percent_per_round": percents,
                "max_rel_error": max_err, "finite": _is_finite(y)}

    def profile(self, wl: W.Workload):
        model = wl.nnjit_builder()
        x, y = wl.data()
        if not hasattr(model, "profile"):
            print(f"nnjit bench --profile: this nnjit has no model.profile(x, y) yet "
                  f"({type(model).__name__} has no attribute 'profile'); nothing to show for {wl.id}.")
            return 3
        for _ in range(3):  # load the kernels first so that the profile shows steady-state times
            if wl.train:
                model.train_on_batch(x, y)
            else:
                model.predict(x, batch_size=wl.batch)
        result = model.profile(x, y)  # prints its own table
        if isinstance(result, str):
            print(result)
        return 0


class TorchLib:
    name = "torch"

    def __init__(self, threads: int):
        import torch

        self.torch = torch
        torch.set_num_threads(threads)
        self.threads = threads

    def info(self):
        return {"torch": self.torch.__version__, "threads": self.torch.get_num_threads(),
                "interop_threads": self.torch.get_num_interop_threads()}

    def prepare(self, wl: W.Workload, delay_s: float = 0.0) -> _Prepared:
        torch = self.torch
        torch.manual_seed(0)
        model, loss_fn, opt = wl.torch_builder()
        xn, yn = wl.data()
        x = torch.from_numpy(xn)
        y = torch.from_numpy(yn)
        if wl.train:
            model.train()

            def run():
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                opt.step()
                return loss
            return _Prepared(run, lambda r: float(r.detach()))
        model.eval()

        def run():
            with torch.inference_mode():
                return model(x)
        return _Prepared(run, lambda r: r.numpy())


class SgemmLib:
    name = "sgemm"

    def __init__(self, threads: int):
        import numpy as np
        import threadpoolctl

        self.np = np
        self.threads = threads
        self.limiter = threadpoolctl.threadpool_limits(limits=threads, user_api="blas")

    def info(self):
        import threadpoolctl

        return {"numpy": self.np.__version__, "threads": self.threads,
                "blas": [{k: d.get(k) for k in ("internal_api", "version", "num_threads")}
                         for d in threadpoolctl.threadpool_info() if d.get("user_api") == "blas"]}


def sgemm(np, n=1024, reps=20):
    """Median seconds of an n x n x n float32 NumPy matmul (BLAS threads as currently limited)."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    for _ in range(3):
        np.matmul(a, b, out=c)
    times, _ = _timed(lambda: np.matmul(a, b, out=c), reps)
    flops = W.gemm_flops(n, n, n)
    med = _median(times)
    return {"n": n, "reps": reps, "median_ms": med * 1e3, "min_ms": min(times) * 1e3,
            "gflops": flops / med / 1e9, "gflops_best": flops / min(times) / 1e9,
            "times": times}


LIBS = {"nnjit": NnjitLib, "torch": TorchLib, "sgemm": SgemmLib}


# --------------------------------------------------------------------------- serving
class Server:
    def __init__(self, lib):
        self.lib = lib
        self.prepared: dict[str, _Prepared] = {}

    def handle(self, req: dict) -> dict:
        cmd = req.get("cmd")
        if cmd == "info":
            return {"ok": True, **self.lib.info()}
        if cmd == "setup":
            wl = W.get(req["workload"])
            t0 = time.perf_counter()
            prep = self.lib.prepare(wl, float(req.get("delay_s", 0.0)))
            t1 = time.perf_counter()
            result = prep.step()
            first = time.perf_counter() - t1
            done, warm_times = 1, []
            min_steps = int(req.get("warmup_steps", 10))
            min_s = float(req.get("warmup_s", 0.5))
            while done < min_steps or time.perf_counter() - t0 < min_s:
                t = time.perf_counter()
                result = prep.step()
                warm_times.append(time.perf_counter() - t)
                done += 1
                if done > 100000:
                    break
            self.prepared[wl.id] = prep
            tail = sorted(warm_times[len(warm_times) // 2:] or [first])
            return {"ok": True, "build_s": t1 - t0, "first_step_s": first, "warmup_steps": done,
                    "setup_s": time.perf_counter() - t0, "est_step_s": tail[len(tail) // 4],
                    "finite": _is_finite(prep.value_of(result))}
        if cmd == "run":
            prep = self.prepared.get(req["workload"])
            if prep is None:
                return {"ok": False, "error": f"workload {req['workload']!r} was not set up in this worker"}
            times, result = _timed(prep.step, int(req["steps"]))
            value = prep.value_of(result)
            finite = _is_finite(value) and all(math.isfinite(t) and t > 0 for t in times)
            last = float(value) if getattr(value, "ndim", 0) == 0 else None
            return {"ok": True, "times": times, "finite": finite, "last": last}
        if cmd == "sgemm":
            np = getattr(self.lib, "np", None)
            if np is None:
                import numpy as np
            return {"ok": True, **sgemm(np, int(req.get("n", 1024)), int(req.get("reps", 20)))}
        if cmd == "dense_kernel":
            if not isinstance(self.lib, NnjitLib):
                return {"ok": False, "error": "dense_kernel runs in an nnjit worker only"}
            return {"ok": True, **self.lib.dense_kernel(int(req.get("rounds", 5)), int(req.get("reps", 200)),
                                                        float(req.get("pause", 0.5)))}
        return {"ok": False, "error": f"unknown command {cmd!r}"}


def serve(lib_name: str, threads: int) -> int:
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(obj):
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    try:
        server = Server(LIBS[lib_name](threads))
    except Exception as exc:  # noqa: BLE001 - report any start-up failure to the parent
        send({"ok": False, "fatal": True, "error": f"{type(exc).__name__}: {exc}",
              "traceback": traceback.format_exc()})
        return 1
    send({"ok": True, "ready": True, "lib": lib_name, "pid": os.getpid()})
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
        except json.JSONDecodeError as exc:
            send({"ok": False, "error": f"bad request: {exc}"})
            continue
        if req.get("cmd") == "quit":
            send({"ok": True, "bye": True})
            break
        try:
            send(server.handle(req))
        except Exception as exc:  # noqa: BLE001
            send({"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
    return 0


# --------------------------------------------------------------------------- one-shot modes
def _rss_mb() -> float:
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return kb / 1024.0 if sys.platform != "darwin" else kb / 1024.0 / 1024.0


def _current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


def startup(workload: str, threads: int) -> int:
    """New process -> first finished training step; prints {"seconds": age} (nnjit only)."""
    import nnjit as nj
    from nnjit.cli import process_age

    if threads:
        nj.set_num_threads(threads)
    nj.set_seed(0)
    wl = W.get(workload)
    model = wl.nnjit_builder()
    x, y = wl.data()
    if wl.train:
        logs = model.train_on_batch(x, y)
        finite = math.isfinite(logs["loss"])
    else:
        finite = _is_finite(model.predict(x, batch_size=wl.batch))
    age = process_age()
    print(json.dumps({"seconds": age, "finite": finite, "cache_dir": os.environ.get("NUMBA_CACHE_DIR")}))
    return 0


def memory(lib_name: str, workload: str, threads: int, steps: int) -> int:
    """Peak RSS of a run of ``steps`` steps; prints {"peak_rss_mb", "import_rss_mb", ...}."""
    lib = LIBS[lib_name](threads)
    import_rss = _current_rss_mb()
    import_peak = _rss_mb()
    prep = lib.prepare(W.get(workload))
    result = None
    for _ in range(steps):
        result = prep.step()
    print(json.dumps({"lib": lib_name, "workload": workload, "steps": steps, "peak_rss_mb": _rss_mb(),
                      "import_rss_mb": import_rss, "import_peak_rss_mb": import_peak,
                      "finite": _is_finite(prep.value_of(result))}))
    return 0


def profile(workload: str, threads: int) -> int:
    lib = NnjitLib(threads)
    return lib.profile(W.get(workload))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.worker")
    p.add_argument("--lib", choices=sorted(LIBS), default="nnjit")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--startup", metavar="WORKLOAD")
    p.add_argument("--memory", metavar="WORKLOAD")
    p.add_argument("--profile", metavar="WORKLOAD")
    p.add_argument("--steps", type=int, default=50)
    a = p.parse_args(argv)
    if a.startup:
        return startup(a.startup, a.threads)
    if a.memory:
        return memory(a.lib, a.memory, a.threads, a.steps)
    if a.profile:
        return profile(a.profile, a.threads)
    return serve(a.lib, a.threads)


if __name__ == "__main__":
    sys.exit(main())
