"""Learning-rate schedules: callables of the step (the number of updates already applied).

Reachable as ``nj.optimizers.schedules``.  Any plain callable ``f(step) -> float`` is
also accepted as an optimizer's ``learning_rate``; these classes add a config so that a
saved model restores its schedule.

>>> lr = ExponentialDecay(0.1, decay_steps=100, decay_rate=0.5)
>>> lr(0), lr(100)
(0.1, 0.05)
"""
from __future__ import annotations

import math
import numbers

from .config import Configurable

__all__ = ["LearningRateSchedule", "ExponentialDecay", "CosineDecay", "serialize", "deserialize", "get"]


def _check_number(owner, name, value, *, low=None, low_open=False, high=None, high_open=False,
                  expected="a float"):
    """Refuse non-numbers, bools, NaN, infinity and values outside the given bounds."""
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise ValueError(f"{owner}: expected {expected}. Received: {name}={value!r}")
    return float(value)


class LearningRateSchedule(Configurable):
    """Base class: ``schedule(step) -> float`` with ``get_config`` / ``from_config``."""

    def __call__(self, step) -> float:
        raise NotImplementedError

    def get_config(self) -> dict:
        """``{"class_name": ..., <constructor arguments>}``; JSON-serializable."""
        raise NotImplementedError



class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (Keras 3).

    With ``staircase=True`` the exponent is ``floor(step / decay_steps)``, so the rate
    drops in steps every ``decay_steps`` updates.
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        owner = "ExponentialDecay"
        self.initial_learning_rate = _check_number(
            owner, "initial_learning_rate", initial_learning_rate, low=0, low_open=True,
            expected="a positive float")
        self.decay_steps = _check_number(owner, "decay_steps", decay_steps, low=0, low_open=True,
                                         expected="a positive number")
        self.decay_rate = _check_number(owner, "decay_rate", decay_rate, low=0, low_open=True,
                                        expected="a positive float")
        if not isinstance(staircase, bool):
            raise TypeError(f"{owner}: expected a bool. Received: staircase={staircase!r}")
        self.staircase = staircase

    def __call__(self, step) -> float:
        p = float(step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p

    def get_config(self) -> dict:
        return {"class_name": "ExponentialDecay", "initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase}


class CosineDecay(LearningRateSchedule):
    """Cosine decay from ``initial_learning_rate`` to ``alpha * initial_learning_rate``
    over ``decay_steps`` updates, constant afterwards (Keras 3).

    ``lr(step) = initial * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps)) + alpha)``
    with ``s = min(step, decay_steps)``.  With ``warmup_target`` the rate first rises
    linearly from ``initial_learning_rate`` to ``warmup_target`` over ``warmup_steps``
    updates and the cosine then decays from ``warmup_target``, as in Keras.
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, warmup_target=None,
                 warmup_steps=0):
        owner = "CosineDecay"
        self.initial_learning_rate = _check_number(
            owner, "initial_learning_rate", initial_learning_rate, low=0,
            expected="a non-negative float")
        self.decay_steps = _check_number(owner, "decay_steps", decay_steps, low=0, low_open=True,
                                         expected="a positive number")
        self.alpha = _check_number(owner, "alpha", alpha, low=0, high=1,
                                   expected="a float in [0, 1]")
        if warmup_target is not None:
            warmup_target = _check_number(owner, "warmup_target", warmup_target, low=0,
                                          low_open=True, expected="a positive float or None")
        self.warmup_target = warmup_target
        self.warmup_steps = _check_number(owner, "warmup_steps", warmup_steps, low=0,
                                          expected="a non-negative number")
        if self.initial_learning_rate == 0 and warmup_target is None:
            raise ValueError(f"{owner}: expected a positive float (or a warmup_target). "
                             f"Received: initial_learning_rate={initial_learning_rate!r}")

    def _decay(self, step, decay_from):
        fraction = step / self.decay_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * fraction))
        return decay_from * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step) -> float:
        step = float(step)
        if self.warmup_target is None:
            return self._decay(min(step, self.decay_steps), self.initial_learning_rate)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            delta = self.warmup_target - self.initial_learning_rate
            return self.initial_learning_rate + delta * (step / self.warmup_steps)
        return self._decay(step - self.warmup_steps, self.warmup_target)

    def get_config(self) -> dict:
        return {"class_name": "CosineDecay", "initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


_SCHEDULES = {"ExponentialDecay": ExponentialDecay, "CosineDecay": CosineDecay}


def serialize(schedule: LearningRateSchedule) -> dict:
    """The config of a schedule (``{"class_name": ..., ...}``)."""
    return schedule.get_config()


def deserialize(config: dict) -> LearningRateSchedule:
    """Rebuild a schedule from ``serialize``'s output; only the classes of this module."""
    if not isinstance(config, dict) or config.get("class_name") not in _SCHEDULES:
        raise ValueError(
            f"schedules.deserialize: expected a config with class_name one of {sorted(_SCHEDULES)}. "
            f"Received: config={config!r}")
    return _SCHEDULES[config["class_name"]].from_config(config)


def get(identifier):
    """A schedule from an instance or a config dict."""
    if isinstance(identifier, LearningRateSchedule):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise TypeError(f"schedules.get: expected a LearningRateSchedule or a config dict. "
                    f"Received: identifier={identifier!r}")
