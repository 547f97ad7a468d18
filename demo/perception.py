"""The demo's perception stage: every face detector, 68-point landmarks, person masks and identity
embeddings on scikit-image's astronaut and one photo per demo identity ->
`perception.png/.json`. Uses the core (`deid`) only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from deid.bodies import build_segmenter
from deid.datasets import demo as demo_set
from deid.faces import Face, LandmarkPredictor, build_detector, build_embedder, largest_face
from deid.media import atomic_write, read_image, write_image

DETECTORS = ("dlib_hog", "dlib_cnn", "mtcnn", "mediapipe")
EMBEDDERS = ("dlib", "facenet_casia")
COLOURS = {  # RGB
    "dlib_hog": (255, 64, 64),
    "dlib_cnn": (64, 200, 64),
    "mtcnn": (64, 128, 255),
    "mediapipe": (255, 200, 0),
}
TILE = 384


def sample_images(demo_root: Path) -> list[tuple[str, np.ndarray]]:
    """The astronaut plus the first validation photo of each demo identity."""
    from skimage import data

    samples = [("skimage:astronaut", data.astronaut())]
    for identity in demo_set.IDENTITIES:
        first = sorted((demo_root / "val" / identity).glob("*.jpg"))[0]
        samples.append((str(first), read_image(first)))
    return samples


def _draw(image: np.ndarray, mask: np.ndarray, detections: dict[str, list[Face]]) -> np.ndarray:
    canvas = image.astype(np.float32)
    tint = np.array([0, 255, 255], dtype=np.float32)
    canvas = np.where(mask[..., None], 0.7 * canvas + 0.3 * tint, canvas).astype(np.uint8)
    thickness = max(1, round(max(image.shape[:2]) / 250))
    for name, faces in detections.items():
        for face in faces:
            x0, y0, x1, y1 = (round(v) for v in face.box)
            cv2.rectangle(canvas, (x0, y0), (x1, y1), COLOURS[name], thickness)
            if face.landmarks is not None and len(face.landmarks) == 68:
                for x, y in face.landmarks:
                    cv2.circle(canvas, (round(x), round(y)), thickness, (255, 255, 255), -1)
    return canvas


def _tile(image: np.ndarray) -> np.ndarray:
    scale = TILE / max(image.shape[:2])
    resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    tile = np.full((TILE, TILE, 3), 32, dtype=np.uint8)
    tile[: resized.shape[0], : resized.shape[1]] = resized
    return tile


def _legend(width: int) -> np.ndarray:
    strip = np.full((28, width, 3), 255, dtype=np.uint8)
    x = 8
    for name, colour in [
        *COLOURS.items(),
        ("landmarks", (255, 255, 255)),
        ("person", (0, 190, 190)),
    ]:
        cv2.rectangle(strip, (x, 8), (x + 14, 22), colour, -1)
        cv2.rectangle(strip, (x, 8), (x + 14, 22), (0, 0, 0), 1)
        cv2.putText(strip, name, (x + 18, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        x += 30 + 9 * len(name)
    return strip


def identity_check(demo_root: Path) -> dict[str, Any]:
    """Embed every validation photo: same-identity vs different-identity distances, 1-NN."""
    detector = build_detector("dlib_hog")
    images, faces, labels = [], [], []
    for index, identity in enumerate(demo_set.IDENTITIES):
        for path in sorted((demo_root / "val" / identity).glob("*.jpg")):
            image = read_image(path)
            face = largest_face(detector.detect(image))
            if face is not None:
                images.append(image)
                faces.append(face)
                labels.append(index)
    labels_arr = np.array(labels)
    same = labels_arr[:, None] == labels_arr[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    report: dict[str, Any] = {"photos": len(labels)}
    for name in tqdm(EMBEDDERS, desc="identity embedders", leave=False):
        vectors = build_embedder(name).embed(images, faces)
        distances = ((vectors[:, None, :] - vectors[None, :, :]) ** 2).sum(-1)
        masked = np.where(off_diagonal, distances, np.inf)
        nearest = labels_arr[masked.argmin(axis=1)]
        report[name] = {
            "mean_sq_distance_same_identity": float(distances[same & off_diagonal].mean()),
            "mean_sq_distance_other_identity": float(distances[~same].mean()),
            "leave_one_out_1nn_accuracy": float((nearest == labels_arr).mean()),
        }
    return report


def run_perception(demo_root: Path, out_dir: Path) -> dict[str, Any]:
    detectors = {name: build_detector(name) for name in DETECTORS}
    predictor = LandmarkPredictor()
    segmenter = build_segmenter("mediapipe")
    records, tiles = [], []
    for source, image in tqdm(sample_images(demo_root), desc="perception", unit="image"):
        detections: dict[str, list[Face]] = {}
        timings: dict[str, float] = {}
        for name, detector in detectors.items():
            start = time.perf_counter()
            detections[name] = detector.detect(image)
            timings[name] = time.perf_counter() - start
        detections["dlib_hog"] = predictor.add_landmarks(image, detections["dlib_hog"])
        masks = segmenter.segment(image)
        records.append(
            {
                "source": source,
                "size": [int(image.shape[1]), int(image.shape[0])],
                "faces": {k: [f.to_json() for f in v] for k, v in detections.items()},
                "detector_seconds": timings,
                "person_mask_fraction": float(masks.binary.mean()),
                "person_instances": len(masks.instances),
            }
        )
        tiles.append(_tile(_draw(image, masks.binary, detections)))
    grid = np.concatenate([np.concatenate(tiles[:3], 1), np.concatenate(tiles[3:6], 1)], 0)
    picture = np.concatenate([_legend(grid.shape[1]), grid], 0)
    write_image(out_dir / "perception.png", picture)
    result = {"images": records, "identity": identity_check(demo_root)}
    with atomic_write(out_dir / "perception.json") as handle:
        json.dump(result, handle, indent=2)
    return result
