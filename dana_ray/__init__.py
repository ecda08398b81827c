"""dana_ray: DANA and the asynchronous SGD family (ASGD, NAG-ASGD, Multi-ASGD, SSGD, ...) as a Ray application.

This module is the public API: what a script, a notebook or a plug-in (a rule, data set, model or executor of
one's own) writes against. Everything else in the package may move between versions; the laws every rule
keeps are ``dana_ray.testing``. Names are imported on first use, so ``import dana_ray`` stays cheap (no
torch, no Ray)::

    import dana_ray
    result = dana_ray.run({"algorithm": "dana", "num_workers": 8, "epochs": 2})

The layers, each importing only those below it, are written down in ``docs/architecture.md`` and kept by an
import contract (``pyproject.toml``, ``[tool.importlinter]``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

#: Public name -> the module that defines it.
_WHERE = {
    # running a trial, and reading an experiment
    "run": "dana_ray.trial.run",
    "TrialConfig": "dana_ray.config.trial",
    "load_experiment": "dana_ray.report.load",
    "summarize": "dana_ray.report.tables",
    # update rules
    "UpdateRule": "dana_ray.algorithms.base",
    "RoundRule": "dana_ray.algorithms.base",
    "WorkerSide": "dana_ray.algorithms.base",
    "PerWorkerState": "dana_ray.algorithms.base",
    "GradientAt": "dana_ray.algorithms.base",
    "register_rule": "dana_ray.algorithms.base",
    "make_algorithm": "dana_ray.algorithms",
    "ALGORITHMS": "dana_ray.algorithms.base",
    # the in-place steps rules are written in (eager, or compiled with fused_updates)
    "scaled_add": "dana_ray.algorithms.ops",
    "scaled_addcmul": "dana_ray.algorithms.ops",
    "momentum_": "dana_ray.algorithms.ops",
    "descend_": "dana_ray.algorithms.ops",
    "heavy_ball_": "dana_ray.algorithms.ops",
    # arrival schedules
    "SCHEDULES": "dana_ray.schedules.arrival",
    "Schedule": "dana_ray.schedules.arrival",
    # data sets and models
    "DataSet": "dana_ray.data.sets",
    "DATASETS": "dana_ray.data.sets",
    "register_dataset": "dana_ray.data.sets",
    "array_dataset": "dana_ray.data.arrays",
    "MODELS": "dana_ray.models",
    "register_model": "dana_ray.models",
    # executors, and what an executor of one's own builds on
    "EXECUTORS": "dana_ray.config.executors",
    "ExecutorSpec": "dana_ray.config.executors",
    "register_executor": "dana_ray.config.executors",
    "Executor": "dana_ray.engine.loop",
    "MasterLoop": "dana_ray.engine.loop",
    "Dispatcher": "dana_ray.engine.dispatch",
    "Transport": "dana_ray.engine.dispatch",
    "run_steps": "dana_ray.engine.dispatch",
    "Job": "dana_ray.algorithms.jobs",
    "GradientResult": "dana_ray.engine.master",
    "build_master": "dana_ray.engine.build",
    "build_replica": "dana_ray.engine.build",
    # options a plug-in declares, and their checks
    "Option": "dana_ray.core.registry",
    "integer": "dana_ray.core.checks",
    "number": "dana_ray.core.checks",
    "numbers": "dana_ray.core.checks",
    "fraction": "dana_ray.core.checks",
    "boolean": "dana_ray.core.checks",
    "one_of": "dana_ray.core.checks",
    "optional": "dana_ray.core.checks",
    "custom_resources": "dana_ray.core.checks",
}

#: What ``from dana_ray import *`` takes: every public name (tests/test_tooling.py checks it against _WHERE).
__all__ = [
    "ALGORITHMS",
    "DATASETS",
    "EXECUTORS",
    "MODELS",
    "SCHEDULES",
    "DataSet",
    "Dispatcher",
    "Executor",
    "ExecutorSpec",
    "GradientAt",
    "GradientResult",
    "Job",
    "MasterLoop",
    "Option",
    "PerWorkerState",
    "RoundRule",
    "Schedule",
    "Transport",
    "TrialConfig",
    "UpdateRule",
    "WorkerSide",
    "__version__",
    "array_dataset",
    "boolean",
    "build_master",
    "build_replica",
    "custom_resources",
    "descend_",
    "fraction",
    "heavy_ball_",
    "integer",
    "load_experiment",
    "make_algorithm",
    "momentum_",
    "number",
    "numbers",
    "one_of",
    "optional",
    "register_dataset",
    "register_executor",
    "register_model",
    "register_rule",
    "run",
    "run_steps",
    "scaled_add",
    "scaled_addcmul",
    "summarize",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'dana_ray' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # what a type checker and an editor see; at run time, __getattr__ imports on first use
    from dana_ray.algorithms import make_algorithm
    from dana_ray.algorithms.base import (
        ALGORITHMS,
        GradientAt,
        PerWorkerState,
        RoundRule,
        UpdateRule,
        WorkerSide,
        register_rule,
    )
    from dana_ray.algorithms.jobs import Job
    from dana_ray.algorithms.ops import descend_, heavy_ball_, momentum_, scaled_add, scaled_addcmul
    from dana_ray.config.executors import EXECUTORS, ExecutorSpec, register_executor
    from dana_ray.config.trial import TrialConfig
    from dana_ray.core.checks import boolean, custom_resources, fraction, integer, number, numbers, one_of, optional
    from dana_ray.core.registry import Option
    from dana_ray.data.arrays import array_dataset
    from dana_ray.data.sets import DATASETS, DataSet, register_dataset
    from dana_ray.engine.build import build_master, build_replica
    from dana_ray.engine.dispatch import Dispatcher, Transport, run_steps
    from dana_ray.engine.loop import Executor, MasterLoop
    from dana_ray.engine.master import GradientResult
    from dana_ray.models import MODELS, register_model
    from dana_ray.report.load import load_experiment
    from dana_ray.report.tables import summarize
    from dana_ray.schedules.arrival import SCHEDULES, Schedule
    from dana_ray.trial.run import run
