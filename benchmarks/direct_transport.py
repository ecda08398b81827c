"""Ray Direct Transport (gloo) against the object store for one gradient's trip between two actors, in one run.

A sender actor makes a float32 gradient of d elements (a fresh tensor each call, as a gradient actor does) and
a receiver actor (the server's place) reads it and answers with its sum: the trip a gradient makes from a
Worker to the ParameterServer. Three ways, interleaved, each call waited for in turn (``--in-flight`` > 1
keeps that many trips going):

- object store: the sender returns a numpy array (Ray copies it into the store; the receiver maps it);
- object store, torch: the sender returns a torch tensor (pickled: one more copy on each side);
- RDT gloo: ``@ray.method(tensor_transport="gloo")`` on the sender, both actors in one gloo collective group
  (``ray.experimental.collective.create_collective_group``, made by the driver, which submits every call, as
  RDT requires); the tensor stays in the sender until the receiver's call asks, then goes over gloo.

Printed: trips/s (median of ``--repeats``), the ratio to the object store's, and whether every sum was the
same (exactness: the receiver saw the same bytes); a row per d, number in flight and way.

    python benchmarks/direct_transport.py [--dims 262144 26214400] [--in-flight 1 4] [--trips 30] [--repeats 3]
                                          [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import ray
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks.tables import Record, add_json_option


@ray.remote
class Sender:
    def __init__(self, dim: int) -> None:
        self.base = torch.randn(dim, generator=torch.Generator().manual_seed(0))

    def _fresh(self, k: int) -> torch.Tensor:
        return self.base * (1.0 + k * 1e-3)

    def as_numpy(self, k: int) -> np.ndarray:
        return self._fresh(k).numpy()

    def as_tensor(self, k: int) -> torch.Tensor:
        return self._fresh(k)

    @ray.method(tensor_transport="gloo")
    def over_gloo(self, k: int) -> torch.Tensor:
        return self._fresh(k)


@ray.remote(enable_tensor_transport=True)  # its receiving thread (without it the first transfer hangs 60 s:
class Receiver:  # ray-project/ray#66264)
    def take(self, gradient) -> float:
        return float(torch.as_tensor(gradient).double().sum())


def trips_per_s(method, receiver, trips: int, in_flight: int) -> tuple[float, list[float]]:
    sums, pending = [], []
    for k in range(3):  # warm-up
        ray.get(receiver.take.remote(method.remote(k)))
    started = time.perf_counter()
    for k in range(trips):
        pending.append(receiver.take.remote(method.remote(k)))
        if len(pending) >= in_flight:
            sums.append(ray.get(pending.pop(0)))
    sums += ray.get(pending)
    return trips / (time.perf_counter() - started), sums


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[262_144, 26_214_400])  # 1 MB, 100 MB
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1], help="trips kept going, a row each")
    parser.add_argument("--trips", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    add_json_option(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.experimental.collective import create_collective_group

    record = Record("direct_transport")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        record.note(f"{args.trips} trips a measurement, the ways interleaved, median of {args.repeats}")
        table = record.table(
            "one gradient's trip from a sender actor to a receiver actor",
            [("d", ",d"), ("MB", ".1f"), ("in flight", "d"), ("way", "<20"), ("trips/s", ".1f"),
             ("of store", ".2f"), ("same sums", "<0")],
        )  # fmt: skip
        for dim in args.dims:
            sender, receiver = Sender.options(num_cpus=0.5).remote(dim), Receiver.options(num_cpus=0.5).remote()
            create_collective_group([sender, receiver], backend="torch_gloo")
            ways = {
                "object store (numpy)": sender.as_numpy,
                "object store (torch)": sender.as_tensor,
                "RDT gloo": sender.over_gloo,
            }
            for in_flight in args.in_flight:
                rates: dict[str, list[float]] = {way: [] for way in ways}
                sums: dict[str, list[float]] = {}
                for _ in range(args.repeats):
                    for way, method in ways.items():
                        rate, sums[way] = trips_per_s(method, receiver, args.trips, in_flight)
                        rates[way].append(rate)
                store = float(np.median(rates["object store (numpy)"]))
                for way in ways:
                    rate = float(np.median(rates[way]))
                    same = "yes" if sums[way] == sums["object store (numpy)"] else "NO"
                    table.add(dim, dim * 4 / 1e6, in_flight, way, rate, rate / store, same)
            for actor in (sender, receiver):
                ray.kill(actor)
    finally:
        ray.shutdown()
    record.save(args.json, argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
