"""Embedding gather and scatter-add kernels against NumPy indexing, np.add.at and finite
differences."""
import numpy as np
import pytest

from nnjit.kernels.embedding import embedding_backward, embedding_forward


@pytest.mark.parametrize("shape", [(11,), (4, 7), (2, 3, 5)])
@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("nblocks", [1, 2, 3])
def test_forward_matches_numpy_indexing(shape, id_dtype, nblocks):
    rng = np.random.default_rng(0)
    table = rng.standard_normal((9, 6))
    ids = rng.integers(0, 9, shape).astype(id_dtype)
    out = embedding_forward(ids, table, nblocks)
    assert out.shape == shape + (6,)
    np.testing.assert_array_equal(out, table[ids])


@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("nblocks", [1, 2, 5])
def test_backward_matches_add_at(id_dtype, nblocks):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 4, (6, 9)).astype(id_dtype)  # 54 positions over 4 rows: many repeats
    d_out = rng.standard_normal((6, 9, 7))
    d_table = np.full((5, 7), 0.5)  # accumulates; row 4 is never looked up
    embedding_backward(ids, d_out, d_table, nblocks)
    expected = np.full((5, 7), 0.5)
    np.add.at(expected, ids, d_out)
    np.testing.assert_allclose(d_table, expected, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(d_table[4], 0.5)


def test_float32():
    rng = np.random.default_rng(2)
    table = rng.standard_normal((50, 33)).astype(np.float32)
    ids = rng.integers(0, 50, (16, 20))
    out = embedding_forward(ids, table, 2)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, table[ids])
    d_out = rng.standard_normal(out.shape).astype(np.float32)
    d_table = np.zeros_like(table)
    embedding_backward(ids, d_out, d_table, 2)
    expected = np.zeros((50, 33))
    np.add.at(expected, ids, d_out.astype(np.float64))
    np.testing.assert_allclose(d_table, expected, rtol=1e-5, atol=1e-5)


def test_backward_finite_differences():
    rng = np.random.default_rng(3)
    table = rng.standard_normal((5, 3))
    ids = np.array([[0, 2, 2], [4, 0, 2]])
    r = rng.standard_normal((2, 3, 3))
    d_table = np.zeros_like(table)
    embedding_backward(ids, r, d_table, 2)
    eps = 1e-6
    numeric = np.zeros_like(table)
    for idx in np.ndindex(table.shape):
        old = table[idx]
        table[idx] = old + eps
        up = np.sum(embedding_forward(ids, table, 1) * r)
        table[idx] = old - eps
        down = np.sum(embedding_forward(ids, table, 1) * r)
        table[idx] = old
        numeric[idx] = (up - down) / (2 * eps)
    np.testing.assert_allclose(d_table, numeric, rtol=1e-7, atol=1e-9)
