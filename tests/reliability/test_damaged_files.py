"""Damaged, foreign and altered files given to nj.load_model and model.load_weights.

Every case must be refused with the documented error: ValueError naming the file and
the problem (FileNotFoundError for a missing path, IsADirectoryError for a folder) -
never an IndexError, KeyError, UnicodeDecodeError, JSONDecodeError or MemoryError - and
leave the file byte-identical and the in-memory model unchanged.  A damaged file may
also load when the damage does not change what it says (a space of the header's padding
turned into another whitespace character): then it must load the same model.

Cases: truncations at ``N_TRUNCATIONS`` offsets (evenly spread plus the boundaries of
the header), ``N_FLIPS`` single-byte flips at seeded random positions, both for a model
file and a weights file, plus the structured cases of ``STRUCTURED`` and
``RESEALED`` (valid files whose header was altered and whose checksum was recomputed).
"""
from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

import nnjit as nj
from nnjit import io as nj_io

L = nj.layers
N_EVEN = 120  # evenly spread truncation offsets per file
N_FLIPS = 150  # single-byte flips per file
FILE_KINDS = ["model", "weights"]


def _model(units=5):
    nj.set_seed(0)
    model = nj.Sequential([nj.Input((6,)), L.Dense(units, activation="relu"), L.LayerNormalization(),
                           L.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    model.train_on_batch(rng.normal(size=(8, 6)).astype(np.float32), np.arange(8) % 3)
    return model


def _other_model():
    nj.set_seed(1)
    model = nj.Sequential([nj.Input((6,)), L.Dense(4, activation="tanh"), L.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


X = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    model = _model()
    model.save(str(folder / "model.nnjit"))
    model.save_weights(str(folder / "model.weights"))
    return {"model": (folder / "model.nnjit").read_bytes(), "weights": (folder / "model.weights").read_bytes(),
            "prediction": model.predict(X)}


def _header_length(blob):
    return struct.unpack("<Q", blob[:8])[0]


def _truncation_offsets(blob):
    n = _header_length(blob)
    marks = {0, 1, 7, 8, 9, 8 + n - 1, 8 + n, 8 + n + 1, len(blob) - 4, len(blob) - 1}
    even = {int(round(i * (len(blob) - 1) / (N_EVEN - 1))) for i in range(N_EVEN)}
    return sorted(o for o in marks | even if 0 <= o < len(blob))


N_TRUNCATIONS = N_EVEN + 10  # at most: the marks may coincide with the even offsets


class Target:
    """A loader under test: load_model, or load_weights into a model that must stay as it was."""

    def __init__(self, kind):
        self.kind = kind
        self.model = None if kind == "model" else _model()
        self.before = None if self.model is None else self.model.get_weights()

    def load(self, path):
        if self.kind == "model":
            return nj.load_model(path)
        self.model.load_weights(path)
        return self.model

    def assert_unchanged(self):
        if self.model is not None:
            for a, b in zip(self.before, self.model.get_weights()):
                np.testing.assert_array_equal(a, b)


_BAD_TYPES = (IndexError, KeyError, UnicodeDecodeError, json.JSONDecodeError, MemoryError, AttributeError,
              struct.error, OverflowError, RecursionError)


def _outcome(target, path, expected_prediction):
    """None when the file was refused properly or loaded the right model; else a problem."""
    before = open(path, "rb").read()
    try:
        model = target.load(path)
    except _BAD_TYPES as exc:
        return f"{type(exc).__name__}: {exc}"
    except (ValueError, FileNotFoundError, IsADirectoryError) as exc:
        if type(exc) not in (ValueError, FileNotFoundError, IsADirectoryError):
            return f"unexpected subclass {type(exc).__name__}: {exc}"
        message = str(exc)
        if os.path.basename(path) not in message:
            return f"message does not name the file: {message}"
        result = None
    except Exception as exc:  # noqa: BLE001 - anything else is a failure of the loader
        return f"{type(exc).__name__}: {exc}"
    else:
        if not np.array_equal(model.predict(X), expected_prediction):
            return "loaded a different model without an error"
        result = None
    if open(path, "rb").read() != before:
        return "the file was changed"
    try:
        target.assert_unchanged()
    except AssertionError:
        return "the model was changed"
    return result


def _check_all(tmp_path, kind, files, variants):
    target = Target(kind)
    problems = []
    path = str(tmp_path / ("damaged.nnjit" if kind == "model" else "damaged.weights"))
    for label, blob in variants:
        with open(path, "wb") as f:
            f.write(blob)
        problem = _outcome(target, path, files["prediction"])
        if problem:
            problems.append(f"{label}: {problem}")
    assert not problems, f"{len(problems)} of {len(variants)} cases failed:\n" + "\n".join(problems[:20])
    return len(variants)


# ----------------------------------------------------------------------------- truncations and flips
@pytest.mark.parametrize("kind", FILE_KINDS)
def test_truncated(tmp_path, files, kind):
    blob = files[kind]
    offsets = _truncation_offsets(blob)
    assert len(offsets) <= N_TRUNCATIONS
    _check_all(tmp_path, kind, files, [(f"truncated at {o}", blob[:o]) for o in offsets])


@pytest.mark.parametrize("kind", FILE_KINDS)
def test_single_byte_flips(tmp_path, files, kind):
    blob = files[kind]
    rng = np.random.default_rng(1234 if kind == "model" else 4321)
    n = _header_length(blob)
    # Every byte of the length field, the first and last of header and data, then random positions.
    positions = list(range(8)) + [8, 8 + n - 1, 8 + n, len(blob) - 1]
    positions += sorted(rng.choice(len(blob), size=N_FLIPS - len(positions), replace=False).tolist())
    variants = []
    for i, p in enumerate(positions):
        mask = int(rng.integers(1, 256)) if i % 2 else 0xFF
        damaged = bytearray(blob)
        damaged[p] ^= mask
        variants.append((f"byte {p} ^ {mask:#04x}", bytes(damaged)))
    assert len(variants) == N_FLIPS
    _check_all(tmp_path, kind, files, variants)


# ----------------------------------------------------------------------------- structured cases
def _random_bytes(seed, size):
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def _with_length(length, rest=b""):
    return struct.pack("<Q", length) + rest


STRUCTURED = [
    ("empty", lambda f: b""),
    ("one byte", lambda f: b"\x00"),
    ("random 7 bytes", lambda f: _random_bytes(0, 7)),
    ("random 64 bytes", lambda f: _random_bytes(1, 64)),
    ("random 4 KiB", lambda f: _random_bytes(2, 4096)),
    ("random 64 KiB", lambda f: _random_bytes(3, 65536)),
    ("huge header length", lambda f: _with_length(2 ** 63, b"{}")),
    ("header length max", lambda f: _with_length(2 ** 64 - 1, b"{}")),
    ("header length past the end", lambda f: _with_length(100, b"{}")),
    ("header not utf-8", lambda f: _with_length(4, b"\xff\xfe\xfd\xfc")),
    ("header not json", lambda f: _with_length(8, b"not json")),
    ("header a list", lambda f: _with_length(2, b"[]")),
    ("header a number", lambda f: _with_length(1, b"7")),
    ("header null", lambda f: _with_length(4, b"null")),
    ("header empty object", lambda f: _with_length(2, b"{}")),
    ("metadata not a map", lambda f: _with_length(20, b'{"__metadata__": 5}')),
    ("metadata with numbers", lambda f: _with_length(31, b'{"__metadata__": {"format": 1}}')),
    ("deeply nested header", lambda f: _with_length(200_000, b"[" * 100_000 + b"]" * 100_000)),
    ("zeros", lambda f: bytes(4096)),
    ("text file", lambda f: b"model weights, version 1\n" * 40),
    ("gzip magic", lambda f: b"\x1f\x8b\x08\x00" + _random_bytes(4, 200)),
    ("plain safetensors without checksum", lambda f: _plain_safetensors()),
    ("the other kind of file", lambda f: None),  # model file for load_weights and the reverse
    ("another architecture", lambda f: _other_file("model")),
    ("another architecture's weights", lambda f: _other_file("weights")),
    ("two files concatenated", lambda f: f["model"] + f["model"]),
    ("trailing garbage", lambda f: f["model"] + b"\x00" * 16),
]


def _plain_safetensors():
    table = {"0/kernel": {"dtype": "F32", "shape": [6, 5], "data_offsets": [0, 120]}}
    header = json.dumps(table).encode()
    return struct.pack("<Q", len(header)) + header + bytes(120)


def _other_file(kind):
    import tempfile

    model = _other_model()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "other")
        model.save(path) if kind == "model" else model.save_weights(path)
        return open(path, "rb").read()


@pytest.mark.parametrize("kind", FILE_KINDS)
@pytest.mark.parametrize("label, make", STRUCTURED, ids=[s[0] for s in STRUCTURED])
def test_structured(tmp_path, files, kind, label, make):
    blob = make(files)
    if blob is None:
        blob = files["weights" if kind == "model" else "model"]
        if kind == "weights":  # load_weights reads the weights of a whole-model file: allowed
            target = Target(kind)
            path = str(tmp_path / "whole.nnjit")
            open(path, "wb").write(blob)
            target.load(path)
            np.testing.assert_array_equal(target.model.predict(X), files["prediction"])
            return
    if label == "another architecture" and kind == "model":
        # A valid model file of another architecture is a valid model file: it loads as that model.
        path = str(tmp_path / "other.nnjit")
        open(path, "wb").write(blob)
        assert [type(layer).__name__ for layer in nj.load_model(path).layers] == ["Dense", "Dense"]
        return
    # (anything appended is refused too: the checksum covers the data section to its end)
    _check_all(tmp_path, kind, files, [(label, blob)])


# ----------------------------------------------------------------------------- valid checksum, altered content
def _split(blob):
    n = _header_length(blob)
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__")
    return meta, header, blob[8 + n:]


def _reseal(meta, table, data):
    meta = {k: v for k, v in meta.items() if k != "nnjit_checksum"}
    meta["nnjit_checksum"] = nj_io._checksum(meta, table, data)
    header = json.dumps({"__metadata__": meta, **table}, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + data


def _alter_arch(change):
    def make(blob):
        meta, table, data = _split(blob)
        arch = json.loads(meta["architecture"])
        arch = change(arch)
        meta["architecture"] = arch if isinstance(arch, str) else json.dumps(arch)
        return _reseal(meta, table, data)
    return make


def _alter_meta(key, value):
    def make(blob):
        meta, table, data = _split(blob)
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
        return _reseal(meta, table, data)
    return make


def _alter_table(change):
    def make(blob):
        meta, table, data = _split(blob)
        change(table)
        return _reseal(meta, table, data)
    return make


def _layer(arch, i):
    return arch["config"]["layers"][i]["config"]


def _set(d, key, value):
    d[key] = value
    return d


def _units(n):
    def change(arch):
        _layer(arch, 0)["units"] = n
        return arch
    return change


def _nest(depth):
    return "[" * depth + "]" * depth


RESEALED = [
    # the architecture JSON
    ("arch units changed", _alter_arch(_units(6)), "model"),
    ("arch units zero", _alter_arch(_units(0)), "model"),
    ("arch units negative", _alter_arch(_units(-5)), "model"),
    ("arch units huge", _alter_arch(_units(10 ** 12)), "model"),
    ("arch units large", _alter_arch(_units(10 ** 8)), "model"),
    ("arch units a string", _alter_arch(_units("5")), "model"),
    ("arch input shape huge", _alter_arch(lambda a: _set(a, "config", _set(a["config"], "input",
                                                                           {"name": "i", "shape": [10 ** 12]}))),
     "model"),
    ("arch input shape huge product", _alter_arch(lambda a: _set(a, "config", _set(
        a["config"], "input", {"name": "i", "shape": [2 ** 40, 2 ** 40]}))), "model"),
    ("arch unknown layer class", _alter_arch(lambda a: _set(a["config"]["layers"][1], "class_name", "os.system")
                                             and a), "model"),
    ("arch unknown config key", _alter_arch(lambda a: _set(_layer(a, 1), "__import__", "os") and a), "model"),
    ("arch activation unknown", _alter_arch(lambda a: _set(_layer(a, 0), "activation", "eval") and a), "model"),
    ("arch layers not a list", _alter_arch(lambda a: _set(a["config"], "layers", {"a": 1}) and a), "model"),
    ("arch layer entry a string", _alter_arch(lambda a: _set(a["config"], "layers", ["Dense"]) and a), "model"),
    ("arch top class Model", _alter_arch(lambda a: _set(a, "class_name", "Model")), "model"),
    ("arch top class unknown", _alter_arch(lambda a: _set(a, "class_name", "Pickle")), "model"),
    ("arch a list", _alter_arch(lambda a: [a]), "model"),
    ("arch null", _alter_arch(lambda a: None), "model"),
    ("arch not json", _alter_arch(lambda a: "{not json"), "model"),
    ("arch deeply nested", _alter_arch(lambda a: _nest(100_000)), "model"),
    ("arch nested Sequential", _alter_arch(lambda a: _set(a["config"], "layers", [json.loads(json.dumps(a))] * 3)
                                           and a), "model"),
    ("arch layer removed", _alter_arch(lambda a: _set(a["config"], "layers", a["config"]["layers"][:2]) and a),
     "model"),
    ("arch epsilon negative", _alter_arch(lambda a: _set(_layer(a, 1), "epsilon", -1.0) and a), "model"),
    # metadata
    ("meta format missing", _alter_meta("format", None), "model"),
    ("meta format other", _alter_meta("format", "pickle"), "model"),
    ("meta version 2", _alter_meta("format_version", "2"), "model"),
    ("meta version garbage", _alter_meta("format_version", "\u0000"), "model"),
    ("meta floatx float16", _alter_meta("floatx", "float16"), "model"),
    ("meta architecture missing", _alter_meta("architecture", None), "model"),
    ("meta compile not json", _alter_meta("compile", "{"), "model"),
    ("meta compile a list", _alter_meta("compile", "[1, 2]"), "model"),
    ("meta compile optimizer unknown", _alter_meta("compile", json.dumps(
        {"optimizer": {"class_name": "Evil"}, "loss": "mse", "metrics": []})), "model"),
    ("meta compile optimizer bad lr", _alter_meta("compile", json.dumps(
        {"optimizer": {"class_name": "Adam", "learning_rate": -1.0}, "loss": "mse", "metrics": []})), "model"),
    ("meta compile loss unknown", _alter_meta("compile", json.dumps(
        {"optimizer": {"class_name": "Adam"}, "loss": "os.system", "metrics": []})), "model"),
    ("meta compile metric unknown", _alter_meta("compile", json.dumps(
        {"optimizer": {"class_name": "Adam"}, "loss": "mse", "metrics": ["exec"]})), "model"),
    ("meta compile loss config", _alter_meta("compile", json.dumps(
        {"optimizer": {"class_name": "Adam"}, "loss": {"class_name": "Huber", "delta": -1}, "metrics": []})),
     "model"),
    ("meta compile null with optimizer state", _alter_meta("compile", "null"), "model"),
    # the tensor table
    ("table dtype integer", _alter_table(lambda t: _set(t["0/bias"], "dtype", "I32")), "both"),
    ("table dtype unknown", _alter_table(lambda t: _set(t["0/bias"], "dtype", "F8")), "both"),
    ("table dtype not a string", _alter_table(lambda t: _set(t["0/bias"], "dtype", ["F32"])), "both"),
    ("table shape changed", _alter_table(lambda t: _set(t["0/kernel"], "shape", [5, 6])), "both"),
    ("table shape negative", _alter_table(lambda t: _set(t["0/kernel"], "shape", [-6, -5])), "both"),
    ("table shape overflow", _alter_table(lambda t: _set(t["0/kernel"], "shape", [2 ** 62, 2 ** 62, 4])), "both"),
    ("table shape product wraps", _alter_table(lambda t: _set(t["0/kernel"], "shape", [2 ** 32, 2 ** 32, 30])),
     "both"),
    ("table shape product wraps to the size", _alter_table(lambda t: _set(t["0/kernel"], "shape",
                                                                          [3547, 5200660860927418])), "both"),
    ("table shape huge", _alter_table(lambda t: _set(t["0/kernel"], "shape", [10 ** 30])), "both"),
    ("table shape a string", _alter_table(lambda t: _set(t["0/kernel"], "shape", "6,5")), "both"),
    ("table shape floats", _alter_table(lambda t: _set(t["0/kernel"], "shape", [6.5, 5])), "both"),
    ("table offsets past end", _alter_table(lambda t: _set(t["0/kernel"], "data_offsets", [0, 10 ** 9])), "both"),
    ("table offsets reversed", _alter_table(lambda t: _set(t["0/kernel"], "data_offsets", [120, 0])), "both"),
    ("table offsets negative", _alter_table(lambda t: _set(t["0/kernel"], "data_offsets", [-120, 0])), "both"),
    ("table offsets three", _alter_table(lambda t: _set(t["0/kernel"], "data_offsets", [0, 60, 120])), "both"),
    ("table entry not a map", _alter_table(lambda t: _set(t, "0/kernel", 5)), "both"),
    ("table entry missing", _alter_table(lambda t: t.pop("0/bias")), "both"),
    ("table extra tensor", _alter_table(lambda t: _set(t, "9/kernel", dict(t["0/bias"]))), "both"),
    ("table tensors swapped", _alter_table(lambda t: t.update({"1/gamma": t["1/beta"], "1/beta": t["1/gamma"]})),
     "both-loads"),
]
N_RESEALED = sum(2 if where.startswith("both") else 1 for _, _, where in RESEALED)


@pytest.mark.parametrize("label, make, where", RESEALED, ids=[r[0] for r in RESEALED])
def test_altered_and_resealed(tmp_path, files, label, make, where):
    kinds = FILE_KINDS if where.startswith("both") else [where]
    for kind in kinds:
        blob = make(files[kind])
        if where == "both-loads":
            # A consistent file with other values in it: loads (the checksum was recomputed),
            # as another model; refused only if the shapes disagree.  Nothing may crash.
            target = Target(kind)
            path = str(tmp_path / f"swapped-{kind}")
            open(path, "wb").write(blob)
            target.load(path)
            continue
        _check_all(tmp_path, kind, files, [(label, blob)])


# ----------------------------------------------------------------------------- paths
def test_paths(tmp_path, files):
    model = _model()
    before = model.get_weights()
    folder = tmp_path / "folder"
    folder.mkdir()
    for load in (nj.load_model, model.load_weights):
        with pytest.raises(IsADirectoryError, match="folder"):
            load(str(folder))
        with pytest.raises(FileNotFoundError, match="missing"):
            load(str(tmp_path / "missing"))
        with pytest.raises(TypeError, match="path"):
            load(3.5)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert os.listdir(folder) == []


N_PATH_CASES = 6
N_CASES = 2 * (N_TRUNCATIONS + N_FLIPS + len(STRUCTURED)) + N_RESEALED + N_PATH_CASES
