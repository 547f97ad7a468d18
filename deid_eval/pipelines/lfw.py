"""LFW verification of anonymized second images: TAR at FAR = 1e-3 (protocols.md 1, CIAGAN Table 3).

Per pair (first image a, second image b): MTCNN finds every face of the original b (each given
dlib's 68 landmarks, which CIAGAN needs) and the anonymizer replaces them, seeded by the pair
index; every pair anonymizes its own fresh copy of b, never the file, because 1,439 LFW images are
the second image of one pair and the first of another. MTCNN then looks for the face in the
anonymized image (centre-weighted choice); when it misses, the original b's box is reused and
the miss is counted. Each configured FaceNet embeds the original a and the anonymized b at
their boxes, and LFWVerification turns the squared L2 distances into TAR@FAR over ten folds.

Choices the protocol leaves open (also written to results.json):
- an original in which MTCNN finds no face gets a centred square of side min(H, W) / 2.2
  (LFW images are the Viola-Jones box enlarged 2.2x, so that is about where the face was); the
  anonymizer gets that box too, so no face passes through untouched; such images are counted;
- `limit: N` keeps the first N matched and first N mismatched pairs of every fold (20 N pairs),
  so all ten folds and both classes stay present;
- an anonymized image equal to its original (the `original` model) is not run through MTCNN and
  FaceNet again: its cached original detection and embedding are the same numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

import deid.weights as weights
from deid.anonymizers.base import Anonymizer, Subject
from deid.datasets.lfw import LFWDataset, LFWPair
from deid.errors import DeidError, unknown_name
from deid.faces import (
    EMBEDDERS,
    Face,
    LandmarkPredictor,
    center_weighted_face,
)
from deid.media import read_image
from deid_eval import provenance
from deid_eval.cache import FeatureCache, cache_key, fingerprint_files
from deid_eval.metrics import LFWVerification
from deid_eval.pipelines.common import (
    PersonMasker,
    SampleGrid,
    batched,
    faces_from_entries,
    stable_seed,
)
from deid_eval.pipelines.models import make_detector, make_embedder, resolve_device

DETECTOR: dict[str, Any] = {"name": "mtcnn"}  # facenet-pytorch defaults, as the protocol uses
FALLBACK_DIVISOR = 2.2  # LFW crops are the Viola-Jones face box enlarged 2.2x
FALLBACK_RULE = (
    "no MTCNN face in an original: centred square of side min(H, W) / 2.2 (LFW images are the "
    "Viola-Jones box enlarged 2.2x); the anonymizer gets it too; counted as original_face_misses"
)
LIMIT_RULE = "limit N: the first N matched and first N mismatched pairs of every fold"


@dataclass
class LFWEvalSetup:
    """Everything the LFW pipeline needs, resolved from the Hydra config."""

    dataset: LFWDataset
    pairs: list[LFWPair]
    anonymizer: Anonymizer
    embedders: list[str]  # only those whose weights are present
    crop: dict[str, Any]  # FaceNet crop options: image_size, margin
    seed: int
    batch_size: int
    samples: int
    cache: FeatureCache
    run_dir: Path
    device: str | None = None

    def __post_init__(self) -> None:
        self.images = sorted({p for pair in self.pairs for p in (pair.path_a, pair.path_b)})
        self.index_of = {rel: i for i, rel in enumerate(self.images)}
        self.dataset_key = fingerprint_files([self.dataset.path(rel) for rel in self.images])
        self.masker = PersonMasker(self.anonymizer)

    def read(self, rel: Path) -> np.ndarray:
        return read_image(self.dataset.path(rel))


# ------------------------------------------------------------------------- pair selection
def limit_pairs(pairs: Sequence[LFWPair], limit: int | None) -> list[LFWPair]:
    """The first `limit` matched and mismatched pairs of each fold (all pairs when None)."""
    if not limit:
        return list(pairs)
    kept: dict[tuple[int, bool], int] = {}
    chosen = []
    for pair in pairs:
        group = (pair.fold, pair.same)
        if kept.get(group, 0) < int(limit):
            kept[group] = kept.get(group, 0) + 1
            chosen.append(pair)
    return chosen


def split_embedders(names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Embedders whose weights are present, and a reason for each one skipped.

    A missing user-supplied weight (facenet_vggface2 usually) should not cost the whole run.
    """
    available, skipped = [], {}
    for name in names:
        if name not in EMBEDDERS:
            raise unknown_name("face embedder", name, sorted(EMBEDDERS))
        missing = [w for w in provenance.EMBEDDER_WEIGHTS[name] if not weights.is_available(w)]
        if missing:
            skipped[name] = f"weight {', '.join(missing)} not found (see `python -m deid.weights`)"
            warnings.warn(f"LFW: skipping embedder {name}: {skipped[name]}", stacklevel=2)
        else:
            available.append(name)
    if not available:
        raise DeidError(
            f"LFW: none of the embedders {', '.join(names)} is usable: "
            + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        )
    return available, skipped


# ----------------------------------------------------------------------------- face rules
def fallback_face(shape: Sequence[int]) -> Face:
    """The centred box used when MTCNN finds no face in an original (score 0)."""
    height, width = int(shape[0]), int(shape[1])
    side = min(height, width) / FALLBACK_DIVISOR
    x0, y0 = (width - side) / 2, (height - side) / 2
    return Face((x0, y0, x0 + side, y0 + side), 0.0)


def original_faces(
    predictor: LandmarkPredictor, image: np.ndarray, faces: list[Face]
) -> tuple[list[Face], bool]:
    """Every MTCNN face with 68 landmarks (the fallback box when none) and whether it fell back."""
    fell_back = not faces
    if fell_back:
        faces = [fallback_face(image.shape)]
    return predictor.add_landmarks(image, faces), fell_back


def anonymized_faces(
    detector: Any, outputs: Sequence[np.ndarray], originals: Sequence[Face]
) -> tuple[list[Face], list[bool]]:
    """The centre-weighted MTCNN face of each output; the original's box where MTCNN misses."""
    found = detector.detect_batch(list(outputs))
    chosen, missed = [], []
    for faces, output, original in zip(found, outputs, originals, strict=True):
        face = center_weighted_face(faces, output.shape)
        missed.append(face is None)
        chosen.append(original if face is None else face)
    return chosen, missed


class LFWModels:
    """MTCNN, the landmark model and the embedders, each loaded once and only when needed."""

    def __init__(self, crop: dict[str, Any], device: str = "cpu") -> None:
        self.crop = crop
        self.device = device
        self._detector: Any = None
        self._landmarks: LandmarkPredictor | None = None
        self._embedders: dict[str, Any] = {}

    def detector(self) -> Any:
        if self._detector is None:
            self._detector = make_detector(DETECTOR, self.device)
        return self._detector

    def landmarks(self) -> LandmarkPredictor:
        if self._landmarks is None:
            self._landmarks = LandmarkPredictor()
        return self._landmarks

    def embedder(self, name: str) -> Any:
        """FaceNet with the protocol crop (image_size 160, margin 14); others as they are."""
        if name not in self._embedders:
            options = self.crop if name.startswith("facenet") else {}
            self._embedders[name] = make_embedder(name, self.device, **options)
        return self._embedders[name]


# ------------------------------------------------------------------------------ originals
class LFWOriginals:
    """MTCNN faces (+ landmarks) and embeddings of the original images, cached across models."""

    def __init__(self, setup: LFWEvalSetup, models: LFWModels) -> None:
        self.setup = setup
        self.models = models

    def _key(self, kind: str, **options: Any) -> str:
        return cache_key(kind=kind, dataset=self.setup.dataset_key, detector=DETECTOR, **options)

    def faces(self) -> tuple[list[list[Face]], list[Face], np.ndarray]:
        """All faces of each image, the evaluated (centre-weighted) one and fallback flags."""
        detector_weights = provenance.weight_hashes(provenance.DETECTOR_WEIGHTS["mtcnn"])
        key = self._key(
            "lfw_faces", weights=detector_weights, landmarks="dlib68", fallback=FALLBACK_DIVISOR
        )

        def compute() -> list[dict]:
            detector, predictor = self.models.detector(), self.models.landmarks()
            entries = []
            chunks = list(batched(self.setup.images, self.setup.batch_size))
            for chunk in tqdm(chunks, desc="LFW originals: mtcnn + landmarks"):
                images = [self.setup.read(rel) for rel in chunk]
                for image, found in zip(images, detector.detect_batch(images), strict=True):
                    faces, fell_back = original_faces(predictor, image, found)
                    entries.append(
                        {
                            "shape": list(image.shape[:2]),
                            "faces": [f.to_json() for f in faces],
                            "fallback": fell_back,
                        }
                    )
            return entries

        entries = self.setup.cache.get_or_compute("lfw_faces", key, compute)
        all_faces, chosen = faces_from_entries(entries)
        fell_back = np.array([bool(entry["fallback"]) for entry in entries])
        return all_faces, chosen, fell_back

    def embeddings(self, name: str, chosen: list[Face]) -> torch.Tensor:
        """(images, dim) embeddings of every original at its evaluated face."""
        hashes = provenance.weight_hashes(provenance.EMBEDDER_WEIGHTS[name])
        key = self._key("lfw_embeddings", embedder=name, weights=hashes, crop=self.setup.crop)

        def compute() -> torch.Tensor:
            embedder = self.models.embedder(name)
            rows = torch.zeros(len(chosen), embedder.dim)
            indices = list(range(len(chosen)))
            for chunk in tqdm(
                list(batched(indices, self.setup.batch_size)), desc=f"LFW originals: {name}"
            ):
                images = [self.setup.read(self.setup.images[i]) for i in chunk]
                vectors = embedder.embed(images, [chosen[i] for i in chunk])
                rows[list(chunk)] = torch.from_numpy(vectors)
            return rows

        return self.setup.cache.get_or_compute("lfw_embeddings", key, compute)


# ------------------------------------------------------------------------------ main loop
@dataclass
class PairScores:
    """Per-pair distances for each embedder and the anonymized-face misses."""

    distances: dict[str, list[float]]
    misses: int = 0


def _anonymize_chunk(
    setup: LFWEvalSetup, chunk: Sequence[LFWPair], all_faces: list[list[Face]]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Fresh copies of the second images and the anonymizer's output for them."""
    originals = [setup.read(pair.path_b) for pair in chunk]
    subjects = [
        Subject(
            image=image.copy(),
            faces=all_faces[setup.index_of[pair.path_b]],
            person_mask=setup.masker(image),
        )
        for image, pair in zip(originals, chunk, strict=True)
    ]
    seeds = [stable_seed(f"pair{pair.index}", setup.seed) for pair in chunk]
    return originals, setup.anonymizer.anonymize(subjects, seeds=seeds)


@dataclass
class ChunkFaces:
    """Where each anonymized second image of a chunk is evaluated."""

    changed: list[int]  # positions whose output differs from the original
    faces: list[Face]  # the evaluated face of each changed output
    misses: int  # outputs in which MTCNN found no face


def locate_chunk(
    models: LFWModels,
    originals: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    b_index: Sequence[int],
    chosen: list[Face],
    fell_back: np.ndarray,
) -> ChunkFaces:
    """MTCNN on the changed outputs; an unchanged output is missed exactly when its original was."""
    changed = [i for i, pair in enumerate(zip(originals, outputs, strict=True)) if not _same(*pair)]
    unchanged = set(range(len(outputs))) - set(changed)
    misses = sum(bool(fell_back[b_index[i]]) for i in unchanged)
    if not changed:
        return ChunkFaces(changed, [], misses)
    faces, missed = anonymized_faces(
        models.detector(), [outputs[i] for i in changed], [chosen[b_index[i]] for i in changed]
    )
    return ChunkFaces(changed, faces, misses + sum(missed))


def score_pairs(
    setup: LFWEvalSetup,
    models: LFWModels,
    originals_pass: tuple[list[list[Face]], list[Face], np.ndarray],
    gallery: dict[str, torch.Tensor],
) -> PairScores:
    """Anonymize every second image, find and embed its face, measure the distance to a."""
    all_faces, chosen, fell_back = originals_pass
    scores = PairScores({name: [] for name in setup.embedders})
    grid = SampleGrid(setup.samples)
    desc = f"LFW anonymize + verify ({setup.anonymizer.name})"
    for chunk in tqdm(list(batched(setup.pairs, setup.batch_size)), desc=desc):
        originals, outputs = _anonymize_chunk(setup, chunk, all_faces)
        b_index = [setup.index_of[pair.path_b] for pair in chunk]
        a_index = [setup.index_of[pair.path_a] for pair in chunk]
        located = locate_chunk(models, originals, outputs, b_index, chosen, fell_back)
        scores.misses += located.misses
        for name in setup.embedders:
            rows = gallery[name][b_index]  # a copy; an unchanged image embeds as its original
            if located.changed:
                changed_outputs = [outputs[i] for i in located.changed]
                vectors = models.embedder(name).embed(changed_outputs, located.faces)
                rows[located.changed] = torch.from_numpy(vectors)
            distances = ((gallery[name][a_index] - rows) ** 2).sum(dim=1)
            scores.distances[name].extend(distances.double().tolist())
        for original, output in zip(originals, outputs, strict=True):
            grid.add(original, output)
    grid.save(setup.run_dir / "samples.png")
    return scores


def _same(original: np.ndarray, output: np.ndarray) -> bool:
    return original.shape == output.shape and np.array_equal(original, output)


def verify(setup: LFWEvalSetup, distances: list[float]) -> dict[str, Any]:
    """LFWVerification over the evaluated pairs, as plain JSON numbers."""
    metric = LFWVerification()
    metric.update(
        torch.tensor(distances, dtype=torch.float64),
        torch.tensor([pair.same for pair in setup.pairs]),
        torch.tensor([pair.fold for pair in setup.pairs]),
    )
    result = metric.compute()
    entry: dict[str, Any] = {
        key: float(result[key])
        for key in ("tar_mean", "tar_std", "far_mean", "accuracy_mean", "accuracy_std")
    }
    entry["thresholds"] = [float(t) for t in result["thresholds"]]
    entry["accuracy_thresholds"] = [float(t) for t in result["accuracy_thresholds"]]
    return entry


def evaluate_lfw(setup: LFWEvalSetup) -> dict[str, dict[str, Any]]:
    """Run the protocol; returns {embedder: metrics} for the usable embedders."""
    models = LFWModels(setup.crop, resolve_device(setup.device))
    originals = LFWOriginals(setup, models)
    found = originals.faces()
    fell_back = found[2]
    gallery = {name: originals.embeddings(name, found[1]) for name in setup.embedders}
    scores = score_pairs(setup, models, found, gallery)
    result = {}
    for name in setup.embedders:
        entry = verify(setup, scores.distances[name])
        entry["anonymized_face_misses"] = int(scores.misses)
        entry["original_face_misses"] = int(fell_back.sum())
        result[name] = entry
    return result


# ------------------------------------------------------------------------------- entry point
def _dataset(cfg: DictConfig) -> tuple[LFWDataset, list[LFWPair]]:
    data = cfg.data
    dataset = LFWDataset(
        data.root, pairs=data.get("pairs"), allow_missing=bool(data.get("allow_missing", False))
    )
    pairs = limit_pairs(dataset.pairs, cfg.get("limit"))
    if not pairs:
        raise DeidError(f"LFW at {data.root}: no pairs to evaluate")
    return dataset, pairs


def run_lfw(
    cfg: DictConfig, anonymizer: Anonymizer, run_dir: Path, cache: FeatureCache
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], list[str]]:
    """The LFW suite for `evaluate`: (metrics, dataset info, protocol, weight names)."""
    dataset, pairs = _dataset(cfg)
    metrics_cfg = cfg.metrics
    available, skipped = split_embedders(list(metrics_cfg.embedders))
    setup = LFWEvalSetup(
        dataset=dataset,
        pairs=pairs,
        anonymizer=anonymizer,
        embedders=available,
        crop={
            "image_size": int(metrics_cfg.get("mtcnn_image_size", 160)),
            "margin": float(metrics_cfg.get("mtcnn_margin", 14)),
        },
        seed=int(cfg.seed),
        batch_size=int(cfg.batch_size),
        samples=int(metrics_cfg.get("samples", 8)),
        cache=cache,
        run_dir=run_dir,
        device=cfg.get("device"),
    )
    per_embedder: dict[str, Any] = evaluate_lfw(setup)
    per_embedder.update({name: {"skipped": reason} for name, reason in skipped.items()})
    info = {
        "name": "lfw",
        "root": str(cfg.data.root),
        "pairs_file": str(cfg.data.get("pairs")),
        "pairs": len(pairs),
        "images": len(setup.images),
        "folds": len({pair.fold for pair in pairs}),
        "missing_images": int(dataset.missing),
    }
    protocol = {
        "reference": "protocols.md 1 (CIAGAN Table 3)",
        "detector": DETECTOR,
        "landmarks": "dlib 68 points on every MTCNN face of the original second image",
        "anonymized": "second image of every pair, per pair, seed = stable_seed('pair<index>', seed)",
        "evaluated_face": "centre-weighted: max area - 2 * |centre offset|^2 (protocols.md 1.4)",
        "anonymized_miss": "MTCNN finds no face in the anonymized image: original box reused, counted",
        "original_miss": FALLBACK_RULE + " (distinct images of the evaluated pairs)",
        "unchanged_outputs": "an output equal to its original reuses the original's cached "
        "MTCNN face and embedding (the same numbers, computed once)",
        "crop": {**setup.crop, "normalise": "(x - 127.5) / 128", "l2": True},
        "distance": "squared L2 between original first and anonymized second image (0..4)",
        "far_target": 1e-3,
        "limit": None if not cfg.get("limit") else f"{LIMIT_RULE} (N = {int(cfg.limit)})",
        "seed": setup.seed,
    }
    weight_names = provenance.DETECTOR_WEIGHTS["mtcnn"] + ["dlib_landmarks68"]
    weight_names += [w for name in available for w in provenance.EMBEDDER_WEIGHTS[name]]
    return {"lfw": per_embedder}, info, protocol, weight_names
