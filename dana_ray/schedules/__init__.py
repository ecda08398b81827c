"""When things happen: the arrival order of gradients (``arrival``) and the learning rate over steps (``lr``)."""

from dana_ray.schedules.arrival import ARRIVAL, SCHEDULES, BlockRandom, Gamma, RoundRobin, Schedule, make_schedule
from dana_ray.schedules.lr import WARMUP_STARTS, step_decay

__all__ = [
    "ARRIVAL",
    "SCHEDULES",
    "WARMUP_STARTS",
    "BlockRandom",
    "Gamma",
    "RoundRobin",
    "Schedule",
    "make_schedule",
    "step_decay",
]
