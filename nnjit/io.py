"""Weight files in the safetensors layout, written atomically and verified on load.

Layout: an 8-byte little-endian header length, a JSON header mapping each tensor name
to its dtype, shape and byte range, then the raw little-endian data.  The header's
``__metadata__`` carries a SHA-256 checksum over the data and the tensor table, so a
damaged file is refused instead of loaded.  Nothing in a file is ever executed.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile

import numpy as np

_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "I64": np.dtype("<i8"), "I32": np.dtype("<i4")}
_CODES = {v: k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


def _checksum(table: dict, data: bytes) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(table, sort_keys=True).encode())
    h.update(data)
    return h.hexdigest()


def atomic_write(path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that a crash leaves either the old or the new file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".nnjit-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def encode_tensors(tensors: dict, metadata: dict | None = None) -> bytes:
    """Serialize named arrays to safetensors bytes with a checksum in the metadata."""
    table, chunks, offset = {}, [], 0
    for name, array in tensors.items():
        a = np.ascontiguousarray(array)
        dt = a.dtype.newbyteorder("<")
        if dt not in _CODES:
            raise TypeError(f"cannot save tensor {name!r} of dtype {a.dtype}")
        raw = a.astype(dt, copy=False).tobytes()
        table[name] = {"dtype": _CODES[dt], "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    data = b"".join(chunks)
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta["nnjit_checksum"] = _checksum(table, data)
    header = json.dumps({"__metadata__": meta, **table}, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # safetensors aligns the data to 8 bytes
    return struct.pack("<Q", len(header)) + header + data


def decode_tensors(blob: bytes, source="file") -> tuple[dict, dict]:
    """Parse and verify safetensors bytes; returns (tensors, metadata)."""
    if len(blob) < 8:
        raise ValueError(f"{source}: too short to be a weight file ({len(blob)} bytes)")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > _MAX_HEADER or 8 + n > len(blob):
        raise ValueError(f"{source}: damaged or truncated (header length {n} does not fit in {len(blob)} bytes)")
    try:
        header = json.loads(blob[8:8 + n].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{source}: damaged header ({exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{source}: damaged header (not a JSON object)")
    meta = header.pop("__metadata__", {}) or {}
    data = blob[8 + n:]
    expected = meta.get("nnjit_checksum")
    if expected is None:
        raise ValueError(f"{source}: no checksum in the header; not a file written by nnjit")
    try:
        actual = _checksum(header, data)
    except TypeError:
        raise ValueError(f"{source}: damaged header") from None
    if actual != expected:
        raise ValueError(f"{source}: checksum mismatch; the file is damaged or was altered")
    tensors = {}
    for name, spec in header.items():
        try:
            dt = _DTYPES[spec["dtype"]]
            shape = tuple(int(s) for s in spec["shape"])
            start, stop = (int(v) for v in spec["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{source}: damaged entry for tensor {name!r}") from None
        if not 0 <= start <= stop <= len(data) or stop - start != dt.itemsize * int(np.prod(shape)):
            raise ValueError(f"{source}: tensor {name!r} does not fit the data section")
        tensors[name] = np.frombuffer(data, dtype=dt, count=(stop - start) // dt.itemsize, offset=start).reshape(shape).copy()
    return tensors, meta


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
    names = json.dumps([layer.name for layer in model.layers])
    atomic_write(path, encode_tensors(model_tensors(model), {"format": "nnjit-weights", "model": model.name,
                                                             "layers": names}))


def load_weights(model, path) -> None:
    """Load weights saved by ``save_weights`` into a built model with the same layers.

    Every name and shape is checked before anything is assigned, so a mismatched file
    leaves the model unchanged."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_weights: no such file: {path!r}")
    with open(path, "rb") as f:
        tensors, _ = decode_tensors(f.read(), source=path)
    own = model_tensors(model)
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    if missing or extra:
        raise ValueError(f"{path}: weights do not match the model's layers (missing {missing[:5]}, unexpected {extra[:5]})")
    for name, target in own.items():
        if tensors[name].shape != target.shape:
            raise ValueError(f"{path}: tensor {name!r} has shape {tensors[name].shape}, the model expects {target.shape}")
    for name, target in own.items():
        target[...] = tensors[name]
