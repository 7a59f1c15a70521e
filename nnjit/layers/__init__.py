"""Layers: thin objects that check arguments, own parameters and call kernels."""
from .attention import MultiHeadAttention, PositionalEmbedding, TransformerEncoder
from .base import Layer, register_layer
from .conv import Conv2D
from .core import Activation, Dense, Dropout, Flatten, Reshape
from .embedding import Embedding
from .input import Input, InputLayer, SymbolicTensor
from .merge import Add, Concatenate, Multiply
from .normalization import BatchNormalization, LayerNormalization
from .pooling import AvgPool2D, GlobalAvgPool1D, GlobalAvgPool2D, MaxPool2D
from .recurrent import GRU, LSTM, Bidirectional, SimpleRNN
