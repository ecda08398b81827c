"""Master-side update rules over one flat parameter vector; pure tensor math, no Ray, no models.

    from dana_ray.algorithms import ALGORITHMS, make_algorithm
    rule = make_algorithm("dana", params=theta0, num_workers=8, lr=0.1, momentum=0.9)
    x = rule.params_for(i)              # what worker i is sent
    rule.apply(i, grad, point=x)        # worker i's gradient, computed at x

A rule of one's own: subclass ``UpdateRule`` and decorate it with ``@register_rule("name")`` (see ``base``).
"""

from __future__ import annotations

import importlib

from torch import Tensor

from dana_ray.algorithms.base import (
    ALGORITHMS,
    LearningRate,
    RoundRule,
    UpdateRule,
    WorkerSide,
    is_single_worker,
    register_rule,
)

#: The modules of the rules that ship with dana_ray, imported in this order, which is the rules' order in the
#: registry (the CLI's lists, the report's tables and colours): the paper's rules first, then the later ones.
BUILTIN_MODULES = ("momentum", "slim", "delay_compensation", "gap_aware", "staleness", "local_steps")
for _module in BUILTIN_MODULES:
    importlib.import_module(f"dana_ray.algorithms.{_module}")

#: The rule a config that names none runs.
DEFAULT_ALGORITHM = "dana"
#: The synchronous rule the report compares every rule's time to target with, at the same N.
SYNCHRONOUS_REFERENCE = "ssgd"
#: The rules that ship with dana_ray (plug-ins add to ``ALGORITHMS``, not to this).
BUILTIN_ALGORITHMS: tuple[str, ...] = tuple(ALGORITHMS)


def make_algorithm(
    name: str,
    params: Tensor,
    num_workers: int,
    lr: LearningRate,
    momentum: float = 0.9,
    *,
    weight_decay: float = 0.0,
    fused: bool = False,
    **options,
) -> UpdateRule:
    """Build the rule registered as ``name`` with master parameters starting at ``params``; ``options`` are
    the rule's own (``ALGORITHMS[name].options``, e.g. ``dc_lambda``). ``weight_decay``: applied at the
    master (0: the workers add it to their gradients). ``fused``: run each update as one compiled pass."""
    return ALGORITHMS[name](params, num_workers, lr, momentum, weight_decay=weight_decay, fused=fused, **options)


__all__ = [
    "ALGORITHMS",
    "BUILTIN_ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "SYNCHRONOUS_REFERENCE",
    "LearningRate",
    "RoundRule",
    "UpdateRule",
    "WorkerSide",
    "is_single_worker",
    "make_algorithm",
    "register_rule",
]
