"""Datasets: the bundled UCI handwritten digits and readers/writers for MNIST-style IDX files.

- `load_digits()`: 1797 8x8 digit images shipped with nnjit (no download), fixed stratified split.
- `load_idx(images_path, labels_path)`: an MNIST-format pair of IDX files, plain or gzipped.
- `write_idx(images, labels, images_path, labels_path)`: the inverse of `load_idx`.
- `load_shakespeare(max_chars=None)`: 301,656 characters of Shakespeare (public domain) shipped
  with nnjit, for character-level language models; `char_vocabulary`, `encode` and `decode` map
  between text and integer ids.
"""
from .digits import load_digits
from .idx import load_idx, write_idx
from .text import char_vocabulary, decode, encode, load_shakespeare

__all__ = [
    "load_digits",
    "load_idx",
    "write_idx",
    "load_shakespeare",
    "char_vocabulary",
    "encode",
    "decode",
]
