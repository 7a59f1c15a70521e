"""load_idx / write_idx: MNIST-format IDX files, plain and gzipped, and the files they refuse."""
import gzip
import re
import struct

import numpy as np
import pytest

from nnjit.datasets import load_idx, write_idx

N, ROWS, COLS = 10, 4, 3


def _data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, ROWS, COLS), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # both ends of the range
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    return images, labels


def _images_bytes(images, magic=0x00000803):
    return struct.pack(">IIII", magic, *images.shape) + images.tobytes()


def _labels_bytes(labels, magic=0x00000801):
    return struct.pack(">II", magic, labels.shape[0]) + labels.tobytes()


@pytest.fixture
def pair(tmp_path):
    """Write valid raw IDX bytes (optionally altered) and return the two paths."""
    images, labels = _data()

    def make(image_bytes=None, label_bytes=None, gz=False):
        image_bytes = _images_bytes(images) if image_bytes is None else image_bytes
        label_bytes = _labels_bytes(labels) if label_bytes is None else label_bytes
        suffix = ".gz" if gz else ""
        ip, lp = tmp_path / f"images.idx{suffix}", tmp_path / f"labels.idx{suffix}"
        ip.write_bytes(gzip.compress(image_bytes) if gz else image_bytes)
        lp.write_bytes(gzip.compress(label_bytes) if gz else label_bytes)
        return ip, lp

    make.images, make.labels = images, labels
    return make


# --- reading valid files ---------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_load_hand_written_files(pair, gz):
    x, y = load_idx(*pair(gz=gz))
    assert x.shape == (N, ROWS, COLS) and x.dtype == np.float32
    assert y.shape == (N,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(x, pair.images.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(y, pair.labels)


def test_gzip_is_detected_by_content_not_name(tmp_path, pair):
    images, labels = pair.images, pair.labels
    ip, lp = tmp_path / "a.bin", tmp_path / "b.bin"
    ip.write_bytes(gzip.compress(_images_bytes(images)))
    lp.write_bytes(_labels_bytes(labels))  # mixed: one gzipped, one plain
    x, y = load_idx(str(ip), str(lp))
    assert np.array_equal(np.rint(x * 255).astype(np.uint8), images) and np.array_equal(y, labels)


@pytest.mark.parametrize("name", ["x.idx", "x.idx.gz"])
def test_round_trip_uint8(tmp_path, name):
    images, labels = _data()
    ip, lp = tmp_path / f"images-{name}", tmp_path / f"labels-{name}"
    write_idx(images, labels, ip, lp)
    assert (ip.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    x, y = load_idx(ip, lp)
    assert np.array_equal(np.rint(x * 255).astype(np.uint8), images)
    assert np.array_equal(y, labels)


def test_round_trip_from_loaded_floats_is_byte_exact(tmp_path):
    images, labels = _data(n=50, seed=1)
    write_idx(images, labels, tmp_path / "i1", tmp_path / "l1")
    x, y = load_idx(tmp_path / "i1", tmp_path / "l1")
    write_idx(x, y, tmp_path / "i2", tmp_path / "l2")  # float32 in [0, 1] and int64
    assert (tmp_path / "i1").read_bytes() == (tmp_path / "i2").read_bytes()
    assert (tmp_path / "l1").read_bytes() == (tmp_path / "l2").read_bytes()


def test_write_idx_plain_layout_and_deterministic_gzip(tmp_path):
    images, labels = _data()
    write_idx(images, labels, tmp_path / "i", tmp_path / "l")
    assert (tmp_path / "i").read_bytes() == _images_bytes(images)
    assert (tmp_path / "l").read_bytes() == _labels_bytes(labels)
    write_idx(images, labels, tmp_path / "a.gz", tmp_path / "b.gz")
    first = (tmp_path / "a.gz").read_bytes()
    write_idx(images, labels, tmp_path / "a.gz", tmp_path / "b.gz")
    assert (tmp_path / "a.gz").read_bytes() == first
    write_idx(images, labels, tmp_path / "c", tmp_path / "d", compress=True)
    assert gzip.decompress((tmp_path / "c").read_bytes()) == _images_bytes(images)


def test_zero_samples_round_trip(tmp_path):
    write_idx(np.zeros((0, 2, 2), np.uint8), np.zeros(0, np.int64), tmp_path / "i", tmp_path / "l")
    x, y = load_idx(tmp_path / "i", tmp_path / "l")
    assert x.shape == (0, 2, 2) and y.shape == (0,)


# --- refusing damaged or mismatched files ---------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_truncated_images_file(pair, gz):
    full = _images_bytes(pair.images)
    ip, lp = pair(image_bytes=full[:-5], gz=gz)
    with pytest.raises(ValueError, match=r"images_path: .*images\.idx.* is truncated: 131 bytes.*expected 136 bytes"):
        load_idx(ip, lp)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_truncated_labels_file(pair, gz):
    ip, lp = pair(label_bytes=_labels_bytes(pair.labels)[:-1], gz=gz)
    with pytest.raises(ValueError, match=r"labels_path: .*labels\.idx.* is truncated: 17 bytes.*expected 18 bytes"):
        load_idx(ip, lp)


def test_truncated_header(pair):
    ip, lp = pair(image_bytes=_images_bytes(pair.images)[:10])
    with pytest.raises(ValueError, match=r"images_path: .* is truncated: the header ends after 10 bytes, expected a 16-byte header"):
        load_idx(ip, lp)
    ip, lp = pair(label_bytes=b"\x00\x00")
    with pytest.raises(ValueError, match=r"labels_path: .* is truncated: 2 bytes, shorter than the 4-byte IDX magic"):
        load_idx(ip, lp)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_trailing_bytes(pair, gz):
    ip, lp = pair(image_bytes=_images_bytes(pair.images) + b"\x00\x00\x00", gz=gz)
    pattern = r"images_path: .* has trailing data after decompression" if gz else r"images_path: .* has 3 trailing bytes: 139 bytes, expected 136"
    with pytest.raises(ValueError, match=pattern):
        load_idx(ip, lp)
    ip, lp = pair(label_bytes=_labels_bytes(pair.labels) + b"\x07", gz=gz)
    with pytest.raises(ValueError, match=r"labels_path: .* (has 1 trailing byte:|has trailing data)"):
        load_idx(ip, lp)


def test_swapped_files(pair):
    ip, lp = pair()
    expected = f"images_path: {str(lp)!r} has magic 0x00000801, expected 0x00000803 (IDX images)"
    with pytest.raises(ValueError, match=re.escape(expected) + r".*swapped"):
        load_idx(lp, ip)


def test_wrong_magic_labels(pair):
    ip, lp = pair(label_bytes=_labels_bytes(pair.labels, magic=0x00000803))
    with pytest.raises(ValueError, match=r"labels_path: .* has magic 0x00000803, expected 0x00000801 \(IDX labels\): 3 dimensions, expected 1"):
        load_idx(ip, lp)


def test_not_an_idx_file(pair):
    ip, lp = pair(image_bytes=b"P5\n4 3\n255\n" + bytes(12))
    with pytest.raises(ValueError, match=r"images_path: .* has magic 0x50350a34, expected 0x00000803 \(IDX images\); it is not an IDX file"):
        load_idx(ip, lp)


def test_wrong_data_type_byte(pair):
    floats = pair.images.astype(">f4")
    ip, lp = pair(image_bytes=struct.pack(">IIII", 0x00000D03, N, ROWS, COLS) + floats.tobytes())
    with pytest.raises(ValueError, match=r"images_path: .* has magic 0x00000d03, expected 0x00000803 \(IDX images\): data type byte 0x0d \(32-bit float\), only 0x08 \(unsigned byte\)"):
        load_idx(ip, lp)
    ip, lp = pair(label_bytes=struct.pack(">II", 0x00000901, N) + pair.labels.tobytes())
    with pytest.raises(ValueError, match=r"labels_path: .* data type byte 0x09 \(signed byte\)"):
        load_idx(ip, lp)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_count_mismatch(pair, gz):
    ip, lp = pair(label_bytes=_labels_bytes(pair.labels[:9]), gz=gz)
    with pytest.raises(ValueError, match=r"images_path: .* holds 10 images but labels_path: .* holds 9 labels"):
        load_idx(ip, lp)


def test_empty_file(pair):
    ip, lp = pair(image_bytes=b"")
    with pytest.raises(ValueError, match=r"images_path: .*images\.idx.* is empty"):
        load_idx(ip, lp)
    ip, lp = pair(label_bytes=b"")
    with pytest.raises(ValueError, match=r"labels_path: .*labels\.idx.* is empty"):
        load_idx(ip, lp)


def test_empty_gzip_content(pair):
    ip, lp = pair(image_bytes=b"", gz=True)
    with pytest.raises(ValueError, match=r"images_path: .* is empty after decompression"):
        load_idx(ip, lp)


def test_damaged_gzip(pair):
    ip, lp = pair(gz=True)
    data = ip.read_bytes()
    ip.write_bytes(data[: len(data) // 2])  # compressed stream cut in the middle
    with pytest.raises(ValueError, match=r"images_path: .* is a damaged gzip file"):
        load_idx(ip, lp)
    corrupt = bytearray(data)
    corrupt[-8] ^= 0xFF  # CRC32 in the gzip trailer
    ip.write_bytes(bytes(corrupt))
    with pytest.raises(ValueError, match=r"images_path: .* is a damaged gzip file"):
        load_idx(ip, lp)


def test_header_promising_huge_data_is_refused_without_reading_it(pair):
    # 4e9 images of 65535x65535 pixels: the size check must come before any allocation.
    huge = struct.pack(">IIII", 0x00000803, 4_000_000_000, 65535, 65535) + bytes(64)
    labels = struct.pack(">II", 0x00000801, 4_000_000_000) + bytes(64)
    for gz in (False, True):
        ip, lp = pair(image_bytes=huge, label_bytes=labels, gz=gz)
        with pytest.raises(ValueError, match=r"images_path: .* is truncated"):
            load_idx(ip, lp)


def test_missing_file(tmp_path, pair):
    ip, lp = pair()
    missing = tmp_path / "nope-images.idx"
    with pytest.raises(FileNotFoundError, match=r"images_path: .*nope-images\.idx.* does not exist"):
        load_idx(missing, lp)
    with pytest.raises(FileNotFoundError, match=r"labels_path: .*nope-images\.idx.* does not exist"):
        load_idx(ip, missing)


def test_path_type_checked():
    with pytest.raises(TypeError, match=r"images_path=3"):
        load_idx(3, "labels")


# --- write_idx argument checking ------------------------------------------------------------


def test_write_idx_rejects_bad_arrays(tmp_path):
    images, labels = _data()
    ip, lp = tmp_path / "i", tmp_path / "l"
    with pytest.raises(ValueError, match=r"images must have shape \(N, rows, cols\).*\(10, 12\)"):
        write_idx(images.reshape(N, -1), labels, ip, lp)
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\]"):
        write_idx(images.astype(np.float32), labels, ip, lp)
    with pytest.raises(ValueError, match=r"NaN"):
        write_idx(np.full((1, 2, 2), np.nan), [0], ip, lp)
    with pytest.raises(ValueError, match=r"integer images must lie in 0\.\.255"):
        write_idx(images.astype(np.int64) + 1, labels, ip, lp)
    with pytest.raises(ValueError, match=r"10 images and 9 labels"):
        write_idx(images, labels[:9], ip, lp)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.255"):
        write_idx(images, labels.astype(np.int64) - 1, ip, lp)
    with pytest.raises(TypeError, match=r"labels must be integers"):
        write_idx(images, labels.astype(np.float32), ip, lp)
    with pytest.raises(ValueError, match=r"images_path and labels_path must differ"):
        write_idx(images, labels, ip, ip)
    assert not ip.exists() and not lp.exists()  # nothing written when arguments are refused
