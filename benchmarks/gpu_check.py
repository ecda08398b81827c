"""Every CUDA path, checked against the same steps on the CPU and timed: the script to run first on a GPU.

    PYTHONPATH=. python benchmarks/gpu_check.py [--device cuda] [--quick]

It needs PyTorch, torchvision and numpy (a GPU image with PyTorch has them): no install of this project,
and no Ray. (In a virtual environment holding only torch, numpy and Pillow, every check ran but the folder
input pipeline's, which needs torchvision.) Without Ray it runs every check that needs none and names, in
one line, the ones it skipped; with Ray it adds the Ray executor's checks, each actor given
``actor_start_timeout_s`` of 60 s. ``--device cpu`` runs the same checks with the CPU on both sides (the
tests do, with ``--quick``, so the script cannot rot where no GPU is). On one GPU the full sizes take a few
minutes (target: under 8).

The checks (ResNet-20 on CIFAR-shaped data in the ``arrays`` format unless said; DANA, round robin):

- ``local vmap``: the local executor, N = 16, ``vmap_jobs: 16`` (BatchNorm statistics per job under vmap);
- ``local fused``: the same with ``fused_updates: true`` (the update compiled for the device);
- ``local, TF32 off``: the first again with ``deterministic: true``: its distances are what is left without
  TF32, so the two rows size TF32's share of the differences;
- ``local dana-slim``: a rule with a worker side (per-worker momenta on the device);
- ``local async-diloco``: a rule with local steps (H = 4 inner steps on the device);
- ``checkpoint, resume``: 8 steps on the device, the state saved (``torch.save``) and read back onto the CPU
  (``map_location``), loaded into a new executor on the device, 8 more steps; compared with 16 CPU steps;
- ``device: auto``: a trial left to ``auto`` resolves to the device;
- ``update d=0.27M``, ``update d=25.6M``: the compiled DANA update alone at ResNet-20's and ResNet-50's
  sizes, against the eager update on the CPU;
- ``folder -> resnet50``: the folder input pipeline (ImageNet layout, JPEG files decoded on CPU threads);
- ``divergence``: a learning rate that makes the run diverge, on both sides;
- with Ray: ``ray fused``: the Ray executor, N = 8 on 4 actors sharing the GPU (0.25 each), fused updates,
  2 jobs per call; ``ray dana-slim``: its worker side on the actors; ``ray 2 shards``: θ on 2 server shards;
  ``ray resume``: a Ray trial's state loaded into a new Ray trial.

The speeds are the device run's: images and updates per second over its steps, the test set's evaluation
that ends them included. Each row compares, after the same steps, the device's run with the CPU's: θ and
the BatchNorm running statistics (relative distance ``|x_dev - x_cpu| / |x_cpu|``), the test error
(percentage points) and the test loss (relative). The tolerances, and why:

- θ: ``1e-3``. A GPU's float32 kernels sum in another order (about 1e-7 relative per sum) and its
  convolutions use TF32 (about 1e-3 relative per product); a gradient off by that moves θ off by that
  fraction of the few steps' movement, far below 1e-3 of θ.
- BatchNorm statistics and the test loss: ``1e-2``. They are activations' moments and a mean of losses:
  they carry the per-product error of TF32 (1e-3) without the damping of a small step.
- test error: 1 percentage point, or 2 test examples where that is more (an example near the decision
  boundary may flip).

A wrong computation differs by orders of magnitude more: statistics shared across vmap's jobs, or an
evaluation at the wrong point, are off by tens of percent. Exit code 1 if a check fails.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import io
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from dana_ray.algorithms import make_algorithm
from dana_ray.config import TrialConfig, section_of, set_options
from dana_ray.engine.local import LocalExecutor

TOLERANCE = {"theta": 1e-3, "bn": 1e-2, "loss": 1e-2, "error_pp": 1.0, "error_examples": 2}
RAY_START_TIMEOUT_S = 60


def with_options(base: dict, **keys: Any) -> dict:
    """``base`` with config fields and section options (by name: ``device``, ``num_actors``) set."""
    config = copy.deepcopy(base)
    set_options(config, {k: v for k, v in keys.items() if section_of(k) is not None})
    config.update({k: v for k, v in keys.items() if section_of(k) is None})
    return config


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def cifar_like_arrays(folder: str, train: int, test: int, seed: int = 0) -> str:
    """uint8 3x32x32 images whose class sets the mean colour (learnable), in ``folder/data.npz``."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 10, n)
        images = np.clip(labels[:, None, None, None] * 23.0 + rng.normal(0, 20, (n, 3, 32, 32)), 0, 255)
        return images.astype(np.uint8), labels

    (x_train, y_train), (x_test, y_test) = split(train), split(test)
    np.savez(
        os.path.join(folder, "data.npz"), x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, num_classes=10
    )
    return folder


def jpeg_folder(folder: str, classes: int, per_class: int, side: int, seed: int = 0) -> str:
    """An ImageNet-style tree of JPEG files: folder/{train,val}/<class>/<k>.jpg."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in range(classes):
            os.makedirs(os.path.join(folder, split, f"n{c:08d}"), exist_ok=True)
            for k in range(per_class if split == "train" else max(2, per_class // 4)):
                pixels = np.clip(rng.normal(c * 60, 40, (side, side, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(os.path.join(folder, split, f"n{c:08d}", f"{k}.jpg"), quality=90)
    return folder


def distance(a: Any, b: Any) -> float:
    """``|a - b| / |b|`` in float64 on the CPU; nan for empty vectors (a model without BatchNorm)."""
    a, b = torch.as_tensor(a).detach().double().cpu().reshape(-1), torch.as_tensor(b).detach().double().cpu()
    b = b.reshape(-1)
    if b.numel() == 0:
        return math.nan
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


# -- one row ---------------------------------------------------------------------------------------------------


def compared(
    state: dict,
    reference: dict,
    row: dict,
    reference_row: dict,
    test_examples: int,
    seconds: float,
    steps: int,
    batch: int,
) -> dict:
    """The row's figures: distances of θ and the BatchNorm statistics, the test errors and the loss's distance."""
    loss = abs(row["test_loss"] - reference_row["test_loss"]) / max(abs(reference_row["test_loss"]), 1e-30)
    error_gap = abs(row["test_error"] - reference_row["test_error"])
    error_tolerance = max(TOLERANCE["error_pp"], 100.0 * TOLERANCE["error_examples"] / test_examples)
    theta, bn = (
        distance(state["rule"]["params"], reference["rule"]["params"]),
        distance(state["bn_stats"], reference["bn_stats"]),
    )
    ok = (
        row["diverged"] == reference_row["diverged"]
        and theta < TOLERANCE["theta"]
        and (math.isnan(bn) or bn < TOLERANCE["bn"])
        and (row["diverged"] or (loss < TOLERANCE["loss"] and error_gap <= error_tolerance))
    )
    return {
        "ok": bool(ok),
        "theta": theta,
        "bn": bn,
        "error": f"{row['test_error']:.2f} / {reference_row['test_error']:.2f}",
        "loss": loss,
        "images_s": steps * batch / seconds if seconds else math.nan,
        "updates_s": steps / seconds if seconds else math.nan,
    }


def timed(executor: Any, steps: int, device: str) -> tuple[dict, float]:
    sync(device)
    started = time.perf_counter()
    row = executor.run_epoch(steps)
    sync(device)
    return row, time.perf_counter() - started


def local_check(config: dict, device: str, steps: int, test_examples: int, **device_only: Any) -> dict:
    """The local executor on ``device`` (with ``device_only`` options) vs on the CPU (eager), ``steps`` steps."""
    on_device = LocalExecutor(TrialConfig.from_dict(with_options(config, device=device, **device_only)))
    on_cpu = LocalExecutor(TrialConfig.from_dict(with_options(config, device="cpu", fused_updates=False)))
    try:
        row, seconds = timed(on_device, steps, device)
        reference_row = on_cpu.run_epoch(steps)
        return compared(
            on_device.state_dict(),
            on_cpu.state_dict(),
            row,
            reference_row,
            test_examples,
            seconds,
            steps,
            config["batch_size"],
        )
    finally:
        on_device.close()
        on_cpu.close()


def resume_check(config: dict, device: str, steps: int, test_examples: int) -> dict:
    """Half the steps on the device, the state through a file read onto the CPU, loaded into a new executor
    on the device, the other half; vs all the steps on the CPU."""
    first = LocalExecutor(TrialConfig.from_dict(with_options(config, device=device)))
    first.run_epoch(steps // 2)
    saved = io.BytesIO()
    torch.save(first.state_dict(), saved)
    first.close()
    saved.seek(0)
    state = torch.load(saved, map_location="cpu", weights_only=False)
    on_cpu_tensors = all(t.device.type == "cpu" for t in _tensors(state))
    second = LocalExecutor(TrialConfig.from_dict(with_options(config, device=device)))
    second.load_state_dict(state)
    reference = LocalExecutor(TrialConfig.from_dict(with_options(config, device="cpu")))
    try:
        row, seconds = timed(second, steps - steps // 2, device)
        reference_row = reference.run_epoch(steps)
        result = compared(
            second.state_dict(),
            reference.state_dict(),
            row,
            reference_row,
            test_examples,
            seconds,
            steps // 2,
            config["batch_size"],
        )
        result["ok"] = result["ok"] and on_cpu_tensors
        return result
    finally:
        second.close()
        reference.close()


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def auto_check(config: dict, device: str) -> dict:
    """``device: auto`` resolves to the device this script checks."""
    executor = LocalExecutor(TrialConfig.from_dict(with_options(config, device="auto")))
    try:
        seen = executor.replica.model.device.type
    finally:
        executor.close()
    return _plain(seen == torch.device(device).type, note=f"auto -> {seen}")


def update_check(device: str, d: int, updates: int) -> dict:
    """The DANA update at d floats: compiled on ``device`` vs eager on the CPU, the same gradients."""
    n = 16
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(d, generator=generator) * 0.01
    grads = [torch.randn(d, generator=generator) * 1e-3 for _ in range(2)]
    rules = {
        "device": make_algorithm("dana", start.to(device), n, lr=0.1, momentum=0.9, fused=True),
        "cpu": make_algorithm("dana", start.clone(), n, lr=0.1, momentum=0.9, fused=False),
    }
    for side, rule in rules.items():
        moved = [g.to(device if side == "device" else "cpu") for g in grads]
        for k in range(updates):
            rule.apply(k % n, moved[k % 2], point=rule.params_for(k % n), delay=n - 1)
    theta = distance(rules["device"].params, rules["cpu"].params)
    rule, moved = rules["device"], [g.to(device) for g in grads]
    points = [rule.params_for(i) for i in range(n)]
    sync(device)
    started, count = time.perf_counter(), max(updates, 50)
    for k in range(count):
        rule.apply(k % n, moved[k % 2], point=points[k % n], delay=n - 1)
        rule.params_for(k % n, out=points[k % n])
    sync(device)
    return dict(_plain(theta < TOLERANCE["theta"]), theta=theta, updates_s=count / (time.perf_counter() - started))


def divergence_check(config: dict, device: str) -> dict:
    rows = {}
    for side in (device, "cpu"):
        executor = LocalExecutor(TrialConfig.from_dict(with_options(config, device=side)))
        rows[side] = executor.run_epoch(50)
        executor.close()
    same = rows[device]["test_error"] == rows["cpu"]["test_error"]
    return _plain(rows[device]["diverged"] and rows["cpu"]["diverged"] and same, note="both diverged")


def _plain(ok: bool, note: str = "") -> dict:
    nan = math.nan
    return {"ok": bool(ok), "theta": nan, "bn": nan, "error": note, "loss": nan, "images_s": nan, "updates_s": nan}


# -- the Ray executor ------------------------------------------------------------------------------------------


def ray_check(config: dict, device: str, steps: int, test_examples: int, resume: bool = False) -> dict:
    """The Ray executor on ``device`` (4 actors sharing it) vs the local executor on the CPU."""
    import ray

    from dana_ray.engine.ray.executor import RayExecutor

    gpus = 1 if device.startswith("cuda") else 0
    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=max(6, os.cpu_count() or 6),
            num_gpus=gpus,
            include_dashboard=False,
            log_to_driver=False,
        )
    settings = with_options(
        config,
        device=device,
        num_actors=4,
        cpus_per_actor=0.5,
        server_cpus=1,
        gpus_per_actor=0.25 if gpus else 0.0,
        actor_start_timeout_s=RAY_START_TIMEOUT_S,
    )
    executor = RayExecutor(TrialConfig.from_dict(settings), "gpu-check")
    reference = LocalExecutor(TrialConfig.from_dict(with_options(config, device="cpu", fused_updates=False)))
    try:
        if resume:
            executor.run_epoch(steps // 2)
            state = executor.state_dict()
            executor.close()
            executor = RayExecutor(TrialConfig.from_dict(settings), "gpu-check-resumed")
            executor.load_state_dict(state)
            row, seconds = timed(executor, steps - steps // 2, device)
            timed_steps = steps - steps // 2
        else:
            row, seconds = timed(executor, steps, device)
            timed_steps = steps
        reference_row = reference.run_epoch(steps)
        return compared(
            executor.state_dict(),
            reference.state_dict(),
            row,
            reference_row,
            test_examples,
            seconds,
            timed_steps,
            config["batch_size"],
        )
    finally:
        executor.close()
        reference.close()


# -- the table ---------------------------------------------------------------------------------------------------


def checks(
    tmp: str, device: str, quick: bool
) -> tuple[list[tuple[str, Callable[[], dict]]], list[tuple[str, Callable[[], dict]]]]:
    """The checks that need no Ray, and those that do."""
    train, test = (256, 128) if quick else (8192, 1024)
    arrays = cifar_like_arrays(tmp, train, test)
    small = with_options(
        {},
        model="resnet20",
        dataset="arrays",
        data_dir=arrays,
        epochs=1,
        batch_size=16 if quick else 128,
        lr=0.05,
        lr_decay_epochs=[],
        algorithm="dana",
        num_workers=16,
        schedule="round-robin",
        seed=0,
        cpu_threads=None,
    )
    steps = 8 if quick else 64
    folder = jpeg_folder(os.path.join(tmp, "folder"), 4, 8 if quick else 96, 40 if quick else 160)
    images = dict(
        small,
        model="cnn" if quick else "resnet50",
        dataset="imagenet",
        data_dir=folder,
        dataset_options={"image_size": 32 if quick else 128, "threads": min(8, os.cpu_count() or 1)},
        batch_size=8 if quick else 64,
        num_workers=1,
        algorithm="baseline",
    )
    val_images = 4 * max(2, (8 if quick else 96) // 4)
    local = [
        ("local vmap", lambda: local_check(small, device, steps, test, vmap_jobs=16)),
        ("local fused", lambda: local_check(small, device, steps, test, fused_updates=True)),
        ("local vmap, TF32 off", lambda: local_check(small, device, steps, test, vmap_jobs=16, deterministic=True)),
        ("local dana-slim", lambda: local_check(dict(small, algorithm="dana-slim"), device, steps, test)),
        ("local async-diloco", lambda: local_check(dict(small, algorithm="async-diloco"), device, steps, test)),
        ("checkpoint, resume", lambda: resume_check(small, device, steps, test)),
        ("device: auto", lambda: auto_check(small, device)),
        ("update d=0.27M", lambda: update_check(device, 272_474, 20 if quick else 200)),
        (
            f"update d={0.1 if quick else 25.6:g}M",
            lambda: update_check(device, 100_000 if quick else 25_557_032, 20 if quick else 200),
        ),
        (f"folder -> {images['model']}", lambda: local_check(images, device, 2 if quick else 16, val_images)),
        ("divergence", lambda: divergence_check(dict(small, num_workers=4, lr=1e6), device)),
    ]
    on_ray = with_options(small, num_workers=8, fused_updates=True, jobs_per_call=2)
    ray = [
        ("ray fused", lambda: ray_check(on_ray, device, steps, test)),
        ("ray dana-slim", lambda: ray_check(dict(on_ray, algorithm="dana-slim"), device, steps, test)),
        ("ray 2 shards", lambda: ray_check(with_options(on_ray, server_shards=2), device, steps, test)),
        ("ray resume", lambda: ray_check(on_ray, device, steps, test, resume=True)),
    ]
    return local, ray


def ray_missing() -> str | None:
    """Why the Ray checks cannot run here, or None."""
    try:
        found = importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError) as error:
        return f"ray cannot be imported ({error})"
    return None if found else "ray is not installed"


def fmt(value: float, spec: str) -> str:
    return "-" if isinstance(value, float) and math.isnan(value) else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu: cpu checks the script itself")
    p.add_argument("--quick", action="store_true", help="tiny sizes (the tests' run)")
    args = p.parse_args(argv)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device: torch sees no CUDA device; run with --device cpu to check the script", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    cuda = f", CUDA {torch.version.cuda}" if torch.version.cuda else ""
    print(f"device: {name}; torch {torch.__version__}{cuda}; against the same steps on the CPU")
    print(
        f"tolerances: θ {TOLERANCE['theta']:g}, BatchNorm statistics and test loss {TOLERANCE['bn']:g} (relative); "
        f"test error {TOLERANCE['error_pp']:g} pp or {TOLERANCE['error_examples']} examples"
    )
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        local, on_ray = checks(tmp, device, args.quick)
        why = ray_missing()
        if why is not None:
            print(f"skipped: {', '.join(label for label, _ in on_ray)} ({why}; the other checks need no Ray)")
            on_ray = []
        print()
        print("| check | images/s | updates/s | θ | BN stats | test error % (dev / cpu) | test loss | result |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        failed = 0
        for label, check in local + on_ray:
            try:
                r = check()
            except Exception as error:
                r = dict(_plain(False), failure=f"{type(error).__name__}: {' '.join(str(error).split())[:200]}")
            failed += not r["ok"]
            result = "ok" if r["ok"] else "FAILED" + (f": {r['failure']}" if "failure" in r else "")
            print(
                f"| {label} | {fmt(r['images_s'], '.0f')} | {fmt(r['updates_s'], '.1f')} | {fmt(r['theta'], '.1e')} | "
                f"{fmt(r['bn'], '.1e')} | {r['error'] or '-'} | {fmt(r['loss'], '.1e')} | {result} |",
                flush=True,
            )
        total = len(local) + len(on_ray)
    print(f"\n{total - failed} of {total} checks ok in {time.perf_counter() - began:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
