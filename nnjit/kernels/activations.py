"""Activation functions, defined once and fused by every kernel that applies one.

Each activation has an integer code so that kernels can take it as a plain scalar.
The loops branch on the code outside the inner loop so that each inner loop stays
simple enough for LLVM to vectorize.

Backward needs either the output ``y`` (linear, relu, leaky_relu, elu, sigmoid,
tanh, softmax) or the pre-activation ``z`` (gelu, swish); ``NEEDS_Z`` says which.
"""
import math

import numpy as np
from numba import njit, prange

LINEAR, RELU, LEAKY_RELU, ELU, GELU, SIGMOID, TANH, SOFTMAX, SWISH = range(9)

CODES = {
    "linear": LINEAR,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
    "elu": ELU,
    "gelu": GELU,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "softmax": SOFTMAX,
    "swish": SWISH,
}
NAMES = {v: k for k, v in CODES.items()}
NEEDS_Z = frozenset({GELU, SWISH})

LEAKY_SLOPE = 0.2  # Keras' default negative slope
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@njit(cache=True)
def block_bounds(t, nblocks, n):
    """Rows [i0, i1) of block t of nblocks over n rows, as int64 whatever the type of t
    (a literal, a range index or an unsigned prange index), so that each helper kernel
    compiles for one signature only."""
    t = np.int64(t)
    return t * n // nblocks, (t + 1) * n // nblocks


@njit(cache=True, inline="always")
def _sigmoid(z):
    # Two branches so that exp never overflows for large |z|.
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@njit(cache=True)
def activation_rows(z, y, code, i0, i1):
    """y[i] = act(z[i]) for rows i0..i1 of 2-D arrays (z and y may be the same array)."""
    n = z.shape[1]
    if code == LINEAR:
        if z is not y:
            for i in range(i0, i1):
                for j in range(n):
                    y[i, j] = z[i, j]
    elif code == RELU:
        for i in range(i0, i1):
            for j in range(n):
                v = z[i, j]
                y[i, j] = 0.0 if v <= 0 else v  # NaN stays NaN (v > 0 would map it to 0)
    elif code == LEAKY_RELU:
        for i in range(i0, i1):
            for j in range(n):
                v = z[i, j]
                y[i, j] = v if v > 0 else LEAKY_SLOPE * v
    elif code == ELU:
        for i in range(i0, i1):
            for j in range(n):
                v = z[i, j]
                y[i, j] = v if v > 0 else math.expm1(v)
    elif code == GELU:
        for i in range(i0, i1):
            for j in range(n):
                v = z[i, j]
                y[i, j] = 0.5 * v * (1.0 + math.erf(v * _INV_SQRT2))
    elif code == SIGMOID:
        for i in range(i0, i1):
            for j in range(n):
                y[i, j] = _sigmoid(z[i, j])
    elif code == TANH:
        for i in range(i0, i1):
            for j in range(n):
                y[i, j] = math.tanh(z[i, j])
    elif code == SWISH:
        for i in range(i0, i1):
            for j in range(n):
                v = z[i, j]
                y[i, j] = v * _sigmoid(v)
    elif code == SOFTMAX:
        for i in range(i0, i1):
            m = z[i, 0]
            for j in range(1, n):
                if z[i, j] > m:
                    m = z[i, j]
            s = 0.0
            for j in range(n):
                e = math.exp(z[i, j] - m)
                y[i, j] = e
                s += e
            inv = 1.0 / s
            for j in range(n):
                y[i, j] *= inv


@njit(cache=True)
def activation_grad_rows(dy, y, z, code, dz, i0, i1):
    """dz[i] = dy[i] * act'(...) for rows i0..i1; uses y, or z for codes in NEEDS_Z."""
    n = dy.shape[1]
    if code == LINEAR:
        for i in range(i0, i1):
            for j in range(n):
                dz[i, j] = dy[i, j]
    elif code == RELU:
        for i in range(i0, i1):
            for j in range(n):
                dz[i, j] = dy[i, j] if y[i, j] > 0 else 0.0
    elif code == LEAKY_RELU:
        for i in range(i0, i1):
            for j in range(n):
                dz[i, j] = dy[i, j] if y[i, j] > 0 else LEAKY_SLOPE * dy[i, j]
    elif code == ELU:
        for i in range(i0, i1):
            for j in range(n):
                v = y[i, j]
                dz[i, j] = dy[i, j] if v > 0 else dy[i, j] * (v + 1.0)
    elif code == GELU:
        for i in range(i0, i1):
            for j in range(n):
                v = z[i, j]
                cdf = 0.5 * (1.0 + math.erf(v * _INV_SQRT2))
                pdf = _INV_SQRT_2PI * math.exp(-0.5 * v * v)
                dz[i, j] = dy[i, j] * (cdf + v * pdf)
    elif code == SIGMOID:
        for i in range(i0, i1):
            for j in range(n):
                v = y[i, j]
                dz[i, j] = dy[i, j] * v * (1.0 - v)
    elif code == TANH:
        for i in range(i0, i1):
            for j in range(n):
                v = y[i, j]
                dz[i, j] = dy[i, j] * (1.0 - v * v)
    elif code == SWISH:
        for i in range(i0, i1):
            for j in range(n):
                v = z[i, j]
                s = _sigmoid(v)
                dz[i, j] = dy[i, j] * s * (1.0 + v * (1.0 - s))
    elif code == SOFTMAX:
        for i in range(i0, i1):
            dot = 0.0
            for j in range(n):
                dot += dy[i, j] * y[i, j]
            for j in range(n):
                dz[i, j] = y[i, j] * (dy[i, j] - dot)


@njit(cache=True, parallel=True)
def activation_forward(z, code, nblocks):
    """Apply activation ``code`` to a 2-D array in ``nblocks`` row blocks; returns a new array."""
    y = np.empty_like(z)
    n = z.shape[0]
    nb = min(n, nblocks)
    if nb <= 1:
        activation_rows(z, y, code, *block_bounds(0, 1, n))
    else:
        for b in prange(nb):
            activation_rows(z, y, code, *block_bounds(b, nb, n))
    return y


@njit(cache=True, parallel=True)
def activation_backward(dy, y, z, code, nblocks):
    """Gradient of the activation, dz = dy * act'(z), for a 2-D array in ``nblocks`` row blocks."""
    dz = np.empty_like(dy)
    n = dy.shape[0]
    nb = min(n, nblocks)
    if nb <= 1:
        activation_grad_rows(dy, y, z, code, dz, *block_bounds(0, 1, n))
    else:
        for b in prange(nb):
            activation_grad_rows(dy, y, z, code, dz, *block_bounds(b, nb, n))
    return dz
