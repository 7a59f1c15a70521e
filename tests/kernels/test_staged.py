"""The claim-based staged loop (nnjit/kernels/staged.py): every part of every stage runs exactly
once, after every part of the stage before it, for any number of workers run in parallel or one
after the other (the case a barrier per stage would hang on)."""
import numpy as np
import pytest
from numba import njit, prange

from nnjit.kernels.staged import claim, new_state, publish, wait_stage


@njit(cache=True)
def _worker(me, state, out, runs, nparts):
    # Part p of stage s records 1 + the sum of the stage before: correct only if every part
    # of that stage was complete (and visible) when it ran.
    for s in range(out.shape[0]):
        for q in range(nparts):
            p = (me + q) % nparts
            if claim(state, s, p, nparts):
                prev = 0
                if s > 0:
                    for j in range(nparts):
                        prev += out[s - 1, j]
                out[s, p] = prev + 1
                runs[s, p] += 1
                publish(state, s, p, nparts)
        wait_stage(state, s, nparts)


@njit(cache=True, parallel=True)
def _parallel(nstages, nparts, nworkers):
    out = np.zeros((nstages, nparts), dtype=np.int64)
    runs = np.zeros((nstages, nparts), dtype=np.int64)
    state = new_state(nstages, nparts)
    for me in prange(nworkers):
        _worker(me, state, out, runs, nparts)
    return out, runs


@njit(cache=True)
def _one_after_another(nstages, nparts, nworkers):
    out = np.zeros((nstages, nparts), dtype=np.int64)
    runs = np.zeros((nstages, nparts), dtype=np.int64)
    state = new_state(nstages, nparts)
    for me in range(nworkers):
        _worker(me, state, out, runs, nparts)
    return out, runs


def _expected(nstages, nparts):
    out = np.zeros((nstages, nparts), dtype=np.int64)
    prev = 0
    for s in range(nstages):
        out[s] = prev + 1
        prev = int(out[s].sum())
    return out


@pytest.mark.parametrize("nparts, nworkers", [(1, 1), (1, 2), (2, 2), (3, 2), (2, 5), (4, 4)])
@pytest.mark.parametrize("run", [_parallel, _one_after_another], ids=["parallel", "one-after-another"])
def test_every_part_runs_once_after_the_stage_before(run, nparts, nworkers):
    nstages = 300
    out, runs = run(nstages, nparts, nworkers)
    np.testing.assert_array_equal(runs, np.ones((nstages, nparts), dtype=np.int64))
    np.testing.assert_array_equal(out, _expected(nstages, nparts))


def test_state_layout():
    state = new_state(3, 2)
    assert state.dtype == np.int64 and state.shape == (12,) and not state.any()
    assert claim(state, 1, 1, 2) and not claim(state, 1, 1, 2)
    publish(state, 2, 0, 2)
    assert state.tolist() == [0, 0, 0, 2, 0, 0] + [0, 0, 0, 0, 1, 0]
