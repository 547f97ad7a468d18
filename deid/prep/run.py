"""One preprocessing run, whatever it crops: the dataset, the resumable loop, the summary.

A driver (`deid.prep.faces`, `deid.prep.bodies`) turns the dataset into tasks (one per image,
each with a `source`: the image id) and names a worker; `run_preprocessing` opens the folder's
manifest (checking its settings, repairing what a crash left), skips the images already done,
feeds the rest through the worker pool with a progress bar, finalizes the files and writes
`summary.json`:

`images` (considered, after `limit`), `done` (processed by this run), `skipped_already_done`,
`<noun>` (rows in the manifest, e.g. `faces`), `new_<noun>` (added by this run),
`images_with_<noun>`, `failures` (failure rows by reason), `workers`, `seconds` (the whole
run), `processing_seconds` (starting the workers and processing the images),
`images_per_second` (= done / processing_seconds), `out`, `manifest`.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from deid.errors import DeidError
from deid.media import atomic_write
from deid.prep.manifest import MANIFEST, SUMMARY, Entry, ManifestWriter
from deid.prep.pool import pool_size, requested_workers, run_tasks


class Task(Protocol):
    @property
    def source(self) -> str: ...


def dataset_records(cfg: DictConfig) -> list[Any]:
    """The records of `cfg.data` (`deid.datasets.build_dataset`), with image ids checked to be
    relative paths inside the dataset (they name the crop files)."""
    # imported here, not at the top: the dataset readers pull in torch (~4 s), which worker
    # processes (they re-import the driver module under spawn) do not need
    from deid.datasets.registry import build_dataset

    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert isinstance(data, dict)
    records = build_dataset(data)
    unsafe = [
        r.image_id
        for r in records
        if PurePosixPath(r.image_id).is_absolute() or ".." in PurePosixPath(r.image_id).parts
    ]
    if unsafe:
        raise DeidError(f"image id {unsafe[0]!r} is not a relative path inside the dataset")
    return records


def dataset_settings(cfg: DictConfig) -> dict[str, Any]:
    """The dataset part of settings.json: `cfg.data` resolved, its root absolute, without the
    evaluation subset (which does not change what is cropped)."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert isinstance(data, dict)
    data.pop("eval_subset", None)
    data["root"] = str(Path(str(data["root"])).resolve())
    return data


def crop_stems(sources: Sequence[str]) -> dict[str, str]:
    """source -> crop stem: the id without its suffix, or with `.ext` -> `_ext` where two ids
    differ only in their suffix (`a.jpg`, `a.png`)."""
    plain = {s: str(PurePosixPath(s).with_suffix("")) for s in sources}
    counts = Counter(plain.values())
    return {
        s: stem if counts[stem] == 1 else stem + PurePosixPath(s).suffix.replace(".", "_")
        for s, stem in plain.items()
    }


def run_preprocessing(
    cfg: DictConfig,
    *,
    entry_type: type[Entry],
    tasks: Sequence[Task],
    make_worker: Callable[[Any], Callable[[Any], Any]],
    worker_settings: Any,
    settings: dict[str, Any],
    noun: str,
    tasks_per_worker: int = 1,
    before_summary: Callable[[], None] | None = None,
    started: float | None = None,
) -> dict[str, Any]:
    """Process `tasks` into `cfg.out` (see the module docstring); returns the summary.

    `cfg` supplies `out`, `workers`, `start_method` and `retry_failures`; `settings` is the
    folder's settings.json record; `before_summary` runs after the files are final;
    `started` is when the driver began (reading the dataset), for the summary's `seconds`.
    """
    started = time.perf_counter() if started is None else started
    out_dir = Path(str(cfg.out))
    workers = requested_workers(cfg.get("workers"))
    retry = [t.source for t in tasks] if cfg.get("retry_failures") else []
    with ManifestWriter(out_dir, entry_type, settings, retry=retry) as writer:
        if writer.repaired:
            print(f"repaired {out_dir / MANIFEST}: dropped {writer.repaired} unfinished rows")
        done = writer.done
        todo = [t for t in tasks if t.source not in done]
        before = writer.rows
        failed = 0
        start_method = str(cfg.get("start_method") or "spawn")
        interval = 0.1 if sys.stderr.isatty() else 30.0  # few lines in batch-job logs
        bar = tqdm(total=len(todo), desc=f"preprocess {noun}", unit="image", mininterval=interval)
        processing_started = time.perf_counter()
        results = run_tasks(
            todo, make_worker, worker_settings, workers, start_method, tasks_per_worker
        )
        with bar:
            try:
                for result in results:
                    writer.add(result.entries, result.failures)
                    failed += bool(result.failures)
                    postfix = {noun: writer.rows - before, "failed": failed}
                    bar.set_postfix(postfix, refresh=False)
                    bar.update(1)
            except KeyboardInterrupt:
                bar.close()
                print(
                    f"interrupted after {bar.n} of {len(todo)} images (saved in {out_dir}); "
                    "run the same command again to continue",
                    file=sys.stderr,
                )
                raise
        processing = time.perf_counter() - processing_started
        writer.finalize()
        if before_summary is not None:
            before_summary()
        summary = {
            "out": str(out_dir),
            "manifest": str(out_dir / MANIFEST),
            "images": len(tasks),
            "done": len(todo),
            "skipped_already_done": len(tasks) - len(todo),
            noun: writer.rows,
            f"new_{noun}": writer.rows - before,
            f"images_with_{noun}": writer.images_with_rows,
            "failures": writer.failure_counts(),
            "workers": pool_size(len(todo), workers, tasks_per_worker),
            "seconds": round(time.perf_counter() - started, 3),
            "processing_seconds": round(processing, 3),
            "images_per_second": round(len(todo) / processing, 2) if todo else None,
        }
        with atomic_write(out_dir / SUMMARY) as handle:
            json.dump(summary, handle, indent=2)
    print_summary(summary, noun)
    return summary


def print_summary(summary: dict[str, Any], noun: str) -> None:
    failures = summary["failures"]
    failed = ", ".join(f"{n} {reason}" for reason, n in failures.items()) or "none"
    rate = summary["images_per_second"]
    speed = f" in {summary['processing_seconds']:.1f} s ({rate} images/s)" if rate else ""
    print(
        f"{summary['images']} images: {summary['done']} processed{speed}, "
        f"{summary['skipped_already_done']} already done; "
        f"{summary[noun]} {noun} from {summary[f'images_with_{noun}']} images; "
        f"failures: {failed}\n"
        f"manifest: {summary['manifest']} (failures.csv and summary.json beside it)"
    )


def run_from_hydra(task: Callable[[DictConfig], Any], cfg: DictConfig) -> None:
    """Run a driver from its Hydra entry point: user errors in one line (exit 2), Ctrl-C
    exits 130 (what is done so far is saved; the same command continues)."""
    from deid.hydra_entry import run_task

    try:
        run_task(task, cfg)
    except KeyboardInterrupt:
        sys.exit(130)
