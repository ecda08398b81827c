"""The one training loop's parts: the master's state, the gradient worker, and the executors that run them.

The Ray executor lives in ``dana_ray.engine.ray_executor`` and is imported only when asked for.
"""

from dana_ray.engine.build import build_master, build_worker, resolve_device
from dana_ray.engine.executor import Executor, MasterLoop, params_sha256
from dana_ray.engine.flat import FlatModel
from dana_ray.engine.local import LocalExecutor
from dana_ray.engine.master import GradientResult, Job, Master
from dana_ray.engine.worker import GradientWorker

__all__ = ["Executor", "FlatModel", "GradientResult", "GradientWorker", "Job", "LocalExecutor", "Master",
           "MasterLoop", "build_master", "build_worker", "params_sha256", "resolve_device"]
