"""Plots of training (matplotlib, from the ``plot`` extra)."""
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
    """Draw loss and metric curves (training and validation) from a History or its dict.

    Saves a PNG when ``path`` is given; returns the matplotlib figure."""
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
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
        if not _interactive():
            plt.close(fig)
    return fig
