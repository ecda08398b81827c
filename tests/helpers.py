"""What many tests share: a trial config written in a line, a tiny grid."""

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


#: A grid whose 4 trials (baseline and DANA, N = 2, 2 seeds, 2 epochs) take seconds on the Ray executor.
TINY = """
description: tiny test grid
trial:
  model: cnn
  model_options: {channels: 4}
  dataset: digits
  batch_size: 64
  epochs: 2
  lr: 0.05
  lr_decay_epochs: []
  compute: {cpu_threads: 1, cpus_per_actor: 0.25}
  ray: {num_actors: 1, server_cpus: 0.25}
grid:
  algorithm: [baseline, dana]
  num_workers: [2]
  schedule: [round-robin]
  seed: [0, 1]
tune:
  trial_cpus: 0.25
  max_failures: 1
  checkpoint_every: 1
"""
