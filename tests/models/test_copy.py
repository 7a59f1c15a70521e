"""A copied model (copy.deepcopy, pickle) is a model of its own: it trains, predicts and
saves with its own weights, continues from the optimizer state it was copied with, and
leaves the original untouched."""
import copy
import pickle

import numpy as np
import pytest

import nnjit as nj
from nnjit.layers import Dense, Dropout

COPIERS = {"deepcopy": copy.deepcopy, "pickle": lambda m: pickle.loads(pickle.dumps(m))}


def _sequential():
    return nj.Sequential([nj.Input((64,)), Dense(32, activation="relu"), Dense(10, activation="softmax")])


def _functional():
    inp = nj.Input((64,))
    h = Dense(32, activation="relu")(inp)
    h = Dropout(0.0)(h)
    return nj.Model(inp, Dense(10, activation="softmax")(h))


@pytest.fixture(scope="module")
def digits():
    (x, y), _ = nj.datasets.load_digits()
    return x[:256], y[:256]


def _trained(build, digits):
    x, y = digits
    nj.set_seed(0)
    model = build()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=64, shuffle=False, verbose=0)
    return model


@pytest.mark.parametrize("build", [_sequential, _functional], ids=["sequential", "functional"])
@pytest.mark.parametrize("how", sorted(COPIERS))
def test_copy_trains_like_the_original(build, how, digits):
    x, y = digits
    original = _trained(build, digits)
    twin = _trained(build, digits)  # the same model, never copied: what the copy must match
    clone = COPIERS[how](original)
    before = original.get_weights()
    clone.fit(x, y, epochs=1, batch_size=64, shuffle=False, verbose=0)
    twin.fit(x, y, epochs=1, batch_size=64, shuffle=False, verbose=0)
    # The copy's layers hold the trained weights (as get_weights and saving read them), equal to
    # the uncopied twin's: the copy continued from the copied optimizer state, not a fresh one.
    for w_clone, w_twin in zip(clone.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(w_clone, w_twin, rtol=1e-5, atol=1e-6)
    assert any(not np.array_equal(a, b) for a, b in zip(clone.get_weights(), before))
    # The original did not move.
    for a, b in zip(original.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(clone.predict(x[:16]), twin.predict(x[:16]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("how", sorted(COPIERS))
def test_copy_predict_sees_its_layers(how, digits):
    x, _ = digits
    clone = COPIERS[how](_trained(_sequential, digits))
    clone.predict(x[:4])
    clone.layers[0].params["kernel"][...] = 0.0  # edited in place, as a user fine-tuning by hand would
    expected = clone.predict(np.zeros_like(x[:4]))  # a zero kernel makes the input irrelevant
    np.testing.assert_allclose(clone.predict(x[:4]), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(clone(x[:1]), expected[:1], rtol=1e-6, atol=1e-7)


def test_saved_weights_of_a_trained_copy(digits, tmp_path):
    x, y = digits
    clone = copy.deepcopy(_trained(_sequential, digits))
    clone.fit(x, y, epochs=1, batch_size=64, shuffle=False, verbose=0)
    path = tmp_path / "clone.weights.npz"
    clone.save_weights(str(path))
    fresh = _sequential()
    fresh.compile("adam", "sparse_categorical_crossentropy")
    fresh.load_weights(str(path))
    np.testing.assert_allclose(fresh.predict(x[:16]), clone.predict(x[:16]), rtol=1e-6, atol=1e-7)
