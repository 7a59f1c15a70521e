"""Sequential models: training, evaluation, prediction, validation split, files, bad input."""
import numpy as np
import pytest

import nnjit as nj
from nnjit.layers import Dense, Dropout


@pytest.fixture(scope="module")
def digits():
    return nj.datasets.load_digits()


def _mlp(hidden=64, dropout=0.0, final="softmax"):
    layers = [nj.Input((64,)), Dense(hidden, activation="relu")]
    if dropout:
        layers.append(Dropout(dropout))
    layers.append(Dense(10, activation=final))
    return nj.Sequential(layers)


def test_fit_learns_digits(digits):
    (x, y), (xt, yt) = digits
    nj.set_seed(0)
    model = _mlp(dropout=0.1)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=15, batch_size=32, validation_data=(xt, yt), verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["loss"]) == 15
    assert history.history["loss"][-1] < history.history["loss"][0] / 3
    result = model.evaluate(xt, yt)
    assert result["accuracy"] > 0.93
    assert result["loss"] == pytest.approx(history.history["val_loss"][-1], rel=1e-5)


def test_predict_returns_probabilities_and_model_call_agrees(digits):
    (x, y), _ = digits
    nj.set_seed(0)
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    p = model.predict(x[:100], batch_size=7)
    assert p.shape == (100, 10)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(model(x[:100]), p, rtol=1e-5, atol=1e-7)


def test_fused_softmax_loss_equals_separate_softmax_and_cross_entropy(digits):
    (x, y), _ = digits
    nj.set_seed(0)
    fused = _mlp()
    nj.set_seed(0)
    plain = _mlp(final=None)
    plain.add(nj.layers.Activation("softmax"))
    assert fused._fuse is False  # not compiled yet
    for m in (fused, plain):
        m.compile(nj.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    plain.layers[0].set_weights(fused.layers[0].get_weights())
    plain.layers[1].set_weights(fused.layers[1].get_weights())
    assert fused._fuse and plain._fuse
    a = fused.train_on_batch(x[:64], y[:64])["loss"]
    b = plain.train_on_batch(x[:64], y[:64])["loss"]
    assert a == pytest.approx(b, rel=1e-5)
    np.testing.assert_allclose(fused.layers[0].params["kernel"], plain.layers[0].params["kernel"], rtol=1e-5, atol=1e-6)


def test_validation_split_holds_out_the_last_samples(digits):
    (x, y), _ = digits
    nj.set_seed(0)
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=2, validation_split=0.25, verbose=0)
    cut = len(x) - int(len(x) * 0.25)
    held_out = model.evaluate(x[cut:], y[cut:])
    assert history.history["val_loss"][-1] == pytest.approx(held_out["loss"], rel=1e-5)
    assert history.history["val_accuracy"][-1] == pytest.approx(held_out["accuracy"])


def test_train_and_test_on_batch(digits):
    (x, y), _ = digits
    nj.set_seed(0)
    model = _mlp()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    before = model.test_on_batch(x[:32], y[:32])
    assert before == model.test_on_batch(x[:32], y[:32])  # testing changes nothing
    for _ in range(20):
        model.train_on_batch(x[:32], y[:32])
    after = model.test_on_batch(x[:32], y[:32])
    assert after["loss"] < before["loss"]
    assert set(after) == {"loss", "accuracy"}


def test_seed_makes_training_reproducible(digits):
    (x, y), _ = digits
    weights = []
    for _ in range(2):
        nj.set_seed(42)
        model = _mlp(dropout=0.3)
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x[:300], y[:300], epochs=2, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_model_gradcheck():
    nj.set_seed(0)
    model = nj.Sequential([nj.Input((5,)), Dense(4, activation="tanh"), Dense(3, activation="softmax")])
    x = np.random.default_rng(0).standard_normal((6, 5))
    assert nj.gradcheck(model, x) < 1e-6


def test_summary_lists_layers_and_counts(capsys):
    model = _mlp(hidden=32)
    model.summary()
    out = capsys.readouterr().out
    assert "(None, 32)" in out and "(None, 10)" in out
    assert f"Total params: {64 * 32 + 32 + 32 * 10 + 10}" in out


def test_save_and_load_weights_reproduce_predictions(tmp_path, digits):
    (x, y), _ = digits
    nj.set_seed(0)
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "w.safetensors"
    model.save_weights(path)
    nj.set_seed(1)
    other = _mlp()
    assert not np.allclose(other.predict(x[:10]), model.predict(x[:10]))
    other.load_weights(path)
    np.testing.assert_array_equal(other.predict(x[:50]), model.predict(x[:50]))


def test_damaged_weight_file_is_refused_and_model_unchanged(tmp_path):
    model = _mlp()
    path = tmp_path / "w.safetensors"
    model.save_weights(path)
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF
    path.write_bytes(bytes(blob))
    before = model.get_weights()
    with pytest.raises(ValueError, match="checksum"):
        model.load_weights(path)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    other = _mlp(hidden=16)
    good = tmp_path / "good.safetensors"
    model.save_weights(good)
    with pytest.raises(ValueError, match="shape"):
        other.load_weights(good)


def test_learning_rate_schedule_in_fit(digits):
    (x, y), _ = digits
    schedule = nj.optimizers.schedules.ExponentialDecay(0.01, decay_steps=10, decay_rate=0.5)
    opt = nj.optimizers.Adam(learning_rate=schedule)
    model = _mlp()
    model.compile(opt, "sparse_categorical_crossentropy")
    model.fit(x[:320], y[:320], epochs=1, batch_size=32, verbose=0)
    assert opt.iterations == 10
    assert opt.current_learning_rate() == pytest.approx(0.005)


def test_nan_loss_raises_and_keeps_weights():
    model = nj.Sequential([nj.Input((2,)), Dense(1)])
    model.layers[0].set_weights([np.ones((2, 1)), np.zeros(1)])
    model.compile(nj.optimizers.SGD(0.1), "mse")
    x = np.array([[3e38, 3e38]] * 4, np.float32)  # the output overflows float32: the loss is inf
    y = np.zeros((4, 1), np.float32)
    with pytest.raises(nj.models.TrainingError, match="loss became inf"):
        model.fit(x, y, epochs=3, verbose=0)
    np.testing.assert_array_equal(model.layers[0].params["kernel"], np.ones((2, 1)))
    model.compile(nj.optimizers.SGD(0.1), "mse")
    model.fit(x / 1e38, y, epochs=1, verbose=0)  # still usable
    assert np.isfinite(model.layers[0].params["kernel"]).all()


def test_terminate_on_nan_stops_quietly():
    model = nj.Sequential([nj.Input((2,)), Dense(1)])
    model.compile(nj.optimizers.SGD(1e30), "mse")
    x = np.array([[1e20, 1e20]] * 4, np.float32)
    history = model.fit(x, np.zeros((4, 1), np.float32), epochs=5, batch_size=1, verbose=0,
                        callbacks=[nj.callbacks.TerminateOnNaN()])
    assert len(history.history["loss"]) == 1


def test_fit_on_iterable_of_batches(digits):
    (x, y), _ = digits
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    batches = [(x[i:i + 50], y[i:i + 50]) for i in range(0, 500, 50)]
    history = model.fit(batches, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2


def test_float64_and_integer_inputs_are_converted(digits):
    (x, y), _ = digits
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[:64].astype(np.float64), y[:64].astype(np.int32), epochs=1, verbose=0)
    assert model.predict((x[:5] * 16).astype(np.int64)).dtype == np.float32
    assert model.predict(np.asfortranarray(x[:5])).shape == (5, 10)


# ----------------------------------------------------------------------------- bad input
def _compiled():
    model = _mlp()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


X = np.random.default_rng(0).random((20, 64), dtype=np.float32)
Y = np.arange(20) % 10


@pytest.mark.parametrize("kwargs, exc, pattern", [
    (dict(x=X[:, :10]), ValueError, r"\(None, 64\).*\(20, 10\)"),
    (dict(x=X[:, :, None]), ValueError, "shape"),
    (dict(x=X[0]), ValueError, "at least 2 dimensions"),
    (dict(x=np.zeros((0, 64), np.float32), y=Y[:0]), ValueError, "non-empty"),
    (dict(y=Y[:19]), ValueError, "20 samples, y with 19"),
    (dict(y=Y + 5), ValueError, r"\[0, 10\)"),
    (dict(y=Y - 1), ValueError, r"\[0, 10\)"),
    (dict(y=Y + 0.5), ValueError, "y"),
    (dict(x=np.where(np.eye(20, 64) > 0, np.nan, X)), ValueError, "nan"),
    (dict(x=np.where(np.eye(20, 64) > 0, np.inf, X)), ValueError, "inf"),
    (dict(x=np.array([["a"] * 64] * 20)), TypeError, "x"),
    (dict(batch_size=0), ValueError, "batch_size=0"),
    (dict(batch_size=-3), ValueError, "batch_size=-3"),
    (dict(batch_size=2.5), TypeError, "batch_size"),
    (dict(epochs=-1), ValueError, "epochs=-1"),
    (dict(validation_split=1.5), ValueError, "validation_split"),
    (dict(validation_data=(X,)), ValueError, "validation_data"),
])
def test_fit_refuses_bad_input_before_training(kwargs, exc, pattern):
    model = _compiled()
    before = model.get_weights()
    args = dict(x=X, y=Y, epochs=1, verbose=0)
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        model.fit(**args)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(loss="cross_entropyy"), "cross_entropyy"),
    (dict(optimizer="adamm", loss="mse"), "adamm"),
    (dict(loss="mse", metrics=["accuracyy"]), "accuracyy"),
])
def test_compile_refuses_unknown_names(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        _mlp().compile(**kwargs)


def test_predict_and_evaluate_refuse_bad_input():
    model = _compiled()
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(X, batch_size=0)
    with pytest.raises(ValueError, match=r"\(None, 64\)"):
        model.predict(X[:, :63])
    with pytest.raises(ValueError, match="nan"):
        model.evaluate(np.full((2, 64), np.nan, np.float32), Y[:2])


def test_fit_before_compile_is_refused():
    with pytest.raises(RuntimeError, match="compile"):
        _mlp().fit(X, Y, verbose=0)


def test_progress_bar_prints_epochs(capsys, digits):
    (x, y), _ = digits
    model = _compiled()
    model.fit(x[:100], y[:100], epochs=2, batch_size=50, verbose=1)
    err = capsys.readouterr().err
    assert "Epoch 1/2" in err and "Epoch 2/2" in err and "accuracy" in err


def test_profile_reports_every_layer_and_restores_weights(capsys, digits):
    (x, y), _ = digits
    model = _compiled()
    before = model.get_weights()
    rows = model.profile(x[:128], y[:128], steps=3)
    out = capsys.readouterr().out
    names = [r["name"] for r in rows]
    assert len(rows) == len(model.layers) + 2
    assert all(layer.name in out for layer in model.layers)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert all(r["forward_ms"] >= 0 and r["backward_ms"] >= 0 for r in rows)
    assert rows[0]["gflops"] is not None and "update" in names[-1]
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_gradcheck_skips_parameters_of_frozen_layers():
    """A frozen layer computes no parameter gradients (its grads stay zero): gradcheck judges
    the input and the trainable parameters only, and still catches a wrong gradient there."""
    x = np.random.default_rng(0).standard_normal((4, 6))
    model = nj.Sequential([nj.Input((6,)), nj.layers.Dense(5, activation="tanh"), nj.layers.Dense(3)])
    model.layers[0].trainable = False
    assert nj.gradcheck(model, x) < 1e-6
    inner = nj.Sequential([nj.Input((6,)), nj.layers.Dense(5, activation="tanh")])
    inner.trainable = False
    i = nj.Input((6,))
    outer = nj.Model(i, nj.layers.Dense(3)(inner(i)))
    assert nj.gradcheck(outer, x) < 1e-6
    # A broken backward in the trainable layer is still reported.
    dense = model.layers[1]
    forward = dense.forward

    def wrong_forward(h, training=False):
        y, backward = forward(h, training)

        def doubled(dy, need_dx=True):
            dx = backward(dy, need_dx)
            dense.grads["kernel"] *= 2.0
            return dx
        return y, doubled
    dense.forward = wrong_forward
    assert nj.gradcheck(model, x) > 0.5
