"""A trial's settings: what is trained (``TrialConfig``'s fields) and how it runs (sections, executors)."""

from dana_ray.config.executors import (
    EXECUTORS,
    RESERVATIONS,
    ExecutorSpec,
    RayLayout,
    check_supports,
    need,
    ray_layout,
    register_executor,
)
from dana_ray.config.sections import (
    SECTIONS,
    Section,
    all_options,
    check_nested,
    get_option,
    given_options,
    register_section,
    section_of,
    set_options,
)
from dana_ray.config.trial import AXIS_CHECKS, TrialConfig

__all__ = [
    "AXIS_CHECKS",
    "EXECUTORS",
    "RESERVATIONS",
    "SECTIONS",
    "ExecutorSpec",
    "RayLayout",
    "Section",
    "TrialConfig",
    "all_options",
    "check_nested",
    "check_supports",
    "get_option",
    "given_options",
    "need",
    "ray_layout",
    "register_executor",
    "register_section",
    "section_of",
    "set_options",
]
