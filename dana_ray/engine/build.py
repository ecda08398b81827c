"""Build a trial's parts from its config: the gradient worker (data + model replica) and the master.

Every executor builds through these two functions, so a model is initialised, a data set split and a
schedule seeded the same way wherever they run.
"""

from __future__ import annotations

import json
import os

import torch

from dana_ray.algorithms import UpdateRule, make_algorithm
from dana_ray.config import TrialConfig
from dana_ray.data import DATASETS, DataSet, load_dataset
from dana_ray.engine.flat import FlatModel
from dana_ray.engine.master import Master
from dana_ray.engine.replica import Replica
from dana_ray.engine.shards import ShardedMaster, ShardSet
from dana_ray.models import make_model
from dana_ray.schedules import ARRIVAL, Schedule, make_schedule, step_decay


def resolve_device(name: str, gpus: float = 0.0) -> torch.device:
    """The device ``compute.device`` names in this process: ``auto`` is CUDA when this process sees a CUDA
    device, else the CPU. ``gpus``: the GPUs it reserved (``gpus_per_actor``): with a reservation, no CUDA is
    an error, never a silent run on the CPU (a container without the NVIDIA runtime, a torch wheel built for
    a newer driver than the node's)."""
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if gpus > 0:
            raise ValueError(
                f"device: {name!r} with gpus_per_actor {gpus:g} reserved, but this process sees no CUDA device "
                f"({cuda_report()}); give the node a CUDA build of torch its driver supports, or set "
                f"gpus_per_actor: 0 to train on the CPU"
            )
        if name == "cuda":
            raise ValueError(
                f"device: 'cuda' asked for, but this process sees no CUDA device ({cuda_report()}); use 'cpu' or 'auto'"
            )
        return torch.device("cpu")
    return torch.device("cuda")


def use_determinism(on: bool) -> None:
    """``compute.deterministic`` in this process. On: deterministic algorithms (an op without one raises),
    cuDNN's deterministic convolutions without autotuning, no TF32 for convolutions or matrix products, and
    cuBLAS's fixed workspace. Off: PyTorch's defaults (TF32 convolutions, the fastest algorithms)."""
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.allow_tf32 = not on
    if on:
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def cuda_report() -> str:
    """What torch says about CUDA here, in a clause: its build, and the devices this process may see."""
    build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    seen = (
        "no GPU visible: CUDA_VISIBLE_DEVICES is empty"
        if visible == ""
        else ("torch.cuda.is_available() is False" + (f", CUDA_VISIBLE_DEVICES={visible}" if visible else ""))
    )
    return f"torch {torch.__version__} {build}; {seen}"


_data_cache: dict[str, DataSet] = {}


def trial_data(cfg: TrialConfig, threads: int = 1) -> DataSet:
    """The trial's data set, loaded once per process for as long as consecutive trials read the same one
    (a reused Tune trial process or pooled actor serves one grid: loading is then paid once). ``threads``:
    the decode threads of a data set that takes a ``threads`` option its config leaves unset (the cores
    of the process that computes the gradients)."""
    options = dict(cfg.dataset_options)
    if "threads" in DATASETS[cfg.dataset].options and options.get("threads") is None:
        options["threads"] = max(1, threads)
    key = json.dumps([cfg.dataset, cfg.data_dir, options, list(cfg.plugins)], sort_keys=True)
    if key not in _data_cache:
        _data_cache.clear()  # one at a time: a process does not hold two data sets' memory
        _data_cache[key] = load_dataset(cfg.dataset, cfg.data_dir, **options)
    return _data_cache[key]


def build_replica(
    cfg: TrialConfig, device: torch.device | str | None = None, decode_threads: int | None = None
) -> Replica:
    """Load the data and build the seeded model replica on ``device`` (default: ``cfg.compute.device`` resolved).
    ``decode_threads``: for a file-decoded data set whose options leave ``threads`` unset (default: the
    torch threads this process computes on; a gradient actor passes its reserved CPUs)."""
    use_determinism(cfg.compute.deterministic)
    data = trial_data(cfg, threads=decode_threads or torch.get_num_threads())
    if cfg.batch_size > len(data.train):
        raise ValueError(
            f"batch_size: {cfg.batch_size} is larger than the {cfg.dataset} training set ({len(data.train)} examples)"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        module = make_model(cfg.model, data.num_classes, data.in_channels, **cfg.model_options)
    model = FlatModel(
        module, device if device is not None else resolve_device(cfg.compute.device, cfg.compute.gpus_per_actor)
    )
    options = cfg.rule.resolved_options(cfg.algorithm_options)
    return Replica(
        model,
        data,
        cfg.batch_size,
        cfg.seed,
        cfg.weight_decay if cfg.weight_decay_at == "worker" else 0.0,
        cfg.compute.eval_batch_size,
        worker_side=cfg.rule.make_worker_side(cfg.momentum, options),
        prefetch=cfg.compute.prefetch_batches,
    )


def build_rule(cfg: TrialConfig, params: torch.Tensor, steps_per_epoch: int, fused: bool | None = None) -> UpdateRule:
    """The trial's rule over ``params`` (all of θ, a shard's slice of it, or none: a sequencer's shadow)."""
    lr = step_decay(
        cfg.lr,
        steps_per_epoch,
        cfg.lr_decay_epochs,
        cfg.lr_decay_factor,
        cfg.warmup_epochs,
        cfg.warmup_start,
        cfg.num_workers,
    )
    return make_algorithm(
        cfg.algorithm,
        params,
        cfg.num_workers,
        lr,
        cfg.momentum,
        weight_decay=cfg.weight_decay if cfg.weight_decay_at == "master" else 0.0,
        fused=cfg.compute.fused_updates if fused is None else fused,
        **cfg.algorithm_options,
    )


def build_schedule(cfg: TrialConfig) -> Schedule | None:
    """The seeded order gradients are applied in (None: ``arrival``, the order they come)."""
    return (
        None
        if cfg.schedule == ARRIVAL
        else make_schedule(cfg.schedule, cfg.num_workers, cfg.seed, **cfg.schedule_options)
    )


def build_master(
    cfg: TrialConfig, params: torch.Tensor, bn_stats: torch.Tensor, bn_momentum: float, steps_per_epoch: int
) -> Master:
    """The rule (starting at ``params``), the schedule and the master's BatchNorm statistics."""
    return Master(
        build_rule(cfg, params, steps_per_epoch),
        build_schedule(cfg),
        bn_stats,
        bn_momentum,
        fused=cfg.compute.fused_updates,
    )


def build_sequencer(
    cfg: TrialConfig, shards: ShardSet, bn_stats: torch.Tensor, bn_momentum: float, steps_per_epoch: int
) -> ShardedMaster:
    """A sharded server's master: the rule's shadow (over no coordinates), the schedule, the statistics."""
    shadow = build_rule(cfg, torch.zeros(0), steps_per_epoch, fused=False)
    return ShardedMaster(shadow, build_schedule(cfg), bn_stats, bn_momentum, shards)
