"""The demo's heavy stages, each driven by the project's own configs (as a user would run them):
train each method of `demo.methods.METHODS` on the demo photos, anonymize a group photo and a
video, and evaluate the methods against the baselines. Every stage reuses what an earlier
(possibly interrupted) demo left: training resumes from its last.ckpt, finished inputs are not
rebuilt. This package sits above the core, the methods and the evaluation suite: it is the one
place that drives all three.
"""

from __future__ import annotations

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
ANONYMIZE_BASELINES = (
    "blur",
)  # the anonymize default  # shown beside the trained methods in the anonymization stage


def _compose(config: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config, overrides=overrides)


def run_training(
    method: DemoMethod, demo_root: Path, out_dir: Path, max_steps: int | None = None
) -> dict[str, float]:
    """`python train.py experiment=<method's demo experiment>` into `out_dir` (resuming its
    last.ckpt when an earlier demo was interrupted); returns the final logged metrics."""
    from deid.training import train

    overrides = [
        f"experiment={method.experiment}",
        f"data.root={demo_root.resolve()}",
        f"paths.output_dir={out_dir.resolve()}",
    ]
    if max_steps is not None:
        overrides.append(f"trainer.max_steps={max_steps}")
    return train(_compose("train", overrides))


def demo_inputs(demo_root: Path, folder: Path) -> Path:
    """A group photo and a moving-faces video made of demo photos (written once)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "group.png").is_file():
        write_image(folder / "group.png", group_photo(demo_root))
    if not (folder / "moving_faces.mp4").is_file():
        write_moving_faces_video(demo_root, folder / "moving_faces.mp4")
    return folder


def run_anonymization(
    inputs: Path, out_dir: Path, checkpoints: dict[str, Path]
) -> dict[str, dict[str, Any]]:
    """`python anonymize.py` over the demo inputs with each trained method (`checkpoints`:
    conf/model name -> checkpoint) and with blur, the default."""
    from deid.anonymizers.runner import anonymize

    summaries = {}
    for method in (*checkpoints, *ANONYMIZE_BASELINES):
        ckpt = checkpoints.get(method)
        overrides = [
            f"model={method}",
            *([f"ckpt={ckpt.resolve()}"] if ckpt is not None else []),
            f"in={inputs.resolve()}",
            f"out={(out_dir / method).resolve()}",
            "camera=demo-camera-1",
            "audit=true",
        ]
        summaries[method] = anonymize(_compose("anonymize", overrides))
    return summaries


def run_evaluation(
    demo_root: Path,
    out_dir: Path,
    models: tuple[str, ...] = BASELINES,
    checkpoints: dict[str, Path] | None = None,
) -> Path:
    """Score the baselines `models`, then each trained method (`checkpoints`: conf/model name
    -> checkpoint), with the evaluation suite and merge the runs into one report."""
    from deid_eval.report import write_report
    from deid_eval.suite import evaluate

    checkpoints = checkpoints or {}
    results = []
    for model in tqdm((*models, *checkpoints), desc="evaluation", unit="method"):
        overrides = [
            f"model={model}",
            "data=demo",
            f"data.root={demo_root.resolve()}",
            "k=1..5",
            "metrics.align=ciagan",  # CelebA-like face crops: comparable with the papers
        ]
        if model in checkpoints:
            overrides.append(f"ckpt={checkpoints[model].resolve()}")
        results.append(evaluate(_compose("evaluate", overrides), run_dir=out_dir / model))
    write_report(results, out_dir)
    return out_dir / "tables.md"
