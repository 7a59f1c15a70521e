"""Conv2D, pooling and BatchNormalization through the public API."""
import numpy as np
import pytest

import nnjit as nj
from nnjit.layers import (AvgPool2D, BatchNormalization, Conv2D, Dense, Flatten, GlobalAvgPool1D, GlobalAvgPool2D,
                          MaxPool2D)


def _x(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------- references
def _pad(x, top, bottom, left, right, value=0.0):
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def _same_pads(size, window, stride, dilation):
    span = dilation * (window - 1) + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def conv_reference(x, w, b, strides, pads, dilation, groups):
    """Direct loops over output positions and kernel taps, float64."""
    (sh, sw), (dh, dw) = strides, dilation
    (top, bottom), (left, right) = pads
    xp = _pad(x.astype(np.float64), top, bottom, left, right)
    n, c, hp, wp = xp.shape
    f, cg, kh, kw = w.shape
    oh = (hp - dh * (kh - 1) - 1) // sh + 1
    ow = (wp - dw * (kw - 1) - 1) // sw + 1
    fg = f // groups
    y = np.zeros((n, f, oh, ow))
    for o in range(f):
        g = o // fg
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
                y[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, i, j].astype(np.float64))
        if b is not None:
            y[:, o] += b[o]
    return y


def pool_reference(x, pool, strides, pads, kind):
    (ph, pw), (sh, sw) = pool, strides
    (top, bottom), (left, right) = pads
    x = x.astype(np.float64)
    n, c, h, w = x.shape
    oh = (h + top + bottom - ph) // sh + 1
    ow = (w + left + right - pw) // sw + 1
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * sh - top, j * sw - left
            window = x[:, :, max(r0, 0):min(r0 + ph, h), max(c0, 0):min(c0 + pw, w)]
            y[:, :, i, j] = window.max(axis=(2, 3)) if kind == "max" else window.mean(axis=(2, 3))
    return y


# ---------------------------------------------------------------- Conv2D
def test_conv2d_parameter_shapes_follow_api():
    layer = Conv2D(8, (3, 2), groups=2)
    y = layer(_x((2, 4, 7, 9)))
    assert layer.params["kernel"].shape == (8, 2, 3, 2)
    assert layer.params["bias"].shape == (8,)
    assert y.shape == (2, 8, 5, 8) and y.dtype == np.float32


@pytest.mark.parametrize("strides, padding, dilation, groups", [
    (1, "valid", 1, 1), (1, "same", 1, 1), (2, "same", 1, 1), ((2, 1), "same", 1, 2), (1, 2, 1, 1),
    (2, 1, 2, 1), (1, "same", 2, 4), ((1, 2), "valid", (2, 1), 2),
])
def test_conv2d_matches_reference(strides, padding, dilation, groups):
    nj.set_seed(0)
    layer = Conv2D(4, (3, 2), strides=strides, padding=padding, dilation_rate=dilation, groups=groups)
    layer.ensure_built((4, 7, 8))
    layer.params["bias"][...] = _x((4,), seed=5)
    x = _x((3, 4, 7, 8), seed=1)
    y = layer(x)
    s = (strides, strides) if isinstance(strides, int) else strides
    d = (dilation, dilation) if isinstance(dilation, int) else dilation
    if padding == "same":
        pads = (_same_pads(7, 3, s[0], d[0]), _same_pads(8, 2, s[1], d[1]))
    elif padding == "valid":
        pads = ((0, 0), (0, 0))
    else:
        pads = ((padding, padding), (padding, padding))
    ref = conv_reference(x, layer.params["kernel"], layer.params["bias"], s, pads, d, groups)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def test_conv2d_same_padding_puts_the_odd_row_at_the_bottom():
    # 6 rows, kernel 2, stride 1: one row of padding in total, and it must go after the input.
    layer = Conv2D(1, 2, padding="same", use_bias=False, kernel_initializer="ones")
    x = np.arange(36, dtype=np.float32).reshape(1, 1, 6, 6)
    y = layer(x)
    assert y.shape == (1, 1, 6, 6)
    assert y[0, 0, 0, 0] == x[0, 0, 0, 0] + x[0, 0, 0, 1] + x[0, 0, 1, 0] + x[0, 0, 1, 1]
    assert y[0, 0, 5, 5] == x[0, 0, 5, 5]


def test_conv2d_fused_activation_and_no_bias():
    nj.set_seed(2)
    layer = Conv2D(3, 3, padding="same", activation="relu", use_bias=False)
    x = _x((2, 2, 5, 6))
    y = layer(x)
    assert "bias" not in layer.params
    ref = conv_reference(x, layer.params["kernel"], None, (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    np.testing.assert_allclose(y, np.maximum(ref, 0), rtol=1e-4, atol=1e-5)


def test_conv2d_softmax_activation_is_over_channels():
    y = Conv2D(5, 1, activation="softmax")(_x((2, 3, 4, 4)))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("kwargs", [
    dict(filters=3, kernel_size=3, padding="same", activation="tanh"),
    dict(filters=4, kernel_size=(3, 2), strides=2, padding=1, dilation_rate=1, groups=2, activation="gelu"),
    dict(filters=4, kernel_size=3, dilation_rate=2, groups=4, padding="same"),
    dict(filters=2, kernel_size=1),
])
def test_conv2d_gradcheck(kwargs):
    nj.set_seed(3)
    layer = Conv2D(**kwargs)
    assert nj.gradcheck(layer, _x((2, 4, 7, 6), seed=4, dtype=np.float64)) < 1e-6


def test_frozen_conv2d_leaves_its_gradients_alone():
    nj.set_seed(4)
    layer = Conv2D(2, 3, trainable=False)
    x = _x((2, 1, 5, 5))
    layer.ensure_built(x.shape[1:])
    y, backward = layer.forward(x, training=True)
    dx = backward(np.ones_like(y))
    assert dx.shape == x.shape
    assert not layer.grads["kernel"].any() and not layer.grads["bias"].any()


@pytest.mark.parametrize("kwargs, message", [
    (dict(filters=0, kernel_size=3), "filters=0"),
    (dict(filters=4, kernel_size=0), "kernel_size=0"),
    (dict(filters=4, kernel_size=(3, -1)), "kernel_size=(3, -1)"),
    (dict(filters=4, kernel_size=3, strides=0), "strides=0"),
    (dict(filters=4, kernel_size=3, padding="full"), "padding='full'"),
    (dict(filters=4, kernel_size=3, padding=-1), "padding=-1"),
    (dict(filters=4, kernel_size=3, dilation_rate=0), "dilation_rate=0"),
    (dict(filters=4, kernel_size=3, groups=3), "groups=3"),
    (dict(filters=4, kernel_size=3, activation="nope"), "activation='nope'"),
])
def test_conv2d_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Conv2D(**kwargs)


def test_conv2d_refuses_bad_inputs():
    layer = Conv2D(4, 3)
    layer(_x((1, 3, 8, 8)))
    with pytest.raises(ValueError, match="expected 3 input channels.*x with shape \\(None, 2, 8, 8\\)"):
        layer(_x((1, 2, 8, 8)))
    with pytest.raises(ValueError, match="channels, height, width"):
        layer(_x((1, 3, 8)))
    with pytest.raises(ValueError, match="larger than the padded input height"):
        Conv2D(4, 5)(_x((1, 1, 4, 9)))
    with pytest.raises(ValueError, match="larger than the padded input width"):
        Conv2D(4, 3, dilation_rate=3, padding=1)(_x((1, 1, 9, 4)))
    with pytest.raises(ValueError, match="divisible by groups=2.*3 channels"):
        Conv2D(4, 3, groups=2)(_x((1, 3, 8, 8)))


def test_conv2d_model_refuses_wrong_channels_before_training():
    model = nj.Sequential([nj.Input((1, 8, 8)), Conv2D(4, 3), Flatten(), Dense(10)])
    model.compile("adam", "sparse_categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="x"):
        model.fit(_x((4, 3, 8, 8)), np.zeros(4, np.int64), verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_conv2d_config_round_trip():
    layer = Conv2D(6, (3, 1), strides=(2, 1), padding=2, dilation_rate=2, groups=3, activation="relu", use_bias=False)
    config = layer.get_config()
    again = Conv2D(**{k: v for k, v in config.items() if k != "name"})
    assert again.get_config() == {**config, "name": again.name}
    assert "groups=3" in repr(layer)


# ---------------------------------------------------------------- pooling
@pytest.mark.parametrize("layer_cls, kind", [(MaxPool2D, "max"), (AvgPool2D, "avg")])
@pytest.mark.parametrize("pool, strides, padding, size", [
    (2, None, "valid", (7, 9)),          # windows that do not divide the input: trailing rows dropped
    (3, 2, "valid", (8, 7)),             # overlapping windows
    ((2, 3), (1, 2), "same", (5, 8)),    # non-square window and strides, padded
    (2, None, "same", (7, 7)),           # an odd extra row and column of padding at the bottom/right
    (3, 1, "same", (4, 6)),
])
def test_pooling_matches_reference(layer_cls, kind, pool, strides, padding, size):
    layer = layer_cls(pool, strides=strides, padding=padding)
    x = _x((2, 3) + size, seed=7)
    y = layer(x)
    p = (pool, pool) if isinstance(pool, int) else pool
    s = p if strides is None else ((strides, strides) if isinstance(strides, int) else strides)
    if padding == "same":
        pads = (_same_pads(size[0], p[0], s[0], 1), _same_pads(size[1], p[1], s[1], 1))
    else:
        pads = ((0, 0), (0, 0))
    ref = pool_reference(x, p, s, pads, kind)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", [lambda: MaxPool2D(2), lambda: MaxPool2D(3, strides=2, padding="same"),
                                   lambda: AvgPool2D(2, padding="same"), lambda: AvgPool2D((3, 2), strides=1),
                                   lambda: GlobalAvgPool2D()])
def test_pooling_gradcheck(layer):
    # A permutation keeps every value distinct, so each max is unique and differentiable.
    x = np.random.default_rng(1).permutation(2 * 3 * 7 * 5).reshape(2, 3, 7, 5).astype(np.float64) / 10
    assert nj.gradcheck(layer(), x, eps=1e-4) < 1e-6


def test_max_pool_gradient_goes_to_the_maximum():
    x = np.array([[[[1, 5], [3, 2]]]], dtype=np.float32)
    y, backward = MaxPool2D(2).forward(x)
    assert y.item() == 5
    np.testing.assert_array_equal(backward(np.ones_like(y)), [[[[0, 1], [0, 0]]]])


def test_global_pooling():
    x = _x((3, 4, 5, 6))
    np.testing.assert_allclose(GlobalAvgPool2D()(x), x.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    seq = _x((3, 7, 5))
    np.testing.assert_allclose(GlobalAvgPool1D()(seq), seq.mean(axis=1), rtol=1e-5, atol=1e-6)
    assert nj.gradcheck(GlobalAvgPool1D(), seq.astype(np.float64)) < 1e-6


@pytest.mark.parametrize("kwargs, message", [
    (dict(pool_size=0), "pool_size=0"), (dict(strides=(1, 0)), r"strides=\(1, 0\)"),
    (dict(padding="full"), "padding='full'"), (dict(padding=1), "padding=1"),
])
def test_pooling_refuses_bad_arguments(kwargs, message):
    for cls in (MaxPool2D, AvgPool2D):
        with pytest.raises(ValueError, match=message):
            cls(**kwargs)


def test_pooling_refuses_bad_inputs():
    with pytest.raises(ValueError, match="larger than the padded input height"):
        MaxPool2D(4)(_x((1, 2, 3, 8)))
    with pytest.raises(ValueError, match="channels, height, width"):
        MaxPool2D(2)(_x((2, 8, 8)))
    with pytest.raises(ValueError, match="time, features"):
        GlobalAvgPool1D()(_x((2, 3, 4, 5)))


# ---------------------------------------------------------------- BatchNormalization
def test_batchnorm_training_normalizes_and_updates_moving_statistics():
    layer = BatchNormalization(momentum=0.9)
    x = _x((8, 3, 4, 5)) * 3 + 2
    layer.ensure_built(x.shape[1:])
    y, _ = layer.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), x.var(axis=(0, 2, 3)) / (x.var(axis=(0, 2, 3)) + 1e-3),
                               rtol=1e-4)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(layer.state["moving_mean"], 0.1 * x64.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(layer.state["moving_variance"], 0.9 + 0.1 * x64.var(axis=(0, 2, 3), ddof=1),
                               rtol=1e-5)


def test_batchnorm_inference_uses_moving_statistics():
    layer = BatchNormalization(epsilon=1e-2)
    x = _x((6, 4))
    layer.ensure_built((4,))
    layer.state["moving_mean"][...] = [1, 2, 3, 4]
    layer.state["moving_variance"][...] = [4, 1, 0.5, 2]
    layer.params["gamma"][...] = [1, 2, 3, 4]
    layer.params["beta"][...] = [0, 1, 0, -1]
    y = layer(x)
    ref = (x - [1, 2, 3, 4]) / np.sqrt(np.array([4, 1, 0.5, 2]) + 1e-2) * [1, 2, 3, 4] + [0, 1, 0, -1]
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_frozen_batchnorm_uses_moving_statistics_in_training():
    layer = BatchNormalization(trainable=False)
    x = _x((6, 3, 2, 2)) + 5
    layer.ensure_built(x.shape[1:])
    y, backward = layer.forward(x, training=True)
    np.testing.assert_allclose(y, x / np.sqrt(1 + 1e-3), rtol=1e-5)
    np.testing.assert_array_equal(layer.state["moving_mean"], 0)
    backward(np.ones_like(y))
    assert not layer.grads["gamma"].any()


@pytest.mark.parametrize("shape, axis", [((5, 3, 4, 2), 1), ((6, 4), -1), ((6, 4), 1), ((3, 5, 4), -1), ((3, 5, 4), 2)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradcheck(shape, axis, training):
    layer = BatchNormalization(axis=axis)
    x = _x(shape, seed=9, dtype=np.float64)
    layer.ensure_built(shape[1:])
    layer.params["gamma"][...] = 1 + _x(layer.params["gamma"].shape, seed=1)
    layer.params["beta"][...] = _x(layer.params["beta"].shape, seed=2)
    assert nj.gradcheck(layer, x, training=training) < 1e-6


def test_batchnorm_refuses_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="axis=0"):
        BatchNormalization(axis=0)
    with pytest.raises(ValueError, match="momentum=1.5"):
        BatchNormalization(momentum=1.5)
    with pytest.raises(ValueError, match="epsilon=0"):
        BatchNormalization(epsilon=0)
    layer = BatchNormalization()
    layer(_x((2, 3, 4, 4)))
    with pytest.raises(ValueError, match="expected 3 channels"):
        layer(_x((2, 5, 4, 4)))
    with pytest.raises(ValueError, match="axis=3 is out of range"):
        BatchNormalization(axis=3)(_x((2, 4)))


def test_batchnorm_state_is_saved_with_the_weights(tmp_path):
    nj.set_seed(0)
    model = nj.Sequential([nj.Input((2, 5, 5)), Conv2D(3, 3), BatchNormalization(), Flatten(), Dense(2)])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = _x((16, 2, 5, 5)), np.arange(16) % 2
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert model.layers[1].state["moving_mean"].any()
    model.save_weights(tmp_path / "w.safetensors")
    other = nj.Sequential([nj.Input((2, 5, 5)), Conv2D(3, 3), BatchNormalization(), Flatten(), Dense(2)])
    other.load_weights(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(other.layers[1].state["moving_variance"], model.layers[1].state["moving_variance"])
    np.testing.assert_array_equal(other.predict(x), model.predict(x))


# ---------------------------------------------------------------- models
def test_cnn_model_gradcheck():
    nj.set_seed(5)
    model = nj.Sequential([nj.Input((2, 6, 6)), Conv2D(3, 3, padding="same", activation="tanh"), AvgPool2D(2),
                           Conv2D(4, 2, activation="sigmoid"), MaxPool2D(2), BatchNormalization(), Flatten(),
                           Dense(3)])
    x = np.random.default_rng(3).permutation(4 * 72).reshape(4, 2, 6, 6) / 100.0
    assert nj.gradcheck(model, x, training=True) < 1e-5


def test_small_cnn_learns_digits():
    nj.set_seed(0)
    (x, y), (xt, yt) = nj.datasets.load_digits()
    x, xt = x.reshape(-1, 1, 8, 8), xt.reshape(-1, 1, 8, 8)
    model = nj.Sequential([nj.Input((1, 8, 8)), Conv2D(16, 3, padding="same", activation="relu"), MaxPool2D(2),
                           Conv2D(32, 3, padding="same"), BatchNormalization(), nj.layers.Activation("relu"),
                           Flatten(), Dense(10)])
    model.compile(nj.optimizers.Adam(0.003), nj.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    assert model.evaluate(xt, yt)["accuracy"] > 0.97


@pytest.mark.parametrize("channels, kernel", [(1, 3), (8, 3), (8, 1), (3, 5)])
def test_relu_keeps_nan(channels, kernel):
    """A NaN input pixel gives NaN in every relu output that reads it, whichever algorithm
    runs (direct, Winograd for 3x3 with 8+ channels, 1x1 GEMM, im2col)."""
    x = np.random.default_rng(0).standard_normal((2, channels, 7, 7)).astype(np.float32)
    x[1, 0, 3, 3] = np.nan
    layer = Conv2D(8, kernel, padding="same", activation="relu")
    layer.ensure_built(x.shape[1:])
    y, _ = layer.forward(x)  # forward: layer(x) itself refuses NaN inputs
    assert np.isfinite(y[0]).all()
    r = kernel // 2
    assert np.isnan(y[1, :, 3 - r:4 + r, 3 - r:4 + r]).all()
