"""`make demo` (`python -m demo`): the main job end to end on the demo photos, under 25 minutes
on 2 CPU cores (README: the measured stage times).

1. perception: every face detector, 68-point landmarks, person masks and identity embeddings
   on scikit-image's astronaut and one photo per demo identity -> `perception.png/.json`.
2. training: each trained method of `demo.methods.METHODS` with its demo experiments
   (`train.py experiment=ciagan_demo`; the three VQGAN stages) -> `training/<experiment>/`
   (checkpoints, sample grids).
3. anonymization: a group photo and a moving-faces video made of demo photos, with each trained
   method (CIAGAN the faces, VQGAN the whole persons) and blur (the default), audited ->
   `inputs/`, `anonymized/<method>/`.
4. evaluation, per suite (`demo.stages.SUITES`): the face methods against the classic baselines
   on CIAGAN crops of the demo validation photos (detection rate, Recall@k, FID, KID), and
   VQGAN against face blur and face black box by silhouette k-NN re-identification (VQGAN
   Table I) -> `evaluation/<suite>/tables.md` + plots.
5. `report.md` (everything above, with pictures), all under `outputs/demo/`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deid.datasets import demo as demo_set
from deid.errors import DeidError
from demo.methods import METHODS
from demo.perception import EMBEDDERS, run_perception
from demo.report import write_demo_report
from demo.stages import (
    SUITES,
    demo_inputs,
    run_anonymization,
    run_evaluation,
    run_training,
)


@contextmanager
def _stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    """Announce one demo stage and record how long it took."""
    print(f"\n=== demo: {name} ===", flush=True)
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo-root", type=Path, default=demo_set.DEFAULT_ROOT)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--max-steps", type=int, default=None, help="override the training length")
    parser.add_argument("--skip-training", action="store_true", help="reuse OUT/training")
    parser.add_argument("--skip-evaluation", action="store_true")
    args = parser.parse_args(argv)
    demo_root = demo_set.require(args.demo_root)
    out: Path = args.out
    timings: dict[str, float] = {}

    with _stage("perception", timings):
        result = run_perception(demo_root, out)
        found = sum(bool(r["faces"]["dlib_hog"]) for r in result["images"])
        print(f"faces found by dlib HOG in {found}/{len(result['images'])} sample images")
        for name in EMBEDDERS:
            stats = result["identity"][name]
            print(
                f"{name}: same-identity sq. distance "
                f"{stats['mean_sq_distance_same_identity']:.3f}, other identities "
                f"{stats['mean_sq_distance_other_identity']:.3f}, 1-NN accuracy "
                f"{stats['leave_one_out_1nn_accuracy']:.2f}"
            )

    trainings: dict[str, dict[str, Any]] = {}
    if not args.skip_training:
        with _stage("training", timings):
            for method in METHODS:
                metrics = run_training(method, demo_root, out, args.max_steps)
                trainings[method.model] = {
                    "runs": {e: f"{method.folder(e)}/" for e in method.experiments},
                    "checkpoint": str(method.checkpoint),
                    "metrics": metrics,
                }
    checkpoints = {method: out / method.checkpoint for method in METHODS}
    for method, ckpt in checkpoints.items():
        if not ckpt.is_file():
            raise DeidError(
                f"no {method.model} checkpoint at {ckpt}: run the demo without --skip-training"
            )

    with _stage("anonymization", timings):
        inputs = demo_inputs(demo_root, out / "inputs")
        summaries = run_anonymization(inputs, out / "anonymized", checkpoints)

    tables: dict[str, Path] = {}
    if not args.skip_evaluation:
        with _stage("evaluation", timings):
            for suite in SUITES:
                tables[suite] = run_evaluation(demo_root, out / "evaluation", suite, checkpoints)
                print(tables[suite].read_text())

    report = write_demo_report(out, timings, trainings, inputs, summaries, tables)
    print(f"\ndemo finished in {sum(timings.values()) / 60:.1f} min; report: {report}")
    return 0


if __name__ == "__main__":
    from deid.cli_utils import run_cli

    sys.exit(run_cli(lambda: main()))
