"""Concurrency: inference from several Python threads at once, and several processes
compiling into one fresh kernel cache at once.

Every kernel holds the GIL while it runs (none is compiled with ``nogil``), so two
threads never run kernels at the same time; what can go wrong is Python-side state
shared between calls (workspaces, lazily built buffers) changing under another
thread between two kernel calls.  The switch interval is lowered during the threaded
runs so that the interpreter changes threads far more often than it normally would.
"""
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import nnjit as nj
from nnjit.layers import (LSTM, Add, Conv2D, Dense, Flatten, GlobalAvgPool1D, MaxPool2D,
                          BatchNormalization, TransformerEncoder)

THREADS = 4


def _thread_safe_layer():
    from nnjit.kernels.activations import activation_forward

    activation_forward(np.zeros((512, 512), np.float32), 1, 2)  # start the pool
    return nj.runtime.threading_layer() in ("omp", "tbb")


# Numba's workqueue layer aborts the process when two threads launch parallel kernels
# at once (parallel kernels release the GIL); only omp and tbb allow it.
pytestmark = pytest.mark.skipif(not _thread_safe_layer(), reason="Numba's workqueue threading layer is not thread-safe")
CALLS = 20


def _x(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _mlp():
    nj.set_seed(0)
    return nj.Sequential([nj.Input((64,)), Dense(128, activation="relu"), Dense(64, activation="tanh"),
                          Dense(10, activation="softmax")])


def _cnn():
    nj.set_seed(1)
    return nj.Sequential([nj.Input((3, 12, 12)), Conv2D(8, 3, padding="same", activation="relu"),
                          BatchNormalization(), MaxPool2D(2), Conv2D(8, 3, activation="relu"), Flatten(),
                          Dense(5)])


def _functional():
    nj.set_seed(2)
    inp = nj.Input((32,))
    a = Dense(48, activation="relu")(inp)
    b = Dense(48, activation="gelu")(inp)
    out = Dense(6)(Add()([a, b]))
    return nj.Model(inp, out)


def _lstm():
    nj.set_seed(3)
    return nj.Sequential([nj.Input((7, 5)), LSTM(16, return_sequences=True), LSTM(12), Dense(3)])


def _transformer():
    nj.set_seed(4)
    return nj.Sequential([nj.Input((6, 16)), TransformerEncoder(2, 32, dropout=0.1), GlobalAvgPool1D(), Dense(4)])


MODELS = {
    "mlp": (_mlp, (64,)),
    "cnn": (_cnn, (3, 12, 12)),
    "functional": (_functional, (32,)),
    "lstm": (_lstm, (7, 5)),
    "transformer": (_transformer, (6, 16)),
}


@pytest.fixture
def fast_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _run_threads(work):
    """Run ``work(thread_index)`` on THREADS threads started together; re-raise the
    first exception any of them raised."""
    barrier = threading.Barrier(THREADS)
    errors = []

    def target(i):
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_threads_give_bitwise_single_threaded_results(kind, fast_switching):
    make, shape = MODELS[kind]
    model = make()
    # Several input sizes per thread: large batches take the parallel kernels (which
    # release the GIL, so two of them can run at once), small ones the serial path, and
    # predict's batching leaves a shorter last batch; pairs of threads ask for workspaces
    # of the same size at the same time, the others for different sizes.
    inputs = [_x((n,) + shape, seed=10 + n) for n in (1, 5, 70, 300)]
    expected_predict = [model.predict(x, batch_size=64) for x in inputs]
    expected_call = [model(x) for x in inputs]
    results = [[] for _ in range(THREADS)]

    def work(i):
        for k in range(CALLS):
            j = (i // 2 + k) % len(inputs)  # threads 0 and 1 (2 and 3) run the same input at once
            if k % 2:
                results[i].append((j, "predict", model.predict(inputs[j], batch_size=64)))
            else:
                results[i].append((j, "call", model(inputs[j])))

    _run_threads(work)
    for per_thread in results:
        assert len(per_thread) == CALLS
        for j, how, y in per_thread:
            want = expected_predict[j] if how == "predict" else expected_call[j]
            assert y.dtype == want.dtype and y.shape == want.shape
            assert np.array_equal(y, want), f"{kind}: {how} on input {j} differs from the single-threaded result"


def test_threads_on_a_model_never_called_before(fast_switching):
    """The first calls build the flat parameter buffers and the fused runner lazily;
    several threads doing that at once must still agree with one thread."""
    x = _x((200, 64), seed=5)
    # predict runs batches of 32 rows, model(x) all 200 at once: the kernels block the
    # rows differently, so the two agree to rounding only and are compared separately.
    reference = _mlp()
    want = {"predict": reference.predict(x), "call": reference(x)}
    for _ in range(10):
        model = _mlp()
        results = [None] * THREADS

        def work(i):
            results[i] = ("predict", model.predict(x)) if i % 2 else ("call", model(x))

        _run_threads(work)
        for how, y in results:
            assert np.array_equal(y, want[how]), how


def test_threads_each_training_their_own_model():
    """Separate models trained on separate threads do not disturb one another (the
    random generator is process-wide, so the models are made on the main thread and
    trained with shuffle=False and no dropout)."""
    x = _x((256, 64), seed=6)
    y = np.random.default_rng(7).integers(0, 10, 256)

    def make():  # on the main thread: set_seed and the initializers use the shared generator
        model = _mlp()
        model.compile(nj.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
        return model

    def train(model):
        model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
        return model.get_weights()

    want = train(make())
    models = [make() for _ in range(THREADS)]
    results = [None] * THREADS

    def work(i):
        results[i] = train(models[i])

    _run_threads(work)
    for weights in results:
        assert all(np.array_equal(a, b) for a, b in zip(weights, want))


# ------------------------------------------------------------------ kernel cache
_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import nnjit as nj
    from nnjit.layers import Dense

    nj.set_seed(0)
    nj.set_num_threads(1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 8)).astype(np.float32)
    y = (x[:, :3].sum(axis=1) > 0).astype(np.int64) + (x[:, 3] > 0)
    model = nj.Sequential([nj.Input((8,)), Dense(16, activation="relu"), Dense(3, activation="softmax")])
    model.compile(nj.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
    pred = model.predict(x)

    # Which nnjit kernels this process compiled, and which it loaded from the cache.
    import numba
    from numba.core.registry import CPUDispatcher
    hits = misses = 0
    for name, mod in list(sys.modules.items()):
        if not name.startswith("nnjit.kernels"):
            continue
        for obj in vars(mod).values():
            if isinstance(obj, CPUDispatcher) and obj.signatures:
                hits += sum(obj.stats.cache_hits.values())
                misses += sum(obj.stats.cache_misses.values())
    import nnjit.runtime as rt
    print(json.dumps({"loss": history.history["loss"], "pred": pred.tolist(), "hits": hits,
                      "misses": misses, "cache": str(rt.CACHE_DIR)}))
""")


def _start(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), PYTHONHASHSEED="0")
    return subprocess.Popen([sys.executable, "-c", _SCRIPT], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"process failed ({proc.returncode}):\n{err[-3000:]}"
    import json

    return json.loads(out.strip().splitlines()[-1])


def test_two_processes_compile_into_one_fresh_cache(tmp_path):
    cache = tmp_path / "kernel-cache"
    cache.mkdir()
    first, second = _start(cache), _start(cache)
    a, b = _finish(first), _finish(second)
    for r in (a, b):
        assert r["cache"] == str(cache)
        assert r["misses"] > 0  # something was compiled (the cache was empty)
    assert a["loss"] == b["loss"]
    assert a["pred"] == b["pred"]
    assert any(cache.rglob("*.nbi")) and any(cache.rglob("*.nbc"))

    third = _finish(_start(cache))
    assert third["misses"] == 0, "the third process compiled kernels instead of loading them"
    assert third["hits"] > 0
    assert third["loss"] == a["loss"]
    assert third["pred"] == a["pred"]
    probs = np.array(third["pred"])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert third["loss"][-1] < third["loss"][0]
