"""The fused path of Sequential models made of Dense layers against the layer-by-layer path.

Every test builds the same model twice from one seed, one with the fused kernels
(``fuse_dense_stack``, the default) and one without, and compares losses, predictions,
gradients and updated weights over several steps.
"""
import numpy as np
import pytest

import nnjit as nj
from nnjit import runtime
from nnjit.layers import Dense, Dropout
from nnjit.models.engine import TrainingError

TOL = {"float64": dict(rtol=1e-9, atol=1e-11), "float32": dict(rtol=2e-4, atol=2e-5)}


@pytest.fixture(autouse=True)
def _restore_runtime():
    floatx, threads = runtime.floatx(), runtime.get_num_threads()
    yield
    runtime.set_floatx(floatx)
    runtime.set_num_threads(threads)


@pytest.fixture(params=[1, 2], ids=["nblocks1", "nblocks2"])
def nblocks(request, monkeypatch):
    """Run serially (one block), or force every kernel onto the threaded path."""
    if request.param == 1:
        runtime.set_num_threads(1)
    else:
        runtime.set_num_threads(min(2, nj.runtime.numba.config.NUMBA_NUM_THREADS))
        monkeypatch.setattr(runtime, "PARALLEL_MIN_WORK", 0)
    return request.param


def _model(fused, layers_fn, n_in, loss="sparse_categorical_crossentropy", optimizer="adam", dtype="float32",
           seed=0):
    runtime.set_floatx(dtype)
    nj.set_seed(seed)
    model = nj.Sequential([nj.Input((n_in,))] + layers_fn())
    model.fuse_dense_stack = fused
    model.compile(optimizer() if callable(optimizer) else optimizer, loss)
    return model


def _data(n, n_in, classes, loss, dtype, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_in)).astype(dtype)
    if loss in ("sparse_categorical_crossentropy",) or getattr(loss, "name", "") == "sparse_categorical_crossentropy":
        y = rng.integers(0, classes, n)
    elif "categorical" in str(getattr(loss, "name", loss)):
        y = np.eye(classes)[rng.integers(0, classes, n)]
    elif "binary" in str(getattr(loss, "name", loss)):
        y = (rng.random((n, classes)) > 0.5).astype(float)
    else:
        y = rng.standard_normal((n, classes))
    return x, y


def _compare(layers_fn, n_in, classes, loss="sparse_categorical_crossentropy", optimizer="adam", dtype="float32",
             batch=16, steps=3, check_runner=True):
    fused = _model(True, layers_fn, n_in, loss, optimizer, dtype)
    plain = _model(False, layers_fn, n_in, loss, optimizer, dtype)
    x, y = _data(batch, n_in, classes, loss, dtype)
    yp = fused.loss.prepare_targets(y, fused._output_shape())
    tol = TOL[dtype]
    for _ in range(steps):
        loss_f, pred_f = fused._train_step(x, yp)
        loss_p, pred_p = plain._train_step(x, yp)
        assert loss_f == pytest.approx(loss_p, rel=tol["rtol"] * 10, abs=tol["atol"])
        np.testing.assert_allclose(pred_f, pred_p, **tol)
        np.testing.assert_allclose(fused._flat.grads, plain._flat.grads, **tol)
        for a, b in zip(fused.get_weights(), plain.get_weights()):
            np.testing.assert_allclose(a, b, **tol)
    if check_runner:
        assert fused._stack_runner[1] is not None
        assert fused._stack_runner[1]._train is not None
    np.testing.assert_allclose(fused.predict(x, batch_size=7), plain.predict(x, batch_size=7), **tol)
    return fused, plain


def _mlp(acts=("relu", "relu", "softmax"), widths=(12, 9), classes=4, use_bias=(True, True, True), **kw):
    return lambda: [Dense(widths[0], activation=acts[0], use_bias=use_bias[0], **kw),
                    Dense(widths[1], activation=acts[1], use_bias=use_bias[1]),
                    Dense(classes, activation=acts[2], use_bias=use_bias[2])]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act", ["relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh", "softmax", "swish", "linear"])
def test_activations(act, dtype, nblocks):
    _compare(_mlp((act, act, "softmax")), 6, 4, dtype=dtype)


@pytest.mark.parametrize("use_bias", [(False, False, False), (True, False, True), (False, True, False)])
def test_with_and_without_bias(use_bias, nblocks):
    _compare(_mlp(use_bias=use_bias), 5, 4, dtype="float64")


@pytest.mark.parametrize("frozen", [(0,), (1,), (2,), (0, 1), (0, 1, 2), (1, 2)])
def test_frozen_layers(frozen, nblocks):
    for dtype in ("float64", "float32"):
        fused = _model(True, _mlp(), 5, dtype=dtype)
        plain = _model(False, _mlp(), 5, dtype=dtype)
        for model in (fused, plain):
            for i in frozen:
                model.layers[i].trainable = False
        x, y = _data(10, 5, 4, "sparse_categorical_crossentropy", dtype)
        before = [w.copy() for w in fused.get_weights()]
        for _ in range(3):
            lf, _ = fused._train_step(x, y)
            lp, _ = plain._train_step(x, y)
            assert lf == pytest.approx(lp, rel=1e-6)
            np.testing.assert_allclose(fused._flat.grads, plain._flat.grads, **TOL[dtype])
        after = fused.get_weights()
        for i, layer in enumerate(fused.layers):
            w0 = 2 * i
            frozen_now = i in frozen
            assert np.array_equal(before[w0], after[w0]) == frozen_now
        for a, b in zip(fused.get_weights(), plain.get_weights()):
            np.testing.assert_allclose(a, b, **TOL[dtype])


def test_trainable_flag_changed_between_steps():
    fused = _model(True, _mlp(), 5, dtype="float64")
    plain = _model(False, _mlp(), 5, dtype="float64")
    x, y = _data(8, 5, 4, "sparse_categorical_crossentropy", "float64")
    for flags in [(True, True, True), (False, True, True), (True, False, True), (True, True, True)]:
        for model in (fused, plain):
            for layer, t in zip(model.layers, flags):
                layer.trainable = t
        lf, _ = fused._train_step(x, y)
        lp, _ = plain._train_step(x, y)
        assert lf == pytest.approx(lp, rel=1e-12)
        for a, b in zip(fused.get_weights(), plain.get_weights()):
            np.testing.assert_allclose(a, b, **TOL["float64"])


OPTIMIZERS = {
    "sgd": lambda: nj.optimizers.SGD(0.1),
    "sgd-momentum": lambda: nj.optimizers.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "rmsprop": lambda: nj.optimizers.RMSprop(0.01, momentum=0.5),
    "adam": lambda: nj.optimizers.Adam(0.01),
    "adamw-clipnorm": lambda: nj.optimizers.AdamW(0.01, clipnorm=0.5),
    "adam-clipvalue": lambda: nj.optimizers.Adam(0.01, clipvalue=0.01),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_optimizers(name, dtype, nblocks):
    _compare(_mlp(), 5, 4, optimizer=OPTIMIZERS[name], dtype=dtype, steps=4)


LOSSES = [  # (loss, last activation)
    ("sparse_categorical_crossentropy", "softmax"),
    (nj.losses.SparseCategoricalCrossentropy(from_logits=True), "linear"),
    ("sparse_categorical_crossentropy", "sigmoid"),  # on probabilities
    ("categorical_crossentropy", "softmax"),
    (nj.losses.CategoricalCrossentropy(from_logits=True), "linear"),
    ("categorical_crossentropy", "sigmoid"),
    ("binary_crossentropy", "sigmoid"),
    (nj.losses.BinaryCrossentropy(from_logits=True), "linear"),
    ("binary_crossentropy", "softmax"),  # on probabilities
    ("mse", "linear"), ("mse", "softmax"), ("mae", "tanh"), (nj.losses.Huber(0.3), "linear"),
]


@pytest.mark.parametrize("loss,last", LOSSES, ids=lambda v: getattr(v, "name", str(v)))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_losses(loss, last, dtype, nblocks):
    _compare(_mlp(("tanh", "relu", last), classes=3), 5, 3, loss=loss, dtype=dtype)


@pytest.mark.parametrize("batch", [1, 3, 128, 1000])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_batch_sizes(batch, dtype, nblocks):
    _compare(_mlp(("relu", "gelu", "softmax"), widths=(32, 16), classes=10), 20, 10, dtype=dtype, batch=batch)


def test_one_and_four_layers():
    _compare(lambda: [Dense(3, activation="softmax")], 4, 3, dtype="float64")
    _compare(lambda: [Dense(7, activation="relu"), Dense(6, activation="elu"), Dense(5, activation="swish"),
                      Dense(2, activation="sigmoid")], 4, 2, loss="binary_crossentropy", dtype="float64")


def test_regularizers_run_after_the_fused_backward():
    fused, plain = _compare(_mlp(kernel_regularizer="l2"), 5, 4, dtype="float64")
    assert fused._stack_runner[1].regularized == [fused.layers[0]]


def test_fit_and_evaluate_agree(nblocks):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((203, 8)).astype(np.float32)
    y = rng.integers(0, 3, 203)
    histories = []
    for fused in (True, False):
        model = _model(fused, _mlp(classes=3), 8)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        h = model.fit(x, y, batch_size=32, epochs=3, validation_split=0.2, verbose=0)
        histories.append((h.history, model.evaluate(x, y), model.predict(x)))
    (h1, e1, p1), (h2, e2, p2) = histories
    for key in h1:
        np.testing.assert_allclose(h1[key], h2[key], rtol=1e-4)
    assert e1["loss"] == pytest.approx(e2["loss"], rel=1e-4)
    np.testing.assert_allclose(p1, p2, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n", [1, 3, 4, 5, 128, 1000])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_predict_and_call_agree(n, dtype, nblocks):
    fused = _model(True, _mlp(("relu", "swish", "softmax"), widths=(40, 30), classes=10), 30, dtype=dtype)
    plain = _model(False, _mlp(("relu", "swish", "softmax"), widths=(40, 30), classes=10), 30, dtype=dtype)
    x = np.random.default_rng(n).standard_normal((n, 30)).astype(dtype)
    tol = TOL[dtype]
    for bs in (1, 7, 32, 5000):
        np.testing.assert_allclose(fused.predict(x, batch_size=bs), plain.predict(x, batch_size=bs), **tol)
    np.testing.assert_allclose(fused(x), plain(x), **tol)
    np.testing.assert_allclose(fused(x, training=True), plain(x), **tol)
    assert fused._stack_runner[1] is not None


def test_predict_converts_and_checks_input_as_before():
    model = _model(True, _mlp(), 5)
    x = np.random.default_rng(0).standard_normal((6, 5))
    ref = model.predict(x.astype(np.float32))
    np.testing.assert_allclose(model.predict(x), ref)  # float64 converted to float32
    np.testing.assert_allclose(model.predict(x.tolist()), ref)
    np.testing.assert_allclose(model.predict(np.asfortranarray(x)), ref)
    np.testing.assert_allclose(model.predict((x * 0).astype(np.int64)), model.predict(np.zeros((6, 5), np.float32)))
    for bad in (np.nan, np.inf):
        xb = x.astype(np.float32)
        xb[4, 2] = bad
        with pytest.raises(ValueError, match=r"x contains .* at index \(4, 2\)"):
            model.predict(xb)
        with pytest.raises(ValueError, match=r"x contains"):
            model.predict(xb, batch_size=2)
        with pytest.raises(ValueError, match=r"x contains"):
            model(xb)
    with pytest.raises(ValueError, match="shape"):
        model.predict(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="empty"):
        model.predict(np.ones((0, 5), np.float32))
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(x, batch_size=0)


def test_changes_to_the_model_are_seen():
    model = _model(True, _mlp(), 5)
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    model.train_on_batch(x, y)
    first = model.predict(x)
    # set_weights writes in place into the flat buffer
    weights = model.get_weights()
    weights[-2][0, 0] += 1.0  # one weight (a shift of every logit would not change a softmax)
    model.set_weights(weights)
    assert not np.allclose(model.predict(x), first)
    # replacing an array rebinds the flat buffers
    layer = model.layers[1]
    layer.params["kernel"] = np.zeros_like(layer.params["kernel"])
    plain = _model(False, _mlp(), 5)
    plain.set_weights(model.get_weights())
    plain.optimizer.set_state(model.optimizer.get_state())
    np.testing.assert_allclose(model.predict(x), plain.predict(x), rtol=1e-6)
    model.train_on_batch(x, y)
    plain.train_on_batch(x, y)
    np.testing.assert_allclose(model.predict(x), plain.predict(x), rtol=1e-5, atol=1e-6)
    # adding and removing layers
    model.add(Dense(3, activation="softmax"))
    assert model.predict(x).shape == (4, 3)
    model.pop()
    assert model.predict(x).shape == (4, 4)
    # a new loss
    model.compile("sgd", "mse")
    model.train_on_batch(x, np.eye(4, dtype=np.float32))
    assert model._stack_runner[1]._train[1] == nj.kernels.mlp.MSE


def test_models_the_fused_path_does_not_cover_fall_back():
    runtime.set_floatx("float32")
    x = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 0, 1])
    with_dropout = nj.Sequential([nj.Input((5,)), Dense(8, activation="relu"), Dropout(0.5), Dense(4)])
    with_dropout.compile("adam", nj.losses.SparseCategoricalCrossentropy(from_logits=True))
    with_dropout.train_on_batch(x, y)
    assert with_dropout._stack_runner[1] is None

    class MyLoss(nj.losses.MeanSquaredError):
        def value_and_grad(self, y_true, y_pred):
            loss, grad = super().value_and_grad(y_true, y_pred)
            return 2 * loss, 2 * grad

    custom = nj.Sequential([nj.Input((5,)), Dense(4)])
    custom.compile("sgd", MyLoss())
    plain = nj.Sequential([nj.Input((5,)), Dense(4)])
    plain.fuse_dense_stack = False
    plain.compile("sgd", MyLoss())
    plain.set_weights(custom.get_weights())
    t = np.eye(4, dtype=np.float32)[y]
    assert custom.train_on_batch(x, t)["loss"] == pytest.approx(plain.train_on_batch(x, t)["loss"], rel=1e-6)
    assert custom._stack_runner[1]._train is None  # the runner exists, the loss is not one it computes

    sequence = nj.Sequential([nj.Input((3, 5)), Dense(4)])  # Dense over the last axis of 3-D inputs
    sequence.compile("sgd", "mse")
    xs = np.ones((2, 3, 5), np.float32)
    assert sequence.predict(xs).shape == (2, 3, 4)
    sequence.train_on_batch(xs, np.ones((2, 3, 4), np.float32))
    assert sequence._stack_runner[1] is None


def test_nan_loss_raises_and_keeps_weights():
    model = _model(True, lambda: [Dense(3, activation="relu"), Dense(1)], 2, loss="mse",
                   optimizer=lambda: nj.optimizers.SGD(0.1))
    model.layers[0].set_weights([np.ones((2, 3)), np.zeros(3)])
    before = model.get_weights()
    x = np.array([[3e38, 3e38]], np.float32)  # the first layer's output overflows float32
    with pytest.raises(TrainingError, match="loss became"):
        model.train_on_batch(x, np.zeros((1, 1), np.float32))
    assert model._stack_runner[1]._train is not None
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_float64_model_after_floatx_switch_falls_back():
    model = _model(True, _mlp(), 5, dtype="float64")
    x = np.random.default_rng(0).standard_normal((3, 5))
    ref = model.predict(x)
    assert model._stack_runner[1].dtype == np.float64
    runtime.set_floatx("float32")  # x is now converted to float32: not the model's dtype
    assert model._inference_stack(x.astype(np.float32)) is None
    runtime.set_floatx("float64")
    np.testing.assert_allclose(model.predict(x), ref)


def test_loss_attributes_changed_between_steps_are_seen():
    fused = _model(True, _mlp(("tanh", "relu", "linear"), classes=3), 5, loss=nj.losses.Huber(1.0), dtype="float64")
    plain = _model(False, _mlp(("tanh", "relu", "linear"), classes=3), 5, loss=nj.losses.Huber(1.0), dtype="float64")
    x, y = _data(9, 5, 3, "mse", "float64")
    y = 3 * y
    for delta in (1.0, 0.2, 2.0):
        fused.loss.delta = plain.loss.delta = delta
        lf, _ = fused._train_step(x, y)
        lp, _ = plain._train_step(x, y)
        assert lf == pytest.approx(lp, rel=1e-12)
        np.testing.assert_allclose(fused._flat.grads, plain._flat.grads, **TOL["float64"])
