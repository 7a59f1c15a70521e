"""nj.plot.plot_model draws a model's graph."""
import pytest

import nnjit as nj
from nnjit.layers import Add, Dense

pytest.importorskip("matplotlib")


def test_plot_model_functional_and_sequential(tmp_path):
    inp = nj.Input((4,))
    a = Dense(3, name="left")(inp)
    b = Dense(3, name="right")(inp)
    model = nj.Model(inp, Dense(2, name="head")(Add(name="join")([a, b])))
    fig = nj.plot.plot_model(model, tmp_path / "graph.png")
    texts = [t.get_text() for t in fig.axes[0].texts if type(t).__name__ == "Text"]
    assert any(t.startswith("join\nAdd") for t in texts) and len(texts) == 5
    arrows = [c for c in fig.axes[0].get_children() if type(c).__name__ == "Annotation"]
    assert len(arrows) == 5  # input->left, input->right, left->join, right->join, join->head
    assert (tmp_path / "graph.png").read_bytes()[:4] == b"\x89PNG"
    seq = nj.Sequential([nj.Input((4,)), Dense(3), Dense(2)])
    fig = nj.plot.plot_model(seq, tmp_path / "seq.png")
    assert len([t for t in fig.axes[0].texts if type(t).__name__ == "Text"]) == 3
