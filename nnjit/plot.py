"""Plots of training and of classification results (matplotlib, from the ``plot`` extra).

Every function returns the matplotlib Figure and writes a PNG when given ``path``.
matplotlib is imported on first use; outside a notebook the non-interactive Agg backend
is chosen, so plotting works on machines without a display.

>>> import nnjit as nj
>>> nj.plot.available()   # is matplotlib installed?
True
"""
from __future__ import annotations


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _plt():
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("nnjit.plot needs matplotlib: pip install 'nnjit[plot]'") from exc
    if not _interactive():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _interactive() -> bool:
    import sys

    return "ipykernel" in sys.modules


def plot_history(history, path=None, metrics=None):
    """Draw loss and metric curves (training and validation) from a History or its dict,
    one panel per name, the "val_" curve beside its training curve.

    Args:
        history: the History that ``fit`` returns, or its ``history`` dict of lists.
        path: where to write a PNG (optional).
        metrics: the names to draw (default: every key without the "val_" prefix).

    Returns the matplotlib Figure.

    >>> import nnjit as nj
    >>> fig = nj.plot.plot_history({"loss": [0.9, 0.5, 0.3], "val_loss": [1.0, 0.7, 0.6]})
    """
    hist = getattr(history, "history", history)
    if not isinstance(hist, dict) or not hist:
        raise ValueError(f"plot_history: expected a History or a dict of lists. Received: {type(history).__name__}")
    names = metrics or [k for k in hist if not k.startswith("val_")]
    plt = _plt()
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        epochs = range(1, len(hist[name]) + 1)
        ax.plot(epochs, hist[name], label="train")
        if "val_" + name in hist:
            ax.plot(epochs, hist["val_" + name], label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    return _finish(fig, plt, path)


def _finish(fig, plt, path):
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
        if not _interactive():
            plt.close(fig)
    return fig


def plot_confusion_matrix(cm_or_y_true, y_pred=None, class_names=None, path=None, normalize=False):
    """Draw a confusion matrix as a heat map with the count (or fraction) in each cell.

    Args:
        cm_or_y_true: a square confusion matrix (rows true, columns predicted) when
            ``y_pred`` is None; otherwise the true labels, and the matrix is computed with
            ``nnjit.metrics.confusion_matrix(y_true, y_pred)``.
        y_pred: predicted labels or class scores (arg-max), as ``confusion_matrix`` takes.
        class_names: tick labels, one per class (default 0, 1, ...).
        path: where to write a PNG (optional).
        normalize: False for counts; True or "true" divides each row by its total (the
            recall of each class on the diagonal); "pred" each column (precision on the
            diagonal); "all" the whole matrix.  An empty row or column stays 0.

    Returns the matplotlib Figure.

    >>> import nnjit as nj
    >>> fig = nj.plot.plot_confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], class_names=["a", "b", "c"])
    """
    import numpy as np

    from . import metrics

    owner = "plot_confusion_matrix"
    if y_pred is None:
        cm = np.asarray(cm_or_y_true)
        if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0 or cm.dtype.kind not in "iuf":
            raise ValueError(f"{owner}: expected a square numeric confusion matrix, or y_true and y_pred. "
                             f"Received: an array of shape {cm.shape} and dtype {cm.dtype} with y_pred=None")
        if cm.dtype.kind == "f" and not np.isfinite(cm).all():
            raise ValueError(f"{owner}: expected finite counts in the confusion matrix")
        if (cm < 0).any():
            raise ValueError(f"{owner}: expected non-negative counts in the confusion matrix")
    else:
        cm = metrics.confusion_matrix(cm_or_y_true, y_pred)
    n = cm.shape[0]
    if class_names is None:
        names = [str(i) for i in range(n)]
    else:
        if isinstance(class_names, (str, bytes)) or not hasattr(class_names, "__len__"):
            raise TypeError(f"{owner}: expected a list of names for class_names. Received: class_names={class_names!r:.80}")
        if len(class_names) != n:
            raise ValueError(f"{owner}: expected {n} class names for a {n}x{n} matrix. "
                             f"Received: {len(class_names)} names")
        names = [str(c) for c in class_names]
    if normalize not in (False, True, "true", "pred", "all"):
        raise ValueError(f"{owner}: expected normalize False, True, 'true', 'pred' or 'all'. "
                         f"Received: normalize={normalize!r}")
    values = cm.astype(np.float64)
    if normalize:
        if normalize == "pred":
            total = values.sum(axis=0, keepdims=True)
        elif normalize == "all":
            total = np.array([[values.sum()]])
        else:
            total = values.sum(axis=1, keepdims=True)
        values = np.divide(values, total, out=np.zeros_like(values), where=total > 0)

    plt = _plt()
    size = max(3.5, 0.5 * n + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if n <= 30:  # beyond that the numbers would not fit in the cells
        high = values.max() / 2.0 if values.size else 0.0
        for i in range(n):
            for j in range(n):
                text = f"{values[i, j]:.2f}" if normalize else f"{cm[i, j]:g}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if values[i, j] > high else "black")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    long_names = max(len(s) for s in names) > 3
    ax.set_xticklabels(names, rotation=45 if long_names else 0, ha="right" if long_names else "center")
    ax.set_yticklabels(names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (normalized)" if normalize else ""))
    return _finish(fig, plt, path)


def plot_roc_curve(y_true, scores, path=None, class_names=None):
    """Draw the ROC curve with its area in the legend and the chance diagonal.

    Args:
        y_true: labels 0 and 1 for binary scores; integer labels for class scores.
        scores: one score per sample (N,) or (N, 1); or class scores (N, C): for C = 2 the
            curve of class 1, for C > 2 one one-vs-rest curve per class that has both
            samples of its own and of other classes, with the macro-average area in the
            title.
        path: where to write a PNG (optional).
        class_names: legend names of the classes for class scores.

    Returns the matplotlib Figure.

    >>> import nnjit as nj
    >>> fig = nj.plot.plot_roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    """
    import numpy as np

    from . import metrics

    arr = np.asarray(scores)
    curves = []
    title = "ROC curve"
    if arr.ndim == 2 and arr.shape[1] > 2:
        labels, _ = metrics._true_labels(y_true, "plot_roc_curve")
        metrics._check_lengths(labels.size, arr.shape[0], "plot_roc_curve", "y_true", "scores")
        c = arr.shape[1]
        if class_names is not None and len(class_names) != c:
            raise ValueError(f"plot_roc_curve: expected {c} class names. Received: {len(class_names)} names")
        areas = []
        for k in range(c):
            positive = (labels == k).astype(np.int64)
            if 0 < positive.sum() < positive.size:
                fpr, tpr, _ = metrics.roc_curve(positive, arr[:, k])
                area = metrics.roc_auc(positive, arr[:, k])
                areas.append(area)
                name = str(class_names[k]) if class_names is not None else f"class {k}"
                curves.append((fpr, tpr, f"{name} (AUC = {area:.3f})"))
        if not curves:
            raise ValueError("plot_roc_curve: no class has both samples of its own and of other classes in y_true")
        title = f"ROC curves, one vs rest (macro AUC = {np.mean(areas):.3f})"
    else:
        if arr.ndim == 2 and arr.shape[1] == 2:
            arr = arr[:, 1]
        fpr, tpr, _ = metrics.roc_curve(y_true, arr)
        area = metrics.roc_auc(y_true, arr)
        curves.append((fpr, tpr, f"AUC = {area:.3f}"))

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for fpr, tpr, label in curves:
        ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label="chance")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _finish(fig, plt, path)


def plot_model(model, path=None, show_shapes=True):
    """Draw a model's graph: one box per layer call (name, type and output shape), arrows
    from each layer to the layers it feeds, inputs at the top.  Works for Sequential and
    functional models.  Writes ``path`` (PNG, SVG or PDF, by extension) when given;
    returns the matplotlib Figure.

    >>> nj.plot.plot_model(model, "model.png")
    """
    plt = _plt()
    from .layers.base import shape_str

    nodes, edges = _model_graph(model)
    depth = {}
    for key, _, _ in nodes:
        depth[key] = 1 + max((depth[src] for src, dst in edges if dst == key), default=-1)
    rows = {}
    for key, _, _ in nodes:
        rows.setdefault(depth[key], []).append(key)
    width = max(len(r) for r in rows.values())
    fig, ax = plt.subplots(figsize=(max(4.0, 3.2 * width), max(2.0, 1.1 * len(rows))))
    pos = {}
    for d, keys in rows.items():
        for i, key in enumerate(keys):
            pos[key] = ((i + 0.5) * width / len(keys), -d)
    labels = {key: (f"{name}\n{kind}" + (f"\n{shape_str((None,) + tuple(shape))}" if show_shapes and shape is not None
                                           and not isinstance(shape, list) else ""))
              for key, (name, kind), shape in nodes}
    for src, dst in edges:
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        ax.annotate("", xy=(x1, y1 + 0.28), xytext=(x0, y0 - 0.28),
                    arrowprops={"arrowstyle": "->", "color": "0.35", "lw": 1})
    for key, (x, y) in pos.items():
        ax.text(x, y, labels[key], ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round,pad=0.4", "fc": "#e8f0fb", "ec": "#4a6fa5"})
    ax.set_xlim(0, width)
    ax.set_ylim(-len(rows) + 0.4, 0.6)
    ax.axis("off")
    ax.set_title(model.name)
    return _finish(fig, plt, path)


def _model_graph(model):
    """([(key, (name, type), output shape)], [(key from, key to)]) for a model."""
    from .models.functional import Model

    if isinstance(model, Model):
        nodes, edges, keys = [], [], {}
        for t in model.inputs:
            keys[id(t.node)] = len(keys)
            nodes.append((keys[id(t.node)], (t.layer.name, "Input"), t.shape))
        for node in model._nodes:
            keys[id(node)] = len(keys)
            out = [t.shape for t in node.outputs]
            nodes.append((keys[id(node)], (node.layer.name, type(node.layer).__name__),
                          out[0] if len(out) == 1 else out))
            for t in node.inputs:
                if (keys[id(t.node)], keys[id(node)]) not in edges:
                    edges.append((keys[id(t.node)], keys[id(node)]))
        return nodes, edges
    layers = list(model.layers)
    shape = model._input_shape()
    nodes = [(0, ("input", "Input"), shape)]
    for i, layer in enumerate(layers, start=1):
        nodes.append((i, (layer.name, type(layer).__name__), getattr(layer, "output_shape", None)))
    return nodes, [(i, i + 1) for i in range(len(layers))]
