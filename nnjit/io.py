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
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{source}: damaged header ({exc})") from None
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
                or stop - start != dt.itemsize * int(np.prod(shape)):
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


def read_file(path, what="file") -> bytes:
    """The bytes of ``path``; FileNotFoundError naming ``what`` when it does not exist."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: no such file: {path!r}")
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
    names = json.dumps([layer.name for layer in model.layers])
    atomic_write(path, encode_tensors(model_tensors(model), {"format": "nnjit-weights", "model": model.name,
                                                             "layers": names}))


def load_weights(model, path) -> None:
    """Load weights saved by ``save_weights`` into a built model with the same layers.

    Every name and shape is checked before anything is assigned, so a mismatched file
    leaves the model unchanged."""
    path = os.fspath(path)
    tensors, meta = decode_tensors(read_file(path, "load_weights"), source=path)
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
    for name, target in own.items():
        target[...] = tensors[name]
