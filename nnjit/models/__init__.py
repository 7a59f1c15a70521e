"""Models: Sequential and the training engine."""
from .engine import BaseModel, TrainingError
from .sequential import Sequential
