"""Datasets: the bundled UCI handwritten digits and readers/writers for MNIST-style IDX files.

- `load_digits()`: 1797 8x8 digit images shipped with nnjit (no download), fixed stratified split.
- `load_idx(images_path, labels_path)`: an MNIST-format pair of IDX files, plain or gzipped.
- `write_idx(images, labels, images_path, labels_path)`: the inverse of `load_idx`.
"""
from .digits import load_digits
from .idx import load_idx, write_idx

__all__ = ["load_digits", "load_idx", "write_idx"]
