"""The one training loop's parts: the master's state, the model replica, and the executors that run them,
with no Ray (the Ray executor is ``dana_ray.engine.ray``, imported only when a trial runs on Ray)."""

from dana_ray.engine.build import build_master, build_replica, resolve_device
from dana_ray.engine.dispatch import Dispatcher, SlotLost, Transport, run_steps
from dana_ray.engine.flat import FlatModel
from dana_ray.engine.local import LocalExecutor
from dana_ray.engine.loop import Executor, MasterLoop, params_sha256
from dana_ray.engine.master import GradientResult, Job, Master
from dana_ray.engine.replica import Replica

__all__ = ["Dispatcher", "Executor", "FlatModel", "GradientResult", "Job", "LocalExecutor", "Master", "MasterLoop",
           "Replica", "SlotLost", "Transport", "build_master", "build_replica", "params_sha256", "resolve_device",
           "run_steps"]
