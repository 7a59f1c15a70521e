"""Reading and writing MNIST-style IDX files (plain or gzip-compressed), strictly checked.

IDX layout (big-endian): two zero bytes, a data type byte, a dimension count byte, one 32-bit
size per dimension, then the data in C order. nnjit handles the two files MNIST-like datasets
ship as: images, magic 0x00000803 (unsigned bytes, 3 dimensions N x rows x cols), and labels,
magic 0x00000801 (unsigned bytes, 1 dimension N).
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

__all__ = ["load_idx", "write_idx"]

_GZIP_MAGIC = b"\x1f\x8b"
_UNSIGNED_BYTE = 0x08
_TYPE_NAMES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "16-bit integer",
    0x0C: "32-bit integer",
    0x0D: "32-bit float",
    0x0E: "64-bit float",
}
_KIND_NDIM = {"images": 3, "labels": 1}
# Decompressed data is read in pieces of this size, so that a header promising more than the
# stream holds never makes us allocate the promised amount.
_CHUNK = 1 << 20


def _magic(kind: str) -> int:
    return (_UNSIGNED_BYTE << 8) | _KIND_NDIM[kind]


def _fspath(value, arg: str, func: str) -> str:
    try:
        path = os.fspath(value)
    except TypeError:
        raise TypeError(
            f"{func}: {arg} must be a path (str or os.PathLike). "
            f"Received: {arg}={value!r} of type {type(value).__name__}"
        ) from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    return path


class _IdxSource:
    """One IDX file being read: the open stream, whether it is gzip, and where errors point."""

    def __init__(self, path: str, arg: str, kind: str):
        self.path, self.arg, self.kind = path, arg, kind
        self.where = f"{arg}: {path!r}"
        self.ndim = _KIND_NDIM[kind]
        self.header_size = 4 + 4 * self.ndim
        try:
            self.raw = open(path, "rb")
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{self.where} does not exist (expected an IDX {kind} file)"
            ) from None
        self.stream = self.raw
        self.compressed = False
        try:
            start = self.raw.read(2)
            if not start:
                raise ValueError(f"{self.where} is empty (0 bytes), expected an IDX {kind} file")
            self.raw.seek(0)
            if start == _GZIP_MAGIC:
                self.compressed = True
                self.stream = gzip.GzipFile(fileobj=self.raw, mode="rb")
        except BaseException:
            self.raw.close()
            raise

    def close(self) -> None:
        if self.stream is not self.raw:
            self.stream.close()
        self.raw.close()

    def read_upto(self, size: int) -> bytes:
        """Read at most `size` bytes (fewer only at the end of the data)."""
        pieces, remaining = [], size
        try:
            while remaining > 0:
                piece = self.stream.read(min(remaining, _CHUNK))
                if not piece:
                    break
                pieces.append(piece)
                remaining -= len(piece)
        except (EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise ValueError(f"{self.where} is a damaged gzip file: {error}") from None
        return b"".join(pieces)

    def read_header(self) -> tuple[int, ...]:
        """Check the magic number and return the dimension sizes."""
        after = " after decompression" if self.compressed else ""
        expected = _magic(self.kind)
        head = self.read_upto(4)
        if not head:
            raise ValueError(f"{self.where} is empty{after}, expected an IDX {self.kind} file")
        if len(head) < 4:
            raise ValueError(
                f"{self.where} is truncated: {len(head)} bytes{after}, shorter than the 4-byte "
                f"IDX magic number (expected 0x{expected:08x}, IDX {self.kind})"
            )
        magic = int.from_bytes(head, "big")
        found = f"{self.where} has magic 0x{magic:08x}, expected 0x{expected:08x} (IDX {self.kind})"
        if head[0] != 0 or head[1] != 0:
            raise ValueError(f"{found}; it is not an IDX file (an IDX magic starts with two zero bytes)")
        if head[2] != _UNSIGNED_BYTE:
            name = _TYPE_NAMES.get(head[2], "unknown")
            raise ValueError(
                f"{found}: data type byte 0x{head[2]:02x} ({name}), only 0x08 (unsigned byte) "
                f"is supported"
            )
        if head[3] != self.ndim:
            message = f"{found}: {head[3]} dimension{'' if head[3] == 1 else 's'}, expected {self.ndim}"
            other = {1: "labels", 3: "images"}.get(head[3])
            if other is not None and other != self.kind:
                message += (
                    f"; it looks like an IDX {other} file (are images_path and labels_path swapped?)"
                )
            raise ValueError(message)
        sizes = self.read_upto(4 * self.ndim)
        if len(sizes) < 4 * self.ndim:
            raise ValueError(
                f"{self.where} is truncated: the header ends after {4 + len(sizes)} bytes{after}, "
                f"expected a {self.header_size}-byte header for IDX {self.kind}"
            )
        dims = struct.unpack(f">{self.ndim}I", sizes)
        if self.kind == "images" and (dims[1] == 0 or dims[2] == 0):
            raise ValueError(
                f"{self.where} has images of {dims[1]}x{dims[2]} pixels, expected at least 1x1"
            )
        return dims

    def read_payload(self, dims: tuple[int, ...]) -> np.ndarray:
        """Read exactly the data the header describes, refusing truncated or trailing data."""
        payload = 1
        for size in dims:
            payload *= size
        total = self.header_size + payload
        if self.kind == "images":
            contents = f"{dims[0]} images of {dims[1]}x{dims[2]} bytes"
        else:
            contents = f"{dims[0]} one-byte labels"
        expected = f"expected {total} bytes ({self.header_size}-byte header + {contents})"
        if not self.compressed:
            # The size is known before reading: check it first so that nothing beyond what the
            # header promises is ever read.
            size = os.fstat(self.raw.fileno()).st_size
            if size < total:
                raise ValueError(f"{self.where} is truncated: {size} bytes, {expected}")
            if size > total:
                extra = size - total
                raise ValueError(
                    f"{self.where} has {extra} trailing byte{'s' if extra > 1 else ''}: "
                    f"{size} bytes, {expected}"
                )
        data = self.read_upto(payload)
        after = " after decompression" if self.compressed else ""
        if len(data) < payload:
            raise ValueError(
                f"{self.where} is truncated: {self.header_size + len(data)} bytes{after}, {expected}"
            )
        if self.read_upto(1):
            raise ValueError(
                f"{self.where} has trailing data{after} beyond the {total} bytes its header "
                f"describes ({contents})"
            )
        return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def load_idx(images_path, labels_path):
    """Load an MNIST-format pair of IDX files (images and labels), plain or gzip-compressed.

    Compression is detected from the content (the gzip magic bytes 0x1f 0x8b), not the name.
    Both files are checked strictly before any data is read: the magic numbers (images
    0x00000803, labels 0x00000801: unsigned bytes with 3 and 1 dimensions), equal image and label
    counts, and sizes that match the headers exactly (truncated files and trailing data are
    refused). Nothing beyond what a header promises is read into memory.

    Args:
        images_path: path (str or os.PathLike) of the IDX images file.
        labels_path: path of the IDX labels file.

    Returns:
        ``(x, y)``: ``x`` float32 of shape (N, rows, cols), the bytes divided by 255 into [0, 1];
        ``y`` int64 of shape (N,). For NCHW images use ``x[:, None]``.

    Raises:
        FileNotFoundError: a file does not exist (naming the argument and path).
        ValueError: a file is not what is expected; the message names the argument, the path,
            what was found and what was expected.
        TypeError: a path argument is not a path.

    Example:
        >>> x, y = load_idx("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    """
    images_path = _fspath(images_path, "images_path", "load_idx")
    labels_path = _fspath(labels_path, "labels_path", "load_idx")
    images = _IdxSource(images_path, "images_path", "images")
    try:
        labels = _IdxSource(labels_path, "labels_path", "labels")
        try:
            image_dims = images.read_header()
            label_dims = labels.read_header()
            if image_dims[0] != label_dims[0]:
                raise ValueError(
                    f"{images.where} holds {image_dims[0]} images but {labels.where} holds "
                    f"{label_dims[0]} labels; the counts must be equal"
                )
            pixels = images.read_payload(image_dims)
            targets = labels.read_payload(label_dims)
        finally:
            labels.close()
    finally:
        images.close()
    x = pixels.astype(np.float32)
    x /= np.float32(255)
    return x, targets.astype(np.int64)


def _as_image_bytes(images) -> np.ndarray:
    array = np.asarray(images)
    if array.ndim != 3:
        raise ValueError(
            f"write_idx: images must have shape (N, rows, cols). Received: images with shape "
            f"{array.shape}"
        )
    if array.shape[1] == 0 or array.shape[2] == 0:
        raise ValueError(
            f"write_idx: images must be at least 1x1 pixels. Received: images with shape "
            f"{array.shape}"
        )
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind in "iu":
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(
                f"write_idx: integer images must lie in 0..255. Received: images with values in "
                f"{array.min()}..{array.max()}"
            )
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        if array.size and not np.all(np.isfinite(array)):
            raise ValueError("write_idx: images contain NaN or infinity")
        if array.size and (array.min() < 0 or array.max() > 1):
            raise ValueError(
                f"write_idx: float images must lie in [0, 1] (as load_idx returns them; pass uint8 "
                f"for raw 0..255 pixels). Received: images with values in "
                f"[{array.min()}, {array.max()}]"
            )
        return np.rint(array.astype(np.float64) * 255.0).astype(np.uint8)
    raise TypeError(
        f"write_idx: images must be uint8, integers in 0..255 or floats in [0, 1]. Received: "
        f"images of dtype {array.dtype}"
    )


def _as_label_bytes(labels, count: int) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(
            f"write_idx: labels must have shape (N,). Received: labels with shape {array.shape}"
        )
    if array.dtype.kind not in "iu":
        raise TypeError(
            f"write_idx: labels must be integers in 0..255. Received: labels of dtype {array.dtype}"
        )
    if array.shape[0] != count:
        raise ValueError(
            f"write_idx: images and labels must have the same length. Received: {count} images "
            f"and {array.shape[0]} labels"
        )
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(
            f"write_idx: labels must lie in 0..255. Received: labels with values in "
            f"{array.min()}..{array.max()}"
        )
    return array.astype(np.uint8)


def _write(path: str, kind: str, data: np.ndarray, compress) -> None:
    header = struct.pack(">I", _magic(kind)) + struct.pack(f">{data.ndim}I", *data.shape)
    body = np.ascontiguousarray(data).tobytes()
    if compress is None:
        compress = path.endswith(".gz")
    with open(path, "wb") as file:
        if compress:
            # mtime=0 and no stored name make the output depend only on the data.
            with gzip.GzipFile(filename="", mode="wb", fileobj=file, mtime=0) as stream:
                stream.write(header)
                stream.write(body)
        else:
            file.write(header)
            file.write(body)


def write_idx(images, labels, images_path, labels_path, compress=None):
    """Write images and labels as an MNIST-format pair of IDX files (readable by `load_idx`).

    Args:
        images: array of shape (N, rows, cols): uint8, other integers in 0..255, or floats in
            [0, 1] (as `load_idx` returns; multiplied by 255 and rounded).
        labels: integer array of shape (N,) with values in 0..255.
        images_path, labels_path: destination paths (existing files are overwritten).
        compress: True to gzip both files, False for plain files, None (default) to gzip a file
            whose name ends in ".gz".

    Example:
        >>> write_idx(x, y, "images-idx3-ubyte.gz", "labels-idx1-ubyte.gz")
        >>> x2, y2 = load_idx("images-idx3-ubyte.gz", "labels-idx1-ubyte.gz")
    """
    images_path = _fspath(images_path, "images_path", "write_idx")
    labels_path = _fspath(labels_path, "labels_path", "write_idx")
    if compress is not None and not isinstance(compress, (bool, np.bool_)):
        raise TypeError(
            f"write_idx: compress must be True, False or None. Received: compress={compress!r}"
        )
    if os.path.abspath(images_path) == os.path.abspath(labels_path):
        raise ValueError(
            f"write_idx: images_path and labels_path must differ. Received: {images_path!r} for both"
        )
    pixels = _as_image_bytes(images)
    targets = _as_label_bytes(labels, pixels.shape[0])
    for size in pixels.shape:
        if size >= 1 << 32:
            raise ValueError(f"write_idx: IDX sizes are 32-bit; images shape {pixels.shape} is too large")
    _write(images_path, "images", pixels, compress)
    _write(labels_path, "labels", targets, compress)
