"""Whole-model files: model.save and nj.load_model.

Saving then loading must reproduce predictions bit for bit and, with the optimizer state,
training must go on exactly as the original model's would (same losses, same weights);
damaged or mismatched files are refused with an error that names the problem, and a
failed save leaves the old file as it was."""
import json
import os

import numpy as np
import pytest

import nnjit as nj
from nnjit import io as nio
from nnjit.layers import (GRU, LSTM, Activation, Add, AvgPool2D, BatchNormalization, Bidirectional, Concatenate,
                          Conv2D, Dense, Dropout, Embedding, Flatten, GlobalAvgPool1D, GlobalAvgPool2D, InputLayer,
                          LayerNormalization, MaxPool2D, MultiHeadAttention, Multiply, PositionalEmbedding, Reshape,
                          SimpleRNN, TransformerEncoder)
from nnjit.layers.base import get_layer_class
from nnjit.models import saving


def _rng(seed=0):
    return np.random.default_rng(seed)


def _x(shape, seed=0):
    return _rng(seed).standard_normal(shape).astype(np.float32)


def _assert_same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for u, v in zip(wa, wb):
        assert u.dtype == v.dtype
        np.testing.assert_array_equal(u, v)


def _continues_exactly(model, x, y, path, batch_size=8, epochs=2):
    """Train, save, load; then both models train on with the same seed: every loss and
    every weight must be equal, bit for bit."""
    nj.set_seed(11)
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    model.save(path)
    loaded = nj.load_model(path)
    assert type(loaded) is type(model)
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    _assert_same_weights(model, loaded)
    for a, b in zip(_as_list(model.predict(x)), _as_list(loaded.predict(x))):
        np.testing.assert_array_equal(a, b)
    assert loaded.optimizer.iterations == model.optimizer.iterations > 0
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    histories = []
    for m in (model, loaded):
        nj.set_seed(12)
        histories.append(m.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0).history)
        nj.set_seed(13)
        histories.append(m.train_on_batch(_head(x, batch_size), _head(y, batch_size)))
    assert histories[0] == histories[2] and histories[1] == histories[3]
    _assert_same_weights(model, loaded)
    for key, value in model.optimizer.get_state().items():
        np.testing.assert_array_equal(value, loaded.optimizer.get_state()[key])
    return loaded


def _as_list(v):
    return v if isinstance(v, list) else [v]


def _head(y, n):
    return [a[:n] for a in y] if isinstance(y, list) else y[:n]


# ----------------------------------------------------------------- save, load, train on
def test_mlp_with_a_schedule_continues_exactly(tmp_path):
    nj.set_seed(0)
    model = nj.Sequential([nj.Input((10,)), Dense(16, activation="relu"), Dense(16, activation="tanh"),
                           Dense(4, activation="softmax")])
    schedule = nj.optimizers.schedules.ExponentialDecay(0.01, decay_steps=3, decay_rate=0.5)
    model.compile(nj.optimizers.Adam(schedule), "sparse_categorical_crossentropy", metrics=["accuracy"])
    loaded = _continues_exactly(model, _x((40, 10)), np.arange(40) % 4, tmp_path / "mlp.nnjit")
    assert loaded.optimizer.current_learning_rate() == model.optimizer.current_learning_rate() < 0.01
    assert loaded.compiled_metrics[0].name == "accuracy"


def test_cnn_with_batch_norm_continues_exactly(tmp_path):
    nj.set_seed(1)
    model = nj.Sequential([
        nj.Input((2, 8, 8)), Conv2D(4, 3, padding="same"), BatchNormalization(momentum=0.9), Activation("relu"),
        MaxPool2D(2), Dropout(0.25), Conv2D(6, 3, strides=2, padding=1, activation="relu"), GlobalAvgPool2D(),
        Dense(3, activation="softmax")])
    model.compile("rmsprop", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _x((24, 2, 8, 8), 1), np.arange(24) % 3
    loaded = _continues_exactly(model, x, y, tmp_path / "cnn.nnjit")
    bn = loaded.layers[1]
    assert set(bn.state) == {"moving_mean", "moving_variance"}
    assert not np.allclose(bn.state["moving_mean"], 0)  # the trained statistics, not fresh zeros


def test_lstm_with_embedding_continues_exactly(tmp_path):
    nj.set_seed(2)
    model = nj.Sequential([nj.Input((7,)), Embedding(20, 8, mask_zero=True), LSTM(6, return_sequences=True),
                           GRU(5), Dense(1, activation="sigmoid")])
    model.compile(nj.optimizers.AdamW(0.01, clipnorm=1.0), "binary_crossentropy", metrics=["accuracy", "auc"])
    ids = _rng(2).integers(0, 20, size=(32, 7))
    ids[:8, 5:] = 0  # padded ends
    y = (ids.sum(1) % 2).astype(np.float32).reshape(-1, 1)
    _continues_exactly(model, ids, y, tmp_path / "lstm.nnjit")


def test_functional_model_with_skip_shared_layer_and_two_outputs_continues_exactly(tmp_path):
    nj.set_seed(3)
    inp = nj.Input((6,))
    shared = Dense(6, activation="tanh", name="shared")
    h = Add()([shared(shared(inp)), inp])  # the shared layer twice, and a skip connection
    h = LayerNormalization()(h)
    cls = Dense(3, name="cls")(h)
    reg = Dense(1, name="reg")(Dropout(0.2)(h))
    model = nj.Model(inp, [cls, reg], name="two_heads")
    model.compile(nj.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
                  [nj.losses.SparseCategoricalCrossentropy(from_logits=True), "huber"], loss_weights=[1.0, 0.25],
                  metrics=["accuracy"])
    x = _x((32, 6), 3)
    y = [np.arange(32) % 3, _x((32, 1), 4)]
    loaded = _continues_exactly(model, x, y, tmp_path / "graph.nnjit")
    assert loaded.name == "two_heads"
    assert loaded.loss.weights == [1.0, 0.25]
    assert [type(l).__name__ for l in loaded.loss.losses] == ["SparseCategoricalCrossentropy", "Huber"]
    assert loaded.loss.losses[0].from_logits
    assert loaded.connections() == model.connections()


def test_several_inputs_and_a_nested_model(tmp_path):
    nj.set_seed(4)
    backbone_in = nj.Input((5,))
    backbone = nj.Model(backbone_in, Dense(4, activation="relu")(backbone_in), name="backbone")
    tail = nj.Sequential([nj.Input((8,)), Dense(6, activation="relu"), Dropout(0.1)], name="tail")
    a, b = nj.Input((5,), name="a"), nj.Input((5,), name="b")
    joined = Concatenate()([backbone(a), backbone(b)])  # the nested model called twice
    out = Dense(2)(Multiply()([tail(joined), Dense(6)(joined)]))
    model = nj.Model([a, b], out)
    model.compile("adam", "mse")
    x = [_x((16, 5), 5), _x((16, 5), 6)]
    _continues_exactly(model, x, _x((16, 2), 7), tmp_path / "nested.nnjit")
    config = saving.architecture(model)["config"]
    assert [s["class_name"] for s in config["layers"]].count("Model") == 1
    assert [s["class_name"] for s in config["layers"]].count("Sequential") == 1


def test_attention_layers_and_bidirectional_round_trip(tmp_path):
    nj.set_seed(5)
    ids = nj.Input((6,))
    h = PositionalEmbedding(6, 8, input_dim=30)(ids)
    h = TransformerEncoder(2, 16, dropout=0.1, causal=True)(h)
    ctx = Bidirectional(GRU(4, return_sequences=True), merge_mode="concat")(h)
    h = MultiHeadAttention(2)(h, ctx)  # cross-attention: query h, keys and values ctx
    h = SimpleRNN(5, activation="relu", return_sequences=True)(h)
    out = Dense(3)(GlobalAvgPool1D()(h))
    model = nj.Model(ids, out)
    model.compile("adam", nj.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = _rng(5).integers(0, 30, size=(12, 6))
    _continues_exactly(model, x, np.arange(12) % 3, tmp_path / "attn.nnjit", batch_size=4, epochs=1)


def test_uncompiled_and_without_optimizer(tmp_path):
    nj.set_seed(6)
    model = nj.Sequential([nj.Input((2, 6, 6)), Conv2D(3, 3), AvgPool2D(2), Flatten(), Reshape((3, -1)),
                           Flatten(), Dense(2)])
    x = _x((5, 2, 6, 6), 6)
    model.save(tmp_path / "plain.nnjit")
    loaded = nj.load_model(tmp_path / "plain.nnjit")
    assert not loaded._compiled
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    with pytest.raises(RuntimeError, match="compile"):
        loaded.evaluate(x, _x((5, 2)))

    model.compile(nj.optimizers.Adam(0.002, clipvalue=0.5), "mae", metrics=["mae"])
    model.fit(x, _x((5, 2)), verbose=0)
    model.save(tmp_path / "no_opt.nnjit", include_optimizer=False)
    tensors, meta = nio.decode_tensors((tmp_path / "no_opt.nnjit").read_bytes())
    assert not any(k.startswith("optimizer/") for k in tensors)
    loaded = nj.load_model(tmp_path / "no_opt.nnjit")
    assert loaded.optimizer.iterations == 0 and not loaded.optimizer.built
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert type(loaded.loss).__name__ == "MeanAbsoluteError"
    loaded.fit(x, _x((5, 2)), verbose=0)  # trains from a fresh optimizer state


def test_file_layout(tmp_path):
    inp = nj.Input((3,), name="x")
    shared = Dense(3, name="shared")
    model = nj.Model(inp, Dense(1, name="out")(Add(name="join")([shared(inp), shared(shared(inp))])))
    model.compile("adam", "mse", metrics=["mae"])
    model.fit(_x((8, 3)), _x((8, 1)), verbose=0)
    path = tmp_path / "m.nnjit"
    model.save(path)
    blob = path.read_bytes()
    (n,) = np.frombuffer(blob[:8], "<u8")
    header = json.loads(blob[8:8 + int(n)])
    meta = header.pop("__metadata__")
    assert meta["format"] == "nnjit-model" and meta["format_version"] == "1" and meta["floatx"] == "float32"
    assert set(header) == {"0/kernel", "0/bias", "2/kernel", "2/bias", "optimizer/iterations",
                           "optimizer/momentum", "optimizer/velocity"}
    assert header["optimizer/iterations"]["dtype"] == "I64" and header["optimizer/iterations"]["shape"] == []
    arch = json.loads(meta["architecture"])
    assert arch["class_name"] == "Model"
    config = arch["config"]
    names = [s["config"]["name"] for s in config["layers"]]
    assert names == ["x", "shared", "join", "out"]  # the shared layer once
    nodes = [(names[n["layer"]], n["inputs"]) for n in config["nodes"]]
    # Each node: the layer, and [layer, call of that layer, output] of what it was called on.
    assert nodes == [("shared", [[0, 0, 0]]), ("shared", [[0, 0, 0]]), ("shared", [[1, 1, 0]]),
                     ("join", [[1, 0, 0], [1, 2, 0]]), ("out", [[2, 0, 0]])]
    assert config["inputs"] == [[0, 0, 0]] and config["outputs"] == [[3, 0, 0]]
    compile_config = json.loads(meta["compile"])
    assert compile_config["loss"] == "mse" and compile_config["metrics"] == ["mae"]
    assert compile_config["optimizer"]["class_name"] == "Adam"
    seq = nj.Sequential([nj.Input((4,)), Dense(2, activation="relu", kernel_regularizer="l2")])
    seq_arch = saving.architecture(seq)
    assert seq_arch["config"]["input"]["shape"] == [4]
    assert seq_arch["config"]["layers"][0]["class_name"] == "Dense"
    assert seq_arch["config"]["layers"][0]["config"]["kernel_regularizer"]["class_name"] == "L2"


def test_loading_does_not_move_the_random_generator(tmp_path):
    nj.set_seed(7)
    model = nj.Sequential([nj.Input((4,)), Dense(64), Dense(64)])
    model.save(tmp_path / "m.nnjit")
    nj.set_seed(8)
    expected = nj.runtime.rng().random(3)
    nj.set_seed(8)
    nj.load_model(tmp_path / "m.nnjit")
    np.testing.assert_array_equal(nj.runtime.rng().random(3), expected)


def test_float64_model_loads_as_float64(tmp_path):
    nj.set_floatx("float64")
    try:
        nj.set_seed(9)
        model = nj.Sequential([nj.Input((3,)), Dense(4, activation="gelu"), Dense(2)])
        model.compile("adam", "mse")
        x = _rng(9).standard_normal((8, 3))
        model.fit(x, _rng(10).standard_normal((8, 2)), verbose=0)
        model.save(tmp_path / "f64.nnjit")
    finally:
        nj.set_floatx("float32")
    loaded = nj.load_model(tmp_path / "f64.nnjit")
    assert nj.floatx() == "float32"
    assert all(w.dtype == np.float64 for w in loaded.get_weights())
    _assert_same_weights(model, loaded)
    assert loaded.optimizer.get_state()["momentum"].dtype == np.float64


def test_whole_model_file_loads_into_load_weights(tmp_path):
    nj.set_seed(10)
    make = lambda: nj.Sequential([nj.Input((5,)), Dense(3, activation="relu"), BatchNormalization(), Dense(2)])
    model = make()
    model.compile("adam", "mse")
    model.fit(_x((16, 5)), _x((16, 2)), verbose=0)
    model.save(tmp_path / "m.nnjit")
    other = make()
    other.load_weights(tmp_path / "m.nnjit")
    _assert_same_weights(model, other)


# ----------------------------------------------------------------- custom layers
class Scale(nj.layers.Layer):
    """A custom layer with a constructor argument, as the API's example plus a config."""

    def __init__(self, start=1.0, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self.start = float(start)

    def build(self, input_shape):
        self.add_weight("alpha", shape=(input_shape[-1],), initializer=nj.initializers.Constant(self.start))

    def forward(self, x, training=False):
        a = self.params["alpha"]

        def backward(dy):
            self.grads["alpha"] += (dy * x).reshape(-1, x.shape[-1]).sum(0)
            return dy * a

        return x * a, backward

    def get_config(self):
        return {**super().get_config(), "start": self.start}


class Forgetful(nj.layers.Layer):
    """A custom layer whose get_config forgets its constructor argument."""

    def __init__(self, factor, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self.factor = factor

    def forward(self, x, training=False):
        return x * self.factor, lambda dy: dy * self.factor


def test_custom_layer_round_trips(tmp_path):
    nj.set_seed(12)
    model = nj.Sequential([nj.Input((4,)), Scale(0.5), Dense(2)])
    model.compile("sgd", "mse")
    _continues_exactly(model, _x((16, 4)), _x((16, 2), 1), tmp_path / "custom.nnjit")


def test_save_refuses_a_layer_it_could_not_rebuild_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.nnjit"
    path.write_bytes(b"old contents")
    model = nj.Sequential([nj.Input((4,)), Forgetful(2.0), Dense(2)])
    with pytest.raises(ValueError, match=r"Forgetful.*get_config\(\) does not rebuild it"):
        model.save(path)
    with pytest.raises(ValueError, match="kernel_initializer"):
        ones = lambda shape, dtype: np.ones(shape, dtype)  # noqa: E731 - a plain callable has no config
        nj.Sequential([nj.Input((4,)), Dense(2, kernel_initializer=ones)]).save(path)
    assert path.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["m.nnjit"]


def _rewrite(path, change_meta=None, change_tensors=None):
    """Re-encode a model file after changing it (with a valid checksum: the content, not
    the damage, is what is tested)."""
    tensors, meta = nio.decode_tensors(path.read_bytes())
    meta.pop("nnjit_checksum")
    if change_meta:
        change_meta(meta)
    if change_tensors:
        change_tensors(tensors)
    path.write_bytes(nio.encode_tensors(tensors, meta))


def test_unknown_layer_class_is_refused(tmp_path):
    path = tmp_path / "m.nnjit"
    nj.Sequential([nj.Input((4,)), Dense(2)]).save(path)

    def rename(meta):
        meta["architecture"] = meta["architecture"].replace('"Dense"', '"os.system"')

    _rewrite(path, rename)
    with pytest.raises(ValueError, match="Unknown layer class 'os.system'"):
        nj.load_model(path)


def test_inconsistent_contents_are_refused(tmp_path):
    path = tmp_path / "m.nnjit"
    model = nj.Sequential([nj.Input((4,)), Dense(3), Dense(2)])
    model.compile("adam", "mse")
    model.fit(_x((8, 4)), _x((8, 2)), verbose=0)
    model.save(path)
    good = path.read_bytes()

    _rewrite(path, lambda m: m.update(architecture=m["architecture"].replace('"units":3', '"units":5')))
    with pytest.raises(ValueError, match=r"tensor '0/kernel' has shape \(4, 3\), the architecture gives \(4, 5\)"):
        nj.load_model(path)
    path.write_bytes(good)
    _rewrite(path, change_tensors=lambda t: t.pop("1/bias"))
    with pytest.raises(ValueError, match=r"missing \['1/bias'\]"):
        nj.load_model(path)
    path.write_bytes(good)
    _rewrite(path, change_tensors=lambda t: t.update({"optimizer/momentum": np.zeros(3, np.float32)}))
    with pytest.raises(ValueError, match="optimizer slot 'momentum' has shape"):
        nj.load_model(path)
    path.write_bytes(good)
    _rewrite(path, lambda m: m.update(compile=m["compile"].replace('"Adam"', '"Evil"')))
    with pytest.raises(ValueError, match="optimizer"):
        nj.load_model(path)
    path.write_bytes(good)
    _rewrite(path, lambda m: m.update(architecture='{"class_name": "Sequential", "config": {"layers": 3}}'))
    with pytest.raises(ValueError, match="damaged architecture"):
        nj.load_model(path)
    path.write_bytes(good)
    _rewrite(path, lambda m: m.update(format_version="2", nnjit_version="9.0"))
    with pytest.raises(ValueError, match="format version '2'.*nnjit 9.0"):
        nj.load_model(path)
    path.write_bytes(good)
    level = '{"class_name": "Model", "config": {"nodes": [], "inputs": [], "outputs": [], "layers": ['
    deep = level * 300 + ']}}' * 300
    _rewrite(path, lambda m: m.update(architecture=deep))
    with pytest.raises(ValueError, match="damaged architecture"):
        nj.load_model(path)


# ----------------------------------------------------------------- damaged files
@pytest.fixture
def saved(tmp_path):
    nj.set_seed(13)
    model = nj.Sequential([nj.Input((4,)), Dense(8, activation="relu"), Dense(2)])
    model.compile("adam", "mse")
    model.fit(_x((8, 4)), _x((8, 2)), verbose=0)
    path = tmp_path / "model.nnjit"
    model.save(path)
    return model, path


def _damaged(path, blob):
    path.write_bytes(blob)
    with pytest.raises(ValueError) as info:
        nj.load_model(path)
    assert path.read_bytes() == blob  # a failed load modifies nothing
    return str(info.value)


def test_damaged_files_are_refused(saved, tmp_path):
    _, path = saved
    blob = path.read_bytes()
    (n,) = np.frombuffer(blob[:8], "<u8")
    n = int(n)
    assert "checksum" in _damaged(path, blob[:-7])                      # truncated data
    assert "truncated" in _damaged(path, blob[:8 + n // 2])              # truncated header
    data_byte = bytearray(blob)
    data_byte[-3] ^= 0x01
    assert "checksum" in _damaged(path, bytes(data_byte))               # one bit of the weights
    meta_byte = bytearray(blob)
    at = blob.index(b"units") + 1                                        # inside the architecture JSON
    meta_byte[at] = ord("x")
    assert "checksum" in _damaged(path, bytes(meta_byte))
    assert "empty" in _damaged(path, b"")
    assert "header" in _damaged(path, _rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert "header" in _damaged(path, (1000).to_bytes(8, "little") + b"{" + b"x" * 2000)
    with pytest.raises(FileNotFoundError, match="no such file"):
        nj.load_model(tmp_path / "missing.nnjit")


def test_weights_only_file_and_other_architectures_are_refused(saved, tmp_path):
    model, path = saved
    weights = tmp_path / "w.safetensors"
    model.save_weights(weights)
    with pytest.raises(ValueError, match="weights-only file.*load_weights"):
        nj.load_model(weights)
    other = nj.Sequential([nj.Input((4,)), Dense(5, activation="relu"), Dense(2)])
    before = other.get_weights()
    with pytest.raises(ValueError, match="shape"):
        other.load_weights(path)
    with pytest.raises(ValueError, match="shape"):
        other.load_weights(weights)
    deeper = nj.Sequential([nj.Input((4,)), Dense(8), Dense(8), Dense(2)])
    with pytest.raises(ValueError, match="do not match"):
        deeper.load_weights(path)
    for a, b in zip(before, other.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_failed_save_leaves_the_old_file(saved, monkeypatch):
    model, path = saved
    old = path.read_bytes()
    model.fit(_x((8, 4), 1), _x((8, 2), 2), verbose=0)  # something new to save

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind

    def failing_fsync(fd):
        raise OSError("I/O error")

    monkeypatch.setattr(os, "fsync", failing_fsync)  # the crash comes mid-write
    with pytest.raises(OSError, match="I/O error"):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert os.listdir(path.parent) == [path.name]
    nj.load_model(path)

    model.save(path)  # and a save that succeeds replaces it
    assert path.read_bytes() != old
    _assert_same_weights(model, nj.load_model(path))


def test_save_arguments_are_checked(saved, tmp_path):
    model, _ = saved
    with pytest.raises(TypeError, match="include_optimizer"):
        model.save(tmp_path / "a", include_optimizer="yes")
    with pytest.raises(ValueError, match="folder"):
        model.save(tmp_path)
    with pytest.raises(TypeError, match="path"):
        nj.load_model(3)
    unbuilt = nj.Sequential([Dense(2)])
    unbuilt.save(tmp_path / "unbuilt.nnjit")  # nothing to save but the architecture
    again = nj.load_model(tmp_path / "unbuilt.nnjit")
    assert again.predict(_x((3, 4))).shape == (3, 2)


# ----------------------------------------------------------------- configs round-trip
_LAYERS = [
    lambda: Dense(3, activation="relu", use_bias=False, kernel_initializer="he_normal", kernel_regularizer="l2"),
    lambda: Dense(3, kernel_initializer=nj.initializers.RandomNormal(stddev=0.2),
                  kernel_regularizer=nj.regularizers.L1L2(0.01, 0.02), trainable=False),
    lambda: Dense(3, kernel_initializer={"class_name": "Constant", "value": 0.5}),
    lambda: Activation("tanh"), lambda: Dropout(0.3), lambda: Flatten(), lambda: Reshape((2, -1)),
    lambda: Conv2D(4, (3, 2), strides=2, padding="same", groups=2, activation="relu", kernel_initializer="he_uniform"),
    lambda: Conv2D(4, 3, padding=(1, 2), dilation_rate=2, use_bias=False),
    lambda: MaxPool2D(3, strides=2, padding="same"), lambda: AvgPool2D((2, 1)), lambda: GlobalAvgPool2D(),
    lambda: GlobalAvgPool1D(),
    lambda: BatchNormalization(axis=-1, momentum=0.9, epsilon=1e-4), lambda: LayerNormalization(epsilon=1e-6),
    lambda: Embedding(10, 4, mask_zero=True, embeddings_initializer=nj.initializers.RandomUniform()),
    lambda: SimpleRNN(3, activation="relu", return_sequences=True, go_backwards=True),
    lambda: LSTM(3, return_state=True, use_bias=False, recurrent_initializer="glorot_normal"),
    lambda: GRU(5, return_sequences=True, kernel_initializer=nj.initializers.Orthogonal()),
    lambda: Bidirectional(LSTM(3, return_sequences=True), merge_mode="sum"),
    lambda: Bidirectional(GRU(2), merge_mode=None),
    lambda: MultiHeadAttention(2, causal=True, dropout=0.1, use_bias=False, kernel_initializer="glorot_normal"),
    lambda: PositionalEmbedding(10, 4, input_dim=20, mask_zero=True), lambda: PositionalEmbedding(10, 4),
    lambda: TransformerEncoder(2, 8, dropout=0.1, norm_first=False, activation="relu", causal=True, epsilon=1e-6),
    lambda: Add(), lambda: Multiply(), lambda: Concatenate(axis=1), lambda: InputLayer((3, None)),
]


@pytest.mark.parametrize("make", _LAYERS, ids=lambda f: type(f()).__name__)
def test_every_layer_config_rebuilds_the_layer(make):
    layer = make()
    config = json.loads(json.dumps(layer.get_config()))
    cls = get_layer_class(type(layer).__name__)
    assert cls is type(layer)
    again = cls.from_config(config) if hasattr(cls, "from_config") else cls(**config)
    assert json.loads(json.dumps(again.get_config())) == config
    assert saving._describe_layer(layer, {}, None) == {"class_name": type(layer).__name__, "config": config}
