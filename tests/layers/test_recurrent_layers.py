"""Embedding, SimpleRNN, LSTM, GRU and Bidirectional through the public API."""
import numpy as np
import pytest

import nnjit as nj
from nnjit.layers import GRU, LSTM, Bidirectional, Dense, Embedding, SimpleRNN


def _x(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def reference(layer, x, states=None, mask=None):
    """Step-by-step NumPy recurrence with the API's formulas; returns (outputs, finals)
    with outputs in processing order."""
    p = {k: v.astype(np.float64) for k, v in layer.params.items()}
    n, steps, _ = x.shape
    u = layer.units
    h = np.zeros((n, u)) if states is None else states[0].astype(np.float64)
    c = np.zeros((n, u)) if states is None or len(states) < 2 else states[1].astype(np.float64)
    b = p.get("bias", 0.0)
    outs = []
    order = range(steps - 1, -1, -1) if layer.go_backwards else range(steps)
    for t in order:
        xt = x[:, t].astype(np.float64)
        if isinstance(layer, LSTM):
            z = xt @ p["kernel"] + h @ p["recurrent_kernel"] + b
            i, f, g, o = _sigmoid(z[:, :u]), _sigmoid(z[:, u:2 * u]), np.tanh(z[:, 2 * u:3 * u]), _sigmoid(z[:, 3 * u:])
            c_new = f * c + i * g
            h_new = o * np.tanh(c_new)
        elif isinstance(layer, GRU):
            xz = xt @ p["kernel"] + b
            hz = h @ p["recurrent_kernel"] + p.get("recurrent_bias", 0.0)
            r = _sigmoid(xz[:, :u] + hz[:, :u])
            zg = _sigmoid(xz[:, u:2 * u] + hz[:, u:2 * u])
            nn = np.tanh(xz[:, 2 * u:] + r * hz[:, 2 * u:])
            h_new, c_new = (1 - zg) * nn + zg * h, c
        else:
            h_new, c_new = np.tanh(xt @ p["kernel"] + h @ p["recurrent_kernel"] + b), c
        if mask is not None:
            keep = mask[:, t:t + 1].astype(bool)
            h_new, c_new = np.where(keep, h_new, h), np.where(keep, c_new, c)
            outs.append(np.where(keep, h_new, 0.0))
        else:
            outs.append(h_new)
        h, c = h_new, c_new
    return np.stack(outs, axis=1), ([h, c] if isinstance(layer, LSTM) else [h])


CELLS = [SimpleRNN, LSTM, GRU]


@pytest.mark.parametrize("cell", CELLS)
def test_parameter_shapes_follow_api(cell):
    layer = cell(6)
    layer(_x((2, 5, 3), dtype=np.float32))
    gates = {SimpleRNN: 1, LSTM: 4, GRU: 3}[cell]
    assert layer.params["kernel"].shape == (3, gates * 6)
    assert layer.params["recurrent_kernel"].shape == (6, gates * 6)
    assert layer.params["bias"].shape == (gates * 6,)
    if cell is GRU:
        assert layer.params["recurrent_bias"].shape == (18,)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_outputs_match_step_reference(cell, go_backwards, return_sequences):
    nj.set_seed(1)
    layer = cell(5, return_sequences=return_sequences, return_state=True, go_backwards=go_backwards)
    x = _x((3, 6, 4), seed=2, dtype=np.float32)
    layer.ensure_built(x.shape[1:])
    if "bias" in layer.params:
        layer.params["bias"][...] = _x(layer.params["bias"].shape, seed=3) * 0.3
    if "recurrent_bias" in layer.params:
        layer.params["recurrent_bias"][...] = _x(layer.params["recurrent_bias"].shape, seed=4) * 0.3
    result = layer(x)
    outs, finals = reference(layer, x)
    expected = outs if return_sequences else outs[:, -1]
    np.testing.assert_allclose(result[0], expected, rtol=1e-4, atol=1e-5)
    assert len(result) == 1 + len(finals)
    for got, want in zip(result[1:], finals):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_initial_state_is_used_and_gets_a_gradient(cell):
    nj.set_seed(2)
    layer = cell(4, return_sequences=True)
    x = _x((2, 5, 3), seed=5)
    states = [_x((2, 4), seed=6 + i) for i in range(2 if cell is LSTM else 1)]
    y = layer(x, initial_state=states if cell is LSTM else states[0])
    np.testing.assert_allclose(y, reference(layer, x, states)[0], rtol=1e-4, atol=1e-5)
    assert nj.gradcheck(layer, [x] + states) < 1e-6


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("go_backwards", [False, True])
def test_masked_steps_carry_the_state_and_output_zero(cell, go_backwards):
    nj.set_seed(3)
    layer = cell(4, return_sequences=True, return_state=True, go_backwards=go_backwards)
    x = _x((3, 5, 2), seed=7, dtype=np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 1, 0, 1]], dtype=np.uint8)
    layer.ensure_built(x.shape[1:])
    y, _ = layer.forward(x, mask=mask)
    outs, finals = reference(layer, x, mask=mask)
    np.testing.assert_allclose(y[0], outs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(y[1], finals[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("kwargs", [dict(), dict(return_sequences=True, go_backwards=True)])
def test_gradcheck_through_time(cell, kwargs):
    nj.set_seed(4)
    assert nj.gradcheck(cell(3, **kwargs), _x((2, 6, 4), seed=8)) < 1e-6


def test_gradcheck_with_return_state():
    nj.set_seed(5)
    assert nj.gradcheck(LSTM(3, return_state=True), _x((2, 4, 3), seed=9)) < 1e-6


@pytest.mark.parametrize("cell", CELLS)
def test_padded_batch_equals_separate_sequences(cell):
    """With Embedding(mask_zero=True), a short sequence padded with zeros gives the same
    last output as the unpadded sequence run alone."""
    nj.set_seed(6)
    model = nj.Sequential([nj.Input((6,)), Embedding(10, 4, mask_zero=True), cell(5), Dense(2)])
    padded = np.array([[3, 1, 4, 1, 5, 9], [2, 6, 5, 0, 0, 0]])
    short = np.array([[2, 6, 5]])
    both = model.predict(padded)
    alone = nj.Sequential([nj.Input((3,))] + model.layers).predict(short)
    np.testing.assert_allclose(both[1], alone[0], rtol=1e-5, atol=1e-6)


def test_torch_layout_agrees():
    torch = pytest.importorskip("torch")
    nj.set_seed(7)
    x = _x((2, 5, 3), seed=10, dtype=np.float32)
    for cell, tcls in ((LSTM, torch.nn.LSTM), (GRU, torch.nn.GRU), (SimpleRNN, torch.nn.RNN)):
        layer = cell(4, return_sequences=True)
        layer.ensure_built(x.shape[1:])
        ref = tcls(3, 4, batch_first=True)
        with torch.no_grad():
            ref.weight_ih_l0.copy_(torch.from_numpy(layer.params["kernel"].T.copy()))
            ref.weight_hh_l0.copy_(torch.from_numpy(layer.params["recurrent_kernel"].T.copy()))
            ref.bias_ih_l0.copy_(torch.from_numpy(layer.params["bias"]))
            rb = layer.params.get("recurrent_bias", np.zeros_like(layer.params["bias"]))
            ref.bias_hh_l0.copy_(torch.from_numpy(rb))
            expected = ref(torch.from_numpy(x))[0].numpy()
        np.testing.assert_allclose(layer(x), expected, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- Bidirectional
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave"])
def test_bidirectional_merges_both_directions(merge_mode):
    nj.set_seed(8)
    bi = Bidirectional(GRU(3, return_sequences=True), merge_mode=merge_mode)
    x = _x((2, 4, 2), seed=11, dtype=np.float32)
    y = bi(x)
    fwd = reference(bi.forward_layer, x)[0]
    bwd = reference(bi.backward_layer, x)[0][:, ::-1]
    expected = {"concat": np.concatenate([fwd, bwd], -1), "sum": fwd + bwd, "mul": fwd * bwd,
                "ave": (fwd + bwd) / 2}[merge_mode]
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    assert set(bi.params) == {f"{d}_{k}" for d in ("forward", "backward")
                              for k in ("kernel", "recurrent_kernel", "bias", "recurrent_bias")}


@pytest.mark.parametrize("merge_mode", ["concat", "mul"])
def test_bidirectional_gradcheck(merge_mode):
    nj.set_seed(9)
    assert nj.gradcheck(Bidirectional(LSTM(3, return_sequences=True), merge_mode), _x((2, 5, 2), seed=12)) < 1e-6
    assert nj.gradcheck(Bidirectional(SimpleRNN(2), merge_mode), _x((2, 5, 2), seed=13)) < 1e-6


def test_bidirectional_trains_in_a_model():
    nj.set_seed(10)
    model = nj.Sequential([nj.Input((5, 3)), Bidirectional(LSTM(4)), Dense(2)])
    model.compile("adam", nj.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = model.layers[0].params["forward_kernel"].copy()
    model.fit(_x((8, 5, 3), dtype=np.float32), np.arange(8) % 2, epochs=1, verbose=0)
    assert not np.array_equal(model.layers[0].params["forward_kernel"], before)
    np.testing.assert_array_equal(model.layers[0].forward_layer.params["kernel"],
                                  model.layers[0].params["forward_kernel"])


# ---------------------------------------------------------------- Embedding
def test_embedding_lookup_and_gradient():
    nj.set_seed(11)
    layer = Embedding(7, 3)
    ids = np.array([[1, 2, 2], [6, 0, 1]])
    layer.ensure_built(ids.shape[1:])
    y, backward = layer.forward(ids)
    np.testing.assert_array_equal(y, layer.params["embeddings"][ids])
    dy = _x(y.shape, seed=14, dtype=np.float32)
    backward(dy)
    expected = np.zeros((7, 3), np.float32)
    np.add.at(expected, ids, dy)
    np.testing.assert_allclose(layer.grads["embeddings"], expected, rtol=1e-6)


def test_embedding_refuses_bad_ids():
    layer = Embedding(5, 2)
    with pytest.raises(ValueError, match=r"\[0, 5\).*=7"):
        layer(np.array([[1, 7]]))
    with pytest.raises(ValueError, match=r"=-1"):
        layer(np.array([[-1, 2]]))
    with pytest.raises(ValueError, match="must be integers.*1.5"):
        layer(np.array([[1.5, 2.0]]))
    with pytest.raises(ValueError, match="input_dim=0"):
        Embedding(0, 3)


def test_model_refuses_out_of_range_tokens_before_training():
    model = nj.Sequential([nj.Input((4,)), Embedding(5, 3), LSTM(2), Dense(2)])
    model.compile("adam", nj.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="token ids"):
        model.fit(np.array([[1, 2, 3, 9]] * 4), np.zeros(4, np.int64), verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("cell", CELLS)
def test_recurrent_refuses_bad_inputs(cell):
    layer = cell(3)
    layer(_x((2, 4, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="expected 5 features.*\\(None, 4, 6\\)"):
        layer(_x((2, 4, 6), dtype=np.float32))
    with pytest.raises(ValueError, match="batch, time, features"):
        layer(_x((2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="initial state"):
        layer(_x((2, 4, 5), dtype=np.float32), initial_state=[np.zeros((2, 7), np.float32)] * layer._state_count)
    with pytest.raises(ValueError, match="units=0"):
        cell(0)


def test_mask_shape_is_checked():
    layer = GRU(2)
    layer.ensure_built((3, 2))
    with pytest.raises(ValueError, match="mask of shape \\(2, 3\\)"):
        layer.forward(_x((2, 3, 2)), mask=np.ones((2, 4)))


# ---------------------------------------------------------------- learning
def test_memory_task_needs_a_recurrent_state():
    """Classify a sequence by its FIRST element, followed by noise: a model that sees only
    the last step (no memory) stays at chance; an LSTM learns it."""
    rng = np.random.default_rng(0)
    n, steps = 512, 8
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, steps, 1)).astype(np.float32) * 0.5
    x[:, 0, 0] = np.where(y == 1, 1.0, -1.0)
    x_test, y_test = x[400:], y[400:]
    x, y = x[:400], y[:400]

    nj.set_seed(0)
    lstm = nj.Sequential([nj.Input((steps, 1)), LSTM(8), Dense(2)])
    lstm.compile(nj.optimizers.Adam(0.02), nj.losses.SparseCategoricalCrossentropy(from_logits=True),
                 metrics=["accuracy"])
    lstm.fit(x, y, epochs=15, batch_size=32, verbose=0)

    memoryless = nj.Sequential([nj.Input((1,)), Dense(8, activation="tanh"), Dense(2)])
    memoryless.compile(nj.optimizers.Adam(0.02), nj.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"])
    memoryless.fit(x[:, -1], y, epochs=15, batch_size=32, verbose=0)

    assert lstm.evaluate(x_test, y_test)["accuracy"] > 0.95
    assert memoryless.evaluate(x_test[:, -1], y_test)["accuracy"] < 0.7


@pytest.mark.skipif(__import__("numba").config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
@pytest.mark.parametrize("go_backwards", [False, True])
def test_wide_lstm_splits_its_units_across_threads(monkeypatch, go_backwards):
    """LSTM(64) on 2 threads takes the kernel path that splits each step by groups of units;
    its outputs, states and gradients match the step reference and the one-thread path."""
    from nnjit.kernels import recurrent as K

    groups_used = []
    original = K.lstm_forward

    def recording(*args):
        groups_used.append(args[-1])
        return original(*args)

    monkeypatch.setattr(K, "lstm_forward", recording)
    nj.set_seed(3)
    layer = LSTM(64, return_sequences=True, return_state=True, go_backwards=go_backwards)
    x = _x((24, 40, 16), seed=7, dtype=np.float32)
    mask = np.ones((24, 40), dtype=bool)
    mask[3, 25:] = False
    mask[5, :] = False
    results = {}
    previous = nj.get_num_threads()
    try:
        for threads in (1, 2):
            nj.set_num_threads(threads)
            (y, h, c), backward = layer.forward(x, training=True, mask=mask)
            layer.grads["kernel"][...] = 0
            layer.grads["recurrent_kernel"][...] = 0
            layer.grads["bias"][...] = 0
            dx = backward([np.cos(y), np.sin(h), np.cos(c)])
            results[threads] = [y, h, c, dx] + [layer.grads[k].copy() for k in ("kernel", "recurrent_kernel", "bias")]
    finally:
        nj.set_num_threads(previous)
    assert groups_used == [1, 2]
    outs, finals = reference(layer, x, mask=mask.astype(np.uint8))
    np.testing.assert_allclose(results[2][0], outs, rtol=1e-4, atol=1e-5)
    for got, want in zip(results[2][1:3], finals):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    for one, two in zip(results[1], results[2]):
        scale = float(np.abs(one).max()) + 1.0
        np.testing.assert_allclose(two, one, rtol=0, atol=2e-5 * scale)
