"""The demo's heavy stages, each driven by the project's own configs (as a user would run them):
train each method of `demo.methods.METHODS` on the demo photos, anonymize a group photo and a
video, and evaluate the methods against the baselines. Every stage reuses what an earlier
(possibly interrupted) demo left: training resumes from its last.ckpt, finished inputs are not
rebuilt. This package sits above the core, the methods and the evaluation suite: it is the one
place that drives all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from tqdm import tqdm

from deid.media import write_image
from demo.methods import DemoMethod
from demo.scenes import group_photo, write_moving_faces_video

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
BASELINES = ("original", "blur9_px", "blur17_px", "pixel8", "pixel16", "blackbox", "maskout")
ANONYMIZE_BASELINES = ("blur",)  # the anonymize default, beside the trained methods


@dataclass(frozen=True)
class Suite:
    """How the demo scores the methods of one `DemoMethod.suite`."""

    title: str
    overrides: tuple[str, ...]
    baselines: tuple[str, ...]


SUITES = {
    "faces": Suite(
        "CIAGAN crops of the demo validation photos (CIAGAN Tables 2 and 4)",
        ("data=demo", "k=1..5", "metrics.align=ciagan"),  # CelebA-like crops, as the paper
        BASELINES,
    ),
    "bodies": Suite(
        "silhouette k-NN re-identification on the demo validation photos (VQGAN Table I)",
        ("data=demo_persons", "metrics=bodies", "k=1..10"),  # persons from MediaPipe
        ("blur", "blackbox"),  # the paper's face blurring and face black box
    ),
}


def _compose(config: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config, overrides=overrides)


def run_training(
    method: DemoMethod, demo_root: Path, out: Path, max_steps: int | None = None
) -> dict[str, dict[str, float]]:
    """`python train.py experiment=<e>` for each of the method's demo experiments, in order,
    each into `out/training/<e>` (resuming its last.ckpt when an earlier demo was interrupted);
    returns each stage's final logged metrics."""
    from deid.training import train

    metrics = {}
    for experiment in method.experiments:
        overrides = [
            f"experiment={experiment}",
            f"data.root={demo_root.resolve()}",
            f"paths.output_dir={(out / method.folder(experiment)).resolve()}",
        ]
        overrides += [
            f"{key}={(out / method.folder(stage) / 'checkpoints' / 'last.ckpt').resolve()}"
            for key, stage in method.stage_inputs
            if experiment == method.experiments[-1]
        ]
        if max_steps is not None:
            overrides.append(f"trainer.max_steps={max_steps}")
        metrics[experiment] = train(_compose("train", overrides))
    return metrics


def demo_inputs(demo_root: Path, folder: Path) -> Path:
    """A group photo and a moving-faces video made of demo photos (written once)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "group.png").is_file():
        write_image(folder / "group.png", group_photo(demo_root))
    if not (folder / "moving_faces.mp4").is_file():
        write_moving_faces_video(demo_root, folder / "moving_faces.mp4")
    return folder


def run_anonymization(
    inputs: Path, out_dir: Path, checkpoints: dict[DemoMethod, Path]
) -> dict[str, dict[str, Any]]:
    """`python anonymize.py` over the demo inputs with each trained method (its target: faces
    or bodies) and with blur, the default."""
    from deid.anonymizers.runner import anonymize

    runs: list[tuple[str, list[str]]] = [
        (
            method.model,
            [
                f"model={method.model}",
                f"ckpt={ckpt.resolve()}",
                f"target={method.target}",
                *method.anonymize_overrides,
            ],
        )
        for method, ckpt in checkpoints.items()
    ]
    runs += [(name, [f"model={name}"]) for name in ANONYMIZE_BASELINES]
    summaries = {}
    for name, overrides in runs:
        common = [f"in={inputs.resolve()}", f"out={(out_dir / name).resolve()}"]
        common += ["camera=demo-camera-1", "audit=true"]
        summaries[name] = anonymize(_compose("anonymize", [*overrides, *common]))
    return summaries


def run_evaluation(
    demo_root: Path, out_dir: Path, suite: str, checkpoints: dict[DemoMethod, Path]
) -> Path:
    """Score the suite's baselines, then each trained method of that suite, with the
    evaluation suite, and merge the runs into one report under `out_dir/<suite>`."""
    from deid_eval.report import write_report
    from deid_eval.suite import evaluate

    spec = SUITES[suite]
    trained = {m.model: ckpt for m, ckpt in checkpoints.items() if m.suite == suite}
    folder = out_dir / suite
    results = []
    for model in tqdm((*spec.baselines, *trained), desc=f"evaluation ({suite})", unit="method"):
        overrides = [f"model={model}", f"data.root={demo_root.resolve()}", *spec.overrides]
        if model in trained:
            overrides.append(f"ckpt={trained[model].resolve()}")
        results.append(evaluate(_compose("evaluate", overrides), run_dir=folder / model))
    write_report(results, folder)
    return folder / "tables.md"
