"""Name -> constructor registries.

Every pluggable piece (models, datasets, solvers, objectives, output metrics, baselines) is
looked up by the name that ``params.yaml`` uses. An unknown name is an error that lists the
known ones, so a typo never silently selects something else.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that is not registered; the message lists the registered names."""

    def __str__(self) -> str:  # KeyError quotes its argument; show the message plainly
        return str(self.args[0])


class Registry(Generic[T]):
    """A named collection of constructors: ``@REG.register("name")`` then ``REG.get("name")``."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._entries))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
