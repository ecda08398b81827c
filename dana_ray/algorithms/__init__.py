"""Master-side update rules over one flat parameter vector; pure tensor math, no Ray, no models.

    from dana_ray.algorithms import ALGORITHMS, make_algorithm
    rule = make_algorithm("dana", params=theta0, num_workers=8, lr=0.1, momentum=0.9)
    x = rule.params_for(i)      # what worker i is sent
    rule.apply(i, grad)         # worker i's gradient, computed at x
"""

from __future__ import annotations

from torch import Tensor

from dana_ray.algorithms.base import LearningRate, UpdateRule
from dana_ray.algorithms.delay_compensation import DANADC, DCASGD
from dana_ray.algorithms.momentum import ASGD, DANA, NAGASGD, Baseline, MultiASGD
from dana_ray.algorithms.slim import DANASlim, WorkerMomentum
from dana_ray.algorithms.ssgd import SSGD
from dana_ray.checks import check_name, check_options

#: Every rule by the exact name configs, the CLI and the sweep use.
ALGORITHMS: dict[str, type[UpdateRule]] = {
    rule.name: rule for rule in (Baseline, SSGD, ASGD, NAGASGD, MultiASGD, DANA, DANASlim, DANADC, DCASGD)
}


def make_algorithm(name: str, params: Tensor, num_workers: int, lr: LearningRate,
                   momentum: float = 0.9, *, fused: bool = False, **options) -> UpdateRule:
    """Build the rule registered as ``name`` with master parameters starting at ``params``; ``options`` are
    the rule's own keyword arguments (``ALGORITHMS[name].options``, e.g. ``dc_lambda``). ``fused``: run each
    update as one compiled pass (``dana_ray.algorithms.fused``)."""
    check_name("algorithm", name, ALGORITHMS)
    check_options("algorithm_options", name, options, ALGORITHMS[name].options)
    return ALGORITHMS[name](params, num_workers, lr, momentum, fused=fused, **options)


__all__ = ["ALGORITHMS", "LearningRate", "UpdateRule", "WorkerMomentum", "make_algorithm"]
