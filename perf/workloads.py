"""The reference workloads of PERF.md: batch size, FLOP count, and a builder per library.

Every workload is float32, random inputs (fixed seed), labels random integers in [0, 10).

FLOP counting convention (the same for every workload):
  * a matrix product (M x K) @ (K x N) is 2*M*N*K FLOPs; a convolution is the GEMM it amounts to,
    2 * batch * C_out * H_out * W_out * (C_in * kh * kw);
  * only the matrix-product parts are counted (bias, activations, pooling, normalization,
    softmax and the optimizer update are ignored: they are memory-bound and small);
  * a training step is counted as 3x its forward FLOPs: the backward pass computes, for every
    product, the gradient of the input and of the weights, each as large as the forward product.
    (The first layer's input gradient is not needed and both libraries skip it; we still use the
    plain 3x convention so that the number is simple and identical for both libraries.)
  * an inference workload is counted as 1x its forward FLOPs.

Builders import their library lazily, so this module can be imported by a process that must not
load nnjit or torch (PERF.md, trap 1: an nnjit worker never imports torch and vice versa).

nnjit builders use the public API of ../shared/API.md only (NCHW images, (batch, time, features)
sequences, a final Dense(10, activation="softmax") with "sparse_categorical_crossentropy", which
nnjit fuses into one stable kernel). PyTorch builders use nn.Linear logits + nn.CrossEntropyLoss +
torch.optim.Adam, with the same shapes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

NUM_CLASSES = 10
LEARNING_RATE = 1e-3


def gemm_flops(m: int, k: int, n: int) -> int:
    """FLOPs of an (m x k) @ (k x n) product."""
    return 2 * m * k * n


def conv_flops(batch: int, c_in: int, c_out: int, h_out: int, w_out: int, kh: int, kw: int) -> int:
    """FLOPs of a 2-D convolution, counted as the GEMM it amounts to."""
    return 2 * batch * c_out * h_out * w_out * c_in * kh * kw


@dataclass(frozen=True)
class Workload:
    id: str
    description: str
    batch: int
    input_shape: tuple          # per sample, batch axis excluded
    train: bool                 # True: forward + backward + Adam; False: inference only
    forward_flops: int          # matrix-product FLOPs of one forward pass over one batch
    nnjit_builder: Callable     # () -> compiled nnjit model
    torch_builder: Callable     # () -> (torch model, loss or None, optimizer or None)
    nnjit_layers: tuple = ()    # nnjit.layers classes the nnjit model needs
    nnjit_toplevel: tuple = ("Sequential", "Input")  # nnjit names it needs
    target_ratio: float = 1.0   # PERF.md target for torch_ms / nnjit_ms
    reference_torch_ms: float | None = None  # PERF.md figure on the 2-core dev machine
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def flops(self) -> int:
        """FLOPs per step: 3x forward for a training step, 1x for inference."""
        return self.forward_flops * (3 if self.train else 1)

    @property
    def kind(self) -> str:
        return "train" if self.train else "infer"

    def missing_nnjit(self) -> list[str]:
        """Names the nnjit model needs that nnjit does not have yet (imports nnjit)."""
        api = _nnjit_api()
        missing = [f"nnjit.layers.{n}" for n in self.nnjit_layers if not hasattr(api.layers, n)]
        missing += [f"nnjit.{n}" for n in self.nnjit_toplevel if getattr(api, n, None) is None]
        return missing

    def available(self) -> bool:
        """True when every nnjit layer class (and top-level name) this workload needs exists."""
        return not self.missing_nnjit()

    def data(self, seed: int = 0):
        """(x, y) as NumPy arrays: x float32 random normal, y int64 in [0, 10)."""
        import numpy as np

        rng = np.random.default_rng(seed)
        x = rng.standard_normal((self.batch,) + tuple(self.input_shape), dtype=np.float32)
        y = rng.integers(0, NUM_CLASSES, size=self.batch, dtype=np.int64)
        return np.ascontiguousarray(x), y


# --------------------------------------------------------------------------- nnjit side
class _Api:
    """nnjit's public names, looked up where the package exposes them.

    ``nj.Sequential``/``nj.Input``/``nj.layers``/``nj.optimizers`` are the contract (API.md);
    while the package is being assembled some are only importable from their submodules, so
    fall back to those (same objects)."""

    def __init__(self):
        import importlib

        import nnjit as nj

        self.nj = nj
        self.layers = importlib.import_module("nnjit.layers")
        self.optimizers = importlib.import_module("nnjit.optimizers")
        try:
            models = importlib.import_module("nnjit.models")
        except ImportError:  # pragma: no cover - package mid-edit
            models = None
        self.Sequential = getattr(nj, "Sequential", None) or getattr(models, "Sequential", None)
        self.Model = getattr(nj, "Model", None) or getattr(models, "Model", None)
        self.Input = getattr(nj, "Input", None) or getattr(self.layers, "Input", None)

    def __getattr__(self, name):
        return getattr(self.nj, name)


_API = None


def _nnjit_api() -> _Api:
    global _API
    if _API is None:
        _API = _Api()
    return _API


def _compile(model):
    api = _nnjit_api()
    model.compile(api.optimizers.Adam(learning_rate=LEARNING_RATE), "sparse_categorical_crossentropy")
    return model


def _nj_sequential(input_shape, layers_fn):
    api = _nnjit_api()
    return _compile(api.Sequential([api.Input(input_shape)] + layers_fn(api.layers)))


def _nj_mlp(n_in, hidden):
    return lambda: _nj_sequential((n_in,), lambda L: [
        L.Dense(hidden, activation="relu"),
        L.Dense(hidden, activation="relu"),
        L.Dense(NUM_CLASSES, activation="softmax"),
    ])


def _nj_cnn28():
    return _nj_sequential((1, 28, 28), lambda L: [
        L.Conv2D(32, 3, padding="same", activation="relu"),
        L.MaxPool2D(2),
        L.Conv2D(64, 3, padding="same", activation="relu"),
        L.MaxPool2D(2),
        L.Flatten(),
        L.Dense(128, activation="relu"),
        L.Dense(NUM_CLASSES, activation="softmax"),
    ])


def _nj_cnn32_bn():
    def layers(L):
        out = []
        for filters in (32, 64, 128):
            out += [L.Conv2D(filters, 3, padding="same"), L.BatchNormalization(), L.Activation("relu"),
                    L.MaxPool2D(2)]
        return out + [L.Flatten(), L.Dense(256, activation="relu"), L.Dropout(0.5),
                      L.Dense(NUM_CLASSES, activation="softmax")]
    return _nj_sequential((3, 32, 32), layers)


def _nj_recurrent(cls_name):
    return lambda: _nj_sequential((RNN_STEPS, RNN_IN), lambda L: [
        getattr(L, cls_name)(RNN_HIDDEN),
        L.Dense(NUM_CLASSES, activation="softmax"),
    ])


def _nj_xfmr():
    # TransformerEncoder(norm_first=True, dropout 0) is exactly the block of PERF.md:
    # x + MHA(LN(x)), then + Dense(FF_EMBED)(Dense(FF, relu)(LN(.))).
    return _nj_sequential((XF_STEPS, XF_EMBED), lambda L: [
        L.TransformerEncoder(XF_HEADS, XF_FF, activation="relu"),
        L.GlobalAvgPool1D(),
        L.Dense(NUM_CLASSES, activation="softmax"),
    ])


# --------------------------------------------------------------------------- PyTorch side
def _torch_train(model):
    import torch

    loss = torch.nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, eps=1e-7)
    return model, loss, opt


def _t_mlp(n_in, hidden):
    def build():
        from torch import nn

        return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                             nn.Linear(hidden, NUM_CLASSES))
    return build


def _t_cnn28():
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, NUM_CLASSES))


def _t_cnn32_bn():
    from torch import nn

    layers, c_in = [], 3
    for filters in (32, 64, 128):
        # Keras momentum 0.99 == PyTorch momentum 0.01; epsilon 1e-3 as nnjit's default.
        layers += [nn.Conv2d(c_in, filters, 3, padding=1), nn.BatchNorm2d(filters, eps=1e-3, momentum=0.01),
                   nn.ReLU(), nn.MaxPool2d(2)]
        c_in = filters
    layers += [nn.Flatten(), nn.Linear(128 * 4 * 4, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, NUM_CLASSES)]
    return nn.Sequential(*layers)


def _t_recurrent(kind):
    def build():
        import torch
        from torch import nn

        cell_cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind]

        class Recurrent(nn.Module):
            def __init__(self):
                super().__init__()
                self.cell = cell_cls(RNN_IN, RNN_HIDDEN, batch_first=True)
                self.head = nn.Linear(RNN_HIDDEN, NUM_CLASSES)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                out, _ = self.cell(x)
                return self.head(out[:, -1])

        return Recurrent()
    return build


def _t_xfmr():
    import torch
    from torch import nn

    class EncoderBlock(nn.Module):
        """Pre-norm: x + MHA(LN(x)); x + FF(LN(x)); mean over time; Linear to logits."""

        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(XF_EMBED, eps=1e-5)
            self.attn = nn.MultiheadAttention(XF_EMBED, XF_HEADS, batch_first=True)
            self.ln2 = nn.LayerNorm(XF_EMBED, eps=1e-5)
            self.ff1 = nn.Linear(XF_EMBED, XF_FF)
            self.ff2 = nn.Linear(XF_FF, XF_EMBED)
            self.head = nn.Linear(XF_EMBED, NUM_CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.ln1(x)
            a, _ = self.attn(h, h, h, need_weights=False)
            x = x + a
            x = x + self.ff2(torch.relu(self.ff1(self.ln2(x))))
            return self.head(x.mean(dim=1))

    return EncoderBlock()


def _torch(build, train=True):
    def make():
        model = build()
        if train:
            return _torch_train(model)
        model.eval()
        return model, None, None
    return make


# --------------------------------------------------------------------------- shapes and FLOPs
RNN_STEPS, RNN_IN, RNN_HIDDEN, RNN_BATCH = 50, 64, 128, 32
XF_STEPS, XF_EMBED, XF_HEADS, XF_FF, XF_BATCH = 64, 128, 4, 512, 16


def _mlp_flops(batch, n_in, hidden):
    return gemm_flops(batch, n_in, hidden) + gemm_flops(batch, hidden, hidden) + gemm_flops(batch, hidden, NUM_CLASSES)


def _cnn28_flops(b):
    return (conv_flops(b, 1, 32, 28, 28, 3, 3) + conv_flops(b, 32, 64, 14, 14, 3, 3)
            + gemm_flops(b, 64 * 7 * 7, 128) + gemm_flops(b, 128, NUM_CLASSES))


def _cnn32_bn_flops(b):
    return (conv_flops(b, 3, 32, 32, 32, 3, 3) + conv_flops(b, 32, 64, 16, 16, 3, 3)
            + conv_flops(b, 64, 128, 8, 8, 3, 3) + gemm_flops(b, 128 * 4 * 4, 256) + gemm_flops(b, 256, NUM_CLASSES))


def _recurrent_flops(b, gates):
    # per time step: x_t @ W (in x gates*H) and h @ U (H x gates*H); then the head on the last step
    per_step = gemm_flops(b, RNN_IN, gates * RNN_HIDDEN) + gemm_flops(b, RNN_HIDDEN, gates * RNN_HIDDEN)
    return RNN_STEPS * per_step + gemm_flops(b, RNN_HIDDEN, NUM_CLASSES)


def _xfmr_flops(b):
    tokens = b * XF_STEPS
    projections = 4 * gemm_flops(tokens, XF_EMBED, XF_EMBED)          # q, k, v, out
    # scores Q K^T and weights @ V: per head (T x d) @ (d x T) and (T x T) @ (T x d); summed
    # over the heads d adds up to the embedding width
    attention = 2 * gemm_flops(b * XF_STEPS, XF_EMBED, XF_STEPS)
    feed_forward = gemm_flops(tokens, XF_EMBED, XF_FF) + gemm_flops(tokens, XF_FF, XF_EMBED)
    return projections + attention + feed_forward + gemm_flops(b, XF_EMBED, NUM_CLASSES)


WORKLOADS: dict[str, Workload] = {}


def _add(w: Workload):
    WORKLOADS[w.id] = w


_add(Workload("mlp", "Dense 784-256 relu-256 relu-10, training", 128, (784,), True, _mlp_flops(128, 784, 256),
              _nj_mlp(784, 256), _torch(_t_mlp(784, 256)), ("Dense",), target_ratio=2.0, reference_torch_ms=2.8))
_add(Workload("mlp-b1-infer", "the mlp model, inference at batch 1 (model.predict)", 1, (784,), False,
              _mlp_flops(1, 784, 256), _nj_mlp(784, 256), _torch(_t_mlp(784, 256), train=False), ("Dense",),
              target_ratio=2.0, reference_torch_ms=0.048))
_add(Workload("mlp-narrow", "Dense 10-64 relu-64 relu-10, training (overhead-bound)", 128, (10,), True,
              _mlp_flops(128, 10, 64), _nj_mlp(10, 64), _torch(_t_mlp(10, 64)), ("Dense",),
              target_ratio=5.0, reference_torch_ms=0.52))
_add(Workload("cnn28", "Conv 1-32 / pool / Conv 32-64 / pool / Dense 128 / 10 on 1x28x28, training", 64, (1, 28, 28),
              True, _cnn28_flops(64), _nj_cnn28, _torch(_t_cnn28), ("Conv2D", "MaxPool2D", "Flatten", "Dense"),
              reference_torch_ms=25))
_add(Workload("cnn28-infer", "the cnn28 model, inference at batch 64 (model.predict)", 64, (1, 28, 28), False,
              _cnn28_flops(64), _nj_cnn28, _torch(_t_cnn28, train=False),
              ("Conv2D", "MaxPool2D", "Flatten", "Dense"), reference_torch_ms=9.8))
_add(Workload("cnn32-bn", "3 x [Conv 3x3 / BatchNorm / relu / pool] 32-64-128, Dense 256, Dropout, 10 on 3x32x32",
              32, (3, 32, 32), True, _cnn32_bn_flops(32), _nj_cnn32_bn, _torch(_t_cnn32_bn),
              ("Conv2D", "BatchNormalization", "Activation", "MaxPool2D", "Flatten", "Dense", "Dropout"),
              reference_torch_ms=26))
for _kind, _cls, _gates, _ref, _target in (("rnn", "SimpleRNN", 1, 6.1, 1.5), ("lstm", "LSTM", 4, 7.5, 1.0),
                                           ("gru", "GRU", 3, 13.8, 1.0)):
    _add(Workload(_kind, f"{_cls}(128) over 50 steps of 64 features, last step to Dense 10, training", RNN_BATCH,
                  (RNN_STEPS, RNN_IN), True, _recurrent_flops(RNN_BATCH, _gates), _nj_recurrent(_cls),
                  _torch(_t_recurrent(_kind)), (_cls, "Dense"), target_ratio=_target, reference_torch_ms=_ref))
_add(Workload("xfmr", "pre-norm Transformer encoder block, embed 128, 4 heads, FF 512, 64 steps, mean, Dense 10",
              XF_BATCH, (XF_STEPS, XF_EMBED), True, _xfmr_flops(XF_BATCH), _nj_xfmr, _torch(_t_xfmr),
              ("TransformerEncoder", "GlobalAvgPool1D", "Dense"), reference_torch_ms=11.3))


def get(workload_id: str) -> Workload:
    try:
        return WORKLOADS[workload_id]
    except KeyError:
        raise ValueError(f"unknown workload {workload_id!r}; expected one of {list(WORKLOADS)}") from None
