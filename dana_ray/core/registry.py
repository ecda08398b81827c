"""Registries of plug-ins (update rules, data sets, models, schedules) by the exact names configs use, and the
options each plug-in declares.

A plug-in declares its options as ``{name: Option(default, check)}``; ``resolve_options`` refuses unknown
names and checks every value before any work starts, so a bad value in a grid stops the sweep before Ray
does, with one line naming the field. Registering a name twice is refused unless it is the same object
(a module imported again).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from dana_ray.core.checks import Check, check_name, check_options

T = TypeVar("T")


@dataclass(frozen=True)
class Option:
    """One option of a plug-in: its default (used when a config leaves it out) and its check."""

    default: Any = None
    check: Check | None = None
    help: str = ""


def resolve_options(field: str, owner: str, given: dict, spec: dict[str, Option]) -> dict[str, Any]:
    """``given`` checked against ``spec`` (unknown names, each value), with the defaults filled in."""
    check_options(field, owner, given, spec)
    for name, value in given.items():
        check = spec[name].check
        if check is not None:
            check(f"{field}.{name}", value)
    return {name: given.get(name, option.default) for name, option in spec.items()}


class Registry(Generic[T]):
    """Name -> entry, in registration order; ``kind`` names the config field in error messages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind}: a plug-in's name must be a non-empty string, got {name!r}")
        known = self._entries.get(name)
        if known is not None and known is not entry and _origin(known) != _origin(entry):
            raise ValueError(f"{self.kind}: {name!r} is already registered (by {_origin(known)}); choose another name")
        self._entries[name] = entry
        return entry

    def __call__(self, name: str) -> Callable[[T], T]:
        """A decorator: ``@REGISTRY("name")`` registers what it decorates under ``name``."""
        return lambda entry: self.register(name, entry)

    def __getitem__(self, name: str) -> T:
        check_name(self.kind, name, self._entries)
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def items(self):
        return list(self._entries.items())

    def names(self) -> list[str]:
        return list(self._entries)


def _origin(entry: Any) -> str:
    target = getattr(entry, "fn", entry)  # a spec wrapping a function names the function
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', type(target).__name__)}"
