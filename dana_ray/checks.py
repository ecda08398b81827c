"""Input checks shared by every layer; each error names the field, the bad value and what is allowed."""

from __future__ import annotations

import math
from typing import Iterable


def is_number(value: object) -> bool:
    """A finite int or float (bools excluded)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def check_name(field: str, value: object, allowed: Iterable[str]) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{field}: unknown name {value!r}; allowed: {', '.join(allowed)}")


def check_options(field: str, owner: str, options: dict, allowed: Iterable[str]) -> None:
    allowed = list(allowed)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{field}: unknown option {unknown[0]!r} for {owner!r}; "
                         f"allowed: {', '.join(allowed) or 'none'}")


def check_bool(field: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{field}: expected true or false, got {value!r}")


def check_integer(field: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{field}: expected an integer >= {minimum}, got {value!r}")


def check_number(field: str, value: object, low: float, below: float | None = None) -> None:
    """A finite number >= low (and < below, where given)."""
    if not is_number(value) or value < low or (below is not None and value >= below):
        bound = f"in [{low}, {below})" if below is not None else f">= {low}"
        raise ValueError(f"{field}: expected a finite number {bound}, got {value!r}")
