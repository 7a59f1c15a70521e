"""Layers: thin objects that check arguments, own parameters and call kernels."""
from .base import Layer, register_layer
from .core import Activation, Dense, Dropout, Flatten, Reshape
from .input import Input, InputLayer, SymbolicTensor
