"""When things happen: the arrival order of gradients and the time each job takes (``arrival``), the simulated
clock that runs on those times (``clock``), a real cluster's times recorded and replayed (``trace``), and the
learning rate over steps (``lr``)."""

from dana_ray.schedules.arrival import (
    ARRIVAL,
    SCHEDULES,
    BlockRandom,
    Gamma,
    RoundRobin,
    Schedule,
    Trace,
    make_schedule,
)
from dana_ray.schedules.clock import SimClock
from dana_ray.schedules.lr import WARMUP_STARTS, step_decay

__all__ = [
    "ARRIVAL",
    "SCHEDULES",
    "WARMUP_STARTS",
    "BlockRandom",
    "Gamma",
    "RoundRobin",
    "Schedule",
    "SimClock",
    "Trace",
    "make_schedule",
    "step_decay",
]
