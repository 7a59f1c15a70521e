"""Whole-model files: ``model.save(path)`` and ``nj.load_model(path)``.

One file in the safetensors layout of ``nnjit.io`` (checksummed, replaced atomically):

- tensors ``"<i>/<key>"``: the weights and state (BatchNormalization's moving statistics)
  of the i-th layer of ``model.layers``, as ``save_weights`` writes them;
- tensors ``"optimizer/<slot>"`` (flat buffers over all parameters, in the order of
  ``model.layers``) and ``"optimizer/iterations"`` (int64 scalar: the step count, which is
  also where a learning-rate schedule stands), unless ``include_optimizer=False``;
- metadata ``format`` ("nnjit-model"), ``format_version``, ``nnjit_version``, ``floatx`` (the weights' float
  type), ``architecture`` (JSON, below), ``compile`` (JSON or "null"): optimizer config,
  loss (a name or config, a list of them for several outputs), ``loss_weights``, metric
  names; and the checksum over all of that, the tensor table and the data.

The architecture is ``{"class_name": "Sequential" | "Model", "config": {...}}``.  A
Sequential lists its input (name, shape) and its layers as ``{"class_name", "config"}``
(``layer.get_config()``).  A functional Model lists every layer once (inputs first, then
in graph order; a model used as a layer is described by its own architecture) and the
graph: each node's layer index and the ``[layer, node, output]`` references of the
tensors it was called on (``node`` counts the calls of that layer), and the references of
the model's inputs and outputs.

Loading builds layers only through the closed registry of layer classes
(``nnjit.layers.base.get_layer_class``: the built-in layers and the subclasses of
``Layer`` defined by the program that loads); nothing named by the file is imported,
unpickled or evaluated.
"""
from __future__ import annotations

import contextlib
import json
import os

import numpy as np

from .. import io as io_module
from .. import losses as losses_module
from .. import optimizers as optimizers_module
from .. import runtime
from ..layers.base import Layer, get_layer_class, weight_budget
from ..layers.input import InputLayer, SymbolicTensor, call_symbolic
from .engine import BaseModel
from .functional import Model
from .sequential import Sequential

FORMAT = "nnjit-model"
FORMAT_VERSION = 1  # raised when the layout changes in a way older readers would misread
WEIGHTS_FORMAT = "nnjit-weights"
_OPTIMIZER_PREFIX = "optimizer/"


# ---------------------------------------------------------------------------- describing
def _json_form(value, what):
    """``value`` as it reads back from JSON (tuples become lists); ValueError naming ``what``
    when it cannot be written as JSON."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot save {what}: its configuration is not JSON ({exc})") from None


def _layer_from_config(cls, config):
    from_config = getattr(cls, "from_config", None)
    return from_config(config) if callable(from_config) else cls(**config)


def _describe_layer(layer, owners, container):
    """``{"class_name", "config"}`` of one layer of ``container`` (a model: nested
    architecture).  ``owners`` maps every layer described so far to its container, so that
    a layer shared between a model and a model nested in it is refused instead of being
    silently split in two."""
    owner = owners.setdefault(id(layer), id(container))
    if owner != id(container):
        raise ValueError(f"cannot save layer {layer.name!r}: it is used both inside a nested model and outside it; "
                         "a saved model can share a layer only within one model")
    if isinstance(layer, BaseModel):
        return _describe_model(layer, owners)
    if not isinstance(layer, Layer):
        raise ValueError(f"cannot save {layer!r}: not a Layer")
    name = type(layer).__name__
    try:
        registered = get_layer_class(name)
    except ValueError:
        registered = None
    if registered is not type(layer):
        raise ValueError(f"cannot save layer {layer.name!r}: its class {name} is not the layer class registered "
                         "under that name (two layer classes with one name?)")
    what = f"layer {layer.name!r} ({name})"
    config = _json_form(layer.get_config(), what)
    # The file is only useful if the config rebuilds the layer: check now, not at load.
    try:
        with _quiet_rng():
            again = _layer_from_config(type(layer), json.loads(json.dumps(config)))
        again_config = _json_form(again.get_config(), what)
    except Exception as exc:  # noqa: BLE001 - any failure of a user's constructor means the same
        raise ValueError(f"cannot save {what}: its get_config() does not rebuild it "
                         f"({type(exc).__name__}: {exc}); make get_config() return the constructor's "
                         "arguments (initializers and regularizers by name or config dict)") from None
    if again_config != config:
        raise ValueError(f"cannot save {what}: its get_config() does not rebuild it "
                         f"(saved {config}, rebuilt {again_config})")
    return {"class_name": name, "config": config}


def _describe_model(model, owners):
    if type(model) is Sequential:
        inp = model._input
        return {"class_name": "Sequential", "config": {
            "name": model.name,
            "input": None if inp is None else {"name": inp.name, "shape": list(inp.shape)},
            "layers": [_describe_layer(layer, owners, model) for layer in model._stack],
            "fuse_dense_stack": bool(model.fuse_dense_stack),
        }}
    if type(model) is Model:
        return {"class_name": "Model", "config": _describe_graph(model, owners)}
    raise ValueError(f"cannot save a model of class {type(model).__name__}: only Sequential and Model "
                     "(and models nested in them) can be rebuilt from a file")


def _describe_graph(model, owners):
    layers, index = [], {}

    def add(layer):
        if id(layer) not in index:
            index[id(layer)] = len(layers)
            layers.append(layer)

    for t in model._inputs:
        add(t.layer)
    ordinal, calls = {}, {}
    for t in model._inputs:
        ordinal[id(t.node)] = 0
        calls[id(t.layer)] = 1
    for node in model._nodes:
        add(node.layer)
        k = calls.get(id(node.layer), 0)
        ordinal[id(node)] = k
        calls[id(node.layer)] = k + 1

    def ref(t):
        return [index[id(t.layer)], ordinal[id(t.node)], int(t.index)]

    return {
        "name": model.name,
        "layers": [_describe_layer(layer, owners, model) for layer in layers],
        "nodes": [{"layer": index[id(node.layer)], "inputs": [ref(t) for t in node.inputs]} for node in model._nodes],
        "inputs": [ref(t) for t in model._inputs],
        "outputs": [ref(t) for t in model._outputs],
        "several_inputs": bool(model._several_inputs),
        "several_outputs": bool(model._several_outputs),
    }


def architecture(model) -> dict:
    """The JSON-ready description of ``model`` that ``save`` writes (see the module doc)."""
    return _json_form(_describe_model(model, {}), f"model {model.name!r}")


# ---------------------------------------------------------------------------- rebuilding
@contextlib.contextmanager
def _quiet_rng():
    """Building layers draws initial weights that are overwritten anyway: put the generator
    back as it was, so that loading a model does not change what a seeded run does next."""
    gen = runtime.rng()
    state = gen.bit_generator.state
    try:
        yield
    finally:
        gen.bit_generator.state = state


@contextlib.contextmanager
def _floatx(name):
    previous = runtime.floatx()
    runtime.set_floatx(name)
    try:
        yield
    finally:
        runtime.set_floatx(previous)


def _expect(condition, source, what):
    if not condition:
        raise ValueError(f"{source}: damaged architecture ({what})")


def _build_layer(spec, source):
    _expect(isinstance(spec, dict) and isinstance(spec.get("class_name"), str)
            and isinstance(spec.get("config"), dict), source,
            f"a layer entry is not {{class_name, config}}: {spec!r:.200}")
    name = spec["class_name"]
    if name in ("Sequential", "Model"):
        return _build_model(spec, source)
    try:
        cls = get_layer_class(name)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}. A custom layer must be defined (subclass nj.layers.Layer) "
                         "before the model is loaded") from None
    try:
        return _layer_from_config(cls, spec["config"])
    except Exception as exc:  # noqa: BLE001 - a constructor refusing the config, whatever it raises
        raise ValueError(f"{source}: cannot rebuild layer {spec['config'].get('name')!r} of class {name} from its "
                         f"config ({type(exc).__name__}: {exc})") from None


def _build_model(spec, source):
    config = spec["config"]
    if spec["class_name"] == "Sequential":
        _expect(isinstance(config.get("layers"), list), source, "a Sequential without a layer list")
        model = Sequential(name=config.get("name"))
        inp = config.get("input")
        if inp is not None:
            _expect(isinstance(inp, dict) and isinstance(inp.get("shape"), list), source, "a Sequential input")
            model.add(InputLayer(tuple(inp["shape"]), name=inp.get("name")))
        for layer_spec in config["layers"]:
            model.add(_build_layer(layer_spec, source))
        if config.get("fuse_dense_stack") is False:
            model.fuse_dense_stack = False
        return model
    return _build_graph(config, source)


def _build_graph(config, source):
    for key in ("layers", "nodes", "inputs", "outputs"):
        _expect(isinstance(config.get(key), list), source, f"a Model without a list of {key}")
    layers = [_build_layer(s, source) for s in config["layers"]]
    produced = {}  # (layer index, call number) -> output tensors of that call
    calls = {}
    for i, layer in enumerate(layers):
        if isinstance(layer, InputLayer):
            produced[(i, 0)] = [SymbolicTensor(layer.shape, layer)]
            calls[i] = 1

    def tensor(ref):
        _expect(isinstance(ref, list) and len(ref) == 3 and all(isinstance(v, int) for v in ref), source,
                f"a tensor reference {ref!r:.80}")
        layer_index, call, output = ref
        outs = produced.get((layer_index, call))
        _expect(outs is not None and 0 <= output < len(outs), source,
                f"reference {ref} to a layer call that does not come before it")
        return outs[output]

    for node in config["nodes"]:
        _expect(isinstance(node, dict) and isinstance(node.get("layer"), int) and 0 <= node["layer"] < len(layers)
                and isinstance(node.get("inputs"), list) and node["inputs"], source, f"a node {node!r:.80}")
        i = node["layer"]
        _expect(not isinstance(layers[i], InputLayer), source, "a node calling an input")
        args = [tensor(r) for r in node["inputs"]]
        try:
            out = call_symbolic(layers[i], args if len(args) > 1 else args[0])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: cannot connect layer {layers[i].name!r} as the file says ({exc})") from None
        k = calls.get(i, 0)
        produced[(i, k)] = out if isinstance(out, list) else [out]
        calls[i] = k + 1
    inputs = [tensor(r) for r in config["inputs"]]
    outputs = [tensor(r) for r in config["outputs"]]
    _expect(inputs and outputs, source, "a Model without inputs or outputs")
    several_in, several_out = bool(config.get("several_inputs")), bool(config.get("several_outputs"))
    _expect(several_in or len(inputs) == 1, source, "several inputs")
    _expect(several_out or len(outputs) == 1, source, "several outputs")
    try:
        return Model(inputs if several_in else inputs[0], outputs if several_out else outputs[0],
                     name=config.get("name"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: the graph in the file does not make a model ({exc})") from None


def _rebuild(arch, floatx, source, elements):
    """The model the architecture describes; ``elements``: how many weight elements the file
    holds.  The layers may ask for at most twice that plus a million elements: an altered
    file cannot make loading allocate without bound, and a modest mismatch (units 3 -> 5)
    is left to the tensor-by-tensor comparison, whose message names the tensor and both
    shapes."""
    _expect(isinstance(arch, dict) and arch.get("class_name") in ("Sequential", "Model")
            and isinstance(arch.get("config"), dict), source, "expected a Sequential or a Model at the top")
    with _floatx(floatx), _quiet_rng(), weight_budget(2 * elements + (1 << 20), source):
        try:
            model = _build_model(arch, source)
        except (KeyError, TypeError, IndexError, AttributeError, RecursionError, MemoryError) as exc:
            raise ValueError(f"{source}: damaged architecture ({type(exc).__name__}: {exc})") from None
    rebuilt = architecture(model)
    if rebuilt != arch:
        raise ValueError(f"{source}: the architecture in the file does not rebuild to the same model "
                         f"({_first_difference(arch, rebuilt)})")
    return model


def _first_difference(a, b, path="architecture"):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path}: the file has {a!r:.120}, the rebuilt model {b!r:.120}"


# ---------------------------------------------------------------------------- save
def _weights_dtype(model):
    dtypes = {a.dtype for layer in model.layers for a in list(layer.params.values()) + list(layer.state.values())}
    if len(dtypes) == 1:
        name = dtypes.pop().name
        if name in ("float32", "float64"):
            return name
    return runtime.floatx()


def _compile_config(model):
    if not model._compiled or model._compile_config is None:
        return None
    given = model._compile_config
    config = {"optimizer": model.optimizer.get_config(), "loss": given.get("loss"),
              "metrics": list(given.get("metrics") or [])}
    if "loss_weights" in given:
        config["loss_weights"] = given["loss_weights"]
    return _json_form(config, f"the compile configuration of {model.name!r}")


def _optimizer_tensors(model):
    opt = model.optimizer
    if opt is None:
        return {}
    if getattr(opt, "built", False) and model._is_built():
        # Lays the slots out over the model's current parameters, as the next step would.
        model._ensure_flat()
    return {_OPTIMIZER_PREFIX + key: np.asarray(value) for key, value in opt.get_state().items()}


def save_model(model, path, include_optimizer=True) -> None:
    """Write ``model`` to ``path`` in one file (see the module doc); the file is replaced
    atomically, so a failed save leaves an existing file as it was."""
    if not isinstance(model, BaseModel):
        raise TypeError(f"save: expected a model. Received: {model!r:.80}")
    if not isinstance(include_optimizer, bool):
        raise TypeError(f"save: expected a bool for include_optimizer. "
                        f"Received: include_optimizer={include_optimizer!r}")
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"save: expected a file path for path. Received: path={path!r:.80}")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"save: path={path!r} is a folder; expected a file name")
    if not model._is_built() and any(layer.params or layer.state for layer in model.layers):
        raise ValueError(f"{model.name}.save: some layers have weights but the model has no input shape; "
                         "give it an nj.Input or call build(input_shape) first")
    arch = architecture(model)
    compile_config = _compile_config(model)
    tensors = dict(io_module.model_tensors(model))
    if include_optimizer and compile_config is not None:
        tensors.update(_optimizer_tensors(model))
    from .. import __version__

    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "nnjit_version": __version__,
                "floatx": _weights_dtype(model),
                "architecture": json.dumps(arch, separators=(",", ":")),
                "compile": json.dumps(compile_config, separators=(",", ":")),
                "layers": json.dumps([layer.name for layer in model.layers])}
    payload = io_module.encode_tensors(tensors, metadata)  # all bytes ready before the file is touched
    io_module.atomic_write(path, payload)


# ---------------------------------------------------------------------------- load
def _check_weights(model, tensors, source):
    own = io_module.model_tensors(model)
    missing = [k for k in own if k not in tensors]
    extra = [k for k in tensors if k not in own]
    if missing or extra:
        raise ValueError(f"{source}: the weights do not match the architecture (missing {missing[:5]}, "
                         f"unexpected {extra[:5]})")
    for name, target in own.items():
        value = tensors[name]
        if value.shape != target.shape:
            raise ValueError(f"{source}: tensor {name!r} has shape {value.shape}, "
                             f"the architecture gives {target.shape}")
        if value.dtype.kind != "f":
            raise ValueError(f"{source}: tensor {name!r} has dtype {value.dtype}; expected floats")
    return own


def _restore_optimizer(config, state, n_params, source):
    try:
        opt = optimizers_module.deserialize(config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: cannot rebuild the optimizer from {config!r:.200} ({exc})") from None
    if state:
        for key, value in state.items():
            if key != "iterations" and value.shape != (n_params,):
                raise ValueError(f"{source}: optimizer slot {key!r} has shape {value.shape}; the model has "
                                 f"{n_params} parameters")
        try:
            opt.set_state(state)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: the optimizer state does not fit {type(opt).__name__} ({exc})") from None
    return opt


def _loss(value):
    return losses_module.get(value) if isinstance(value, dict) else value


def load_model(path):
    """Rebuild the model saved by ``model.save(path)``: architecture, weights and state,
    and, when it was compiled, the loss, the metrics and the optimizer with its state (so
    that training goes on exactly where it stopped).

    Refuses a damaged or mismatched file with a ValueError that names the problem
    (FileNotFoundError when there is no file); nothing in the file is executed."""
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_model: expected a file path for path. Received: path={path!r:.80}")
    source = os.fspath(path)
    blob = io_module.read_file(source, "load_model")
    if not blob:
        raise ValueError(f"{source}: the file is empty; not a model file")
    tensors, meta = io_module.decode_tensors(blob, source=source)
    fmt = meta.get("format")
    if fmt == WEIGHTS_FORMAT:
        raise ValueError(f"{source}: a weights-only file (written by save_weights) has no architecture; build the "
                         "model and call model.load_weights(path), or save it with model.save(path)")
    if fmt != FORMAT:
        raise ValueError(f"{source}: not a model file written by model.save (format {fmt!r})")
    version = meta.get("format_version", "1")
    if version != str(FORMAT_VERSION):
        raise ValueError(f"{source}: model file format version {version!r}; this nnjit reads version "
                         f"{FORMAT_VERSION} (the file was written by nnjit {meta.get('nnjit_version', '?')})")
    try:
        arch = json.loads(meta["architecture"])
        compile_config = json.loads(meta.get("compile", "null"))
    except (KeyError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{source}: damaged architecture or compile configuration ({exc})") from None
    floatx = meta.get("floatx", "float32")
    if floatx not in ("float32", "float64"):
        raise ValueError(f"{source}: unknown floatx {floatx!r}")

    weights = {k: v for k, v in tensors.items() if not k.startswith(_OPTIMIZER_PREFIX)}
    model = _rebuild(arch, floatx, source, sum(v.size for v in weights.values()))
    state = {k[len(_OPTIMIZER_PREFIX):]: v for k, v in tensors.items() if k.startswith(_OPTIMIZER_PREFIX)}
    own = _check_weights(model, weights, source)
    opt = None
    if compile_config is not None:
        _expect(isinstance(compile_config, dict) and isinstance(compile_config.get("optimizer"), dict), source,
                "the compile configuration has no optimizer")
        n_params = sum(p.size for layer in model.layers for p in layer.params.values())
        opt = _restore_optimizer(compile_config["optimizer"], state, n_params, source)
    elif state:
        raise ValueError(f"{source}: optimizer state without a compile configuration")

    # Everything is checked: assign.
    for name, target in own.items():
        target[...] = weights[name]
    if compile_config is not None:
        kwargs = {}
        if isinstance(model, Model) and compile_config.get("loss_weights") is not None:
            kwargs["loss_weights"] = compile_config["loss_weights"]
        try:
            loss = compile_config.get("loss")
            # Configs become Loss objects here (only registered Loss classes; names stay names).
            loss = [_loss(v) for v in loss] if isinstance(loss, list) else _loss(loss)
            model.compile(opt, loss, compile_config.get("metrics") or None, **kwargs)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: cannot compile the model as saved ({exc})") from None
    return model
