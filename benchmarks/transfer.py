"""Bytes copied per server update on the Ray path, against the minimum (one send, one receive of d floats).

    python benchmarks/transfer.py [--sizes 0.27 2.7 25.6]

Runs the Ray executor's own transfer code (``ParameterServer.send`` puts a point, ``Worker.compute``
receives it, the replica computes at it with ``FlatModel.load_point`` and returns a gradient through
``Worker._to_host``, the server reads it with ``as_tensor``) with the model's arithmetic left out (the
replica is a FlatModel over one d-float parameter), and checks at every hop whether memory is shared or
copied:

  server: job point -> numpy                  view (shares memory)        0
  server: ray.put(point)                      copy into the object store  4d bytes
  actor:  received point -> torch             view of the store's buffer  0
  actor:  the replica computes at the point   its parameters are views    0
  actor:  gradient -> numpy (CPU)             view                        0
  actor:  return: Ray writes it to the store  copy                        4d bytes
  server: ray.get(gradient) -> torch          view of the store's buffer  0

Printed per d: bytes copied per update as counted (and checked) above over the minimum 2 x 4d, and the
measured time per update over the time of one 4d-byte memcpy (the effective number of copies, Ray's
per-call overhead included). On a GPU the actor adds the host-to-device copy of the point (the receive
proper) and the device-to-host copy of the gradient into a pinned buffer.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import ray
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks.tables import Record, add_json_option
from dana_ray.engine.flat import FlatModel
from dana_ray.engine.ray.actors import Worker, as_tensor


class OneVector(nn.Module):
    """A model whose parameters are one d-float vector (so the replica's buffers have ResNet sizes)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(d))


class TransferOnly(Worker):
    """The Worker actor's compute path with the model's arithmetic left out."""

    def __init__(self, d: int) -> None:
        self.device, self._pinned = torch.device("cpu"), {}
        self.model = FlatModel(OneVector(d))
        self.grad, self.bn_stats = torch.full((d,), 1e-3), torch.zeros(64)
        self.seen: dict[str, bool] = {}

    def compute(self, worker: int, batch: int, point: np.ndarray, lr: float = 0.0):
        received = as_tensor(point)
        self.seen["point arrives as a view of the object store"] = (
            not point.flags.writeable and received.data_ptr() == point.ctypes.data
        )
        at = self.model.load_point(received)  # what FlatModel.gradient does first
        self.seen["load copies"] = (
            self.model.module.weight.data_ptr() != received.data_ptr() or at.data_ptr() != received.data_ptr()
        )
        grad, bn_stats = self._to_host([self.grad, self.bn_stats])
        self.seen["gradient leaves as a view of the replica's buffer"] = grad.ctypes.data == self.grad.data_ptr()
        return grad, bn_stats, 0.0

    def checks(self) -> dict[str, bool]:
        return self.seen


def seconds_per_call(fn, repeats: int) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", type=float, default=[0.27, 2.7, 25.6], help="d in millions")
    p.add_argument("--repeats", type=int, default=20)
    add_json_option(p)
    args = p.parse_args(argv)
    record = Record("transfer")
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=max(1 << 30, int(12 * 4 * max(args.sizes) * 1e6)),
    )
    try:
        table = record.table(
            "one update's transfers: bytes copied over the minimum, time over a memcpy of the same bytes",
            [("d (M)", "g"), ("copied / minimum", ".2f"), ("time / memcpy(4d)", ".1f"), ("checks", "<0")],
        )
        for size in args.sizes:
            d = int(size * 1e6)
            actor = ray.remote(TransferOnly).options(num_cpus=1).remote(d)
            point = torch.randn(d)

            copies: dict[str, bool] = {}

            def one_update():
                array = point.numpy()  # what ParameterServer.send does
                copies["point -> numpy"] = not np.shares_memory(array, point.numpy())
                stored = ray.put(array)
                copies["ray.put"] = not np.shares_memory(ray.get(stored), array)
                grad = ray.get(actor.compute.remote(0, 0, stored))[0]
                received = as_tensor(grad)  # what ParameterServer._result does
                # a read-only array is the object store's memory: the actor's buffer was copied there
                copies["gradient -> object store"] = not grad.flags.writeable
                copies["ray.get -> torch"] = received.data_ptr() != grad.ctypes.data
                return received

            per_update = seconds_per_call(one_update, args.repeats)
            src, dst = np.random.rand(d).astype(np.float32), np.empty(d, dtype=np.float32)
            memcpy = seconds_per_call(lambda: np.copyto(dst, src), args.repeats)
            seen = ray.get(actor.checks.remote())
            copies["replica load"] = seen.pop("load copies")
            copied = sum(copies.values())  # hops that copied 4d bytes
            views = all(seen.values())
            checks = f"{copied} copies: " + ", ".join(k for k, v in copies.items() if v) if views else f"FAILED: {seen}"
            table.add(size, copied / 2, per_update / memcpy, checks)
            ray.kill(actor)
    finally:
        ray.shutdown()
    record.save(args.json, argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
