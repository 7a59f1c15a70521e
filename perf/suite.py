"""``nnjit bench``: the performance suite, nnjit side by side with PyTorch (see perf/README.md).

This process only orchestrates: every measurement runs in a worker process that imports a single
library (perf/worker.py), because two thread pools in one process, or a PyTorch block timed right
after a busy NumPy/Numba block in another process, distort each other (PERF.md, trap 1).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time

from . import workloads as W

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BASELINE = os.path.join(ROOT, "perf", "baseline.json")
DEFAULT_TOLERANCE = 0.30  # used when neither --tolerance nor the baseline file gives one
BLOCK_TARGET_S = 0.3      # default timed block length per library (steps chosen from the warm-up)
MIN_STEPS, MAX_STEPS = 20, 5000
REQUEST_TIMEOUT_S = 900.0


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------- statistics
def quantile(sorted_values, q):
    """Linear-interpolation quantile of an already sorted list."""
    n = len(sorted_values)
    if n == 0:
        return float("nan")
    pos = (n - 1) * q
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(times_s):
    """ms statistics of per-step times (seconds)."""
    s = sorted(t * 1e3 for t in times_s)
    med = quantile(s, 0.5)
    q1, q3 = quantile(s, 0.25), quantile(s, 0.75)
    return {"steps": len(s), "median_ms": med, "q1_ms": q1, "q3_ms": q3, "iqr_ms": q3 - q1,
            "iqr_pct": 100.0 * (q3 - q1) / med if med > 0 else float("nan"),
            "p10_ms": quantile(s, 0.1), "p90_ms": quantile(s, 0.9),
            "min_ms": s[0] if s else float("nan"), "max_ms": s[-1] if s else float("nan"),
            "mean_ms": sum(s) / len(s) if s else float("nan")}


def _finite_numbers(obj, path="") -> list[str]:
    """Paths of non-finite floats in a JSON-like object (empty when all are finite)."""
    bad = []
    if isinstance(obj, float):
        if not math.isfinite(obj):
            bad.append(path or "<value>")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            bad += _finite_numbers(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            bad += _finite_numbers(v, f"{path}[{i}]")
    return bad


# --------------------------------------------------------------------------- processes
def child_env(lib: str, threads: int, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    if lib == "torch":
        # PyTorch's own pool (OpenMP/MKL) gets the threads; NumPy's OpenBLAS, only used to make
        # the random inputs, gets one so that it never spins next to PyTorch.
        env["OMP_NUM_THREADS"] = str(threads)
        env["MKL_NUM_THREADS"] = str(threads)
        env["OPENBLAS_NUM_THREADS"] = "1"
    if extra:
        env.update(extra)
    return env


class Worker:
    """A library worker process driven over JSON lines (perf/worker.py)."""

    def __init__(self, lib: str, threads: int, env_extra: dict | None = None):
        self.lib = lib
        self.stderr = tempfile.TemporaryFile(mode="w+b")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "perf.worker", "--lib", lib, "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, cwd=ROOT,
            env=child_env(lib, threads, env_extra), text=True, bufsize=1)
        hello = self._read(REQUEST_TIMEOUT_S)
        if not hello.get("ok"):
            self.close()
            raise BenchError(f"{lib} worker failed to start: {hello.get('error')}\n{hello.get('traceback', '')}")
        self.pid = hello.get("pid")

    def _stderr_tail(self, n=3000) -> str:
        try:
            self.stderr.seek(0)
            return self.stderr.read().decode(errors="replace")[-n:]
        except (OSError, ValueError):
            return ""

    def _read(self, timeout: float) -> dict:
        out = self.proc.stdout
        ready, _, _ = select.select([out], [], [], timeout)
        if not ready:
            self.close()
            raise BenchError(f"{self.lib} worker did not answer within {timeout:.0f} s")
        line = out.readline()
        if not line:
            code = self.proc.wait(timeout=10)
            raise BenchError(f"{self.lib} worker exited (code {code}):\n{self._stderr_tail()}")
        return json.loads(line)

    def request(self, timeout: float = REQUEST_TIMEOUT_S, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        reply = self._read(timeout)
        if not reply.get("ok"):
            raise BenchError(f"{self.lib} worker: {req.get('cmd')} {req.get('workload', '')} failed: "
                             f"{reply.get('error')}\n{reply.get('traceback', '')}")
        return reply

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_oneshot(args: list[str], env: dict, timeout: float) -> tuple[dict | None, str, float]:
    """Run a child to completion; returns (last JSON line of stdout or None, output, wall seconds)."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s", time.perf_counter() - t0
    wall = time.perf_counter() - t0
    text = p.stdout + ("\n" + p.stderr if p.returncode else "")
    for line in reversed(p.stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line), text, wall
            except json.JSONDecodeError:
                break
    return None, text, wall


class ForeignLoad:
    """CPU used by processes other than this suite and its workers, over an interval.

    /proc/stat gives the machine's busy time; this process and its finished children (the
    workers, reaped when closed) account for their own.  The rest is other people's work, which
    on a 2-core machine distorts every parallel measurement: a parallel region waits for its
    slowest thread, and a descheduled thread can stretch a 0.3 ms step to several ms."""

    def __init__(self):
        self.t0 = self._sample()

    @staticmethod
    def _sample():
        import resource

        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
            busy = (sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            busy = None
        own = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            r = resource.getrusage(who)
            own += r.ru_utime + r.ru_stime
        return time.perf_counter(), busy, own

    def cores(self):
        """Average number of cores other processes kept busy since construction (None if unknown)."""
        t1 = self._sample()
        wall = t1[0] - self.t0[0]
        if t1[1] is None or self.t0[1] is None or wall <= 0:
            return None
        return max(0.0, ((t1[1] - self.t0[1]) - (t1[2] - self.t0[2])) / wall)


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


# --------------------------------------------------------------------------- measurements
def measure_sgemm(threads: int, n: int, reps: int) -> dict:
    with Worker("sgemm", threads) as w:
        info = w.request(cmd="info")
        r = w.request(cmd="sgemm", n=n, reps=reps)
    r.pop("ok", None)
    r["blas"] = info.get("blas")
    return r


def pick_steps(args, estimates) -> int:
    if args.steps:
        return args.steps
    valid = [e for e in estimates if e and e > 0]
    est = max(valid) if valid else 1e-3
    return int(min(MAX_STEPS, max(MIN_STEPS, round(BLOCK_TARGET_S / est))))


def run_workloads(wls, args, use_torch: bool, log, errors: dict) -> dict:
    """Alternating timed blocks of every workload; one warm worker per library per workload
    (smoke mode: one worker per library for all workloads, replaced if one dies).  A workload
    that fails is recorded in ``errors`` and the others still run."""
    results = {}
    libs = ["nnjit"] + (["torch"] if use_torch else [])
    shared = {}
    try:
        for wl in wls:
            log(f"  {wl.id}: setting up {' and '.join(libs)} ...")
            load = ForeignLoad()
            if args.smoke:
                for lib in libs:
                    if lib not in shared or shared[lib].proc.poll() is not None:
                        if lib in shared:
                            shared[lib].close()
                        shared[lib] = Worker(lib, args.threads)
                workers = shared
            else:
                workers = {}
            try:
                for lib in libs:
                    if lib not in workers:
                        workers[lib] = Worker(lib, args.threads)
                res = _time_workload(wl, workers, libs, args)
            except BenchError as exc:
                errors[wl.id] = str(exc)
                log(f"  {wl.id}: FAILED: {exc}")
                continue
            finally:
                if not args.smoke:
                    for w in workers.values():
                        w.close()
            if not args.smoke:  # the workers are reaped, so their CPU time is known
                res["foreign_load_cores"] = load.cores()
            results[wl.id] = res
            msg = f"  {wl.id}: nnjit {res['nnjit']['median_ms']:.4g} ms"
            if use_torch:
                msg += f", torch {res['torch']['median_ms']:.4g} ms, ratio {res['ratio']:.2f}"
            log(msg + f" ({args.rounds} rounds x {res['steps_per_block']} steps)")
    finally:
        for w in shared.values():
            w.close()
    return results


def _time_workload(wl, workers, libs, args) -> dict:
    setups = {}
    for lib in libs:
        delay = args.inject_delay.get(wl.id, 0.0) if lib == "nnjit" else 0.0
        setups[lib] = workers[lib].request(cmd="setup", workload=wl.id, warmup_steps=args.warmup_steps,
                                           warmup_s=args.warmup_s, delay_s=delay)
        setups[lib].pop("ok", None)
    steps = pick_steps(args, [s["est_step_s"] for s in setups.values()])
    if args.pause > 0:
        time.sleep(args.pause)  # the set-ups (imports, warm-up) were the heaviest work so far: settle first
    blocks = {lib: [] for lib in libs}
    finite = {lib: bool(setups[lib]["finite"]) for lib in libs}
    for r in range(args.rounds):
        order = libs if r % 2 == 0 else libs[::-1]  # alternate who goes first
        for lib in order:
            if args.pause > 0:
                time.sleep(args.pause)  # let the other process's spinning threads go idle
            reply = workers[lib].request(cmd="run", workload=wl.id, steps=steps)
            blocks[lib].append(reply["times"])
            finite[lib] = finite[lib] and reply["finite"]
    res = {"id": wl.id, "kind": wl.kind, "batch": wl.batch, "description": wl.description,
           "flops_per_step": wl.flops, "forward_flops": wl.forward_flops, "steps_per_block": steps,
           "rounds": args.rounds, "target_ratio": wl.target_ratio, "reference_torch_ms": wl.reference_torch_ms}
    for lib in libs:
        st = summarize([t for b in blocks[lib] for t in b])
        st["block_medians_ms"] = [summarize(b)["median_ms"] for b in blocks[lib]]
        st["gflops"] = wl.flops / (st["median_ms"] * 1e-3) / 1e9
        st["samples_per_s"] = wl.batch / (st["median_ms"] * 1e-3)
        st["finite"] = bool(finite[lib])
        st["setup"] = setups[lib]
        res[lib] = st
    if "torch" in libs:
        res["ratio"] = res["torch"]["median_ms"] / res["nnjit"]["median_ms"]
        rr = [t / n for t, n in zip(res["torch"]["block_medians_ms"], res["nnjit"]["block_medians_ms"])]
        res["round_ratios"] = rr
        res["ratio_min"], res["ratio_max"] = min(rr), max(rr)
    return res


def measure_dense_kernel(args, sgemm_gflops) -> dict:
    with Worker("nnjit", args.threads) as w:
        r = w.request(cmd="dense_kernel", rounds=args.dense_rounds, reps=args.dense_reps, pause=args.pause)
    r.pop("ok", None)
    if sgemm_gflops:
        r["efficiency_pct"] = 100.0 * r["fused_gflops"] / sgemm_gflops
    return r


def measure_startup(args, log) -> dict:
    out = {}
    base = tempfile.mkdtemp(prefix="nnjit-bench-startup-")
    try:
        cache = os.path.join(base, "cache-mlp")
        os.makedirs(cache)
        for label in ("cold", "warm"):
            env = child_env("nnjit", args.threads, {"NUMBA_CACHE_DIR": cache})
            res, text, wall = run_oneshot([sys.executable, "-m", "perf.worker", "--startup", "mlp",
                                           "--threads", str(args.threads)], env, 900)
            key = f"mlp_{label}"
            if res is None:
                out[key] = {"error": text[-2000:]}
                log(f"  start-up mlp ({label} cache): FAILED\n{text[-2000:]}")
            else:
                out[key] = {"seconds": res["seconds"], "wall_s": wall, "finite": res.get("finite")}
                log(f"  start-up mlp ({label} cache): first training step {res['seconds']:.2f} s after process start")
        if args.train_startup:
            cache = os.path.join(base, "cache-train")
            os.makedirs(cache)
            for label in ("cold", "warm"):
                env = child_env("nnjit", args.threads, {"NUMBA_CACHE_DIR": cache})
                cmd = [sys.executable, "-m", "nnjit.cli", "train", "--epochs", "1", "--verbose", "0",
                       "--out", os.path.join(base, "train-out"), "--threads", str(args.threads)]
                t0 = time.perf_counter()
                try:
                    p = subprocess.run(cmd, env=env, cwd=base, capture_output=True, text=True, timeout=900)
                    text = p.stdout + p.stderr
                except subprocess.TimeoutExpired:
                    text = "timed out"
                wall = time.perf_counter() - t0
                m = re.search(r"first training step finished ([0-9.]+) s", text)
                key = f"train_{label}"
                if m:
                    out[key] = {"seconds": float(m.group(1)), "wall_s": wall}
                    log(f"  start-up `nnjit train --epochs 1` ({label} cache): first step {float(m.group(1)):.2f} s "
                        f"after process start (whole run {wall:.1f} s)")
                else:
                    out[key] = {"error": text[-2000:]}
                    log(f"  start-up `nnjit train` ({label} cache): no 'first training step' line\n{text[-2000:]}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return out


def measure_memory(wls, args, use_torch: bool, log) -> dict:
    out = {}
    for wl in wls:
        row = {}
        for lib in ["nnjit"] + (["torch"] if use_torch else []):
            res, text, wall = run_oneshot([sys.executable, "-m", "perf.worker", "--memory", wl.id, "--lib", lib,
                                           "--threads", str(args.threads), "--steps", str(args.memory_steps)],
                                          child_env(lib, args.threads), 900)
            if res is None:
                row[lib] = {"error": text[-2000:]}
                log(f"  memory {wl.id} {lib}: FAILED\n{text[-2000:]}")
            else:
                res["delta_rss_mb"] = res["peak_rss_mb"] - res["import_rss_mb"]
                row[lib] = res
        out[wl.id] = row
        parts = [f"{lib} {r['peak_rss_mb']:.0f} MB peak (+{r['delta_rss_mb']:.0f} over import)"
                 for lib, r in row.items() if "peak_rss_mb" in r]
        log(f"  memory {wl.id}: " + ", ".join(parts))
    return out


# --------------------------------------------------------------------------- report
def _f(v, fmt):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, fmt)


def _ms(v):
    if v is None:
        return "-"
    return f"{v:.4f}" if v < 0.1 else f"{v:.3f}" if v < 10 else f"{v:.1f}"


def format_table(report) -> str:
    headers = ["workload", "batch", "nnjit ms", "torch ms", "ratio", "target", "nnjit GFLOP/s", "eff %",
               "samples/s", "spread nnjit/torch", "RSS MB nnjit/torch"]
    rows = []
    sgemm = (report.get("sgemm") or {}).get("gflops")
    mem = report.get("memory") or {}
    for wid, r in report["workloads"].items():
        n, t = r["nnjit"], r.get("torch")
        ratio = r.get("ratio")
        eff = 100.0 * n["gflops"] / sgemm if sgemm else None
        m = mem.get(wid, {})
        rss = "/".join(_f(m.get(lib, {}).get("peak_rss_mb"), ".0f") for lib in ("nnjit", "torch")) if m else "-"
        spread = f"{_f(n['iqr_pct'], '.0f')}%/" + (f"{_f(t['iqr_pct'], '.0f')}%" if t else "-")
        ratio_s = "-" if ratio is None else f"{ratio:.2f}x" + ("" if ratio >= r["target_ratio"] else " !")
        rows.append([wid, str(r["batch"]), _ms(n["median_ms"]), _ms(t["median_ms"]) if t else "-", ratio_s,
                     f"{r['target_ratio']:g}x", _f(n["gflops"], ".1f"), _f(eff, ".0f"),
                     _f(n["samples_per_s"], ",.0f"), spread, rss])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths))),
             "  ".join("-" * w for w in widths)]
    for row in rows:
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def format_report(report) -> str:
    meta = report["meta"]
    out = [f"nnjit bench: {meta['threads']} threads, {meta['rounds']} rounds per workload, "
           f"{meta['pause_s']} s pause before each timed block, {meta['cpu_count']} CPUs, {meta['date']}"]
    sg = report.get("sgemm")
    if sg and "gflops" in sg:
        out.append(f"sgemm {sg['n']}^3 (NumPy float32, {meta['threads']} BLAS threads): {sg['gflops']:.1f} GFLOP/s "
                   f"(the better of two medians of {sg['reps_total'] // 2 if sg.get('gflops_end') else sg['reps_total']} "
                   f"products, start of run {sg['gflops_start']:.1f}, end {_f(sg.get('gflops_end'), '.1f')})")
    if report["workloads"]:
        out += ["", format_table(report),
                "",
                "ms: median per step over all timed blocks; ratio = torch ms / nnjit ms ('!' = below the PERF.md "
                "target); eff % = nnjit GFLOP/s / sgemm GFLOP/s; spread = interquartile range / median; "
                "samples/s = nnjit; RSS = peak resident memory of a separate training/inference run."]
        loaded = {wid: r["foreign_load_cores"] for wid, r in report["workloads"].items()
                  if (r.get("foreign_load_cores") or 0) > 0.15}
        if loaded:
            out.append("other processes were busy while timing: " + ", ".join(
                f"{wid} {c:.2f} cores" for wid, c in loaded.items()) + " (those rows are unreliable)")
    dk = report.get("dense_kernel")
    if dk:
        out += ["", f"fused dense kernel {dk['shape'][0]}x{dk['shape'][1]}->{dk['shape'][2]} relu: "
                    f"{dk['fused_ms']:.4f} ms = {dk['fused_gflops']:.1f} GFLOP/s; plain NumPy matmul same shape, "
                    f"{dk['threads']} BLAS threads: {dk['sgemm_ms']:.4f} ms = {dk['sgemm_gflops']:.1f} GFLOP/s; "
                    f"fused = {dk['percent_of_sgemm']:.0f} % of sgemm (target >= 85 %"
                    + (f"; median of {len(dk['percent_per_round'])} paired rounds, "
                       f"{min(dk['percent_per_round']):.0f}-{max(dk['percent_per_round']):.0f} %"
                       if dk.get("percent_per_round") else "") + ")"
                    + (f"; {dk['efficiency_pct']:.0f} % of the 1024^3 sgemm" if "efficiency_pct" in dk else "")]
    st = report.get("startup")
    if st:
        out.append("")
        names = {"mlp": "mlp workload, new process", "train": "`nnjit train --epochs 1`"}
        for key, v in st.items():
            what, label = key.rsplit("_", 1)
            target = " (target <= 2 s)" if label == "warm" else " (target <= 20 s for nnjit train)" if what == "train" else ""
            if "seconds" in v:
                out.append(f"start-up {names[what]}, {label} kernel cache: first training step after "
                           f"{v['seconds']:.2f} s{target}")
            else:
                out.append(f"start-up {names[what]}, {label} kernel cache: failed")
    if report.get("unavailable"):
        out.append("")
        for wid, missing in report["unavailable"].items():
            out.append(f"not yet available: {wid} (needs {', '.join(missing)})")
    for note in report.get("notes", []):
        out.append(note)
    return "\n".join(out)


# --------------------------------------------------------------------------- regression check
def load_baseline(path):
    with open(path) as f:
        return json.load(f)


def check(report, baseline, tolerance=None) -> tuple[bool, list[str]]:
    """Compare ratios (and the dense-kernel percentage) with a baseline.

    A value fails when it is below baseline * (1 - tolerance).  ``tolerance`` given (the
    --tolerance option) applies to everything; otherwise each workload uses the baseline's
    ``tolerances[workload]``, then its ``tolerance``, then DEFAULT_TOLERANCE.
    Returns (passed, messages)."""
    lines, ok = [], True
    base_ratios = baseline.get("ratios", {})
    default = float(baseline.get("tolerance", DEFAULT_TOLERANCE))

    def tol_for(key):
        if tolerance is not None:
            return float(tolerance)
        return float((baseline.get("tolerances") or {}).get(key, default))

    for wid, r in report["workloads"].items():
        if "ratio" not in r:
            lines.append(f"FAIL {wid}: no PyTorch ratio measured (torch missing or --no-torch); --check needs it")
            ok = False
            continue
        if wid not in base_ratios:
            lines.append(f"skip {wid}: no baseline ratio in the baseline file (ratio now {r['ratio']:.2f})")
            continue
        base = float(base_ratios[wid])
        tol = tol_for(wid)
        floor = base * (1.0 - tol)
        if r["ratio"] < floor:
            ok = False
            lines.append(f"FAIL {wid}: ratio {r['ratio']:.2f} is below the floor {floor:.2f} "
                         f"(baseline {base:.2f} - {tol:.0%}); nnjit {r['nnjit']['median_ms']:.4g} ms, "
                         f"torch {r['torch']['median_ms']:.4g} ms")
        else:
            lines.append(f"ok   {wid}: ratio {r['ratio']:.2f} >= floor {floor:.2f} (baseline {base:.2f} - {tol:.0%})")
    dk, base_dk = report.get("dense_kernel"), baseline.get("dense_kernel_pct")
    if dk and base_dk is not None:
        tol = float(tolerance) if tolerance is not None else float(baseline.get("dense_kernel_tolerance") or default)
        floor = float(base_dk) * (1.0 - tol)
        if dk["percent_of_sgemm"] < floor:
            ok = False
            lines.append(f"FAIL dense kernel: {dk['percent_of_sgemm']:.0f} % of sgemm is below the floor {floor:.0f} % "
                         f"(baseline {float(base_dk):.0f} % - {tol:.0%})")
        else:
            lines.append(f"ok   dense kernel: {dk['percent_of_sgemm']:.0f} % of sgemm >= floor {floor:.0f} %")
    return ok, lines


def baseline_from(report, tolerance) -> dict:
    return {
        "comment": "Ratios torch_ms / nnjit_ms measured by `nnjit bench`; see perf/README.md for how the "
                   "tolerance was derived. Regenerate with `nnjit bench --write-baseline perf/baseline.json`.",
        "measured": report["meta"]["date"],
        "threads": report["meta"]["threads"],
        "tolerance": tolerance,
        "ratios": {wid: round(r["ratio"], 3) for wid, r in report["workloads"].items() if "ratio" in r},
        "dense_kernel_pct": round(report["dense_kernel"]["percent_of_sgemm"], 1) if report.get("dense_kernel") else None,
    }


# --------------------------------------------------------------------------- main
def _parse_delay(items):
    out = {}
    for item in items or []:
        wid, _, sec = item.partition("=")
        try:
            out[wid] = float(sec)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--inject-delay expects WORKLOAD=SECONDS, got {item!r}") from None
    return out


def build_parser():
    p = argparse.ArgumentParser(
        prog="nnjit bench",
        description="The nnjit performance suite: PERF.md's workloads, side by side with PyTorch (perf/README.md).")
    p.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                   help=f"workloads to run (default: every available one): {', '.join(W.WORKLOADS)}")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for every library (default: all cores)")
    p.add_argument("--rounds", type=int, default=None, help="alternating timed rounds per workload (default 6; smoke 1)")
    p.add_argument("--steps", type=int, default=0, help="steps per timed block (default: about 0.3 s worth)")
    p.add_argument("--pause", type=float, default=None, help="seconds of idle before each timed block (default 0.5)")
    p.add_argument("--json", metavar="PATH", help="write every result as JSON to PATH")
    p.add_argument("--smoke", action="store_true",
                   help="quick CI run: every available workload for a few steps, checks finite numbers")
    p.add_argument("--torch", action="store_true", help="with --smoke: also run PyTorch (off by default in smoke mode)")
    p.add_argument("--no-torch", action="store_true", help="do not run PyTorch even if it is installed")
    p.add_argument("--no-startup", action="store_true", help="skip the cold/warm start-up measurements")
    p.add_argument("--no-train-startup", dest="train_startup", action="store_false",
                   help="skip timing `nnjit train --epochs 1` (the mlp start-up is still timed)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    p.add_argument("--memory-steps", type=int, default=50, help="steps of the peak-memory run (default 50)")
    p.add_argument("--check", action="store_true", help="fail when a ratio falls below the baseline by more than the tolerance")
    p.add_argument("--baseline", default=DEFAULT_BASELINE, help="baseline file for --check (default perf/baseline.json)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="allowed relative drop below the baseline (default: the baseline file's, else 0.30)")
    p.add_argument("--write-baseline", metavar="PATH", help="write this run's ratios as a baseline file")
    p.add_argument("--profile", metavar="WORKLOAD", help="print nnjit's per-layer profile of WORKLOAD (model.profile) and exit")
    p.add_argument("--inject-delay", action="append", metavar="WORKLOAD=SECONDS", default=[],
                   help=argparse.SUPPRESS)  # testing the gate: a busy wait added to each nnjit step
    p.add_argument("--warmup-steps", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--warmup-s", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-sgemm", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-dense", action="store_true", help="skip the fused-dense-kernel vs sgemm measurement")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(argv) if argv is not None else sys.argv[1:]
    if argv[:1] == ["--"]:  # `nnjit bench -- --smoke`: the CLI passes the separator through
        argv = argv[1:]
    args = parser.parse_args(argv)
    try:
        args.inject_delay = _parse_delay(args.inject_delay)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    smoke = args.smoke
    args.rounds = args.rounds or (1 if smoke else 6)
    args.pause = args.pause if args.pause is not None else (0.0 if smoke else 0.5)
    args.steps = args.steps or (3 if smoke else 0)
    args.warmup_steps = args.warmup_steps if args.warmup_steps is not None else (1 if smoke else 10)
    args.warmup_s = args.warmup_s if args.warmup_s is not None else (0.0 if smoke else 1.0)
    args.dense_rounds, args.dense_reps = (1, 5) if smoke else (11, 150)
    if args.threads < 1 or args.rounds < 1 or args.steps < 0 or args.pause < 0:
        parser.error("--threads and --rounds must be >= 1, --steps and --pause >= 0")

    def log(msg):
        print(msg, file=sys.stderr if args.json == "-" else sys.stdout, flush=True)

    unknown = [w for w in args.workloads if w not in W.WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; expected some of {list(W.WORKLOADS)}")

    if args.profile:
        if args.profile not in W.WORKLOADS:
            parser.error(f"--profile: unknown workload {args.profile!r}; expected one of {list(W.WORKLOADS)}")
        return subprocess.call([sys.executable, "-m", "perf.worker", "--profile", args.profile,
                                "--threads", str(args.threads)], cwd=ROOT, env=child_env("nnjit", args.threads))

    try:
        import nnjit  # noqa: F401  (only names are looked up here; no kernel runs in this process)
    except Exception as exc:  # noqa: BLE001
        print(f"nnjit bench: cannot import nnjit: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2

    requested = args.workloads or list(W.WORKLOADS)
    wls, unavailable = [], {}
    for wid in requested:
        wl = W.WORKLOADS[wid]
        try:
            missing = wl.missing_nnjit()
        except Exception as exc:  # noqa: BLE001
            missing = [f"an importable nnjit ({type(exc).__name__}: {exc})"]
        if missing:
            unavailable[wid] = missing
        else:
            wls.append(wl)

    have_torch = torch_installed()
    use_torch = have_torch and not args.no_torch and (args.torch or not smoke)
    notes = []
    if not have_torch and not args.no_torch and not smoke:
        notes.append("PyTorch is not installed: nnjit only, no ratios (pip install torch==2.13.0).")
    if args.check and not use_torch:
        print("nnjit bench --check: needs PyTorch ratios; install torch and do not pass --no-torch/--smoke",
              file=sys.stderr)
        return 2

    report = {"meta": {"date": datetime.datetime.now().isoformat(timespec="seconds"), "argv": argv,
                       "threads": args.threads, "rounds": args.rounds, "pause_s": args.pause,
                       "cpu_count": os.cpu_count(), "machine": platform.machine(),
                       "python": platform.python_version(), "smoke": smoke, "torch": use_torch,
                       "inject_delay": args.inject_delay},
              "workloads": {}, "unavailable": unavailable, "notes": notes}
    failures = []
    t_start = time.perf_counter()
    load = ForeignLoad()
    try:
        sg_n, sg_reps = (256, 3) if smoke else (1024, 15)
        if not args.no_sgemm:
            log(f"sgemm {sg_n}^3 with {args.threads} BLAS threads ...")
            sg1 = measure_sgemm(args.threads, sg_n, sg_reps)
            report["sgemm"] = {"n": sg_n, "gflops_start": sg1["gflops"], "blas": sg1.get("blas"),
                               "times_start": sg1["times"]}
        if not args.no_dense:
            log("fused dense kernel vs plain sgemm at batch 128 ...")
            report["dense_kernel"] = measure_dense_kernel(args, (report.get("sgemm") or {}).get("gflops_start"))
        if wls:
            log(f"workloads ({'nnjit and PyTorch' if use_torch else 'nnjit only'}, {args.threads} threads):")
            errors = {}
            report["workloads"] = run_workloads(wls, args, use_torch, log, errors)
            if errors:
                report["errors"] = errors
                failures += [f"{wid}: {msg}" for wid, msg in errors.items()]
        if not args.no_sgemm:
            times = report["sgemm"].pop("times_start")
            if not smoke:
                sg2 = measure_sgemm(args.threads, sg_n, sg_reps)
                report["sgemm"]["gflops_end"] = sg2["gflops"]
                times = times + sg2["times"]
            # The machine's limit: the better of the two medians (a busy machine only lowers it).
            best = max(report["sgemm"]["gflops_start"], report["sgemm"].get("gflops_end", 0.0))
            report["sgemm"].update({"reps_total": len(times), "median_ms": W.gemm_flops(sg_n, sg_n, sg_n) / best / 1e6,
                                    "gflops": best})
            if report.get("dense_kernel"):
                report["dense_kernel"]["efficiency_pct"] = 100.0 * report["dense_kernel"]["fused_gflops"] / report["sgemm"]["gflops"]
            for r in report["workloads"].values():
                r["nnjit"]["efficiency_pct"] = 100.0 * r["nnjit"]["gflops"] / report["sgemm"]["gflops"]
        if not smoke and not args.no_startup:
            log("start-up (new processes, fresh and reused NUMBA_CACHE_DIR):")
            report["startup"] = measure_startup(args, log)
        if not smoke and not args.no_memory and wls:
            log(f"peak memory ({args.memory_steps} steps per workload, one process each):")
            report["memory"] = measure_memory(wls, args, use_torch, log)
    except BenchError as exc:
        failures.append(str(exc))
        print(f"nnjit bench: {exc}", file=sys.stderr)
    report["meta"]["seconds"] = time.perf_counter() - t_start
    report["meta"]["foreign_load_cores"] = load.cores()
    fl = report["meta"]["foreign_load_cores"]
    if fl is not None and fl > 0.15 and not smoke:
        notes.append(f"WARNING: other processes kept {fl:.2f} cores busy on average during this run "
                     f"({os.cpu_count()} cores); timings of parallel code are unreliable, re-run on an idle machine.")

    for wid, r in report["workloads"].items():
        for lib in ("nnjit", "torch"):
            if lib in r and not r[lib]["finite"]:
                failures.append(f"{wid}: {lib} produced a non-finite loss or output")
    bad = _finite_numbers({k: v for k, v in report.items() if k in ("workloads", "sgemm", "dense_kernel")})
    if bad:
        failures.append("non-finite numbers in the results: " + ", ".join(bad[:10]))
    dk = report.get("dense_kernel")
    if dk and (not dk["finite"] or dk["max_rel_error"] > 1e-3):
        failures.append(f"fused dense kernel disagrees with NumPy (max relative error {dk['max_rel_error']:.2e})")

    print(format_report(report), file=sys.stderr if args.json == "-" else sys.stdout, flush=True)

    code = 0
    if args.check and not failures:
        try:
            baseline = load_baseline(args.baseline)
        except (OSError, json.JSONDecodeError) as exc:
            print(f"nnjit bench --check: cannot read the baseline {args.baseline}: {exc}", file=sys.stderr)
            return 2
        passed, lines = check(report, baseline, args.tolerance)
        report["check"] = {"baseline": args.baseline, "tolerance": args.tolerance, "passed": passed, "lines": lines}
        how = (f"tolerance {args.tolerance:.0%}" if args.tolerance is not None
               else "per-workload tolerances from the baseline file")
        print("\n" + f"regression check against {os.path.relpath(args.baseline)} ({how}):")
        for line in lines:
            print("  " + line)
        print("nnjit bench --check: " + ("PASSED" if passed else "FAILED"), flush=True)
        if not passed:
            code = 1
    if args.write_baseline and report["workloads"]:
        tol = args.tolerance if args.tolerance is not None else DEFAULT_TOLERANCE
        with open(args.write_baseline, "w") as f:
            json.dump(baseline_from(report, tol), f, indent=2)
            f.write("\n")
        log(f"baseline written to {args.write_baseline}")

    if failures:
        report["failures"] = failures
        for f_ in failures:
            print(f"nnjit bench: FAILED: {f_}", file=sys.stderr)
        code = 1
    elif smoke:
        print(f"nnjit bench --smoke: {len(report['workloads'])} workloads ran, all numbers finite "
              f"({report['meta']['seconds']:.1f} s)")
    if args.json:
        text = json.dumps(report, indent=1, default=str)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
