"""Server update cost of every rule against a memory-bandwidth reference, measured in the same run.

    python benchmarks/server_update.py [--sizes 0.27 2.7 25.6] [--workers 1 8 64] [--device cpu|cuda]
                                       [--rules ...] [--eager-only]

For each rule, d (millions of float32: ResNet-20, WRN-16-4, ResNet-50) and N, times one server update:
``rule.apply(i, g)`` followed by ``rule.params_for(i, out=...)`` into worker i's recycled point buffer (what
the ParameterServer's master does per gradient), cycling i over the N workers. Each rule is timed twice:
eager, and with ``fused=True`` (the same update function compiled into one pass, ``algorithms/ops.py``).
Every registered rule is benchmarked, plug-ins included (``--plugins``).

The reference is plain fused multiply-adds ``a <- a + s*b`` over d floats (3 vectors moved each), moving as
many d-vectors as the rule's equations read and write once each (``vectors_per_update``, which each rule
declares from its docstring's equations, plus ``vectors_per_round`` / N for a synchronous rule; a rule that
declares none is measured: the d-vectors its eager update's ops take and return): a perfectly fused kernel
would take that long. Cost and reference are timed in alternating
batches, and the ratio printed is the median over 5 rounds (this shared machine drifts by 2x within a
minute). Printed: cost / reference per N, and (N=64 ratio) / (N=1 ratio): flat in N means O(d) per update.
At small d, N = 1 keeps its state in cache while 64 workers' momenta cannot be, so flatness is only a test
of O(d) where even N = 1 streams from memory. A cell whose state would not fit in 60% of memory prints nan.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks.tables import Record, add_json_option
from dana_ray.algorithms import ALGORITHMS, make_algorithm
from dana_ray.core.plugins import load_plugins
from dana_ray.engine.master import Master
from dana_ray.testing import update_traffic, workers_for


def traffic(name: str, n: int) -> float:
    """d-vectors one gradient's update moves (the fused minimum) with N workers."""
    rule = ALGORITHMS[name]
    if rule.vectors_per_update is None:
        return update_traffic(name, 4096, n)
    return rule.vectors_per_update + getattr(rule, "vectors_per_round", 0) / workers_for(name, n)


def state_vectors(name: str, n: int) -> float:
    """d-vectors of state the rule allocates with N workers (measured on a small rule, for the memory check)."""
    rule = make_algorithm(name, torch.zeros(64), workers_for(name, n), lr=0.01)
    return sum(t.numel() for t in rule.state_dict().values() if isinstance(t, torch.Tensor)) / 64


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def calls_lasting(fn, device: torch.device, min_time: float, min_calls: int = 3) -> int:
    """How many back-to-back calls of ``fn`` last at least ``min_time`` seconds (after one warm-up call)."""
    fn()
    _sync(device)
    calls, started = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - started < min_time:
        fn()
        calls += 1
    _sync(device)
    return calls


def seconds_per_call(fn, calls: int, device: torch.device) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    _sync(device)
    return (time.perf_counter() - started) / calls


def interleaved_ratio(fn, reference, device: torch.device, rounds: int = 5, min_time: float = 0.05) -> float:
    """Median over ``rounds`` of (seconds per call of ``fn``) / (seconds per call of ``reference``), each round
    timing a batch of each back to back, so that a shared machine's drift moves both sides of a ratio."""
    fn_calls, ref_calls = calls_lasting(fn, device, min_time), calls_lasting(reference, device, min_time)
    ratios = sorted(
        seconds_per_call(fn, fn_calls, device) / seconds_per_call(reference, ref_calls, device) for _ in range(rounds)
    )
    return ratios[rounds // 2]


def reference_fmas(d: int, vectors: float, device: torch.device):
    """A plain fused multiply-add moving ``vectors`` d-float vectors, and its seconds-per-call scale: the
    call does ``a_j <- a_j + s*b_j`` in place (2 read, 1 written, as the rules' in-place updates) over
    k = ceil(vectors / 3) distinct pairs, so its working set is as large as a rule's shared state (a
    cache-resident reference would flatter nothing), and moves 3k vectors: scale = vectors / 3k."""
    k = math.ceil(vectors / 3)
    pairs = [(torch.randn(d, device=device), torch.randn(d, device=device)) for _ in range(k)]

    def fmas():
        for a, b in pairs:
            a.add_(b, alpha=1e-6)

    return fmas, vectors / (3 * k)


def one_update(name: str, d: int, n: int, device: torch.device, fused: bool = False):
    """A call doing what the ParameterServer's master does per gradient, cycling over the N workers."""
    n = workers_for(name, n)
    rule = make_algorithm(name, torch.zeros(d, device=device), n, lr=0.01, momentum=0.9, fused=fused)
    grads = [torch.randn(d, device=device) * 1e-3 for _ in range(2)]
    points = [rule.params_for(i) for i in range(n)]  # the outstanding jobs' points, recycled as the Master does
    state = {"k": 0}

    def update():
        k = state["k"]
        worker = k % n
        rule.apply(worker, grads[k % 2], point=points[worker], delay=n - 1)
        rule.params_for(worker, out=points[worker])
        state["k"] = k + 1

    return update


def master_gap(d: int, device: torch.device, fused: bool):
    """A call doing the Master's other d-sized work per gradient: the gap ``||x - θ||`` of the point the
    gradient was computed at (two eager passes over a scratch vector, or one compiled pass when fused)."""
    rule = make_algorithm("dana", torch.zeros(d, device=device), 1, lr=0.01)
    master = Master(rule, None, torch.zeros(0, device=device), 0.1, fused=fused)
    point = torch.randn(d, device=device)
    return lambda: master.gap(point)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", type=float, default=[0.27, 2.7, 25.6], help="d in millions")
    p.add_argument("--workers", nargs="+", type=int, default=[1, 8, 64])
    p.add_argument("--rules", nargs="+", default=None, help="default: every registered rule")
    p.add_argument("--plugins", nargs="*", default=[], help="modules or .py files registering more rules")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--eager-only", action="store_true", help="skip the fused=True rows (no torch.compile)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    add_json_option(p)
    args = p.parse_args(argv)
    load_plugins(args.plugins)
    args.rules = args.rules or list(ALGORITHMS)
    started = time.perf_counter()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    record = Record("server_update")
    record.note(
        f"device {device} ({where}); cost = apply + params_for per gradient; "
        f"reference = in-place fused multiply-add moving the same number of vectors"
    )
    costs = record.table(
        "an update's cost over its memory-bandwidth reference (median of 5 rounds)",
        [("rule", "<21"), ("d (M)", "g")]
        + [(f"N={n} x ref", ".2f") for n in args.workers]
        + [(f"N={args.workers[-1]}/N={args.workers[0]}", ".2f")],
    )
    per_size: list[tuple[float, float, list[float]]] = []  # d (M), seconds per vector moved, Master.gap ratios
    budget = (
        0.6 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if device.type == "cpu"
        else 0.6 * torch.cuda.get_device_properties(device).total_memory
    )
    for size in args.sizes:
        d = int(size * 1e6)
        vector_seconds = []
        # each rule again with fused=True, right after its eager row
        variants = [(name, fused) for name in args.rules for fused in ([False] if args.eager_only else [False, True])]
        for name, fused in variants:
            ratios = []
            for n in args.workers:
                needed = 4 * d * (state_vectors(name, n) + n + 6)  # state, N outstanding points, scratch
                if needed > budget:
                    ratios.append(math.nan)
                    continue
                reference, scale = reference_fmas(d, traffic(name, n), device)
                ratios.append(interleaved_ratio(one_update(name, d, n, device, fused), reference, device) / scale)
                calls = calls_lasting(reference, device, 0.05)
                vector_seconds.append(seconds_per_call(reference, calls, device) * scale / traffic(name, n))
            label = name + (" fused" if fused else "")
            # flatness as a ratio of ratios: each cost is relative to a reference timed alongside it
            costs.add(label, size, *ratios, ratios[-1] / ratios[0])
        per_vector = sorted(vector_seconds)[len(vector_seconds) // 2]
        reference, scale = reference_fmas(d, 2, device)  # the gap reads x and θ
        gaps = [
            interleaved_ratio(master_gap(d, device, fused), reference, device) / scale
            for fused in ([False] if args.eager_only else [False, True])
        ]
        per_size.append((size, per_vector, gaps))
    reference_table = record.table(
        "the reference, and Master.gap per gradient over a 2-vector reference",
        [("d (M)", "g"), ("us per vector", ".1f"), ("GB/s", ".1f"), ("gap eager", ".2f"), ("gap fused", ".2f")],
    )
    for size, per_vector, gaps in per_size:
        d = int(size * 1e6)
        reference_table.add(
            size, per_vector * 1e6, 4 * d / per_vector / 1e9, gaps[0], gaps[-1] if len(gaps) > 1 else math.nan
        )
    record.note(f"whole run: {time.perf_counter() - started:.0f} s")
    record.save(args.json, argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
