"""Named registries for models, datasets and tasks.

`@register_model("resnet20")` on a class or factory makes it available to configs as
`model.name: resnet20`. Registration happens at import: `garden.registry.import_all()` imports
every module that registers something, so `run.py --list` and config validation see them all.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

from garden.errors import ConfigError, unknown_choice


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable] = {}

    def register(self, name: str):
        def decorator(obj):
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj
        return decorator

    def get(self, name: str) -> Callable:
        if name not in self._entries:
            raise ConfigError(unknown_choice(self.kind, name, self._entries))
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


MODELS = Registry("model")
DATASETS = Registry("dataset")
TASKS = Registry("task")

register_model = MODELS.register
register_dataset = DATASETS.register
register_task = TASKS.register

# Packages whose modules register entries when imported.
_REGISTERING_PACKAGES = ("garden.nn", "garden.tasks", "garden.methods")


def import_all() -> None:
    """Import every module of the registering packages (idempotent)."""
    for package_name in _REGISTERING_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, package_name + "."):
            if not info.name.split(".")[-1].startswith("_"):
                importlib.import_module(info.name)
