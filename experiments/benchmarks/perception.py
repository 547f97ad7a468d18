"""Images/s of every face detector and identity embedder at batch 1 and 16, on this machine.

    .venv/bin/python experiments/benchmarks/perception.py [--images 16] [--size 512] [--device cpu]

Inputs are real photos (the demo set's validation photos, longest side resized to --size).
Ratios are against dlib HOG at batch 1, measured in the same process.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch

from deid.datasets import demo as demo_set
from deid.faces import Face, build_detector, build_embedder, largest_face
from deid.media import read_image

DETECTORS = ("dlib_hog", "dlib_cnn", "mtcnn", "mediapipe")
EMBEDDERS = ("dlib", "facenet_casia")
BATCHES = (1, 16)


def load_photos(count: int, size: int) -> list[np.ndarray]:
    root = demo_set.require(demo_set.DEFAULT_ROOT)
    paths = sorted(root.glob("val/*/*.jpg")) + sorted(root.glob("train/*/*.jpg"))
    photos = []
    for path in paths[:count]:
        image = read_image(path)
        scale = size / max(image.shape[:2])
        photos.append(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    return photos


def images_per_second(work: Callable[[Sequence], object], items: Sequence, batch: int) -> float:
    work(items[:1])  # warm-up: lazy initialisation, caches
    start = time.perf_counter()
    for first in range(0, len(items), batch):
        work(items[first : first + batch])
    return len(items) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    photos = load_photos(args.images, args.size)
    hog = build_detector("dlib_hog")
    pairs = [(p, f) for p in photos if (f := largest_face(hog.detect(p))) is not None]
    print(
        f"# {len(photos)} demo photos at {args.size} px; {platform.processor() or 'cpu'}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}"
    )

    rows: list[tuple[str, str, int, float]] = []
    for name in DETECTORS:
        options = {"device": args.device} if name == "mtcnn" else {}
        detector = build_detector(name, **options)
        for batch in BATCHES:
            rate = images_per_second(detector.detect_batch, photos, batch)
            rows.append(("detector", name, batch, rate))
        detector.close()
    for name in EMBEDDERS:
        embedder = build_embedder(name)

        def embed(chunk: Sequence[tuple[np.ndarray, Face]], embedder=embedder) -> object:
            return embedder.embed([p for p, _ in chunk], [f for _, f in chunk])

        for batch in BATCHES:
            rows.append(("embedder", name, batch, images_per_second(embed, pairs, batch)))

    baseline = rows[0][3]
    print(f"{'kind':<9} {'name':<14} {'batch':>5} {'images/s':>9} {'vs dlib_hog b1':>15}")
    for kind, name, batch, rate in rows:
        print(f"{kind:<9} {name:<14} {batch:>5} {rate:>9.2f} {rate / baseline:>14.2f}x")


if __name__ == "__main__":
    main()
