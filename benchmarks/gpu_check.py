"""Every CUDA path, checked against its CPU counterpart and timed: the script to run first on a GPU.

    python benchmarks/gpu_check.py [--device cuda] [--quick]

On one GPU in under 8 minutes (an H200: see the README for its figures) it runs:

1. ``local N=16 vmap``: the local executor with 16 logical workers and ``vmap_jobs: 16`` (ResNet-20,
   CIFAR-shaped data in the ``arrays`` format);
2. ``fused update``: the same trial with ``fused_updates: true`` (the rule's update compiled for the
   device), and the DANA update alone at ResNet-50's size (25.6M floats);
3. ``ray 0.25 GPU/actor``: the Ray executor with 4 gradient actors sharing the GPU (``gpus_per_actor:
   0.25``), 8 logical workers;
4. ``folder -> GPU``: the folder input pipeline (``imagenet`` layout, JPEG files decoded on CPU threads)
   feeding ResNet-50 on the device;
5. ``divergence``: a learning rate that makes the run diverge.

Each path's numbers after a few steps are compared with the same steps on the CPU (the seeded job protocol
makes them the same computation; float rounding differs between devices, so the check is the relative
distance of the parameter vectors, ``|x_gpu - x_cpu| / |x_cpu|``, against a tolerance), and each is timed
on the device: images/s (gradients x batch) and updates/s. Exit code 1 if a check fails. ``--device cpu``
runs the same script with the CPU on both sides (the tests do, with ``--quick``, so it cannot rot where no
GPU is).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from dana_ray.algorithms import make_algorithm
from dana_ray.config import TrialConfig, section_of, set_options
from dana_ray.engine.local import LocalExecutor

TOLERANCE = 1e-3  # relative distance of GPU and CPU parameters after the compared steps


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


def distance(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def timed_epoch(executor: Any, steps: int, device: str) -> float:
    sync(device)
    started = time.perf_counter()
    executor.run_epoch(steps)
    sync(device)
    return time.perf_counter() - started


def compare_local(config: dict, device: str, compare_steps: int, timed_steps: int) -> dict:
    """The local executor on ``device`` vs on the CPU after ``compare_steps``; then ``timed_steps`` timed."""
    cfg = TrialConfig.from_dict(with_options(config, device=device))
    on_device = LocalExecutor(cfg)
    on_cpu = LocalExecutor(TrialConfig.from_dict(with_options(config, device="cpu", fused_updates=False)))
    row_device, row_cpu = on_device.run_epoch(compare_steps), on_cpu.run_epoch(compare_steps)
    diff = distance(on_device.master.rule.params, on_cpu.master.rule.params)
    same_end = row_device["diverged"] == row_cpu["diverged"]
    on_cpu.close()
    seconds = timed_epoch(on_device, timed_steps, device)
    on_device.close()
    return {
        "diff": diff,
        "ok": same_end and diff < TOLERANCE,
        "updates_s": timed_steps / seconds,
        "images_s": timed_steps * cfg.batch_size / seconds,
    }


def check_fused_update(device: str, d: int, updates: int) -> dict:
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
        to = device if side == "device" else "cpu"
        moved = [g.to(to) for g in grads]
        for k in range(updates):
            rule.apply(k % n, moved[k % 2], point=rule.params_for(k % n), delay=n - 1)
    diff = distance(rules["device"].params, rules["cpu"].params)
    rule, moved = rules["device"], [g.to(device) for g in grads]
    points = [rule.params_for(i) for i in range(n)]
    sync(device)
    started, timed = time.perf_counter(), max(updates, 50)
    for k in range(timed):
        rule.apply(k % n, moved[k % 2], point=points[k % n], delay=n - 1)
        rule.params_for(k % n, out=points[k % n])
    sync(device)
    return {
        "diff": diff,
        "ok": diff < TOLERANCE,
        "updates_s": timed / (time.perf_counter() - started),
        "images_s": float("nan"),
    }


def check_ray(config: dict, device: str, compare_steps: int, timed_steps: int) -> dict:
    """The Ray executor, 4 actors at a quarter of a GPU each, vs the local executor on the CPU."""
    import ray

    from dana_ray.engine.ray.executor import RayExecutor

    gpus = 1 if device.startswith("cuda") else 0
    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=max(4, os.cpu_count() or 4),
            num_gpus=gpus,
            include_dashboard=False,
            log_to_driver=False,
        )
    settings = with_options(
        config, device=device, num_actors=4, cpus_per_actor=0.5, server_cpus=1, gpus_per_actor=0.25 if gpus else 0.0
    )
    executor = RayExecutor(TrialConfig.from_dict(settings), "gpu-check")
    reference = LocalExecutor(TrialConfig.from_dict(with_options(config, device="cpu")))
    try:
        executor.run_epoch(compare_steps)
        reference.run_epoch(compare_steps)
        diff = distance(executor.state_dict()["rule"]["params"], reference.master.rule.params)
        seconds = timed_epoch(executor, timed_steps, device)
    finally:
        executor.close()
        reference.close()
    return {
        "diff": diff,
        "ok": diff < TOLERANCE,
        "updates_s": timed_steps / seconds,
        "images_s": timed_steps * config["batch_size"] / seconds,
    }


def check_divergence(config: dict, device: str) -> dict:
    rows = {}
    for side in (device, "cpu"):
        executor = LocalExecutor(TrialConfig.from_dict(with_options(config, device=side)))
        rows[side] = executor.run_epoch(50)
        executor.close()
    ok = (
        rows[device]["diverged"] and rows["cpu"]["diverged"] and rows[device]["test_error"] == rows["cpu"]["test_error"]
    )
    return {"diff": float("nan"), "ok": bool(ok), "updates_s": float("nan"), "images_s": float("nan")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu: cpu checks the script itself")
    p.add_argument("--quick", action="store_true", help="tiny sizes (the tests' run)")
    args = p.parse_args(argv)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device: torch sees no CUDA device; run with --device cpu to check the script", file=sys.stderr)
        return 2
    quick = args.quick
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    print(f"device: {name}; torch {torch.__version__}; tolerance {TOLERANCE:g} (relative parameter distance)")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        arrays = cifar_like_arrays(tmp, 512 if quick else 8192, 128 if quick else 1024)
        small = with_options(
            {},
            model="cnn" if quick else "resnet20",
            dataset="arrays",
            data_dir=arrays,
            epochs=1,
            batch_size=16 if quick else 128,
            lr=0.05,
            lr_decay_epochs=[],
            algorithm="dana",
            schedule="round-robin",
            seed=0,
            cpu_threads=None,
        )
        compare = 16
        timed = 32 if quick else 640
        folder = jpeg_folder(os.path.join(tmp, "folder"), 4, 16 if quick else 96, 48 if quick else 160)
        checks = [
            (
                "local N=16 vmap_jobs=16",
                lambda: compare_local(with_options(small, num_workers=16, vmap_jobs=16), device, compare, timed),
            ),
            (
                "local N=16 fused_updates",
                lambda: compare_local(with_options(small, num_workers=16, fused_updates=True), device, compare, timed),
            ),
            (
                f"fused DANA update, d={(0.1 if quick else 25.6):g}M",
                lambda: check_fused_update(device, 100_000 if quick else 25_600_000, 20 if quick else 200),
            ),
            (
                "ray N=8, 4 actors x 0.25 GPU",
                lambda: check_ray(dict(small, num_workers=8), device, compare, timed // 2),
            ),
            (
                "folder -> ResNet-50" if not quick else "folder -> cnn",
                lambda: compare_local(
                    dict(
                        small,
                        model="cnn" if quick else "resnet50",
                        dataset="imagenet",
                        data_dir=folder,
                        dataset_options={"image_size": 32 if quick else 128, "threads": min(8, os.cpu_count() or 1)},
                        batch_size=16 if quick else 64,
                        num_workers=1,
                        algorithm="baseline",
                    ),
                    device,
                    2,
                    8 if quick else 60,
                ),
            ),
            ("divergence (lr 1e6)", lambda: check_divergence(dict(small, num_workers=4, lr=1e6), device)),
        ]
        print(f"{'path':34} {'images/s':>10} {'updates/s':>10} {'|gpu-cpu|/|cpu|':>16}  check")
        failed = 0
        for label, check in checks:
            try:
                r = check()
            except Exception as error:
                r = {
                    "ok": False,
                    "diff": float("nan"),
                    "updates_s": float("nan"),
                    "images_s": float("nan"),
                    "error": f"{type(error).__name__}: {' '.join(str(error).split())[:160]}",
                }
            failed += not r["ok"]
            print(
                f"{label:34} {r['images_s']:>10.0f} {r['updates_s']:>10.1f} {r['diff']:>16.2e}  "
                f"{'ok' if r['ok'] else 'FAILED'}{'  ' + r['error'] if 'error' in r else ''}",
                flush=True,
            )
    print(f"{len(checks) - failed} of {len(checks)} paths ok in {time.perf_counter() - began:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
