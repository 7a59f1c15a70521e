"""nj.io.load_torch_state_dict: the same architecture built in PyTorch and in nnjit, the
PyTorch weights saved as safetensors and loaded into nnjit, the outputs compared.

The PyTorch side writes its file with ``safetensors.torch.save_file`` when that package is
installed, else with the small writer below (the same layout: header JSON, raw data,
tensors sorted by dtype then name as safetensors sorts them)."""
import json
import struct
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import nnjit as nj  # noqa: E402
from nnjit.layers import (GRU, LSTM, Activation, BatchNormalization, Bidirectional, Conv2D, Dense,  # noqa: E402
                          Embedding, Flatten, LayerNormalization, MaxPool2D, MultiHeadAttention, SimpleRNN,
                          TransformerEncoder)

_CODES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64"}
_ALIGN = {"F64": 8, "I64": 8, "F32": 4, "F16": 2, "BF16": 2}


def _write_safetensors(state_dict, path):
    """A plain safetensors file, as safetensors.torch.save_file writes it."""
    items = []
    for name, t in state_dict.items():
        t = t.detach().cpu().contiguous()
        code = _CODES[t.dtype]
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        items.append((name, code, list(t.shape), raw))
    items.sort(key=lambda item: (-_ALIGN[item[1]], item[0]))
    header, offset = {}, 0
    for name, code, shape, raw in items:
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob + b"".join(item[3] for item in items))


def _save(module, path):
    try:
        from safetensors.torch import save_file
    except ImportError:
        _write_safetensors(module.state_dict(), path)
    else:
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))


def _compare(net, model, x, path, order=None, rtol=2e-5, atol=2e-6):
    net.eval()
    _save(net, path)
    nj.io.load_torch_state_dict(model, path, order=order)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x), expected, rtol=rtol, atol=atol)


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    nj.set_seed(0)


def test_mlp(tmp_path):
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4))
    model = nj.Sequential([nj.Input((8,)), Dense(16, activation="relu"), Dense(16, activation="tanh"), Dense(4)])
    _compare(net, model, _x((10, 8)), tmp_path / "mlp.safetensors")


def test_cnn_with_batch_norm_in_eval_mode(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8, eps=1e-3), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 4, 3, stride=2, padding=1, groups=4), nn.Flatten(), nn.Linear(16, 5))
    net.train()
    with torch.no_grad():
        for _ in range(3):  # moving statistics away from 0 and 1
            net(torch.randn(16, 3, 8, 8) * 2 + 1)
    assert net[1].running_mean.abs().sum() > 0
    model = nj.Sequential([nj.Input((3, 8, 8)), Conv2D(8, 3, padding="same"), BatchNormalization(epsilon=1e-3),
                           Activation("relu"), MaxPool2D(2), Conv2D(4, 3, strides=2, padding=1, groups=4), Flatten(),
                           Dense(5)])
    _compare(net, model, _x((6, 3, 8, 8)) * 2 + 1, tmp_path / "cnn.safetensors")
    np.testing.assert_array_equal(model.layers[1].state["moving_variance"], net[1].running_var.numpy())


class _LastStep(nn.Module):
    """A recurrent module, then a linear head on its last output."""

    def __init__(self, rnn, head):
        super().__init__()
        self.rnn = rnn
        self.head = head

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def test_two_layer_lstm(tmp_path):
    net = _LastStep(nn.LSTM(5, 7, num_layers=2, batch_first=True), nn.Linear(7, 3))
    model = nj.Sequential([nj.Input((6, 5)), LSTM(7, return_sequences=True), LSTM(7), Dense(3)])
    _compare(net, model, _x((4, 6, 5)), tmp_path / "lstm.safetensors", order=list(net.state_dict()))


def test_gru_and_simple_rnn(tmp_path):
    net = _LastStep(nn.GRU(5, 6, batch_first=True), nn.Linear(6, 2))
    model = nj.Sequential([nj.Input((7, 5)), GRU(6), Dense(2)])
    _compare(net, model, _x((4, 7, 5)), tmp_path / "gru.safetensors", order=list(net.state_dict()))
    net = _LastStep(nn.RNN(5, 4, nonlinearity="relu", batch_first=True), nn.Linear(4, 2))
    model = nj.Sequential([nj.Input((7, 5)), SimpleRNN(4, activation="relu"), Dense(2)])
    _compare(net, model, _x((4, 7, 5)), tmp_path / "rnn.safetensors", order=list(net.state_dict()))


def test_embedding_and_bidirectional_gru(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 5)
            self.gru = nn.GRU(5, 6, batch_first=True, bidirectional=True)
            self.head = nn.Linear(12, 2)

        def forward(self, ids):
            _, h = self.gru(self.emb(ids))
            return self.head(torch.cat([h[0], h[1]], dim=1))  # final forward and backward states

    net = Net()
    model = nj.Sequential([nj.Input((6,)), Embedding(20, 5), Bidirectional(GRU(6)), Dense(2)])
    ids = np.random.default_rng(1).integers(0, 20, size=(5, 6))
    net.eval()
    _save(net, tmp_path / "bi.safetensors")  # natural order: emb, gru, head is the layers' order
    nj.io.load_torch_state_dict(model, tmp_path / "bi.safetensors")
    with torch.no_grad():
        expected = net(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(model.predict(ids), expected, rtol=2e-5, atol=2e-6)


def test_attention_and_layer_norm(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.norm = nn.LayerNorm(8)

        def forward(self, x):
            a, _ = self.attn(x, x, x, need_weights=False)
            return self.norm(a)

    net = Net()
    with torch.no_grad():
        net.attn.in_proj_bias.normal_()
        net.attn.out_proj.bias.normal_()
        net.norm.weight.normal_()
    inp = nj.Input((5, 8))
    model = nj.Model(inp, LayerNormalization()(MultiHeadAttention(2)(inp)))
    _compare(net, model, _x((3, 5, 8)), tmp_path / "mha.safetensors")


@pytest.mark.parametrize("norm_first", [True, False])
def test_transformer_encoder_layer(tmp_path, norm_first):
    net = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, activation="relu", batch_first=True,
                                     norm_first=norm_first)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model = nj.Sequential([nj.Input((5, 8)), TransformerEncoder(2, 16, norm_first=norm_first, activation="relu")])
    _compare(net, model, _x((3, 5, 8)), tmp_path / "xfmr.safetensors", order=list(net.state_dict()), rtol=1e-4,
             atol=1e-5)
    # The same from the natural order of the names (linear1, linear2, norm1, norm2, self_attn).
    other = nj.Sequential([nj.Input((5, 8)), TransformerEncoder(2, 16, norm_first=norm_first, activation="relu")])
    nj.io.load_torch_state_dict(other, tmp_path / "xfmr.safetensors")
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_types(tmp_path, dtype):
    net = nn.Sequential(nn.Linear(4, 3))
    net.to(dtype)
    _write_safetensors(net.state_dict(), tmp_path / "w.safetensors")
    model = nj.Sequential([nj.Input((4,)), Dense(3)])
    nj.io.load_torch_state_dict(model, tmp_path / "w.safetensors")
    np.testing.assert_array_equal(model.layers[0].params["kernel"], net[0].weight.detach().float().numpy().T)
    np.testing.assert_array_equal(model.layers[0].params["bias"], net[0].bias.detach().float().numpy())


def test_mismatches_are_refused_and_leave_the_model_unchanged(tmp_path):
    path = tmp_path / "w.safetensors"
    _save(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)), path)

    def check(model, pattern, **kwargs):
        before = model.get_weights()
        with pytest.raises(ValueError, match=pattern):
            nj.io.load_torch_state_dict(model, path, **kwargs)
        for a, b in zip(before, model.get_weights()):
            np.testing.assert_array_equal(a, b)

    check(nj.Sequential([nj.Input((8,)), Dense(16), Dense(5)]),
          r"PyTorch tensor '2\.weight' has shape \(4, 16\).*needs \(5, 16\)")
    check(nj.Sequential([nj.Input((8,)), Dense(16), Dense(4, use_bias=False)]), r"\['2\.bias'\] have no place")
    check(nj.Sequential([nj.Input((8,)), Dense(16)]), r"modules \['2'\] are left over")
    check(nj.Sequential([nj.Input((8,)), Dense(16), Dense(4), Dense(4)]), "fewer than the model's layers")
    check(nj.Sequential([nj.Input((8,)), Dense(16), BatchNormalization(), Dense(4)]),
          r"tensor '2\.weight' has shape \(4, 16\); BatchNormalization layer")
    check(nj.Sequential([nj.Input((8,)), Dense(16), Dense(4)]), "not in the file", order=["0.weight", "x"])
    # The natural order of a module's attribute names may not be the layers' order: the
    # error names the tensor, and order= fixes it.
    net = _LastStep(nn.LSTM(5, 7, batch_first=True), nn.Linear(7, 3))
    net.fc = net.head
    del net.head
    _save(net, path)
    model = nj.Sequential([nj.Input((6, 5)), LSTM(7), Dense(3)])
    check(model, r"module 'fc' has no tensor 'weight_ih_l0'.*pass order=list\(module.state_dict\(\)\)")
    nj.io.load_torch_state_dict(model, path, order=list(net.state_dict()))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{x}  ")
    with pytest.raises(ValueError, match="damaged header"):
        nj.io.load_torch_state_dict(model, bad)
    bad.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{}   ")
    with pytest.raises(ValueError, match="the file has 0 PyTorch modules"):
        nj.io.load_torch_state_dict(model, bad)
    with pytest.raises(RuntimeError, match="build the model first"):
        nj.io.load_torch_state_dict(nj.Sequential([Dense(2)]), path)


def test_nnjit_does_not_import_torch():
    code = "import sys, nnjit; nnjit.io.load_torch_state_dict; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
