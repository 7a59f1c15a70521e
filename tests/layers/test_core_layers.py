"""Dense, Activation, Dropout, Flatten, Reshape and custom layers through the public API."""
import numpy as np
import pytest

import nnjit as nj
from nnjit.layers import Activation, Dense, Dropout, Flatten, Layer, Reshape

ACTIVATIONS = ["linear", "relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh", "softmax", "swish"]


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_dense_parameter_shapes_and_output():
    layer = Dense(7)
    y = layer(_x((5, 3)))
    assert y.shape == (5, 7) and y.dtype == np.float32
    assert layer.params["kernel"].shape == (3, 7)
    assert layer.params["bias"].shape == (7,)
    np.testing.assert_allclose(y, _x((5, 3)) @ layer.params["kernel"] + layer.params["bias"], rtol=1e-5, atol=1e-6)


def test_dense_without_bias_has_no_bias_parameter():
    layer = Dense(4, use_bias=False)
    layer(_x((2, 3)))
    assert set(layer.params) == {"kernel"}


def test_dense_on_sequences_applies_to_last_axis():
    layer = Dense(6, activation="tanh")
    x = _x((2, 5, 3))
    y = layer(x)
    assert y.shape == (2, 5, 6)
    np.testing.assert_allclose(y[1, 2], np.tanh(x[1, 2] @ layer.params["kernel"] + layer.params["bias"]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_gradcheck(activation):
    nj.set_seed(1)
    layer = Dense(5, activation=activation)
    assert nj.gradcheck(layer, _x((4, 6)).astype(np.float64)) < 1e-6


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_layer_gradcheck(activation):
    assert nj.gradcheck(Activation(activation), _x((3, 5)).astype(np.float64) + 0.01) < 1e-6


def test_activation_layer_on_images_uses_last_axis_for_softmax():
    y = Activation("softmax")(_x((2, 3, 4)))
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-6)


def test_dropout_training_and_inference():
    nj.set_seed(3)
    layer = Dropout(0.25)
    x = np.ones((200, 50), np.float32)
    np.testing.assert_array_equal(layer(x), x)
    y, backward = layer.forward(x, training=True)
    kept = y != 0
    assert 0.70 < kept.mean() < 0.80
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    dx = backward(np.ones_like(x))
    np.testing.assert_array_equal(dx != 0, kept)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 2, "half"])
def test_dropout_refuses_bad_rate(rate):
    with pytest.raises(ValueError, match="rate"):
        Dropout(rate)


def test_flatten_and_reshape_round_trip():
    x = _x((3, 2, 4, 5))
    flat = Flatten()
    y, back = flat.forward(x)
    assert y.shape == (3, 40)
    assert back(y).shape == x.shape
    r = Reshape((5, -1))
    z = r(y)
    assert z.shape == (3, 5, 8)
    np.testing.assert_array_equal(z.reshape(3, 40), y)
    assert nj.gradcheck(Reshape((4, 10)), x.astype(np.float64)) < 1e-7


@pytest.mark.parametrize("target", [(0, 4), (-1, -1), "ab", ()])
def test_reshape_refuses_bad_target_shape(target):
    with pytest.raises(ValueError, match="target_shape"):
        Reshape(target)


def test_reshape_refuses_incompatible_input():
    with pytest.raises(ValueError, match="cannot reshape"):
        Reshape((7,))(_x((2, 3, 4)))


@pytest.mark.parametrize("units", [0, -3, 2.5, "ten", True])
def test_dense_refuses_bad_units(units):
    with pytest.raises(ValueError, match="units"):
        Dense(units)


def test_unknown_activation_is_refused_with_its_name():
    with pytest.raises(ValueError, match="relux"):
        Dense(3, activation="relux")
    with pytest.raises(ValueError, match="nope"):
        Activation("nope")


def test_built_dense_refuses_other_feature_count():
    layer = Dense(3)
    layer(_x((2, 4)))
    with pytest.raises(ValueError, match=r"expected input with 4 features.*\(None, 5\)"):
        layer(_x((2, 5)))


def test_layer_call_refuses_nan_and_empty():
    layer = Dense(3)
    bad = _x((2, 4))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="nan"):
        layer(bad)
    with pytest.raises(ValueError, match="non-empty"):
        layer(np.zeros((0, 4), np.float32))


class Scale(Layer):
    """The custom layer of API.md."""

    def build(self, input_shape):
        self.add_weight("alpha", shape=(input_shape[-1],), initializer="ones")

    def forward(self, x, training=False):
        a = self.params["alpha"]

        def backward(dy):
            self.grads["alpha"] += (dy * x).reshape(-1, x.shape[-1]).sum(0)
            return dy * a

        return x * a, backward


def test_custom_layer_gradcheck_and_training():
    layer = Scale()
    assert nj.gradcheck(layer, _x((3, 4)).astype(np.float64)) < 1e-8
    nj.set_seed(0)
    model = nj.Sequential([nj.Input((4,)), Scale()])
    model.compile(nj.optimizers.SGD(0.1), "mse")
    x = _x((64, 4))
    y = x * np.array([2.0, -1.0, 0.5, 3.0], np.float32)
    model.fit(x, y, epochs=60, batch_size=16, verbose=0)
    np.testing.assert_allclose(model.layers[0].params["alpha"], [2.0, -1.0, 0.5, 3.0], atol=1e-2)


def test_frozen_dense_keeps_weights():
    nj.set_seed(0)
    first = Dense(8, activation="relu")
    model = nj.Sequential([nj.Input((4,)), first, Dense(3)])
    first.trainable = False
    before = first.params["kernel"].copy()
    model.compile("adam", "mse")
    model.fit(_x((32, 4)), _x((32, 3), seed=1), epochs=2, verbose=0)
    np.testing.assert_array_equal(model.layers[0].params["kernel"], before)
    assert not np.array_equal(model.layers[1].params["kernel"], 0)
