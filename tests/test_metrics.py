"""Metrics: precision, recall, f1 and AUC against their textbook definitions (counted by
hand below), streaming over batches, through compile/evaluate, and the functions
confusion_matrix, roc_curve, roc_auc and classification_report."""
import doctest
import itertools

import numpy as np
import pytest

import nnjit as nj
from nnjit import metrics
from nnjit.layers import Dense


# ----------------------------------------------------------------- textbook references
def counts(true, pred, k):
    """(TP, FP, FN) of class k, by counting pairs."""
    tp = sum(1 for t, p in zip(true, pred) if t == k and p == k)
    fp = sum(1 for t, p in zip(true, pred) if t != k and p == k)
    fn = sum(1 for t, p in zip(true, pred) if t == k and p != k)
    return tp, fp, fn


def safe(num, den):
    return num / den if den else 0.0


def textbook(true, pred, k):
    """precision, recall, f1 of class k."""
    tp, fp, fn = counts(true, pred, k)
    p, r = safe(tp, tp + fp), safe(tp, tp + fn)
    return p, r, safe(2 * p * r, p + r)


def mann_whitney(labels, scores):
    """P(score of a positive > score of a negative), ties counting 1/2, over all pairs."""
    pos = [s for l, s in zip(labels, scores) if l == 1]
    neg = [s for l, s in zip(labels, scores) if l == 0]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def run(metric, y_true, y_pred, batches=1):
    metric.reset()
    for idx in np.array_split(np.arange(len(y_true)), batches):
        metric.update(y_true[idx], y_pred[idx])
    return metric.result()


# Binary case: TP = 3 (0, 1, 6), FP = 2 (3, 5), FN = 1 (2), TN = 2 (4, 7).
B_TRUE = np.array([1, 1, 1, 0, 0, 0, 1, 0])
B_PROB = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.8, 0.55, 0.3])
B_PRECISION, B_RECALL = 3 / 5, 3 / 4
B_F1 = 2 * B_PRECISION * B_RECALL / (B_PRECISION + B_RECALL)

# Three classes: pairs (true, predicted).
M_PAIRS = [(0, 0), (0, 0), (0, 1), (1, 1), (1, 0), (1, 0), (2, 2), (2, 1), (2, 2), (2, 2)]
M_TRUE = np.array([t for t, _ in M_PAIRS])
M_PRED = np.array([p for _, p in M_PAIRS])
# By hand: class 0 P 2/4 R 2/3; class 1 P 1/3 R 1/3; class 2 P 3/3 R 3/4.
M_PRECISION = (1 / 2 + 1 / 3 + 1) / 3
M_RECALL = (2 / 3 + 1 / 3 + 3 / 4) / 3
M_F1 = (2 * 2 / (4 + 3) + 2 * 1 / (3 + 3) + 2 * 3 / (3 + 4)) / 3


def scores_for(pred, classes, rng, sharp=3.0):
    """Random probability rows whose arg-max is ``pred``."""
    z = rng.standard_normal((len(pred), classes))
    z[np.arange(len(pred)), pred] = z.max(axis=1) + sharp
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_reference_helpers_agree_with_the_constants():
    assert counts(B_TRUE, (B_PROB > 0.5).astype(int), 1) == (3, 2, 1)
    assert textbook(B_TRUE, (B_PROB > 0.5).astype(int), 1) == pytest.approx((B_PRECISION, B_RECALL, B_F1))
    macro = np.mean([textbook(M_TRUE, M_PRED, k) for k in range(3)], axis=0)
    assert macro == pytest.approx((M_PRECISION, M_RECALL, M_F1))
    assert M_PRECISION != pytest.approx(M_RECALL)   # a swap of precision and recall would show


# ----------------------------------------------------------------- binary
@pytest.mark.parametrize("batches", [1, 3, 8])
@pytest.mark.parametrize("cls, expected", [(metrics.Precision, B_PRECISION), (metrics.Recall, B_RECALL),
                                           (metrics.F1Score, B_F1)])
def test_binary_probabilities_stream_over_batches(cls, expected, batches):
    assert run(cls(), B_TRUE.astype(np.float32), B_PROB[:, None].astype(np.float32), batches) == pytest.approx(expected)


@pytest.mark.parametrize("cls, expected", [(metrics.Precision, B_PRECISION), (metrics.Recall, B_RECALL),
                                           (metrics.F1Score, B_F1)])
def test_binary_logits_and_two_class_outputs_agree(cls, expected):
    logits = np.log(B_PROB / (1 - B_PROB))[:, None]
    assert run(cls(from_logits=True), B_TRUE, logits) == pytest.approx(expected)
    # Two-class softmax rows: the positive class is class 1.
    two = np.stack([1 - B_PROB, B_PROB], axis=1)
    assert run(cls(), B_TRUE, two) == pytest.approx(expected)
    assert run(cls(), np.eye(2)[B_TRUE], two) == pytest.approx(expected)  # one-hot targets
    two_logits = np.stack([np.zeros_like(B_PROB), np.log(B_PROB / (1 - B_PROB))], axis=1)
    assert run(cls(from_logits=True), B_TRUE, two_logits) == pytest.approx(expected)


def test_threshold_moves_the_decision():
    # At 0.65: predicted positive 0, 3, 5 -> TP 1, FP 2.
    assert run(metrics.Precision(threshold=0.65), B_TRUE, B_PROB) == pytest.approx(1 / 3)
    assert run(metrics.Recall(threshold=0.65), B_TRUE, B_PROB) == pytest.approx(1 / 4)
    logits = np.log(B_PROB / (1 - B_PROB))
    assert run(metrics.Precision(threshold=0.65, from_logits=True), B_TRUE, logits) == pytest.approx(1 / 3)


def test_several_sigmoid_outputs_count_each_output():
    # binary=True: a (4, 2) output is eight yes/no decisions, as the flattened arrays.
    y = B_TRUE.reshape(4, 2).astype(np.float32)
    p = B_PROB.reshape(4, 2)
    assert run(metrics.Precision(binary=True), y, p) == pytest.approx(B_PRECISION)
    assert run(metrics.F1Score(binary=True), y, p) == pytest.approx(B_F1)
    # Without binary=True two columns are two classes: different numbers.
    assert run(metrics.Precision(), y, p) != pytest.approx(B_PRECISION)


def test_no_positive_prediction_gives_zero_not_nan():
    m = metrics.Precision()
    assert np.isnan(m.result())  # nothing seen yet
    assert run(m, np.array([1, 0, 1]), np.array([0.1, 0.2, 0.3])) == 0.0
    assert run(metrics.F1Score(), np.array([1, 0, 1]), np.array([0.1, 0.2, 0.3])) == 0.0


# ----------------------------------------------------------------- multi-class
@pytest.mark.parametrize("batches", [1, 4])
@pytest.mark.parametrize("cls, expected", [(metrics.Precision, M_PRECISION), (metrics.Recall, M_RECALL),
                                           (metrics.F1Score, M_F1)])
def test_multiclass_macro_average(cls, expected, batches):
    rng = np.random.default_rng(0)
    probs = scores_for(M_PRED, 3, rng)
    assert run(cls(), M_TRUE, probs, batches) == pytest.approx(expected)
    assert run(cls(), np.eye(3, dtype=np.float32)[M_TRUE], probs, batches) == pytest.approx(expected)
    assert run(cls(from_logits=True), M_TRUE, np.log(probs) + 5.0, batches) == pytest.approx(expected)


@pytest.mark.parametrize("cls, expected", [(metrics.Precision, M_PRECISION), (metrics.Recall, M_RECALL),
                                           (metrics.F1Score, M_F1)])
def test_macro_average_skips_classes_never_seen(cls, expected):
    # A fifth output column no label or prediction uses does not dilute the average
    # (scikit-learn's labels=None).
    probs = scores_for(M_PRED, 5, np.random.default_rng(1))
    assert run(cls(), M_TRUE, probs) == pytest.approx(expected)


def test_class_only_predicted_counts_as_zero_in_the_average():
    true = np.array([0, 0, 1, 1])
    pred = np.array([0, 2, 1, 1])   # class 2 predicted once, never a label
    probs = scores_for(pred, 3, np.random.default_rng(2))
    expected_p = np.mean([textbook(true, pred, k)[0] for k in range(3)])   # 1, 1, 0
    expected_r = np.mean([textbook(true, pred, k)[1] for k in range(3)])   # 1/2, 1, 0
    assert expected_p == pytest.approx(2 / 3) and expected_r == pytest.approx(1 / 2)
    assert run(metrics.Precision(), true, probs) == pytest.approx(expected_p)
    assert run(metrics.Recall(), true, probs) == pytest.approx(expected_r)


def test_sequence_outputs_are_flattened():
    rng = np.random.default_rng(3)
    probs = scores_for(M_PRED, 3, rng).reshape(2, 5, 3)
    assert run(metrics.Precision(), M_TRUE, probs.reshape(10, 3)) == pytest.approx(M_PRECISION)
    m = metrics.Precision()
    m.update(M_TRUE, probs)   # sparse targets come flattened, predictions (N, T, C)
    assert m.result() == pytest.approx(M_PRECISION)


def test_update_errors():
    with pytest.raises(ValueError, match="shape"):
        metrics.Precision().update(np.array([0, 1, 1]), np.eye(3)[:2])
    with pytest.raises(ValueError, match=r"\[0, 3\).*Received: 3 at index 1"):
        metrics.Recall().update(np.array([0, 3]), np.eye(3)[:2])
    with pytest.raises(ValueError, match="integer class labels.*0.5"):
        metrics.Recall().update(np.array([0.0, 0.5]), np.eye(3)[:2])
    m = metrics.F1Score()
    m.update(np.array([0, 1]), np.eye(3)[:2])
    with pytest.raises(ValueError, match="number of classes changed from 3 to 4"):
        m.update(np.array([0, 1]), np.eye(4)[:2])


@pytest.mark.parametrize("kwargs, error, text", [
    (dict(threshold=1.5), ValueError, "threshold=1.5"),
    (dict(threshold="high"), TypeError, "threshold='high'"),
    (dict(from_logits=1), TypeError, "from_logits=1"),
    (dict(binary="yes"), TypeError, "binary='yes'"),
])
def test_constructor_errors(kwargs, error, text):
    with pytest.raises(error, match=text):
        metrics.Precision(**kwargs)


# ----------------------------------------------------------------- AUC (streaming)
def test_auc_metric_binary_matches_mann_whitney_over_batches():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) * 0.5 + 0.3 * y, 1)   # many ties
    expected = mann_whitney(y, s)
    assert run(metrics.AUC(), y.astype(np.float32), s[:, None], batches=7) == pytest.approx(expected)
    # Logits are ranked as they are: equal to the probabilities' area.
    logit = np.log(np.clip(s, 1e-3, 1 - 1e-3) / (1 - np.clip(s, 1e-3, 1 - 1e-3)))
    assert run(metrics.AUC(from_logits=True), y, logit, batches=3) == pytest.approx(expected)
    two = np.stack([1 - s, s], axis=1)
    assert run(metrics.AUC(), y, two, batches=5) == pytest.approx(expected)


def test_auc_metric_large_logits_are_not_rounded_to_ties():
    # sigmoid(40) and sigmoid(50) are both 1.0 in float32; the ranking must survive.
    y = np.array([0, 1, 0, 1])
    z = np.array([40.0, 50.0, -3.0, 60.0], np.float32)
    assert run(metrics.AUC(from_logits=True), y, z) == pytest.approx(1.0)


def test_auc_metric_multiclass_one_vs_rest_macro():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 60)
    z = rng.standard_normal((60, 3)) + np.eye(3)[y]
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    expected = np.mean([mann_whitney((y == k).astype(int), p[:, k]) for k in range(3)])
    assert run(metrics.AUC(), y, p, batches=4) == pytest.approx(expected)
    assert run(metrics.AUC(), np.eye(3)[y], p, batches=4) == pytest.approx(expected)
    assert run(metrics.AUC(from_logits=True), y, z, batches=2) == pytest.approx(expected)
    # A class with no sample is skipped, the others averaged.
    keep = y != 2
    expected_two = np.mean([mann_whitney((y[keep] == k).astype(int), p[keep, k]) for k in range(2)])
    assert run(metrics.AUC(), y[keep], p[keep]) == pytest.approx(expected_two)


def test_auc_metric_single_class_is_nan_and_result_is_repeatable():
    m = metrics.AUC()
    m.update(np.ones(4), np.array([0.1, 0.2, 0.3, 0.4]))
    assert np.isnan(m.result())
    m.update(np.zeros(2), np.array([0.15, 0.5]))
    first = m.result()
    assert first == pytest.approx(mann_whitney([1, 1, 1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4, 0.15, 0.5]))
    assert m.result() == first
    m.reset()
    assert np.isnan(m.result())


def test_auc_metric_keeps_a_copy_of_the_scores():
    m = metrics.AUC()
    buf = np.array([0.1, 0.9])
    m.update(np.array([0, 1]), buf)
    buf[:] = [0.9, 0.1]   # the caller reuses its buffer
    m.update(np.array([0, 1]), buf)
    assert m.result() == pytest.approx(mann_whitney([0, 1, 0, 1], [0.1, 0.9, 0.9, 0.1]))


# ----------------------------------------------------------------- compile by name
def test_get_by_name():
    bce = nj.losses.get("binary_crossentropy")
    for name, cls in [("precision", metrics.Precision), ("recall", metrics.Recall), ("f1", metrics.F1Score),
                      ("F1_score", metrics.F1Score), ("auc", metrics.AUC), ("mae", metrics.MeanAbsoluteError)]:
        m = metrics.get(name, bce, from_logits=True)
        assert isinstance(m, cls)
    assert metrics.get("precision", bce).binary is True
    assert metrics.get("precision", nj.losses.get("sparse_categorical_crossentropy")).binary is None
    assert metrics.get("recall", bce, from_logits=True).from_logits is True
    assert metrics.get("f1").name == "f1"
    with pytest.raises(ValueError, match="'precison'.*|.*precision"):
        metrics.get("precison")


def _fit_predict(model, loss, x, y, metric_names):
    model.compile(nj.optimizers.Adam(0.05), loss, metrics=metric_names)
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    return model.evaluate(x, y, batch_size=7), model.predict(x)


def test_compiled_binary_metrics_equal_textbook_values():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((90, 4)).astype(np.float32)
    y = (x[:, 0] + 0.8 * rng.standard_normal(90) > 0).astype(np.float32)
    nj.set_seed(0)
    model = nj.Sequential([nj.Input((4,)), Dense(1, activation="sigmoid")])
    logs, p = _fit_predict(model, "binary_crossentropy", x, y, ["precision", "recall", "f1", "auc"])
    pred = (p[:, 0] > 0.5).astype(int)
    precision, recall, f1 = textbook(y.astype(int), pred, 1)
    assert 0 < precision < 1 and 0 < recall < 1   # a case where the metrics say something
    assert logs["precision"] == pytest.approx(precision)
    assert logs["recall"] == pytest.approx(recall)
    assert logs["f1"] == pytest.approx(f1)
    assert logs["auc"] == pytest.approx(mann_whitney(y, p[:, 0]), abs=1e-9)


def test_compiled_metrics_on_logits():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((80, 3)).astype(np.float32)
    y = (x[:, 1] - x[:, 2] + rng.standard_normal(80) > 0).astype(np.float32)
    nj.set_seed(1)
    model = nj.Sequential([nj.Input((3,)), Dense(1)])
    logs, z = _fit_predict(model, nj.losses.BinaryCrossentropy(from_logits=True), x, y, ["precision", "recall", "auc"])
    pred = (z[:, 0] > 0).astype(int)   # probability 0.5 is logit 0
    precision, recall, _ = textbook(y.astype(int), pred, 1)
    assert logs["precision"] == pytest.approx(precision)
    assert logs["recall"] == pytest.approx(recall)
    assert logs["auc"] == pytest.approx(mann_whitney(y, z[:, 0]))


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
def test_compiled_multiclass_metrics_equal_textbook_values(loss):
    (x, y), _ = nj.datasets.load_digits()
    x, y = x[:300], y[:300]
    targets = y if loss.startswith("sparse") else np.eye(10, dtype=np.float32)[y]
    nj.set_seed(2)
    model = nj.Sequential([nj.Input((64,)), Dense(10, activation="softmax")])
    model.compile(nj.optimizers.Adam(0.01), loss, metrics=["accuracy", "precision", "recall", "f1", "auc"])
    model.fit(x, targets, epochs=1, batch_size=32, verbose=0)
    logs = model.evaluate(x, targets, batch_size=64)
    p = model.predict(x)
    pred = p.argmax(1)
    present = sorted(set(y) | set(pred))
    per_class = np.array([textbook(y, pred, k) for k in present])
    assert logs["precision"] == pytest.approx(per_class[:, 0].mean())
    assert logs["recall"] == pytest.approx(per_class[:, 1].mean())
    assert logs["f1"] == pytest.approx(per_class[:, 2].mean())
    assert logs["auc"] == pytest.approx(np.mean([mann_whitney((y == k).astype(int), p[:, k]) for k in range(10)]))
    assert logs["accuracy"] < 1.0 and logs["precision"] != pytest.approx(logs["recall"])


def test_metrics_appear_in_fit_history_with_validation():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((60, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    model = nj.Sequential([nj.Input((2,)), Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy", metrics=["precision", "auc"])
    h = model.fit(x, y, epochs=2, validation_split=0.25, verbose=0)
    assert set(h.history) == {"loss", "precision", "auc", "val_loss", "val_precision", "val_auc"}


# ----------------------------------------------------------------- confusion_matrix
def test_confusion_matrix_by_hand():
    cm = metrics.confusion_matrix(M_TRUE, M_PRED)
    expected = np.zeros((3, 3), int)
    for t, p in M_PAIRS:
        expected[t, p] += 1
    np.testing.assert_array_equal(cm, expected)
    assert cm[1, 0] == 2 and cm[0, 1] == 1   # rows true, columns predicted
    assert cm.dtype == np.int64


def test_confusion_matrix_input_forms():
    rng = np.random.default_rng(9)
    probs = scores_for(M_PRED, 3, rng)
    expected = metrics.confusion_matrix(M_TRUE, M_PRED)
    np.testing.assert_array_equal(metrics.confusion_matrix(M_TRUE, probs), expected)
    np.testing.assert_array_equal(metrics.confusion_matrix(np.eye(3)[M_TRUE], probs), expected)
    np.testing.assert_array_equal(metrics.confusion_matrix(M_TRUE.astype(float).tolist(), M_PRED), expected)
    big = metrics.confusion_matrix(M_TRUE, M_PRED, num_classes=5)
    assert big.shape == (5, 5) and big[:3, :3].tolist() == expected.tolist() and big[3:].sum() == 0
    # One probability column: class 1 above 0.5.
    np.testing.assert_array_equal(metrics.confusion_matrix(B_TRUE, B_PROB[:, None]), [[2, 2], [1, 3]])
    # Score columns set the size even when the last class never occurs.
    assert metrics.confusion_matrix([0, 1], np.eye(4)[[0, 1]]).shape == (4, 4)


@pytest.mark.parametrize("args, kwargs, error, text", [
    (([0, 1, 2], [0, 1]), {}, ValueError, "same number of samples.*3 and 2"),
    (([0, 1.5], [0, 1]), {}, ValueError, "integer class labels in y_true.*1.5 at index 1"),
    (([0, -1], [0, 1]), {}, ValueError, "non-negative.*-1 at index 1"),
    (([0, 1], [0, 3]), {"num_classes": 3}, ValueError, r"\[0, 3\) in y_pred.*3 at index 1"),
    (([0, 1], [0, 1]), {"num_classes": 0}, ValueError, "num_classes=0"),
    (([0, 1], [0, 1]), {"num_classes": 2.0}, TypeError, "num_classes=2.0"),
    (([], []), {}, ValueError, "at least one sample"),
    ((["a", "b"], [0, 1]), {}, TypeError, "numeric"),
    (([0, 1], [0, np.nan]), {}, ValueError, "finite.*nan"),
    ((np.zeros((2, 2, 2)), [0, 1]), {}, ValueError, "shape"),
])
def test_confusion_matrix_errors(args, kwargs, error, text):
    with pytest.raises(error, match=text):
        metrics.confusion_matrix(*args, **kwargs)


# ----------------------------------------------------------------- roc_curve / roc_auc
# Ties: scores 0.5 hold one positive and one negative.  Positives 3, negatives 3.
R_TRUE = np.array([0, 1, 0, 1, 1, 0])
R_SCORE = np.array([0.2, 0.8, 0.5, 0.5, 0.3, 0.1])


def test_roc_curve_by_hand_with_ties():
    fpr, tpr, thr = metrics.roc_curve(R_TRUE, R_SCORE, drop_intermediate=False)
    # Thresholds inf, 0.8, 0.5, 0.3, 0.2, 0.1: (FP, TP) = (0,0) (0,1) (1,2) (1,3) (2,3) (3,3).
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_array_equal(thr, [np.inf, 0.8, 0.5, 0.3, 0.2, 0.1])
    # Default (as scikit-learn): the point at 0.2 lies on the segment from (1/3, 1) to (1, 1).
    fpr, tpr, thr = metrics.roc_curve(R_TRUE, R_SCORE)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 1 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 1, 1])
    np.testing.assert_array_equal(thr, [np.inf, 0.8, 0.5, 0.3, 0.1])


def test_roc_curve_points_are_the_rates_at_each_threshold():
    rng = np.random.default_rng(10)
    y = rng.integers(0, 2, 50)
    s = np.round(rng.random(50), 1)
    fpr, tpr, thr = metrics.roc_curve(y, s, drop_intermediate=False)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and np.all(np.diff(thr) < 0)
    for f, t, th in zip(fpr, tpr, thr):
        predicted = s >= th
        assert f == pytest.approx(np.sum(predicted & (y == 0)) / np.sum(y == 0))
        assert t == pytest.approx(np.sum(predicted & (y == 1)) / np.sum(y == 1))
    assert len(thr) == len(np.unique(s)) + 1


def test_roc_auc_by_hand_and_mann_whitney():
    # Pairs won: 0.8 beats all 3 negatives, 0.5 beats 2 and ties 1, 0.3 beats 2: 7.5 / 9.
    assert metrics.roc_auc(R_TRUE, R_SCORE) == pytest.approx(7.5 / 9)
    assert mann_whitney(R_TRUE, R_SCORE) == pytest.approx(7.5 / 9)
    rng = np.random.default_rng(11)
    for n in (5, 40, 300):
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        s = np.round(rng.standard_normal(n) + y, 1)
        assert metrics.roc_auc(y, s) == pytest.approx(mann_whitney(y, s))
    assert metrics.roc_auc([0, 1], [0.3, 0.3]) == 0.5
    assert metrics.roc_auc([1, 0], [0.9, 0.1]) == 1.0
    assert metrics.roc_auc([0, 1], [0.9, 0.1]) == 0.0
    assert metrics.roc_auc([True, False], [[0.9], [0.1]]) == 1.0


def test_roc_auc_class_scores():
    rng = np.random.default_rng(12)
    y = np.r_[0, 1, 2, rng.integers(0, 3, 40)]
    p = rng.random((43, 3))
    expected = np.mean([mann_whitney((y == k).astype(int), p[:, k]) for k in range(3)])
    assert metrics.roc_auc(y, p) == pytest.approx(expected)
    assert metrics.roc_auc(np.eye(3)[y], p) == pytest.approx(expected)
    two = rng.random((43, 2))
    yb = (y > 0).astype(int)
    assert metrics.roc_auc(yb, two) == pytest.approx(mann_whitney(yb, two[:, 1]))
    assert metrics.roc_auc(np.eye(2)[yb], two) == pytest.approx(mann_whitney(yb, two[:, 1]))
    with pytest.raises(ValueError, match=r"classes \[2\]"):
        metrics.roc_auc(np.r_[0, 1, 0, 1], p[:4])


@pytest.mark.parametrize("y, s, error, text", [
    ([1, 1, 1], [0.1, 0.2, 0.3], ValueError, "only class 1"),
    ([0, 0], [0.1, 0.2], ValueError, "only class 0"),
    ([0, 2, 1], [0.1, 0.2, 0.3], ValueError, "labels 0 and 1.*2 at index 1"),
    ([0, 1, 1], [0.1, 0.2], ValueError, "same number of samples"),
    ([0, 1], [0.1, np.inf], ValueError, "finite"),
    ([0, 1], np.zeros((2, 3)), ValueError, "one score per sample"),
    ([0, 1], [0.1, 0.2], TypeError, "drop_intermediate"),
])
def test_roc_curve_errors(y, s, error, text):
    kwargs = {"drop_intermediate": "no"} if error is TypeError else {}
    with pytest.raises(error, match=text):
        metrics.roc_curve(y, s, **kwargs)


def test_against_scikit_learn_when_installed():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(13)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.3 * y, 2)
    for ours, theirs in zip(metrics.roc_curve(y, s), sk.roc_curve(y, s)):
        np.testing.assert_allclose(ours, theirs)
    assert metrics.roc_auc(y, s) == pytest.approx(sk.roc_auc_score(y, s))
    yt, yp = rng.integers(0, 4, 100), rng.integers(0, 4, 100)
    np.testing.assert_array_equal(metrics.confusion_matrix(yt, yp), sk.confusion_matrix(yt, yp))
    assert metrics.classification_report(yt, yp) == sk.classification_report(yt, yp)
    for cls, fn in [(metrics.Precision, sk.precision_score), (metrics.Recall, sk.recall_score),
                    (metrics.F1Score, sk.f1_score)]:
        assert run(cls(), yt, np.eye(4)[yp]) == pytest.approx(fn(yt, yp, average="macro"))


# ----------------------------------------------------------------- classification_report
def test_classification_report_binary_layout():
    # Class 0: P 1, R 1/2, F 2/3; class 1: P 2/3, R 1, F 4/5; accuracy 3/4.
    report = metrics.classification_report([0, 0, 1, 1], [0, 1, 1, 1])
    assert report == (
        "              precision    recall  f1-score   support\n"
        "\n"
        "           0       1.00      0.50      0.67         2\n"
        "           1       0.67      1.00      0.80         2\n"
        "\n"
        "    accuracy                           0.75         4\n"
        "   macro avg       0.83      0.75      0.73         4\n"
        "weighted avg       0.83      0.75      0.73         4\n")


def test_classification_report_multiclass_values():
    names = ["zero", "one", "two"]
    report = metrics.classification_report(M_TRUE, M_PRED, class_names=names, digits=4)
    rows = {}
    for line in report.splitlines():
        parts = line.rsplit(None, 4)
        if len(parts) == 5:
            rows[parts[0].strip()] = [float(v) for v in parts[1:]]
    support = np.array([3, 3, 4])
    per_class = np.array([textbook(M_TRUE, M_PRED, k) for k in range(3)])
    for k, name in enumerate(names):
        assert rows[name] == pytest.approx(list(per_class[k]) + [support[k]], abs=5e-5)
    assert rows["macro avg"] == pytest.approx([M_PRECISION, M_RECALL, M_F1, 10], abs=5e-5)
    weighted = (per_class * support[:, None]).sum(0) / 10
    assert rows["weighted avg"] == pytest.approx(list(weighted) + [10], abs=5e-5)
    accuracy_line = [l for l in report.splitlines() if l.strip().startswith("accuracy")][0]
    assert accuracy_line.split()[1:] == [f"{6 / 10:.4f}", "10"]


def test_classification_report_rows_only_for_seen_classes_and_errors():
    report = metrics.classification_report([0, 2, 2], [0, 2, 0])
    lines = [l.split()[0] for l in report.splitlines() if l.strip()]
    assert lines[1:3] == ["0", "2"]   # class 1 never occurs: no row
    with pytest.raises(ValueError, match="class_names has 2 names but label 2"):
        metrics.classification_report([0, 2], [0, 1], class_names=["a", "b"])
    with pytest.raises(ValueError, match="same number of samples"):
        metrics.classification_report([0, 1], [0])
    with pytest.raises(ValueError, match="digits=-1"):
        metrics.classification_report([0, 1], [0, 1], digits=-1)


def test_docstring_examples():
    result = doctest.testmod(metrics, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10 and result.failed == 0
