"""The one training loop's parts: the master's state, the gradient worker, and the executors that run them."""

from dana_ray.engine.flat import FlatModel
from dana_ray.engine.local import LocalExecutor
from dana_ray.engine.master import GradientResult, Job, Master
from dana_ray.engine.worker import GradientWorker

__all__ = ["FlatModel", "GradientResult", "GradientWorker", "Job", "LocalExecutor", "Master"]
