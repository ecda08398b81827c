"""Live metrics of running trials, exported to Ray's metrics agent: Prometheus, Grafana and the dashboard.

``RayMetrics`` is a telemetry sink (``dana_ray.engine.telemetry``): the ParameterServer of a Ray-executor
trial and, under ``tune.executor: local``, the Tune trial process itself hand it a ``Sample`` about once a
second and every epoch's row. It records them with ``ray.util.metrics``; each node's metrics agent serves
them on the node's metrics export port with Ray's ``ray_`` prefix (a counter also gets ``_total``). Every
series carries ``trial`` (``<experiment>/<trial>``) and ``executor`` (``ray`` or ``local``):

==================================  =========  ==========================================================
name (as Prometheus sees it)        kind       what
==================================  =========  ==========================================================
ray_dana_gradients_applied_total    counter    gradients applied, per logical ``worker`` (sum: the trial's)
ray_dana_updates_per_second         gauge      gradients applied per second over the last sample
ray_dana_gradient_delay             histogram  each applied gradient's delay (updates since it was sent)
ray_dana_server_busy_fraction       gauge      share of the last sample's stepping the server worked rather
                                               than waited for gradients (local: than computed them)
ray_dana_actor_restarts_total       counter    gradient actors replaced after dying
ray_dana_bytes_moved_total          counter    bytes of points sent and gradients received, per
                                               ``direction`` (``to_workers``, ``from_workers``); 0 locally
ray_dana_test_error                 gauge      the last finished epoch's test error (%)
ray_dana_step                       gauge      the master's step at the last finished epoch
==================================  =========  ==========================================================

``dana_ray/monitoring/grafana/dana_dashboard.json`` plots them per trial; ``python -m dana_ray.monitoring``
starts Prometheus and Grafana on the head node with Ray's own configuration and this dashboard.
"""

from __future__ import annotations

from typing import Any

from dana_ray.engine.telemetry import Sample

#: The delay histogram's bucket bounds (a bucket counts the delays <= its bound; Ray wants them positive, so
#: ``le="0.5"`` counts delay 0, ``le="1.5"`` delays up to 1, ``le="4.5"`` up to 4, ...).
DELAY_BOUNDS = [0.5, 1.5, 2.5, 4.5, 8.5, 16.5, 32.5, 64.5, 128.5, 256.5, 512.5, 1024.5]
#: Every exported name, as Prometheus sees it (the dashboard and the tests check against this).
EXPORTED = (
    "ray_dana_gradients_applied_total",
    "ray_dana_updates_per_second",
    "ray_dana_gradient_delay",
    "ray_dana_server_busy_fraction",
    "ray_dana_actor_restarts_total",
    "ray_dana_bytes_moved_total",
    "ray_dana_test_error",
    "ray_dana_step",
)

_instruments: dict[str, Any] = {}


def _made() -> dict[str, Any]:
    """The metric objects, made once per process (a pooled process serves many trials)."""
    if not _instruments:
        from ray.util import metrics

        keys = ("trial", "executor")
        _instruments.update(
            gradients=metrics.Counter(
                "dana_gradients_applied", "gradients applied, per logical worker", tag_keys=(*keys, "worker")
            ),
            updates=metrics.Gauge(
                "dana_updates_per_second", "gradients applied per second (last sample)", tag_keys=keys
            ),
            delay=metrics.Histogram(
                "dana_gradient_delay",
                "delay of each applied gradient (updates since sent)",
                boundaries=DELAY_BOUNDS,
                tag_keys=keys,
            ),
            busy=metrics.Gauge(
                "dana_server_busy_fraction", "share of stepping the server worked (last sample)", tag_keys=keys
            ),
            restarts=metrics.Counter("dana_actor_restarts", "gradient actors replaced after dying", tag_keys=keys),
            bytes=metrics.Counter(
                "dana_bytes_moved", "bytes of points and gradients moved", tag_keys=(*keys, "direction")
            ),
            test_error=metrics.Gauge("dana_test_error", "test error (%) at the last finished epoch", tag_keys=keys),
            step=metrics.Gauge("dana_step", "the master's step at the last finished epoch", tag_keys=keys),
        )
    return _instruments


class RayMetrics:
    """A telemetry sink recording one trial's samples with ``ray.util.metrics`` (call in a Ray process)."""

    def __init__(self, trial: str, executor: str) -> None:
        self.tags = {"trial": trial, "executor": executor}
        self.m = _made()  # a counter's series appears with its first increment (Ray refuses inc(0))

    def sample(self, sample: Sample) -> None:
        m, tags = self.m, self.tags
        for worker, count in sample.gradients.items():
            m["gradients"].inc(count, tags=dict(tags, worker=str(worker)))
        for delay, count in sample.delays.items():
            for _ in range(count):  # the API observes one value at a time (about 3 us each here)
                m["delay"].observe(delay, tags=tags)
        if sample.seconds > 0:
            m["updates"].set(sample.applied / sample.seconds, tags=tags)
        if sample.stepping_s > 0:
            m["busy"].set(max(0.0, min(1.0, sample.busy_s / sample.stepping_s)), tags=tags)
        if sample.actor_restarts:
            m["restarts"].inc(sample.actor_restarts, tags=tags)
        for direction, moved in (("to_workers", sample.bytes_to_workers), ("from_workers", sample.bytes_from_workers)):
            if moved:
                m["bytes"].inc(moved, tags=dict(tags, direction=direction))

    def epoch(self, row: dict[str, Any]) -> None:
        self.m["test_error"].set(float(row["test_error"]), tags=self.tags)
        self.m["step"].set(float(row["step"]), tags=self.tags)
