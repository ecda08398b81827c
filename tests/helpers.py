"""What many tests share: a trial config written in a line."""

from __future__ import annotations

import copy
from typing import Any

from dana_ray.config import section_of, set_options


def trial_dict(base: dict[str, Any] | None = None, **keys: Any) -> dict[str, Any]:
    """A trial config dict: ``base`` (nested, as configs are written) with ``keys`` set over it, each a
    config field or a section's option by its name (``cpu_threads=1`` goes into ``compute``,
    ``num_actors=2`` into ``ray``), as the command lines' ``--set`` address them."""
    out = copy.deepcopy(base or {})
    set_options(out, {k: v for k, v in keys.items() if section_of(k) is not None})
    out.update({k: v for k, v in keys.items() if section_of(k) is None})
    return out
