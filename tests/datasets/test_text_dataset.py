"""load_shakespeare and the character-level helpers char_vocabulary / encode / decode."""
import gzip
import hashlib
from importlib import resources

import numpy as np
import pytest

from nnjit.datasets import char_vocabulary, decode, encode, load_shakespeare
from nnjit.datasets import text as text_module

NUM_CHARS = 301656
NUM_LINES = 11171
VOCAB_SIZE = 62
TEXT_SHA256 = "c773420da4cf01b5e4e6005d97b70cc38d41d362593089a20d62851c9c10feab"


def test_text_loads_with_expected_length_and_content():
    text = load_shakespeare()
    assert isinstance(text, str)
    assert len(text) == NUM_CHARS
    assert text.startswith(
        "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
    )
    assert text.endswith("Wrong hath but wrong, and blame the due of blame.\n")
    assert text.count("\n") == NUM_LINES
    assert text.isascii()
    assert "\r" not in text and "\t" not in text
    # Well-known lines from both plays.
    assert "Now is the winter of our discontent\nMade glorious summer by this sun of York;" in text
    assert "Off with his head! Now, by Saint Paul I swear," in text
    assert "You common cry of curs! whose breath I hate" in text
    assert text.index("GLOUCESTER:\nNow is the winter") == 154470


def test_bundled_file_matches_documented_digest():
    blob = resources.files("nnjit.datasets").joinpath("data", "shakespeare.txt.gz").read_bytes()
    raw = gzip.decompress(blob)
    assert hashlib.sha256(raw).hexdigest() == TEXT_SHA256
    assert raw.decode("ascii") == load_shakespeare()
    readme = resources.files("nnjit.datasets").joinpath("data", "SHAKESPEARE_README.md").read_text()
    assert TEXT_SHA256 in readme and hashlib.sha256(blob).hexdigest() in readme


def test_max_chars_returns_prefix():
    full = load_shakespeare()
    assert load_shakespeare(max_chars=14) == "First Citizen:"
    assert load_shakespeare(max_chars=1) == "F"
    assert load_shakespeare(max_chars=1000) == full[:1000]
    assert load_shakespeare(max_chars=np.int64(50)) == full[:50]
    assert load_shakespeare(max_chars=NUM_CHARS) == full
    assert load_shakespeare(max_chars=10 * NUM_CHARS) == full


@pytest.mark.parametrize("bad", [0, -5, 1.5, 100.0, "100", True, False, [10]])
def test_bad_max_chars_raises_value_error_naming_argument_and_value(bad):
    with pytest.raises(ValueError) as info:
        load_shakespeare(max_chars=bad)
    message = str(info.value)
    assert "max_chars" in message
    assert repr(bad) in message


def test_char_vocabulary_of_the_text():
    text = load_shakespeare()
    chars, index = char_vocabulary(text)
    assert isinstance(chars, str) and isinstance(index, dict)
    assert len(chars) == VOCAB_SIZE == len(index)
    assert list(chars) == sorted(set(text))
    assert chars[0] == "\n" and chars[1] == " "
    assert all(index[c] == i for i, c in enumerate(chars))


def test_char_vocabulary_small_and_errors():
    assert char_vocabulary("hello") == ("ehlo", {"e": 0, "h": 1, "l": 2, "o": 3})
    assert char_vocabulary("é€é") == ("é€", {"é": 0, "€": 1})
    with pytest.raises(ValueError, match="empty"):
        char_vocabulary("")
    with pytest.raises(TypeError, match="text must be a str"):
        char_vocabulary(b"bytes")


def test_encode_decode_round_trip_whole_text():
    text = load_shakespeare()
    chars, index = char_vocabulary(text)
    ids = encode(text, index)
    assert isinstance(ids, np.ndarray)
    assert ids.dtype == np.int64 and ids.shape == (NUM_CHARS,)
    assert ids.min() == 0 and ids.max() == VOCAB_SIZE - 1
    assert decode(ids, chars) == text
    assert decode(ids[:14], chars) == "First Citizen:"
    # Matches a plain Python reference on a slice.
    assert ids[:500].tolist() == [index[c] for c in text[:500]]


def test_encode_decode_small_cases():
    chars, index = char_vocabulary("hello world")
    assert chars == " dehlorw"
    assert encode("low", index).tolist() == [4, 5, 7]
    assert encode("", index).dtype == np.int64 and encode("", index).shape == (0,)
    assert decode([], chars) == ""
    assert decode(np.array([3, 2, 4, 4, 5], dtype=np.int32), chars) == "hello"
    assert decode((3, 2), list(chars)) == "he"
    # Non-ASCII characters work as well.
    chars2, index2 = char_vocabulary("naïve café €")
    assert decode(encode("café €", index2), chars2) == "café €"


def test_encode_unknown_character_names_it():
    chars, index = char_vocabulary("hello world")
    with pytest.raises(ValueError) as info:
        encode("hello World", index)
    message = str(info.value)
    assert "'W'" in message and "position 6" in message
    with pytest.raises(ValueError, match="'€'"):
        encode("hello €", index)
    # A character above every code point in the vocabulary, and one below.
    with pytest.raises(ValueError, match="'z'"):
        encode("z", index)
    with pytest.raises(ValueError, match="'!'"):
        encode("!", index)


def test_encode_argument_errors():
    _, index = char_vocabulary("abc")
    with pytest.raises(TypeError, match="text must be a str"):
        encode(["a", "b"], index)
    with pytest.raises(TypeError, match="index must be a mapping"):
        encode("abc", "abc")
    with pytest.raises(ValueError, match="single character"):
        encode("abc", {"ab": 0})
    with pytest.raises(ValueError, match="non-negative integer"):
        encode("a", {"a": -1})


def test_decode_errors():
    chars, _ = char_vocabulary("abc")
    with pytest.raises(ValueError) as info:
        decode([0, 1, 3], chars)
    assert "id 3" in str(info.value) and "position 2" in str(info.value)
    with pytest.raises(ValueError, match="id -1"):
        decode([-1], chars)
    with pytest.raises(ValueError, match="1-D"):
        decode(np.zeros((2, 2), dtype=np.int64), chars)
    with pytest.raises(TypeError, match="integers"):
        decode([0.0, 1.0], chars)
    with pytest.raises(TypeError, match="integers"):
        decode([True, False], chars)
    with pytest.raises(TypeError, match="chars"):
        decode([0], 5)


def test_damaged_file_is_refused(monkeypatch):
    text_module._load_text.cache_clear()
    monkeypatch.setattr(text_module, "_TEXT_SHA256", "0" * 64)
    try:
        with pytest.raises(RuntimeError, match="damaged"):
            load_shakespeare()
    finally:
        text_module._load_text.cache_clear()
    monkeypatch.undo()
    assert len(load_shakespeare()) == NUM_CHARS
