"""The outcome of a fixed set of runs, as ``params_sha256``: run it before and after a change that must not
change a number, and compare.

    python scripts/params_shas.py [--out FILE] [--check FILE] [--no-ray]

The runs (embedded digits, N = 3, the gamma schedule, 2 epochs of 15 gradients, one torch thread):

- every built-in rule on the local executor;
- every built-in rule on the Ray executor with K = 1 and K = 2 server shards;
- DANA with ``vmap_jobs: 2`` and with ``fused_updates``;
- resumed from the epoch-1 checkpoint (the sha must be the uninterrupted run's): DANA and DANA-Slim (a rule
  with worker-side state) on both executors, and DANA with K = 2.

Prints one ``run sha`` line each; ``--out`` writes them as JSON, ``--check`` compares with such a file and
exits 1 on any difference. Ray is started here (2 CPUs, no dashboard) and stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from dana_ray import run
from dana_ray.algorithms import BUILTIN_ALGORITHMS, is_single_worker

BASE = {
    "dataset": "digits",
    "model": "cnn",
    "schedule": "gamma",
    "seed": 1,
    "epochs": 2,
    "max_steps_per_epoch": 15,
    "lr_decay_epochs": [1],
    "compute": {"device": "cpu", "cpu_threads": 1, "cpus_per_actor": 0.5},
    "ray": {"num_actors": 2, "server_cpus": 0.25},
}


def config(algorithm: str, shards: int = 1, **compute) -> dict:
    cfg = dict(BASE, algorithm=algorithm, num_workers=1 if is_single_worker(algorithm) else 3)
    cfg["compute"] = dict(BASE["compute"], **compute)
    cfg["ray"] = dict(BASE["ray"], server_shards=shards)
    return cfg


def resumed(cfg: dict, executor: str = "local") -> str:
    """The sha of a run resumed from its epoch-1 checkpoint (and a check that it is the whole run's)."""
    states = []
    whole = run(cfg, executor, checkpoint=states.append, checkpoint_every=1)["params_sha256"]
    again = run(cfg, executor, resume=states[0])["params_sha256"]
    if again != whole:
        raise SystemExit(f"{cfg['algorithm']}: resumed {again[:16]} != uninterrupted {whole[:16]}")
    return again


def runs(with_ray: bool):
    for name in BUILTIN_ALGORITHMS:
        yield f"local {name}", lambda name=name: run(config(name), "local")["params_sha256"]
    yield "local dana vmap_jobs=2", lambda: run(config("dana", vmap_jobs=2), "local")["params_sha256"]
    yield "local dana fused_updates", lambda: run(config("dana", fused_updates=True), "local")["params_sha256"]
    yield "local dana resumed", lambda: resumed(config("dana"))
    yield "local dana-slim resumed", lambda: resumed(config("dana-slim"))
    if with_ray:
        for shards in (1, 2):
            for name in BUILTIN_ALGORITHMS:
                yield f"ray K={shards} {name}", lambda n=name, k=shards: run(config(n, k), "ray")["params_sha256"]
        yield "ray K=1 dana resumed", lambda: resumed(config("dana"), "ray")
        yield "ray K=1 dana-slim resumed", lambda: resumed(config("dana-slim"), "ray")
        yield "ray K=2 dana resumed", lambda: resumed(config("dana", 2), "ray")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="write the shas here (JSON)")
    p.add_argument("--check", help="compare with the shas in this file (JSON); exit 1 on a difference")
    p.add_argument("--no-ray", action="store_true", help="the local runs only")
    args = p.parse_args()
    if not args.no_ray:
        import ray

        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    shas = {}
    try:
        for label, make in runs(not args.no_ray):
            shas[label] = make()
            print(f"{label:<32} {shas[label]}", flush=True)
    finally:
        if not args.no_ray:
            ray.shutdown()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(shas, f, indent=1)
    if args.check:
        with open(args.check) as f:
            want = json.load(f)
        differ = [k for k in want if k in shas and shas[k] != want[k]]
        missing = [k for k in want if k not in shas]
        for k in differ:
            print(f"differs: {k}: {want[k][:16]} -> {shas[k][:16]}", file=sys.stderr)
        print(
            f"{len(want) - len(differ) - len(missing)} of {len(want)} equal"
            + (f"; {len(missing)} not run" if missing else ""),
            file=sys.stderr,
        )
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
