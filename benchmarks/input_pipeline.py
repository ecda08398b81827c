"""The input pipeline of a file-decoded data set (``imagenet``, any ``imagefolder``), measured in one run on a
temporary ImageNet-like folder of JPEGs made here.

    python benchmarks/input_pipeline.py [--images 192] [--batch 32] [--image-px 400 300] [--size 224]
                                        [--model cnn] [--model-size 64] [--steps 6]

1. Decode rate: images/s a gradient actor's batches are made at with c decode threads, over 1 thread
   (goal: at least 0.8 x c for c = 2).
2. Waiting: a gradient worker (1 torch thread for the model, 1 decode thread: the 2 cores of this machine)
   computing one logical worker's gradients at ``--model-size`` px (a CPU computes a small model at a
   small size about as fast as a GPU computes ResNet-50 at 224 px relative to decoding), batches made on
   demand vs prepared ahead (``prefetch_batches``): the fraction of each step spent waiting for its batch
   (goal: under 5% when decoding a batch takes less time than computing on it, the printed decode/compute).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks.tables import Record, add_json_option
from dana_ray.config import TrialConfig
from dana_ray.data import Streams, load_dataset
from dana_ray.engine.build import build_replica
from dana_ray.engine.master import Job


def make_jpeg_folder(root: str, images: int, width: int, height: int, classes: int = 4) -> str:
    """``root/{train,val}/<class>/<k>.jpg``: smooth random colour fields with noise (JPEG quality 90)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", images), ("val", classes)):
        for k in range(count):
            folder = os.path.join(root, split, f"n{k % classes:08d}")
            os.makedirs(folder, exist_ok=True)
            low = rng.uniform(0, 255, (height // 16 + 1, width // 16 + 1, 3))
            field = np.kron(low, np.ones((16, 16, 1)))[:height, :width]
            pixels = np.clip(field + rng.normal(0, 12, field.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, f"{k}.jpg"), quality=90)
    return root


def decode_rate(root: str, size: int, batch: int, threads: int, batches: int, repeats: int = 3) -> float:
    """Images/s of training batches (random-resized crop + flip + normalise) made as a gradient actor with
    ``threads`` CPUs makes them: that many decode threads and torch threads. The best of ``repeats`` passes
    (this machine is shared: the best pass is the least disturbed)."""
    torch.set_num_threads(threads)
    data = load_dataset("imagenet", root, image_size=size, threads=threads)
    streams = Streams(data.train, batch, seed=0, prefetch=0)
    streams.batch(0, 0)  # warm: the thread pool, PIL's decoder
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        for k in range(1, batches + 1):
            streams.batch(0, k)
        best = max(best, batches * batch / (time.perf_counter() - started))
    return best


def gradient_steps(root: str, size: int, batch: int, model: str, prefetch: int, steps: int) -> dict[str, float]:
    """Seconds per gradient step of one logical worker and the fraction of it spent waiting for batches."""
    cfg = TrialConfig.from_dict(
        dict(
            dataset="imagenet",
            data_dir=root,
            dataset_options={"image_size": size, "threads": 1},
            model=model,
            batch_size=batch,
            compute={"prefetch_batches": prefetch, "cpu_threads": 1, "device": "cpu"},
        )
    )
    torch.set_num_threads(1)
    worker = build_replica(cfg)
    point, _ = worker.model.initial_state()
    try:
        worker.compute(Job(0, 0, point, -1))  # warm
        worker.streams.waited_s = 0.0
        started = time.perf_counter()
        for k in range(1, steps + 1):
            worker.compute(Job(0, k, point, -1))
        total = time.perf_counter() - started
        return {"step_s": total / steps, "waiting": worker.streams.waited_s / total}
    finally:
        worker.close()


def compute_only(root: str, size: int, batch: int, model: str, steps: int) -> float:
    """Seconds per gradient step on a batch already in memory."""
    cfg = TrialConfig.from_dict(
        dict(
            dataset="imagenet",
            data_dir=root,
            dataset_options={"image_size": size, "threads": 1},
            model=model,
            batch_size=batch,
            compute={"cpu_threads": 1, "device": "cpu"},
        )
    )
    torch.set_num_threads(1)
    worker = build_replica(cfg)
    point, _ = worker.model.initial_state()
    x, y = worker.streams.batch(0, 0)
    worker.model.gradient(point, x, y, 0.0)  # warm
    started = time.perf_counter()
    for _ in range(steps):
        worker.model.gradient(point, x, y, 0.0)
    worker.close()
    return (time.perf_counter() - started) / steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--image-px", type=int, nargs=2, default=[400, 300], metavar=("W", "H"))
    parser.add_argument("--size", type=int, default=224, help="the side the model sees")
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--model-size", type=int, default=64, help="the side the model sees in part 2")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    add_json_option(parser)
    args = parser.parse_args(argv)
    record = Record("input_pipeline")

    with tempfile.TemporaryDirectory() as root:
        make_jpeg_folder(root, args.images, *args.image_px)
        kb = np.mean([os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs]) / 1024
        record.note(
            f"{args.images} JPEGs of {args.image_px[0]}x{args.image_px[1]} px ({kb:.0f} KB), batches of "
            f"{args.batch} at {args.size} px, {os.cpu_count()} cores"
        )
        batches = max(1, args.images // args.batch - 1)
        rates = {t: decode_rate(root, args.size, args.batch, t, batches) for t in args.threads}
        decoding = record.table(
            "decoding a batch on threads: images/s", [("decode threads", "d"), ("images/s", ".0f"), ("over 1", ".2f")]
        )
        for t, rate in rates.items():
            decoding.add(t, rate, rate / rates[args.threads[0]])

        size = args.model_size
        compute = compute_only(root, size, args.batch, args.model, args.steps)
        decode = args.batch / decode_rate(root, size, args.batch, 1, batches)
        record.note(
            f"{args.model} at {size} px, 1 torch thread + 1 decode thread: compute {compute * 1e3:.0f} ms/step, "
            f"decode {decode * 1e3:.0f} ms/batch (decode/compute {decode / compute:.2f})"
        )
        steps = record.table(
            "a gradient step with the next batches made ahead, or not",
            [("prefetch_batches", "d"), ("ms/step", ".0f"), ("waiting", ".1%")],
        )
        for prefetch in (0, 2):
            row = gradient_steps(root, size, args.batch, args.model, prefetch, args.steps)
            steps.add(prefetch, row["step_s"] * 1e3, row["waiting"])
    record.save(args.json, argv)


if __name__ == "__main__":
    main()
