"""The benchmark suite runs and produces finite numbers (no timing assertions: speed is
measured by `nnjit bench`, never asserted in the test suite; see perf/README.md)."""
import json
import math
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from perf import suite, workloads  # noqa: E402


def _all_finite(obj):
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_all_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_all_finite(v) for v in obj)
    return True


def test_smoke_runs_and_numbers_are_finite(tmp_path):
    out = tmp_path / "bench.json"
    code = suite.main(["--smoke", "--no-torch", "mlp", "mlp-narrow", "mlp-b1-infer", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report["workloads"]) == {"mlp", "mlp-narrow", "mlp-b1-infer"}
    for wid, r in report["workloads"].items():
        n = r["nnjit"]
        assert n["finite"], wid
        assert n["steps"] >= 1
        for key in ("median_ms", "gflops", "samples_per_s", "efficiency_pct"):
            assert math.isfinite(n[key]) and n[key] > 0, (wid, key, n[key])
    dk = report["dense_kernel"]
    assert dk["finite"] and dk["max_rel_error"] < 1e-3
    assert math.isfinite(dk["percent_of_sgemm"]) and dk["percent_of_sgemm"] > 0
    assert report["sgemm"]["gflops"] > 0
    assert _all_finite({k: report[k] for k in ("workloads", "sgemm", "dense_kernel")})


def test_smoke_covers_every_available_workload(tmp_path):
    out = tmp_path / "bench.json"
    code = suite.main(["--smoke", "--no-torch", "--no-dense", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    ran, missing = set(report["workloads"]), set(report["unavailable"])
    assert ran | missing == set(workloads.WORKLOADS)
    assert not ran & missing
    assert {"mlp", "mlp-narrow", "mlp-b1-infer"} <= ran
    assert _all_finite(report["workloads"])


def test_flop_counts_follow_the_stated_convention():
    mlp = workloads.get("mlp")
    assert mlp.forward_flops == 2 * 128 * (784 * 256 + 256 * 256 + 256 * 10)
    assert mlp.flops == 3 * mlp.forward_flops
    b1 = workloads.get("mlp-b1-infer")
    assert b1.flops == b1.forward_flops == 2 * (784 * 256 + 256 * 256 + 256 * 10)
    for w in workloads.WORKLOADS.values():
        assert w.flops > 0 and w.batch >= 1


def _report(ratios, dense_pct=95.0):
    return {"workloads": {wid: {"ratio": r, "nnjit": {"median_ms": 1.0}, "torch": {"median_ms": r}}
                          for wid, r in ratios.items()},
            "dense_kernel": {"percent_of_sgemm": dense_pct}}


def test_check_fails_below_the_floor_and_names_the_workload():
    baseline = {"ratios": {"mlp": 2.0, "mlp-narrow": 4.0}, "dense_kernel_pct": 90.0}
    ok, lines = suite.check(_report({"mlp": 1.9, "mlp-narrow": 4.1}), baseline, 0.2)
    assert ok, lines
    ok, lines = suite.check(_report({"mlp": 1.5, "mlp-narrow": 4.1}), baseline, 0.2)
    assert not ok
    assert any(line.startswith("FAIL mlp:") for line in lines)
    assert not any(line.startswith("FAIL mlp-narrow") for line in lines)
    ok, lines = suite.check(_report({"mlp": 2.0, "mlp-narrow": 4.0}, dense_pct=50.0), baseline, 0.2)
    assert not ok and any("dense kernel" in line for line in lines if line.startswith("FAIL"))


@pytest.mark.skipif(not suite.torch_installed(), reason="PyTorch is not installed")
@pytest.mark.skipif(os.environ.get("NNJIT_PERF_GATE_TEST") != "1",
                    reason="measures real speed for ~30 s; set NNJIT_PERF_GATE_TEST=1 to run")
def test_check_fails_on_an_injected_slowdown(tmp_path):
    # A baseline from this machine, then the same workload with 20 ms of busy waiting added to
    # every nnjit step: the ratio drops by far more than any tolerance, so --check must fail.
    base = tmp_path / "baseline.json"
    args = ["mlp-narrow", "--no-startup", "--no-memory", "--no-dense", "--rounds", "2", "--steps", "30"]
    assert suite.main(args + ["--write-baseline", str(base)]) == 0
    assert suite.main(args + ["--check", "--baseline", str(base)]) == 0
    assert suite.main(args + ["--check", "--baseline", str(base), "--inject-delay", "mlp-narrow=0.02"]) == 1
