"""The worker pool of preprocessing: tasks in, results out, on N processes or in this one.

A worker is built once per process by `make_worker(settings)` (detectors, landmark models and
segmenters hold native objects that cannot be pickled, so each process loads its own); tasks
and results travel between processes, so they are plain picklable dataclasses.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import cv2

from deid.errors import DeidError

T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S")

# Exists only inside worker processes: the worker `_init_worker` built there.
_worker: Callable[[Any], Any] | None = None


def available_cores() -> int:
    """Cores this process may run on (respects CPU affinity, e.g. SLURM or taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def requested_workers(value: Any) -> int:
    """The `workers=` setting: null = every available core; otherwise at least 1."""
    if value is None:
        return available_cores()
    workers = int(value)
    if workers < 1:
        raise DeidError(f"workers={value} must be at least 1 (or null for every core)")
    return workers


def pool_size(tasks: int, workers: int, tasks_per_worker: int = 1) -> int:
    """Processes a run of `tasks` uses: at most `workers`, at most one per `tasks_per_worker`
    tasks (a process takes seconds to start), at least 1; 0 when there is nothing to do."""
    if tasks == 0:
        return 0
    return max(1, min(workers, -(-tasks // tasks_per_worker)))


def _init_worker(make_worker: Callable[[S], Callable[[T], R]], settings: S) -> None:
    global _worker
    cv2.setNumThreads(1)  # the pool is the parallelism; avoid oversubscribing the cores
    _worker = make_worker(settings)


def _work(task: Any) -> Any:
    assert _worker is not None, "worker not initialised"
    return _worker(task)


def run_tasks(
    tasks: Sequence[T],
    make_worker: Callable[[S], Callable[[T], R]],
    settings: S,
    workers: int,
    start_method: str = "spawn",
    tasks_per_worker: int = 1,
) -> Iterator[R]:
    """Results of `tasks` in completion order, on `pool_size(...)` processes (1 = this one).

    `make_worker` must be importable by name (a class or module-level function) for `spawn`.
    """
    processes = pool_size(len(tasks), workers, tasks_per_worker)
    if processes == 0:
        return
    if processes == 1:
        worker = make_worker(settings)
        for task in tasks:
            yield worker(task)
        return
    chunksize = max(1, min(16, len(tasks) // (processes * 8)))
    context = multiprocessing.get_context(start_method)
    with context.Pool(
        processes, initializer=_init_worker, initargs=(make_worker, settings)
    ) as pool:
        yield from pool.imap_unordered(_work, tasks, chunksize=chunksize)
