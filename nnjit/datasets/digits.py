"""The bundled UCI handwritten digits (8x8, 1797 samples), with a fixed stratified split.

The data file and its attribution live in ``nnjit/datasets/data/`` (see ``DIGITS_README.md``).
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import io
import math
import numbers
from importlib import resources

import numpy as np

__all__ = ["load_digits"]

_DATA_FILE = "digits.csv.gz"
# Digest of the bundled file (also listed in DIGITS_README.md); a damaged install is refused
# rather than silently training on wrong data.
_DATA_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
_NUM_SAMPLES = 1797
_NUM_PIXELS = 64
_NUM_CLASSES = 10
_MAX_PIXEL = 16


@functools.lru_cache(maxsize=1)
def _load_raw() -> tuple[np.ndarray, np.ndarray]:
    """Read, verify and parse the bundled CSV once; returns read-only (pixels int64, labels int64)."""
    blob = resources.files(__package__).joinpath("data").joinpath(_DATA_FILE).read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != _DATA_SHA256:
        raise RuntimeError(
            f"the bundled digits data {_DATA_FILE!r} is damaged: sha256 {digest}, expected "
            f"{_DATA_SHA256}; reinstall nnjit"
        )
    with gzip.open(io.BytesIO(blob), "rt", encoding="ascii") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape != (_NUM_SAMPLES, _NUM_PIXELS + 1):
        raise RuntimeError(
            f"the bundled digits data has shape {table.shape}, expected "
            f"{(_NUM_SAMPLES, _NUM_PIXELS + 1)}; reinstall nnjit"
        )
    pixels = np.ascontiguousarray(table[:, :_NUM_PIXELS])
    labels = np.ascontiguousarray(table[:, _NUM_PIXELS])
    pixels.setflags(write=False)
    labels.setflags(write=False)
    return pixels, labels


def _check_arguments(test_fraction, seed, normalize) -> None:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real):
        raise TypeError(
            f"load_digits: test_fraction must be a number in (0, 1). "
            f"Received: test_fraction={test_fraction!r} of type {type(test_fraction).__name__}"
        )
    if not (math.isfinite(test_fraction) and 0.0 < test_fraction < 1.0):
        raise ValueError(
            f"load_digits: test_fraction must lie strictly between 0 and 1. "
            f"Received: test_fraction={test_fraction!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"load_digits: seed must be a non-negative integer. "
            f"Received: seed={seed!r} of type {type(seed).__name__}"
        )
    if seed < 0:
        raise ValueError(f"load_digits: seed must be a non-negative integer. Received: seed={seed!r}")
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(
            f"load_digits: normalize must be True or False. "
            f"Received: normalize={normalize!r} of type {type(normalize).__name__}"
        )


def _stratified_test_mask(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the test samples: per class, a seeded permutation, its last part to test.

    One generator walks the classes in order 0..9, so the split depends only on (seed,
    test_fraction) and NumPy's PCG64 stream, which is the same on every platform.
    """
    rng = np.random.default_rng(int(seed))
    is_test = np.zeros(labels.shape[0], dtype=bool)
    for cls in range(_NUM_CLASSES):
        members = np.flatnonzero(labels == cls)
        order = members[rng.permutation(members.size)]
        # Rounded share of this class, kept within [1, size - 1] so that every class appears
        # in both parts whatever the fraction.
        n_test = min(max(int(round(members.size * test_fraction)), 1), members.size - 1)
        is_test[order[members.size - n_test:]] = True
    return is_test


def load_digits(test_fraction=0.2, seed=0, normalize=True):
    """Load the bundled UCI handwritten digits, split into a training and a test part.

    1797 grey-scale 8x8 images of the digits 0..9 (E. Alpaydin, C. Kaynak, "Optical Recognition
    of Handwritten Digits", UCI Machine Learning Repository, https://doi.org/10.24432/C50P49,
    CC BY 4.0). The data ship with nnjit; nothing is downloaded.

    The split is stratified and fixed: for each class, a permutation drawn from
    ``numpy.random.default_rng(seed)`` (one generator, classes taken in order 0..9) orders its
    samples and the last ``round(test_fraction * class_size)`` of them (at least one, at most
    all but one) go to the test part. It is therefore the same on every machine for a given
    ``(test_fraction, seed)``. Within each part the samples keep the order of the data file,
    which mixes the classes. With the defaults there are 1438 training and 359 test samples.

    Args:
        test_fraction: share of each class held out for testing, strictly between 0 and 1.
        seed: non-negative integer choosing the split.
        normalize: if True, pixels (integers 0..16) are divided by 16 into [0, 1]; if False they
            keep their values 0..16 (still as float32).

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: ``x`` float32 of shape (N, 64), each row an
        8x8 image stored row by row; ``y`` int64 of shape (N,) with labels 0..9. For a
        convolutional network reshape to NCHW images: ``x.reshape(-1, 1, 8, 8)``.

    Raises:
        TypeError / ValueError: an argument of the wrong type or out of range, naming it.

    Example:
        >>> (x_train, y_train), (x_test, y_test) = load_digits()
        >>> x_train.shape, x_test.shape
        ((1438, 64), (359, 64))
        >>> images = x_train.reshape(-1, 1, 8, 8)   # (N, C, H, W)
    """
    _check_arguments(test_fraction, seed, normalize)
    pixels, labels = _load_raw()
    x = pixels.astype(np.float32)
    if normalize:
        x /= np.float32(_MAX_PIXEL)
    y = labels.astype(np.int64)  # a fresh, writable copy
    is_test = _stratified_test_mask(labels, float(test_fraction), seed)
    return (x[~is_test], y[~is_test]), (x[is_test], y[is_test])
