"""One generic registry of named things (strategies, fault models, scores, ...).

Example::

    STRATEGIES = Registry("strategy")

    @STRATEGIES.register("random")
    class RandomStrategy: ...

    STRATEGIES.get("randon")  # UnknownNameError: Unknown strategy `randon`; did you mean `random`? ...
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Callable, Generic, TypeVar

from faultsift.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object map with glob listing and did-you-mean errors."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name`` (names are unique)."""

        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} `{name}` is already registered.")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The object registered as ``name``; unknown names suggest the closest ones."""
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(unknown_name_message(self.kind, name, self.names())) from None

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a glob pattern, sorted."""
        return sorted(n for n in self._items if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._items


def unknown_name_message(kind: str, name: str, choices: list[str]) -> str:
    """One-line message for an unknown name, with suggestions and the valid choices."""
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(f'`{c}`' for c in close)}?" if close else ""
    return f"Unknown {kind} `{name}`.{hint} Choose from: {', '.join(choices)}."
