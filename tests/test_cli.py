"""The nnjit command line."""
import numpy as np
import pytest

from nnjit import cli


def test_train_writes_weights_and_curve(tmp_path, capsys):
    code = cli.main(["train", "--epochs", "2", "--out", str(tmp_path), "--verbose", "0"])
    out = capsys.readouterr().out
    assert code == 0
    assert "test accuracy" in out and "samples/s" in out and "first training step" in out
    assert (tmp_path / "mlp.weights.safetensors").stat().st_size > 1000
    assert (tmp_path / "mlp-training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    accuracy = float(out.split("test accuracy")[1].split()[0])
    assert 0.5 < accuracy <= 1.0


def test_trained_weights_load_back(tmp_path):
    cli.main(["train", "--epochs", "1", "--out", str(tmp_path), "--verbose", "0"])
    import nnjit as nj

    model = cli.build_model("mlp", (64,), 10)
    model.load_weights(tmp_path / "mlp.weights.safetensors")
    (_, _), (x, y) = nj.datasets.load_digits()
    assert (model.predict(x).argmax(1) == y).mean() > 0.5


def test_train_cnn_model(tmp_path, capsys):
    code = cli.main(["train", "--model", "cnn", "--epochs", "1", "--out", str(tmp_path), "--verbose", "0"])
    out = capsys.readouterr().out
    assert code == 0
    assert "'cnn'" in out
    accuracy = float(out.split("test accuracy")[1].split()[0])
    assert 0.5 < accuracy <= 1.0
    import nnjit as nj

    model = cli.build_model("cnn", (1, 8, 8), 10)
    model.load_weights(tmp_path / "cnn.weights.safetensors")
    (_, _), (x, y) = nj.datasets.load_digits()
    assert (model.predict(x.reshape(-1, 1, 8, 8)).argmax(1) == y).mean() > 0.5


def test_train_charlm_prints_samples(tmp_path, capsys):
    code = cli.main(["train", "--model", "charlm", "--epochs", "1", "--max-chars", "6000", "--steps", "32",
                     "--sample-length", "40", "--out", str(tmp_path), "--verbose", "0"])
    out = capsys.readouterr().out
    assert code == 0
    assert "--- sample after epoch 1" in out
    sample = out.split("--- sample after epoch 1")[1].split("\n", 1)[1]
    assert sample.startswith("First Citizen:\n") and len(sample.split("\n---")[0]) >= len("First Citizen:\n") + 40
    assert "bits per character" in out
    assert (tmp_path / "charlm.weights.safetensors").exists()


def test_train_transformer_language_model(tmp_path, capsys):
    code = cli.main(["train", "--model", "transformer", "--epochs", "1", "--max-chars", "4000", "--steps", "16",
                     "--sample-length", "30", "--out", str(tmp_path), "--verbose", "0"])
    out = capsys.readouterr().out
    assert code == 0 and "'transformer'" in out and "--- sample after epoch 1" in out
    assert (tmp_path / "transformer.weights.safetensors").exists()


def test_info_prints_runtime(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "threading layer" in out and "kernel cache" in out


@pytest.mark.parametrize("argv", [["train", "--epochs", "-1"], ["train", "--batch-size", "0"],
                                  ["train", "--model", "nope"], ["train", "--learning-rate", "0"],
                                  ["train", "--model", "charlm", "--max-chars", "10"]])
def test_train_refuses_bad_arguments(argv):
    with pytest.raises(SystemExit):
        cli.main(argv)
