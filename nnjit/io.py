"""Weight files in the safetensors layout, written atomically and verified on load.

Layout: an 8-byte little-endian header length, a JSON header mapping each tensor name
to its dtype, shape and byte range, then the raw little-endian data.  The header's
``__metadata__`` carries a SHA-256 checksum over the rest of the metadata, the tensor
table and the data, so a damaged file is refused instead of loaded.  Nothing in a file
is ever executed.

``read_safetensors`` reads plain safetensors files (no checksum, as PyTorch's
``safetensors.torch.save_file`` writes them) and ``load_torch_state_dict`` loads such a
file of a PyTorch model into the nnjit model of the same architecture.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
import tempfile

import numpy as np

_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "I64": np.dtype("<i8"), "I32": np.dtype("<i4")}
_CODES = {v: k for k, v in _DTYPES.items()}
# What plain safetensors files may hold besides (BF16 has no NumPy type: widened to float32).
_READ_DTYPES = {**_DTYPES, "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"), "I16": np.dtype("<i2"),
                "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("?")}
_MAX_HEADER = 100 * 1024 * 1024
_CHECKSUM_KEY = "nnjit_checksum"


def _checksum(meta: dict, table: dict, data: bytes) -> str:
    """SHA-256 over the metadata (less the checksum itself), the tensor table and the data."""
    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in meta.items() if k != _CHECKSUM_KEY}, sort_keys=True).encode())
    h.update(b"\0")
    h.update(json.dumps(table, sort_keys=True).encode())
    h.update(b"\0")
    h.update(data)
    return h.hexdigest()


def _fsync_folder(folder: str) -> None:
    # Makes the rename itself durable; not possible on every platform, hence best effort.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_file_mode(path: str) -> int:
    """The permissions the file would get from a plain open(): the old file's, else 0666 less the umask."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write(path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that a crash leaves either the old or the new file.

    The bytes go to a temporary file in the same folder, are flushed to the disk, and the
    temporary file then replaces ``path`` in one rename; on any error the temporary file
    is removed and ``path`` is left as it was."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".nnjit-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def encode_tensors(tensors: dict, metadata: dict | None = None) -> bytes:
    """Serialize named arrays to safetensors bytes with a checksum in the metadata."""
    table, chunks, offset = {}, [], 0
    for name, array in tensors.items():
        a = np.asarray(array)
        a = a if a.flags.c_contiguous else np.ascontiguousarray(a)  # (ascontiguousarray makes 0-d arrays 1-d)
        dt = a.dtype.newbyteorder("<")
        if dt not in _CODES:
            raise TypeError(f"cannot save tensor {name!r} of dtype {a.dtype}")
        raw = a.astype(dt, copy=False).tobytes()
        table[name] = {"dtype": _CODES[dt], "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    data = b"".join(chunks)
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta[_CHECKSUM_KEY] = _checksum(meta, table, data)
    header = json.dumps({"__metadata__": meta, **table}, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # safetensors aligns the data to 8 bytes
    return struct.pack("<Q", len(header)) + header + data


def _split(blob: bytes, source: str) -> tuple[dict, dict, bytes]:
    """(tensor table, metadata, data section) of safetensors bytes; checks the framing only."""
    if len(blob) < 8:
        raise ValueError(f"{source}: too short to be a safetensors file ({len(blob)} bytes)")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > _MAX_HEADER or 8 + n > len(blob):
        raise ValueError(f"{source}: damaged or truncated (header length {n} does not fit in {len(blob)} bytes)")
    try:
        header = json.loads(blob[8:8 + n].decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{source}: damaged header ({type(exc).__name__}: {exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{source}: damaged header (not a JSON object)")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError(f"{source}: damaged header (__metadata__ is not a map of strings)")
    return header, meta, blob[8 + n:]


def _tensors(table: dict, data: bytes, source: str, dtypes: dict) -> dict:
    tensors = {}
    for name, spec in table.items():
        try:
            code = spec["dtype"]
            dt = dtypes[code]
            shape = tuple(int(s) for s in spec["shape"])
            start, stop = (int(v) for v in spec["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{source}: damaged or unsupported entry for tensor {name!r} "
                             f"(dtypes read: {sorted(dtypes)})") from None
        if any(s < 0 for s in shape) or not 0 <= start <= stop <= len(data) \
                or stop - start != dt.itemsize * math.prod(shape):  # (exact: np.prod would wrap around)
            raise ValueError(f"{source}: tensor {name!r} does not fit the data section")
        a = np.frombuffer(data, dtype=dt, count=(stop - start) // dt.itemsize, offset=start).reshape(shape)
        if code == "BF16":  # the upper half of a float32
            a = (a.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = a.astype(a.dtype.newbyteorder("="), copy=True)
    return tensors


def decode_tensors(blob: bytes, source="file") -> tuple[dict, dict]:
    """Parse and verify safetensors bytes written by nnjit; returns (tensors, metadata)."""
    table, meta, data = _split(blob, source)
    expected = meta.get(_CHECKSUM_KEY)
    if expected is None:
        raise ValueError(f"{source}: no checksum in the header; not a file written by nnjit")
    try:
        actual = _checksum(meta, table, data)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: damaged header") from None
    if actual != expected:
        raise ValueError(f"{source}: checksum mismatch; the file is damaged or was altered")
    return _tensors(table, data, source, _DTYPES), meta


def check_path(path, what="file") -> str:
    """``path`` as a str; TypeError naming ``what`` when it is not a path."""
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what}: expected a file path (str or os.PathLike) for path. Received: path={path!r:.80}")
    path = os.fspath(path)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    if not path:
        raise ValueError(f"{what}: expected a file path for path. Received: path=''")
    return path


def read_file(path, what="file") -> bytes:
    """The bytes of ``path``; FileNotFoundError naming ``what`` when it does not exist,
    IsADirectoryError when it is a folder."""
    path = check_path(path, what)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what}: path={path!r} is a folder; expected a file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: no such file: path={path!r}")
    with open(path, "rb") as f:
        return f.read()


def read_safetensors(path) -> tuple[dict, dict]:
    """Tensors and metadata of any safetensors file (PyTorch's included), as NumPy arrays.

    F32, F64, F16, BF16 (returned as float32) and integer tensors are read.  A checksum is
    verified when the file carries nnjit's; plain files have none to verify."""
    path = os.fspath(path)
    blob = read_file(path, "read_safetensors")
    if not blob:
        raise ValueError(f"{path}: the file is empty")
    table, meta, data = _split(blob, path)
    if _CHECKSUM_KEY in meta:
        return decode_tensors(blob, path)
    return _tensors(table, data, path, _READ_DTYPES), meta


def model_tensors(model) -> dict:
    """The weights and state of every layer, named ``<layer index>/<param>`` (as PyTorch's
    ``0.weight``): matching by position lets a fresh model, whose layers were given other
    automatic names, load the file."""
    out = {}
    for i, layer in enumerate(model.layers):
        for key, value in list(layer.params.items()) + list(layer.state.items()):
            out[f"{i}/{key}"] = value
    return out


def save_weights(model, path) -> None:
    """Write the model's weights to ``path`` (safetensors layout, atomic replace)."""
    path = check_path(path, "save_weights")
    if os.path.isdir(path):
        raise ValueError(f"save_weights: path={path!r} is a folder; expected a file name")
    names = json.dumps([layer.name for layer in model.layers])
    atomic_write(path, encode_tensors(model_tensors(model), {"format": "nnjit-weights", "model": model.name,
                                                             "layers": names}))


def load_weights(model, path) -> None:
    """Load weights saved by ``save_weights`` into a built model with the same layers.

    Every name and shape is checked before anything is assigned, so a mismatched file
    leaves the model unchanged."""
    path = check_path(path, "load_weights")
    blob = read_file(path, "load_weights")
    if not blob:
        raise ValueError(f"{path}: the file is empty; not a weights file")
    tensors, meta = decode_tensors(blob, source=path)
    if meta.get("format") == "nnjit-model":  # a whole-model file: its weights without the optimizer state
        tensors = {k: v for k, v in tensors.items() if not k.startswith("optimizer/")}
    own = model_tensors(model)
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    if missing or extra:
        raise ValueError(f"{path}: weights do not match the model's layers (missing {missing[:5]}, unexpected {extra[:5]})")
    for name, target in own.items():
        if tensors[name].shape != target.shape:
            raise ValueError(f"{path}: tensor {name!r} has shape {tensors[name].shape}, the model expects {target.shape}")
        if tensors[name].dtype.kind != "f":
            raise ValueError(f"{path}: tensor {name!r} has dtype {tensors[name].dtype}; expected floats")
    for name, target in own.items():
        target[...] = tensors[name]


# ------------------------------------------------------------------ PyTorch state dicts
# A PyTorch state dict in a safetensors file is loaded module by module: the tensors are
# grouped by module (the name less its last part), the groups are put in the order of
# ``order`` (the state dict's own order) or, without it, in natural order of the module
# paths, which is the order of an nn.Sequential (safetensors files do not keep the state
# dict's order: they sort the tensors by name), and the i-th group goes to the i-th layer
# of ``model.layers`` that has weights.  The converters below say how each layer's
# parameters come from its module's tensors.

_TORCH_RNN = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?$")
_TORCH_SKIPPED = ("num_batches_tracked",)  # BatchNorm's counter: nnjit has no use for it
_TRANSFORMER_PARTS = ("self_attn", "linear1", "linear2", "norm1", "norm2")


def _natural(name: str):
    """Sort key of a tensor name: by module path, numbers compared as numbers
    ("2.weight" before "10.weight", "layer2" before "layer10")."""
    return [[int(t) if t.isdigit() else t for t in re.split(r"(\d+)", part)] for part in name.split(".")]


class _TorchModule:
    """The tensors of one PyTorch module (one layer of a multi-layer RNN), by local name."""

    def __init__(self, prefix, rnn_layer):
        self.prefix = prefix
        self.rnn_layer = rnn_layer
        self.tensors = {}  # local name -> full name

    @property
    def label(self):
        where = self.prefix or "<top level>"
        return where if self.rnn_layer is None else f"{where} (layer {self.rnn_layer})"


def _torch_modules(names, tensors):
    modules = {}
    for full in names:
        prefix, _, local = full.rpartition(".")
        if local in _TORCH_SKIPPED:
            continue
        # nn.MultiheadAttention keeps its output projection in a submodule: one layer here.
        if local in ("weight", "bias") and (prefix == "out_proj" or prefix.endswith(".out_proj")):
            parent = prefix[:-len("out_proj")].rstrip(".")
            lead = parent + "." if parent else ""
            if lead + "in_proj_weight" in tensors or lead + "q_proj_weight" in tensors:
                prefix, local = parent, "out_proj." + local
        match = _TORCH_RNN.match(local)
        key = (prefix, int(match.group(2)) if match else None)
        if key not in modules:
            modules[key] = _TorchModule(*key)
        modules[key].tensors[local] = full
    return list(modules.values())


class _Take:
    """Hands out a module's tensors to a converter, checking each shape first; remembers
    which were used so that unexpected ones are reported."""

    def __init__(self, module, tensors, layer, source, hint=""):
        self.module, self.all, self.layer, self.source, self.hint = module, tensors, layer, source, hint
        self.used = set()

    def __call__(self, local, shape):
        full = self.module.tensors.get(local)
        if full is None:
            raise ValueError(f"{self.source}: PyTorch module {self.module.label!r} has no tensor {local!r}, which "
                             f"{_describe(self.layer)} needs; its tensors: {sorted(self.module.tensors)}{self.hint}")
        value = self.all[full]
        if value.shape != tuple(shape):
            raise ValueError(f"{self.source}: PyTorch tensor {full!r} has shape {value.shape}; {_describe(self.layer)} "
                             f"needs {tuple(shape)} there (is the nnjit model the same architecture, layer for "
                             f"layer?){self.hint}")
        if value.dtype.kind != "f":
            raise ValueError(f"{self.source}: PyTorch tensor {full!r} has dtype {value.dtype}; expected floats")
        self.used.add(local)
        return value

    def has(self, local):
        return local in self.module.tensors


def _describe(layer):
    return f"{type(layer).__name__} layer {layer.name!r}"


def _shape(layer, key):
    return (layer.state[key] if key in layer.state else layer.params[key]).shape


def _reversed_shape(layer, key):
    return _shape(layer, key)[::-1]


def _from_linear(layer, take, _):
    out = {"kernel": take("weight", _reversed_shape(layer, "kernel")).T}
    if layer.use_bias:
        out["bias"] = take("bias", _shape(layer, "bias"))
    return out


def _from_conv(layer, take, _):
    out = {"kernel": take("weight", _shape(layer, "kernel"))}
    if layer.use_bias:
        out["bias"] = take("bias", _shape(layer, "bias"))
    return out


def _from_batch_norm(layer, take, _):
    c = _shape(layer, "gamma")
    return {"gamma": take("weight", c), "beta": take("bias", c), "moving_mean": take("running_mean", c),
            "moving_variance": take("running_var", c)}


def _from_layer_norm(layer, take, _):
    f = _shape(layer, "gamma")
    return {"gamma": take("weight", f), "beta": take("bias", f)}


def _from_embedding(layer, take, _):
    return {"embeddings": take("weight", _shape(layer, "embeddings"))}


def _from_rnn(layer, take, index, suffix=""):
    """SimpleRNN, LSTM and GRU from nn.RNN / nn.LSTM / nn.GRU (same gate orders).  nnjit has
    one bias where PyTorch has two: their sum, except GRU's recurrent bias, which the reset
    gate multiplies (nnjit keeps it apart as recurrent_bias)."""
    index = 0 if index is None else index
    end = f"_l{index}{suffix}"
    out = {"kernel": take("weight_ih" + end, _reversed_shape(layer, "kernel")).T,
           "recurrent_kernel": take("weight_hh" + end, _reversed_shape(layer, "recurrent_kernel")).T}
    if layer.use_bias:
        shape = _shape(layer, "bias")
        b_ih, b_hh = take("bias_ih" + end, shape), take("bias_hh" + end, shape)
        if type(layer).__name__ == "GRU":
            out["bias"], out["recurrent_bias"] = b_ih, b_hh
        else:
            out["bias"] = b_ih.astype(np.float64) + b_hh
    return out


def _from_bidirectional(layer, take, index):
    inner = {}
    for prefix, sub, suffix in (("forward_", layer.forward_layer, ""), ("backward_", layer.backward_layer, "_reverse")):
        for key, value in _from_rnn(sub, take, index, suffix).items():
            inner[prefix + key] = value
    return inner


def _from_attention(layer, take, _):
    """nn.MultiheadAttention: in_proj_weight (3E, E) holds W_q, W_k, W_v as rows (or
    q_proj_weight, k_proj_weight, v_proj_weight apart); nnjit's wq is W_q transposed."""
    e = _shape(layer, "wq")[0]
    out = {}
    if take.has("in_proj_weight"):
        w = take("in_proj_weight", (3 * e, e))
        out.update(wq=w[:e].T, wk=w[e:2 * e].T, wv=w[2 * e:].T)
    else:
        for key in ("q", "k", "v"):
            out["w" + key] = take(f"{key}_proj_weight", (e, e)).T
    out["wo"] = take("out_proj.weight", (e, e)).T
    if layer.use_bias:
        b = take("in_proj_bias", (3 * e,))
        out.update(bq=b[:e], bk=b[e:2 * e], bv=b[2 * e:], bo=take("out_proj.bias", (e,)))
    return out


_TORCH_CONVERTERS = {
    "Dense": _from_linear, "Conv2D": _from_conv, "BatchNormalization": _from_batch_norm,
    "LayerNormalization": _from_layer_norm, "Embedding": _from_embedding, "SimpleRNN": _from_rnn, "LSTM": _from_rnn,
    "GRU": _from_rnn, "Bidirectional": _from_bidirectional, "MultiHeadAttention": _from_attention,
}


def _convert_module(layer, module, tensors, source, hint=""):
    converter = _TORCH_CONVERTERS[type(layer).__name__]
    take = _Take(module, tensors, layer, source, hint)
    values = converter(layer, take, module.rnn_layer)
    unused = sorted(set(module.tensors) - take.used)
    if unused:
        raise ValueError(f"{source}: PyTorch tensors {[module.tensors[k] for k in unused]} have no place in "
                         f"{_describe(layer)} (a bias where the layer has use_bias=False, or another architecture?)")
    return values


def _convert_transformer(layer, modules, tensors, source, hint):
    """TransformerEncoder from nn.TransformerEncoderLayer: its submodules self_attn,
    linear1, linear2, norm1 and norm2 (in any order), all under one parent."""
    parent = modules[0].prefix.rpartition(".")[0]
    lead = parent + "." if parent else ""
    parts = {}
    for module in modules:
        name = module.prefix[len(lead):] if module.prefix.startswith(lead) else None
        if module.prefix.rpartition(".")[0] != parent or name not in _TRANSFORMER_PARTS or name in parts:
            break
        parts[name] = module
        if len(parts) == len(_TRANSFORMER_PARTS):
            break
    missing = [p for p in _TRANSFORMER_PARTS if p not in parts]
    if missing:
        raise ValueError(f"{source}: {_describe(layer)} needs an nn.TransformerEncoderLayer (submodules "
                         f"{list(_TRANSFORMER_PARTS)}); at module {modules[0].label!r} the file lacks {missing}")
    values = {}
    for prefix, sub, part in (("attention_", layer.attention, "self_attn"), ("norm1_", layer.norm1, "norm1"),
                              ("norm2_", layer.norm2, "norm2"), ("ff1_", layer.ff1, "linear1"),
                              ("ff2_", layer.ff2, "linear2")):
        for key, value in _convert_module(sub, parts[part], tensors, source, hint).items():
            values[prefix + key] = value
    return values, len(_TRANSFORMER_PARTS)


def load_torch_state_dict(model, path, order=None) -> None:
    """Load a PyTorch model's weights from a safetensors file into the nnjit model of the
    same architecture (``safetensors.torch.save_file(module.state_dict(), path)``).

    Modules are matched to the layers with weights in the order of ``model.layers``:
    nn.Linear -> Dense (weight transposed), nn.Conv2d -> Conv2D (same layout),
    nn.BatchNorm -> BatchNormalization (weight, bias, running_mean, running_var; the
    counter num_batches_tracked is skipped), nn.LayerNorm -> LayerNormalization,
    nn.Embedding -> Embedding, nn.RNN / nn.LSTM / nn.GRU -> SimpleRNN / LSTM / GRU (one
    layer per PyTorch layer ``_l<k>``; a bidirectional one -> Bidirectional with
    merge_mode="concat"), nn.MultiheadAttention -> MultiHeadAttention,
    nn.TransformerEncoderLayer -> TransformerEncoder.

    Args:
        model: a built nnjit model.
        path: the safetensors file (F32, F64, F16 or BF16 tensors).
        order: the state dict's tensor names in its own order, e.g.
            ``list(module.state_dict())``.  Needed when the natural order of the module
            names differs from the order of the layers (a module with attributes ``lstm``
            and ``fc`` sorts as fc, lstm); an nn.Sequential needs none.

    Every tensor's shape is checked before anything is assigned; a mismatch raises a
    ValueError naming the PyTorch tensor, and the model is left unchanged.  PyTorch is not
    needed (the file is parsed here).
    """
    source = os.fspath(path)
    if not getattr(model, "built", False):
        raise RuntimeError(f"{getattr(model, 'name', 'model')}.load_torch_state_dict: build the model first "
                           "(give it an Input or call build)")
    tensors, _ = read_safetensors(source)
    if order is None:
        names = sorted(tensors, key=_natural)
    else:
        names = [str(n) for n in order]
        unknown = [n for n in names if n not in tensors]
        unlisted = [n for n in tensors if n not in set(names) and n.rpartition(".")[2] not in _TORCH_SKIPPED]
        if unknown or unlisted:
            raise ValueError(f"{source}: order does not list the file's tensors (not in the file: {unknown[:5]}, "
                             f"not in order: {unlisted[:5]})")
    modules = _torch_modules(names, tensors)
    hint = "" if order is not None else (
        "; the modules were taken in the natural order of their names: if the layers follow another order, "
        "pass order=list(module.state_dict())")
    layers = [layer for layer in model.layers if layer.params or layer.state]
    assignments = []  # (target array, value)
    at = 0
    for layer in layers:
        kind = type(layer).__name__
        if at >= len(modules):
            raise ValueError(f"{source}: the file has {len(modules)} PyTorch modules with tensors, fewer than the "
                             f"model's layers with weights; nothing left for {_describe(layer)}")
        if kind == "TransformerEncoder":
            values, used = _convert_transformer(layer, modules[at:], tensors, source, hint)
        elif kind in _TORCH_CONVERTERS:
            values, used = _convert_module(layer, modules[at], tensors, source, hint), 1
        else:
            raise ValueError(f"{source}: no PyTorch counterpart is known for {_describe(layer)}")
        targets = {**layer.params, **layer.state}
        if set(values) != set(targets):
            raise ValueError(f"{source}: {_describe(layer)} has weights {sorted(targets)}; the PyTorch module "
                             f"{modules[at].label!r} gives {sorted(values)}")
        for key, value in values.items():
            if value.shape != targets[key].shape:  # guards the converters themselves
                raise ValueError(f"{source}: {_describe(layer)}.{key} has shape {targets[key].shape}; "
                                 f"the PyTorch module {modules[at].label!r} gives {value.shape}")
            assignments.append((targets[key], value))
        at += used
    if at != len(modules):
        rest = [m.label for m in modules[at:]]
        raise ValueError(f"{source}: PyTorch modules {rest[:5]} are left over after the model's {len(layers)} "
                         "layers with weights (another architecture?)")
    for target, value in assignments:
        target[...] = value
