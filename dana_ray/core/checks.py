"""Input checks shared by every layer; each error names the field, the bad value and what is allowed.

Two forms: ``check_*(field, value, ...)`` raise at once, and the option checkers (``integer(...)``,
``number(...)``, ``one_of(...)``, ...) return a ``check(field, value)`` that plug-ins attach to the options
they declare (``core/registry.Option``), so every option value is checked before any work starts.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from typing import Any, TypeGuard

Check = Callable[[str, Any], None]


def is_number(value: object) -> TypeGuard[float]:
    """A finite int or float (bools excluded)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def is_integer(value: object) -> TypeGuard[int]:
    return not isinstance(value, bool) and isinstance(value, int)


def did_you_mean(value: object, allowed: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the allowed name closest to a mistyped ``value`` (``difflib``), else ""."""
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, [str(a) for a in allowed], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_name(field: str, value: object, allowed: Iterable[str]) -> None:
    allowed = list(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(
            f"{field}: unknown name {value!r}; allowed: {', '.join(allowed)}{did_you_mean(value, allowed)}"
        )


def check_options(field: str, owner: str, options: dict, allowed: Iterable[str]) -> None:
    allowed = list(allowed)
    if not isinstance(options, dict):
        raise ValueError(f"{field}: expected a mapping, got {options!r}")
    unknown = sorted(set(options) - set(allowed), key=str)
    if unknown:
        raise ValueError(
            f"{field}: unknown option {unknown[0]!r} for {owner!r}; allowed: {', '.join(allowed) or 'none'}"
            + did_you_mean(unknown[0], allowed)
        )


def check_bool(field: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{field}: expected true or false, got {value!r}")


def check_integer(field: str, value: object, minimum: int, maximum: int | None = None) -> None:
    if not is_integer(value) or value < minimum or (maximum is not None and value > maximum):
        bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{field}: expected an integer {bound}, got {value!r}")


def check_number(field: str, value: object, low: float, below: float | None = None, above: bool = False) -> None:
    """A finite number >= low (> low with ``above``), and < below where given."""
    if not is_number(value) or value < low or (above and value == low) or (below is not None and value >= below):
        first = f"> {low}" if above else f">= {low}"
        bound = (f"in ({low}, {below})" if above else f"in [{low}, {below})") if below is not None else first
        raise ValueError(f"{field}: expected a finite number {bound}, got {value!r}")


# -- option checkers: check(field, value) ----------------------------------------------------------------------


def integer(minimum: int, maximum: int | None = None) -> Check:
    return lambda field, value: check_integer(field, value, minimum, maximum)


def number(low: float, below: float | None = None, above: bool = False) -> Check:
    return lambda field, value: check_number(field, value, low, below, above)


def fraction() -> Check:
    """A number in [0, 1]."""

    def check(field: str, value: object) -> None:
        if not is_number(value) or not 0 <= value <= 1:
            raise ValueError(f"{field}: expected a number in [0, 1], got {value!r}")

    return check


def boolean() -> Check:
    return check_bool


def text() -> Check:
    """A non-empty string."""

    def check(field: str, value: object) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError(f"{field}: expected a non-empty string, got {value!r}")

    return check


def one_of(*names: str) -> Check:
    return lambda field, value: check_name(field, value, names)


def numbers(low: float, above: bool = False) -> Check:
    """A list of finite numbers, each >= low (> low with ``above``)."""

    def check(field: str, value: object) -> None:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{field}: expected a list of numbers, got {value!r}")
        for k, item in enumerate(value):
            check_number(f"{field}[{k}]", item, low, above=above)

    return check


#: Resources Ray reserves through their own settings (``num_cpus``, ``num_gpus``, ...), not by name.
BUILTIN_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")


def custom_resources() -> Check:
    """A mapping of a cluster's custom resource names (``resources:`` of a node type) to amounts > 0."""

    def check(field: str, value: object) -> None:
        if not isinstance(value, dict):
            raise ValueError(
                f"{field}: expected a mapping of custom resource names to amounts, e.g. {{server: 1}}, got {value!r}"
            )
        for name, amount in value.items():
            if not isinstance(name, str) or not name or name in BUILTIN_RESOURCES:
                raise ValueError(
                    f"{field}: expected a custom resource name (not one of "
                    f"{', '.join(BUILTIN_RESOURCES)}, which have their own settings), got {name!r}"
                )
            check_number(f"{field}.{name}", amount, 0.0, above=True)

    return check


def resource_words(resources: dict[str, float]) -> str:
    """Custom resources (``custom_resources``) in words, as added to a reservation's: `` + 1 server``."""
    return "".join(f" + {amount:g} {name}" for name, amount in resources.items())


def optional(check: Check) -> Check:
    """``check``, or None (the option left unset)."""
    return lambda field, value: None if value is None else check(field, value)
