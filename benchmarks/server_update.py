"""Server update cost of every rule against a memory-bandwidth reference, measured in the same run.

    python benchmarks/server_update.py [--sizes 0.27 2.7 25.6] [--workers 1 8 64] [--device cpu|cuda]
                                       [--rules ...] [--eager-only]

For each rule, d (millions of float32: ResNet-20, WRN-16-4, ResNet-50) and N, times one server update:
``rule.apply(i, g)`` followed by ``rule.params_for(i, out=...)`` into worker i's recycled point buffer (what
the ParameterServer's master does per gradient), cycling i over the N workers. Each fusable rule is timed
twice: eager, and with ``fused=True`` (one compiled pass, ``dana_ray/algorithms/fused.py``).

The reference is plain fused multiply-adds ``a <- a + s*b`` over d floats (3 vectors moved each), moving as
many d-vectors as the rule's equations read and write once each (``TRAFFIC`` below, from each rule's
docstring): a perfectly fused kernel would take that long. Cost and reference are timed in alternating
batches, and the ratio printed is the median over 5 rounds (this shared machine drifts by 2x within a
minute). Printed: cost / reference per N, and (N=64 ratio) / (N=1 ratio): flat in N means O(d) per update.
At small d, N = 1 keeps its state in cache while 64 workers' momenta cannot be, so flatness is only a test
of O(d) where even N = 1 streams from memory. A cell whose state would not fit in 60% of memory prints nan.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch

from dana_ray.algorithms import ALGORITHMS, make_algorithm
from dana_ray.engine.master import Master

#: d-vectors each rule's update reads + writes, counting each state vector once (the fused minimum):
#: apply's inputs and outputs, then params_for's (reads what it combines, writes the point it sends).
TRAFFIC = {
    "baseline": 3 + 2 + 2,      # apply: read g, v, θ; write v, θ.  params_for: copy θ (read, write)
    "asgd": 3 + 2 + 2,
    "nag-asgd": 3 + 2 + 3,      # params_for: read θ, v; write θ - ηγv
    "multi-asgd": 3 + 2 + 2,    # v_i in place of v
    "dana": 4 + 3 + 3,          # apply: read g, v_i, θ, Σ; write v_i, θ, Σ.  params_for: read θ, Σ; write x
    "dana-slim": 2 + 1 + 2,     # apply: read u, θ; write θ.  params_for: copy
    "dana-dc": 5 + 3 + 3 + 1,   # dana + read the sent point x_i; params_for also writes x_i
    "dc-asgd": 4 + 2 + 2 + 1,   # asgd + read x_i; params_for also writes x_i
    "ssgd": 2 + 1 + 2,          # per gradient: read g, Σg; write Σg; params_for: copy θ
}

#: d-vectors moved once per round of N gradients, on top of ``TRAFFIC`` (SSGD's step: read Σg, v, θ; write
#: v, θ and Σg zeroed), so a gradient's share is this / N.
ROUND_TRAFFIC = {"ssgd": 6}


def traffic(name: str, n: int) -> float:
    """d-vectors one gradient's update moves (the fused minimum) with N workers."""
    return TRAFFIC[name] + ROUND_TRAFFIC.get(name, 0) / (1 if name == "baseline" else n)


#: d-vectors of state each rule allocates with N workers (for the memory check).
STATE_VECTORS = {
    "baseline": lambda n: 2, "asgd": lambda n: 2, "nag-asgd": lambda n: 2, "multi-asgd": lambda n: 1 + n,
    "dana": lambda n: 2 + n, "dana-slim": lambda n: 1, "dana-dc": lambda n: 3 + 2 * n,
    "dc-asgd": lambda n: 3 + n, "ssgd": lambda n: 3,
}


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
    ratios = sorted(seconds_per_call(fn, fn_calls, device) / seconds_per_call(reference, ref_calls, device)
                    for _ in range(rounds))
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
    n = 1 if name == "baseline" else n
    rule = make_algorithm(name, torch.zeros(d, device=device), n, lr=0.01, momentum=0.9, fused=fused)
    grads = [torch.randn(d, device=device) * 1e-3 for _ in range(2)]
    points = [rule.params_for(i) for i in range(n)]  # the outstanding jobs' points, recycled as the Master does
    state = {"k": 0}

    def update():
        k = state["k"]
        worker = k % n
        rule.apply(worker, grads[k % 2])
        rule.params_for(worker, out=points[worker])
        state["k"] = k + 1

    return update


def master_gap(d: int, device: torch.device, fused: bool):
    """A call doing the Master's other d-sized work per gradient: the gap ``||x - θ||`` of the point the
    gradient was computed at (two eager passes over a scratch vector, or one compiled pass when fused)."""
    rule = make_algorithm("dana", torch.zeros(d, device=device), 1, lr=0.01, fused=fused)
    master, point = Master(rule, None, torch.zeros(0, device=device), 0.1), torch.randn(d, device=device)
    return lambda: master.gap(point)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", type=float, default=[0.27, 2.7, 25.6], help="d in millions")
    p.add_argument("--workers", nargs="+", type=int, default=[1, 8, 64])
    p.add_argument("--rules", nargs="+", default=list(ALGORITHMS))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--eager-only", action="store_true", help="skip the fused=True rows (no torch.compile)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"device {device} ({where}); cost = apply + params_for per gradient; "
          f"reference = in-place fused multiply-add moving the same number of vectors")
    header = f"{'rule':<17} {'d (M)':>6} " + " ".join(f"{'N=' + str(n) + ' x ref':>10}" for n in args.workers)
    header += f" {'N=' + str(args.workers[-1]) + '/N=' + str(args.workers[0]):>11}"
    print(header)
    budget = 0.6 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if device.type == "cpu" else \
        0.6 * torch.cuda.get_device_properties(device).total_memory
    for size in args.sizes:
        d = int(size * 1e6)
        vector_seconds = []
        variants = [(name, False) for name in args.rules]
        if not args.eager_only:  # each fusable rule again with fused=True, right after its eager row
            variants = [v for name in args.rules
                        for v in ([(name, False), (name, True)] if ALGORITHMS[name].fusable else [(name, False)])]
        for name, fused in variants:
            ratios = []
            for n in args.workers:
                needed = 4 * d * (STATE_VECTORS[name](n) + n + 6)  # state, N outstanding points, scratch
                if needed > budget:
                    ratios.append(math.nan)
                    continue
                reference, scale = reference_fmas(d, traffic(name, n), device)
                ratios.append(interleaved_ratio(one_update(name, d, n, device, fused), reference, device) / scale)
                calls = calls_lasting(reference, device, 0.05)
                vector_seconds.append(seconds_per_call(reference, calls, device) * scale / traffic(name, n))
            label = name + (" fused" if fused else "")
            # flatness as a ratio of ratios: each cost is relative to a reference timed alongside it
            print(f"{label:<17} {size:>6} " + " ".join(f"{r:>10.2f}" for r in ratios)
                  + f" {ratios[-1] / ratios[0]:>11.2f}", flush=True)
        per_vector = sorted(vector_seconds)[len(vector_seconds) // 2]
        print(f"{'(reference':<17} {size:>6} one vector moved in {per_vector * 1e6:.1f} us = "
              f"{4 * d / per_vector / 1e9:.1f} GB/s, median)")
        reference, scale = reference_fmas(d, 2, device)  # the gap reads x and θ
        gaps = [interleaved_ratio(master_gap(d, device, fused), reference, device) / scale
                for fused in ([False] if args.eager_only else [False, True])]
        print(f"{'(master gap':<17} {size:>6} Master.gap per gradient over a 2-vector reference: eager {gaps[0]:.2f}"
              + (f", fused {gaps[1]:.2f})" if len(gaps) > 1 else ")"), flush=True)
    print(f"(whole run: {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
