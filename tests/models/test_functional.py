"""The functional Model: graphs with skips, shared layers, several inputs and outputs,
merge layers and models used as layers."""
import numpy as np
import pytest

import nnjit as nj
from nnjit.layers import LSTM, Add, Concatenate, Dense, Dropout, Multiply


def _x(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _dense(layer, x):
    return x @ layer.params["kernel"] + layer.params["bias"]


def test_residual_graph_matches_its_formula():
    nj.set_seed(0)
    inp = nj.Input((5,))
    a, b, head = Dense(4, activation="relu"), Dense(4), Dense(3)
    out = head(Add()([a(inp), b(inp)]))
    model = nj.Model(inp, out)
    x = _x((6, 5))
    expected = _dense(head, np.maximum(_dense(a, x), 0) + _dense(b, x))
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-6)
    assert nj.gradcheck(model, x.astype(np.float64)) < 1e-6


def test_shared_layer_gradients_add_up():
    nj.set_seed(1)
    inp = nj.Input((4,))
    shared = Dense(4, activation="tanh")
    out = Dense(2)(shared(shared(inp)))  # the same weights twice in a row
    model = nj.Model(inp, out)
    assert len(model.layers) == 2
    assert nj.gradcheck(model, _x((3, 4), dtype=np.float64)) < 1e-6


def test_concatenate_and_multiply():
    nj.set_seed(2)
    a, b = nj.Input((3,)), nj.Input((2,))
    cat = Concatenate()([a, b])
    prod = Multiply()([Dense(4)(cat), Dense(4)(cat)])
    model = nj.Model([a, b], Dense(1)(prod))
    xa, xb = _x((5, 3), 1), _x((5, 2), 2)
    y = model.predict([xa, xb])
    assert y.shape == (5, 1)
    assert nj.gradcheck(model, [xa.astype(np.float64), xb.astype(np.float64)]) < 1e-6
    with pytest.raises(ValueError, match="agree on every axis"):
        Concatenate(axis=1)([nj.Input((2, 3)), nj.Input((2, 4))])


def test_several_inputs_and_outputs_with_loss_weights():
    nj.set_seed(3)
    a, b = nj.Input((4,)), nj.Input((3,))
    h = Dense(8, activation="relu")(Concatenate()([a, b]))
    cls = Dense(3, name="cls")(h)
    reg = Dense(1, name="reg")(h)
    model = nj.Model([a, b], [cls, reg])
    model.compile("adam", [nj.losses.SparseCategoricalCrossentropy(from_logits=True), "mse"], loss_weights=[1.0, 0.5],
                  metrics=["accuracy"])
    xa, xb = _x((32, 4), 4), _x((32, 3), 5)
    y_cls, y_reg = np.arange(32) % 3, _x((32, 1), 6)
    out_cls, out_reg = model.predict([xa, xb])
    logits = out_cls.astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = -np.log(p[np.arange(32), y_cls]).mean() + 0.5 * np.mean((out_reg - y_reg) ** 2)
    logs = model.evaluate([xa, xb], [y_cls, y_reg], batch_size=32)
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)
    history = model.fit([xa, xb], [y_cls, y_reg], epochs=30, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert "accuracy" in history.history


def test_several_inputs_are_checked():
    a, b = nj.Input((4,)), nj.Input((3,))
    model = nj.Model([a, b], Dense(1)(Concatenate()([a, b])))
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="2 inputs.*Received: 1"):
        model.fit([_x((4, 4))], _x((4, 1)), verbose=0)
    with pytest.raises(TypeError, match="list of 2 arrays"):
        model.predict(_x((4, 4)))
    with pytest.raises(ValueError, match=r"x\[1\]"):
        model.predict([_x((4, 4)), _x((4, 5))])
    with pytest.raises(ValueError, match="same number of samples"):
        model.predict([_x((4, 4)), _x((3, 3))])


def test_graph_errors():
    a, b = nj.Input((4,)), nj.Input((4,))
    out = Dense(1)(Add()([a, b]))
    with pytest.raises(ValueError, match="not among the model's inputs"):
        nj.Model(a, out)
    with pytest.raises(TypeError, match="nj.Input"):
        nj.Model(Dense(2)(a), out)


def test_model_as_a_layer_and_freezing_it():
    nj.set_seed(4)
    base_in = nj.Input((6,))
    base = nj.Model(base_in, Dense(5, activation="relu")(Dense(8, activation="relu")(base_in)), name="base")
    inp = nj.Input((6,))
    model = nj.Model(inp, Dense(2)(base(inp)))
    x = _x((10, 6))
    np.testing.assert_allclose(model.predict(x), _dense(model.layers[-1], base.predict(x)), rtol=1e-5, atol=1e-6)
    assert len(model.layers) == 3
    assert nj.gradcheck(model, x.astype(np.float64)) < 1e-6

    base.trainable = False
    frozen = [w.copy() for w in base.get_weights()]
    model.compile("adam", nj.losses.SparseCategoricalCrossentropy(from_logits=True))
    head_before = model.layers[-1].params["kernel"].copy()
    model.fit(x, np.arange(10) % 2, epochs=3, verbose=0)
    for a, b in zip(frozen, base.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(head_before, model.layers[-1].params["kernel"])


def test_sequential_inside_a_model_and_a_new_head():
    nj.set_seed(5)
    backbone = nj.Sequential([nj.Input((4,)), Dense(6, activation="tanh"), Dropout(0.1)])
    inp = nj.Input((4,))
    model = nj.Model(inp, Dense(3)(backbone(inp)))
    x = _x((7, 4))
    assert model.predict(x).shape == (7, 3)
    # Replace the head: a new model from the same input through the same backbone.
    new = nj.Model(model.input, Dense(5, name="new_head")(backbone(model.input)))
    assert new.predict(x).shape == (7, 5)
    np.testing.assert_array_equal(new.layers[0].params["kernel"], model.layers[0].params["kernel"])


def test_recurrent_state_outputs_in_a_graph():
    nj.set_seed(6)
    inp = nj.Input((5, 3))
    seq, h, c = LSTM(4, return_sequences=True, return_state=True)(inp)
    out = Dense(2)(Concatenate()([h, c]))
    model = nj.Model(inp, out)
    assert seq.shape == (5, 4) and h.shape == (4,)
    assert nj.gradcheck(model, _x((2, 5, 3), dtype=np.float64)) < 1e-6


def test_summary_shows_connections():
    inp = nj.Input((3,))
    a = Dense(2, name="left")(inp)
    b = Dense(2, name="right")(inp)
    model = nj.Model(inp, Add(name="join")([a, b]))
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "<- left, right" in text
    assert model.connections()[-1] == ("join", ["left", "right"])
