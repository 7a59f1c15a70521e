"""Argument checks and output-size arithmetic shared by convolution and pooling layers."""
from __future__ import annotations

import numpy as np


def pair(value, argument: str, owner: str) -> tuple[int, int]:
    """A positive int or a pair of positive ints, as (height, width)."""
    given = value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in value)):
        raise ValueError(f"{owner}: expected a positive integer or a pair of positive integers for {argument}. "
                         f"Received: {argument}={given!r}")
    return int(value[0]), int(value[1])


def check_padding(padding, owner: str, allow_int: bool):
    """"valid", "same" or (where allowed) a non-negative int or pair of ints."""
    if isinstance(padding, str):
        if padding.lower() in ("valid", "same"):
            return padding.lower()
    elif allow_int and isinstance(padding, (int, np.integer)) and not isinstance(padding, bool) and padding >= 0:
        return (int(padding), int(padding))
    elif (allow_int and isinstance(padding, (tuple, list)) and len(padding) == 2
          and all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) and p >= 0 for p in padding)):
        return (int(padding[0]), int(padding[1]))
    expected = '"valid", "same" or a non-negative int' if allow_int else '"valid" or "same"'
    raise ValueError(f"{owner}: expected padding to be {expected}. Received: padding={padding!r}")


def output_size(size: int, window: int, stride: int, dilation: int, padding, axis: int, owner: str):
    """(output size, padding before) along one axis.

    "same" gives ceil(size / stride) outputs; an odd extra row or column of padding goes
    after the input (bottom / right), as in Keras and TensorFlow.  An int pads both sides."""
    span = dilation * (window - 1) + 1
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + span - size, 0)
        return out, total // 2
    before = 0 if padding == "valid" else padding[axis]
    padded = size + 2 * before
    if padded < span:
        what = "height" if axis == 0 else "width"
        raise ValueError(f"{owner}: the window ({span} with dilation) is larger than the padded input {what} "
                         f"({padded}). Received: input {what} {size} with padding={_padding_repr(padding)}")
    return (padded - span) // stride + 1, before


def _padding_repr(padding):
    return repr(padding) if isinstance(padding, str) else repr(padding[0] if padding[0] == padding[1] else padding)


def padding_config(padding):
    if isinstance(padding, str):
        return padding
    return padding[0] if padding[0] == padding[1] else list(padding)
