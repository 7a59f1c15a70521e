"""Faults during training and saving.

- A NaN or infinite loss makes ``fit`` (and ``train_on_batch``) raise a TrainingError
  that says what happened, with the weights of before the failing step; with
  ``TerminateOnNaN`` training stops quietly instead.
- An exception (KeyboardInterrupt included) raised by a callback or by the optimizer
  leaves the model usable (predict works, weights finite, fit runs again) and every
  checkpoint written before it intact and loadable, with no temporary file behind.
- A failure while saving (full disk on write, fsync, chmod or rename failing, an
  interrupt) leaves the previous file byte-identical and no temporary file behind.

``N_CASES`` counts the cases of this file.
"""
from __future__ import annotations

import errno
import os

import numpy as np
import pytest

import nnjit as nj
from nnjit.models.engine import TrainingError

L = nj.layers
CB = nj.callbacks


# ----------------------------------------------------------------------------- models
def _dense(optimizer="adam"):
    """A plain Dense stack: trained by the fused MLP kernels."""
    model = nj.Sequential([nj.Input((6,)), L.Dense(8, activation="relu"), L.Dense(3, activation="softmax")])
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _layered(optimizer="adam"):
    """Dense with a LayerNormalization in between: the layer-by-layer path."""
    model = nj.Sequential([nj.Input((6,)), L.Dense(8, activation="relu"), L.LayerNormalization(),
                           L.Dense(3, activation="softmax")])
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _functional(optimizer="adam"):
    inp = nj.Input((6,))
    h = L.Dense(8, activation="relu")(inp)
    model = nj.Model(inp, L.Dense(3, activation="softmax")(L.Dropout(0.1)(h)))
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


MODELS = {"dense": _dense, "layered": _layered, "functional": _functional}


def _data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1).astype(np.int64)


def _finite(model):
    return all(np.isfinite(w).all() for w in model.get_weights())


def _assert_usable(model, x, y):
    assert _finite(model), "weights are not finite"
    p = model.predict(x)
    assert np.isfinite(p).all()
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert _finite(model)


def _temporaries(folder):
    return [f for f in os.listdir(folder) if f.endswith(".tmp") or f.startswith(".nnjit-")]


# ----------------------------------------------------------------------------- NaN / inf loss
def _huge_learning_rate(build):
    return build(nj.optimizers.SGD(learning_rate=1e30))


def _nan_weight(build):
    # In the last layer: a NaN before a ReLU is turned into 0 (see test_relu_propagates_nan).
    model = build()
    model.layers[-1].params["kernel"][0, 0] = np.nan
    return model


def _inf_weight(build):
    model = build()
    model.layers[-1].params["bias"][1] = np.inf
    return model


FAULTS = {"huge-lr": _huge_learning_rate, "nan-weight": _nan_weight, "inf-weight": _inf_weight}
LOSS_CASES = [(m, f, t) for m in MODELS for f in FAULTS for t in (False, True)]


@pytest.mark.parametrize("model_kind, fault, terminate", LOSS_CASES,
                         ids=[f"{m}-{f}-{'terminate' if t else 'raise'}" for m, f, t in LOSS_CASES])
def test_non_finite_loss(model_kind, fault, terminate):
    nj.set_seed(0)
    x, y = _data()
    model = FAULTS[fault](MODELS[model_kind])
    injected = fault != "huge-lr"
    seen = []

    class Before(CB.Callback):  # the weights before each step
        def on_batch_begin(self, batch, logs=None):
            seen.append(self.model.get_weights())

    callbacks = [Before()] + ([CB.TerminateOnNaN()] if terminate else [])
    if terminate:
        history = model.fit(x, y, batch_size=4, epochs=5, shuffle=False, callbacks=callbacks, verbose=0)
        losses = history.history["loss"]
        assert len(losses) == 1 and not np.isfinite(losses[0])  # stopped in the first epoch, quietly
        assert model.history is history
    else:
        with pytest.raises(TrainingError, match=r"loss became (nan|inf|-inf).*TerminateOnNaN") as info:
            model.fit(x, y, batch_size=4, epochs=5, shuffle=False, callbacks=callbacks, verbose=0)
        assert isinstance(info.value, RuntimeError)
    # The failing step did not update the weights: they are those of before it.
    for a, b in zip(seen[-1], model.get_weights()):
        np.testing.assert_array_equal(a, b)
    if not injected:
        assert _finite(model)
    # train_on_batch reports the same fault in the same way
    before = model.get_weights()
    with pytest.raises(TrainingError, match="loss became"):
        model.train_on_batch(x, y)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_relu_propagates_nan():
    """ReLU keeps NaN (max(NaN, 0) is NaN): a NaN weight before a ReLU makes the loss NaN and is
    reported, rather than hidden as 0 and kept in the weights."""
    nj.set_seed(0)
    x, y = _data()
    model = _dense()
    model.layers[0].params["kernel"][0, 0] = np.nan
    with pytest.raises(TrainingError):
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)


# ----------------------------------------------------------------------------- callbacks raising
class Boom(Exception):
    pass


def _raiser(hook, kind, epoch_at, batch_at=1):
    class Raiser(CB.Callback):
        def __init__(self):
            super().__init__()
            self.epoch = -1

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            if hook == "on_epoch_begin" and epoch == epoch_at:
                raise kind("interrupted")

        def on_epoch_end(self, epoch, logs=None):
            if hook == "on_epoch_end" and epoch == epoch_at:
                raise kind("interrupted")

        def on_batch_begin(self, batch, logs=None):
            if hook == "on_batch_begin" and self.epoch == epoch_at and batch == batch_at:
                raise kind("interrupted")

        def on_batch_end(self, batch, logs=None):
            if hook == "on_batch_end" and self.epoch == epoch_at and batch == batch_at:
                raise kind("interrupted")

    return Raiser()


HOOKS = ["on_batch_begin", "on_batch_end", "on_epoch_begin", "on_epoch_end"]
KINDS = {"KeyboardInterrupt": KeyboardInterrupt, "RuntimeError": RuntimeError, "custom": Boom}
CALLBACK_CASES = [(m, h, k) for m in ("dense", "layered") for h in HOOKS for k in KINDS]
CALLBACK_CASES += [("functional", h, "KeyboardInterrupt") for h in HOOKS]


@pytest.mark.parametrize("model_kind, hook, kind", CALLBACK_CASES, ids=["-".join(c) for c in CALLBACK_CASES])
def test_exception_in_callback_leaves_model_and_checkpoints_usable(tmp_path, model_kind, hook, kind):
    nj.set_seed(1)
    x, y = _data()
    model = MODELS[model_kind]()
    every = CB.ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}.nnjit"), monitor="loss")
    last = CB.ModelCheckpoint(str(tmp_path / "last.weights"), monitor="loss", save_weights_only=True)
    log = tmp_path / "log.csv"
    csv = CB.CSVLogger(str(log))
    with pytest.raises(KINDS[kind], match="interrupted"):
        model.fit(x, y, batch_size=8, epochs=5, callbacks=[every, last, csv, _raiser(hook, KINDS[kind], 2)],
                  verbose=0)
    assert not _temporaries(tmp_path)
    # Epochs 1 and 2 ended before the exception (and epoch 3 too when it came at its end).
    written = sorted(f for f in os.listdir(tmp_path) if f.startswith("ckpt-"))
    expected = 3 if hook == "on_epoch_end" else 2
    assert written == [f"ckpt-{e:02d}.nnjit" for e in range(1, expected + 1)]
    snapshot = {f: (tmp_path / f).read_bytes() for f in written}
    for f in written:
        loaded = nj.load_model(str(tmp_path / f))
        assert np.isfinite(loaded.predict(x)).all()
        assert loaded.optimizer.iterations > 0
    # the weights-only checkpoint holds the last saved epoch
    probe = MODELS[model_kind]()
    probe.load_weights(str(tmp_path / "last.weights"))
    np.testing.assert_array_equal(probe.predict(x), nj.load_model(str(tmp_path / written[-1])).predict(x))
    assert log.read_text().count("\n") == expected + 1  # header + one row per finished epoch, file closed
    _assert_usable(model, x, y)
    for f in written:  # training again did not touch the old checkpoints
        assert (tmp_path / f).read_bytes() == snapshot[f]


def test_interrupt_inside_the_optimizer_update_keeps_the_weights(tmp_path):
    nj.set_seed(2)
    x, y = _data()
    model = _layered()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    before = model.get_weights()
    iterations = model.optimizer.iterations

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    model.optimizer.update = interrupted
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    del model.optimizer.update
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.iterations == iterations
    _assert_usable(model, x, y)


# ----------------------------------------------------------------------------- failing saves
class _FullDisk:
    """A file object that writes half of what it is given, then fails as a full disk."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()
        return False

    def write(self, data):
        self.f.write(data[:len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.f, name)


def _fail_write(monkeypatch):
    real = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _FullDisk(real(fd, *a, **k)))


def _fail(name, exc):
    def install(monkeypatch):
        def failing(*args, **kwargs):
            raise exc
        monkeypatch.setattr(os, name, failing)
    return install


def _fail_encode(monkeypatch):
    def failing(*args, **kwargs):
        raise MemoryError("no memory for the payload")
    monkeypatch.setattr(nj.io, "encode_tensors", failing)


SAVE_FAULTS = {
    "write-full-disk": (_fail_write, OSError),
    "fsync-eio": (_fail("fsync", OSError(errno.EIO, "Input/output error")), OSError),
    "chmod-eperm": (_fail("chmod", PermissionError(errno.EPERM, "Operation not permitted")), OSError),
    "replace-enospc": (_fail("replace", OSError(errno.ENOSPC, "No space left on device")), OSError),
    "replace-interrupt": (_fail("replace", KeyboardInterrupt()), KeyboardInterrupt),
    "encode-memory": (_fail_encode, MemoryError),
}
SAVE_KINDS = ["save", "save_weights", "save-no-optimizer", "checkpoint"]
SAVE_CASES = [(k, f) for k in SAVE_KINDS for f in SAVE_FAULTS]


@pytest.mark.parametrize("save_kind, fault", SAVE_CASES, ids=[f"{k}-{f}" for k, f in SAVE_CASES])
def test_failed_save_leaves_previous_file_intact(tmp_path, monkeypatch, save_kind, fault):
    nj.set_seed(3)
    x, y = _data()
    model = _dense()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / ("model.weights" if save_kind == "save_weights" else "model.nnjit"))

    def save():
        if save_kind == "save":
            model.save(path)
        elif save_kind == "save-no-optimizer":
            model.save(path, include_optimizer=False)
        elif save_kind == "save_weights":
            model.save_weights(path)
        else:
            model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[CB.ModelCheckpoint(path, monitor="loss")])

    save()
    old = open(path, "rb").read()
    old_mode = os.stat(path).st_mode
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # new weights: a new file would differ
    weights = model.get_weights()
    install, expected = SAVE_FAULTS[fault]
    with monkeypatch.context() as patch:
        install(patch)
        with pytest.raises(expected):
            save()
    assert open(path, "rb").read() == old, "the previous file was changed"
    assert os.stat(path).st_mode == old_mode
    assert not _temporaries(tmp_path), f"temporary files left: {_temporaries(tmp_path)}"
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(path)]
    if save_kind != "checkpoint":  # (the checkpoint case trained before failing)
        for a, b in zip(weights, model.get_weights()):
            np.testing.assert_array_equal(a, b)
    # the old file still loads; the model still saves once the fault is gone
    if save_kind == "save_weights":
        probe = _dense()
        probe.load_weights(path)
    else:
        assert np.isfinite(nj.load_model(path).predict(x)).all()
    save()
    assert open(path, "rb").read() != old
    assert not _temporaries(tmp_path)


def test_failed_first_save_leaves_no_file(tmp_path, monkeypatch):
    model = _dense()
    path = tmp_path / "new.nnjit"
    monkeypatch.setattr(os, "replace", _raise_enospc)
    with pytest.raises(OSError, match="No space"):
        model.save(str(path))
    assert os.listdir(tmp_path) == []


def _raise_enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


N_CASES = len(LOSS_CASES) + 1 + len(CALLBACK_CASES) + 1 + len(SAVE_CASES) + 1
