"""nnjit: neural networks on the CPU with Numba-compiled, fused, parallel kernels.

>>> import nnjit as nj
>>> (x, y), (x_test, y_test) = nj.datasets.load_digits()
>>> model = nj.Sequential([nj.Input((64,)), nj.layers.Dense(128, activation="relu"),
...                        nj.layers.Dense(10, activation="softmax")])
>>> model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
>>> history = model.fit(x, y, epochs=10)
"""
__version__ = "0.1.0"

from . import runtime  # first: chooses the kernel cache and limits BLAS threads before any kernel loads
from .runtime import floatx, get_num_threads, set_floatx, set_num_threads, set_seed
from . import callbacks, datasets, initializers, io, layers, losses, metrics, models, optimizers, plot, regularizers, textgen
from .gradcheck import gradcheck
from .layers import Input
from .models import Model, Sequential
from .models.saving import load_model

__all__ = [
    "Input", "Model", "Sequential", "callbacks", "datasets", "floatx", "get_num_threads", "gradcheck",
    "initializers", "io", "layers", "load_model", "losses", "metrics", "models", "optimizers", "plot", "regularizers",
    "runtime", "set_floatx", "set_num_threads", "set_seed", "textgen",
]
