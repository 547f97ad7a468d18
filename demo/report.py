"""`outputs/demo/report.md`: what the demo trained, anonymized and measured, with pictures.

Everything in the report is read back from the stages' own output files (training samples,
anonymization summaries, the evaluation tables and plots), so the report shows exactly what a
user would find in those folders.
"""

from __future__ import annotations

import datetime as dt
import platform
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from deid.media import VideoReader, atomic_write, read_image, write_image
from demo.methods import METHODS, DemoMethod

LABEL_HEIGHT = 26


def _labelled(image: np.ndarray, text: str) -> np.ndarray:
    strip = np.full((LABEL_HEIGHT, image.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, image], axis=0)


def _fit_width(image: np.ndarray, width: int) -> np.ndarray:
    scale = width / image.shape[1]
    return cv2.resize(image, (width, round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)


def before_after_picture(original: Path, outputs: dict[str, Path], width: int = 900) -> np.ndarray:
    """Original above each method's output, labelled."""
    rows = [_labelled(_fit_width(read_image(original), width), "original")]
    rows += [_labelled(_fit_width(read_image(p), width), name) for name, p in outputs.items()]
    return np.concatenate(rows, axis=0)


def _frames(path: Path, indices: list[int]) -> list[np.ndarray]:
    wanted, found = set(indices), {}
    with VideoReader(path) as reader:
        for index, frame in enumerate(reader):
            if index in wanted:
                found[index] = frame
    return [found[i] for i in indices if i in found]


def video_strip(original: Path, outputs: dict[str, Path], indices: list[int]) -> np.ndarray:
    """Rows: original and each method; columns: the chosen frames."""
    rows = []
    for name, path in {"original": original, **outputs}.items():
        frames = [
            cv2.resize(f, (320, 240), interpolation=cv2.INTER_AREA) for f in _frames(path, indices)
        ]
        rows.append(_labelled(np.concatenate(frames, axis=1), f"{name}: frames {indices}"))
    return np.concatenate(rows, axis=0)


def _without_title(markdown: str) -> str:
    """The evaluation tables without their own top-level title (the report has one)."""
    lines = markdown.strip().splitlines()
    return "\n".join(lines[1:] if lines and lines[0].startswith("# ") else lines).strip()


def _latest_sample(training_dir: Path) -> Path | None:
    samples = sorted((training_dir / "samples").glob("iteration_*.png"))
    return samples[-1] if samples else None


def _relative(path: Path, root: Path) -> str:
    return path.resolve().relative_to(root.resolve()).as_posix()


def _anonymization_table(summaries: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| method | files | frames | faces found | tracked in between | anonymized | fallbacks "
        "| audit: found | covered | missed | still matching |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, summary in summaries.items():
        totals = summary.get("counts", {})
        lines.append(
            f"| {method} | {totals.get('files')} | {totals.get('frames')} | "
            f"{totals.get('faces_found')} | {totals.get('faces_interpolated')} | "
            f"{totals.get('anonymized')} | {totals.get('fallbacks')} | "
            f"{totals.get('audit_found', '-')} | {totals.get('audit_covered', '-')} | "
            f"{totals.get('audit_missed', '-')} | {totals.get('audit_still_matching', '-')} |"
        )
    return lines


def _training_section(out_dir: Path, method: DemoMethod, training: dict[str, Any]) -> list[str]:
    lines = [
        f"## 1. {method.title} trained on the demo photos",
        "",
        f"`python train.py experiment={method.experiment}`: run folder `{training['run']}`, "
        f"checkpoint `{training['checkpoint']}`.",
        "",
    ]
    metrics = training.get("metrics", {})
    keys = [
        k
        for k in (
            "generator/total",
            "discriminator/d_loss",
            "identity/contrastive",
            "generator/reconstruction_l1",
            "iteration",
        )
        if k in metrics
    ]
    if keys:
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(f"{metrics[k]:.4g}" for k in keys) + " |", ""]
    sample = _latest_sample(out_dir / method.folder)
    if sample is not None:
        lines += [
            "Each row: source | pose (landmark) image | outputs for 3 target identities "
            f"(`{_relative(sample, out_dir)}`).",
            "",
            f"![training samples]({_relative(sample, out_dir)})",
            "",
        ]
    return lines


def write_demo_report(
    out_dir: Path,
    timings: dict[str, float],
    trainings: dict[str, dict[str, Any]],
    inputs: Path | None,
    summaries: dict[str, dict[str, Any]] | None,
    tables: Path | None,
) -> Path:
    """Assemble report.md (+ its pictures under `report_files/`) and return its path;
    `trainings`: conf/model name of a `demo.methods` method -> its run (run, checkpoint,
    metrics)."""
    files = out_dir / "report_files"
    files.mkdir(parents=True, exist_ok=True)
    total = sum(timings.values())
    lines = [
        "# deid demo report",
        "",
        f"Made {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by `make demo` in "
        f"{total / 60:.1f} min on {platform.machine()} ({torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {'CUDA' if torch.cuda.is_available() else 'CPU only'}). "
        "Stage times: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items()) + ".",
        "",
        "The demo data are 118 web photos of 5 celebrities (no stated licence; never "
        "committed). Numbers on 24-25 validation photos show orderings, not paper-scale results.",
        "",
    ]
    for method in METHODS:
        if method.model in trainings:
            lines += _training_section(out_dir, method, trainings[method.model])
    if summaries and inputs is not None:
        anonymized = out_dir / "anonymized"
        picture = before_after_picture(
            inputs / "group.png", {m: anonymized / m / "group.png" for m in summaries}
        )
        write_image(files / "group_before_after.png", picture)
        strip = video_strip(
            inputs / "moving_faces.mp4",
            {m: anonymized / m / "moving_faces.mp4" for m in summaries},
            [0, 12, 24, 35],
        )
        write_image(files / "video_before_after.png", strip)
        lines += [
            "## 2. Anonymizing a group photo and a video",
            "",
            "`python anonymize.py model=ciagan ckpt=... in=inputs/ out=anonymized/ciagan "
            "audit=true` (and `model=blur`). The video moves and scales three photos; "
            "where dlib misses a tracked face for a few frames, gap filling anonymizes it from "
            "interpolated landmarks.",
            "",
            *_anonymization_table(summaries),
            "",
            "![group photo before and after](report_files/group_before_after.png)",
            "",
            "![video frames before and after](report_files/video_before_after.png)",
            "",
        ]
    if tables is not None and tables.is_file():
        evaluation = tables.parent
        lines += [
            "## 3. The trained methods against the baselines (demo validation photos, CIAGAN "
            "crops)",
            "",
            _without_title(tables.read_text()),
            "",
        ]
        for name in ("reid_vs_k.png", "detection_vs_recall.png"):
            if (evaluation / name).is_file():
                lines += [f"![{name}]({_relative(evaluation / name, out_dir)})", ""]
        for method in METHODS:
            if (evaluation / method.model / "samples.png").is_file():
                picture = f"evaluation/{method.model}/samples.png"
                lines += [f"![{method.title} evaluation samples]({picture})", ""]
    if (out_dir / "perception.png").is_file():
        lines += ["## 4. Perception", "", "![perception](perception.png)", ""]
    path = out_dir / "report.md"
    with atomic_write(path) as handle:
        handle.write("\n".join(lines))
    return path
