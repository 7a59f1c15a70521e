"""The bundled Shakespeare text and character-level helpers for language models.

The data file and its provenance live in ``nnjit/datasets/data/`` (see ``SHAKESPEARE_README.md``):
the first 301,656 characters of the "tiny shakespeare" collection, excerpts of William
Shakespeare's *Coriolanus* and *Richard III* (public domain). Nothing is downloaded.

Typical use for a character-level model::

    text = load_shakespeare()
    chars, index = char_vocabulary(text)
    ids = encode(text, index)          # int64 array, one id per character
    assert decode(ids[:14], chars) == "First Citizen:"
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import numbers
from collections.abc import Mapping
from importlib import resources

import numpy as np

__all__ = ["load_shakespeare", "char_vocabulary", "encode", "decode"]

_DATA_FILE = "shakespeare.txt.gz"
# Digest and length of the decompressed text (also listed in SHAKESPEARE_README.md); a damaged
# install is refused rather than silently training on wrong data.
_TEXT_SHA256 = "c773420da4cf01b5e4e6005d97b70cc38d41d362593089a20d62851c9c10feab"
_TEXT_CHARS = 301656


@functools.lru_cache(maxsize=1)
def _load_text() -> str:
    """Read, decompress and verify the bundled text once."""
    blob = resources.files(__package__).joinpath("data").joinpath(_DATA_FILE).read_bytes()
    try:
        raw = gzip.decompress(blob)
    except (OSError, EOFError) as exc:
        raise RuntimeError(
            f"the bundled text {_DATA_FILE!r} is not a readable gzip file ({exc}); reinstall nnjit"
        ) from exc
    digest = hashlib.sha256(raw).hexdigest()
    if digest != _TEXT_SHA256:
        raise RuntimeError(
            f"the bundled text {_DATA_FILE!r} is damaged: sha256 of its content {digest}, "
            f"expected {_TEXT_SHA256}; reinstall nnjit"
        )
    text = raw.decode("ascii")
    if len(text) != _TEXT_CHARS:  # cannot happen when the digest matches; kept as a guard
        raise RuntimeError(
            f"the bundled text has {len(text)} characters, expected {_TEXT_CHARS}; reinstall nnjit"
        )
    return text


def load_shakespeare(max_chars=None) -> str:
    """Return the bundled Shakespeare text (plain ASCII, lines separated by ``"\\n"``).

    The text is the first 301,656 characters of the "tiny shakespeare" collection from
    Andrej Karpathy's char-rnn repository: excerpts of William Shakespeare's plays
    *Coriolanus* and *Richard III*, in the public domain. Each speech is a speaker's name
    followed by a colon on its own line, then the lines spoken, then a blank line. It has
    11,171 lines and 62 distinct characters. The file ships with nnjit; nothing is downloaded.

    Args:
        max_chars: ``None`` (default) for the whole text, or a positive integer: return only
            the first ``max_chars`` characters (the whole text if it is shorter).

    Returns:
        The text as a ``str``.

    Raises:
        ValueError: ``max_chars`` is neither ``None`` nor a positive integer (the message
            names the argument and the value received).
        RuntimeError: the bundled file is damaged (wrong checksum).

    Example:
        >>> text = load_shakespeare()
        >>> len(text)
        301656
        >>> load_shakespeare(max_chars=14)
        'First Citizen:'
        >>> load_shakespeare(max_chars=0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: load_shakespeare: max_chars must be ... Received: max_chars=0 of type int
    """
    if max_chars is not None:
        if (
            isinstance(max_chars, (bool, np.bool_))
            or not isinstance(max_chars, numbers.Integral)
            or max_chars <= 0
        ):
            raise ValueError(
                "load_shakespeare: max_chars must be None or a positive integer. "
                f"Received: max_chars={max_chars!r} of type {type(max_chars).__name__}"
            )
    text = _load_text()
    if max_chars is None:
        return text
    return text[: int(max_chars)]


def char_vocabulary(text):
    """Build the character vocabulary of ``text``.

    Args:
        text: a non-empty ``str``.

    Returns:
        ``(chars, index)``: ``chars`` is a ``str`` holding each distinct character of ``text``
        once, sorted by code point, so that ``chars[i]`` is the character with id ``i``;
        ``index`` is a ``dict`` mapping each character to its id (``index[chars[i]] == i``).

    Raises:
        TypeError: ``text`` is not a ``str``.
        ValueError: ``text`` is empty.

    Example:
        >>> chars, index = char_vocabulary("hello")
        >>> chars
        'ehlo'
        >>> index
        {'e': 0, 'h': 1, 'l': 2, 'o': 3}
        >>> len(char_vocabulary(load_shakespeare())[0])
        62
    """
    if not isinstance(text, str):
        raise TypeError(
            f"char_vocabulary: text must be a str. Received: text of type {type(text).__name__}"
        )
    if not text:
        raise ValueError("char_vocabulary: text must not be empty. Received: text=''")
    chars = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(chars)}
    return chars, index


def _check_index(index) -> None:
    if not isinstance(index, Mapping):
        raise TypeError(
            "encode: index must be a mapping from characters to ids, such as the dict returned "
            f"by char_vocabulary. Received: index of type {type(index).__name__}"
        )
    for key, value in index.items():
        if not (isinstance(key, str) and len(key) == 1):
            raise ValueError(
                f"encode: every key of index must be a single character. Received key {key!r}"
            )
        if (
            isinstance(value, (bool, np.bool_))
            or not isinstance(value, numbers.Integral)
            or value < 0
        ):
            raise ValueError(
                f"encode: every id in index must be a non-negative integer. "
                f"Received: index[{key!r}]={value!r}"
            )


def encode(text, index) -> np.ndarray:
    """Map each character of ``text`` to its integer id.

    Args:
        text: a ``str`` (may be empty).
        index: mapping from single characters to non-negative integer ids, as returned by
            :func:`char_vocabulary`.

    Returns:
        A 1-D ``numpy.int64`` array of length ``len(text)`` with ``out[k] == index[text[k]]``.

    Raises:
        TypeError: ``text`` is not a ``str`` or ``index`` is not a mapping.
        ValueError: ``text`` contains a character that is not in ``index`` (the message names
            the character and its position), or ``index`` has a malformed entry.

    Example:
        >>> chars, index = char_vocabulary("hello world")
        >>> encode("low", index)
        array([4, 5, 7])
        >>> encode("HELLO", index)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: encode: character 'H' at position 0 is not in the vocabulary ...
    """
    if not isinstance(text, str):
        raise TypeError(f"encode: text must be a str. Received: text of type {type(text).__name__}")
    _check_index(index)
    if not text:
        return np.zeros(0, dtype=np.int64)
    codes = np.fromiter(map(ord, text), dtype=np.int64, count=len(text))
    # Look-up table from code point to id (-1 for characters outside the vocabulary), covering
    # every code point that appears in the text.
    table = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
    for char, char_id in index.items():
        code = ord(char)
        if code < table.size:
            table[code] = int(char_id)
    ids = table[codes]
    missing = np.flatnonzero(ids < 0)
    if missing.size:
        pos = int(missing[0])
        unknown = "".join(sorted({text[k] for k in missing.tolist()}))
        raise ValueError(
            f"encode: character {text[pos]!r} at position {pos} is not in the vocabulary "
            f"({len(index)} characters); unknown characters in the text: {unknown!r}. "
            "Build the vocabulary with char_vocabulary() on a text that contains them."
        )
    return ids


def decode(ids, chars) -> str:
    """Turn a sequence of ids back into text: the inverse of :func:`encode`.

    Args:
        ids: 1-D array-like of integer ids (e.g. the output of :func:`encode` or a model's
            samples), each in ``range(len(chars))``. May be empty.
        chars: the vocabulary string returned by :func:`char_vocabulary` (or any sequence of
            single characters), where ``chars[i]`` is the character with id ``i``.

    Returns:
        The ``str`` ``"".join(chars[i] for i in ids)``.

    Raises:
        TypeError: ``chars`` is not a str/sequence of single characters, or ``ids`` is not
            an integer array.
        ValueError: ``ids`` is not 1-D, or an id is out of range (the message names it).

    Example:
        >>> chars, index = char_vocabulary("hello world")
        >>> decode(encode("hello", index), chars)
        'hello'
        >>> decode([3, 2, 4], chars)
        'hel'
    """
    if isinstance(chars, str):
        alphabet = chars
    else:
        try:
            alphabet = list(chars)
        except TypeError:
            raise TypeError(
                "decode: chars must be the vocabulary string from char_vocabulary. "
                f"Received: chars of type {type(chars).__name__}"
            ) from None
        if not all(isinstance(c, str) and len(c) == 1 for c in alphabet):
            raise TypeError("decode: every element of chars must be a single character")
        alphabet = "".join(alphabet)
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"decode: ids must be 1-D. Received: ids with shape {arr.shape}")
    if arr.size == 0:
        return ""
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"decode: ids must be integers. Received: ids of dtype {arr.dtype}")
    bad = np.flatnonzero((arr < 0) | (arr >= len(alphabet)))
    if bad.size:
        pos = int(bad[0])
        raise ValueError(
            f"decode: id {int(arr[pos])} at position {pos} is out of range for a vocabulary of "
            f"{len(alphabet)} characters (valid ids are 0..{len(alphabet) - 1})"
        )
    table = np.array(list(alphabet), dtype="<U1")
    return "".join(table[arr].tolist())
