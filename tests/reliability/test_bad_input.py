"""Bad input across the public API, table-driven.

Every case in ``CASES`` must raise ValueError or TypeError (or the documented
FileNotFoundError for a missing file) before any work starts, with a message that names
the argument and the value received.  After each case the models of the test context
must be exactly as before: weights, optimizer step count and History.

``POSITIVE`` lists arrays that look odd but are valid (float64, integer, non-contiguous,
Fortran-ordered): they are accepted and give the result of the contiguous float32 copy.
"""
from __future__ import annotations

import gzip
import os
import re
import struct

import numpy as np
import pytest

import nnjit as nj

L = nj.layers
CB = nj.callbacks
OPT = nj.optimizers


# ----------------------------------------------------------------------------- context
def _seq_model():
    model = nj.Sequential([nj.Input((4,)), L.Dense(8, activation="relu"), L.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _two_input_model():
    a, b = nj.Input((4,)), nj.Input((2,))
    h = L.Concatenate()([L.Dense(3)(a), b])
    model = nj.Model([a, b], L.Dense(3, activation="softmax")(h))
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def _mse_model():
    model = nj.Sequential([nj.Input((4,)), L.Dense(2)])
    model.compile(OPT.SGD(0.01), "mse")
    return model


def _token_model():
    model = nj.Sequential([nj.Input((5,)), L.Embedding(10, 4), L.GlobalAvgPool1D(), L.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


class Ctx:
    """Small compiled models, each trained one short epoch (so that the optimizer is
    built, has taken steps and ``model.history`` is set), plus valid data for them."""

    def __init__(self, tmp_path):
        nj.set_seed(0)
        rng = np.random.default_rng(0)
        self.tmp = tmp_path
        self.x = rng.normal(size=(12, 4)).astype(np.float32)
        self.y = rng.integers(0, 3, 12)
        self.x2 = rng.normal(size=(12, 2)).astype(np.float32)
        self.yr = rng.normal(size=(12, 2)).astype(np.float32)
        self.tok = rng.integers(0, 10, (12, 5))
        self.y2 = rng.integers(0, 2, 12)
        self.seq = _seq_model()
        self.two = _two_input_model()
        self.mse = _mse_model()
        self.emb = _token_model()
        self.seq.fit(self.x, self.y, batch_size=4, epochs=1, verbose=0)
        self.two.fit([self.x, self.x2], self.y, batch_size=4, epochs=1, verbose=0)
        self.mse.fit(self.x, self.yr, batch_size=4, epochs=1, verbose=0)
        self.emb.fit(self.tok, self.y2, batch_size=4, epochs=1, verbose=0)
        self.models = [self.seq, self.two, self.mse, self.emb]

    def snapshot(self):
        return [(m.get_weights(), m.optimizer, m.optimizer.iterations, m.history,
                 {k: list(v) for k, v in m.history.history.items()}, m.loss) for m in self.models]

    def assert_unchanged(self, before):
        after = self.snapshot()
        for m, (w0, opt0, it0, h0, hh0, loss0), (w1, opt1, it1, h1, hh1, loss1) in zip(self.models, before, after):
            assert len(w0) == len(w1)
            for a, b in zip(w0, w1):
                np.testing.assert_array_equal(a, b, err_msg=f"{m.name}: weights changed")
            assert opt1 is opt0, f"{m.name}: optimizer replaced"
            assert it1 == it0, f"{m.name}: optimizer stepped ({it0} -> {it1})"
            assert h1 is h0 and hh1 == hh0, f"{m.name}: history changed"
            assert loss1 is loss0, f"{m.name}: loss replaced"


@pytest.fixture
def ctx(tmp_path):
    return Ctx(tmp_path)


def _with_value(x, index, value):
    x = x.copy()
    x[index] = value
    return x


def _idx_files(tmp, images_magic=0x803, n_images=3, n_labels=3):
    img = tmp / "img.idx"
    lab = tmp / "lab.idx"
    img.write_bytes(struct.pack(">IIII", images_magic, n_images, 2, 2) + bytes(4 * n_images))
    lab.write_bytes(struct.pack(">II", 0x801, n_labels) + bytes(n_labels))
    return str(img), str(lab)


# ----------------------------------------------------------------------------- the table
# (id, action(ctx), expected exception, pattern naming the argument, pattern for the value)
V, T = ValueError, TypeError
CASES = [
    # ---- Sequential fit: arrays
    ("fit-x-rank1", lambda c: c.seq.fit(np.zeros(4, np.float32), c.y[:4], verbose=0), V, r"\bx\b", r"\(4,\)"),
    ("fit-x-features", lambda c: c.seq.fit(np.zeros((12, 5), np.float32), c.y, verbose=0), V, r"\bx\b", r"12, 5"),
    ("fit-x-rank3", lambda c: c.seq.fit(np.zeros((12, 4, 1), np.float32), c.y, verbose=0), V, r"\bx\b", r"12, 4, 1"),
    ("fit-x-nan", lambda c: c.seq.fit(_with_value(c.x, (3, 1), np.nan), c.y, verbose=0), V, r"\bx\b", r"nan"),
    ("fit-x-inf", lambda c: c.seq.fit(_with_value(c.x, (0, 0), np.inf), c.y, verbose=0), V, r"\bx\b", r"inf"),
    ("fit-x-neginf", lambda c: c.seq.fit(_with_value(c.x, (5, 2), -np.inf), c.y, verbose=0), V, r"\bx\b", r"-inf"),
    ("fit-x-empty", lambda c: c.seq.fit(np.zeros((0, 4), np.float32), np.zeros(0, int), verbose=0), V, r"\bx\b",
     r"\(0, 4\)"),
    ("fit-x-string", lambda c: c.seq.fit("not an array", c.y, verbose=0), T, r"\bx\b", r"not an array"),
    ("fit-x-none", lambda c: c.seq.fit(None, c.y, verbose=0), T, r"\bx\b", r"None"),
    ("fit-x-ragged", lambda c: c.seq.fit([[1, 2, 3, 4], [1, 2]], c.y[:2], verbose=0), T, r"\bx\b", r"\[\[1, 2"),
    ("fit-x-complex", lambda c: c.seq.fit(c.x.astype(np.complex64), c.y, verbose=0), T, r"\bx\b", r"complex"),
    ("fit-x-object", lambda c: c.seq.fit(np.array([object()] * 4, dtype=object).reshape(1, 4), c.y[:1], verbose=0),
     T, r"\bx\b", r"object"),
    ("fit-y-nan", lambda c: c.seq.fit(c.x, _with_value(c.y.astype(float), 2, np.nan), verbose=0), V, r"\by\b",
     r"nan"),
    ("fit-y-inf", lambda c: c.mse.fit(c.x, _with_value(c.yr, (1, 1), np.inf), verbose=0), V, r"\by\b", r"inf"),
    ("fit-y-fraction", lambda c: c.seq.fit(c.x, _with_value(c.y.astype(float), 4, 1.5), verbose=0), V, r"\by\b",
     r"1\.5"),
    ("fit-y-negative", lambda c: c.seq.fit(c.x, _with_value(c.y, 7, -1), verbose=0), V, r"\by\b", r"-1"),
    ("fit-y-too-large", lambda c: c.seq.fit(c.x, _with_value(c.y, 0, 3), verbose=0), V, r"\by\b", r"\b3\b"),
    ("fit-y-string", lambda c: c.seq.fit(c.x, np.array(["a"] * 12), verbose=0), T, r"\by\b", r"<U1|str"),
    ("fit-y-none", lambda c: c.seq.fit(c.x, None, verbose=0), V, r"\by\b", r"None"),
    ("fit-y-regression-shape", lambda c: c.mse.fit(c.x, np.zeros((12, 3), np.float32), verbose=0), V, r"\by\b",
     r"12, 3"),
    ("fit-length-mismatch", lambda c: c.seq.fit(c.x, c.y[:10], verbose=0), V, r"\by\b", r"\b10\b"),
    # ---- fit: arguments
    ("fit-batch-0", lambda c: c.seq.fit(c.x, c.y, batch_size=0, verbose=0), V, r"batch_size", r"=0\b"),
    ("fit-batch-neg", lambda c: c.seq.fit(c.x, c.y, batch_size=-4, verbose=0), V, r"batch_size", r"-4"),
    ("fit-batch-float", lambda c: c.seq.fit(c.x, c.y, batch_size=2.5, verbose=0), T, r"batch_size", r"2\.5"),
    ("fit-batch-str", lambda c: c.seq.fit(c.x, c.y, batch_size="32", verbose=0), T, r"batch_size", r"'32'"),
    ("fit-batch-bool", lambda c: c.seq.fit(c.x, c.y, batch_size=True, verbose=0), T, r"batch_size", r"True"),
    ("fit-epochs-neg", lambda c: c.seq.fit(c.x, c.y, epochs=-1, verbose=0), V, r"epochs", r"-1"),
    ("fit-epochs-float", lambda c: c.seq.fit(c.x, c.y, epochs=1.5, verbose=0), T, r"epochs", r"1\.5"),
    ("fit-vsplit-1.5", lambda c: c.seq.fit(c.x, c.y, validation_split=1.5, verbose=0), V, r"validation_split", r"1\.5"),
    ("fit-vsplit-1", lambda c: c.seq.fit(c.x, c.y, validation_split=1.0, verbose=0), V, r"validation_split", r"1\.0"),
    ("fit-vsplit-neg", lambda c: c.seq.fit(c.x, c.y, validation_split=-0.1, verbose=0), V, r"validation_split",
     r"-0\.1"),
    ("fit-vsplit-str", lambda c: c.seq.fit(c.x, c.y, validation_split="0.2", verbose=0), (T, V), r"validation_split",
     r"'0\.2'"),
    ("fit-vsplit-tiny", lambda c: c.seq.fit(c.x, c.y, validation_split=0.01, verbose=0), V, r"validation_split",
     r"0\.01"),
    ("fit-vdata-triple", lambda c: c.seq.fit(c.x, c.y, validation_data=(c.x, c.y, c.y), verbose=0), V,
     r"validation_data", r"tuple|3"),
    ("fit-vdata-nan", lambda c: c.seq.fit(c.x, c.y, validation_data=(_with_value(c.x, (0, 0), np.nan), c.y),
                                          verbose=0), V, r"validation_data\[0\]", r"nan"),
    ("fit-vdata-features", lambda c: c.seq.fit(c.x, c.y, validation_data=(c.x[:, :3], c.y), verbose=0), V,
     r"validation_data\[0\]", r"12, 3"),
    ("fit-vdata-labels", lambda c: c.seq.fit(c.x, c.y, validation_data=(c.x, c.y + 5), verbose=0), V,
     r"validation_data\[1\]", r"\b[5-7]\b"),
    ("fit-callbacks-not-list", lambda c: c.seq.fit(c.x, c.y, callbacks=CB.TerminateOnNaN(), verbose=0), T,
     r"callbacks", r"TerminateOnNaN"),
    ("fit-callbacks-not-callback", lambda c: c.seq.fit(c.x, c.y, callbacks=["stop"], verbose=0), T,
     r"callbacks", r"'stop'"),
    ("fit-verbose", lambda c: c.seq.fit(c.x, c.y, verbose=5), V, r"verbose", r"=5"),
    ("fit-list-for-one-input", lambda c: c.seq.fit([c.x, c.x], c.y, verbose=0), V, r"\bx\b", r"2, 12, 4|2 arrays"),
    # ---- evaluate / predict / train_on_batch / test_on_batch
    ("evaluate-batch-0", lambda c: c.seq.evaluate(c.x, c.y, batch_size=0), V, r"batch_size", r"=0\b"),
    ("evaluate-x-nan", lambda c: c.seq.evaluate(_with_value(c.x, (2, 2), np.nan), c.y), V, r"\bx\b", r"nan"),
    ("evaluate-y-range", lambda c: c.seq.evaluate(c.x, _with_value(c.y, 3, 9)), V, r"\by\b", r"\b9\b"),
    ("evaluate-mismatch", lambda c: c.seq.evaluate(c.x[:5], c.y), V, r"\by\b", r"\b12\b"),
    ("predict-features", lambda c: c.seq.predict(np.zeros((3, 6), np.float32)), V, r"\bx\b", r"3, 6"),
    ("predict-nan", lambda c: c.seq.predict(_with_value(c.x, (4, 3), np.nan)), V, r"\bx\b", r"nan"),
    ("predict-inf-float64", lambda c: c.seq.predict(_with_value(c.x.astype(np.float64), (1, 0), np.inf)), V,
     r"\bx\b", r"inf"),
    ("predict-batch-neg", lambda c: c.seq.predict(c.x, batch_size=-3), V, r"batch_size", r"-3"),
    ("predict-batch-float", lambda c: c.seq.predict(c.x, batch_size=8.0), T, r"batch_size", r"8\.0"),
    ("predict-empty", lambda c: c.seq.predict(np.zeros((0, 4), np.float32)), V, r"\bx\b", r"\(0, 4\)"),
    ("predict-string", lambda c: c.seq.predict("abc"), T, r"\bx\b", r"abc"),
    ("predict-rank1", lambda c: c.seq.predict(np.zeros(4, np.float32)), V, r"\bx\b", r"\(4,\)"),
    ("call-nan", lambda c: c.seq(_with_value(c.x, (0, 1), np.nan)), V, r"\bx\b", r"nan"),
    ("train-on-batch-fraction", lambda c: c.seq.train_on_batch(c.x, _with_value(c.y.astype(np.float32), 0, 0.5)), V,
     r"\by\b", r"0\.5"),
    ("train-on-batch-rank", lambda c: c.seq.train_on_batch(c.x[None], c.y), V, r"\bx\b", r"1, 12, 4"),
    ("train-on-batch-inf", lambda c: c.seq.train_on_batch(_with_value(c.x, (1, 1), np.inf), c.y), V, r"\bx\b",
     r"inf"),
    ("train-on-batch-mismatch", lambda c: c.seq.train_on_batch(c.x, c.y[:3]), V, r"\by\b", r"\b3\b"),
    ("test-on-batch-negative", lambda c: c.seq.test_on_batch(c.x, _with_value(c.y, 1, -2)), V, r"\by\b", r"-2"),
    ("test-on-batch-nan", lambda c: c.seq.test_on_batch(_with_value(c.x, (0, 3), np.nan), c.y), V, r"\bx\b",
     r"nan"),
    # ---- functional model with two inputs
    ("two-fit-one-array", lambda c: c.two.fit(c.x, c.y, verbose=0), T, r"\bx\b", r"Received: ndarray"),
    ("two-fit-three-arrays", lambda c: c.two.fit([c.x, c.x2, c.x2], c.y, verbose=0), V, r"\bx\b", r"\b3\b"),
    ("two-predict-one-array", lambda c: c.two.predict(c.x), T, r"\bx\b", r"Received: ndarray"),
    ("two-second-features", lambda c: c.two.fit([c.x, c.x], c.y, verbose=0), V, r"x\[1\]", r"12, 4"),
    ("two-second-nan", lambda c: c.two.predict([c.x, _with_value(c.x2, (3, 1), np.nan)]), V, r"x\[1\]", r"nan"),
    ("two-lengths", lambda c: c.two.fit([c.x, c.x2[:7]], c.y, verbose=0), V, r"x\[1\]", r"\b7\b"),
    ("two-train-on-batch-string", lambda c: c.two.train_on_batch([c.x, "b"], c.y), T, r"x\[1\]", r"'b'"),
    # ---- regression and token models
    ("mse-y-features", lambda c: c.mse.evaluate(c.x, np.zeros((12, 1), np.float32)), V, r"\by\b", r"12, 1"),
    ("mse-y-nan", lambda c: c.mse.train_on_batch(c.x, _with_value(c.yr, (0, 0), np.nan)), V, r"\by\b", r"nan"),
    ("emb-token-too-large", lambda c: c.emb.fit(_with_value(c.tok, (2, 3), 10), c.y2, verbose=0), V, r"\bx\b|token",
     r"\b10\b"),
    ("emb-token-negative", lambda c: c.emb.predict(_with_value(c.tok, (0, 0), -1)), V, r"\bx\b|token", r"-1"),
    ("emb-token-fraction", lambda c: c.emb.predict(_with_value(c.tok.astype(float), (0, 0), 2.5)), V,
     r"\bx\b|token", r"2\.5"),
    ("emb-token-length", lambda c: c.emb.predict(c.tok[:, :3]), V, r"\bx\b", r"12, 3"),
    # ---- compile (on an already compiled model: it must keep its old configuration)
    ("compile-loss-name", lambda c: c.seq.compile("adam", "msee"), V, r"\bloss\b", r"'msee'"),
    ("compile-optimizer-name", lambda c: c.seq.compile("adamm", "mse"), V, r"optimizer", r"'adamm'"),
    ("compile-metric-name", lambda c: c.seq.compile("adam", "mse", metrics=["acuracy"]), V, r"metric",
     r"'acuracy'"),
    ("compile-optimizer-type", lambda c: c.seq.compile(42, "mse"), T, r"optimizer", r"42"),
    ("compile-loss-type", lambda c: c.seq.compile("adam", 3.5), T, r"\bloss\b", r"3\.5"),
    ("compile-metrics-type", lambda c: c.seq.compile("adam", "mse", metrics={"a": 1}), T, r"metrics", r"\{'a': 1\}"),
    # ---- layer constructors
    ("dense-units-0", lambda c: L.Dense(0), V, r"units", r"=0\b"),
    ("dense-units-neg", lambda c: L.Dense(-3), V, r"units", r"-3"),
    ("dense-units-float", lambda c: L.Dense(2.5), (T, V), r"units", r"2\.5"),
    ("dense-units-str", lambda c: L.Dense("8"), (T, V), r"units", r"'8'"),
    ("dense-activation", lambda c: L.Dense(4, activation="relux"), V, r"activation", r"'relux'"),
    ("dense-initializer", lambda c: L.Dense(4, kernel_initializer="glorot_unifrom"), V, r"kernel_initializer",
     r"'glorot_unifrom'"),
    ("conv-filters-neg", lambda c: L.Conv2D(-1, 3), V, r"filters", r"-1"),
    ("conv-kernel-0", lambda c: L.Conv2D(2, 0), V, r"kernel_size", r"\b0\b"),
    ("conv-kernel-pair", lambda c: L.Conv2D(2, (3, -1)), V, r"kernel_size", r"-1"),
    ("conv-strides-0", lambda c: L.Conv2D(2, 3, strides=0), V, r"strides", r"\b0\b"),
    ("conv-padding", lambda c: L.Conv2D(2, 3, padding="full"), V, r"padding", r"'full'"),
    ("conv-groups", lambda c: L.Conv2D(3, 3, groups=2), V, r"groups", r"\b2\b"),
    ("conv-dilation-neg", lambda c: L.Conv2D(2, 3, dilation_rate=-2), V, r"dilation_rate", r"-2"),
    ("maxpool-size-0", lambda c: L.MaxPool2D(0), V, r"pool_size", r"\b0\b"),
    ("maxpool-strides-neg", lambda c: L.MaxPool2D(2, strides=-1), V, r"strides", r"-1"),
    ("avgpool-padding", lambda c: L.AvgPool2D(2, padding="sam"), V, r"padding", r"'sam'"),
    ("dropout-1.5", lambda c: L.Dropout(1.5), V, r"rate", r"1\.5"),
    ("dropout-neg", lambda c: L.Dropout(-0.1), V, r"rate", r"-0\.1"),
    ("dropout-1", lambda c: L.Dropout(1.0), V, r"rate", r"1\.0"),
    ("dropout-str", lambda c: L.Dropout("0.5"), (T, V), r"rate", r"'0\.5'"),
    ("dropout-nan", lambda c: L.Dropout(float("nan")), V, r"rate", r"nan"),
    ("reshape-zero", lambda c: L.Reshape((0, 2)), V, r"target_shape", r"\(0, 2\)"),
    ("reshape-two-wildcards", lambda c: L.Reshape((-1, -1)), V, r"target_shape", r"\(-1, -1\)"),
    ("reshape-str", lambda c: L.Reshape("ab"), (T, V), r"target_shape", r"'ab'"),
    ("embedding-input-dim-0", lambda c: L.Embedding(0, 4), V, r"input_dim", r"=0\b"),
    ("embedding-output-dim-neg", lambda c: L.Embedding(10, -1), V, r"output_dim", r"-1"),
    ("simplernn-units-0", lambda c: L.SimpleRNN(0), V, r"units", r"=0\b"),
    ("simplernn-activation", lambda c: L.SimpleRNN(3, activation="tanhh"), V, r"activation", r"'tanhh'"),
    ("lstm-units-neg", lambda c: L.LSTM(-2), V, r"units", r"-2"),
    ("gru-units-float", lambda c: L.GRU(1.5), (T, V), r"units", r"1\.5"),
    ("lstm-initializer", lambda c: L.LSTM(2, recurrent_initializer="orthogonl"), V, r"recurrent_initializer",
     r"'orthogonl'"),
    ("mha-heads-0", lambda c: L.MultiHeadAttention(0), V, r"num_heads", r"=0\b"),
    ("mha-dropout", lambda c: L.MultiHeadAttention(2, dropout=1.5), V, r"dropout", r"1\.5"),
    ("layernorm-epsilon-neg", lambda c: L.LayerNormalization(epsilon=-1.0), V, r"epsilon", r"-1"),
    ("batchnorm-momentum", lambda c: L.BatchNormalization(momentum=1.5), V, r"momentum", r"1\.5"),
    ("batchnorm-axis-0", lambda c: L.BatchNormalization(axis=0), V, r"axis", r"=0\b"),
    ("batchnorm-epsilon-0", lambda c: L.BatchNormalization(epsilon=0), V, r"epsilon", r"=0\b"),
    ("transformer-heads-0", lambda c: L.TransformerEncoder(0, 8), V, r"num_heads", r"=0\b"),
    ("transformer-ff-neg", lambda c: L.TransformerEncoder(2, -8), V, r"ff_dim", r"-8"),
    ("transformer-dropout", lambda c: L.TransformerEncoder(2, 8, dropout=2.0), V, r"dropout", r"2\.0"),
    ("transformer-epsilon", lambda c: L.TransformerEncoder(2, 8, epsilon=-1.0), V, r"epsilon", r"-1"),
    ("transformer-activation", lambda c: L.TransformerEncoder(2, 8, activation="gelux"), V, r"activation",
     r"'gelux'"),
    ("posemb-max-len-0", lambda c: L.PositionalEmbedding(0, 4), V, r"max_len", r"=0\b"),
    ("posemb-output-dim-neg", lambda c: L.PositionalEmbedding(8, -4), V, r"output_dim", r"-4"),
    ("activation-name", lambda c: L.Activation("softplusx"), V, r"name_or_fn|activation", r"'softplusx'"),
    ("input-shape-0", lambda c: nj.Input((0, 4)), V, r"shape", r"\(0, 4\)"),
    ("input-shape-str", lambda c: nj.Input("abc"), (T, V), r"shape", r"'abc'"),
    ("bidirectional-not-rnn", lambda c: L.Bidirectional(L.Dense(3)), T, r"layer", r"Dense|dense"),
    ("sequential-add-not-layer", lambda c: nj.Sequential().add("dense"), T, r"layer", r"'dense'"),
    # ---- layers called on arrays of the wrong rank or values
    ("lstm-call-rank2", lambda c: L.LSTM(3)(np.zeros((2, 4), np.float32)), V, r"\bx\b", r"\(None, 4\)"),
    ("conv-call-rank3", lambda c: L.Conv2D(2, 3)(np.zeros((2, 6, 6), np.float32)), V, r"\bx\b", r"\(None, 6, 6\)"),
    ("conv-call-kernel-too-big", lambda c: L.Conv2D(2, 7)(np.zeros((1, 1, 6, 6), np.float32)), V,
     r"window|input height", r"\b7\b"),
    ("mha-call-heads-divide", lambda c: L.MultiHeadAttention(3)(np.zeros((2, 5, 4), np.float32)), V, r"num_heads",
     r"\b3\b"),
    ("embedding-call-range", lambda c: L.Embedding(5, 2)(np.array([[7]])), V, r"\bx\b|token|input_dim", r"\b7\b"),
    # ---- optimizers
    ("sgd-lr-neg", lambda c: OPT.SGD(learning_rate=-0.1), V, r"learning_rate", r"-0\.1"),
    ("adam-lr-0", lambda c: OPT.Adam(learning_rate=0), V, r"learning_rate", r"\b0\b"),
    ("sgd-lr-nan", lambda c: OPT.SGD(learning_rate=float("nan")), V, r"learning_rate", r"nan"),
    ("sgd-lr-str", lambda c: OPT.SGD(learning_rate="fast"), T, r"learning_rate", r"'fast'"),
    ("adam-beta1", lambda c: OPT.Adam(beta_1=1.5), V, r"beta_1", r"1\.5"),
    ("adam-beta2-neg", lambda c: OPT.Adam(beta_2=-0.5), V, r"beta_2", r"-0\.5"),
    ("adam-epsilon-neg", lambda c: OPT.Adam(epsilon=-1e-7), V, r"epsilon", r"-1e-07"),
    ("sgd-momentum-neg", lambda c: OPT.SGD(momentum=-1.0), V, r"momentum", r"-1"),
    ("rmsprop-rho", lambda c: OPT.RMSprop(rho=2.0), V, r"rho", r"rho=2(\.0)?\b"),
    ("adam-clipnorm-0", lambda c: OPT.Adam(clipnorm=0), V, r"clipnorm", r"\b0\b"),
    ("adamw-weight-decay-neg", lambda c: OPT.AdamW(weight_decay=-1.0), V, r"weight_decay", r"-1"),
    ("sgd-nesterov-str", lambda c: OPT.SGD(nesterov="yes"), T, r"nesterov", r"'yes'"),
    # ---- losses
    ("huber-delta-0", lambda c: nj.losses.Huber(delta=0), V, r"delta", r"\b0\b"),
    ("huber-delta-neg", lambda c: nj.losses.Huber(delta=-1.0), V, r"delta", r"-1"),
    ("bce-from-logits-str", lambda c: nj.losses.BinaryCrossentropy(from_logits="yes"), T, r"from_logits", r"'yes'"),
    ("loss-get-name", lambda c: nj.losses.get("hinge"), V, r"\bloss\b", r"'hinge'"),
    ("loss-call-shapes", lambda c: nj.losses.MeanSquaredError()(np.zeros((2, 3)), np.zeros((2, 4))), V,
     r"y_true|y_pred", r"2, 3|2, 4"),
    ("sparse-ce-call-label", lambda c: nj.losses.SparseCategoricalCrossentropy()(
        np.array([0, 4]), np.full((2, 3), 1 / 3)), V, r"y_true", r"\b4\b"),
    # ---- callbacks
    ("earlystopping-patience", lambda c: CB.EarlyStopping(patience=-1), V, r"patience", r"-1"),
    ("earlystopping-monitor", lambda c: CB.EarlyStopping(monitor=3), T, r"monitor", r"\b3\b"),
    ("earlystopping-mode", lambda c: CB.EarlyStopping(mode="up"), V, r"mode", r"'up'"),
    ("checkpoint-path-none", lambda c: CB.ModelCheckpoint(None), T, r"filepath", r"None"),
    ("checkpoint-path-int", lambda c: CB.ModelCheckpoint(123), T, r"filepath", r"123"),
    ("lrscheduler-not-callable", lambda c: CB.LearningRateScheduler("cosine"), T, r"schedule", r"'cosine'"),
    ("reducelr-factor", lambda c: CB.ReduceLROnPlateau(factor=1.5), V, r"factor", r"1\.5"),
    ("reducelr-patience", lambda c: CB.ReduceLROnPlateau(patience=-1), V, r"patience", r"-1"),
    ("csvlogger-none", lambda c: CB.CSVLogger(None), T, r"filename", r"None"),
    # ---- datasets
    ("load-idx-type", lambda c: nj.datasets.load_idx(123, "labels"), T, r"images_path", r"123"),
    ("load-idx-missing", lambda c: nj.datasets.load_idx(str(c.tmp / "nope"), str(c.tmp / "nope2")),
     FileNotFoundError, r"images_path", r"nope"),
    ("load-idx-magic", lambda c: nj.datasets.load_idx(*_idx_files(c.tmp, images_magic=0x801)), V, r"images_path",
     r"0x0*801|2049"),
    ("load-idx-counts", lambda c: nj.datasets.load_idx(*_idx_files(c.tmp, n_labels=2)), V, r"labels_path",
     r"\b2\b"),
    # ---- files
    ("save-path-int", lambda c: c.seq.save(123), T, r"path", r"123"),
    ("save-path-folder", lambda c: c.seq.save(c.tmp), V, r"path", re.escape(str("REPLACED"))),
    ("save-include-optimizer", lambda c: c.seq.save(str(c.tmp / "m.nj"), include_optimizer="yes"), T,
     r"include_optimizer", r"'yes'"),
    ("save-weights-path-int", lambda c: c.seq.save_weights(123), T, r"path", r"123"),
    ("load-weights-path-none", lambda c: c.seq.load_weights(None), T, r"path", r"None"),
    ("load-weights-folder", lambda c: c.seq.load_weights(c.tmp), (V, IsADirectoryError), r"path", "REPLACED"),
    ("load-model-path-none", lambda c: nj.load_model(None), T, r"path", r"None"),
    ("load-model-missing", lambda c: nj.load_model(str(c.tmp / "missing.nj")), FileNotFoundError, r"path|load_model",
     r"missing\.nj"),
    ("load-model-folder", lambda c: nj.load_model(c.tmp), (V, IsADirectoryError), r"path|load_model", "REPLACED"),
    # ---- runtime
    ("set-num-threads-0", lambda c: nj.set_num_threads(0), V, r"\bn\b", r"=0\b"),
    ("set-num-threads-str", lambda c: nj.set_num_threads("2"), T, r"\bn\b", r"'2'"),
    ("set-floatx", lambda c: nj.set_floatx("float16"), V, r"name|floatx", r"'float16'"),
    ("set-seed-neg", lambda c: nj.set_seed(-1), V, r"seed", r"-1"),
]
N_CASES = len(CASES)
assert N_CASES >= 60


@pytest.mark.parametrize("case_id, action, exc, arg_pattern, value_pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_any_work(ctx, case_id, action, exc, arg_pattern, value_pattern):
    if value_pattern == "REPLACED":  # the value is the temporary folder of this test
        value_pattern = re.escape(str(ctx.tmp))
    before = ctx.snapshot()
    files_before = sorted(os.listdir(ctx.tmp))
    with pytest.raises(exc) as info:
        action(ctx)
    message = str(info.value)
    assert type(info.value) not in (IndexError, KeyError, AttributeError)
    assert re.search(arg_pattern, message), f"message does not name the argument ({arg_pattern}): {message}"
    assert re.search(value_pattern, message), f"message does not name the value ({value_pattern}): {message}"
    ctx.assert_unchanged(before)
    left = [f for f in os.listdir(ctx.tmp) if f not in files_before and not f.endswith(".idx")]
    assert not left, f"files left behind: {left}"


# ----------------------------------------------------------------------------- accepted
def _same_model(build):
    nj.set_seed(123)
    return build()


def _layouts(x):
    """(name, array) variants of ``x`` that must be accepted like the float32 C copy."""
    wide = np.zeros((x.shape[0], 2 * x.shape[1]), dtype=np.float32)
    wide[:, ::2] = x
    return [
        ("float64", x.astype(np.float64)),
        ("strided", wide[:, ::2]),
        ("fortran", np.asfortranarray(x)),
        ("reversed-rows", x[::-1].copy()[::-1]),
        ("float64-fortran", np.asfortranarray(x.astype(np.float64))),
    ]


def _int_data(n=16, features=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(-3, 4, (n, features)), rng.integers(0, 3, n)


POSITIVE = ["float64", "strided", "fortran", "reversed-rows", "float64-fortran", "integer"]
N_POSITIVE = len(POSITIVE)


@pytest.mark.parametrize("layout", POSITIVE)
def test_unusual_arrays_give_the_float32_result(layout):
    x_int, y = _int_data()
    x32 = np.ascontiguousarray(x_int, dtype=np.float32)
    variants = dict(_layouts(x32))
    variants["integer"] = x_int
    xv = variants[layout]
    results = []
    for data in (x32, xv):
        model = _same_model(_seq_model)
        before = data.copy()
        model.fit(data, y, batch_size=5, epochs=2, shuffle=False, verbose=0)
        logs = model.evaluate(data, y, batch_size=7)
        tob = model.train_on_batch(data, y)
        pred = model.predict(data, batch_size=6)
        np.testing.assert_array_equal(data, before)  # the caller's array is not modified
        results.append((model.get_weights(), logs, tob, pred))
    (w0, l0, t0, p0), (w1, l1, t1, p1) = results
    for a, b in zip(w0, w1):
        np.testing.assert_array_equal(a, b)
    assert l0 == l1 and t0 == t1
    np.testing.assert_array_equal(p0, p1)
    assert p1.dtype == np.float32


@pytest.mark.parametrize("layout", ["float64", "strided", "fortran"])
def test_unusual_arrays_functional_two_inputs(layout):
    x_int, y = _int_data()
    x32 = np.ascontiguousarray(x_int, dtype=np.float32)
    b32 = np.ascontiguousarray(x32[:, :2] * 0.5)
    variants = dict(_layouts(x32))
    b_variants = dict(_layouts(b32))
    out = []
    for xa, xb in ((x32, b32), (variants[layout], b_variants[layout])):
        model = _same_model(_two_input_model)
        model.fit([xa, xb], y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        out.append((model.get_weights(), model.predict([xa, xb])))
    for a, b in zip(out[0][0], out[1][0]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(out[0][1], out[1][1])


def test_labels_in_other_integer_and_float_types_are_accepted():
    x_int, y = _int_data()
    x = x_int.astype(np.float32)
    out = []
    for labels in (y, y.astype(np.int32), y.astype(np.uint8), y.astype(np.float64), y.astype(np.float32)):
        model = _same_model(_seq_model)
        model.fit(x, labels, batch_size=4, epochs=1, shuffle=False, verbose=0)
        out.append(model.get_weights())
    for w in out[1:]:
        for a, b in zip(out[0], w):
            np.testing.assert_array_equal(a, b)


def test_strided_images_conv_model():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 1, 12, 12)).astype(np.float32)
    y = rng.integers(0, 2, 6)

    def build():
        m = nj.Sequential([nj.Input((1, 6, 6)), L.Conv2D(2, 3, activation="relu"), L.Flatten(),
                           L.Dense(2, activation="softmax")])
        m.compile("sgd", "sparse_categorical_crossentropy")
        return m

    strided = x[:, :, ::2, ::2]
    out = []
    for data in (np.ascontiguousarray(strided), strided, strided.astype(np.float64)):
        model = _same_model(build)
        model.fit(data, y, batch_size=3, epochs=1, shuffle=False, verbose=0)
        out.append(model.predict(data))
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])


# ----------------------------------------------------------------------------- lazily built
def _lazy_model():
    model = nj.Sequential([L.Dense(4, activation="relu"), L.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


_XL = np.random.default_rng(3).normal(size=(10, 5)).astype(np.float32)
_YL = np.arange(10) % 3
# A Sequential without an Input is built from the first data it is given: when that data
# is then refused, the model must stay unbuilt (and the random generator untouched), so
# that the corrected call works as if the refused one had never happened.
LAZY_CASES = [
    ("lazy-fit-transposed", lambda m: m.fit(_XL.T, _YL, verbose=0), r"\by\b", r"\b10\b"),
    ("lazy-fit-labels", lambda m: m.fit(_XL, _YL + 5, verbose=0), r"\by\b", r"\b5\b"),
    ("lazy-fit-vsplit", lambda m: m.fit(_XL, _YL, validation_split=0.01, verbose=0), r"validation_split", r"0\.01"),
    ("lazy-fit-vdata", lambda m: m.fit(_XL, _YL, validation_data=(_XL[:, :4], _YL), verbose=0),
     r"validation_data\[0\]", r"10, 4"),
    ("lazy-fit-vlabels", lambda m: m.fit(_XL, _YL, validation_data=(_XL, _YL - 1), verbose=0),
     r"validation_data\[1\]", r"-1"),
    ("lazy-train-on-batch", lambda m: m.train_on_batch(_XL, _YL[:4]), r"\by\b", r"\b4\b"),
    ("lazy-test-on-batch", lambda m: m.test_on_batch(_XL, _YL.astype(float) + 0.5), r"\by\b", r"0\.5"),
    ("lazy-evaluate", lambda m: m.evaluate(_XL, np.full(10, 3)), r"\by\b", r"\b3\b"),
]
N_LAZY_CASES = len(LAZY_CASES)


@pytest.mark.parametrize("case_id, action, arg_pattern, value_pattern", LAZY_CASES, ids=[c[0] for c in LAZY_CASES])
def test_refused_data_leaves_a_lazy_sequential_unbuilt(case_id, action, arg_pattern, value_pattern):
    nj.set_seed(5)
    reference = _lazy_model()
    reference.fit(_XL, _YL, batch_size=5, epochs=1, shuffle=False, verbose=0)
    nj.set_seed(5)
    model = _lazy_model()
    with pytest.raises(ValueError) as info:
        action(model)
    assert re.search(arg_pattern, str(info.value)) and re.search(value_pattern, str(info.value)), str(info.value)
    assert not model.built and all(not layer.built and not layer.params for layer in model.layers)
    assert model.optimizer.iterations == 0
    model.fit(_XL, _YL, batch_size=5, epochs=1, shuffle=False, verbose=0)  # the corrected call
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
