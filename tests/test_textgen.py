"""Training windows and sampling for character-level language models."""
import numpy as np
import pytest

import nnjit as nj
from nnjit.layers import GRU, Dense, Embedding


def test_next_char_windows_shift_by_one():
    ids = np.arange(20)
    x, y = nj.textgen.next_char_windows(ids, 5)
    assert x.shape == y.shape == (3, 5)
    np.testing.assert_array_equal(x[1], [5, 6, 7, 8, 9])
    np.testing.assert_array_equal(y[1], [6, 7, 8, 9, 10])
    x2, _ = nj.textgen.next_char_windows(ids, 5, stride=2)
    assert x2.shape == (8, 5) and x2[1, 0] == 2


def test_next_char_windows_refuses_bad_input():
    with pytest.raises(ValueError, match="steps"):
        nj.textgen.next_char_windows(np.arange(20), 0)
    with pytest.raises(ValueError, match="shorter"):
        nj.textgen.next_char_windows(np.arange(4), 5)
    with pytest.raises(ValueError, match="1-D integer"):
        nj.textgen.next_char_windows(np.zeros((2, 3)), 2)


def test_generate_learns_a_repeating_text():
    """A model trained on a periodic string continues the period exactly at low temperature."""
    text = "abcd" * 200
    chars, index = nj.datasets.char_vocabulary(text)
    x, y = nj.textgen.next_char_windows(nj.datasets.encode(text, index), 12, stride=3)
    nj.set_seed(0)
    model = nj.Sequential([nj.Input((None,)), Embedding(len(chars), 8), GRU(16, return_sequences=True),
                           Dense(len(chars))])
    model.compile(nj.optimizers.Adam(0.02), nj.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    out = nj.textgen.generate(model, "bc", chars, index, length=10, temperature=0.05,
                              rng=np.random.default_rng(0))
    assert out == "bc" + "dabcdabcda"


def test_generate_refuses_unknown_characters():
    chars, index = nj.datasets.char_vocabulary("ab")
    model = nj.Sequential([nj.Input((None,)), Embedding(2, 2), GRU(2, return_sequences=True), Dense(2)])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        nj.textgen.generate(model, "abz", chars, index)
    with pytest.raises(ValueError, match="temperature"):
        nj.textgen.generate(model, "ab", chars, index, temperature=0)
