"""Benchmark: exact k-NN for re-identification metrics, chunked torch vs scikit-learn brute force.

Why: ReIdRecall and SilhouetteKNNReId rank every query against the whole gallery; this shows
that `deid_eval.metrics.knn.chunked_topk` handles a 200,000 x 2,048 float32 gallery in a
bounded amount of extra memory, how its speed compares with scikit-learn's
`NearestNeighbors(algorithm="brute")` in the same process, and that both return the same
neighbours. Peak memory is the process's resident high-water mark above the resident size
before each call (Linux `/proc/self/clear_refs`), which counts torch and numpy alike; the
gallery itself (the inputs) is not counted.

    python experiments/benchmarks/eval_knn.py [--gallery 200000 --queries 1000 --dim 2048]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from deid_eval.metrics.knn import chunked_topk


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _measure(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float, float | None]:
    """(result, seconds, peak extra resident MiB or None when the peak cannot be reset)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = _status_kib("VmRSS")
    except OSError:
        before = None
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    if before is None:
        return result, seconds, None
    return result, seconds, max(_status_kib("VmHWM") - before, 0) / 1024


def _torch_knn(queries: np.ndarray, gallery: np.ndarray, *, k: int, dtype: torch.dtype):
    def run() -> np.ndarray:
        _, idx = chunked_topk(torch.from_numpy(queries), torch.from_numpy(gallery), k, dtype=dtype)
        return idx.numpy()

    return run


def _sklearn_knn(queries: np.ndarray, gallery: np.ndarray, *, k: int):
    from sklearn.neighbors import NearestNeighbors

    def run() -> np.ndarray:
        return NearestNeighbors(algorithm="brute").fit(gallery).kneighbors(queries, k)[1]

    return run


def _agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Fraction of queries with identical neighbour lists, and with identical sets."""
    rows = float((a == b).all(axis=1).mean())
    sets = float(np.mean([set(x) == set(y) for x, y in zip(a, b, strict=True)]))
    return rows, sets


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark, print a markdown table, and return its rows.

    `argv=None` means the defaults (not `sys.argv`), so other scripts can call `main()`.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--dim", type=int, default=2_048)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exact", action="store_true", help="also time the float64 path")
    parser.add_argument("--skip-sklearn", action="store_true")
    args = parser.parse_args([] if argv is None else argv)

    rng = np.random.default_rng(args.seed)
    gallery = rng.standard_normal((args.gallery, args.dim), dtype=np.float32)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    methods = {"torch chunked_topk float32": partial(_torch_knn, k=args.k, dtype=torch.float32)}
    if args.exact:
        methods["torch chunked_topk float64"] = partial(_torch_knn, k=args.k, dtype=torch.float64)
    if not args.skip_sklearn:
        methods["sklearn NearestNeighbors brute"] = partial(_sklearn_knn, k=args.k)
    for make in methods.values():  # warm up thread pools and BLAS buffers, unmeasured
        make(queries[:8], gallery[:512])()
    results = {name: _measure(make(queries, gallery)) for name, make in methods.items()}
    reference = next(iter(results.values()))[0]
    first_seconds = next(iter(results.values()))[1]
    rows = []
    for name, (indices, seconds, peak_mib) in results.items():
        same_rows, same_sets = _agreement(indices, reference)
        rows.append(
            {
                "method": name,
                "seconds": seconds,
                "x torch float32": seconds / first_seconds,
                "peak extra MiB": peak_mib,
                "same lists": same_rows,
                "same sets": same_sets,
            }
        )

    print(
        f"exact k-NN, k={args.k}: {args.queries:,} queries x {args.gallery:,} gallery x "
        f"{args.dim:,}-d float32 (gallery {gallery.nbytes / 2**30:.2f} GiB), "
        f"torch threads {torch.get_num_threads()}, process max RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    print("| method | seconds | x torch f32 | peak extra MiB | same lists | same sets |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        peak = "n/a" if row["peak extra MiB"] is None else f"{row['peak extra MiB']:.0f}"
        print(
            f"| {row['method']} | {row['seconds']:.2f} | {row['x torch float32']:.2f} | {peak} "
            f"| {row['same lists']:.4f} | {row['same sets']:.4f} |"
        )
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
