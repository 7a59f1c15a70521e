"""Memory: long training loops do not grow the process (RSS) or the Python heap."""
import gc
import os
import tracemalloc

import numpy as np
import pytest

import nnjit as nj
from nnjit.layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPool2D

RSS_LIMIT = 20 * 2 ** 20      # bytes the process may grow by over the measured loop
PY_LIMIT = 2 * 2 ** 20        # bytes of Python objects (tracemalloc) it may keep


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")


def _mlp():
    nj.set_seed(0)
    model = nj.Sequential([nj.Input((64,)), Dense(128, activation="relu"), Dropout(0.1),
                           Dense(64, activation="relu"), Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    return model, rng.standard_normal((512, 64)).astype(np.float32), rng.integers(0, 10, 512)


def _fused_mlp():
    nj.set_seed(0)
    model = nj.Sequential([nj.Input((64,)), Dense(128, activation="relu"), Dense(10, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(1)
    return model, rng.standard_normal((512, 64)).astype(np.float32), rng.integers(0, 10, 512)


def _cnn():
    nj.set_seed(0)
    model = nj.Sequential([nj.Input((1, 10, 10)), Conv2D(8, 3, padding="same", activation="relu"),
                           BatchNormalization(), MaxPool2D(2), Flatten(), Dense(4, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(2)
    return model, rng.standard_normal((128, 1, 10, 10)).astype(np.float32), rng.integers(0, 4, 128)


def _measure(loop, repeats):
    loop()  # warm-up: kernels loaded, workspaces and optimizer state allocated
    loop()
    gc.collect()
    rss0 = _rss()
    tracemalloc.start()
    try:
        snap0 = tracemalloc.take_snapshot()
        for _ in range(repeats):
            loop()
        gc.collect()
        snap1 = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    rss1 = _rss()
    growth = sum(s.size_diff for s in snap1.compare_to(snap0, "filename"))
    return rss1 - rss0, growth


@pytest.mark.parametrize("make", [_mlp, _fused_mlp, _cnn], ids=["mlp", "fused-mlp", "cnn"])
def test_train_on_batch_loop_does_not_grow(make):
    model, x, y = make()

    def loop():
        for i in range(0, x.shape[0], 32):
            model.train_on_batch(x[i:i + 32], y[i:i + 32])
        model.predict(x[:64])

    rss, py = _measure(loop, 50)  # 800 steps
    assert rss < RSS_LIMIT, f"RSS grew by {rss / 2**20:.1f} MB"
    assert py < PY_LIMIT, f"Python objects grew by {py / 2**20:.2f} MB"


@pytest.mark.parametrize("make", [_mlp, _cnn], ids=["mlp", "cnn"])
def test_fit_epochs_do_not_grow(make):
    model, x, y = make()

    def loop():
        model.fit(x, y, batch_size=32, epochs=2, validation_split=0.1, verbose=0)
        model.evaluate(x, y)

    rss, py = _measure(loop, 15)  # 30 epochs
    assert rss < RSS_LIMIT, f"RSS grew by {rss / 2**20:.1f} MB"
    assert py < PY_LIMIT, f"Python objects grew by {py / 2**20:.2f} MB"
