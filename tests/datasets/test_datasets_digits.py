"""load_digits: the bundled UCI digits and their fixed stratified split."""
import re

import numpy as np
import pytest

from nnjit.datasets import load_digits

CLASS_SIZES = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def _all(split):
    (x_train, y_train), (x_test, y_test) = split
    return np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])


def test_shapes_and_dtypes():
    (x_train, y_train), (x_test, y_test) = load_digits()
    assert x_train.shape == (1438, 64) and x_test.shape == (359, 64)
    assert y_train.shape == (1438,) and y_test.shape == (359,)
    assert x_train.dtype == np.float32 and x_test.dtype == np.float32
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    assert x_train.flags.c_contiguous and x_train.flags.writeable
    # Reshaping gives NCHW images.
    assert x_train.reshape(-1, 1, 8, 8).shape == (1438, 1, 8, 8)


def test_value_ranges():
    (x_train, y_train), (x_test, y_test) = load_digits()
    for x in (x_train, x_test):
        assert x.min() == 0.0 and x.max() == 1.0
        # normalize divides the integers 0..16 by 16
        assert np.array_equal(x * 16, np.rint(x * 16))
    for y in (y_train, y_test):
        assert y.min() == 0 and y.max() == 9


def test_unnormalized_values_are_integers_0_to_16():
    x, _ = _all(load_digits(normalize=False))
    assert x.dtype == np.float32
    assert x.min() == 0 and x.max() == 16
    assert np.array_equal(x, np.rint(x))


def test_all_classes_in_both_splits_and_stratified():
    (_, y_train), (_, y_test) = load_digits()
    assert np.array_equal(np.bincount(y_test, minlength=10), [36, 36, 35, 37, 36, 36, 36, 36, 35, 36])
    assert np.array_equal(np.bincount(y_train, minlength=10) + np.bincount(y_test, minlength=10), CLASS_SIZES)


@pytest.mark.parametrize("fraction", [0.001, 0.5, 0.999])
def test_every_class_in_both_splits_for_extreme_fractions(fraction):
    (x_train, y_train), (x_test, y_test) = load_digits(test_fraction=fraction)
    assert set(np.unique(y_train)) == set(range(10)) == set(np.unique(y_test))
    assert len(x_train) + len(x_test) == 1797


def test_split_is_deterministic():
    first, second = load_digits(seed=3), load_digits(seed=3)
    for (xa, ya), (xb, yb) in zip(first, second):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)


def test_seed_changes_the_split():
    (_, _), (x_a, _) = load_digits(seed=0)
    (_, _), (x_b, _) = load_digits(seed=1)
    assert not np.array_equal(x_a, x_b)


def _row_keys(x, y):
    return [bytes(row) for row in np.column_stack([x, y]).astype(np.uint8)]


def test_split_is_disjoint_and_complete():
    # The 1797 rows of the file are all distinct, so a row identifies a sample.
    (x_train, y_train), (x_test, y_test) = load_digits(normalize=False)
    train, test = set(_row_keys(x_train, y_train)), set(_row_keys(x_test, y_test))
    assert len(train) == len(x_train) and len(test) == len(x_test)
    assert not train & test
    assert len(train | test) == 1797


def test_parts_mix_the_classes():
    # Samples keep file order, which interleaves the classes: a Keras-style validation_split
    # (last fraction) must not see a single class.
    (_, y_train), _ = load_digits()
    assert len(np.unique(y_train[-100:])) == 10


def test_data_checksum_is_stable():
    (x_train, y_train), (x_test, y_test) = load_digits(normalize=False)
    assert int(x_train.sum()) + int(x_test.sum()) == 561718
    assert int(y_train.sum()) + int(y_test.sum()) == 8070
    # Pins the split for seed 0 as well.
    assert int(x_train.sum()) == 449919 and int(x_test.sum()) == 111799
    assert int(y_train.sum()) == 6457 and int(y_test.sum()) == 1613
    assert y_test[:10].tolist() == [2, 8, 9, 9, 8, 1, 7, 3, 1, 7]


def test_results_are_independent_copies():
    (x_train, y_train), _ = load_digits()
    x_train[:] = -1
    y_train[:] = -1
    (x_again, y_again), _ = load_digits()
    assert x_again.min() == 0 and y_again.min() == 0


@pytest.mark.parametrize("fraction", [0, 0.0, 1, 1.0, -0.2, 1.5, float("nan"), float("inf")])
def test_rejects_out_of_range_test_fraction(fraction):
    with pytest.raises(ValueError, match=re.escape(f"test_fraction={fraction!r}")):
        load_digits(test_fraction=fraction)


@pytest.mark.parametrize("fraction", ["0.2", None, True])
def test_rejects_non_numeric_test_fraction(fraction):
    with pytest.raises(TypeError, match="test_fraction"):
        load_digits(test_fraction=fraction)


def test_rejects_bad_seed_and_normalize():
    with pytest.raises(ValueError, match=r"seed=-1"):
        load_digits(seed=-1)
    with pytest.raises(TypeError, match=r"seed=1\.5"):
        load_digits(seed=1.5)
    with pytest.raises(TypeError, match=r"normalize='yes'"):
        load_digits(normalize="yes")
