"""The shared behaviour of objects described by a flat config dict (schedules, regularizers)."""
from __future__ import annotations


class Configurable:
    """Subclasses implement ``get_config() -> {"class_name": ..., <constructor arguments>}``;
    this gives them ``from_config``, a readable ``repr`` and equality by config."""

    def get_config(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        config.pop("class_name", None)
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "class_name")
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    __hash__ = object.__hash__
