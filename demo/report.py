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
from demo.stages import SUITES

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
    samples = sorted((training_dir / "samples").glob("*.png"), key=lambda p: p.stat().st_mtime)
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


SAMPLE_CAPTIONS = {
    "ciagan_demo": "source | pose (landmark) image | outputs for 3 target identities",
    "vqgan_demo_first": "photos | their VQGAN reconstructions (first stage)",
    "vqgan_demo_cond": "silhouettes | their reconstructions (condition stage)",
    "vqgan_demo_transformer": "silhouettes | persons sampled for them (transformer)",
}


def _training_section(
    out_dir: Path, method: DemoMethod, training: dict[str, Any], number: str
) -> list[str]:
    lines = [f"## {number} {method.title} trained on the demo photos", ""]
    for experiment in method.experiments:
        run = method.folder(experiment)
        lines += [f"`python train.py experiment={experiment}`: run folder `{run}/`.", ""]
        metrics = training.get("metrics", {}).get(experiment, {})
        keys = [k for k in sorted(metrics) if "/" in k and not k.startswith("epoch")][:6]
        if keys:
            lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(f"{metrics[k]:.4g}" for k in keys) + " |", ""]
        sample = _latest_sample(out_dir / run)
        if sample is not None:
            caption = SAMPLE_CAPTIONS.get(experiment, "sample grid")
            lines += [
                f"{caption} (`{_relative(sample, out_dir)}`):",
                "",
                f"![{experiment} samples]({_relative(sample, out_dir)})",
                "",
            ]
    lines += [f"The method's checkpoint: `{training['checkpoint']}`.", ""]
    return lines


def write_demo_report(
    out_dir: Path,
    timings: dict[str, float],
    trainings: dict[str, dict[str, Any]],
    inputs: Path | None,
    summaries: dict[str, dict[str, Any]] | None,
    tables: dict[str, Path],
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
    for index, method in enumerate(m for m in METHODS if m.model in trainings):
        lines += _training_section(out_dir, method, trainings[method.model], f"1.{index + 1}")
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
            "audit=true`, `model=vqgan ckpt=... target=body` (whole persons) and `model=blur` "
            "(the default). The video moves and scales three photos; where the detector misses "
            "a tracked face for a few frames, gap filling covers it. The audit's independent "
            "detector re-finds the faces of the originals: covered = inside an anonymized "
            "region; still matching = FaceNet still links the output face to its source.",
            "",
            *_anonymization_table(summaries),
            "",
            "![group photo before and after](report_files/group_before_after.png)",
            "",
            "![video frames before and after](report_files/video_before_after.png)",
            "",
        ]
    for number, (suite, path) in enumerate(tables.items(), start=1):
        if not path.is_file():
            continue
        evaluation = path.parent
        lines += [f"## 3.{number} Evaluation: {SUITES[suite].title}", ""]
        lines += [_without_title(path.read_text()), ""]
        for name in ("reid_vs_k.png", "detection_vs_recall.png"):
            if (evaluation / name).is_file():
                lines += [f"![{name}]({_relative(evaluation / name, out_dir)})", ""]
        for method in METHODS:
            if (evaluation / method.model / "samples.png").is_file():
                picture = _relative(evaluation / method.model / "samples.png", out_dir)
                lines += [f"![{method.title} evaluation samples]({picture})", ""]
    if (out_dir / "perception.png").is_file():
        lines += ["## 4. Perception", "", "![perception](perception.png)", ""]
    path = out_dir / "report.md"
    with atomic_write(path) as handle:
        handle.write("\n".join(lines))
    return path
