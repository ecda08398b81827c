"""Many logical workers on one device: gradients/s computed together (vmap) vs one by one, same run.

    python benchmarks/simulate.py [--model resnet20] [--batch-size 128] [--workers 4 16 32] [--device cpu|cuda]
                                  [--json PATH]

N logical workers each have a job ready (their own point and their own batch, as after a round of the
round-robin schedule); one model replica computes all N gradients either one by one (``FlatModel.gradient``,
what ``vmap_jobs: 1`` does) or together (``FlatModel.gradients``: ``torch.func.vmap`` over the points, each
with its own BatchNorm statistics, what ``vmap_jobs: N`` does). Printed: gradients/s both ways and their
ratio, plus the largest relative difference between the two ways' gradients (float rounding).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks.tables import Record, add_json_option
from dana_ray.engine.flat import FlatModel
from dana_ray.models import make_model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up (kernel selection, allocator)
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", nargs="+", type=int, default=[4, 16, 32])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=1, help="timed repeats after one warm-up (best is kept)")
    add_json_option(p)
    args = p.parse_args(argv)
    record = Record("simulate")
    device = torch.device(args.device)
    torch.manual_seed(0)
    flat = FlatModel(make_model(args.model, 10, 3), device)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    record.note(f"{args.model} ({flat.num_params:,} parameters), batch {args.batch_size} per worker, on {where}")
    table = record.table(
        "gradients/s of N logical workers on one device: one by one, and together (vmap)",
        [("N", "d"), ("one by one grad/s", ".1f"), ("vmap grad/s", ".1f"), ("ratio", ".2f"), ("max rel diff", ".1e")],
    )
    for n in args.workers:
        points = flat.params + 0.01 * torch.randn(n, flat.num_params, device=device)
        x = torch.randn(n, args.batch_size, 3, 32, 32, device=device)
        y = torch.randint(0, 10, (n, args.batch_size), device=device)
        one_by_one = seconds(
            lambda: [flat.gradient(points[k], x[k], y[k], 5e-4) for k in range(n)], device, args.repeats
        )
        batched = seconds(lambda: flat.gradients(points, x, y, 5e-4), device, args.repeats)
        grads = flat.gradients(points, x, y, 5e-4)[0]
        diff = max(
            float(
                torch.linalg.vector_norm(grads[k] - flat.gradient(points[k], x[k], y[k], 5e-4)[0])
                / torch.linalg.vector_norm(grads[k])
            )
            for k in range(n)
        )
        table.add(n, n / one_by_one, n / batched, one_by_one / batched, diff)
    record.save(args.json, argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
