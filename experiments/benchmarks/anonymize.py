"""Anonymization speed on a 640x480 video with 3 faces: blur9 and CIAGAN, stage by stage.

    .venv/bin/python experiments/benchmarks/anonymize.py [--frames 24] [--device cpu|cuda]
        [--ckpt RUN/checkpoints/last.ckpt]

Frames are the demo's moving-faces clip (real demo photos moved and scaled over a stage).
Stages per frame: dlib HOG detection, 68 landmarks, then for CIAGAN the crop + landmark-image
+ mask preparation, the generator (all faces of a frame in one batch, and one face per call),
and the paste-back blending; blur9 is timed as a whole (its blending is trivial). Without
--ckpt the generator has the ciagan_demo (64 px) and ciagan_celeba (128 px) architectures with
random weights: speed does not depend on the weights. Ratios are against blur9 end to end.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ciagan.anonymizer import CiaganAnonymizer
from ciagan.nets import Generator
from deid.anonymizers.base import Subject
from deid.anonymizers.registry import build_anonymizer
from deid.datasets import demo as demo_set
from deid.faces import LandmarkPredictor, build_detector
from demo.scenes import moving_faces_frames

ROOT = Path(__file__).resolve().parents[2]


def seconds(work: Callable[[], object], repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        work()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat


def generator_of(experiment: str, num_identities: int = 5) -> Generator:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}"])
    options = OmegaConf.to_container(cfg.module.generator, resolve=True)
    return Generator(num_identities, image_size=int(cfg.datamodule.image_size), **options)


def ciagan_rows(
    name: str, model: CiaganAnonymizer, subjects: list[Subject], base: float
) -> list[tuple[str, float]]:
    """Per-frame seconds of CIAGAN's stages; `base` = detection + landmarks per frame."""
    n = len(subjects)
    prepared = [[model.prepare(0, s.image, f) for f in s.faces] for s in subjects]
    ids = [[0] * len(p) for p in prepared]
    model.generate(prepared[0], ids[0])  # warm-up
    prepare_s = seconds(lambda: [[model.prepare(0, s.image, f) for f in s.faces] for s in subjects])
    batch_s = seconds(lambda: [model.generate(p, i) for p, i in zip(prepared, ids, strict=True)])
    single_s = seconds(lambda: [model.generate([face], [0]) for p in prepared for face in p])
    outputs = [model.generate(p, i) for p, i in zip(prepared, ids, strict=True)]

    def paste() -> None:
        for subject, faces, generated in zip(subjects, prepared, outputs, strict=True):
            image = subject.image
            for face, output in zip(faces, generated, strict=True):
                image = model.paste(image, face, output)

    paste_s = seconds(paste)
    prepare_s, batch_s, single_s, paste_s = (v / n for v in (prepare_s, batch_s, single_s, paste_s))
    return [
        (f"CIAGAN {name} ({model.image_size} px): crop + maps", prepare_s),
        (f"CIAGAN {name}: generator, one batch per frame", batch_s),
        (f"CIAGAN {name}: generator, one face per call", single_s),
        (f"CIAGAN {name}: paste-back blending", paste_s),
        (f"CIAGAN {name} end to end (batched)", base + prepare_s + batch_s + paste_s),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--ckpt", type=Path, default=None)
    args = parser.parse_args()

    frames = moving_faces_frames(demo_set.require(demo_set.DEFAULT_ROOT), frames=args.frames)
    detector, predictor = build_detector("dlib_hog"), LandmarkPredictor()
    n = len(frames)
    print(
        f"# {n} frames 640x480, 3 faces each; {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}"
    )
    detect_s = seconds(lambda: [detector.detect(f) for f in frames]) / n
    boxes = [detector.detect(f) for f in frames]
    landmark_s = (
        seconds(lambda: [predictor.add_landmarks(f, b) for f, b in zip(frames, boxes, strict=True)])
        / n
    )
    subjects = [
        Subject(f, predictor.add_landmarks(f, b)) for f, b in zip(frames, boxes, strict=True)
    ]
    faces = sum(len(s.faces) for s in subjects)
    blur = build_anonymizer("blur9")
    blur_s = seconds(lambda: [blur.anonymize([s]) for s in subjects]) / n
    base = detect_s + landmark_s
    rows = [
        ("detection (dlib HOG)", detect_s),
        ("landmarks (68 points)", landmark_s),
        ("blur9 anonymize + blend", blur_s),
        ("blur9 end to end", base + blur_s),
    ]
    models = (
        {"ckpt": CiaganAnonymizer.from_checkpoint(args.ckpt, device=args.device)}
        if args.ckpt
        else {
            name: CiaganAnonymizer(generator_of(name), device=args.device)
            for name in ("ciagan_demo", "ciagan_celeba")
        }
    )
    for name, model in models.items():
        rows += ciagan_rows(name, model, subjects, base)
    blur_total = base + blur_s
    print(f"({faces} faces over {n} frames)")
    print("| stage | ms / frame | frames / s | vs blur9 end to end |")
    print("|---|---|---|---|")
    for label, value in rows:
        ratio = f"{blur_total / value:.2f}x" if "end to end" in label else ""
        print(f"| {label} | {1000 * value:.1f} | {1 / value:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
