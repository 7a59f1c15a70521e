"""The nnjit performance suite (``nnjit bench``): PERF.md's workloads, side by side with PyTorch.

Layout:
    workloads.py  the registry: batch size, FLOP count and model builders for nnjit and PyTorch
    worker.py     one process per library, driven over JSON lines on stdin/stdout
    suite.py      ``main(argv)``: orchestration, statistics, table, JSON, --check, --smoke, --profile

Nothing here imports nnjit, NumPy or torch at import time: each worker process imports only
the library it measures (PERF.md, trap 1).
"""
