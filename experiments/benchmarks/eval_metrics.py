"""Speed of the evaluation metrics on CPU: FID feature extraction and LFW TAR@FAR.

Why: FID features dominate the cost of an evaluation run, and the LFW threshold search is
run once per fold per method; this records what a CPU-only run costs and how much the
sorted-distance implementation saves over the classic per-threshold loop.

Run: .venv/bin/python experiments/benchmarks/eval_metrics.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from deid_eval.metrics.fid import FID
from deid_eval.metrics.lfw import lfw_verification

N_IMAGES, IMAGE_SIZE = 32, 128
BATCH_SIZES = (1, 16)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of `repeats` runs: the least disturbed by other work on a shared machine."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def fid_images_per_second(metric: FID, images: torch.Tensor, batch_size: int) -> float:
    metric.update(images[:batch_size], real=True)  # warm-up (allocator, kernels)
    start = time.perf_counter()
    for batch in images.split(batch_size):
        metric.update(batch, real=True)
    return images.shape[0] / (time.perf_counter() - start)


def synthetic_lfw(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """6,000 pairs laid out like pairs.txt: 10 folds of 300 matched + 300 mismatched."""
    rng = np.random.default_rng(seed)
    positives = np.clip(rng.normal(0.7, 0.25, (10, 300)), 0, 4)
    negatives = np.clip(rng.normal(1.7, 0.3, (10, 300)), 0, 4)
    distances = np.concatenate([positives, negatives], axis=1).reshape(-1)
    is_same = np.tile(np.repeat([True, False], 300), 10)
    folds = np.repeat(np.arange(10), 600)
    return distances, is_same, folds


def loop_lfw(distances: np.ndarray, is_same: np.ndarray, folds: np.ndarray) -> list[float]:
    """The classic shape: for each fold, evaluate every grid threshold one by one."""
    tars = []
    for k in range(10):
        train, test = folds != k, folds == k
        train_neg = distances[train & ~is_same]
        grid = [i * 0.001 for i in range(4000)]
        fars = [np.count_nonzero(train_neg < t) / train_neg.size for t in grid]
        if max(fars) < 1e-3:
            t_star = 0.0
        else:
            f_lo = max(f for f in fars if f <= 1e-3)
            t_lo = max(t for t, f in zip(grid, fars, strict=True) if f == f_lo)
            f_hi = min(f for f in fars if f > 1e-3)
            t_hi = min(t for t, f in zip(grid, fars, strict=True) if f == f_hi)
            t_star = t_lo + (1e-3 - f_lo) / (f_hi - f_lo) * (t_hi - t_lo)
        accuracies = [np.mean((distances[train] < i * 0.01) == is_same[train]) for i in range(400)]
        t_acc = int(np.argmax(accuracies)) * 0.01
        tars.append(np.mean(distances[test & is_same] < t_star))
        np.mean((distances[test] < t_acc) == is_same[test])
    return tars


def main() -> None:
    rows: list[tuple[str, str]] = []
    torch.manual_seed(0)
    images = torch.randint(0, 256, (N_IMAGES, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    metric = FID()  # the offline pytorch-fid FIDInceptionV3, CPU
    threads = torch.get_num_threads()
    for batch_size in BATCH_SIZES:
        speed = fid_images_per_second(metric, images, batch_size)
        rows.append(
            (
                f"FID features, {N_IMAGES} x {IMAGE_SIZE}px, batch {batch_size}, "
                f"CPU {threads} threads",
                f"{speed:.2f} images/s",
            )
        )

    pairs = synthetic_lfw()
    vectorised = best_time(lambda: lfw_verification(*pairs), repeats=5)
    start = time.perf_counter()
    loop_tars = loop_lfw(*pairs)
    loop = time.perf_counter() - start
    if not np.allclose(lfw_verification(*pairs).tar, loop_tars, rtol=0, atol=1e-12):
        raise RuntimeError("vectorised and loop TAR disagree")
    rows.append(
        ("LFW TAR@FAR + accuracy, 6,000 pairs: sorted + searchsorted", f"{vectorised * 1e3:.1f} ms")
    )
    rows.append(("LFW TAR@FAR + accuracy, 6,000 pairs: per-threshold loop", f"{loop * 1e3:.0f} ms"))
    rows.append(("LFW speed-up (loop / vectorised)", f"{loop / vectorised:.0f}x"))

    width = max(len(name) for name, _ in rows)
    print(f"| {'measurement'.ljust(width)} | result |")
    print(f"|{'-' * (width + 2)}|--------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")


if __name__ == "__main__":
    main()
