"""Plots: history curves, confusion matrices and ROC curves draw what the metrics
compute and write PNG files (skipped without matplotlib)."""
import numpy as np
import pytest

import nnjit as nj
from nnjit import metrics

matplotlib = pytest.importorskip("matplotlib")
plt = pytest.importorskip("matplotlib.pyplot")

PNG = b"\x89PNG\r\n\x1a\n"


def is_png(path):
    return path.exists() and path.read_bytes()[:8] == PNG and path.stat().st_size > 1000


def test_available():
    assert nj.plot.available() is True


def test_plot_history_writes_png(tmp_path):
    hist = {"loss": [1.0, 0.5, 0.25], "val_loss": [1.1, 0.7, 0.6], "accuracy": [0.5, 0.7, 0.9]}
    fig = nj.plot.plot_history(hist, path=tmp_path / "h.png")
    assert is_png(tmp_path / "h.png")
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["loss", "accuracy"]
    train, val = axes[0].get_lines()
    np.testing.assert_array_equal(train.get_ydata(), hist["loss"])
    np.testing.assert_array_equal(val.get_ydata(), hist["val_loss"])
    with pytest.raises(ValueError, match="History or a dict"):
        nj.plot.plot_history({})


def test_plot_confusion_matrix_from_labels(tmp_path):
    y_true = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 0, 2, 2, 1, 2])
    path = tmp_path / "cm.png"
    fig = nj.plot.plot_confusion_matrix(y_true, y_pred, class_names=["cat", "dog", "eel"], path=path)
    assert is_png(path)
    ax = fig.axes[0]
    cm = metrics.confusion_matrix(y_true, y_pred)
    np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), cm)
    texts = [t.get_text() for t in ax.texts]
    assert texts == [str(v) for v in cm.reshape(-1)]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "eel"]
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true"


@pytest.mark.parametrize("normalize, axis", [(True, 1), ("true", 1), ("pred", 0), ("all", None)])
def test_plot_confusion_matrix_normalized(normalize, axis):
    cm = np.array([[5, 1, 0], [2, 6, 2], [0, 0, 0]])   # an empty row stays 0
    fig = nj.plot.plot_confusion_matrix(cm, normalize=normalize)
    shown = np.asarray(fig.axes[0].images[0].get_array())
    total = cm.sum() if axis is None else cm.sum(axis=axis, keepdims=True)
    expected = np.divide(cm, total, out=np.zeros(cm.shape), where=np.asarray(total) > 0)
    np.testing.assert_allclose(shown, expected)
    assert fig.axes[0].texts[0].get_text() == f"{expected[0, 0]:.2f}"
    plt.close(fig)


def test_plot_confusion_matrix_errors():
    with pytest.raises(ValueError, match="square"):
        nj.plot.plot_confusion_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        nj.plot.plot_confusion_matrix(np.array([[1, -1], [0, 2]]))
    with pytest.raises(ValueError, match="expected 2 class names"):
        nj.plot.plot_confusion_matrix(np.eye(2), class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="normalize='rows'"):
        nj.plot.plot_confusion_matrix(np.eye(2), normalize="rows")
    with pytest.raises(ValueError, match="same number of samples"):
        nj.plot.plot_confusion_matrix([0, 1, 1], [0, 1])


def test_plot_roc_curve_binary(tmp_path):
    y = np.array([0, 1, 0, 1, 1, 0])
    s = np.array([0.2, 0.8, 0.5, 0.5, 0.3, 0.1])
    path = tmp_path / "roc.png"
    fig = nj.plot.plot_roc_curve(y, s, path=path)
    assert is_png(path)
    curve, chance = fig.axes[0].get_lines()
    fpr, tpr, _ = metrics.roc_curve(y, s)
    np.testing.assert_allclose(curve.get_xdata(), fpr)
    np.testing.assert_allclose(curve.get_ydata(), tpr)
    np.testing.assert_array_equal(chance.get_xdata(), [0, 1])
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0] == f"AUC = {7.5 / 9:.3f}"
    # Two-column scores draw the curve of class 1.
    fig2 = nj.plot.plot_roc_curve(y, np.stack([1 - s, s], axis=1))
    np.testing.assert_allclose(fig2.axes[0].get_lines()[0].get_xdata(), fpr)
    plt.close(fig2)


def test_plot_roc_curve_multiclass(tmp_path):
    rng = np.random.default_rng(0)
    y = np.r_[0, 1, 2, rng.integers(0, 3, 50)]
    p = rng.random((53, 3)) + np.eye(3)[y]
    fig = nj.plot.plot_roc_curve(y, p, path=tmp_path / "roc3.png", class_names=["a", "b", "c"])
    assert is_png(tmp_path / "roc3.png")
    lines = fig.axes[0].get_lines()
    assert len(lines) == 4   # three classes and the chance line
    for k in range(3):
        fpr, tpr, _ = metrics.roc_curve((y == k).astype(int), p[:, k])
        np.testing.assert_allclose(lines[k].get_xdata(), fpr)
        np.testing.assert_allclose(lines[k].get_ydata(), tpr)
    assert f"{metrics.roc_auc(y, p):.3f}" in fig.axes[0].get_title()
    assert fig.axes[0].get_legend().get_texts()[1].get_text().startswith("b (AUC = ")


def test_plot_roc_curve_errors():
    with pytest.raises(ValueError, match="only class 1"):
        nj.plot.plot_roc_curve([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="expected 3 class names"):
        nj.plot.plot_roc_curve([0, 1, 2], np.eye(3), class_names=["a"])


def test_plots_of_a_trained_model(tmp_path):
    (x, y), (xt, yt) = nj.datasets.load_digits()
    nj.set_seed(0)
    model = nj.Sequential([nj.Input((64,)), nj.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy", "auc"])
    history = model.fit(x[:400], y[:400], epochs=2, validation_data=(xt, yt), verbose=0)
    p = model.predict(xt)
    nj.plot.plot_history(history, path=tmp_path / "history.png")
    nj.plot.plot_confusion_matrix(yt, p, path=tmp_path / "cm.png", normalize=True)
    nj.plot.plot_roc_curve(yt, p, path=tmp_path / "roc.png")
    assert all(is_png(tmp_path / f) for f in ("history.png", "cm.png", "roc.png"))
    assert matplotlib.get_backend().lower() == "agg"
