"""Gradients/s of the Ray executor against the number of gradient actors P, and the server's share of time.

    python benchmarks/scaling.py [--actors 1 2] [--num-workers 8] [--model resnet20] [--epochs 2]

One trial (DANA, N logical workers, round robin, the embedded digits) per P, each actor with one CPU (or
``--gpus-per-actor``); the second epoch's training throughput is reported (the first includes warm-up).
``server busy`` is the fraction of the stepping time the ParameterServer spent working rather than waiting
for gradients: near 100% the server is the bottleneck, and more actors cannot help. Also printed: the
speed-up over P = 1 and the same trial's throughput on the local executor (one process, no Ray) as the
reference.
"""

from __future__ import annotations

import argparse
import os
import sys

import ray

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks.tables import Record, add_json_option
from dana_ray.trial import run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--actors", nargs="+", type=int, default=[1, 2])
    p.add_argument("--num-workers", type=int, default=8)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--gpus-per-actor", type=float, default=0.0)
    add_json_option(p)
    args = p.parse_args(argv)
    record = Record("scaling")
    config = dict(
        algorithm="dana",
        num_workers=args.num_workers,
        model=args.model,
        dataset="digits",
        batch_size=args.batch_size,
        epochs=args.epochs,
        lr_decay_epochs=[],
        compute={"cpu_threads": 1, "cpus_per_actor": 1, "gpus_per_actor": args.gpus_per_actor},
        ray={"server_cpus": 0},
    )
    cpus = max(os.cpu_count() or 1, *args.actors)
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        local = run(config)["history"][-1]["gradients_per_s"]
        record.note(
            f"DANA N={args.num_workers}, {args.model}, batch {args.batch_size}, {cpus} CPUs; "
            f"local executor (1 process, 1 thread): {local:.1f} gradients/s"
        )
        table = record.table(
            "gradients/s on the Ray executor with P Worker actors",
            [("P", "d"), ("gradients/s", ".1f"), ("vs P=1", ".2f"), ("vs local", ".2f"), ("server busy", ".0%")],
        )
        first = None
        for actors in args.actors:
            last = run(dict(config, ray={"server_cpus": 0, "num_actors": actors}), executor="ray")["history"][-1]
            first = first or last["gradients_per_s"]
            rate = last["gradients_per_s"]
            table.add(actors, rate, rate / first, rate / local, last["server_busy"])
    finally:
        ray.shutdown()
    record.save(args.json, argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
