"""Independent float64 NumPy references shared by the kernel, layer and property tests."""
import math

import numpy as np

_erf = np.vectorize(math.erf)


def sigmoid(z):
    return 0.5 * (1 + np.tanh(0.5 * z))


def activation(name, z):
    """The activation ``name`` of API.md applied to ``z`` (softmax over the last axis)."""
    z = np.asarray(z, dtype=np.float64)
    if name == "linear":
        return z
    if name == "relu":
        return np.maximum(z, 0)
    if name == "leaky_relu":
        return np.where(z > 0, z, 0.2 * z)
    if name == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    if name == "gelu":
        return 0.5 * z * (1 + _erf(z / math.sqrt(2)))
    if name == "sigmoid":
        return sigmoid(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "swish":
        return z * sigmoid(z)
    if name == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise KeyError(name)


def activation_grad(name, z, dy):
    """dL/dz of ``activation(name, z)`` given dL/dy."""
    z = np.asarray(z, dtype=np.float64)
    y = activation(name, z)
    if name == "linear":
        return dy
    if name == "relu":
        return dy * (z > 0)
    if name == "leaky_relu":
        return dy * np.where(z > 0, 1.0, 0.2)
    if name == "elu":
        return dy * np.where(z > 0, 1.0, y + 1)
    if name == "gelu":
        return dy * (0.5 * (1 + _erf(z / math.sqrt(2))) + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi))
    if name == "sigmoid":
        return dy * y * (1 - y)
    if name == "tanh":
        return dy * (1 - y * y)
    if name == "softmax":
        return y * (dy - (dy * y).sum(-1, keepdims=True))
    if name == "swish":
        s = sigmoid(z)
        return dy * (s + z * s * (1 - s))
    raise KeyError(name)
