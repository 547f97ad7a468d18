"""Person datasets (Supervisely, COCO persons, MOTS): silhouette k-NN re-identification.

Protocol (protocols.md 5, VQGAN paper Table I): the gallery is every original person described
by silhouette features (the image cut out by the person's own mask); each image is anonymized
once (seeded by its id) with the union of its person masks (and the masks one by one, for
methods that use instances) and, for face methods, the faces the configured detector finds in
the original; each person then gives one query: the anonymized image under the ORIGINAL person
mask. A de-identification succeeds at k when the query's own original is not among its k
nearest gallery persons (L2 on L2-normalised features).
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from tqdm import tqdm

from deid.anonymizers.base import NEEDS_FACES, NEEDS_LANDMARKS, Anonymizer, Subject
from deid.datasets.records import PersonRecord
from deid.datasets.registry import build_dataset
from deid.datasets.segmented_photos import persons_of_photos
from deid.errors import DeidError
from deid.faces import Face, LandmarkPredictor
from deid.features.silhouette import (
    CROP_SIZE,
    FEATURE_DIM,
    SilhouetteFeatures,
    build_silhouette_features,
)
from deid.media import read_image
from deid_eval import provenance
from deid_eval.cache import FeatureCache, cache_key, fingerprint_files
from deid_eval.metrics import SilhouetteKNNReId
from deid_eval.pipelines.common import SampleGrid, batched, stable_seed
from deid_eval.pipelines.models import make_detector, resolve_device
from deid_eval.ranges import parse_ks

PAPER_KS = tuple(range(1, 11))  # VQGAN Table I reports k = 1..10
BACKBONE_WEIGHTS = {"resnet50": "resnet50_imagenet", "fid_inception": "fid_inception"}
KS_RULE = (
    "k = 1..10 (VQGAN Table I) when k is a single number K (the default 1): 1..max(10, K); "
    "a range (1..3) or list (1,5,10) is used as given; ks above the gallery size are dropped"
)


@dataclass(frozen=True)
class ImageGroup:
    """One image and the positions (in the record list) of the persons annotated in it."""

    path: Path
    image_id: str
    persons: tuple[int, ...]


@dataclass
class BodyEvalSetup:
    """Everything the bodies pipeline needs, resolved from the Hydra config."""

    records: list[PersonRecord]
    groups: list[ImageGroup]
    anonymizer: Anonymizer
    extractor: SilhouetteFeatures
    face_detector: dict[str, Any] | None  # {"name", "threshold", **options}; None: no faces
    landmarks: bool
    ks: list[int]
    seed: int
    batch_size: int
    samples: int
    cache: FeatureCache
    dataset_key: str
    run_dir: Path


def group_by_image(records: Sequence[PersonRecord]) -> list[ImageGroup]:
    """Images in order of first appearance, so `limit` keeps whole images."""
    persons: dict[str, list[int]] = {}
    paths: dict[str, Path] = {}
    for index, record in enumerate(records):
        persons.setdefault(record.image_id, []).append(index)
        paths.setdefault(record.image_id, Path(record.path))
    return [ImageGroup(paths[i], i, tuple(p)) for i, p in persons.items()]


def resolve_ks(value: Any) -> list[int]:
    """The paper's 1..10 unless the user gave a range or a list (see KS_RULE)."""
    if isinstance(value, ListConfig):
        value = list(value)
    if isinstance(value, bool) or value is None:
        raise DeidError(f"k={value!r}: expected a number, a range like 1..10, or 1,5,10")
    if isinstance(value, int):
        return parse_ks(f"1..{max(PAPER_KS[-1], value)}")
    return parse_ks(value)


def source_files(records: Sequence[PersonRecord]) -> list[Path]:
    """Image files plus annotation files the mask loaders read (when they name them).

    Why: the cache key must change when an annotation (so a mask) changes, not only an image.
    """
    files = {Path(r.path) for r in records}
    for record in records:
        loader = record.mask_loader
        if dataclasses.is_dataclass(loader):
            files.update(v for v in vars(loader).values() if isinstance(v, Path) and v.is_file())
    return sorted(files)


class OriginalsPass:
    """Face detections and gallery silhouette features of the originals (cached)."""

    def __init__(self, setup: BodyEvalSetup) -> None:
        self.setup = setup

    def _key(self, kind: str, **options: Any) -> str:
        keys = hashlib.sha256("\n".join(r.key for r in self.setup.records).encode()).hexdigest()
        return cache_key(kind=kind, dataset=self.setup.dataset_key, persons=keys, **options)

    def faces(self) -> list[list[Face]]:
        """Faces of each original image (score >= threshold), with 68 landmarks if needed."""
        spec = self.setup.face_detector
        if spec is None:
            return [[] for _ in self.setup.groups]
        detector_spec = {k: v for k, v in spec.items() if k != "threshold"}
        landmarks = self.setup.landmarks
        key = self._key("body_faces", detector=detector_spec, landmarks=landmarks)

        def compute() -> list[dict]:
            detector = make_detector(spec, str(self.setup.extractor.device))
            predictor = LandmarkPredictor() if landmarks else None
            found = []
            for group in tqdm(self.setup.groups, desc=f"originals: {spec['name']} faces"):
                image = read_image(group.path)
                faces = detector.detect(image)
                if predictor is not None:
                    faces = predictor.add_landmarks(image, faces)
                found.append({"faces": [f.to_json() for f in faces]})
            return found

        entries = self.setup.cache.get_or_compute("body_faces", key, compute)
        threshold = float(spec.get("threshold", 0.0))
        return [
            [face for face in map(Face.from_json, entry["faces"]) if face.score >= threshold]
            for entry in entries
        ]

    def gallery(self) -> dict[str, torch.Tensor]:
        """`features` (P, D) of every original person and `valid` (P,): False = empty mask."""
        extractor = self.setup.extractor
        key = self._key(
            "silhouette_gallery",
            backbone=extractor.backbone_name,
            weights=extractor.weights_sha256,
            fill=list(extractor.fill),
            crop=CROP_SIZE,
        )

        def compute() -> dict[str, torch.Tensor]:
            count = len(self.setup.records)
            features = torch.zeros(count, FEATURE_DIM)
            valid = torch.zeros(count, dtype=torch.bool)
            desc = f"originals: {extractor.backbone_name} silhouettes"
            for chunk in tqdm(list(batched(self.setup.groups, self.setup.batch_size)), desc=desc):
                images = [read_image(g.path) for g in chunk]
                masks = [
                    group_masks(self.setup, g, im) for g, im in zip(chunk, images, strict=True)
                ]
                rows, vectors = person_features(self.setup, images, chunk, masks)
                features[rows] = vectors
                valid[rows] = True
            return {"features": features, "valid": valid}

        return self.setup.cache.get_or_compute("silhouette_gallery", key, compute)


def group_masks(setup: BodyEvalSetup, group: ImageGroup, image: np.ndarray) -> list[np.ndarray]:
    """The masks of the image's persons, checked against the image size."""
    masks = []
    for index in group.persons:
        mask = setup.records[index].load_mask()
        if mask.shape != image.shape[:2]:
            raise DeidError(
                f"{setup.records[index].key}: mask {mask.shape} != image {image.shape[:2]}"
            )
        masks.append(mask)
    return masks


def person_features(
    setup: BodyEvalSetup,
    images: Sequence[np.ndarray],
    groups: Sequence[ImageGroup],
    masks: Sequence[list[np.ndarray]],
) -> tuple[list[int], torch.Tensor]:
    """Silhouette features of each non-empty person of `groups`, cut from `images` by its mask."""
    rows, crops, kept = [], [], []
    for image, group, person_masks in zip(images, groups, masks, strict=True):
        for index, mask in zip(group.persons, person_masks, strict=True):
            if mask.any():
                rows.append(index)
                crops.append(image)
                kept.append(mask)
    return rows, setup.extractor.extract(crops, kept).cpu()


def union_mask(masks: Sequence[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """Every annotated person of the image: what a body method must replace."""
    union = np.zeros(shape[:2], dtype=bool)
    for mask in masks:
        union |= mask
    return union


def _scores(metric: SilhouetteKNNReId, ks: list[int]) -> dict[str, Any]:
    scores = metric.compute()
    return {
        "reid": {str(k): float(scores[f"reid@{k}"]) for k in ks},
        "deid_success": {str(k): float(scores[f"deid_success@{k}"]) for k in ks},
        "queries": int(scores["num_queries"]),
        "gallery": int(scores["num_gallery"]),
    }


def evaluate_bodies(setup: BodyEvalSetup) -> dict[str, Any]:
    """Run the suite; returns the `silhouette_knn` section and the counts of results.json."""
    originals = OriginalsPass(setup)
    faces = originals.faces()
    gallery = originals.gallery()
    valid = gallery["valid"]
    persons = int(valid.sum())
    if persons == 0:
        raise DeidError("every person mask is empty; nothing to evaluate")
    ks = [k for k in setup.ks if k <= persons]
    if ks != setup.ks:
        warnings.warn(
            f"silhouette k-NN: ks {[k for k in setup.ks if k > persons]} exceed the "
            f"{persons} gallery persons and are dropped",
            stacklevel=2,
        )
    if not ks:
        raise DeidError(f"k={setup.ks}: the gallery has only {persons} persons")
    metric = SilhouetteKNNReId(ks=ks)
    rows = torch.nonzero(valid).flatten()
    metric.update(gallery["features"][rows], rows, role="gallery")

    grid = SampleGrid(setup.samples)
    positions = {group.image_id: i for i, group in enumerate(setup.groups)}
    desc = f"anonymize + score ({setup.anonymizer.name})"
    for chunk in tqdm(list(batched(setup.groups, setup.batch_size)), desc=desc):
        images = [read_image(g.path) for g in chunk]
        masks = [group_masks(setup, g, image) for g, image in zip(chunk, images, strict=True)]
        subjects = [
            Subject(
                image=image,
                faces=faces[positions[group.image_id]],
                person_mask=union_mask(person_masks, image.shape),
                person_instances=person_masks,  # body methods that use instances keep them apart
            )
            for image, group, person_masks in zip(images, chunk, masks, strict=True)
        ]
        seeds = [stable_seed(g.image_id, setup.seed) for g in chunk]
        outputs = setup.anonymizer.anonymize(subjects, seeds=seeds)
        query_rows, vectors = person_features(setup, outputs, chunk, masks)
        metric.update(vectors, torch.tensor(query_rows, dtype=torch.long), role="query")
        for image, output in zip(images, outputs, strict=True):
            grid.add(image, output)

    samples = grid.save(setup.run_dir / "samples.png")
    return {
        "scores": _scores(metric, ks),
        "ks": ks,
        "counts": {
            "images": len(setup.groups),
            "persons": persons,
            "empty_masks": len(setup.records) - persons,
            "images_with_faces": sum(bool(f) for f in faces),
        },
        "samples": None if samples is None else samples.name,
    }


def person_records(cfg: DictConfig) -> tuple[list[PersonRecord], list[ImageGroup], dict[str, Any]]:
    """The person records of `cfg.data`, cut to the first `cfg.limit` images."""
    options = OmegaConf.to_container(cfg.data, resolve=True)
    assert isinstance(options, dict)
    records: list[Any] = build_dataset(options, for_evaluation=True)
    segmented_by = None
    if records and not isinstance(records[0], PersonRecord):
        # a photo set without person masks (data=demo): one person per photo, the largest
        # the offline segmenter finds, as data=demo_persons does
        segmented_by = str(cfg.metrics.get("segmenter", "mediapipe"))
        records = persons_of_photos(records, segmented_by)
    groups = group_by_image(records)
    if cfg.get("limit"):
        groups = groups[: int(cfg.limit)]
        kept = {i for g in groups for i in g.persons}
        remap = {old: new for new, old in enumerate(sorted(kept))}
        records = [records[i] for i in sorted(kept)]
        groups = [
            dataclasses.replace(g, persons=tuple(remap[i] for i in g.persons)) for g in groups
        ]
    if not records:
        raise DeidError(f"dataset {options['name']!r} at {options['root']}: no persons to evaluate")
    info = {
        "name": options["name"],
        "root": str(options["root"]),
        "split": options.get("split"),
    }
    if segmented_by is not None:
        info["persons_from"] = f"{segmented_by} segmenter (largest person per photo)"
    return records, groups, info


def _face_spec(cfg: DictConfig, anonymizer: Anonymizer) -> dict[str, Any] | None:
    """The face detector's spec when the anonymizer works on faces; None otherwise."""
    if not ({NEEDS_FACES, NEEDS_LANDMARKS} & set(anonymizer.needs)):
        return None
    spec = OmegaConf.to_container(cfg.metrics.face_detector, resolve=True)
    assert isinstance(spec, dict)
    return spec


def _device(cfg: DictConfig) -> str:
    return resolve_device(cfg.get("device"))


def run_bodies(
    cfg: DictConfig, anonymizer: Anonymizer, run_dir: Path, cache: FeatureCache
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], list[str]]:
    """The `metrics=bodies` suite: (metrics, dataset info, protocol, weight names)."""
    records, groups, info = person_records(cfg)
    metrics_cfg = cfg.metrics
    fallback = metrics_cfg.get("fallback_backbone")
    extractor = build_silhouette_features(
        str(metrics_cfg.backbone),
        fallback=None if fallback is None else str(fallback),
        device=_device(cfg),
        batch_size=int(cfg.batch_size),
    )
    face_spec = _face_spec(cfg, anonymizer)
    setup = BodyEvalSetup(
        records=records,
        groups=groups,
        anonymizer=anonymizer,
        extractor=extractor,
        face_detector=face_spec,
        landmarks=NEEDS_LANDMARKS in anonymizer.needs,
        ks=resolve_ks(cfg.k),
        seed=int(cfg.seed),
        batch_size=int(cfg.batch_size),
        samples=int(metrics_cfg.samples),
        cache=cache,
        dataset_key=fingerprint_files(source_files(records)),
        run_dir=run_dir,
    )
    outcome = evaluate_bodies(setup)
    info.update(outcome["counts"])
    section = {
        "backbone": extractor.backbone_name,
        "weights_sha256": extractor.weights_sha256,
        "fallback_used": extractor.backbone_name != str(metrics_cfg.backbone),
        **outcome["scores"],
    }
    counts = getattr(anonymizer, "totals", None)  # a body method's persons synthesized / fell back
    if isinstance(counts, dict):
        section["anonymizer_counts"] = dict(counts)
    weights = [BACKBONE_WEIGHTS[extractor.backbone_name]]
    if face_spec is not None:
        weights += provenance.DETECTOR_WEIGHTS[face_spec["name"]]
        weights += ["dlib_landmarks68"] if setup.landmarks else []
    protocol = {
        "features": f"{extractor.backbone_name} on the person silhouette (protocols.md 5): "
        "outside the mask set to the backbone's neutral colour, cropped to the mask box, "
        f"resized + centre-cropped to {CROP_SIZE}",
        "requested_backbone": str(metrics_cfg.backbone),
        "distance": "L2 on L2-normalised features",
        "gallery": "every original person, cut out by its own mask",
        "query": "each person of the anonymized image, cut out by its ORIGINAL mask",
        "anonymized": "each image once (seed from image id) with the union of its person masks"
        + (f" and the faces of {face_spec['name']}" if face_spec else ""),
        "face_detector": face_spec,
        "landmarks": setup.landmarks,
        "success": "the query's own original is not among its k nearest gallery persons",
        "ks_rule": KS_RULE,
        "ks": outcome["ks"],
        "seed": setup.seed,
        "device": str(extractor.device),
    }
    return {"silhouette_knn": section}, info, protocol, weights
