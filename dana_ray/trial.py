"""Train one configuration: ``dana_ray.trial.run(config, executor="local") -> dict``.

Also a command line for a single trial or a small comparison on a laptop::

    python -m dana_ray.trial                                   # DANA, 1 worker, embedded digits
    python -m dana_ray.trial --algorithm asgd dana --num-workers 1 4 16
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from typing import Any, Callable

import torch

from dana_ray.algorithms import ALGORITHMS, make_algorithm
from dana_ray.config import TrialConfig
from dana_ray.data import load_dataset
from dana_ray.engine import FlatModel, GradientWorker, LocalExecutor, Master
from dana_ray.lr_schedule import step_decay
from dana_ray.models import make_model
from dana_ray.schedules import make_schedule

EXECUTORS = ("local",)

Callback = Callable[[dict[str, Any]], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' asked for, but torch sees no CUDA device; use 'cpu' or 'auto'")
    return torch.device(name)


def build(cfg: TrialConfig) -> tuple[Master, GradientWorker, int]:
    """The master, a gradient worker and the steps per epoch for one trial (everything seeded by cfg.seed)."""
    data = load_dataset(cfg.dataset, cfg.data_dir, **cfg.dataset_options)
    if cfg.batch_size > len(data.train):
        raise ValueError(f"batch_size: {cfg.batch_size} is larger than the {cfg.dataset} training set "
                         f"({len(data.train)} examples)")
    device = resolve_device(cfg.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        module = make_model(cfg.model, data.num_classes, data.in_channels, **cfg.model_options)
    model = FlatModel(module, device)
    steps_per_epoch = len(data.train) // cfg.batch_size
    lr = step_decay(cfg.lr, steps_per_epoch, cfg.lr_decay_epochs, cfg.lr_decay_factor, cfg.warmup_epochs)
    params, bn_stats = model.initial_state()
    rule = make_algorithm(cfg.algorithm, params, cfg.num_workers, lr, cfg.momentum)
    schedule = make_schedule(cfg.schedule, cfg.num_workers, cfg.seed, **cfg.schedule_options)
    master = Master(rule, schedule, bn_stats, model.bn_momentum)
    worker = GradientWorker(model, data, cfg.batch_size, cfg.seed, cfg.weight_decay, cfg.eval_batch_size)
    return master, worker, steps_per_epoch


def params_sha256(params: torch.Tensor) -> str:
    """SHA-256 of the parameters as float32 bytes (the identity of a run's outcome)."""
    return hashlib.sha256(params.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


def run(config: dict[str, Any] | TrialConfig, executor: str = "local", callback: Callback | None = None) -> dict:
    """Train one configuration and return its final metrics (see the README for every key).

    ``callback`` receives one dict per epoch: epoch, step, test_error, test_loss, train_loss, mean_delay,
    max_delay, mean_gap, lr, gradients_per_s (and diverged=True on the epoch a run diverges).
    """
    cfg = TrialConfig.from_dict(config)
    if executor not in EXECUTORS:
        raise ValueError(f"executor: unknown name {executor!r}; allowed: {', '.join(EXECUTORS)}")
    started = time.perf_counter()
    master, worker, steps_per_epoch = build(cfg)
    engine = LocalExecutor(master, worker)
    chance_error = 100.0 * (1 - 1 / worker.data.num_classes)
    history: list[dict[str, Any]] = []
    totals = {"gradients": 0, "delay_sum": 0.0, "max_delay": 0}
    test_error = train_loss = math.nan
    for epoch in range(1, cfg.epochs + 1):
        epoch_start = time.perf_counter()
        engine.run_steps(steps_per_epoch)
        metrics = master.take_metrics()
        totals["gradients"] += metrics["gradients"]
        totals["delay_sum"] += metrics["mean_delay"] * metrics["gradients"]
        totals["max_delay"] = max(totals["max_delay"], metrics["max_delay"])
        elapsed = time.perf_counter() - epoch_start
        if master.diverged:
            test_error, test_loss, train_loss = chance_error, math.nan, math.nan
        else:
            test_error, test_loss = engine.evaluate()
            train_loss = metrics["train_loss"]
        row = {"epoch": epoch, "step": master.step, "test_error": test_error, "test_loss": test_loss,
               "train_loss": train_loss, "mean_delay": metrics["mean_delay"], "max_delay": metrics["max_delay"],
               "mean_gap": metrics["mean_gap"], "lr": master.rule.lr_at(master.step),
               "gradients_per_s": metrics["gradients"] / elapsed if elapsed > 0 else math.nan,
               "diverged": master.diverged}
        history.append(row)
        if callback is not None:
            callback(row)
        if master.diverged:
            break
    wall = time.perf_counter() - started
    return {
        "test_error": test_error,
        "train_loss": train_loss,
        "diverged": master.diverged,
        "steps": master.step,
        "epochs": len(history) - int(master.diverged),
        "mean_delay": totals["delay_sum"] / max(totals["gradients"], 1),
        "max_delay": totals["max_delay"],
        "params_sha256": params_sha256(master.rule.params),
        "wall_time_s": wall,
        "num_params": master.rule.params.numel(),
        "history": history,
        "config": cfg.to_dict(),
    }


# -- command line ----------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dana_ray.trial", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = TrialConfig()
    p.add_argument("--algorithm", nargs="+", default=[d.algorithm], help="one or more rule names")
    p.add_argument("--num-workers", nargs="+", type=int, default=[d.num_workers], help="one or more N")
    p.add_argument("--seed", nargs="+", type=int, default=[d.seed], help="one or more seeds")
    for name in ("model", "dataset", "data_dir", "schedule", "device"):
        p.add_argument("--" + name.replace("_", "-"), default=getattr(d, name))
    for name in ("batch_size", "epochs", "eval_batch_size"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    for name in ("lr", "lr_decay_factor", "warmup_epochs", "momentum", "weight_decay"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name))
    p.add_argument("--lr-decay-epochs", nargs="*", type=float, default=list(d.lr_decay_epochs))
    p.add_argument("--json", action="store_true", help="print each result as one JSON line")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p


def format_results(results: list[dict]) -> str:
    """One line per run, then test error mean ± std over seeds per (algorithm, N)."""
    lines = [f"{'algorithm':<11} {'N':>3} {'seed':>4} {'test error %':>12} {'diverged':>8} {'mean delay':>10}  params_sha256"]
    cells: dict[tuple[str, int], list[dict]] = {}
    for r in results:
        c = r["config"]
        cells.setdefault((c["algorithm"], c["num_workers"]), []).append(r)
        lines.append(f"{c['algorithm']:<11} {c['num_workers']:>3} {c['seed']:>4} {r['test_error']:>12.2f} "
                     f"{str(r['diverged']):>8} {r['mean_delay']:>10.2f}  {r['params_sha256'][:16]}")
    lines += ["", f"{'algorithm':<11} {'N':>3} {'mean %':>8} {'std':>6} {'n':>3} {'diverged':>8}"]
    order = list(ALGORITHMS)
    for (algorithm, n), runs in sorted(cells.items(), key=lambda kv: (kv[0][1], order.index(kv[0][0]))):
        errors = torch.tensor([r["test_error"] for r in runs], dtype=torch.float64)
        std = float(errors.std()) if len(runs) > 1 else math.nan
        lines.append(f"{algorithm:<11} {n:>3} {float(errors.mean()):>8.2f} {std:>6.2f} {len(runs):>3} "
                     f"{sum(r['diverged'] for r in runs):>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    fixed = {k: v for k, v in vars(args).items() if k not in ("algorithm", "num_workers", "seed", "json", "quiet")}
    grid = [dict(fixed, algorithm=a, num_workers=n, seed=s)
            for a in args.algorithm for n in args.num_workers for s in args.seed
            if not (a == "baseline" and n != 1)]
    try:
        configs = [TrialConfig.from_dict(c) for c in grid]
    except ValueError as error:
        print(f"error: {error}")
        return 2
    rows = []
    for cfg in configs:
        label = f"{cfg.algorithm} N={cfg.num_workers} seed={cfg.seed}"
        show = None if args.quiet or args.json else (lambda r, label=label: print(
            f"{label} epoch {r['epoch']:3d}  test error {r['test_error']:6.2f}%  train loss {r['train_loss']:.4f}"
            f"  mean delay {r['mean_delay']:5.1f}  gap {r['mean_gap']:.2e}  {r['gradients_per_s']:.0f} grad/s",
            flush=True))
        result = run(cfg, callback=show)
        rows.append(result)
        if args.json:
            print(json.dumps({k: v for k, v in result.items() if k != "history"}), flush=True)
    if not args.json:
        print(format_results(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
