"""Measure run-to-run noise of the ratios, to derive the --check tolerance (perf/README.md).

    python -m perf.noise [WORKLOAD ...] [--runs 4] [--rounds N] [--json PATH] [--write-baseline PATH]
                         [--keep-runs DIR]

Runs ``nnjit bench`` (no start-up, no memory) ``--runs`` times, each a complete, independent run
with fresh worker processes, and reports per workload the median ratio over the runs, the largest
relative drop of a run's ratio below that median and the full range (max - min) / median.  The
suggested tolerance per workload is twice the largest drop, but at least the full range and at
least 10 %, rounded up to 5 %: a regression gate should only fire on a drop well outside what an
unchanged tree produces (the range term matters for bimodal workloads, where four runs give an
unstable median).

    python -m perf.noise --from NOISE_JSON --write-baseline PATH

re-derives the tolerances and the baseline from the ratios a previous run saved with --json.
``--keep-runs DIR`` keeps every run's complete ``nnjit bench --json`` report as DIR/run-K.json
(milliseconds, spreads and the dense-kernel figures of each run, not only the ratios).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile

from . import suite

FLOOR = 0.10
FACTOR = 2.0


def suggest(ratios: list[float]) -> dict:
    med = statistics.median(ratios)
    drop = max(0.0, max((med - r) / med for r in ratios))
    rise = max(0.0, max((r - med) / med for r in ratios))
    spread = (max(ratios) - min(ratios)) / med
    tol = max(FLOOR, math.ceil(round(max(FACTOR * drop, spread) * 20, 6)) / 20)
    return {"ratios": ratios, "median": med, "max_drop": drop, "max_rise": rise, "range": spread,
            "tolerance": tol}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.noise")
    p.add_argument("workloads", nargs="*")
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--rounds", type=int, help="alternating timed rounds per workload in each run "
                                               "(default: nnjit bench's)")
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--keep-runs", metavar="DIR", help="keep each run's full report as DIR/run-K.json")
    p.add_argument("--write-baseline", metavar="PATH")
    p.add_argument("--from", dest="from_json", metavar="NOISE_JSON",
                   help="re-analyze the ratios saved by an earlier --json instead of running")
    a = p.parse_args(argv)
    if a.from_json:
        with open(a.from_json) as f:
            old = json.load(f)
        out = {k: old.get(k) for k in ("runs", "measured", "threads", "foreign_load_cores")}
        out["workloads"] = {wid: {**w, **suggest(w["ratios"])} for wid, w in old["workloads"].items()}
        out["dense_kernel"] = suggest(old["dense_kernel"]["ratios"]) if old.get("dense_kernel") else None
        return report(out, a)
    if a.runs < 1:
        p.error(f"--runs: expected a positive number of runs. Received: {a.runs}")
    if a.rounds is not None and a.rounds < 1:
        p.error(f"--rounds: expected a positive number of rounds. Received: {a.rounds}")
    if a.keep_runs:
        os.makedirs(a.keep_runs, exist_ok=True)
    extra = ["--rounds", str(a.rounds)] if a.rounds is not None else []
    runs = []
    for i in range(a.runs):
        if a.keep_runs:
            path = os.path.join(a.keep_runs, f"run-{i + 1}.json")
        else:
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
                path = f.name
        print(f"--- run {i + 1}/{a.runs}", flush=True)
        code = suite.main(list(a.workloads) + ["--no-startup", "--no-memory", "--json", path] + extra)
        with open(path) as f:
            runs.append(json.load(f))
        if not a.keep_runs:
            os.unlink(path)
        if code != 0:
            print(f"run {i + 1} failed (exit {code})", file=sys.stderr)
            return code
    out = {"runs": len(runs), "measured": runs[-1]["meta"]["date"], "threads": runs[-1]["meta"]["threads"],
           "workloads": {}, "dense_kernel": None,
           "foreign_load_cores": [r["meta"].get("foreign_load_cores") for r in runs],
           "foreign_load_cores_per_workload": {
               wid: [r["workloads"][wid].get("foreign_load_cores") for r in runs] for wid in runs[0]["workloads"]}}
    for wid in runs[0]["workloads"]:
        ratios = [r["workloads"][wid]["ratio"] for r in runs if "ratio" in r["workloads"].get(wid, {})]
        if ratios:
            s = suggest(ratios)
            s["round_ratio_min"] = min(min(r["workloads"][wid]["round_ratios"]) for r in runs)
            s["round_ratio_max"] = max(max(r["workloads"][wid]["round_ratios"]) for r in runs)
            out["workloads"][wid] = s
    dks = [r["dense_kernel"]["percent_of_sgemm"] for r in runs if r.get("dense_kernel")]
    if dks:
        out["dense_kernel"] = suggest(dks)
    return report(out, a)


def report(out: dict, a) -> int:
    dks = out.get("dense_kernel")
    print("\nrun-to-run noise of the ratio torch_ms / nnjit_ms:")
    print(f"{'workload':14s} {'runs':>30s} {'median':>7s} {'max drop':>9s} {'max rise':>9s} {'range':>7s} {'tolerance':>9s}")
    for wid, s in list(out["workloads"].items()) + ([("dense %", out["dense_kernel"])] if dks else []):
        runs_s = " ".join(f"{r:.2f}" if r < 10 else f"{r:.0f}" for r in s["ratios"])
        print(f"{wid:14s} {runs_s:>30s} {s['median']:7.2f} {s['max_drop']:9.1%} {s['max_rise']:9.1%} "
              f"{s['range']:7.1%} {s['tolerance']:9.0%}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    if a.write_baseline:
        tol = max(s["tolerance"] for s in out["workloads"].values())
        base = {
            "comment": "Median ratios torch_ms / nnjit_ms over several independent `nnjit bench` runs "
                       "(python -m perf.noise); tolerances from the measured run-to-run noise, see perf/README.md.",
            "measured": out.get("measured"),
            "threads": out.get("threads"),
            "runs": out.get("runs"),
            "tolerance": tol,
            "tolerances": {wid: s["tolerance"] for wid, s in out["workloads"].items()},
            "ratios": {wid: round(s["median"], 3) for wid, s in out["workloads"].items()},
            "dense_kernel_pct": round(dks["median"], 1) if dks else None,
            "dense_kernel_tolerance": dks["tolerance"] if dks else None,
            "noise": {wid: {"ratios": [round(r, 3) for r in s["ratios"]], "max_drop": round(s["max_drop"], 3),
                            "range": round(s["range"], 3)}
                      for wid, s in list(out["workloads"].items()) + ([("dense_kernel_pct", dks)] if dks else [])},
            "foreign_load_cores": out.get("foreign_load_cores"),
        }
        with open(a.write_baseline, "w") as f:
            json.dump(base, f, indent=2)
            f.write("\n")
        print(f"baseline written to {a.write_baseline}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
