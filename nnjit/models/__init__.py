"""Models: Sequential, the functional Model and the training engine."""
from .engine import BaseModel, TrainingError
from .functional import Model, MultiArray
from .sequential import Sequential
