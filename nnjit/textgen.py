"""Character-level language models: training windows and sampling text from a model.

>>> text = nj.datasets.load_shakespeare()
>>> chars, index = nj.datasets.char_vocabulary(text)
>>> x, y = nj.textgen.next_char_windows(nj.datasets.encode(text, index), steps=64)
>>> # model: Embedding -> LSTM(return_sequences=True) -> Dense(len(chars)), trained on (x, y)
>>> print(nj.textgen.generate(model, "ROMEO:", chars, index, length=200))
"""
from __future__ import annotations

import numpy as np

from . import runtime
from .models.validation import check_int


def next_char_windows(ids, steps: int, stride: int | None = None):
    """Input windows and next-character targets from one long id sequence.

    Returns (x, y), both (windows, steps) int64, where y[i, t] = x[i, t + 1] in the text
    (the character that follows each input character).  Windows start every ``stride``
    characters (``steps`` by default: non-overlapping)."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"next_char_windows: expected a 1-D integer array for ids. Received: ids with shape "
                         f"{ids.shape} and dtype {ids.dtype}")
    steps = check_int(steps, "steps", "next_char_windows", 1)
    stride = steps if stride is None else check_int(stride, "stride", "next_char_windows", 1)
    if ids.size < steps + 1:
        raise ValueError(f"next_char_windows: the text ({ids.size} ids) is shorter than steps + 1 = {steps + 1}")
    starts = np.arange(0, ids.size - steps, stride)
    offsets = np.arange(steps)
    return ids[starts[:, None] + offsets].astype(np.int64), ids[starts[:, None] + offsets + 1].astype(np.int64)


def _softmax(logits, temperature):
    z = logits.astype(np.float64) / temperature
    z -= z.max()
    p = np.exp(z)
    return p / p.sum()


def generate(model, prompt: str, chars: str, index: dict, length: int = 200, temperature: float = 0.8,
             steps: int | None = None, rng=None) -> str:
    """Continue ``prompt`` by ``length`` characters sampled from a character model.

    The model maps (batch, time) ids to (batch, time, vocabulary) scores (logits or
    probabilities: either way the last step's distribution is what is sampled, sharpened by
    ``temperature`` < 1).  At most the last ``steps`` characters are fed back (the model's
    input length when it has a fixed one)."""
    length = check_int(length, "length", "generate", 0)
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"generate: expected a non-empty string for prompt. Received: prompt={prompt!r}")
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"generate: expected a positive temperature. Received: temperature={temperature!r}")
    unknown = sorted({c for c in prompt if c not in index})
    if unknown:
        raise ValueError(f"generate: the prompt has characters outside the vocabulary: {unknown}")
    fixed = model._input_shape()[0] if getattr(model, "_input_shape", None) and model._input_shape() else None
    window = steps or fixed or 100
    rng = runtime.rng() if rng is None else rng
    ids = [index[c] for c in prompt]
    out = []
    for _ in range(length):
        context = ids[-window:]
        if fixed is not None and len(context) < fixed:  # left-pad with the first character
            context = [context[0]] * (fixed - len(context)) + context
        scores = model(np.array([context], dtype=np.int64))[0, -1]
        if np.all(scores >= 0) and abs(float(scores.sum()) - 1) < 1e-3:  # probabilities
            logits = np.log(np.maximum(scores, 1e-12))
        else:
            logits = scores
        nxt = int(rng.choice(len(chars), p=_softmax(logits, temperature)))
        ids.append(nxt)
        out.append(chars[nxt])
    return prompt + "".join(out)
