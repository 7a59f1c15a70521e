"""The loss objects: lookup, configuration, target checking, values and gradients."""
import numpy as np
import pytest
from scipy.special import logsumexp

import nnjit  # noqa: F401
from nnjit import losses, runtime

ALL_CLASSES = [losses.MeanSquaredError, losses.MeanAbsoluteError, losses.Huber, losses.BinaryCrossentropy,
               losses.CategoricalCrossentropy, losses.SparseCategoricalCrossentropy]


@pytest.fixture
def floatx64():
    old = runtime.floatx()
    runtime.set_floatx("float64")
    yield
    runtime.set_floatx(old)


def softmax(z):
    return np.exp(z - logsumexp(z, axis=-1, keepdims=True))


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ---------------------------------------------------------------- get, config


@pytest.mark.parametrize("name, cls", [
    ("mse", losses.MeanSquaredError), ("mean_squared_error", losses.MeanSquaredError),
    ("mae", losses.MeanAbsoluteError), ("mean_absolute_error", losses.MeanAbsoluteError),
    ("huber", losses.Huber), ("binary_crossentropy", losses.BinaryCrossentropy),
    ("categorical_crossentropy", losses.CategoricalCrossentropy),
    ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy),
    ("SparseCategoricalCrossentropy", losses.SparseCategoricalCrossentropy),
])
def test_get_by_name(name, cls):
    loss = losses.get(name)
    assert type(loss) is cls
    assert losses.get(name) is not loss  # a fresh object each time


def test_get_instance_and_none():
    loss = losses.Huber(2.0)
    assert losses.get(loss) is loss
    assert losses.get(None) is None
    assert isinstance(losses.get(losses.MeanSquaredError), losses.MeanSquaredError)


def test_get_unknown_name_refused():
    with pytest.raises(ValueError, match=r"loss='cross_entropy'") as info:
        losses.get("cross_entropy")
    for name in ("mse", "mae", "huber", "binary_crossentropy", "categorical_crossentropy",
                 "sparse_categorical_crossentropy"):
        assert repr(name) in str(info.value)
    with pytest.raises(ValueError, match=r"my_loss='foo'"):
        losses.get("foo", argument="my_loss")


@pytest.mark.parametrize("bad", [3, 1.5, ["mse"], lambda a, b: 0.0])
def test_get_wrong_type_refused(bad):
    with pytest.raises(TypeError, match="loss="):
        losses.get(bad)


@pytest.mark.parametrize("loss", [
    losses.MeanSquaredError(), losses.MeanAbsoluteError(), losses.Huber(), losses.Huber(delta=0.25),
    losses.BinaryCrossentropy(), losses.BinaryCrossentropy(from_logits=True),
    losses.CategoricalCrossentropy(), losses.CategoricalCrossentropy(from_logits=True),
    losses.SparseCategoricalCrossentropy(), losses.SparseCategoricalCrossentropy(from_logits=True),
])
def test_config_round_trip(loss):
    config = loss.get_config()
    assert config["class_name"] == type(loss).__name__
    import json
    config = json.loads(json.dumps(config))
    again = losses.get(config)
    assert type(again) is type(loss)
    assert again.get_config() == loss.get_config()
    assert losses.deserialize({"class_name": config["class_name"],
                               "config": {k: v for k, v in config.items() if k != "class_name"}}
                              ).get_config() == loss.get_config()
    assert type(loss).from_config(config).get_config() == loss.get_config()


def test_config_contents():
    assert losses.Huber(0.5).get_config() == {"class_name": "Huber", "delta": 0.5}
    assert losses.SparseCategoricalCrossentropy(from_logits=True).get_config() == {
        "class_name": "SparseCategoricalCrossentropy", "from_logits": True}
    assert losses.MeanSquaredError().get_config() == {"class_name": "MeanSquaredError"}


def test_bad_config_refused():
    with pytest.raises(ValueError, match="class_name='Os'"):
        losses.get({"class_name": "Os"})
    with pytest.raises(ValueError, match="Huber"):
        losses.get({"class_name": "Huber", "alpha": 1})


def test_custom_loss_registers_itself():
    class ScaledMSE(losses.Loss):
        name = "scaled_mse"

        def __init__(self, scale=2.0):
            self.scale = scale

        def value_and_grad(self, y_true, y_pred):
            loss, grad = losses.MeanSquaredError().value_and_grad(y_true, y_pred)
            return self.scale * loss, self.scale * grad

        def get_config(self):
            return {"class_name": "ScaledMSE", "scale": self.scale}

    rebuilt = losses.get({"class_name": "ScaledMSE", "scale": 3.0})
    assert isinstance(rebuilt, ScaledMSE) and rebuilt.scale == 3.0
    assert rebuilt(np.ones((2, 1)), np.zeros((2, 1))) == pytest.approx(3.0)
    assert rebuilt.fused_activation is None


def test_custom_loss_cannot_shadow_builtin():
    with pytest.raises(ValueError, match="built-in"):
        class MeanSquaredError(losses.Loss):  # noqa: F811
            pass


def test_constructor_arguments_checked():
    with pytest.raises(TypeError, match="from_logits='yes'"):
        losses.BinaryCrossentropy(from_logits="yes")
    with pytest.raises(TypeError, match="from_logits=1"):
        losses.SparseCategoricalCrossentropy(from_logits=1)
    with pytest.raises(ValueError, match="delta=0"):
        losses.Huber(delta=0)
    with pytest.raises(ValueError, match="delta=nan"):
        losses.Huber(delta=float("nan"))
    with pytest.raises(TypeError, match="delta='1'"):
        losses.Huber(delta="1")


def test_fused_activation():
    assert losses.CategoricalCrossentropy().fused_activation == "softmax"
    assert losses.SparseCategoricalCrossentropy().fused_activation == "softmax"
    assert losses.BinaryCrossentropy().fused_activation == "sigmoid"
    for loss in (losses.CategoricalCrossentropy(from_logits=True),
                 losses.SparseCategoricalCrossentropy(from_logits=True),
                 losses.BinaryCrossentropy(from_logits=True),
                 losses.MeanSquaredError(), losses.MeanAbsoluteError(), losses.Huber()):
        assert loss.fused_activation is None
    with pytest.raises(NotImplementedError):
        losses.MeanSquaredError().value_and_grad_from_logits(np.zeros((2, 1)), np.zeros((2, 1)))


def test_repr_and_docstrings():
    assert repr(losses.Huber(2.0)) == "Huber(delta=2.0)"
    assert repr(losses.CategoricalCrossentropy()) == "CategoricalCrossentropy(from_logits=False)"
    for cls in ALL_CLASSES + [losses.Loss]:
        assert cls.__doc__ and len(cls.__doc__) > 40


# ---------------------------------------------------------------- values (Keras' documented examples)


def test_keras_reference_values():
    y_true = np.array([[0.0, 1.0], [0.0, 0.0]])
    y_pred = np.array([[0.6, 0.4], [0.4, 0.6]])
    assert losses.get("mse")(y_true, np.array([[1.0, 1.0], [1.0, 0.0]])) == pytest.approx(0.5)
    assert losses.get("mae")(y_true, np.array([[1.0, 1.0], [1.0, 0.0]])) == pytest.approx(0.5)
    assert losses.get("huber")(y_true, y_pred) == pytest.approx(0.155, abs=1e-6)
    assert losses.get("binary_crossentropy")(y_true, y_pred) == pytest.approx(0.81492424, rel=1e-5)
    probs = np.array([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]])
    assert losses.get("categorical_crossentropy")(np.array([[0, 1, 0], [0, 0, 1]]), probs) == \
        pytest.approx(1.1769392, rel=1e-5)
    assert losses.get("sparse_categorical_crossentropy")(np.array([1, 2]), probs) == pytest.approx(1.1769392, rel=1e-5)
    logits = np.array([[-18.6, 0.51, 2.94, -12.8]]).T
    assert losses.BinaryCrossentropy(from_logits=True)(np.array([0, 1, 0, 0]), logits) == \
        pytest.approx(0.865458, rel=1e-5)


def test_call_returns_python_float_and_matches_numpy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(16, 5))
    y = rng.integers(0, 5, 16)
    value = losses.SparseCategoricalCrossentropy(from_logits=True)(y, z)
    assert type(value) is float
    expected = np.mean(logsumexp(z, axis=1) - z[np.arange(16), y])
    assert value == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- value_and_grad: shapes, dtypes, consistency


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("out_shape", [(8, 3), (4, 5, 3), (2, 3, 2, 3)])
def test_value_and_grad_shape_and_dtype(dtype, out_shape):
    rng = np.random.default_rng(1)
    z = rng.normal(size=out_shape).astype(dtype)
    p = softmax(z.astype(np.float64)).astype(dtype)
    labels = rng.integers(0, out_shape[-1], out_shape[:-1])
    dense = rng.uniform(size=out_shape)
    for loss, target, pred in [
        (losses.MeanSquaredError(), dense, z), (losses.MeanAbsoluteError(), dense, z), (losses.Huber(), dense, z),
        (losses.BinaryCrossentropy(), dense, p), (losses.BinaryCrossentropy(from_logits=True), dense, z),
        (losses.CategoricalCrossentropy(), softmax(dense), p),
        (losses.CategoricalCrossentropy(from_logits=True), softmax(dense), z),
        (losses.SparseCategoricalCrossentropy(), labels, p),
        (losses.SparseCategoricalCrossentropy(from_logits=True), labels, z),
    ]:
        y = loss.prepare_targets(target, out_shape[1:])
        value, grad = loss.value_and_grad(y, pred)
        assert type(value) is float and np.isfinite(value)
        assert grad.shape == pred.shape and grad.dtype == pred.dtype
        if loss.fused_activation is not None:
            value2, dlogits, probs = loss.value_and_grad_from_logits(y, z)
            assert dlogits.shape == z.shape and dlogits.dtype == z.dtype
            assert probs.shape == z.shape and probs.dtype == z.dtype


def test_sequence_output_matches_flattened_rows():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(4, 6, 5))
    labels = rng.integers(0, 5, (4, 6))
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    y = loss.prepare_targets(labels, (6, 5))
    assert y.shape == (24,) and y.dtype == np.int64
    value, grad = loss.value_and_grad(y, z)
    flat_value, flat_grad = loss.value_and_grad(labels.reshape(-1), z.reshape(-1, 5))
    assert value == pytest.approx(flat_value, rel=1e-14)
    np.testing.assert_allclose(grad.reshape(-1, 5), flat_grad, rtol=1e-14)
    expected = np.mean(logsumexp(z, axis=-1) - np.take_along_axis(z, labels[..., None], -1)[..., 0])
    assert value == pytest.approx(expected, rel=1e-12)
    assert loss(labels, z) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("sparse", [False, True])
def test_fused_softmax_equals_softmax_then_probability_loss(floatx64, sparse):
    """The fused kernel's gradient is the probability loss's gradient pushed through the
    softmax Jacobian, and both give the same value away from clipping."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=(10, 4))
    labels = rng.integers(0, 4, 10)
    loss = losses.SparseCategoricalCrossentropy() if sparse else losses.CategoricalCrossentropy()
    y = loss.prepare_targets(labels if sparse else np.eye(4)[labels] * 0.9 + 0.025, (4,))
    value, dlogits, probs = loss.value_and_grad_from_logits(y, z)
    p = softmax(z)
    np.testing.assert_allclose(probs, p, rtol=1e-13)
    value_p, dprobs = loss.value_and_grad(y, p)
    assert value == pytest.approx(value_p, rel=1e-12)
    through_softmax = p * (dprobs - np.sum(dprobs * p, axis=1, keepdims=True))
    np.testing.assert_allclose(dlogits, through_softmax, rtol=1e-9, atol=1e-14)


def test_fused_sigmoid_equals_sigmoid_then_bce(floatx64):
    rng = np.random.default_rng(4)
    z = rng.normal(size=(12, 2))
    loss = losses.BinaryCrossentropy()
    y = loss.prepare_targets(rng.integers(0, 2, (12, 2)), (2,))
    value, dlogits, probs = loss.value_and_grad_from_logits(y, z)
    p = sigmoid(z)
    np.testing.assert_allclose(probs, p, rtol=1e-13)
    value_p, dprobs = loss.value_and_grad(y, p)
    assert value == pytest.approx(value_p, rel=1e-12)
    np.testing.assert_allclose(dlogits, dprobs * p * (1 - p), rtol=1e-9, atol=1e-15)
    # and equal to from_logits=True
    value_l, grad_l = losses.BinaryCrossentropy(from_logits=True).value_and_grad(y, z)
    assert value_l == value
    np.testing.assert_array_equal(grad_l, dlogits)


# ---------------------------------------------------------------- finite differences through the public objects


def _numeric_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for k in range(x.size):
        old = x.flat[k]
        x.flat[k] = old + h
        up = f(x)
        x.flat[k] = old - h
        down = f(x)
        x.flat[k] = old
        g.flat[k] = (up - down) / (2 * h)
    return g


GRAD_CASES = ([(case, False) for case in ("mse", "mae", "huber", "bce", "bce_logits", "cce", "cce_logits",
                                           "scce", "scce_logits")]
              + [(case, True) for case in ("bce", "cce", "scce")])  # value_and_grad_from_logits


@pytest.mark.parametrize("case, fused", GRAD_CASES)
def test_gradient_central_differences(floatx64, case, fused):
    rng = np.random.default_rng(5)
    shape = (3, 4, 3)  # a sequence output: (batch, time, classes)
    z = rng.normal(size=shape)
    loss, target, pred = {
        "mse": (losses.MeanSquaredError(), rng.normal(size=shape), z),
        "mae": (losses.MeanAbsoluteError(), z + rng.choice([-1, 1], size=shape) * rng.uniform(0.1, 1, shape), z),
        "huber": (losses.Huber(0.8), z + rng.choice([-1, 1], size=shape) * rng.choice([0.3, 1.5], size=shape), z),
        "bce": (losses.BinaryCrossentropy(), rng.uniform(size=shape), sigmoid(z)),
        "bce_logits": (losses.BinaryCrossentropy(from_logits=True), rng.uniform(size=shape), z),
        "cce": (losses.CategoricalCrossentropy(), softmax(rng.normal(size=shape)), softmax(z)),
        "cce_logits": (losses.CategoricalCrossentropy(from_logits=True), softmax(rng.normal(size=shape)), z),
        "scce": (losses.SparseCategoricalCrossentropy(), rng.integers(0, 3, shape[:-1]), softmax(z)),
        "scce_logits": (losses.SparseCategoricalCrossentropy(from_logits=True), rng.integers(0, 3, shape[:-1]), z),
    }[case]
    assert (loss.fused_activation is not None) == fused or not fused
    y = loss.prepare_targets(target, shape[1:])
    if fused:
        grad = loss.value_and_grad_from_logits(y, z)[1]
        num = _numeric_grad(lambda v: loss.value_and_grad_from_logits(y, v)[0], z.copy())
    else:
        grad = loss.value_and_grad(y, pred)[1]
        num = _numeric_grad(lambda v: loss.value_and_grad(y, v)[0], pred.copy())
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------- PyTorch


def test_losses_against_torch_on_sequences():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(6)
    z = rng.normal(size=(5, 7, 4)).astype(np.float32)
    labels = rng.integers(0, 4, (5, 7))
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    value, grad = loss.value_and_grad(loss.prepare_targets(labels, (7, 4)), z)
    zt = torch.tensor(z, requires_grad=True)
    ref = F.cross_entropy(zt.reshape(-1, 4), torch.tensor(labels.reshape(-1)))
    ref.backward()
    assert value == pytest.approx(ref.item(), rel=1e-5)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-5, atol=1e-7)

    t = rng.uniform(size=z.shape).astype(np.float32)
    for ours, theirs in [(losses.BinaryCrossentropy(from_logits=True), F.binary_cross_entropy_with_logits),
                         (losses.MeanSquaredError(), F.mse_loss), (losses.Huber(0.5),
                                                                   lambda a, b: F.huber_loss(a, b, delta=0.5))]:
        value, grad = ours.value_and_grad(ours.prepare_targets(t, (7, 4)), z)
        zt = torch.tensor(z, requires_grad=True)
        ref = theirs(zt, torch.tensor(t))
        ref.backward()
        assert value == pytest.approx(ref.item(), rel=1e-5)
        np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------- prepare_targets


def test_sparse_labels_accepted_forms():
    loss = losses.SparseCategoricalCrossentropy()
    expected = np.array([3, 0, 9])
    for y in ([3, 0, 9], np.array([3, 0, 9], dtype=np.int32), np.array([[3], [0], [9]]),
              np.array([3.0, 0.0, 9.0]), np.array([3, 0, 9], dtype=np.uint8)):
        out = loss.prepare_targets(y, (10,))
        assert out.dtype == np.int64 and out.flags.c_contiguous
        np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(loss.prepare_targets(np.array([True, False]), (2,)), [1, 0])
    out = loss.prepare_targets(np.arange(6).reshape(2, 3, 1) % 4, (3, 4))
    np.testing.assert_array_equal(out, [0, 1, 2, 3, 0, 1])


def test_sparse_label_out_of_range_message():
    loss = losses.SparseCategoricalCrossentropy()
    y = np.array([0, 1, 2, 3, 4, 12, 5])
    with pytest.raises(ValueError, match=r"^y: expected integer class labels in \[0, 10\) for "
                                         r"sparse_categorical_crossentropy\. Received: 12 at index 5$"):
        loss.prepare_targets(y, (10,))
    with pytest.raises(ValueError, match=r"y_val: .*Received: -1 at index 2"):
        loss.prepare_targets(np.array([0, 1, -1]), (10,), argument="y_val")
    with pytest.raises(ValueError, match=r"Received: 4 at index \(1, 2\)"):
        loss.prepare_targets(np.array([[0, 1, 2], [3, 0, 4]]), (3, 4))


@pytest.mark.parametrize("bad, shown", [(2.5, "2.5"), (np.nan, "nan"), (np.inf, "inf")])
def test_sparse_label_not_integer_refused(bad, shown):
    y = np.array([1.0, 0.0, bad])
    with pytest.raises(ValueError, match=rf"y: expected integer class labels .* Received: {shown} at index 2"):
        losses.SparseCategoricalCrossentropy().prepare_targets(y, (10,))


def test_sparse_label_bad_type_or_shape_refused():
    loss = losses.SparseCategoricalCrossentropy()
    with pytest.raises(TypeError, match="y: .*dtype <U1"):
        loss.prepare_targets(np.array(["a", "b"]), (10,))
    with pytest.raises(ValueError, match=r"y: .*shape \(N,\) or \(N, 1\).*Received: shape \(3, 2\)"):
        loss.prepare_targets(np.zeros((3, 2)), (10,))
    with pytest.raises(ValueError, match="one-hot encoded: use categorical_crossentropy"):
        loss.prepare_targets(np.eye(10)[:3], (10,))
    with pytest.raises(ValueError, match="y: expected a non-empty"):
        loss.prepare_targets(np.zeros(0, dtype=int), (10,))
    with pytest.raises(ValueError, match="y: .*scalar 3"):
        loss.prepare_targets(3, (10,))


def test_dense_targets_converted_to_floatx():
    y = np.array([[0, 1], [1, 0]])
    out = losses.CategoricalCrossentropy().prepare_targets(y, (2,))
    assert out.dtype == np.float32 and out.flags.c_contiguous
    old = runtime.floatx()
    try:
        runtime.set_floatx("float64")
        assert losses.MeanSquaredError().prepare_targets(y, (2,)).dtype == np.float64
    finally:
        runtime.set_floatx(old)
    out = losses.BinaryCrossentropy().prepare_targets([0, 1, 1], (1,))
    assert out.shape == (3, 1)
    non_contiguous = np.asfortranarray(np.ones((4, 3)))
    assert losses.MeanSquaredError().prepare_targets(non_contiguous, (3,)).flags.c_contiguous


def test_dense_targets_refused():
    with pytest.raises(ValueError, match=r"y: expected targets of shape \(N, 3\).*Received: shape \(4, 2\)"):
        losses.MeanSquaredError().prepare_targets(np.zeros((4, 2)), (3,))
    with pytest.raises(ValueError, match=r"integer class labels: one-hot encode them or use sparse"):
        losses.CategoricalCrossentropy().prepare_targets(np.array([1, 2, 0]), (3,))
    with pytest.raises(ValueError, match=r"y: expected finite target values for mse\. Received: nan at index \(1, 0\)"):
        losses.MeanSquaredError().prepare_targets(np.array([[0.0], [np.nan]]), (1,))
    with pytest.raises(ValueError, match=r"Received: inf at index 1"):
        losses.MeanAbsoluteError().prepare_targets(np.array([0.0, np.inf]), (1,))
    with pytest.raises(ValueError, match=r"Received: 1e\+300 at index 0 \(too large for float32\)"):
        losses.MeanSquaredError().prepare_targets(np.array([1e300]), (1,))
    with pytest.raises(ValueError, match=r"y_val: expected target values in \[0, 1\] for binary_crossentropy\. "
                                         r"Received: 2\.0 at index 1"):
        losses.BinaryCrossentropy().prepare_targets(np.array([0.0, 2.0]), (1,), argument="y_val")
    with pytest.raises(ValueError, match=r"Received: -0\.5 at index \(1, 1\)"):
        losses.CategoricalCrossentropy().prepare_targets(np.array([[1.0, 0.0], [0.5, -0.5]]), (2,))
    with pytest.raises(TypeError, match="y: .*dtype object"):
        losses.MeanSquaredError().prepare_targets(np.array([{}, {}]), (1,))
    with pytest.raises(ValueError, match="y: .*cannot be converted"):
        losses.MeanSquaredError().prepare_targets([[1.0], [2.0, 3.0]], (1,))


def test_output_shape_with_unknown_dimension():
    loss = losses.SparseCategoricalCrossentropy()
    np.testing.assert_array_equal(loss.prepare_targets(np.zeros((2, 5), dtype=int), (None, 3)), np.zeros(10))
    assert losses.MeanSquaredError().prepare_targets(np.zeros((2, 5, 3)), (None, 3)).shape == (2, 5, 3)


def test_call_checks_arguments():
    loss = losses.CategoricalCrossentropy()
    with pytest.raises(ValueError, match="y_true: expected targets of shape"):
        loss(np.zeros((3, 2)), np.full((3, 4), 0.25))
    with pytest.raises(ValueError, match="same number of samples"):
        loss(np.eye(4)[:3], np.full((2, 4), 0.25))
    with pytest.raises(ValueError, match="same number of samples"):
        losses.SparseCategoricalCrossentropy()(np.array([0, 1, 2]), np.full((2, 4), 0.25))
    with pytest.raises(ValueError, match="y_pred: expected predictions with a class axis"):
        losses.SparseCategoricalCrossentropy()(np.array([0, 1]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"y_true: expected integer class labels in \[0, 4\)"):
        losses.SparseCategoricalCrossentropy()(np.array([0, 4]), np.full((2, 4), 0.25))
    with pytest.raises(TypeError, match="y_pred"):
        losses.MeanSquaredError()(np.zeros(2), np.array(["a", "b"]))
    # integer predictions are accepted and converted
    assert losses.MeanSquaredError()(np.zeros(2), np.array([1, 3])) == pytest.approx(5.0)


def test_per_step_path_tolerates_unprepared_but_compatible_targets():
    """value_and_grad accepts targets in another float dtype or integer labels of another
    integer dtype; it converts rather than recompiling kernels for them."""
    z = np.random.default_rng(7).normal(size=(6, 3)).astype(np.float32)
    value, grad = losses.MeanSquaredError().value_and_grad(np.zeros((6, 3)), z)
    assert grad.dtype == np.float32
    assert value == pytest.approx(float(np.mean(z.astype(np.float64) ** 2)), rel=1e-6)
    value, grad = losses.SparseCategoricalCrossentropy(from_logits=True).value_and_grad(
        np.array([0, 1, 2, 0, 1, 2], dtype=np.int32), z)
    assert np.isfinite(value) and grad.dtype == np.float32
    # non-contiguous predictions
    zf = np.asfortranarray(z)
    value2, grad2 = losses.SparseCategoricalCrossentropy(from_logits=True).value_and_grad(
        np.array([0, 1, 2, 0, 1, 2]), zf)
    assert value2 == value
    np.testing.assert_array_equal(grad2, grad)
